/*
 * What a task's process does between fork and exec. Everything here was prepared by the parent (launcher.c):
 * no allocation, only system calls, so it is safe in a child of a forked process.
 *
 * Isolated tasks get an init of ours as pid 1 of a new pid + mount namespace (inside a new user namespace when
 * the launcher is not root). The init covers the mesh's state folder and the work root with an empty tmpfs,
 * binds back only the task's own folder (read-write) and its job's folder (read-only), mounts a /proc that shows
 * only the namespace, and forks the task. After exec the task has no capabilities (its uid is not 0 inside the
 * namespace), so it cannot undo the mounts; the init is not dumpable, so /proc/1 shows nothing of it; when the
 * task's main process ends, the init exits and the kernel ends whatever the task left behind.
 */
#include "launcher.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

__attribute__((format(printf, 4, 5), noreturn))
static void fail (ChildSpec *s, int stage, int err, const char *fmt, ...) {
  ChildError e;
  memset(&e, 0, sizeof e);
  e.stage = stage;
  e.err = err;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.what, sizeof e.what, fmt, ap);
  va_end(ap);
  if (write(s->execPipe, &e, sizeof e) < 0) { /* the launcher is gone: nobody to tell */ }
  _exit(127);
}

static void reset_signals (void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &sa, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The child enters the task's cgroups itself ("0" moves the writer), so nothing it forks can start outside. */
static void enter_cgroups (ChildSpec *s) {
  for (int i = 0; i < s->ncgroup; i++) {
    int fd = open(s->cgroupProcs[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) fail(s, STAGE_CGROUP, errno, "%s", s->cgroupProcs[i]);
    close(fd);
  }
}

static void apply_limits (ChildSpec *s) {
  if (s->hasNice && setpriority(PRIO_PROCESS, 0, s->nice) != 0) fail(s, STAGE_LIMITS, errno, "nice %d", s->nice);
  if (s->hasIoprio && syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, (s->ioClass << 13) | s->ioLevel) != 0) {
    fail(s, STAGE_LIMITS, errno, "I/O priority %d/%d", s->ioClass, s->ioLevel);
  }
  for (int i = 0; i < s->nlimits; i++) {
    struct rlimit rl = { s->limits[i].soft, s->limits[i].hard };
    if (setrlimit(s->limits[i].resource, &rl) != 0) fail(s, STAGE_LIMITS, errno, "resource limit %d", s->limits[i].resource);
  }
}

/* stdio, the slot user, no new privileges, the working folder, then exec. */
__attribute__((noreturn))
static void exec_task (ChildSpec *s) {
  int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nul < 0 || dup2(nul, 0) < 0 || dup2(s->fdOut, 1) < 0 || dup2(s->fdErr, 2) < 0) fail(s, STAGE_SETUP, errno, "stdio");
  if (s->hasUser) {
    /* Supplementary groups first (they would keep the launcher's), then the group, then the user. */
    if (setgroups(0, NULL) != 0) fail(s, STAGE_USER, errno, "setgroups");
    if (setresgid(s->gid, s->gid, s->gid) != 0) fail(s, STAGE_USER, errno, "gid %d", (int)s->gid);
    if (setresuid(s->uid, s->uid, s->uid) != 0) fail(s, STAGE_USER, errno, "uid %d", (int)s->uid);
  }
  /* No set-user-id or file-capability program may give the task back what it does not have. */
  if ((s->isolated || s->hasUser) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(s, STAGE_SETUP, errno, "no_new_privs");
  if (chdir(s->cwd) != 0) fail(s, STAGE_CHDIR, errno, "%s", s->cwd);
  environ = s->envp;
  execvp(s->argv[0], s->argv);
  fail(s, STAGE_EXEC, errno, "%s", s->argv[0]);
}

void run_plain_child (ChildSpec *s) {
  reset_signals();
  /* Tasks get the usual umask, not the agent's (077, for its own state). */
  umask(022);
  /* Its own session and process group, so that a signal reaches everything it starts. */
  setsid();
  enter_cgroups(s);
  apply_limits(s);
  exec_task(s);
}

/* ---- isolated tasks ---- */

static void mkdir_p (ChildSpec *s, const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n >= sizeof buf) fail(s, STAGE_SANDBOX, ENAMETOOLONG, "%s", path);
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0) continue;
    char c = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) fail(s, STAGE_SANDBOX, errno, "mkdir %s", buf);
    buf[i] = c;
  }
}

/*
 * Remounts a bind read-only (or read-write) with nosuid and nodev, keeping the flags it already has: inside a
 * user namespace the kernel refuses a remount that would clear a flag locked by the parent namespace.
 */
