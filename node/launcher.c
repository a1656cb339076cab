/*
 * meshfarm native task launcher: the same protocol and behaviour as launcher.mjs, in C.
 *
 * Why: a Node process spawns by fork(), which copies its page tables, and blocks until the child has exec'd:
 * about 1 ms of CPU per task even from a small Node process. posix_spawn (vfork underneath) costs a fraction of
 * that, which is most of what separates a task farm of trivial tasks from xargs. The agent compiles this file
 * with the machine's C compiler on first start and falls back to launcher.mjs where there is none.
 *
 * Protocol: newline-delimited JSON on stdin (requests) and stdout (replies); see launcher.mjs.
 *   {"op":"run","id":N,"commands":[...],"cwd":"/abs","env":{...} or "envAdd":{...},"stdout":"/abs",
 *    "stderr":"/abs","timeoutMs":0,"notifyStart":false}
 *   {"op":"kill","id":N,"signal":"SIGTERM"}
 * Replies: {"op":"started",...} and {"op":"exit",...} exactly as launcher.mjs writes them.
 * When stdin closes, every running task's process group gets SIGKILL and the launcher exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- small helpers ---- */

static double now_ms (void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

static void *xmalloc (size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) { fputs("meshfarm launcher: out of memory\n", stderr); exit(1); }
  return p;
}

typedef struct { char *s; size_t len, cap; } Buf;

static void buf_put (Buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    char *p = realloc(b->s, b->cap);
    if (!p) { fputs("meshfarm launcher: out of memory\n", stderr); exit(1); }
    b->s = p;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void buf_str (Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_json_string (Buf *b, const char *s) {
  buf_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; buf_put(b, esc, 2); }
    else if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); buf_put(b, esc, 6); }
    else buf_put(b, (const char *)p, 1);
  }
  buf_put(b, "\"", 1);
}

/* ---- a minimal JSON reader, enough for our requests ---- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;
typedef struct JVal {
  JType type;
  double num;
  int boolean;
  char *str;              /* J_STR, decoded UTF-8 */
  struct JVal **items;    /* J_ARR values, J_OBJ values */
  char **keys;            /* J_OBJ keys */
  int n;
} JVal;

static const char *jp;

static void skip_ws (void) { while (*jp == ' ' || *jp == '\t' || *jp == '\r' || *jp == '\n') jp++; }

static JVal *jnew (JType t) { JVal *v = xmalloc(sizeof *v); memset(v, 0, sizeof *v); v->type = t; return v; }

static void jfree (JVal *v) {
  if (!v) return;
  for (int i = 0; i < v->n; i++) { jfree(v->items[i]); if (v->keys) free(v->keys[i]); }
  free(v->items); free(v->keys); free(v->str); free(v);
}

static void put_utf8 (Buf *b, unsigned cp) {
  char c[4];
  if (cp < 0x80) { c[0] = (char)cp; buf_put(b, c, 1); }
  else if (cp < 0x800) { c[0] = (char)(0xC0 | (cp >> 6)); c[1] = (char)(0x80 | (cp & 63)); buf_put(b, c, 2); }
  else if (cp < 0x10000) { c[0] = (char)(0xE0 | (cp >> 12)); c[1] = (char)(0x80 | ((cp >> 6) & 63)); c[2] = (char)(0x80 | (cp & 63)); buf_put(b, c, 3); }
  else { c[0] = (char)(0xF0 | (cp >> 18)); c[1] = (char)(0x80 | ((cp >> 12) & 63)); c[2] = (char)(0x80 | ((cp >> 6) & 63)); c[3] = (char)(0x80 | (cp & 63)); buf_put(b, c, 4); }
}

