/*
 * star-shim: starts one star isolated and limited, and stays as its tiny parent.
 *
 *   agent ──spawn──▶ shim ─ joins the star's cgroups (before anything else runs)
 *                     │    unshare(uts, ipc, pid[, net]); hostname
 *                     └─fork─▶ init (pid 1 of the star's pid ns): own mount ns, /proc, /tmp
 *                               └─fork─▶ program (pid 2): drops to uid/gid, no_new_privs, exec
 *
 * The shim and the init are small static programs (well under 1 MB resident between them); they
 * stay so that (1) the star has a real init that forwards SIGTERM and reaps orphans, (2) its end
 * is written to a status file even when the agent is not running (stars outlive agent
 * restarts), and (3) the agent learns the program's host pid and any exec error at once.
 *
 * Usage: star-shim [options] -- program [args...]
 *   -c FILE   join the cgroup whose cgroup.procs is FILE (repeatable, before unshare)
 *   -H NAME   hostname of the star's uts namespace
 *   -u UID    run the program as UID (and -g GID), with no supplementary groups
 *   -g GID
 *   -d DIR    working directory of the program
 *   -W DIR    working directory, created (0755, owned by the star's user) if missing
 *   -t DIR    bind-mount DIR on /tmp (created 0700, owned by the star's user, if missing)
 *   -s FILE   when the program ends, write "exit N" or "signal N" to FILE (atomically)
 *   -N        new network namespace with only loopback
 *   -o FILE   the program's stdout goes to FILE (default: inherited), through the shim, which
 *             rotates it: FILE → FILE.1 → ... when it reaches -L bytes, keeping -K rotated files
 *   -e FILE   the same for stderr
 *   -L BYTES  rotate a log file at this size (default 10 MiB; 0: never)
 *   -K N      rotated files kept per stream (default 2), so a stream takes at most (N+1)×L
 *   -E K=V    the program's environment (repeatable; if given, the only variables it gets)
 *   -D DIR    create DIR (a cgroup) if missing; -F PATH=VALUE write VALUE into PATH (a cgroup
 *             limit). Both repeatable, done in order before the -c joins: the agent says what to
 *             write (it knows cgroup v1 from v2), the shim does it in microseconds.
 *
 * Launcher mode: star-shim -Z. A small resident process per node, started once by the agent:
 * it reads launch requests on stdin and forks a shim for each (a fork of this tiny process costs
 * ~0.1 ms, where the agent's own spawn() blocks its event loop for milliseconds). Protocol, one
 * line each way: requests are "<length>\n" followed by that many bytes of NUL-terminated
 * strings (a request id, then shim arguments); replies are "started <id> <shim pid> <program
 * pid> <init pid>", "error <id> <text>" and, when a shim ends, "exit <id> <shim pid> exit <code>"
 * or "exit <id> <shim pid> signal <number>".
 * On EOF it exits; running shims carry on (they record their end themselves).
 * Reports on fd 3 (if open): "started <program host pid> <init host pid>\n" or "error <text>\n".
 * Exit code: the program's, or 128 + the signal that ended it.
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
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CGROUPS 8
#define MAX_SETUP 64
#define MAX_ENV 1024
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

static void fail(const char *what) {
  report("error %s: %s\n", what, strerror(errno));
  fprintf(stderr, "star-shim: %s: %s\n", what, strerror(errno));
  _exit(125);
}

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

struct opts {
  const char *cgroups[MAX_CGROUPS];
  int n_cgroups;
  const char *hostname, *cwd, *tmp, *status, *out, *err;
  char *env[MAX_ENV + 1];
  int n_env;
  uid_t uid;
  gid_t gid;
  int set_user, netns, make_cwd;
  const char *mkdirs[MAX_SETUP];
  int n_mkdirs;
  const char *writes[MAX_SETUP];
  int n_writes;
  long long log_max;
  int log_keep;
  char **argv;
};

/* pid 2: the program. */
static void run_program(const struct opts *o, int err_fd) {
  sigset_t none;
  sigemptyset(&none);
  for (size_t i = 0; i < N_FORWARDED; i++) signal(forwarded[i], SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL); /* the shim ignores it; the program gets the usual behaviour */
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  const char *step = "setgroups";
  if (o->set_user) {
    if (setgroups(0, NULL) < 0) goto bad;
    step = "setgid";
    if (setgid(o->gid) < 0) goto bad;
    step = "setuid";
    if (setuid(o->uid) < 0) goto bad;
  }
  step = "no_new_privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) goto bad;
  if (o->cwd) {
    step = "chdir";
    if (chdir(o->cwd) < 0) goto bad;
  }
  step = "exec";
  if (o->n_env > 0) execvpe(o->argv[0], o->argv, (char *const *)o->env);
  else execvp(o->argv[0], o->argv);
bad:;
  char msg[300];
  int n = snprintf(msg, sizeof msg, "%s %s: %s", step, step[0] == 'e' ? o->argv[0] : (o->cwd ? o->cwd : ""), strerror(errno));
  (void)!write(err_fd, msg, (size_t)n);
  _exit(127);
}

