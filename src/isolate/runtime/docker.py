"""Docker's defaults as runtime-config values: the seccomp profile every container gets.

Owns Docker's default seccomp policy (as moby's ``profiles/seccomp`` defines it in 2026: an
allow-list whose extra entries depend on the container's capabilities, the kernel and the
architecture), written here as data and read through :meth:`SeccompProfile.from_docker_json`,
so resolving ``includes``/``excludes`` stays in one place. Docker's default capability set is
:meth:`isolate.security.CapabilitySet.docker_default`. Values only: no system calls.
"""

from __future__ import annotations

import errno

from isolate import _memo as functools
from isolate._typing import TYPE_CHECKING
from isolate.security import CapabilitySet, SeccompProfile

if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["docker_seccomp_profile"]

# System calls every container may make (names unknown on an architecture are skipped).
_ALLOWED_NAMES = """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
    fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
    flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
    fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv
    futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
    geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
    getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
    getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
    gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init
    inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
    listen listmount listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr
    lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore
    mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr
    mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
    munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
    pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
    ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
    pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
    recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat
    rename renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction
    rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
    sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
    setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
    statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
    timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
    uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid
    write writev
"""
_ALLOWED: Final = tuple(_ALLOWED_NAMES.split())

# Calls a capability unlocks.
_BY_CAPABILITY: Final = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
                      "fsopen", "fspick", "lookup_dcookie", "lsm_get_self_attr",
                      "lsm_list_modules", "lsm_set_self_attr", "mount", "mount_setattr",
                      "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                      "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
                      "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

# Calls allowed on one architecture family only (Docker's "arches" includes).
_BY_ARCH: Final = (
    (("arm", "arm64"), ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                        "breakpoint", "cacheflush", "set_tls")),
    (("amd64", "x32"), ("arch_prctl",)),
    (("amd64", "x32", "x86"), ("modify_ldt",)),
)

_AF_ALG: Final = 38
_AF_VSOCK: Final = 40
_CLONE_NAMESPACES: Final = 0x7E020000  # NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
# personality(2): PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
_PERSONALITIES: Final = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": 0, "op": op}


def _profile_json() -> dict[str, Any]:
    """Docker's default profile in Docker's own JSON shape."""
    allow = "SCMP_ACT_ALLOW"
    rules: list[dict[str, Any]] = [
        {"names": list(_ALLOWED), "action": allow},
        {"names": ["process_vm_readv", "process_vm_writev", "ptrace"], "action": allow,
         "includes": {"minKernel": "4.8"}},
        # socket(2) for every address family but AF_ALG and AF_VSOCK.
        {"names": ["socket"], "action": allow, "args": [_arg(0, _AF_ALG, "SCMP_CMP_LT")]},
        {"names": ["socket"], "action": allow,
         "args": [_arg(0, _AF_ALG + 1, "SCMP_CMP_EQ")]},
        {"names": ["socket"], "action": allow,
         "args": [_arg(0, _AF_VSOCK, "SCMP_CMP_GT")]},
        *({"names": ["personality"], "action": allow, "args": [_arg(0, v, "SCMP_CMP_EQ")]}
          for v in _PERSONALITIES),
        *({"names": list(names), "action": allow, "includes": {"arches": list(arches)}}
          for arches, names in _BY_ARCH),
        *({"names": list(names), "action": allow, "includes": {"caps": [cap]}}
          for cap, names in _BY_CAPABILITY.items()),
        # Without CAP_SYS_ADMIN: clone without namespace flags (Docker's masked-equal: value
        # is the mask, valueTwo what the masked bits must be), and clone3 (whose flags a
        # filter cannot read) fails with ENOSYS so that libc falls back to clone.
        {"names": ["clone"], "action": allow,
         "args": [{"index": 0, "value": _CLONE_NAMESPACES, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64",
                     "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": rules,
    }


@functools.lru_cache(maxsize=32)
def docker_seccomp_profile(capabilities: CapabilitySet | None = None) -> SeccompProfile:
    """Docker's default seccomp profile for a container holding ``capabilities`` (Docker's
    default set if None): unlisted calls fail with EPERM; ``chroot`` is allowed with
    CAP_SYS_CHROOT, ``mount``/``unshare``/``setns`` only with CAP_SYS_ADMIN, and so on;
    ``clone`` with namespace flags and ``clone3`` are refused without CAP_SYS_ADMIN; sockets of
    AF_ALG and AF_VSOCK are refused; io_uring is not allowed (Docker dropped it).

    Unlike :meth:`SeccompProfile.default` (isolate's sandbox deny-list, which refuses chroot
    and every mount call whatever the capabilities), this is an allow-list fitted to what a
    container is granted.

    Raises:
        ConfigError: never for the built-in data (a test checks it).
    """
    return SeccompProfile.from_docker_json(_profile_json(), capabilities=capabilities)