static int hex4 (const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static char *parse_string_raw (void) {
  if (*jp != '"') return NULL;
  jp++;
  Buf b = {0};
  buf_put(&b, "", 0);
  while (*jp && *jp != '"') {
    if (*jp != '\\') { buf_put(&b, jp, 1); jp++; continue; }
    jp++;
    char c = *jp++;
    switch (c) {
      case '"': buf_put(&b, "\"", 1); break;
      case '\\': buf_put(&b, "\\", 1); break;
      case '/': buf_put(&b, "/", 1); break;
      case 'b': buf_put(&b, "\b", 1); break;
      case 'f': buf_put(&b, "\f", 1); break;
      case 'n': buf_put(&b, "\n", 1); break;
      case 'r': buf_put(&b, "\r", 1); break;
      case 't': buf_put(&b, "\t", 1); break;
      case 'u': {
        unsigned cp;
        if (!hex4(jp, &cp)) { free(b.s); return NULL; }
        jp += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && jp[0] == '\\' && jp[1] == 'u') {
          unsigned lo;
          if (hex4(jp + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) { cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00); jp += 6; }
        }
        put_utf8(&b, cp);
        break;
      }
      default: free(b.s); return NULL;
    }
  }
  if (*jp != '"') { free(b.s); return NULL; }
  jp++;
  return b.s;
}

static JVal *parse_value (int depth);

static JVal *parse_container (int depth, int object) {
  JVal *v = jnew(object ? J_OBJ : J_ARR);
  int cap = 0;
  jp++;
  skip_ws();
  if (*jp == (object ? '}' : ']')) { jp++; return v; }
  for (;;) {
    char *key = NULL;
    skip_ws();
    if (object) {
      key = parse_string_raw();
      if (!key) { jfree(v); return NULL; }
      skip_ws();
      if (*jp != ':') { free(key); jfree(v); return NULL; }
      jp++;
    }
    JVal *item = parse_value(depth + 1);
    if (!item) { free(key); jfree(v); return NULL; }
    if (v->n == cap) {
      cap = cap ? cap * 2 : 8;
      v->items = realloc(v->items, sizeof(JVal *) * (size_t)cap);
      if (object) v->keys = realloc(v->keys, sizeof(char *) * (size_t)cap);
      if (!v->items || (object && !v->keys)) { fputs("meshfarm launcher: out of memory\n", stderr); exit(1); }
    }
    v->items[v->n] = item;
    if (object) v->keys[v->n] = key;
    v->n++;
    skip_ws();
    if (*jp == ',') { jp++; continue; }
    if (*jp == (object ? '}' : ']')) { jp++; return v; }
    jfree(v);
    return NULL;
  }
}

static JVal *parse_value (int depth) {
  if (depth > 32) return NULL;
  skip_ws();
  if (*jp == '{' || *jp == '[') return parse_container(depth, *jp == '{');
  if (*jp == '"') { char *s = parse_string_raw(); if (!s) return NULL; JVal *v = jnew(J_STR); v->str = s; return v; }
  if (!strncmp(jp, "true", 4)) { jp += 4; JVal *v = jnew(J_BOOL); v->boolean = 1; return v; }
  if (!strncmp(jp, "false", 5)) { jp += 5; return jnew(J_BOOL); }
  if (!strncmp(jp, "null", 4)) { jp += 4; return jnew(J_NULL); }
  char *end;
  double d = strtod(jp, &end);
  if (end == jp) return NULL;
  jp = end;
  JVal *v = jnew(J_NUM);
  v->num = d;
  return v;
}

static JVal *jget (JVal *obj, const char *key) {
  if (!obj || obj->type != J_OBJ) return NULL;
  for (int i = 0; i < obj->n; i++) if (!strcmp(obj->keys[i], key)) return obj->items[i];
  return NULL;
}

static const char *jstr (JVal *obj, const char *key) { JVal *v = jget(obj, key); return v && v->type == J_STR ? v->str : NULL; }

/* ---- tasks ---- */

typedef struct Task {
  long id;
  char **commands;
  int ncommands, next;
  char *cwd;
  char **envp;
  char *path;          /* PATH of the task's environment, for plain commands */
  int fdOut, fdErr;
  pid_t pid;           /* the running command, 0 between commands */
  int killing, timedOut, notifyStart;
  double startedAt, deadline, graceAt;
  struct Task *nextTask;
} Task;

