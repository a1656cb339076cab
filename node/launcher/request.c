/*
 * A spawn request read into what the child needs (ChildSpec), and the user namespace's id maps the launcher
 * writes for an isolated child. Everything from the agent is checked here: a bad field is one error, not a guess.
 */
#include "launcher.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char **baseEnv;
static int baseEnvN;

/* The base environment of tasks sent with envAdd: the launcher's own, less meshfarm's settings. */
void set_base_env (char **environ_) {
  for (char **e = environ_; *e; e++) baseEnvN++;
  baseEnv = xmalloc(sizeof(char *) * (size_t)(baseEnvN + 1));
  int n = 0;
  for (char **e = environ_; *e; e++) if (strncmp(*e, "MESHFARM_", 9)) baseEnv[n++] = *e;
  baseEnvN = n;
}

void free_strings (char **v) { if (v) { for (char **p = v; *p; p++) free(*p); free(v); } }

/* envp: the launcher's environment less MESHFARM_*, with `add` laid over it; or exactly `full`. */
static char **build_env (JVal *full, JVal *add) {
  JVal *src = full && full->type == J_OBJ ? full : add && add->type == J_OBJ ? add : NULL;
  int useBase = !(full && full->type == J_OBJ);
  int n = 0, cap = (useBase ? baseEnvN : 0) + (src ? src->n : 0) + 1;
  char **env = xmalloc(sizeof(char *) * (size_t)cap);
  for (int i = 0; useBase && i < baseEnvN; i++) {
    size_t klen = strcspn(baseEnv[i], "=");
    int overridden = 0;
    for (int j = 0; src && j < src->n; j++) if (strlen(src->keys[j]) == klen && !strncmp(src->keys[j], baseEnv[i], klen)) overridden = 1;
    if (!overridden) env[n++] = strdup(baseEnv[i]);
  }
  for (int j = 0; src && j < src->n; j++) {
    if (src->items[j]->type != J_STR) continue;
    size_t len = strlen(src->keys[j]) + strlen(src->items[j]->str) + 2;
    env[n] = xmalloc(len);
    snprintf(env[n++], len, "%s=%s", src->keys[j], src->items[j]->str);
  }
  env[n] = NULL;
  return env;
}

/* A NULL-terminated copy of an array of strings; NULL if it is not one (or `abs` and one is not absolute). */
static char **string_list (JVal *v, int abs, int *count) {
  int n = v && v->type == J_ARR ? v->n : 0;
  char **list = xmalloc(sizeof(char *) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    JVal *item = v->items[i];
    if (item->type != J_STR || (abs && item->str[0] != '/')) { list[i] = NULL; free_strings(list); return NULL; }
    list[i] = strdup(item->str);
  }
  list[n] = NULL;
  if (count) *count = n;
  return list;
}

static const struct { const char *name; int resource; } LIMITS[] = {
  { "as", RLIMIT_AS }, { "core", RLIMIT_CORE }, { "cpu", RLIMIT_CPU }, { "data", RLIMIT_DATA }, { "fsize", RLIMIT_FSIZE },
  { "memlock", RLIMIT_MEMLOCK }, { "nofile", RLIMIT_NOFILE }, { "nproc", RLIMIT_NPROC }, { "stack", RLIMIT_STACK }, { NULL, 0 }
};

static int limit_value (JVal *v, rlim_t *out) {
  if (v->type == J_STR && !strcmp(v->str, "unlimited")) { *out = RLIM_INFINITY; return 1; }
  if (v->type != J_NUM || v->num < 0) return 0;
  *out = (rlim_t)v->num;
  return 1;
}

