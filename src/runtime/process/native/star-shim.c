/*
 * star-shim: starts stars isolated and limited. Per star, one tiny resident process (its init).
 *
 *   agent ──request──▶ launcher (star-shim -Z, one per node)
 *                        └─clone(new pid, uts, ipc, mount namespaces)─▶ init = pid 1 of the star
 *                             makes and joins the star's cgroups (before anything else runs)
 *                             own /proc, private /dev/shm, the star's /tmp; [new network]; hostname
 *                             └─vfork-style clone─▶ program = pid 2: drops to uid/gid,
 *                                                   no_new_privs, chdir, exec
 *
 * The init stays: (1) the star has a real init that forwards SIGTERM and reaps orphans (a
 * program that is pid 1 ignores SIGTERM without a handler), (2) it relays the program's output
 * into rotating log files and writes the star's end to a status file even when the agent is not
 * running (stars outlive agent restarts), and (3) the agent learns the program's host pid and
 * any exec error at once. Two process creations per star, one of them without copying memory:
 * on a virtualized host each fork costs ~0.7 ms of page-table work, and starts run in parallel.
 *
 * Usage: star-shim [options] -- program [args...]
 *   -c FILE   join the cgroup whose cgroup.procs is FILE (repeatable)
 *   -D DIR    create DIR (a cgroup) if missing; -F PATH=VALUE write VALUE into PATH (a cgroup
 *             limit). Both repeatable, done in order before the -c joins: the agent says what to
 *             write (it knows cgroup v1 from v2), the init does it in microseconds.
 *   -H NAME   hostname of the star's uts namespace
 *   -u UID    run the program as UID (and -g GID), with no supplementary groups
 *   -g GID
 *   -d DIR    working directory of the program
 *   -W DIR    working directory, created (0755, owned by the star's user) if missing
 *   -w DIR    the star's home, created as -W is, when the working directory is another
 *   -t DIR    bind-mount DIR on /tmp (created 0700, owned by the star's user, if missing)
 *   -s FILE   when the program ends, write "exit N" or "signal N" to FILE (atomically)
 *   -N        new network namespace with only loopback
 *   -o FILE   the program's stdout goes to FILE (default: inherited), through the init, which
 *             rotates it: FILE → FILE.1 → ... when it reaches -L bytes, keeping -K rotated files
 *   -e FILE   the same for stderr
 *   -L BYTES  rotate a log file at this size (default 10 MiB; 0: never)
 *   -K N      rotated files kept per stream (default 2), so a stream takes at most (N+1)×L
 *   -E K=V    the program's environment (repeatable; if given, the only variables it gets)
 * In this direct mode the process stays as the init's parent and exits with the program's code.
 *
 * Launcher mode: star-shim -Z [SLOTS]. A small resident process per node, started once by the
 * agent: it reads launch requests on stdin and clones a star's init for each (a clone of this
 * tiny process costs well under a millisecond, where the agent's own spawn() blocks its event
 * loop for milliseconds), at most SLOTS (default: the number of CPUs) starting at a time. Protocol, one line each way: requests are "<length>\n" followed by that
 * many bytes of NUL-terminated strings (a request id, then the options above); replies are
 * "started <id> <init pid> <program pid> <init pid>", "error <id> <text>" and, when an init
 * ends, "exit <id> <init pid> exit <code>" or "exit <id> <init pid> signal <number>" (init pid 0:
 * nothing was started, e.g. a request refused after waiting 9 s for a slot).
 * On EOF it exits; running stars carry on (their inits record their ends themselves).
 * The init reports on fd 3 (if open): "started <program host pid> <init host pid>\n" or
 * "error <text>\n". Exit code: the program's, or 128 + the signal that ended it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include "star-shim.h"

#define REPORT_FD 3

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define N_FORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static volatile pid_t forward_to = 0;
static int report_open = 0;

static void report(const char *fmt, ...) {
  if (!report_open) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) {
    if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
    (void)!write(REPORT_FD, buf, (size_t)n);
  }
}

void fail_msg(const char *what, const char *why) {
  report("error %s: %s\n", what, why);
  fprintf(stderr, "star-shim: %s: %s\n", what, why);
  _exit(125);
}

void fail(const char *what) { fail_msg(what, strerror(errno)); }

static void noop(int sig) { (void)sig; }

static void on_signal(int sig) {
  if (forward_to > 0) kill(forward_to, sig);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(path);
  ssize_t n = write(fd, text, strlen(text));
  if (n < 0) fail(path);
  close(fd);
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail("SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail("SIOCSIFFLAGS lo");
  close(s);
}

/* Writes "exit N" / "signal N" for a wait status into buf. */
static void describe(int status, char *buf, size_t len) {
  if (WIFSIGNALED(status)) snprintf(buf, len, "signal %d\n", WTERMSIG(status));
  else snprintf(buf, len, "exit %d\n", WEXITSTATUS(status));
}