static Task *tasks = NULL;
static Buf out = {0};
static char **baseEnv;
static int baseEnvN;
static double killGraceMs = 5000;
static int sigPipe[2];

static Task *find_task (long id) { for (Task *t = tasks; t; t = t->nextTask) if (t->id == id) return t; return NULL; }
static Task *find_pid (pid_t pid) { for (Task *t = tasks; t; t = t->nextTask) if (t->pid == pid) return t; return NULL; }

static void free_task (Task *t) {
  for (int i = 0; i < t->ncommands; i++) free(t->commands[i]);
  free(t->commands);
  if (t->envp) { for (char **e = t->envp; *e; e++) free(*e); free(t->envp); }
  free(t->cwd); free(t->path); free(t);
}

static void remove_task (Task *t) {
  for (Task **p = &tasks; *p; p = &(*p)->nextTask) if (*p == t) { *p = t->nextTask; break; }
  free_task(t);
}

static const char *signal_name (int sig, char *tmp, size_t n) {
  const char *abbrev = sigabbrev_np(sig);
  if (abbrev) snprintf(tmp, n, "SIG%s", abbrev);
  else snprintf(tmp, n, "SIG%d", sig);
  return tmp;
}

static int signal_number (const char *name) {
  if (!name) return SIGTERM;
  if (!strncmp(name, "SIG", 3)) name += 3;
  for (int s = 1; s < 65; s++) { const char *a = sigabbrev_np(s); if (a && !strcmp(a, name)) return s; }
  return 0;
}

static void reply_exit (Task *t, int hasCode, int code, int sig, const char *error, long long outBytes, long long errBytes) {
  char num[64], tmp[32];
  buf_str(&out, "{\"op\":\"exit\",\"id\":");
  snprintf(num, sizeof num, "%ld", t->id); buf_str(&out, num);
  buf_str(&out, ",\"exitCode\":");
  if (hasCode) { snprintf(num, sizeof num, "%d", code); buf_str(&out, num); } else buf_str(&out, "null");
  buf_str(&out, ",\"signal\":");
  if (sig) buf_json_string(&out, signal_name(sig, tmp, sizeof tmp)); else buf_str(&out, "null");
  buf_str(&out, t->timedOut ? ",\"timedOut\":true" : ",\"timedOut\":false");
  buf_str(&out, ",\"error\":");
  if (error) buf_json_string(&out, error); else buf_str(&out, "null");
  snprintf(num, sizeof num, ",\"startedAt\":%.0f,\"endedAt\":%.0f", t->startedAt, now_ms()); buf_str(&out, num);
  buf_str(&out, ",\"stdoutBytes\":");
  if (outBytes >= 0) { snprintf(num, sizeof num, "%lld", outBytes); buf_str(&out, num); } else buf_str(&out, "null");
  buf_str(&out, ",\"stderrBytes\":");
  if (errBytes >= 0) { snprintf(num, sizeof num, "%lld", errBytes); buf_str(&out, num); } else buf_str(&out, "null");
  buf_str(&out, "}\n");
}

static long long fd_size (int fd) {
  struct stat st;
  return fd >= 0 && fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
}

static void finish (Task *t, int hasCode, int code, int sig, const char *error) {
  long long outBytes = fd_size(t->fdOut), errBytes = fd_size(t->fdErr);
  if (t->fdOut >= 0) close(t->fdOut);
  if (t->fdErr >= 0 && t->fdErr != t->fdOut) close(t->fdErr);
  t->fdOut = t->fdErr = -1;
  reply_exit(t, hasCode, code, sig, error, outBytes, errBytes);
  remove_task(t);
}

static void signal_group (pid_t pid, int sig) { if (pid > 0) kill(-pid, sig); }