/* pid 1 of the star's pid namespace. */
static void run_init(const struct opts *o, int ready_fd, int status_fd) {
  /* Our own mount namespace (the shim keeps the host's, so its /proc and paths stay the host's). */
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
    dprintf(ready_fd, "mount namespace: %s", strerror(errno));
    _exit(125);
  }
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
    dprintf(ready_fd, "mount /proc: %s", strerror(errno));
    _exit(125);
  }
  /* A private /dev/shm too (charged to the star's memory), so stars share no scratch space. */
  struct stat shm;
  if (stat("/dev/shm", &shm) == 0 && mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") < 0) {
    dprintf(ready_fd, "mount /dev/shm: %s", strerror(errno));
    _exit(125);
  }
  if (o->tmp && mount(o->tmp, "/tmp", NULL, MS_BIND | MS_REC, NULL) < 0) {
    dprintf(ready_fd, "bind %s on /tmp: %s", o->tmp, strerror(errno));
    _exit(125);
  }
  if (o->netns) loopback_up();

  /* A pid namespace's init only receives signals it has handlers for: install no-op handlers,
     then block everything and take signals one by one with sigwaitinfo. */
  for (size_t i = 0; i < N_FORWARDED; i++) signal(forwarded[i], noop);
  signal(SIGCHLD, noop);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  int errp[2];
  if (pipe2(errp, O_CLOEXEC) < 0) _exit(125);
  pid_t prog = fork();
  if (prog < 0) _exit(125);
  if (prog == 0) {
    close(errp[0]);
    close(ready_fd);
    close(status_fd);
    run_program(o, errp[1]);
  }
  close(errp[1]);
  char msg[300];
  ssize_t n = read(errp[0], msg, sizeof msg - 1);
  close(errp[0]);
  if (n > 0) {
    (void)!write(ready_fd, msg, (size_t)n);
    _exit(127);
  }
  (void)!write(ready_fd, "", 0);
  close(ready_fd); /* EOF with nothing read: the program runs */

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      kill(prog, sig);
      continue;
    }
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
      if (p == prog) {
        char buf[32];
        describe(status, buf, sizeof buf);
        (void)!write(status_fd, buf, strlen(buf));
        /* Leaving ends the namespace: the kernel kills whatever the program left behind. */
        _exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
      }
    }
  }
}

static pid_t first_child_of(pid_t pid) {
  char path[64], buf[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
  for (int i = 0; i < 200; i++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      buf[n] = 0;
      return (pid_t)atoi(buf);
    }
    usleep(100);
  }
  return 0;
}

