/* What the parts of star-shim share: the options of one star, and how a setup step fails. */
#ifndef STAR_SHIM_H
#define STAR_SHIM_H
#include <sys/types.h>

#define MAX_CGROUPS 8
#define MAX_SETUP 64
#define MAX_ENV 1024
#define MAX_MOUNTS 48

/* One change to the star's view of the file system (sandbox.c). */
enum mount_kind { MNT_HIDE, MNT_SCRATCH, MNT_BIND_RW, MNT_BIND_RO };
struct mount_op {
  enum mount_kind kind;
  const char *src; /* bind source, or a scratch place's directory (NULL: tmpfs) */
  const char *dst; /* where the star sees it */
  int fd;          /* the source, opened before anything covers it */
};

struct opts {
  const char *cgroups[MAX_CGROUPS];
  int n_cgroups;
  const char *hostname, *cwd, *home, *status, *out, *err, *control, *root;
  char *env[MAX_ENV + 1];
  int n_env;
  uid_t uid;
  gid_t gid;
  int set_user, netns, make_cwd, readonly, seccomp;
  long long nofile;      /* RLIMIT_NOFILE of the program (0: inherited) */
  long long scratch_max; /* size of tmpfs scratch places and /dev/shm (0: 64 MiB) */
  const char *mkdirs[MAX_SETUP];
  int n_mkdirs;
  const char *writes[MAX_SETUP];
  int n_writes;
  struct mount_op mounts[MAX_MOUNTS];
  int n_mounts;
  long long log_max;
  int log_keep;
  char **argv;
};

/* Reports "error <what>: <errno text>" to the launcher and exits (a start that cannot be). */
void fail(const char *what);
/* Like fail, with a message of our own instead of errno's. */
void fail_msg(const char *what, const char *why);

void sandbox_setup(struct opts *o);
void seccomp_prepare(void);
int seccomp_install(void);

#endif