static void kill_task (Task *t, int sig) {
  int first = !t->killing;
  t->killing = 1;
  if (t->pid > 0) signal_group(t->pid, sig);
  if (first && sig != SIGKILL) t->graceAt = now_ms() + killGraceMs;
}

/* Commands made only of these characters, whose first word is not special to the shell, skip /bin/sh. */
static const char *SHELL_WORDS[] = {
  ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done", "echo", "elif", "else",
  "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for", "function", "getopts", "hash", "if", "in",
  "jobs", "kill", "local", "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source",
  "then", "time", "times", "trap", "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while", NULL
};

static int plain_char (unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("_./:=+,@%- ", c) != NULL;
}

/* argv for a plain command (NULL-terminated, words point into a copy), or NULL when the shell is needed. */
static char **plain_argv (const char *cmd, char **copy) {
  if (!*cmd) return NULL;
  for (const unsigned char *p = (const unsigned char *)cmd; *p; p++) if (!plain_char(*p)) return NULL;
  *copy = strdup(cmd);
  int n = 0;
  char **argv = xmalloc(sizeof(char *) * (strlen(cmd) / 2 + 2));
  for (char *w = strtok(*copy, " "); w; w = strtok(NULL, " ")) argv[n++] = w;
  argv[n] = NULL;
  int special = n == 0 || strchr(argv[0], '=') != NULL;
  for (const char **s = SHELL_WORDS; !special && *s; s++) if (!strcmp(*s, argv[0])) special = 1;
  if (special) { free(argv); free(*copy); *copy = NULL; return NULL; }
  return argv;
}

/* The program a plain command names, searched in the task's own PATH as a shell would; errno-style result. */
static int resolve_program (const char *name, const char *path, char *outPath, size_t n) {
  if (strchr(name, '/')) { snprintf(outPath, n, "%s", name); return 0; }
  const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  int sawNoExec = 0;
  while (1) {
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(outPath, n, "%.*s%s%s", (int)len, p, len ? "/" : "", name);
    struct stat st;
    if (stat(outPath, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(outPath, X_OK) == 0) return 0;
      sawNoExec = 1;
    }
    if (!colon) break;
    p = colon + 1;
  }
  return sawNoExec ? EACCES : ENOENT;
}

static void run_next (Task *t);

static int spawn_command (Task *t, const char *program, char **argv) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, t->fdOut, 1);
  posix_spawn_file_actions_adddup2(&fa, t->fdErr, 2);
  posix_spawn_file_actions_addchdir_np(&fa, t->cwd);
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  /* Its own session and process group, as Node's detached: true, so a cancel reaches all its children. */
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  int err = posix_spawn(&pid, program, &fa, &attr, argv, t->envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (err == 0) t->pid = pid;
  return err;
}

static void run_next (Task *t) {
  if (t->killing || t->next >= t->ncommands) { finish(t, 1, 0, 0, NULL); return; }
  const char *cmd = t->commands[t->next++];
  char *copy = NULL;
  char **argv = plain_argv(cmd, &copy);
  int err;
  char program[4096];
  if (argv) {
    err = resolve_program(argv[0], t->path, program, sizeof program);
    if (err == 0) err = spawn_command(t, program, argv);
  } else {
    char *shArgv[] = { "/bin/sh", "-c", (char *)cmd, NULL };
    err = spawn_command(t, "/bin/sh", shArgv);
  }
  if (err != 0) {
    struct stat st;
    char text[4352];
    if (err == ENOENT && stat(t->cwd, &st) != 0) {
      snprintf(text, sizeof text, "working folder not found: %s", t->cwd);
      finish(t, 0, 0, 0, text);
    } else if (argv && (err == ENOENT || err == EACCES)) {
      /* As the shell would: 127 for a missing program, 126 for one that cannot run. */
      snprintf(text, sizeof text, "meshfarm: %s: %s", argv[0], err == ENOENT ? "command not found" : "permission denied");
      dprintf(t->fdErr, "%s\n", text);
      finish(t, 1, err == ENOENT ? 127 : 126, 0, text);
    } else {
      snprintf(text, sizeof text, "spawn failed: %s", strerror(err));
      finish(t, 0, 0, 0, text);
    }
  }
  free(argv);
  free(copy);
}