/* Parses options into o; returns the index of the program in argv (argc if none). */
static int parse_args(int argc, char **argv, int start, struct opts *o) {
  int i = start;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) return i + 1;
    if (a[0] != '-' || a[1] == 0 || a[2] != 0) return i;
    if (a[1] == 'N' || a[1] == 'P' || a[1] == 'r') {
      if (a[1] == 'N') o->netns = 1;
      if (a[1] == 'P') o->seccomp = 1;
      if (a[1] == 'r') o->readonly = 1;
      continue;
    }
    if (i + 1 >= argc) {
      errno = EINVAL;
      fail("option needs a value");
    }
    const char *v = argv[++i];
    /* Each identity and cgroup option is the agent's to give, once; cgroup paths stay in cgroupfs. */
    if ((a[1] == 'u' && o->set_user) || ((a[1] == 'c' || a[1] == 'D' || a[1] == 'F') && strncmp(v, "/sys/fs/cgroup/", 15) != 0) ||
        (a[1] == 'F' && strstr(v, "/../")) || ((a[1] == 'c' || a[1] == 'D') && strstr(v, "/../"))) {
      errno = EINVAL;
      fail(a);
    }
    switch (a[1]) {
      case 'c':
        if (o->n_cgroups < MAX_CGROUPS) o->cgroups[o->n_cgroups++] = v;
        break;
      case 'D':
        if (o->n_mkdirs < MAX_SETUP) o->mkdirs[o->n_mkdirs++] = v;
        break;
      case 'F':
        if (o->n_writes < MAX_SETUP) o->writes[o->n_writes++] = v;
        break;
      case 'H': o->hostname = v; break;
      case 'd': o->cwd = v; break;
      case 'W': o->cwd = v; o->make_cwd = 1; break;
      case 'w': o->home = v; break;
      case 't': /* the old form of -T /tmp=DIR */
      case 'T':
      case 'X':
      case 'B':
      case 'R': {
        if (o->n_mounts >= MAX_MOUNTS) fail_msg(a, "too many mounts");
        struct mount_op *m = &o->mounts[o->n_mounts++];
        m->fd = -1;
        m->kind = a[1] == 'X' ? MNT_HIDE : a[1] == 'B' ? MNT_BIND_RW : a[1] == 'R' ? MNT_BIND_RO : MNT_SCRATCH;
        char *copy = strdup(v);
        if (!copy) fail("strdup");
        char *eq = strchr(copy, '=');
        if (a[1] == 't') {
          m->src = copy;
          m->dst = "/tmp";
        } else if (a[1] == 'X' || (a[1] == 'T' && !eq)) {
          m->dst = copy;
        } else if (!eq) {
          fail_msg(a, "needs SRC=DST (or DST=SRC for -T)");
        } else {
          *eq = 0;
          /* -T DST=SRC (a scratch place backed by a directory); -B/-R SRC=DST */
          m->src = a[1] == 'T' ? eq + 1 : copy;
          m->dst = a[1] == 'T' ? copy : eq + 1;
        }
        if (m->dst[0] != '/' || (m->src && m->src[0] != '/')) fail_msg(a, "paths must be absolute");
        break;
      }
      case 'C': o->root = v; break;
      case 'k': o->control = v; break;
      case 'n': o->nofile = strtoll(v, NULL, 10); break;
      case 'M': o->scratch_max = strtoll(v, NULL, 10); break;
      case 's': o->status = v; break;
      case 'o': o->out = v; break;
      case 'e': o->err = v; break;
      case 'L': o->log_max = strtoll(v, NULL, 10); break;
      case 'K': o->log_keep = atoi(v); break;
      case 'E':
        if (o->n_env < MAX_ENV) o->env[o->n_env++] = (char *)v;
        break;
      case 'u': o->uid = (uid_t)strtoul(v, NULL, 10); o->set_user = 1; break;
      case 'g': o->gid = (gid_t)strtoul(v, NULL, 10); break;
      default: errno = EINVAL; fail(a);
    }
  }
  return i;
}

static void ensure_dir(const char *path, mode_t mode, const struct opts *o) {
  if (mkdir(path, mode) < 0 && errno != EEXIST) fail(path);
  if (o->set_user && chown(path, o->uid, o->gid) < 0) fail(path);
}

/*
 * A file named relative to its directory, opened before the star's mounts: the init is root
 * and runs in the star's mount namespace, so its later file work (log rotation, the end file)
 * resolves no path through anything the star can change, and follows no symlink.
 */
struct dpath {
  int dir;
  const char *base;
};

static struct dpath dpath_of(const char *path) {
  char parent[4096];
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  if (n >= sizeof parent) {
    errno = ENAMETOOLONG;
    fail(path);
  }
  memcpy(parent, path, n);
  parent[n] = 0;
  int dir = open(slash ? (n ? parent : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) fail(path);
  return (struct dpath){dir, slash ? slash + 1 : path};
}

/* Writes all of buf, going on after interruptions; -1 on an error (a full disk). */
static int write_all(int fd, const char *buf, size_t len) {
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    off += (size_t)w;
  }
  return 0;
}

/* One relayed stream: the program writes into a pipe; the init appends to a rotating file. */
struct relay {
  struct dpath path;
  int in;  /* read end of the program's pipe; -1 when closed */
  int out; /* the log file; -1 if it could not be (re)opened */
  long long size;
  int mid_line; /* the last byte written was not a line's end */
};

static int open_log(struct dpath p, long long *size) {
  int f = openat(p.dir, p.base, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  struct stat st;
  *size = f >= 0 && fstat(f, &st) == 0 ? st.st_size : 0;
  return f;
}

/* The program's `fd` becomes the write end of a pipe whose read end the init relays. */
static void relay_setup(struct relay *r, const char *path, int fd) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) fail("pipe");
  if (dup3(p[1], fd, 0) < 0) fail("dup3");
  close(p[1]);
  r->path = dpath_of(path);
  r->in = p[0];
  r->out = open_log(r->path, &r->size);
  if (r->out < 0) fail(path);
  r->mid_line = 0;
  /* An earlier run's last line without its end is ended here: this run's lines begin anew. */
  char last = '\n';
  int f = r->size > 0 ? openat(r->path.dir, r->path.base, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
  if (f >= 0) {
    if (pread(f, &last, 1, r->size - 1) == 1 && last != '\n' && write_all(r->out, "\n", 1) == 0) r->size += 1;
    close(f);
  }
}

static void rotate(struct relay *r, int keep) {
  char from[300], to[300];
  if (r->out >= 0) close(r->out);
  for (int i = keep - 1; i >= 1; i--) {
    snprintf(from, sizeof from, "%s.%d", r->path.base, i);
    snprintf(to, sizeof to, "%s.%d", r->path.base, i + 1);
    renameat(r->path.dir, from, r->path.dir, to);
  }
  snprintf(to, sizeof to, "%s.1", r->path.base);
  if (keep > 0) renameat(r->path.dir, r->path.base, r->path.dir, to);
  else unlinkat(r->path.dir, r->path.base, 0);
  r->out = open_log(r->path, &r->size); /* may fail (no inodes left): output is dropped, the star goes on */
  /* (A line cut here goes on unstamped in the new file: the reader joins it to its start.) */
}

