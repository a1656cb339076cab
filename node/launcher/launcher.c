/*
 * meshfarm native task launcher: spawn, signal, wait. The agent decides everything else (what to run, its
 * environment, its time limit, its sandbox) and sends it here; launcher.mjs speaks the same protocol.
 *
 * Why a native one: a Node process spawns by fork() of a large process; this one is small, and it can do what
 * Node cannot between fork and exec (namespaces, mounts, a slot user, cgroups, limits; see child.c).
 *
 * Protocol: newline-delimited JSON on stdin (requests) and stdout (replies).
 *   {"op":"spawn","id":N,"argv":["prog","arg",...],"cwd":"/abs","env":{...} or "envAdd":{...},
 *    "stdout":"/abs","stderr":"/abs","user":{"uid":n,"gid":n},
 *    "sandbox":{"userns":bool,"hide":["/abs",...],"binds":[{"src":"/abs","dst":"/abs","ro":bool}]},
 *    "cgroupProcs":["/abs/cgroup.procs"],"nice":n,"ioprio":{"class":n,"level":n},"rlimits":{"nofile":[soft,hard]}}
 *   {"op":"signal","id":N,"signal":"SIGTERM"}
 * Replies:
 *   {"op":"hello","features":[...]}                 once, at start
 *   {"op":"started","id":N,"pid":P,"startedAt":ms}   once the task's program runs
 *   {"op":"exit","id":N,"exitCode":n|null,"signal":s|null,"error":s|null,"startedAt":ms,"endedAt":ms,
 *    "stdoutBytes":n|null,"stderrBytes":n|null,"peakMemoryBytes":n|null}
 * When stdin closes, every running task is killed and the launcher exits.
 */
#include "launcher.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct Task {
  long id;
  pid_t pid;           /* the task's process, or its init for isolated tasks */
  ChildSpec spec;
  int execFd, statusFd;/* read ends; -1 once at end of file */
  int started, exited, status, hasError, hasInner;
  long maxrssKb;
  ChildError error;
  ChildStatus inner;
  double startedAt;
  struct Task *next;
} Task;

static Task *tasks = NULL;
static Buf out = {0};
static int sigPipe[2];