static void on_exit_status (Task *t, int status) {
  pid_t pid = t->pid;
  t->pid = 0;
  /* A cancelled task's leader is gone; take any stragglers in its group with it. */
  if (t->killing) signal_group(pid, SIGKILL);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !t->killing) { run_next(t); return; }
  if (WIFSIGNALED(status)) finish(t, 0, 0, WTERMSIG(status), NULL);
  else finish(t, 1, WEXITSTATUS(status), 0, NULL);
}

/* envp: the launcher's own environment less MESHFARM_*, with `add` laid over it; or exactly `full`. */
static char **build_env (JVal *full, JVal *add, char **pathOut) {
  JVal *src = full && full->type == J_OBJ ? full : add && add->type == J_OBJ ? add : NULL;
  int useBase = !(full && full->type == J_OBJ);
  int cap = (useBase ? baseEnvN : 0) + (src ? src->n : 0) + 1;
  char **env = xmalloc(sizeof(char *) * (size_t)cap);
  int n = 0;
  if (useBase) {
    for (int i = 0; i < baseEnvN; i++) {
      size_t klen = strcspn(baseEnv[i], "=");
      int overridden = 0;
      for (int j = 0; src && j < src->n; j++) if (strlen(src->keys[j]) == klen && !strncmp(src->keys[j], baseEnv[i], klen)) overridden = 1;
      if (!overridden) env[n++] = strdup(baseEnv[i]);
    }
  }
  for (int j = 0; src && j < src->n; j++) {
    if (src->items[j]->type != J_STR) continue;
    size_t len = strlen(src->keys[j]) + strlen(src->items[j]->str) + 2;
    char *kv = xmalloc(len);
    snprintf(kv, len, "%s=%s", src->keys[j], src->items[j]->str);
    env[n++] = kv;
  }
  env[n] = NULL;
  *pathOut = NULL;
  for (int i = 0; i < n; i++) if (!strncmp(env[i], "PATH=", 5)) *pathOut = strdup(env[i] + 5);
  return env;
}

static void start_task (JVal *msg, long id) {
  if (find_task(id)) {
    Task dup = { .id = id, .startedAt = now_ms() };
    char text[64];
    snprintf(text, sizeof text, "duplicate task id %ld", id);
    reply_exit(&dup, 0, 0, 0, text, -1, -1);
    return;
  }
  Task *t = xmalloc(sizeof *t);
  memset(t, 0, sizeof *t);
  t->id = id;
  t->fdOut = t->fdErr = -1;
  t->startedAt = now_ms();
  JVal *cmds = jget(msg, "commands");
  if (cmds && cmds->type == J_ARR) {
    t->commands = xmalloc(sizeof(char *) * (size_t)(cmds->n + 1));
    for (int i = 0; i < cmds->n; i++) if (cmds->items[i]->type == J_STR) t->commands[t->ncommands++] = strdup(cmds->items[i]->str);
  }
  const char *cwd = jstr(msg, "cwd");
  t->cwd = strdup(cwd ? cwd : ".");
  t->envp = build_env(jget(msg, "env"), jget(msg, "envAdd"), &t->path);
  JVal *notify = jget(msg, "notifyStart");
  t->notifyStart = notify && notify->type == J_BOOL && notify->boolean;
  t->nextTask = tasks;
  tasks = t;
  const char *so = jstr(msg, "stdout"), *se = jstr(msg, "stderr");
  t->fdOut = so ? open(so, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666) : -1;
  t->fdErr = t->fdOut < 0 ? -1 : (se && so && !strcmp(so, se)) ? t->fdOut : se ? open(se, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666) : -1;
  if (t->fdOut < 0 || t->fdErr < 0) {
    char text[600];
    snprintf(text, sizeof text, "cannot open output file: %s", strerror(errno));
    finish(t, 0, 0, 0, text);
    return;
  }
  JVal *timeout = jget(msg, "timeoutMs");
  if (timeout && timeout->type == J_NUM && timeout->num > 0) t->deadline = now_ms() + timeout->num;
  run_next(t);
  /* Still ours and running: tell the agent it started. */
  if (t->notifyStart && find_task(id) == t && t->pid > 0) {
    char line[160];
    snprintf(line, sizeof line, "{\"op\":\"started\",\"id\":%ld,\"pid\":%d,\"startedAt\":%.0f}\n", id, (int)t->pid, t->startedAt);
    buf_str(&out, line);
  }
}