static void remount (ChildSpec *s, const char *path, int ro, unsigned long extra) {
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | extra | (ro ? MS_RDONLY : 0);
  struct statvfs v;
  if (statvfs(path, &v) == 0) {
    if (v.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (v.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (v.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (v.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    if (!ro && (v.f_flag & ST_RDONLY)) flags |= MS_RDONLY;
  }
  if (mount(NULL, path, NULL, flags, NULL) != 0) fail(s, STAGE_SANDBOX, errno, "remount %s", path);
}

static void setup_mounts (ChildSpec *s) {
  /* Private: nothing mounted here may reach the machine's own mount table. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail(s, STAGE_SANDBOX, errno, "make mounts private");
  /* The folders to bind back are opened before they are covered. */
  for (int i = 0; i < s->nbinds; i++) {
    s->binds[i].srcFd = open(s->binds[i].src, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->binds[i].srcFd < 0) fail(s, STAGE_SANDBOX, errno, "open %s", s->binds[i].src);
  }
  /*
   * In a user namespace the covering tmpfs and the mount points made in it belong to the one id mapped there
   * (ids not mapped cannot own files in it); they are read-only once made.
   */
  char tmpfsOpts[96] = "size=64k,nr_inodes=1024,mode=0755";
  unsigned mappedUid = s->hasUser ? s->uid : getuid(), mappedGid = s->hasUser ? s->gid : getgid();
  if (s->userns) snprintf(tmpfsOpts, sizeof tmpfsOpts, "size=64k,nr_inodes=1024,mode=0755,uid=%u,gid=%u", mappedUid, mappedGid);
  int covered[64];
  for (int i = 0; i < s->nhide && i < 64; i++) {
    covered[i] = -1;
    struct stat st;
    if (stat(s->hide[i], &st) != 0) {
      if (errno == ENOENT) continue;
      fail(s, STAGE_SANDBOX, errno, "stat %s", s->hide[i]);
    }
    if (!S_ISDIR(st.st_mode)) continue;
    if (mount("tmpfs", s->hide[i], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, tmpfsOpts) != 0) {
      fail(s, STAGE_SANDBOX, errno, "cover %s", s->hide[i]);
    }
    /* Kept open to remount it later by descriptor: its path may not be reachable with the mapped id. */
    if ((covered[i] = open(s->hide[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) fail(s, STAGE_SANDBOX, errno, "open %s", s->hide[i]);
  }
  if (s->userns) {
    setfsuid(mappedUid);
    setfsgid(mappedGid);
  }
  for (int i = 0; i < s->nbinds; i++) {
    char src[64];
    mkdir_p(s, s->binds[i].dst);
    snprintf(src, sizeof src, "/proc/self/fd/%d", s->binds[i].srcFd);
    if (mount(src, s->binds[i].dst, NULL, MS_BIND, NULL) != 0) fail(s, STAGE_SANDBOX, errno, "bind %s", s->binds[i].dst);
    remount(s, s->binds[i].dst, s->binds[i].ro, 0);
    close(s->binds[i].srcFd);
  }
  /* The covering tmpfs becomes read-only once the mount points are made. */
  for (int i = 0; i < s->nhide && i < 64; i++) {
    if (covered[i] < 0) continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", covered[i]);
    remount(s, path, 1, MS_NOEXEC);
    close(covered[i]);
  }
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail(s, STAGE_SANDBOX, errno, "mount /proc");
}

/* Closes every descriptor from 3 up except those in keep. */
static void close_others (int *keep, int n) {
  for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) if (keep[j] < keep[i]) { int x = keep[i]; keep[i] = keep[j]; keep[j] = x; }
  unsigned lo = 3;
  for (int i = 0; i < n; i++) {
    if (keep[i] < (int)lo) continue;
    if ((unsigned)keep[i] > lo) close_range(lo, (unsigned)keep[i] - 1, 0);
    lo = (unsigned)keep[i] + 1;
  }
  close_range(lo, ~0U, 0);
}

static void relay (int sig) {
  /* From pid 1, -1 means every other process of the namespace: the task, and whatever it started. */
  kill(-1, sig == RELAY_STOP ? SIGSTOP : sig);
}

static const int RELAYED[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM, SIGCONT, SIGALRM, SIGWINCH, SIGXCPU, 0 };

void run_init_child (ChildSpec *s) {
  /* If the launcher dies, so does the namespace, and every process in it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (s->userns) {
    char c;
    ssize_t r;
    while ((r = read(s->syncFd, &c, 1)) < 0 && errno == EINTR) {}
    if (r != 0) _exit(126); /* the parent could not write the id maps: it reports why */
  }
  if (s->syncFd >= 0) close(s->syncFd);
  prctl(PR_SET_DUMPABLE, 0);
  setsid();
  umask(022);
  enter_cgroups(s);
  apply_limits(s);
  setup_mounts(s);
  int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0) fail(s, STAGE_SETUP, errno, "stdio");
  close(nul);
  /* Nothing of the launcher's stays open here (other tasks' files and pipes), and no folder is current. */
  int keep[4] = { s->fdOut, s->fdErr, s->execPipe, s->statusPipe };
  close_others(keep, 4);
  if (chdir("/") != 0) fail(s, STAGE_SETUP, errno, "chdir /");

  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &all, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = SIG_DFL;
  sigaction(SIGCHLD, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sigaction(SIGTTIN, &sa, NULL);
  sigaction(SIGTTOU, &sa, NULL);
  sigaction(SIGTSTP, &sa, NULL);
  sa.sa_handler = relay;
  for (const int *sig = RELAYED; *sig; sig++) sigaction(*sig, &sa, NULL);
  sigaction(RELAY_STOP, &sa, NULL);

  pid_t task = fork();
  if (task < 0) fail(s, STAGE_SETUP, errno, "fork");
  if (task == 0) {
    reset_signals();
    exec_task(s);
  }
  close(s->execPipe);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (;;) {
    int status;
    struct rusage ru;
    pid_t pid = wait4(-1, &status, 0, &ru);
    if (pid < 0) {
      if (errno == EINTR) continue;
      _exit(0);
    }
    if (pid != task) continue; /* an orphan of the task's: reaped, as init does */
    ChildStatus cs = { status, ru.ru_maxrss };
    if (write(s->statusPipe, &cs, sizeof cs) < 0) { /* the launcher is gone */ }
    _exit(0);
  }
}