/* Moves what is in the pipe to the file; returns 0 at EOF. */
static int relay_once(struct relay *r, const struct opts *o) {
  char buf[65536];
  ssize_t n = read(r->in, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
  if (n <= 0) {
    close(r->in);
    r->in = -1;
    return 0;
  }
  if (r->out < 0 || (o->log_max > 0 && r->size > 0 && r->size + n > o->log_max)) rotate(r, o->log_keep);
  if (r->out < 0) return 1;
  /* Each line begins with the time it was read here (`logs --timestamps --since`). */
  char stamp[32];
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  int stamp_len = snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                           tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
  /* Gathered, then written in as few writes as fit (a write per line would cost a chatty star). */
  static char out[2 * 65536];
  size_t used = 0;
  for (ssize_t at = 0; at < n;) {
    char *nl = memchr(buf + at, '\n', (size_t)(n - at));
    ssize_t end = nl ? nl - buf + 1 : n;
    size_t need = (size_t)(end - at) + (r->mid_line ? 0 : (size_t)stamp_len);
    if (used + need > sizeof out) {
      if (write_all(r->out, out, used) < 0) return 1; /* disk full: drop this chunk rather than block the star */
      r->size += (long long)used;
      used = 0;
    }
    if (!r->mid_line) {
      memcpy(out + used, stamp, (size_t)stamp_len);
      used += (size_t)stamp_len;
    }
    memcpy(out + used, buf + at, (size_t)(end - at)); /* a piece is at most 64 KiB: it fits */
    used += (size_t)(end - at);
    r->mid_line = nl == NULL;
    at = end;
  }
  if (used > 0 && write_all(r->out, out, used) == 0) r->size += (long long)used;
  return 1;
}

/* ---- the star's init (pid 1 of its pid namespace) -------------------------------------- */

/*
 * The program is started with a vfork-style clone (CLONE_VM | CLONE_VFORK): no page tables are
 * copied and no copy-on-write faults follow, which on a virtualized host is most of what a fork
 * costs (measured ~0.7 ms per fork here, against 0.04 ms). The child shares our memory until it
 * execs, so everything it needs is prepared before the clone (the program's path looked up in
 * PATH, the /bin/sh fallback's argument list), it makes only system calls, on a stack of its
 * own with a guard page below, and leaves the reason for a failure here.
 */
struct program {
  const struct opts *o;
  const char *path; /* NULL: not found in PATH */
  char **argv, **sh_argv, **envp;
  int out; /* an exec probe's output pipe (stdout and stderr), or -1: the program's own */
};
static const char *volatile prog_step;
static volatile int prog_errno;
#define PROG_STACK (64 * 1024)

/* Whether the star's user may execute this file (by its mode: the user has no groups but its own). */
static int executable_by(const struct opts *o, const struct stat *st) {
  if (!o->set_user) return (st->st_mode & 0111) != 0;
  if (st->st_uid == o->uid) return (st->st_mode & 0100) != 0;
  if (st->st_gid == o->gid) return (st->st_mode & 0010) != 0;
  return (st->st_mode & 0001) != 0;
}

/* Looks `name` up in PATH as execvp does (the program's PATH if it has an environment), taking
   the first file the star's user may run: a match it cannot run is passed over, as the user's
   own shell would. */
static const char *find_program(const struct opts *o, const char *name, char *buf, size_t len) {
  if (strchr(name, '/')) return name;
  const char *path = NULL;
  if (o->n_env > 0) {
    for (int i = 0; i < o->n_env; i++) {
      if (strncmp(o->env[i], "PATH=", 5) == 0) path = o->env[i] + 5;
    }
  } else {
    path = getenv("PATH");
  }
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *seg = path;; seg = strchr(seg, ':') + 1) {
    const char *end = strchr(seg, ':');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    if (n + strlen(name) + 2 <= len) {
      snprintf(buf, len, "%.*s%s%s", (int)n, n ? seg : ".", "/", name);
      struct stat st;
      if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && executable_by(o, &st)) return buf;
    }
    if (!end) return NULL;
  }
}

static int program_main(void *arg) {
  const struct program *p = arg;
  const struct opts *o = p->o;
  /* Its own copy of the signal handlers (no CLONE_SIGHAND): defaults, then unblock. */
  for (size_t i = 0; i < N_FORWARDED; i++) signal(forwarded[i], SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL); /* the init ignores it; the program gets the usual behaviour */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  const char *step = "probe output";
  if (p->out >= 0) {
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul < 0 || dup3(nul, 0, 0) < 0 || dup3(p->out, 1, 0) < 0 || dup3(p->out, 2, 0) < 0) goto bad;
  }
  step = "nofile";
  if (o->nofile > 0) {
    struct rlimit rl = {(rlim_t)o->nofile, (rlim_t)o->nofile};
    if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &rl, NULL) < 0) goto bad;
  }
  step = "setgroups";
  if (o->set_user) {
    /* Raw system calls: the C library's wrappers may coordinate threads, which this child
       (sharing the init's memory) must not do. */
    if (syscall(SYS_setgroups, 0, NULL) < 0) goto bad;
    step = "setgid";
    if (syscall(SYS_setgid, o->gid) < 0) goto bad;
    step = "setuid";
    if (syscall(SYS_setuid, o->uid) < 0) goto bad;
  }
  step = "no_new_privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) goto bad;
  step = "seccomp";
  if (o->seccomp && seccomp_install() < 0) goto bad;
  if (o->cwd) {
    step = "chdir";
    if (chdir(o->cwd) < 0) goto bad;
  }
  step = "exec";
  if (!p->path) {
    errno = ENOENT;
    goto bad;
  }
  execve(p->path, p->argv, p->envp);
  if (errno == ENOEXEC) { /* a script without #!: run it with the shell, as execvp does */
    execve("/bin/sh", p->sh_argv, p->envp);
    errno = ENOEXEC;
  }