/* Everything but the pipes and the files, from the request; an error text, or NULL. */
const char *parse_spec (JVal *msg, ChildSpec *s) {
  if (!(s->argv = string_list(jget(msg, "argv"), 0, NULL)) || !s->argv[0] || !s->argv[0][0]) return "bad request: argv";
  const char *cwd = jstr(msg, "cwd");
  if (!cwd || cwd[0] != '/') return "bad request: cwd must be an absolute path";
  s->cwd = strdup(cwd);
  s->envp = build_env(jget(msg, "env"), jget(msg, "envAdd"));
  JVal *user = jget(msg, "user"), *sb = jget(msg, "sandbox"), *v;
  if (user && user->type == J_OBJ) {
    JVal *uid = jget(user, "uid"), *gid = jget(user, "gid");
    if (!uid || uid->type != J_NUM || !gid || gid->type != J_NUM || uid->num < 1 || gid->num < 1) return "bad request: user";
    if (geteuid() != 0) return "a slot user needs a launcher running as root";
    s->hasUser = 1; s->uid = (uid_t)uid->num; s->gid = (gid_t)gid->num;
  }
  if (sb && sb->type == J_OBJ) {
    s->isolated = 1;
    v = jget(sb, "userns");
    s->userns = v && v->type == J_BOOL && v->boolean;
    /* uid 0 inside a user namespace would keep its capabilities after exec, and could undo the mounts. */
    if (s->userns && geteuid() == 0 && !s->hasUser) return "a user namespace as root needs a slot user";
    if (!(s->hide = string_list(jget(sb, "hide"), 1, &s->nhide))) return "bad request: sandbox.hide";
    JVal *binds = jget(sb, "binds");
    int n = binds && binds->type == J_ARR ? binds->n : 0;
    s->binds = xmalloc(sizeof(Bind) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
      const char *src = jstr(binds->items[i], "src"), *dst = jstr(binds->items[i], "dst");
      JVal *ro = jget(binds->items[i], "ro");
      if (!src || !dst || src[0] != '/' || dst[0] != '/') return "bad request: sandbox.binds";
      s->binds[s->nbinds++] = (Bind){ strdup(src), strdup(dst), ro && ro->type == J_BOOL && ro->boolean, -1 };
    }
  }
  if (!(s->cgroupProcs = string_list(jget(msg, "cgroupProcs"), 1, &s->ncgroup))) return "bad request: cgroupProcs";
  if ((v = jget(msg, "nice")) && v->type == J_NUM) { s->hasNice = 1; s->nice = (int)v->num; }
  if ((v = jget(msg, "ioprio")) && v->type == J_OBJ) {
    JVal *c = jget(v, "class"), *l = jget(v, "level");
    if (!c || c->type != J_NUM || !l || l->type != J_NUM) return "bad request: ioprio";
    s->hasIoprio = 1; s->ioClass = (int)c->num; s->ioLevel = (int)l->num;
  }
  if ((v = jget(msg, "rlimits")) && v->type == J_OBJ) {
    for (int i = 0; i < v->n && s->nlimits < MAX_LIMITS; i++) {
      int found = -1;
      for (int k = 0; LIMITS[k].name; k++) if (!strcmp(LIMITS[k].name, v->keys[i])) found = LIMITS[k].resource;
      JVal *pair = v->items[i];
      Limit *l = &s->limits[s->nlimits];
      if (found < 0 || pair->type != J_ARR || pair->n != 2 || !limit_value(pair->items[0], &l->soft) || !limit_value(pair->items[1], &l->hard)) return "bad request: rlimits";
      l->resource = found;
      s->nlimits++;
    }
  }
  return NULL;
}

static int write_file (const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t w = write(fd, text, strlen(text));
  int e = errno;
  close(fd);
  errno = e;
  return w == (ssize_t)strlen(text) ? 0 : -1;
}

/* The only id inside the namespace is the task's own, mapped to itself: never 0. */
int write_id_maps (pid_t pid, ChildSpec *s) {
  unsigned uid = s->hasUser ? s->uid : getuid(), gid = s->hasUser ? s->gid : getgid();
  char path[64], line[64];
  /* Unprivileged: setgroups must be denied before a gid map; as root the slot user drops its groups itself. */
  if (geteuid() != 0) { snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid); if (write_file(path, "deny") != 0) return -1; }
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
  snprintf(line, sizeof line, "%u %u 1\n", uid, uid);
  if (write_file(path, line) != 0) return -1;
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
  snprintf(line, sizeof line, "%u %u 1\n", gid, gid);
  return write_file(path, line);
}

