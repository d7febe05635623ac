/*
 * The stars' system call filter: a classic BPF program for seccomp, written out here rather
 * than built with libseccomp. The launcher is a static binary with no dependencies, the filter is
 * a short list, and a hand-written list is one table to read in review. Modelled on Docker's
 * default profile (moby/profiles seccomp/default.json): what an unprivileged container must not
 * do is refused with EPERM, the rest is allowed.
 *
 *   - no new namespaces: unshare() and clone() with any CLONE_NEW* flag (a new user namespace is
 *     how a star became root through the old exec health check), setns(); clone3() answers
 *     ENOSYS, since its flags live in memory a filter cannot read (the C library then uses clone)
 *   - no mounts (mount, umount2, pivot_root, chroot and the new mount API)
 *   - no kernel keyrings, bpf, perf events, userfaultfd, io_uring (ENOSYS: callers fall back)
 *   - no ptrace or reading other processes' memory (process_vm_*, pidfd_getfd, kcmp)
 *   - no modules, kexec, reboot, swap, clock setting, syslog, acct, quotas, iopl/ioperm,
 *     open_by_handle_at (the classic container escape)
 *   - on x86_64 no x32 system calls (a second numbering that would slip past the list)
 * Anything of another architecture kills the process: the numbers would mean other calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "star-shim.h"

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "the seccomp filter knows x86_64 and aarch64"
#endif

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* Refused with EPERM whatever their arguments. */
static const int denied[] = {
  __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_setns,
#ifdef __NR_open_tree
  __NR_open_tree, __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
  __NR_mount_setattr,
#endif
  __NR_keyctl, __NR_add_key, __NR_request_key, __NR_bpf, __NR_perf_event_open,
  __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_kcmp,
#ifdef __NR_pidfd_getfd
  __NR_pidfd_getfd,
#endif
  __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_kexec_load,
#ifdef __NR_kexec_file_load
  __NR_kexec_file_load,
#endif
  __NR_reboot, __NR_swapon, __NR_swapoff, __NR_syslog, __NR_acct, __NR_settimeofday,
  __NR_clock_settime, __NR_clock_adjtime, __NR_adjtimex, __NR_quotactl,
#ifdef __NR_quotactl_fd
  __NR_quotactl_fd,
#endif
  __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_lookup_dcookie, __NR_vhangup,
  __NR_fanotify_init,
#ifdef __NR_iopl
  __NR_iopl, __NR_ioperm,
#endif
#ifdef __NR_uselib
  __NR_uselib,
#endif
#ifdef __NR_userfaultfd
  __NR_userfaultfd,
#endif
};

/* Refused with ENOSYS, so that callers take their older path. */
static const int absent[] = {
#ifdef __NR_clone3
  __NR_clone3,
#endif
#ifdef __NR_io_uring_setup
  __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
#endif
};

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)
#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_INSNS 160

static struct sock_filter insns[MAX_INSNS];
static struct sock_fprog prog;

#define STMT(c, k) ((struct sock_filter)BPF_STMT((c), (k)))
#define JUMP(c, k, t, f) ((struct sock_filter)BPF_JUMP((c), (k), (t), (f)))
#define RET(v) STMT(BPF_RET | BPF_K, (v))

/*
 * Builds the program once (before any clone: the program's vfork-style child only installs it).
 * Layout: check the architecture; load the number; one "equal? jump to its verdict" per listed
 * call; allow; then the verdicts (BPF jumps only go forward):
 *   allow | EPERM | ENOSYS | namespace check (clone, unshare: any CLONE_NEW* flag → EPERM)
 */
void seccomp_prepare(void) {
  size_t n = 0;
  insns[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  insns[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
  insns[n++] = RET(SECCOMP_RET_KILL_PROCESS);
  insns[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
  insns[n++] = JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* __X32_SYSCALL_BIT */, 0, 1);
  insns[n++] = RET(SECCOMP_RET_ERRNO | EPERM);
#endif
  size_t allow = n + N(denied) + N(absent) + 2;
  size_t eperm = allow + 1, enosys = allow + 2, nscheck = allow + 3;
  for (size_t i = 0; i < N(denied); i++, n++) insns[n] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied[i], (unsigned char)(eperm - n - 1), 0);
  for (size_t i = 0; i < N(absent); i++, n++) insns[n] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)absent[i], (unsigned char)(enosys - n - 1), 0);
  insns[n] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, (unsigned char)(nscheck - n - 1), 0);
  n++;
  insns[n] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unshare, (unsigned char)(nscheck - n - 1), 0);
  n++;
  insns[n++] = RET(SECCOMP_RET_ALLOW);
  insns[n++] = RET(SECCOMP_RET_ERRNO | EPERM);
  insns[n++] = RET(SECCOMP_RET_ERRNO | ENOSYS);
  /* The flags are the first argument (its low word: x86_64 and aarch64 are little-endian). For
     clone the low byte is the exit signal, which CLONE_NEWTIME would collide with: not checked. */
  insns[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  insns[n++] = JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1);
  insns[n++] = RET(SECCOMP_RET_ERRNO | EPERM);
  insns[n++] = RET(SECCOMP_RET_ALLOW);
  prog.len = (unsigned short)n;
  prog.filter = insns;
}

/* Installs the filter in the calling process (no_new_privs must be set). Raw system call: this
   runs in the program's vfork-style child. Returns -1 with errno on failure. */
int seccomp_install(void) {
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