bad:
  prog_errno = errno;
  prog_step = step;
  if (p->out >= 0) { /* a check, in a forked child: its reason goes to the agent with its output */
    char why[300];
    int n = snprintf(why, sizeof why, "%s %s: %s", step, strcmp(step, "exec") == 0 ? p->argv[0] : "", strerror(prog_errno));
    if (n > 0) (void)!write(p->out, why, (size_t)n < sizeof why ? (size_t)n : sizeof why - 1);
  }
  _exit(127);
}

/* Starts the program (pid 2), or an exec check (out >= 0); returns once it has exec'd or failed
   (then prog_step is set). */
static pid_t start_program(const struct opts *o, char **argv, int out) {
  static char found[4096];
  int argc = 0;
  while (argv[argc]) argc++;
  struct program p = {o, find_program(o, argv[0], found, sizeof found), argv, calloc((size_t)argc + 2, sizeof(char *)),
                      o->n_env > 0 ? (char **)o->env : environ, out};
  if (!p.sh_argv) fail("calloc");
  p.sh_argv[0] = "/bin/sh";
  p.sh_argv[1] = (char *)p.path;
  for (int i = 1; i < argc; i++) p.sh_argv[i + 1] = argv[i];
  long page = sysconf(_SC_PAGESIZE);
  char *stack = mmap(NULL, PROG_STACK + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED || mprotect(stack, (size_t)page, PROT_NONE) < 0) fail("program stack");
  prog_step = NULL;
  pid_t child = clone(program_main, stack + PROG_STACK + page, CLONE_VM | CLONE_VFORK | SIGCHLD, &p);
  if (child < 0) fail("clone");
  munmap(stack, PROG_STACK + (size_t)page);
  free(p.sh_argv);
  return child;
}

/* ---- exec health checks: run by the init, inside the star, as the star's user ------------- */

/*
 * A check starts with a plain fork, not the program's vfork-style clone: the star's processes
 * run meanwhile, and a vfork child that has already become the star's user could be stopped by
 * them (SIGSTOP), which would stop the init with it. Checks are rare; a fork of the tiny init
 * costs well under a millisecond. Returns -1 (errno set) if no process could be made.
 */
static pid_t start_check(const struct opts *o, char **argv, int out) {
  static char found[4096];
  const char *path = find_program(o, argv[0], found, sizeof found);
  pid_t pid = fork();
  if (pid != 0) return pid;
  int argc = 0;
  while (argv[argc]) argc++;
  char **sh_argv = calloc((size_t)argc + 2, sizeof(char *));
  if (!sh_argv) _exit(127);
  sh_argv[0] = "/bin/sh";
  sh_argv[1] = (char *)path;
  for (int i = 1; i < argc; i++) sh_argv[i + 1] = argv[i];
  struct program p = {o, path, argv, sh_argv, o->n_env > 0 ? (char **)o->env : environ, out};
  program_main(&p);
  _exit(127);
}

/*
 * The agent asks the star's init to run a check, over a unix socket in the star's directory
 * (made by root, 0600, in a directory only root may enter; the init also refuses peers that are
 * not root). The check starts like the program: already in the star's cgroups and namespaces,
 * as its user, with no-new-privs, the filter and the limits, so nothing of the star is ever
 * executed with root's powers. Request: "<length>\n" then NUL-terminated argv strings. Reply,
 * then close: "exit <code>\n" or "signal <n>\n", then the last bytes of its output. If the agent
 * hangs up first (its timeout), the check's whole process group is killed.
 */
struct probe {
  pid_t pid;
  int client, out;
  char tail[300];
  size_t tail_len;
};

static int control_listen(const char *path) {
  struct dpath p = dpath_of(path);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (strlen(p.base) >= sizeof a.sun_path) fail_msg(path, "name too long");
  strcpy(a.sun_path, p.base);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (s < 0 || here < 0 || fchdir(p.dir) < 0) fail(path);
  unlink(p.base); /* the last run's */
  mode_t old = umask(077);
  int r = bind(s, (struct sockaddr *)&a, sizeof a);
  umask(old);
  if (fchdir(here) < 0 || r < 0 || listen(s, 4) < 0) fail(path);
  close(here);
  close(p.dir);
  return s;
}

static void probe_reply(struct probe *pr, const char *head) {
  if (pr->client < 0) return;
  (void)!write(pr->client, head, strlen(head));
  if (pr->tail_len) (void)!write(pr->client, pr->tail, pr->tail_len);
  close(pr->client);
  pr->client = -1;
}

