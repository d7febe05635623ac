/*
 * The star's view of the file system, made by its init in the star's own mount namespace before
 * the program starts (the anchor is systemd's ProtectSystem=strict, ProtectHome and PrivateTmp):
 *
 *   /                 the host's tree (or the star's `root`), read-only and nosuid, recursively
 *   /proc             the star's own (its pid namespace)
 *   hidden places     /home, /root, /run/user, the node's data dir: an empty read-only tmpfs each
 *   scratch places    /tmp, /var/tmp, /run/lock: private and writable, on the star's disk (a
 *                     directory of its own) or else a tmpfs; /dev/shm always a tmpfs. The tmpfs
 *                     places are directories of ONE tmpfs of half the star's memory, so writing
 *                     them all full ends in ENOSPC, not in an OOM kill (tmpfs pages are charged
 *                     to the star's memory). All gone with the star.
 *   binds             the star's work directory (read-write), its script's directory and the
 *                     spec's `mounts` (read-only unless asked), at their paths, even inside a
 *                     hidden place (the empty tmpfs gets the path's directories first)
 *
 * Changes apply from the shallowest path to the deepest, so a hidden place can hold a bind and a
 * bind can hold a hidden place (a data dir inside a script's directory stays hidden).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "star-shim.h"

#ifndef MOUNT_ATTR_NOSUID
#error "needs the mount_setattr definitions of glibc 2.36 or later"
#endif

static int set_attr(const char *path, int recursive, unsigned long long set, unsigned long long clr) {
  struct mount_attr attr = {.attr_set = set, .attr_clr = clr, .propagation = 0, .userns_fd = 0};
  return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof attr);
}

/* mkdir -p, in a place that may be a fresh tmpfs; a part that exists or cannot be made is left
   to the mount that follows (which then says what is wrong). */
static void make_path(const char *path, int file) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return;
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(buf, 0755);
    *p = '/';
  }
  if (file) {
    int fd = open(buf, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd >= 0) close(fd);
  } else {
    mkdir(buf, 0755);
  }
}

static int depth(const char *path) {
  int d = 0;
  for (; *path; path++) d += *path == '/';
  return d;
}

static void tmpfs(const char *target, const char *mode, long long size, unsigned long flags) { /* hidden places */
  char data[96];
  snprintf(data, sizeof data, "mode=%s,size=%lld", mode, size);
  if (mount("tmpfs", target, "tmpfs", flags, data) < 0) fail(target);
}

/*
 * The star's one scratch tmpfs, made detached (the new mount API: fsopen, fsmount) so that its
 * directories can be attached at several places (open_tree, move_mount) and share one size.
 */
static int scratch_fs = -1;

static void scratch_attach(const char *name, const char *target, long long size) {
  if (scratch_fs < 0) {
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%lld", size);
    int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0 || syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", bytes, 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", "tmpfs", 0) < 0 || syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
      fail("scratch tmpfs");
    }
    scratch_fs = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (scratch_fs < 0) fail("scratch tmpfs");
    close(fs);
  }
  if (mkdirat(scratch_fs, name, 0) < 0 || fchmodat(scratch_fs, name, 01777, 0) < 0) fail(target);
  int tree = (int)syscall(SYS_open_tree, scratch_fs, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0 || syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) fail(target);
  close(tree);
}

/* The bind's source through our own /proc: opened before anything covered it. */
static void bind_fd(int fd, const char *target) {
  char from[64];
  snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
  if (mount(from, target, NULL, MS_BIND | MS_REC, NULL) < 0) fail(target);
}

static void apply(struct mount_op *m, const char *prefix, long long scratch_max) {
  char target[4096];
  if (snprintf(target, sizeof target, "%s%s", prefix, m->dst) >= (int)sizeof target) {
    errno = ENAMETOOLONG;
    fail(m->dst);
  }
  struct stat st;
  switch (m->kind) {
    case MNT_HIDE:
      /* Only what is there to hide; nr_inodes small: it holds the directories of binds only. */
      if (stat(target, &st) < 0 || !S_ISDIR(st.st_mode)) {
        m->fd = -2; /* nothing mounted: nothing to make read-only afterwards */
        return;
      }
      tmpfs(target, "0755", 1 << 20, MS_NOSUID | MS_NODEV | MS_NOEXEC);
      return;
    case MNT_SCRATCH:
      if (stat(target, &st) < 0) {
        make_path(target, 0); /* a place the host lacks can only be made inside a tmpfs of ours */
        if (stat(target, &st) < 0) return; /* e.g. no /run/lock on this host: nothing to cover */
      }
      if (m->src) {
        bind_fd(m->fd, target);
        if (set_attr(target, 1, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY) < 0) fail(target);
      } else {
        static int places;
        char name[24];
        snprintf(name, sizeof name, "place%d", ++places);
        scratch_attach(name, target, scratch_max);
      }
      return;
    case MNT_BIND_RW:
    case MNT_BIND_RO: {
      struct stat src;
      if (fstat(m->fd, &src) < 0) fail(m->src);
      make_path(target, !S_ISDIR(src.st_mode));
      bind_fd(m->fd, target);
      /* nodev, except for a /dev given to a star with a root of its own */
      unsigned long long set = MOUNT_ATTR_NOSUID | (strcmp(m->dst, "/dev") == 0 ? 0 : MOUNT_ATTR_NODEV);
      if (m->kind == MNT_BIND_RO) set |= MOUNT_ATTR_RDONLY;
      if (set_attr(target, 1, set, m->kind == MNT_BIND_RW ? MOUNT_ATTR_RDONLY : 0) < 0) fail(target);
      return;
    }
  }
}

