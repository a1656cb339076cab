/*
 * meshfarm native task launcher: shared declarations. See launcher.c for the protocol and child.c for what a
 * task's process does between fork and exec.
 */
#ifndef MESHFARM_LAUNCHER_H
#define MESHFARM_LAUNCHER_H
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

/* ---- buffers and JSON (json.c) ---- */

typedef struct { char *s; size_t len, cap; } Buf;
void *xmalloc (size_t n);
void buf_put (Buf *b, const char *s, size_t n);
void buf_str (Buf *b, const char *s);
void buf_json_string (Buf *b, const char *s);

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

JVal *json_parse (const char *text);
void jfree (JVal *v);
JVal *jget (JVal *obj, const char *key);
const char *jstr (JVal *obj, const char *key);

/* ---- what a task's child needs, prepared by the parent before fork (child.c) ---- */

typedef struct { char *src, *dst; int ro; int srcFd; } Bind;
typedef struct { int resource; rlim_t soft, hard; } Limit;

#define MAX_LIMITS 16

typedef struct {
  char **argv;
  char **envp;
  char *cwd;
  int fdOut, fdErr;
  int execPipe;      /* write end: a ChildError before exec, or closed by exec (CLOEXEC) */
  int statusPipe;    /* write end, isolated tasks: the task's wait status from its namespace's init */
  int syncFd;        /* read end, user namespaces: EOF once the parent has written the id maps */
  int isolated;      /* own pid + mount namespace, with an init process of ours as pid 1 */
  int userns;        /* ... inside a new user namespace */
  int hasUser;       /* switch to uid/gid (slot users) before exec */
  uid_t uid;
  gid_t gid;
  char **hide;       /* folders covered by an empty tmpfs */
  int nhide;
  Bind *binds;       /* then bound back: the task's folder (rw), its job's folder (ro) */
  int nbinds;
  char **cgroupProcs;/* cgroup.procs files the child writes its own pid into */
  int ncgroup;
  int hasNice, nice;
  int hasIoprio, ioClass, ioLevel;
  Limit limits[MAX_LIMITS];
  int nlimits;
} ChildSpec;

enum { STAGE_SETUP = 1, STAGE_CGROUP, STAGE_LIMITS, STAGE_SANDBOX, STAGE_USER, STAGE_CHDIR, STAGE_EXEC };

/* Written whole (under PIPE_BUF) into the exec pipe when the child cannot get to exec. */
typedef struct { int stage; int err; char what[240]; } ChildError;
/* Written by an isolated task's init when the task's main process has ended. */
typedef struct { int status; long maxrssKb; } ChildStatus;

/* The signal the launcher sends an isolated task's init to have it stop (SIGSTOP) every process it holds. */
#define RELAY_STOP (SIGRTMIN + 2)

/* ---- requests (request.c) ---- */

void set_base_env (char **environ_);
void free_strings (char **v);
/* Fills everything but the pipes and the files from a spawn request; an error text, or NULL. */
const char *parse_spec (JVal *msg, ChildSpec *s);
/* Writes an isolated child's uid/gid maps: the only id inside is the task's own, never 0. */
int write_id_maps (pid_t pid, ChildSpec *s);

/* The task's process ('none' isolation), forked by the launcher: never returns. */
void run_plain_child (ChildSpec *s);
/* Pid 1 of an isolated task's namespaces: sets up the mounts, forks the task and reports its status. */
void run_init_child (ChildSpec *s);

#endif