/* Reads the request of a new connection (the agent writes it at once; 1 s at most). */
static char **probe_request(int c, char *buf, size_t cap) {
  struct timeval tv = {1, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t len = 0, want = 0, head = 0;
  for (;;) {
    ssize_t n = read(c, buf + len, cap - 1 - len);
    if (n <= 0) return NULL;
    len += (size_t)n;
    char *nl = memchr(buf, '\n', len);
    if (!nl) {
      if (len >= 32) return NULL;
      continue;
    }
    head = (size_t)(nl - buf) + 1;
    want = strtoul(buf, NULL, 10);
    if (want == 0 || head + want > cap - 1) return NULL;
    if (len >= head + want) break;
  }
  char *payload = buf + head;
  if (payload[want - 1] != 0) return NULL;
  size_t argc = 0;
  for (size_t k = 0; k < want; k++) argc += payload[k] == 0;
  char **argv = calloc(argc + 1, sizeof *argv);
  if (!argv) return NULL;
  size_t i = 0;
  for (size_t k = 0; k < want; k += strlen(payload + k) + 1) argv[i++] = payload + k;
  return argv;
}

static void probe_accept(int ctl, struct probe *pr, const struct opts *o) {
  int c = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != 0) {
    close(c);
    return;
  }
  if (pr->pid > 0) {
    (void)!write(c, "error a check is already running\n", 33);
    close(c);
    return;
  }
  static char buf[65536];
  char **argv = probe_request(c, buf, sizeof buf);
  int p[2];
  if (!argv || !argv[0] || pipe2(p, O_CLOEXEC) < 0) {
    (void)!write(c, "error malformed request\n", 24);
    close(c);
    free(argv);
    return;
  }
  pr->client = c;
  pr->tail_len = 0;
  pid_t pid = start_check(o, argv, p[1]);
  int fork_errno = errno;
  close(p[1]);
  free(argv);
  if (pid < 0) { /* the star at its pids limit, say: the check fails, the init goes on */
    char head[200];
    snprintf(head, sizeof head, "exit 127\ncannot start the check: %s", strerror(fork_errno));
    close(p[0]);
    probe_reply(pr, head);
    return;
  }
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  pr->pid = pid;
  pr->out = p[0];
}

/* Keeps the last bytes of the check's output; returns 0 at EOF (or nothing more for now). */
static int probe_output(struct probe *pr) {
  char buf[4096];
  ssize_t n = read(pr->out, buf, sizeof buf);
  if (n < 0 && errno == EINTR) return 1;
  if (n < 0 && errno == EAGAIN) return 0;
  if (n <= 0) {
    close(pr->out);
    pr->out = -1;
    return 0;
  }
  size_t keep = sizeof pr->tail;
  if ((size_t)n >= keep) {
    memcpy(pr->tail, buf + n - keep, keep);
    pr->tail_len = keep;
  } else {
    size_t drop = pr->tail_len + (size_t)n > keep ? pr->tail_len + (size_t)n - keep : 0;
    memmove(pr->tail, pr->tail + drop, pr->tail_len - drop);
    memcpy(pr->tail + pr->tail_len - drop, buf, (size_t)n);
    pr->tail_len = pr->tail_len - drop + (size_t)n;
  }
  return 1;
}

static void probe_ended(struct probe *pr, int status) {
  kill(-pr->pid, SIGKILL); /* what it left in its group */
  if (pr->out >= 0) {
    while (probe_output(pr)) {
    }
    if (pr->out >= 0) close(pr->out);
    pr->out = -1;
  }
  char head[32];
  describe(status, head, sizeof head);
  probe_reply(pr, head);
  pr->pid = 0;
}

/* The end file's room, taken when the star starts (END_ROOM bytes written to FILE.tmp): its end
   is then written over blocks it already has, so a disk that filled up meanwhile cannot leave
   an empty or partial end record (issue 9). Returns the open file, or -1. */