static double now_ms (void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

static Task *find_task (long id) { for (Task *t = tasks; t; t = t->next) if (t->id == id) return t; return NULL; }
static Task *find_pid (pid_t pid) { for (Task *t = tasks; t; t = t->next) if (t->pid == pid) return t; return NULL; }


static void free_task (Task *t) {
  ChildSpec *s = &t->spec;
  free_strings(s->argv); free_strings(s->envp); free_strings(s->hide); free_strings(s->cgroupProcs);
  for (int i = 0; i < s->nbinds; i++) { free(s->binds[i].src); free(s->binds[i].dst); }
  free(s->binds); free(s->cwd);
  if (s->fdOut >= 0) close(s->fdOut);
  if (s->fdErr >= 0 && s->fdErr != s->fdOut) close(s->fdErr);
  if (t->execFd >= 0) close(t->execFd);
  if (t->statusFd >= 0) close(t->statusFd);
  free(t);
}

static const char *signal_name (int sig, char *tmp, size_t n) {
  const char *abbrev = sigabbrev_np(sig);
  if (abbrev) snprintf(tmp, n, "SIG%s", abbrev); else snprintf(tmp, n, "SIG%d", sig);
  return tmp;
}

static int signal_number (const char *name) {
  if (!name) return SIGTERM;
  if (!strncmp(name, "SIG", 3)) name += 3;
  for (int s = 1; s < 65; s++) { const char *a = sigabbrev_np(s); if (a && !strcmp(a, name)) return s; }
  return 0;
}

static void put_num (const char *key, long long v, int known) {
  char num[64];
  buf_str(&out, key);
  if (known) { snprintf(num, sizeof num, "%lld", v); buf_str(&out, num); } else buf_str(&out, "null");
}

static long long fd_size (int fd) {
  struct stat st;
  return fd >= 0 && fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
}

static void reply_started (Task *t) {
  char line[160];
  snprintf(line, sizeof line, "{\"op\":\"started\",\"id\":%ld,\"pid\":%d,\"startedAt\":%.0f}\n", t->id, (int)t->pid, t->startedAt);
  buf_str(&out, line);
  t->started = 1;
}

/* The exit reply; removes the task. The stdout capture file turns read-only: an agent that dies before it has
 * the result can tell, when it starts again, that this task ran to its end (0400) and did not die with it (0600). */
static void finish (Task *t, int hasCode, int code, int sig, const char *error, long long peak) {
  char num[96], tmp[32];
  long long outBytes = fd_size(t->spec.fdOut), errBytes = fd_size(t->spec.fdErr);
  if (t->spec.fdOut >= 0) fchmod(t->spec.fdOut, 0400);
  buf_str(&out, "{\"op\":\"exit\"");
  put_num(",\"id\":", t->id, 1);
  put_num(",\"exitCode\":", code, hasCode);
  buf_str(&out, ",\"signal\":");
  if (sig) buf_json_string(&out, signal_name(sig, tmp, sizeof tmp)); else buf_str(&out, "null");
  buf_str(&out, ",\"error\":");
  if (error) buf_json_string(&out, error); else buf_str(&out, "null");
  snprintf(num, sizeof num, ",\"startedAt\":%.0f,\"endedAt\":%.0f", t->startedAt, now_ms());
  buf_str(&out, num);
  put_num(",\"stdoutBytes\":", outBytes, outBytes >= 0);
  put_num(",\"stderrBytes\":", errBytes, errBytes >= 0);
  put_num(",\"peakMemoryBytes\":", peak, peak > 0);
  buf_str(&out, "}\n");
  for (Task **p = &tasks; *p; p = &(*p)->next) if (*p == t) { *p = t->next; break; }
  free_task(t);
}

static void fail_request (Task *t, const char *why) { finish(t, 0, 0, 0, why, 0); }

/* Reads what a pipe holds without waiting; closes it at end of file. */
static void drain (int *fd, void *into, size_t size, int *got) {
  while (*fd >= 0) {
    char buf[sizeof(ChildError)];
    ssize_t r = read(*fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return; /* EAGAIN: a writer is still there */
    if (r == 0) { close(*fd); *fd = -1; return; }
    if ((size_t)r >= size && !*got) { memcpy(into, buf, size); *got = 1; }
  }
}

static void describe_error (Task *t, char *text, size_t n, int *hasCode, int *code) {
  ChildError *e = &t->error;
  *hasCode = 0;
  switch (e->stage) {
    case STAGE_CHDIR:
      if (e->err == ENOENT) snprintf(text, n, "working folder not found: %s", e->what);
      else snprintf(text, n, "cannot enter the working folder %s: %s", e->what, strerror(e->err));
      break;
    case STAGE_EXEC:
      if (e->err == ENOENT || e->err == EACCES) {
        /* As the shell would: 127 for a missing program, 126 for one that cannot run. */
        snprintf(text, n, "meshfarm: %s: %s", e->what, e->err == ENOENT ? "command not found" : "permission denied");
        dprintf(t->spec.fdErr, "%s\n", text);
        *hasCode = 1;
        *code = e->err == ENOENT ? 127 : 126;
      } else snprintf(text, n, "spawn failed: %s: %s", e->what, strerror(e->err));
      break;
    case STAGE_SANDBOX: snprintf(text, n, "sandbox: %s: %s", e->what, strerror(e->err)); break;
    case STAGE_USER: snprintf(text, n, "slot user: %s: %s", e->what, strerror(e->err)); break;
    case STAGE_CGROUP: snprintf(text, n, "cgroup: %s: %s", e->what, strerror(e->err)); break;
    case STAGE_LIMITS: snprintf(text, n, "limits: %s: %s", e->what, strerror(e->err)); break;
    default: snprintf(text, n, "spawn failed: %s: %s", e->what, strerror(e->err)); break;
  }
}

/* Called once the process is reaped: everything it could write into its pipes is there. */
static void try_finish (Task *t) {
  if (!t->exited) return;
  drain(&t->execFd, &t->error, sizeof t->error, &t->hasError);
  drain(&t->statusFd, &t->inner, sizeof t->inner, &t->hasInner);
  if (t->execFd >= 0 || t->statusFd >= 0) return;
  long long peak = t->maxrssKb > 0 ? (long long)t->maxrssKb * 1024 : 0;
  if (t->hasError) {
    char text[512];
    int hasCode, code = 0;
    describe_error(t, text, sizeof text, &hasCode, &code);
    finish(t, hasCode, code, 0, text, 0);
    return;
  }
  if (!t->started) reply_started(t);
  int st = t->hasInner ? t->inner.status : t->status;
  if (t->hasInner && t->inner.maxrssKb * 1024 > peak) peak = t->inner.maxrssKb * 1024;
  if (WIFSIGNALED(st)) finish(t, 0, 0, WTERMSIG(st), NULL, peak);
  else finish(t, 1, WEXITSTATUS(st), 0, NULL, peak);
}

static void start_task (JVal *msg, long id) {
  int duplicate = find_task(id) != NULL;
  Task *t = xmalloc(sizeof *t);
  memset(t, 0, sizeof *t);
  t->id = id;
  t->execFd = t->statusFd = -1;
  t->spec.fdOut = t->spec.fdErr = t->spec.execPipe = t->spec.statusPipe = t->spec.syncFd = -1;
  t->startedAt = now_ms();
  if (duplicate) { fail_request(t, "duplicate task id"); return; }
  t->next = tasks;
  tasks = t;
  ChildSpec *s = &t->spec;
  const char *why = parse_spec(msg, s);
  if (why) { fail_request(t, why); return; }
  const char *so = jstr(msg, "stdout"), *se = jstr(msg, "stderr");
  int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW;
  s->fdOut = so ? open(so, flags, 0600) : -1;
  s->fdErr = s->fdOut < 0 ? -1 : (se && !strcmp(so, se)) ? s->fdOut : se ? open(se, flags, 0600) : -1;
  if (s->fdOut < 0 || s->fdErr < 0) {
    char text[600];
    snprintf(text, sizeof text, "cannot open output file: %s", strerror(errno));
    fail_request(t, text);
    return;
  }
  int execP[2], statusP[2] = { -1, -1 }, syncP[2] = { -1, -1 };
  if (pipe2(execP, O_CLOEXEC) != 0 || (s->isolated && pipe2(statusP, O_CLOEXEC) != 0) || (s->userns && pipe2(syncP, O_CLOEXEC) != 0)) {
    fail_request(t, "spawn failed: no pipes");
    return;
  }
  s->execPipe = execP[1];
  s->statusPipe = statusP[1];
  s->syncFd = syncP[0];
  pid_t pid;
  if (s->isolated) {
    unsigned long cf = CLONE_NEWPID | CLONE_NEWNS | (s->userns ? CLONE_NEWUSER : 0);
    pid = (pid_t)syscall(SYS_clone, cf | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) { close(execP[0]); close(statusP[0]); if (syncP[1] >= 0) close(syncP[1]); run_init_child(s); }
  } else {
    pid = fork();
    if (pid == 0) { close(execP[0]); run_plain_child(s); }
  }
  int forkErr = errno;
  close(execP[1]);
  if (statusP[1] >= 0) close(statusP[1]);
  if (syncP[0] >= 0) close(syncP[0]);
  s->execPipe = s->statusPipe = s->syncFd = -1;
  t->execFd = execP[0];
  t->statusFd = statusP[0];
  fcntl(t->execFd, F_SETFL, O_NONBLOCK);
  if (t->statusFd >= 0) fcntl(t->statusFd, F_SETFL, O_NONBLOCK);
  if (pid < 0) {
    if (syncP[1] >= 0) close(syncP[1]);
    char text[300];
    snprintf(text, sizeof text, "spawn failed: %s", strerror(forkErr));
    fail_request(t, text);
    return;
  }
  t->pid = pid;
  if (s->userns) {
    if (write_id_maps(pid, s) != 0) {
      t->hasError = 1;
      t->error.stage = STAGE_SANDBOX;
      t->error.err = errno;
      snprintf(t->error.what, sizeof t->error.what, "user namespace id maps");
      if (write(syncP[1], "x", 1) < 0) { /* it dies anyway */ }
      kill(pid, SIGKILL);
    }
    close(syncP[1]);
  }
}

/* Isolated tasks are signalled through their init, which passes the signal to every process it holds. */
static void signal_task (Task *t, int sig) {
  if (t->pid <= 0 || t->exited) return;
  if (!t->spec.isolated) { kill(-t->pid, sig); return; }
  kill(t->pid, sig == SIGSTOP ? RELAY_STOP : sig);
}

static void handle_line (const char *line) {
  JVal *msg = json_parse(line);
  if (!msg || msg->type != J_OBJ) {
    fprintf(stderr, "meshfarm launcher: ignoring bad request line (%zu bytes)\n", strlen(line));
    jfree(msg);
    return;
  }
  JVal *id = jget(msg, "id");
  const char *op = jstr(msg, "op");
  if (id && id->type == J_NUM && op) {
    if (!strcmp(op, "spawn")) start_task(msg, (long)id->num);
    else if (!strcmp(op, "signal")) {
      Task *t = find_task((long)id->num);
      int sig = signal_number(jstr(msg, "signal"));
      if (t && sig > 0) signal_task(t, sig);
    }
  }
  jfree(msg);
}

static void flush_out (void) {
  size_t off = 0;
  while (off < out.len) {
    ssize_t w = write(1, out.s + off, out.len - off);
    if (w < 0) { if (errno == EINTR) continue; out.len = 0; return; }
    off += (size_t)w;
  }
  out.len = 0;
}

/* The agent is gone: no task may outlive it. */
static void shutdown_all (void) {
  for (Task *t = tasks; t; t = t->next) if (t->pid > 0 && !t->exited) { if (t->spec.isolated) kill(t->pid, SIGKILL); else kill(-t->pid, SIGKILL); }
  flush_out();
  exit(0);
}

static void on_signal (int sig) {
  int saved = errno;
  char c = (char)sig;
  if (write(sigPipe[1], &c, 1) < 0) { /* the pipe is full: a wakeup is pending anyway */ }
  errno = saved;
}

static void reap (void) {
  int status;
  struct rusage ru;
  pid_t pid;
  while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
    Task *t = find_pid(pid);
    if (!t) continue; /* an orphan of a task's, reaped because we are its subreaper */
    t->exited = 1;
    t->status = status;
    t->maxrssKb = ru.ru_maxrss;
    try_finish(t);
  }
}

int main (void) {
  set_base_env(environ);
  /* Whatever a task double-forks is reparented here, not to the machine's init: it stays findable. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  if (pipe2(sigPipe, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  /* Ctrl-C reaches the whole foreground group, us included; the agent decides what happens to tasks. */
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  buf_str(&out, "{\"op\":\"hello\",\"features\":[\"sandbox\",\"user\",\"cgroup\",\"nice\",\"ioprio\",\"rlimits\",\"peak-memory\"]}\n");

  Buf in = {0};
  char chunk[65536];
  struct pollfd *fds = NULL;
  Task **owners = NULL;
  size_t fdsCap = 0;
  for (;;) {
    flush_out();
    size_t nfds = 2;
    for (Task *t = tasks; t; t = t->next) nfds += (t->execFd >= 0) + (t->statusFd >= 0);
    if (nfds > fdsCap) {
      fdsCap = nfds * 2;
      fds = realloc(fds, sizeof *fds * fdsCap);
      owners = realloc(owners, sizeof *owners * fdsCap);
      if (!fds || !owners) { fputs("meshfarm launcher: out of memory\n", stderr); shutdown_all(); }
    }
    fds[0] = (struct pollfd){ .fd = 0, .events = POLLIN };
    fds[1] = (struct pollfd){ .fd = sigPipe[0], .events = POLLIN };
    size_t k = 2;
    for (Task *t = tasks; t; t = t->next) {
      if (t->execFd >= 0) { owners[k] = t; fds[k++] = (struct pollfd){ .fd = t->execFd, .events = POLLIN }; }
      if (t->statusFd >= 0) { owners[k] = t; fds[k++] = (struct pollfd){ .fd = t->statusFd, .events = POLLIN }; }
    }
    int r = poll(fds, nfds, -1);
    if (r < 0 && errno != EINTR) shutdown_all();
    if (r <= 0) continue;
    /* A task's exec pipe at end of file without an error: its program runs. */
    for (size_t i = 2; i < nfds; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Task *t = owners[i];
      if (fds[i].fd == t->execFd) {
        drain(&t->execFd, &t->error, sizeof t->error, &t->hasError);
        if (t->execFd < 0 && !t->hasError && !t->started && find_task(t->id) == t) reply_started(t);
      } else if (fds[i].fd == t->statusFd) {
        drain(&t->statusFd, &t->inner, sizeof t->inner, &t->hasInner);
      }
    }
    if (fds[1].revents & POLLIN) {
      char sigs[64];
      ssize_t got = read(sigPipe[0], sigs, sizeof sigs);
      for (ssize_t i = 0; i < got; i++) if (sigs[i] == SIGTERM || sigs[i] == SIGHUP) shutdown_all();
      reap();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t got = read(0, chunk, sizeof chunk);
      if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) shutdown_all();
      if (got > 0) {
        buf_put(&in, chunk, (size_t)got);
        char *start = in.s, *nl;
        while ((nl = memchr(start, '\n', in.len - (size_t)(start - in.s)))) {
          *nl = 0;
          if (nl > start) handle_line(start);
          start = nl + 1;
        }
        size_t rest = in.len - (size_t)(start - in.s);
        memmove(in.s, start, rest);
        in.len = rest;
        in.s[rest] = 0;
      }
    }
  }
}