/* Parses options into o; returns the index of the program in argv (argc if none). */
static int parse_args(int argc, char **argv, int start, struct opts *o) {
  int i = start;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) return i + 1;
    if (a[0] != '-' || a[1] == 0 || a[2] != 0) return i;
    if (a[1] == 'N') {
      o->netns = 1;
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
      case 't': o->tmp = v; break;
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

/* One relayed stream: the program writes into a pipe; the shim appends to a rotating file. */
struct relay {
  const char *path;
  int in;  /* read end of the program's pipe; -1 when closed */
  int out; /* the log file */
  long long size;
};

static int open_log(const char *path, long long *size) {
  int f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (f < 0) fail(path);
  struct stat st;
  *size = fstat(f, &st) == 0 ? st.st_size : 0;
  return f;
}

/* The program's `fd` becomes the write end of a pipe whose read end the shim relays. */
static void relay_setup(struct relay *r, const char *path, int fd) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) fail("pipe");
  if (dup3(p[1], fd, 0) < 0) fail("dup3");
  close(p[1]);
  r->path = path;
  r->in = p[0];
  r->out = open_log(path, &r->size);
}

static void rotate(struct relay *r, int keep) {
  char from[4200], to[4200];
  close(r->out);
  for (int i = keep - 1; i >= 1; i--) {
    snprintf(from, sizeof from, "%s.%d", r->path, i);
    snprintf(to, sizeof to, "%s.%d", r->path, i + 1);
    rename(from, to);
  }
  snprintf(to, sizeof to, "%s.1", r->path);
  if (keep > 0) rename(r->path, to);
  else unlink(r->path);
  r->out = open_log(r->path, &r->size);
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
  if (o->log_max > 0 && r->size > 0 && r->size + n > o->log_max) rotate(r, o->log_keep);
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(r->out, buf + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break; /* disk full: drop this chunk rather than block the star */
    off += w;
  }
  r->size += n;
  return 1;
}

static int chld_pipe[2] = {-1, -1};
static void on_chld(int sig) {
  (void)sig;
  int e = errno;
  (void)!write(chld_pipe[1], "", 1);
  errno = e;
}