static int by_depth(const void *a, const void *b) {
  const struct mount_op *x = a, *y = b;
  int d = depth(x->dst) - depth(y->dst);
  return d ? d : (x < y ? -1 : x > y);
}

void sandbox_setup(struct opts *o) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("mount namespace");
  /* Sources first, while nothing of ours covers them (a bind of a path inside the data dir,
     which is about to be hidden). O_PATH: opened, not read; the kernel checks nothing yet. */
  for (int i = 0; i < o->n_mounts; i++) {
    struct mount_op *m = &o->mounts[i];
    m->fd = -1;
    if (!m->src) continue;
    m->fd = open(m->src, O_PATH | O_CLOEXEC);
    if (m->fd < 0) fail(m->src);
  }
  const char *prefix = "";
  char proc[4096], shm[4096];
  if (o->root) {
    /* The given tree becomes "/" at the end (pivot_root needs it to be a mount of its own). */
    if (mount(o->root, o->root, NULL, MS_BIND | MS_REC, NULL) < 0) fail(o->root);
    prefix = o->root;
  }
  if (o->readonly && set_attr(o->root ? o->root : "/", 1, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0) < 0) fail("read-only view of the host");
  snprintf(proc, sizeof proc, "%s/proc", prefix);
  if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount /proc");
  /* Half the star's memory for all its tmpfs scratch places together (the rest for itself). */
  long long scratch = (o->scratch_max > 0 ? o->scratch_max : 64LL << 20) / 2;
  /* Its own ptys: a devpts instance of its own (at most 64), so it cannot use up the host's. */
  char pts[4096], ptmx[4096], ptmx_src[4200];
  snprintf(pts, sizeof pts, "%s/dev/pts", prefix);
  snprintf(ptmx, sizeof ptmx, "%s/dev/ptmx", prefix);
  struct stat pst;
  if (stat(pts, &pst) == 0 && S_ISDIR(pst.st_mode)) {
    if (mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,max=64") < 0) fail("mount /dev/pts");
    snprintf(ptmx_src, sizeof ptmx_src, "%s/ptmx", pts);
    if (stat(ptmx, &pst) == 0 && mount(ptmx_src, ptmx, NULL, MS_BIND, NULL) < 0) fail("bind /dev/ptmx");
  }
  /* A private /dev/shm, so stars share no scratch space. */
  snprintf(shm, sizeof shm, "%s/dev/shm", prefix);
  struct stat st;
  if (stat(shm, &st) == 0) scratch_attach("shm", shm, scratch);
  qsort(o->mounts, (size_t)o->n_mounts, sizeof o->mounts[0], by_depth);
  for (int i = 0; i < o->n_mounts; i++) apply(&o->mounts[i], prefix, scratch);
  /* The hiding tmpfs got the directories binds needed; now they are read-only too. */
  for (int i = 0; i < o->n_mounts; i++) {
    struct mount_op *m = &o->mounts[i];
    if (m->kind != MNT_HIDE || m->fd == -2) continue;
    char target[4096];
    snprintf(target, sizeof target, "%s%s", prefix, m->dst);
    if (set_attr(target, 0, MOUNT_ATTR_RDONLY, 0) < 0) fail(target);
  }
  for (int i = 0; i < o->n_mounts; i++) {
    if (o->mounts[i].fd >= 0) close(o->mounts[i].fd);
  }
  if (scratch_fs >= 0) close(scratch_fs);
  if (o->root) {
    /* pivot_root(".", "."): the old root ends up under the new one and is detached at once. */
    if (chdir(o->root) < 0) fail(o->root);
    if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0) fail("detach the host's tree");
    if (chdir("/") < 0) fail("chdir /");
  }
}