static void handle_line (const char *line) {
  jp = line;
  JVal *msg = parse_value(0);
  if (!msg || msg->type != J_OBJ) {
    fprintf(stderr, "meshfarm launcher: ignoring bad request line (%zu bytes)\n", strlen(line));
    jfree(msg);
    return;
  }
  JVal *id = jget(msg, "id");
  const char *op = jstr(msg, "op");
  if (id && id->type == J_NUM && op) {
    if (!strcmp(op, "run")) start_task(msg, (long)id->num);
    else if (!strcmp(op, "kill")) {
      Task *t = find_task((long)id->num);
      int sig = signal_number(jstr(msg, "signal"));
      if (t && sig > 0) kill_task(t, sig);
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
  for (Task *t = tasks; t; t = t->nextTask) if (t->pid > 0) signal_group(t->pid, SIGKILL);
  flush_out();
  exit(0);
}

static void on_signal (int sig) {
  int saved = errno;
  char c = (char)sig;
  if (write(sigPipe[1], &c, 1) < 0) { /* the pipe is full: a wakeup is pending anyway */ }
  errno = saved;
}

int main (void) {
  const char *grace = getenv("MESHFARM_KILL_GRACE_MS");
  if (grace && atof(grace) > 0) killGraceMs = atof(grace);
  for (char **e = environ; *e; e++) baseEnvN++;
  baseEnv = xmalloc(sizeof(char *) * (size_t)(baseEnvN + 1));
  int n = 0;
  for (char **e = environ; *e; e++) if (strncmp(*e, "MESHFARM_", 9)) baseEnv[n++] = *e;
  baseEnvN = n;

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

  Buf in = {0};
  char chunk[65536];
  for (;;) {
    flush_out();
    int timeout = -1;
    double now = now_ms();
    for (Task *t = tasks; t; t = t->nextTask) {
      double at = t->deadline > 0 && !t->timedOut ? t->deadline : 0;
      if (t->graceAt > 0 && (at == 0 || t->graceAt < at)) at = t->graceAt;
      if (at > 0) { int ms = at <= now ? 0 : (int)(at - now) + 1; if (timeout < 0 || ms < timeout) timeout = ms; }
    }
    struct pollfd fds[2] = { { .fd = 0, .events = POLLIN }, { .fd = sigPipe[0], .events = POLLIN } };
    int r = poll(fds, 2, timeout);
    if (r < 0 && errno != EINTR) shutdown_all();
    if (fds[1].revents & POLLIN) {
      char sigs[64];
      ssize_t got = read(sigPipe[0], sigs, sizeof sigs);
      for (ssize_t i = 0; i < got; i++) if (sigs[i] == SIGTERM || sigs[i] == SIGHUP) shutdown_all();
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        Task *t = find_pid(pid);
        if (t) on_exit_status(t, status);
      }
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
    now = now_ms();
    for (Task *t = tasks, *next; t; t = next) {
      next = t->nextTask;
      if (t->deadline > 0 && !t->timedOut && now >= t->deadline) { t->timedOut = 1; kill_task(t, SIGTERM); }
      if (t->graceAt > 0 && now >= t->graceAt) { t->graceAt = 0; if (t->pid > 0) signal_group(t->pid, SIGKILL); }
    }
  }
}