#define END_ROOM 32
static int reserve_end(struct dpath p) {
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", p.base);
  int fd = openat(p.dir, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return -1;
  char room[END_ROOM];
  memset(room, ' ', sizeof room);
  if (write(fd, room, sizeof room) != (ssize_t)sizeof room || fsync(fd) != 0) {
    close(fd);
    unlinkat(p.dir, tmp, 0);
    return -1;
  }
  return fd;
}

/* Writes the end record: into its reserved room if it has one, else anew; a record not wholly
   written is never put in place (the agent keeps the end in memory, docs/reliability.md). */
static void write_end(struct dpath p, int reserved, const char *end) {
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", p.base);
  int fd = reserved >= 0 ? reserved : openat(p.dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return;
  size_t n = strlen(end);
  int ok = pwrite(fd, end, n, 0) == (ssize_t)n && ftruncate(fd, (off_t)n) == 0 && fsync(fd) == 0;
  close(fd);
  if (ok) renameat(p.dir, tmp, p.dir, p.base);
  else unlinkat(p.dir, tmp, 0);
}

/*
 * Runs in the clone made by the launcher: pid 1 of the star's new pid namespace, with new uts
 * and ipc namespaces. Makes and joins the star's cgroups before anything else, opens its logs,
 * end file and control socket in the host's mount namespace, then makes its own mount namespace
 * and the star's view of the file system (sandbox.c), starts the program, then forwards signals
 * to it, reaps orphans, relays its output into the rotating log files, runs exec health checks
 * and records how the program ended.
 */
static int init_main(int argc, char **argv) {
  struct opts o;
  memset(&o, 0, sizeof o);
  /* A report to a launcher that is gone must not kill the init: the star lives on. */
  signal(SIGPIPE, SIG_IGN);
  o.log_max = -1; /* unset: defaults after parsing */
  o.log_keep = -1;
  report_open = fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) == 0;
  int prog = parse_args(argc, argv, 1, &o);
  if (prog >= argc) {
    errno = EINVAL;
    fail("no program given after --");
  }
  o.argv = &argv[prog];

  /* 1. The star's cgroups: made, limited, and joined before anything else runs. */
  for (int d = 0; d < o.n_mkdirs; d++) {
    if (mkdir(o.mkdirs[d], 0755) == 0) continue;
    if (errno != EEXIST) fail(o.mkdirs[d]);
    /* There already: it must be empty (a group with processes is someone else's star, or a
       run not yet cleaned up; joining it would share its limits and its fate). Counted by the
       pids controller, which sees every task (cgroup.procs would show this pid namespace's). */
    char current[4200], n[32] = {0};
    snprintf(current, sizeof current, "%s/pids.current", o.mkdirs[d]);
    int pf = open(current, O_RDONLY | O_CLOEXEC);
    if (pf >= 0 && read(pf, n, sizeof n - 1) > 0 && atoi(n) > 0) fail_msg(o.mkdirs[d], "this cgroup already has processes (a star of the same name on another node of this host, or an earlier run still ending): remove them, or use another name");
    if (pf >= 0) close(pf);
  }
  for (int w = 0; w < o.n_writes; w++) {
    char path[4096];
    const char *eq = strchr(o.writes[w], '=');
    if (!eq || (size_t)(eq - o.writes[w]) >= sizeof path) {
      errno = EINVAL;
      fail(o.writes[w]);
    }
    memcpy(path, o.writes[w], (size_t)(eq - o.writes[w]));
    path[eq - o.writes[w]] = 0;
    write_file(path, eq + 1);
  }
  for (int c = 0; c < o.n_cgroups; c++) write_file(o.cgroups[c], "0");

  /* 2. The star's own directories (made here as root, in microseconds), its logs, end file and
     control socket: opened by directory fds of the host's mount namespace, so they stay
     writable when the star's view is made read-only, and no path the star could change leads
     to them. */
  for (int i = 0; i < o.n_mounts; i++) {
    if (o.mounts[i].kind == MNT_SCRATCH && o.mounts[i].src) ensure_dir(o.mounts[i].src, 0700, &o);
  }
  if (o.cwd && o.make_cwd) ensure_dir(o.cwd, 0700, &o);
  if (o.home) ensure_dir(o.home, 0700, &o);
  struct dpath end_file = {-1, NULL};
  int end_room = -1;
  if (o.status) {
    end_file = dpath_of(o.status);
    unlinkat(end_file.dir, end_file.base, 0);
    end_room = reserve_end(end_file);
  }
  if (o.log_max < 0) o.log_max = 10LL << 20;
  if (o.log_keep < 0) o.log_keep = 2;
  struct relay relays[2];
  int n_relays = 0;
  if (o.out) relay_setup(&relays[n_relays++], o.out, 1);
  if (o.err) relay_setup(&relays[n_relays++], o.err, 2);
  int ctl = o.control ? control_listen(o.control) : -1;
  struct dpath ctl_dir = o.control ? dpath_of(o.control) : (struct dpath){-1, NULL};
  struct probe probe = {0, -1, -1, {0}, 0};
  if (o.seccomp) seccomp_prepare();

  /* 3. Host pids for the agent, read while the host's /proc is still the one mounted. */
  char self[32] = "0";
  ssize_t sl = readlink("/proc/self", self, sizeof self - 1);
  self[sl > 0 ? sl : 1] = 0;
  int kids_fd = open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);

  /* 4. Its own mount namespace and view of the file system, network, hostname. */
  if (unshare(CLONE_NEWNS) < 0) fail("mount namespace");
  sandbox_setup(&o);
  if (o.netns) {
    if (unshare(CLONE_NEWNET) < 0) fail("unshare network");
    loopback_up();
  }
  if (o.hostname && sethostname(o.hostname, strlen(o.hostname)) < 0) fail("sethostname");

  /* 5. Signals (blocked since the clone): a pid namespace's init only receives signals it has
     handlers for, so no-op handlers, and the signals taken from a signalfd in the loop below. */
  for (size_t i = 0; i < N_FORWARDED; i++) signal(forwarded[i], noop);
  signal(SIGCHLD, noop);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  int sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) fail("signalfd");

  /* 6. The program (pid 2); clone returns once it has exec'd or failed. */
  pid_t child = start_program(&o, o.argv, -1);
  if (prog_step) {
    const char *what = strcmp(prog_step, "exec") == 0 ? o.argv[0] : strcmp(prog_step, "chdir") == 0 ? o.cwd : "";
    report("error %s %s: %s\n", prog_step, what, strerror(prog_errno));
    _exit(127);
  }
  char kids[64];
  ssize_t kn = kids_fd >= 0 ? pread(kids_fd, kids, sizeof kids - 1, 0) : -1;
  kids[kn > 0 ? kn : 0] = 0;
  report("started %d %s\n", atoi(kids), self);
  if (report_open) close(REPORT_FD);
  if (kids_fd >= 0) close(kids_fd);
  /* Only the star holds the pipes' write ends now: EOF comes when the star is gone. */
  if (n_relays > 0) {
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (o.out) dup3(devnull, 1, 0);
    if (o.err) dup3(devnull, 2, 0);
    close(devnull);
  }

  /* 7. Until the program ends: forward signals, reap orphans, relay the logs, run checks. Then
     end the rest of the namespace, take the last bytes, and record the end. */
  int status = 0, done = 0;
  for (;;) {
    struct pollfd pf[6];
    int np = 0;
    for (int r = 0; r < n_relays; r++) {
      if (relays[r].in >= 0) pf[np++] = (struct pollfd){.fd = relays[r].in, .events = POLLIN};
    }
    int open_relays = np;
    if (done && open_relays == 0) break;
    pf[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    int at_ctl = -1, at_client = -1, at_out = -1;
    if (ctl >= 0) {
      at_ctl = np;
      pf[np++] = (struct pollfd){.fd = ctl, .events = POLLIN};
    }
    if (probe.client >= 0) {
      at_client = np;
      pf[np++] = (struct pollfd){.fd = probe.client, .events = POLLIN}; /* the agent hangs up: kill it */
    }
    if (probe.out >= 0) {
      at_out = np;
      pf[np++] = (struct pollfd){.fd = probe.out, .events = POLLIN};
    }
    /* Once the program is gone, so is every writer (killed below); wait a little for the rest. */
    int ready_n = poll(pf, (nfds_t)np, done ? 1000 : -1);
    if (ready_n < 0 && errno == EINTR) continue;
    if (ready_n == 0 && done) break;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      if (si.ssi_signo != SIGCHLD) {
        if (!done) kill(child, (int)si.ssi_signo);
        continue;
      }
      int st;
      pid_t p;
      while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        if (p == probe.pid) probe_ended(&probe, st);
        if (p != child || done) continue;
        status = st;
        done = 1;
        kill(-1, SIGKILL); /* whatever the program left behind in its namespace (checks too) */
        if (ctl >= 0) {
          close(ctl);
          ctl = -1;
          unlinkat(ctl_dir.dir, ctl_dir.base, 0);
        }
      }
    }
    if (at_out >= 0 && probe.out >= 0 && (pf[at_out].revents & (POLLIN | POLLHUP | POLLERR))) probe_output(&probe);
    if (at_client >= 0 && probe.client >= 0 && (pf[at_client].revents & (POLLIN | POLLHUP | POLLERR))) {
      close(probe.client); /* the agent gave up (its timeout): the check goes, with its group */
      probe.client = -1;
      if (probe.pid > 0) kill(-probe.pid, SIGKILL);
    }
    if (at_ctl >= 0 && ctl >= 0 && (pf[at_ctl].revents & POLLIN)) probe_accept(ctl, &probe, &o);
    for (int r = 0; r < open_relays; r++) {
      if (!(pf[r].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (int k = 0; k < n_relays; k++) {
        if (relays[k].in == pf[r].fd) relay_once(&relays[k], &o);
      }
    }
  }
  char end[32];
  describe(status, end, sizeof end);
  if (o.status) write_end(end_file, end_room, end);
  /* Leaving ends the namespace. */
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* A new process that is pid 1 of a new pid namespace, in new uts and ipc namespaces (its mount
   namespace it makes itself, once its files in the host's are open):
   fork semantics (returns 0 in the child), through the raw system call since the C library's
   clone() wants a separate stack. Every argument after the flags is 0, so the architectures'
   different argument orders do not matter. Unlike fork(), this skips the C library's fork
   bookkeeping (atfork handlers, resetting malloc's and stdio's locks, the thread's cached id):
   correct only because this program never starts a thread. */
static pid_t clone_star(void) {
  return (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD, NULL, NULL, NULL, 0);
}

/* In the new child: every signal blocked (a pid namespace's init would drop those it has no
   handler for; blocked, they wait for the init's signalfd), default handlers, its own session,
   fd 3 = report (if any). */
static void star_child_setup(int report_fd, int quiet_stdio) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  setsid();
  if (quiet_stdio) {
    int devnull = open("/dev/null", O_RDWR);
    dup3(devnull, 0, 0);
    dup3(devnull, 1, 0);
    dup3(devnull, 2, 0);
    if (devnull > 2) close(devnull);
  }
  if (report_fd >= 0 && report_fd != REPORT_FD) dup3(report_fd, REPORT_FD, 0);
}

/*
 * Direct mode (star-shim [options] -- program): one star, with this process as the init's
 * parent, waiting for it and exiting with the program's code. Used for the isolate host, which
 * gets extra file descriptors (inherited as they are).
 */
static int direct_main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  int has_report = fcntl(REPORT_FD, F_GETFD) >= 0;
  report_open = has_report;
  for (size_t s = 0; s < N_FORWARDED; s++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(forwarded[s], &sa, NULL);
  }
  pid_t init = clone_star();
  if (init < 0) fail("clone");
  if (init == 0) {
    star_child_setup(has_report ? REPORT_FD : -1, 0);
    _exit(init_main(argc, argv));
  }
  forward_to = init;
  if (has_report) close(REPORT_FD);
  int st = 0;
  while (waitpid(init, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* ---- launcher mode (-Z) ---------------------------------------------------------------- */

struct child {
  char id[96];
  pid_t pid;
  long long cloned_ms; /* when it was cloned (monotonic) */
  int report; /* read end of the shim's report pipe; -1 once forwarded */
};

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct child *children;
static size_t n_children, cap_children;
static int zyg_chld[2] = {-1, -1};

static void zyg_on_chld(int sig) {
  (void)sig;
  int e = errno;
  (void)!write(zyg_chld[1], "", 1);
  errno = e;
}

/* One reply line, in one write (shorter than PIPE_BUF, so never interleaved). */
static void say(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  if (buf[n - 1] != '\n') buf[n++] = '\n';
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(1, buf + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) _exit(0); /* the agent is gone */
    off += w;
  }
}

/* Forwards the shim's report ("started ..." / "error ..."), once. */
static void forward_report(struct child *c, int at_exit) {
  if (c->report < 0) return;
  char line[600];
  ssize_t n = read(c->report, line, sizeof line - 1);
  if (n < 0 && errno == EAGAIN && !at_exit) return;
  close(c->report);
  c->report = -1;
  if (n <= 0) {
    say("error %s the launcher ended without a report", c->id);
    return;
  }
  line[n] = 0;
  char *nl = strchr(line, '\n');
  if (nl) *nl = 0;
  if (strncmp(line, "started ", 8) == 0) say("started %s %d %s", c->id, (int)c->pid, line + 8);
  else if (strncmp(line, "error ", 6) == 0) say("error %s %s", c->id, line + 6);
  else say("error %s unexpected report: %s", c->id, line);
}

static void launch_request(char *payload, size_t len) {
  size_t argc = 0;
  for (size_t k = 0; k < len; k++) if (payload[k] == 0) argc++;
  if (argc < 2 || payload[len - 1] != 0) {
    say("error ? malformed request");
    return;
  }
  char **argv = calloc(argc + 2, sizeof *argv);
  if (!argv) _exit(1);
  const char *id = payload;
  argv[0] = "star-shim";
  size_t n = 1;
  for (size_t k = strlen(payload) + 1; k < len; k += strlen(payload + k) + 1) argv[n++] = payload + k;
  int rep[2];
  if (pipe2(rep, O_CLOEXEC) < 0) {
    say("error %s pipe: %s", id, strerror(errno));
    say("exit %s 0 exit 125", id);
    free(argv);
    return;
  }
  pid_t pid = clone_star();
  if (pid < 0) {
    say("error %s clone: %s", id, strerror(errno));
    say("exit %s 0 exit 125", id);
    close(rep[0]);
    close(rep[1]);
    free(argv);
    return;
  }
  if (pid == 0) {
    /* The star's init: fd 3 = report, nothing else of ours. */
    star_child_setup(rep[1], 1);
    if (close_range(REPORT_FD + 1, ~0U, 0) < 0) {
      for (int fd = REPORT_FD + 1; fd < 4096; fd++) close(fd);
    }
    _exit(init_main((int)n, argv));
  }
  close(rep[1]);
  fcntl(rep[0], F_SETFL, O_NONBLOCK);
  if (n_children == cap_children) {
    cap_children = cap_children ? cap_children * 2 : 64;
    children = realloc(children, cap_children * sizeof *children);
    if (!children) _exit(1);
  }
  struct child *c = &children[n_children++];
  snprintf(c->id, sizeof c->id, "%s", id);
  c->pid = pid;
  c->cloned_ms = now_ms();
  c->report = rep[0];
  free(argv);
}

/* Requests waiting for a start slot (see zygote_main). */
struct queued {
  char *payload;
  size_t len;
  long long at_ms;
};
static struct queued *queue;
static size_t q_head, q_len, q_cap;

static void enqueue(const char *payload, size_t len) {
  if (q_head + q_len == q_cap) {
    if (q_head > 0) {
      memmove(queue, queue + q_head, q_len * sizeof *queue);
      q_head = 0;
    } else {
      q_cap = q_cap ? q_cap * 2 : 64;
      queue = realloc(queue, q_cap * sizeof *queue);
      if (!queue) _exit(1);
    }
  }
  char *copy = malloc(len);
  if (!copy) _exit(1);
  memcpy(copy, payload, len);
  queue[q_head + q_len++] = (struct queued){copy, len, now_ms()};
}

/* A start holds its slot until it reports, or for SLOT_MS at most (one that hangs, say in a
   mount, must not hold up the node's other starts). */
#define SLOT_MS 1000
static size_t starting(void) {
  size_t n = 0;
  long long now = now_ms();
  for (size_t k = 0; k < n_children; k++) n += children[k].report >= 0 && now - children[k].cloned_ms < SLOT_MS;
  return n;
}

/* Starts queued requests while start slots are free. One that waited longer than the agent
   waits for a start (10 s) is refused rather than started for nobody. */
#define QUEUE_MS 9000
static void dispatch(size_t slots) {
  for (size_t busy = starting(); busy < slots && q_len > 0;) {
    struct queued *q = &queue[q_head++];
    q_len--;
    if (now_ms() - q->at_ms > QUEUE_MS) {
      say("error %s the node's launcher was busy for %d s", q->payload, QUEUE_MS / 1000);
      say("exit %s 0 exit 125", q->payload); /* nothing started: the agent can forget it */
    } else {
      launch_request(q->payload, q->len);
      busy++;
    }
    free(q->payload);
  }
}

static void reap(void) {
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
    for (size_t k = 0; k < n_children; k++) {
      if (children[k].pid != p) continue;
      forward_report(&children[k], 1);
      if (WIFSIGNALED(st)) say("exit %s %d signal %d", children[k].id, (int)p, WTERMSIG(st));
      else say("exit %s %d exit %d", children[k].id, (int)p, WEXITSTATUS(st));
      children[k] = children[--n_children];
      break;
    }
  }
}

/*
 * At most `slots` stars are between their clone and their report at a time (default: one per
 * CPU); further requests wait here in order. With every start let loose at once, each one's
 * work gets a fair share of the CPUs and all of them finish late together; in order, each
 * finishes as early as the CPUs allow, so the typical start of a burst is about twice as fast.
 */
static int zygote_main(size_t slots) {
  signal(SIGPIPE, SIG_IGN);
  if (pipe2(zyg_chld, O_CLOEXEC | O_NONBLOCK) < 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = zyg_on_chld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  size_t cap = 1 << 16, len = 0;
  char *in = malloc(cap);
  if (!in) return 1;
  for (;;) {
    size_t np = 0;
    struct pollfd *pf = calloc(n_children + 2, sizeof *pf);
    if (!pf) return 1;
    pf[np++] = (struct pollfd){.fd = 0, .events = POLLIN};
    pf[np++] = (struct pollfd){.fd = zyg_chld[0], .events = POLLIN};
    for (size_t k = 0; k < n_children; k++) {
      if (children[k].report >= 0) pf[np++] = (struct pollfd){.fd = children[k].report, .events = POLLIN};
    }
    int r = poll(pf, (nfds_t)np, q_len > 0 ? 50 : -1); /* queued: look again when a slot times out */
    if (r < 0 && errno != EINTR) return 1;
    short stdin_ev = r > 0 ? pf[0].revents : 0;
    free(pf);
    for (size_t k = 0; k < n_children; k++) forward_report(&children[k], 0);
    char drain[64];
    while (read(zyg_chld[0], drain, sizeof drain) > 0) {
    }
    reap();
    dispatch(slots);
    if (!(stdin_ev & (POLLIN | POLLHUP | POLLERR))) continue;
    if (len == cap) {
      cap *= 2;
      in = realloc(in, cap);
      if (!in) return 1;
    }
    ssize_t n = read(0, in + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0; /* the agent is gone: running shims carry on by themselves */
    len += (size_t)n;
    /* Frames: "<length>\n" then <length> bytes. */
    for (;;) {
      char *nl = memchr(in, '\n', len);
      if (!nl) break;
      size_t want = strtoul(in, NULL, 10);
      size_t head = (size_t)(nl - in) + 1;
      if (want == 0 || want > (64u << 20)) return 1;
      if (len - head < want) {
        if (head + want > cap) {
          cap = head + want;
          in = realloc(in, cap);
          if (!in) return 1;
        }
        break;
      }
      enqueue(in + head, want);
      memmove(in, in + head + want, len - head - want);
      len -= head + want;
    }
    dispatch(slots);
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "-Z") == 0) {
    long slots = argc >= 3 ? strtol(argv[2], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    return zygote_main(slots > 0 ? (size_t)slots : 1);
  }
  return direct_main(argc, argv);
}