static int shim_main(int argc, char **argv) {
  struct opts o;
  memset(&o, 0, sizeof o);
  /* A report to an agent (or launcher) that is gone must not kill the shim: the star lives on. */
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
    if (mkdir(o.mkdirs[d], 0755) < 0 && errno != EEXIST) fail(o.mkdirs[d]);
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
  /* The star's own directories, made here (root, microseconds) rather than by the agent. */
  if (o.tmp) ensure_dir(o.tmp, 0700, &o);
  if (o.cwd && o.make_cwd) ensure_dir(o.cwd, 0755, &o);
  if (o.status) unlink(o.status);
  if (o.log_max < 0) o.log_max = 10LL << 20;
  if (o.log_keep < 0) o.log_keep = 2;
  struct relay relays[2];
  int n_relays = 0;
  if (o.out) relay_setup(&relays[n_relays++], o.out, 1);
  if (o.err) relay_setup(&relays[n_relays++], o.err, 2);
  if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) fail("pipe");
  signal(SIGCHLD, on_chld);

  /* 2. New namespaces. The pid namespace applies to our next child, which becomes its pid 1. */
  int flags = CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | (o.netns ? CLONE_NEWNET : 0);
  if (unshare(flags) < 0) fail("unshare");
  if (o.hostname && sethostname(o.hostname, strlen(o.hostname)) < 0) fail("sethostname");

  int ready[2], status[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(status, O_CLOEXEC) < 0) fail("pipe");

  for (size_t s = 0; s < N_FORWARDED; s++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(forwarded[s], &sa, NULL);
  }
  pid_t init = fork();
  if (init < 0) fail("fork");
  if (init == 0) {
    close(ready[0]);
    close(status[0]);
    if (report_open) close(REPORT_FD);
    report_open = 0;
    run_init(&o, ready[1], status[1]);
  }
  forward_to = init;
  close(ready[1]);
  close(status[1]);
  /* Only the star holds the pipes' write ends now: EOF comes when the star is gone. */
  if (n_relays > 0) {
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (o.out) dup3(devnull, 1, 0);
    if (o.err) dup3(devnull, 2, 0);
    close(devnull);
  }

  /* 3. Tell the agent: started (with the program's host pid) or why not. */
  char msg[300];
  ssize_t n = read(ready[0], msg, sizeof msg - 1);
  close(ready[0]);
  if (n > 0) {
    msg[n] = 0;
    report("error %s\n", msg);
  } else {
    report("started %d %d\n", (int)first_child_of(init), (int)init);
  }
  if (report_open) close(REPORT_FD);

  /* 4. Relay the logs until the init ends and the pipes are drained; record the end. */
  int st = 0, init_done = 0;
  for (;;) {
    if (!init_done) {
      pid_t w = waitpid(init, &st, WNOHANG);
      if (w == init) init_done = 1;
    }
    int open_relays = 0;
    for (int r = 0; r < n_relays; r++) open_relays += relays[r].in >= 0;
    if (init_done && open_relays == 0) break;
    struct pollfd pf[3];
    int np = 0;
    for (int r = 0; r < n_relays; r++) {
      if (relays[r].in >= 0) pf[np++] = (struct pollfd){.fd = relays[r].in, .events = POLLIN};
    }
    pf[np++] = (struct pollfd){.fd = chld_pipe[0], .events = POLLIN};
    /* Once the init is gone every writer is gone too; wait a little for the last bytes. */
    int ready_n = poll(pf, (nfds_t)np, init_done ? 1000 : -1);
    if (ready_n < 0 && errno == EINTR) continue;
    if (ready_n == 0 && init_done) break;
    char drain[64];
    while (read(chld_pipe[0], drain, sizeof drain) > 0) {
    }
    for (int r = 0, k = 0; r < n_relays; r++) {
      if (relays[r].in < 0) continue;
      if (pf[k++].revents & (POLLIN | POLLHUP | POLLERR)) relay_once(&relays[r], &o);
    }
  }
  char end[32];
  ssize_t got = read(status[0], end, sizeof end - 1);
  if (got <= 0) describe(st, end, sizeof end); /* the init itself was killed */
  else end[got] = 0;
  if (o.status) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", o.status);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      (void)!write(fd, end, strlen(end));
      fsync(fd);
      close(fd);
      rename(tmp, o.status);
    }
  }
  int code = 0, sig = 0;
  if (sscanf(end, "exit %d", &code) == 1) return code;
  if (sscanf(end, "signal %d", &sig) == 1) return 128 + sig;
  return 125;
}

/* ---- launcher mode (-Z) ---------------------------------------------------------------- */

struct child {
  char id[96];
  pid_t pid;
  int report; /* read end of the shim's report pipe; -1 once forwarded */
};

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
    free(argv);
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    say("error %s fork: %s", id, strerror(errno));
    close(rep[0]);
    close(rep[1]);
    free(argv);
    return;
  }
  if (pid == 0) {
    /* The shim: default signals, its own session, fd 3 = report, nothing else of ours. */
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    dup3(devnull, 0, 0);
    dup3(devnull, 1, 0);
    dup3(devnull, 2, 0);
    dup3(rep[1], REPORT_FD, 0);
    if (close_range(REPORT_FD + 1, ~0U, 0) < 0) {
      for (int fd = REPORT_FD + 1; fd < 4096; fd++) close(fd);
    }
    _exit(shim_main((int)n, argv));
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
  c->report = rep[0];
  free(argv);
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

static int zygote_main(void) {
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
    int r = poll(pf, (nfds_t)np, -1);
    if (r < 0 && errno != EINTR) return 1;
    short stdin_ev = r > 0 ? pf[0].revents : 0;
    free(pf);
    for (size_t k = 0; k < n_children; k++) forward_report(&children[k], 0);
    char drain[64];
    while (read(zyg_chld[0], drain, sizeof drain) > 0) {
    }
    reap();
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
      launch_request(in + head, want);
      memmove(in, in + head + want, len - head - want);
      len -= head + want;
    }
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "-Z") == 0) return zygote_main();
  return shim_main(argc, argv);
}
