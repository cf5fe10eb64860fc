/* spawn.c -- isolate's native core: clone a child and run its set-up plan, in C only.
 *
 * Why C: the Python interpreter may have many threads. A child made by a raw clone inherits
 * whatever locks those threads held (malloc, stdio, the GIL), so between clone and execve the
 * child must not allocate, must not touch stdio and must never run Python. Everything it needs
 * was allocated by the parent; it only reads the plan buffer and makes system calls.
 *
 * Protocol (numbers match isolate/_plan.py: Report, OpKind):
 *
 *   parent (Python thread, GIL released)        child
 *   ------------------------------------        -----
 *   block all signals
 *   clone(flags, plan)  ----------------------> reset signal dispositions
 *   restore signal mask                          for each op in plan:
 *                                                  WAIT_PARENT: read(sync_fd)
 *   [FORK mode] parent steps in Python:  <---+       (blocks until GO)
 *     write uid/gid maps, cgroup.procs ...   |     ...
 *     send GO on sync socket  ---------------+     FORK_INTO_PIDNS: setns(pid), clone again
 *                                                    (CLONE_PARENT) -- grandchild continues,
 *                                                    child reports {PID, pid} and exits
 *                                                  INIT: clone the command (CLONE_VM|VFORK);
 *                                                    it runs the remaining ops, this process
 *                                                    closes every fd but exit_fd and stays
 *                                                    as its init (pid 1): reaps, forwards
 *                                                    signals to it
 *                                                  any failure: write {ERROR, errno, step, op}
 *                                                    to status_fd, _exit(127)
 *                                                  EXEC: execve; status_fd is CLOEXEC
 *   read(status_fd) until EOF  <----------------  EOF on exec, or a report
 *   ...
 *   [INIT] after the init has exited:
 *   read(exit_fd)  <----------------------------  {EXIT, wait status of the command}, then
 *                                                   _exit(code, or 128 + signal)
 *
 *   EOF without an ERROR report means the exec succeeded (or a plan without EXEC ran to its
 *   end and exited 0). Every other way out of the child before exec writes an ERROR record
 *   first, so a child that never ran never looks like one that did: a failed op, the parent
 *   found gone by PDEATHSIG (ESRCH, or EINVAL where it cannot tell), the sync socket closed
 *   without GO (ECANCELED), a FORK_INTO_PIDNS or INIT child that could not be made, the
 *   command under an INIT failing. Only a signal that kills the child outright (SIGKILL, a
 *   seccomp filter that kills) leaves no record; the caller then gets its wait status.
 *   An init cannot die by a signal sent from inside its pid namespace, so the EXIT report is
 *   how the caller learns that the command was killed by signal N; its own exit status says
 *   128 + N.
 *
 * In VFORK mode the child shares the parent's memory (CLONE_VM) and the calling thread is
 * suspended until the child execs or exits, so there is no page-table copy; ops that need a
 * single-threaded mm (time namespaces, unshare(CLONE_NEWUSER)) or a parent step need FORK mode,
 * and the Python planner chooses it. An INIT outlives the exec, so it never runs in the
 * caller's memory: in VFORK mode a FORK_INTO_PIDNS before it forks a copy instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolate.h"

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
/* The filesystems a pidfd lives on: pidfs (Linux 6.9+), anonymous inodes before. */
#define ISO_PIDFS_MAGIC 0x50494446
#define ISO_ANON_INODE_FS_MAGIC 0x09041934
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
/* fsconfig(2) copies a string value of at most this many bytes (with its NUL). */
#define ISO_FSCONFIG_STR_MAX 256
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

struct iso_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

struct iso_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

struct iso_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

#define ISO_STACK_SIZE (256 * 1024)
#define ISO_SLOTS 64
#define ISO_PATH_MAX 4096

/* ---- thin wrappers for the calling process ------------------------------------------------ */

int iso_setns(int fd, int nstype) { return (int)syscall(SYS_setns, fd, nstype); }
int iso_unshare(int flags) { return (int)syscall(SYS_unshare, flags); }
int iso_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}
int iso_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
              const char *data)
{
    return mount(source, target, fstype, flags, data);
}
int iso_umount2(const char *target, int flags) { return umount2(target, flags); }
int iso_pidfd_open(int pid, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}
int iso_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}
int iso_sethostname(const char *name, size_t len) { return sethostname(name, len); }
int iso_mount_setattr(int dfd, const char *path, unsigned int flags, uint64_t attr_set,
                      uint64_t attr_clr, uint64_t propagation)
{
    struct iso_mount_attr attr = {attr_set, attr_clr, propagation, 0};
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof attr);
}
int iso_open_tree(int dfd, const char *path, unsigned int flags)
{
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}
int iso_move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
                   unsigned int flags)
{
    return (int)syscall(SYS_move_mount, from_dfd, from_path, to_dfd, to_path, flags);
}
int iso_fsopen(const char *fsname, unsigned int flags)
{
    return (int)syscall(SYS_fsopen, fsname, flags);
}
int iso_fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux)
{
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}
int iso_fsmount(int fd, unsigned int flags, unsigned int attr_flags)
{
    return (int)syscall(SYS_fsmount, fd, flags, attr_flags);
}
int iso_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
    struct iso_open_how how = {flags, mode, resolve};
    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
}
int iso_bpf(int cmd, void *attr, unsigned int size)
{
    return (int)syscall(SYS_bpf, cmd, attr, size);
}
int iso_clone3_works(void)
{
    /* An invalid (too small) size gets EINVAL where clone3 exists, ENOSYS where it does not. */
    long r = syscall(SYS_clone3, NULL, 0);
    return !(r < 0 && errno == ENOSYS);
}

/* clone3 for a child that runs in our memory (CLONE_VM) on its own stack, for flags glibc's
 * clone() cannot pass (CLONE_INTO_CGROUP): glibc exports no clone3 wrapper. The child runs
 * fn(arg) on the new stack and exits with its result; the parent gets the pid or -errno. The
 * syscall keeps every register but rax, rcx and r11, in the child too, so fn and arg ride in
 * r8 and r9; the stack top is 16-byte aligned, and the call makes fn's frame as the ABI wants. */
#if defined(__x86_64__)
#define ISO_HAVE_CLONE3_VM 1
__attribute__((visibility("hidden"))) long iso_clone3_vm(struct iso_clone_args *args,
                                                         size_t size, int (*fn)(void *),
                                                         void *arg);
__asm__(".text\n"
        ".globl iso_clone3_vm\n"
        ".hidden iso_clone3_vm\n"
        ".type iso_clone3_vm, @function\n"
        "iso_clone3_vm:\n"
        "    mov %rdx, %r8\n"
        "    mov %rcx, %r9\n"
        "    mov $435, %eax\n" /* SYS_clone3 */
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jz 1f\n"
        "    ret\n"
        "1:  xor %ebp, %ebp\n"
        "    mov %r9, %rdi\n"
        "    call *%r8\n"
        "    mov %eax, %edi\n"
        "    mov $60, %eax\n" /* SYS_exit */
        "    syscall\n"
        "    hlt\n"
        ".size iso_clone3_vm, .-iso_clone3_vm\n");
#else
#define ISO_HAVE_CLONE3_VM 0
#endif

int iso_vfork_into_cgroup_works(void)
{
    return ISO_HAVE_CLONE3_VM && iso_clone3_works();
}

/* ---- the child ---------------------------------------------------------------------------- */

struct child_state {
    uint8_t *plan;
    const struct iso_plan_header *hdr;
    const struct iso_op *ops;
    uint32_t next_op;   /* where the interpreter starts (the grandchild resumes past a fork) */
    int root_fd;        /* ROOT directory, -1 = "/" of the current mount namespace */
    int status_fd;
    int slots[ISO_SLOTS];
    pid_t parent;
    char *grand_stack;  /* stack for a FORK_INTO_PIDNS grandchild (VFORK mode) */
    int shares_vm;      /* runs in the caller's memory (VFORK mode), which waits for our exec */
    uint32_t init_op;   /* index of the last INIT op, or UINT32_MAX */
    int unblocks;       /* an EXEC or INIT op lets signals in; without one they stay blocked */
    uint64_t command_mask;             /* INIT: the signal mask the command gets back */
    struct sigaction command_sigchld;  /* INIT: the SIGCHLD disposition it gets back */
    int dumpable;       /* the caller's own dumpability (see caller_dumpable) */
    int dumpable_fd;    /* closed once that is ours too, for a parent that waits on it */
    uint64_t caller_areas[4];  /* INIT: the caller's arg_start, arg_end, env_start, env_end */
    int caller_areas_err;      /* INIT: why they are unknown (0: known) */
    struct rlimit nofile;      /* an RLIMIT_NOFILE an FDS op still has to lower to ... */
    int32_t nofile_op;         /* ... and the op that asked for it (-1: none pending) */
};

/* A copy of the caller's memory takes the caller's own dumpability, not what a vfork sibling's
 * change of credentials left in that memory for the moment (see caller_dumpable). */
static void take_caller_dumpability(const struct child_state *st)
{
    if ((st->dumpable == 0 || st->dumpable == 1) &&
        prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != st->dumpable)
        prctl(PR_SET_DUMPABLE, st->dumpable, 0, 0, 0);
}

static const char *str_at(const struct child_state *st, uint32_t off)
{
    return off ? (const char *)(st->plan + off) : NULL;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void report(const struct child_state *st, int32_t kind, int32_t err, int32_t step,
                   int32_t op_index, int64_t value)
{
    struct iso_report r = {kind, err, step, op_index, value};
    write_all(st->status_fd, &r, sizeof r);
}

__attribute__((noreturn)) static void fail(const struct child_state *st, int err, int step,
                                           int op_index)
{
    report(st, ISO_REPORT_ERROR, err, step, op_index, 0);
    /* With a shared fd table (ISO_PLAN_SHARE_FILES) what we opened would outlive us in the
     * parent: close it. Without one, exit closes it anyway. */
    for (int i = 0; i < ISO_SLOTS; i++)
        if (st->slots[i] >= 0)
            close(st->slots[i]);
    if (st->root_fd >= 0)
        close(st->root_fd);
    _exit(127);
}

/* Copy a NUL-terminated string into buf; returns 0 or ENAMETOOLONG. */
static int copy_str(char *buf, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n + 1 > size)
        return ENAMETOOLONG;
    memcpy(buf, s, n + 1);
    return 0;
}

static int root_dirfd(const struct child_state *st) { return st->root_fd >= 0 ? st->root_fd : AT_FDCWD; }

/* Make the last component of buf[0..n) (no trailing '/') in its parent, resolved as
 * open_in_root resolves; 0 when it exists afterwards, ENOENT when the parent does not (the
 * caller then makes each missing component), else the error. */
static int make_last_in_parent(int dfd, char *buf, size_t n, uint32_t flags, uint64_t resolve)
{
    size_t k = n;
    while (k > 0 && buf[k - 1] != '/')
        k--;
    if (k == n)
        return ENOENT; /* no name to make (the root itself): let the walk say why */
    char *name = buf + k;
    char saved = name[0];
    name[0] = '\0';
    const char *parent_path = k ? buf : (dfd != AT_FDCWD ? "/" : ".");
    int parent = iso_openat2(dfd, parent_path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
    name[0] = saved;
    if (parent < 0)
        return errno;
    int r;
    if (flags & ISO_F_MKFILE) {
        r = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (r >= 0)
            close(r);
    } else {
        r = mkdirat(parent, name, 0755);
    }
    int err = r < 0 ? errno : 0;
    close(parent);
    return err == EEXIST ? 0 : err;
}

/* Open path inside the ROOT directory; symlinks (also ones planted by the payload) resolve
 * inside it, magic links are refused. Creates a missing directory / file target on request:
 * each missing component is made below its parent, and every prefix is resolved from the root
 * again, so a symlink in the path can never lead the creation outside. */
static int open_in_root(const struct child_state *st, const char *path, uint32_t flags)
{
    int dfd = root_dirfd(st);
    uint64_t resolve = RESOLVE_NO_MAGICLINKS | (st->root_fd >= 0 ? RESOLVE_IN_ROOT : 0);
    int fd = iso_openat2(dfd, path, O_PATH | O_CLOEXEC, 0, resolve);
    if (fd >= 0 || errno != ENOENT || !(flags & (ISO_F_MKDIR | ISO_F_MKFILE)))
        return fd;

    char buf[ISO_PATH_MAX];
    int e = copy_str(buf, sizeof buf, path);
    if (e) {
        errno = e;
        return -1;
    }
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    /* The common case first: only the last component is missing (a mount point in a fresh
     * tmpfs), so its parent resolves as it is. */
    int made = make_last_in_parent(dfd, buf, n, flags, resolve);
    if (made == 0)
        return iso_openat2(dfd, path, O_PATH | O_CLOEXEC, 0, resolve);
    if (made != ENOENT) {
        errno = made;
        return -1;
    }
    size_t i = 0;
    while (buf[i] == '/')
        i++;
    while (i < n) {
        size_t j = i;
        while (j < n && buf[j] != '/')
            j++;
        int last = j >= n;
        char saved = buf[j];
        buf[j] = '\0';
        int next = iso_openat2(dfd, buf, O_PATH | O_CLOEXEC, 0, resolve);
        if (next < 0 && errno == ENOENT) {
            /* Parent prefix: everything before this component ("" means the root itself). */
            char c = buf[i];
            buf[i] = '\0';
            int parent = iso_openat2(dfd, i ? buf : (buf[0] == '/' || dfd != AT_FDCWD ? "/" : "."),
                                     O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
            buf[i] = c;
            if (parent < 0)
                return -1;
            int r;
            if (last && (flags & ISO_F_MKFILE)) {
                r = openat(parent, buf + i, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                           0644);
                if (r >= 0)
                    close(r);
            } else {
                r = mkdirat(parent, buf + i, 0755);
            }
            int err = errno;
            close(parent);
            if (r < 0 && err != EEXIST) {
                errno = err;
                return -1;
            }
            next = iso_openat2(dfd, buf, O_PATH | O_CLOEXEC, 0, resolve);
        }
        if (next < 0)
            return -1;
        if (last)
            return next;
        close(next);
        buf[j] = saved;
        i = j;
        while (i < n && buf[i] == '/')
            i++;
    }
    return iso_openat2(dfd, path, O_PATH | O_CLOEXEC, 0, resolve);
}

/* "/proc/self/fd/N" for an O_PATH fd, so mount(2) acts on exactly what openat2 resolved. */
static void fd_path(char *buf, int fd)
{
    char digits[16];
    int n = 0;
    unsigned v = (unsigned)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(buf, "/proc/self/fd/", 14);
    int i = 14;
    while (n)
        buf[i++] = digits[--n];
    buf[i] = '\0';
}

/* Resolve an op's target: returns an fd (caller closes) or -1; *path is what mount(2) gets. */
static int resolve_target(const struct child_state *st, const struct iso_op *op, char *pathbuf,
                          const char **path)
{
    const char *target = str_at(st, op->s2);
    if (!(op->flags & ISO_F_IN_ROOT)) {
        if (op->flags & (ISO_F_MKDIR | ISO_F_MKFILE)) {
            struct child_state tmp = *st;
            tmp.root_fd = -1;
            int fd = open_in_root(&tmp, target, op->flags);
            if (fd < 0)
                return -1;
            close(fd);
        }
        *path = target;
        return -2; /* no fd to close */
    }
    int fd = open_in_root(st, target, op->flags);
    if (fd < 0)
        return -1;
    fd_path(pathbuf, fd);
    *path = pathbuf;
    return fd;
}

static int do_mount(const struct child_state *st, const struct iso_op *op)
{
    char pathbuf[32];
    const char *target;
    int fd = resolve_target(st, op, pathbuf, &target);
    if (fd == -1)
        return errno;
    int r = mount(str_at(st, op->s1), target, str_at(st, op->s3), (unsigned long)op->a,
                  str_at(st, op->s4));
    int e = errno;
    if (fd >= 0)
        close(fd);
    return r < 0 ? e : 0;
}

static int do_setattr(const struct child_state *st, const struct iso_op *op)
{
    char pathbuf[32];
    const char *target;
    int fd = resolve_target(st, op, pathbuf, &target);
    if (fd == -1)
        return errno;
    unsigned flags = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    int r = fd >= 0 ? iso_mount_setattr(fd, "", flags | AT_EMPTY_PATH, (uint64_t)op->a,
                                        (uint64_t)op->b, (uint64_t)op->c)
                    : iso_mount_setattr(AT_FDCWD, target, flags, (uint64_t)op->a,
                                        (uint64_t)op->b, (uint64_t)op->c);
    int e = errno;
    if (fd >= 0)
        close(fd);
    return r < 0 ? e : 0;
}

static int do_open_tree(struct child_state *st, const struct iso_op *op)
{
    if (op->a < 0 || op->a >= ISO_SLOTS)
        return EINVAL;
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if (op->flags & ISO_F_RECURSIVE)
        flags |= AT_RECURSIVE;
    int fd = iso_open_tree(AT_FDCWD, str_at(st, op->s1), flags);
    if (fd < 0)
        return errno;
    st->slots[op->a] = fd;
    return 0;
}

/* Attach a detached mount tree (an open_tree or fsmount fd) at the op's target. */
static int attach_tree(const struct child_state *st, const struct iso_op *op, int tree)
{
    char pathbuf[32];
    const char *target;
    int fd = resolve_target(st, op, pathbuf, &target);
    if (fd == -1)
        return errno;
    int r = fd >= 0 ? iso_move_mount(tree, "", fd, "",
                                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
                    : iso_move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    if (fd >= 0)
        close(fd);
    return r < 0 ? e : 0;
}

static int do_move_mount(struct child_state *st, const struct iso_op *op)
{
    if (op->a < 0 || op->a >= ISO_SLOTS || st->slots[op->a] < 0)
        return EBADF;
    int e = attach_tree(st, op, st->slots[op->a]);
    close(st->slots[op->a]);
    st->slots[op->a] = -1;
    return e;
}

/* Lower dirs, one fsconfig call each ("lowerdir+", kernel >= 6.8): no single string holds
 * them all, so neither the page limit of mount(2) data nor fsconfig's 256-byte string limit
 * caps the number of layers. An older kernel refuses the key (EINVAL); then the dirs go as one
 * "lowerdir=a:b:c" string, which works while it fits fsconfig's string limit. */
static int overlay_lowers(const struct child_state *st, const struct iso_op *op, int fs)
{
    const char *p = str_at(st, op->s1);
    if (!p || op->a <= 0)
        return EINVAL;
    const char *first = p;
    for (int64_t i = 0; i < op->a; i++) {
        if (iso_fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", p, 0) < 0) {
            if (errno != EINVAL || i != 0)
                return errno;
            goto joined;
        }
        p += strlen(p) + 1;
    }
    return 0;
joined: {
    char buf[ISO_FSCONFIG_STR_MAX];
    size_t n = 0;
    p = first;
    for (int64_t i = 0; i < op->a; i++) {
        size_t len = strlen(p);
        if (n + len + 2 > sizeof buf)
            return EINVAL; /* the old kernel's limit, as it would report it */
        if (i)
            buf[n++] = ':';
        memcpy(buf + n, p, len);
        n += len;
        p += len + 1;
    }
    buf[n] = '\0';
    return iso_fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir", buf, 0) < 0 ? errno : 0;
}
}

static int overlay_options(const struct child_state *st, const struct iso_op *op, int fs)
{
    const char *p = str_at(st, op->s3);
    if (p) {
        const char *work = p + strlen(p) + 1;
        if (iso_fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", p, 0) < 0 ||
            iso_fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0)
            return errno;
    }
    p = str_at(st, op->s4);
    for (int64_t i = 0; p && i < op->c; i++) {
        const char *eq = strchr(p, '=');
        int r;
        if (eq) {
            char key[64];
            size_t klen = (size_t)(eq - p);
            if (klen >= sizeof key)
                return EINVAL;
            memcpy(key, p, klen);
            key[klen] = '\0';
            r = iso_fsconfig(fs, FSCONFIG_SET_STRING, key, eq + 1, 0);
        } else {
            r = iso_fsconfig(fs, FSCONFIG_SET_FLAG, p, NULL, 0);
        }
        if (r < 0)
            return errno;
        p += strlen(p) + 1;
    }
    return 0;
}

/* An overlay of the op's lower dirs (+ upper/work): attached at the target, or kept detached
 * in a slot so that a later MOVE_MOUNT places it (the lower dirs are resolved now, before
 * later ops cover their paths). */
static int do_overlay(struct child_state *st, const struct iso_op *op)
{
    if (!op->s2 && (op->b < 0 || op->b >= ISO_SLOTS))
        return EINVAL;
    int fs = iso_fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return errno;
    int e = overlay_lowers(st, op, fs);
    if (!e)
        e = overlay_options(st, op, fs);
    if (!e && iso_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        e = errno;
    int mnt = -1;
    if (!e) {
        mnt = iso_fsmount(fs, FSMOUNT_CLOEXEC, 0);
        if (mnt < 0)
            e = errno;
    }
    close(fs);
    if (e)
        return e;
    if (!op->s2) {
        if (st->slots[op->b] >= 0)
            close(st->slots[op->b]);
        st->slots[op->b] = mnt;
        return 0;
    }
    e = attach_tree(st, op, mnt);
    close(mnt);
    return e;
}

static int do_mask(const struct child_state *st, const struct iso_op *op)
{
    int fd = open_in_root(st, str_at(st, op->s2), 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    struct stat sb;
    char pathbuf[32];
    fd_path(pathbuf, fd);
    int r;
    if (fstat(fd, &sb) < 0)
        r = -1;
    else if (S_ISDIR(sb.st_mode) && op->s1)
        /* A bind of one read-only empty directory is cheaper than a tmpfs per path. */
        r = mount(str_at(st, op->s1), pathbuf, NULL, MS_BIND, NULL);
    else if (S_ISDIR(sb.st_mode))
        r = mount("tmpfs", pathbuf, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=0,mode=555");
    else
        r = mount("/dev/null", pathbuf, NULL, MS_BIND, NULL);
    int e = errno;
    close(fd);
    return r < 0 ? e : 0;
}

static int do_write_file(const struct child_state *st, const struct iso_op *op)
{
    const char *path = str_at(st, op->s2);
    int fd;
    if (op->flags & ISO_F_IN_ROOT) {
        if (op->flags & ISO_F_MKFILE) {
            int p = open_in_root(st, path, ISO_F_MKFILE);
            if (p < 0)
                return errno;
            close(p);
        }
        fd = iso_openat2(st->root_fd >= 0 ? st->root_fd : AT_FDCWD, path,
                         O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0,
                         RESOLVE_NO_MAGICLINKS | (st->root_fd >= 0 ? RESOLVE_IN_ROOT : 0));
    } else {
        fd = open(path, O_WRONLY | O_CLOEXEC | ((op->flags & ISO_F_MKFILE) ? O_CREAT : 0),
                  (mode_t)(op->b ? op->b : 0644));
    }
    if (fd < 0)
        return errno;
    const char *data = str_at(st, op->s3);
    size_t len = (size_t)op->a;
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return e;
        }
        data += n;
        len -= (size_t)n;
    }
    close(fd);
    return 0;
}

/* Resolve the parent of the path in buf inside the root (made if missing), so that an entry
 * can be created in it by its last component, *name (pointing into buf). Returns an O_PATH fd
 * or -1 with errno. */
static int open_parent_in_root(const struct child_state *st, char *buf, const char **name)
{
    char *slash = strrchr(buf, '/');
    *name = buf;
    if (!slash)
        return open_in_root(st, "/", 0);
    *slash = '\0';
    *name = slash + 1;
    return open_in_root(st, buf[0] ? buf : "/", ISO_F_MKDIR);
}

static int do_symlink(const struct child_state *st, const struct iso_op *op)
{
    const char *link = str_at(st, op->s2);
    if (!(op->flags & ISO_F_IN_ROOT))
        return symlink(str_at(st, op->s1), link) < 0 ? errno : 0;
    char buf[ISO_PATH_MAX];
    const char *name;
    int e = copy_str(buf, sizeof buf, link);
    if (e)
        return e;
    int parent = open_parent_in_root(st, buf, &name);
    if (parent < 0)
        return errno;
    int r = symlinkat(str_at(st, op->s1), parent, name);
    e = errno;
    close(parent);
    return (r < 0 && e != EEXIST) ? e : 0;
}

/* A device node or FIFO with exactly the op's mode (the umask is lifted for the call: the
 * child is single-threaded here), then its owner when the op names one. */
static int do_mknod(const struct child_state *st, const struct iso_op *op)
{
    const char *path = str_at(st, op->s2);
    char buf[ISO_PATH_MAX];
    int dfd = AT_FDCWD;
    const char *name = path;
    if (op->flags & ISO_F_IN_ROOT) {
        int e = copy_str(buf, sizeof buf, path);
        if (e)
            return e;
        dfd = open_parent_in_root(st, buf, &name);
        if (dfd < 0)
            return errno;
    }
    uid_t uid = (uid_t)((uint64_t)op->c >> 32);
    gid_t gid = (gid_t)((uint64_t)op->c & 0xffffffffu);
    mode_t old = umask(0);
    int r = mknodat(dfd, name, (mode_t)op->a, (dev_t)op->b);
    int e = errno;
    umask(old);
    if (r == 0 && (uid != (uid_t)-1 || gid != (gid_t)-1) &&
        fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
        r = -1;
        e = errno;
    }
    if (dfd >= 0)
        close(dfd);
    return r < 0 ? e : 0;
}

static int do_pivot_root(struct child_state *st, const struct iso_op *op)
{
    int fd = open_in_root(st, str_at(st, op->s2), 0);
    if (fd < 0)
        return errno;
    int r = fchdir(fd);
    int e = errno;
    close(fd);
    if (r < 0)
        return e;
    /* pivot_root(".", "."): the old root ends up mounted on top of the new one; detaching it
     * leaves the new root alone, with no directory of the old one needed. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return errno;
    if (umount2(".", MNT_DETACH) < 0)
        return errno;
    if (chdir("/") < 0)
        return errno;
    if (st->root_fd >= 0)
        close(st->root_fd);
    st->root_fd = -1;
    return 0;
}

/* REROOT: make our root the root of our mount namespace. A copy of a namespace whose caller
 * was chrooted into a mount point keeps everything above that root, and setns(2) into the
 * copy (how a sandbox's processes join the root built for them) lands on it. So: check that
 * the root is a mount point (a plain chroot fails closed here, nothing changed); setns into
 * our own namespace, which puts us at its root; make every mount a slave; and unless that
 * root is ours already, pivot ours to the top and detach the rest. */
static int do_reroot(void)
{
    struct statx sx;
    if (statx(AT_FDCWD, "/", AT_NO_AUTOMOUNT, STATX_MNT_ID, &sx) < 0)
        return errno;
    if (!(sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
        return ENOSYS; /* before Linux 5.8: cannot tell */
    if (!(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
        return EINVAL;
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return errno;
    int e = 0;
    int self = (int)syscall(SYS_pidfd_open, (pid_t)syscall(SYS_getpid), 0);
    if (self < 0 || syscall(SYS_setns, self, CLONE_NEWNS) < 0)
        e = errno;
    if (self >= 0)
        close(self);
    if (!e && mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        e = errno;
    struct statx top;
    if (!e && statx(AT_FDCWD, "/", AT_NO_AUTOMOUNT, STATX_MNT_ID | STATX_INO, &top) < 0)
        e = errno;
    if (!e && (top.stx_mnt_id != sx.stx_mnt_id || top.stx_ino != sx.stx_ino)) {
        /* As at the end of a sandbox's set-up: the old top ends up on "." and goes. */
        if (fchdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
            e = errno;
    }
    close(root);
    return e;
}

static int do_root(struct child_state *st, const struct iso_op *op)
{
    int fd = open(str_at(st, op->s2), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (st->root_fd >= 0)
        close(st->root_fd);
    st->root_fd = fd;
    return 0;
}

static int do_caps(const struct child_state *st, const struct iso_op *op)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    uint64_t prm = (uint64_t)op->a, inh = (uint64_t)op->b, amb = (uint64_t)op->c, eff = prm;
    if (op->s1)
        memcpy(&eff, st->plan + op->s1, sizeof eff);
    data[0].permitted = (uint32_t)prm;
    data[1].permitted = (uint32_t)(prm >> 32);
    data[0].effective = (uint32_t)eff;
    data[1].effective = (uint32_t)(eff >> 32);
    data[0].inheritable = (uint32_t)(inh | amb);
    data[1].inheritable = (uint32_t)((inh | amb) >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return errno;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return errno;
    for (int cap = 0; cap < 64; cap++)
        if ((amb >> cap) & 1)
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                return errno;
    return 0;
}

static int do_capbset(const struct iso_op *op)
{
    uint64_t keep = (uint64_t)op->a;
    for (int cap = 0; cap < 64; cap++) {
        if ((keep >> cap) & 1)
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) /* past the last capability this kernel knows */
                break;
            return errno;
        }
    }
    return 0;
}

/* Rearrange fds: each (src -> dst) pair, everything else closed. The status fd survives as a
 * CLOEXEC fd just above the highest target, so it still reports a failed exec. */
static int do_fds(struct child_state *st, const struct iso_op *op)
{
    const int32_t *t = (const int32_t *)(st->plan + op->s1);
    int n = (int)op->a;
    int top = 2;
    for (int i = 0; i < n; i++) {
        if (t[3 * i + 1] > top)
            top = t[3 * i + 1];
        if (t[3 * i] > top)
            top = t[3 * i];
    }
    if (st->status_fd > top)
        top = st->status_fd;
    int tmp[256];
    if (n > 256)
        return E2BIG;
    /* Move every source out of the way first, so a dup2 never clobbers a later source. */
    for (int i = 0; i < n; i++) {
        tmp[i] = fcntl(t[3 * i], F_DUPFD_CLOEXEC, top + 1);
        if (tmp[i] < 0)
            return errno;
    }
    int status_tmp = fcntl(st->status_fd, F_DUPFD_CLOEXEC, top + 1);
    if (status_tmp < 0)
        return errno;
    st->status_fd = status_tmp;
    int maxdst = -1;
    for (int i = 0; i < n; i++) {
        int dst = t[3 * i + 1];
        if (dup3(tmp[i], dst, t[3 * i + 2] ? O_CLOEXEC : 0) < 0)
            return errno;
        if (dst > maxdst)
            maxdst = dst;
    }
    /* Close the gaps below the highest target, then put the status fd right above it. */
    for (int fd = 0; fd < maxdst; fd++) {
        int keep = 0;
        for (int i = 0; i < n; i++)
            if (t[3 * i + 1] == fd)
                keep = 1;
        if (!keep)
            close(fd);
    }
    int status = maxdst + 1;
    if (status != st->status_fd) {
        if (dup3(st->status_fd, status, O_CLOEXEC) < 0)
            return errno;
    }
    st->status_fd = status;
    if (syscall(SYS_close_range, (unsigned)status + 1, ~0U, 0) < 0) {
        int e = errno;
        if (e != ENOSYS)
            return e;
        struct rlimit rl;
        int lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
                                                                             : 65536;
        for (int fd = status + 1; fd < lim; fd++)
            close(fd);
    }
    for (int i = 0; i < ISO_SLOTS; i++)
        st->slots[i] = -1;
    st->root_fd = -1;
    return 0;
}

/* RLIMIT_NOFILE before the FDS op of this exec: that op moves the caller's fds above the
 * highest one it names, which fails (F_DUPFD: EINVAL, EMFILE) once the soft limit is below
 * those numbers. So what the op raises takes effect here (a hard limit above the current one
 * needs CAP_SYS_RESOURCE, which later ops may drop), and what it lowers right after the fds
 * are arranged (lowering needs no privilege); the exec'd program sees the limit asked for. */
static int fds_op_follows(const struct child_state *st, uint32_t i)
{
    for (uint32_t j = i + 1; j < st->hdr->n_ops; j++) {
        if (st->ops[j].kind == ISO_OP_FDS)
            return 1;
        if (st->ops[j].kind == ISO_OP_EXEC)
            return 0;
    }
    return 0;
}

static int rlimit_nofile_before_fds(struct child_state *st, const struct rlimit *want,
                                    uint32_t i)
{
    struct rlimit now;
    if (getrlimit(RLIMIT_NOFILE, &now) < 0)
        return errno;
    /* The higher of each: the soft limit stays below the hard one, as the current one is. */
    if (want->rlim_max > now.rlim_max)
        now.rlim_max = want->rlim_max;
    if (want->rlim_cur > now.rlim_cur)
        now.rlim_cur = want->rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &now) < 0)
        return errno;
    st->nofile = *want;
    st->nofile_op = (now.rlim_cur == want->rlim_cur && now.rlim_max == want->rlim_max)
                        ? -1 : (int32_t)i;
    return 0;
}

/* Mark fds from..to close-on-exec (CLOSE_RANGE_CLOEXEC, Linux 5.11; one by one before). */
static int set_cloexec_range(unsigned from, unsigned to)
{
    if (from > to)
        return 0;
    if (syscall(SYS_close_range, from, to, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return errno;
    struct rlimit rl;
    unsigned lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                       ? (unsigned)rl.rlim_cur : 65536;
    if (to >= lim)
        to = lim - 1;
    for (unsigned fd = from; fd <= to && fd < lim; fd++) {
        int fl = fcntl((int)fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
    }
    return 0;
}

/* KEEP_FDS: every fd above 2 but the listed ones is closed by the exec; the listed ones are
 * made inheritable. Marking instead of closing keeps the status fd (close-on-exec already)
 * for a failing exec to report on. */
static int do_keep_fds(const struct child_state *st, const struct iso_op *op)
{
    const int32_t *keep = (const int32_t *)(st->plan + op->s1);
    unsigned from = 3;
    for (int64_t i = 0; i < op->a; i++) {
        int fd = keep[i];
        if (fd < 3 || (unsigned)fd < from)
            return EINVAL; /* not ascending: Python sorts them */
        int e = set_cloexec_range(from, (unsigned)fd - 1);
        if (e)
            return e;
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0)
            return errno; /* EBADF: an fd to keep is not open */
        from = (unsigned)fd + 1;
    }
    return set_cloexec_range(from, ~0U);
}

static int do_umount(const struct child_state *st, const struct iso_op *op)
{
    char pathbuf[32];
    const char *target;
    int fd = resolve_target(st, op, pathbuf, &target);
    if (fd == -1)
        return errno;
    int r = umount2(target, (int)op->a);
    int e = errno;
    if (fd >= 0)
        close(fd);
    return r < 0 ? e : 0;
}

/* PDEATHSIG, once the kernel has the signal: had the parent ended already? 0: no. ESRCH: it
 * had. EBADF: op->b is not a pidfd. EINVAL: there is no telling -- without a pidfd the check
 * is getppid(), which says 0 when the parent is outside our pid namespace. Never a silent
 * exit: the caller learns why the child did not run. */
static int parent_gone(const struct child_state *st, const struct iso_op *op)
{
    if (op->b >= 0) {
        int fd = (int)op->b;
        struct statfs sfs;
        if (fstatfs(fd, &sfs) < 0)
            return errno;
        if (sfs.f_type != ISO_PIDFS_MAGIC && sfs.f_type != ISO_ANON_INODE_FS_MAGIC)
            return EBADF;
        /* A pidfd turns readable when its process has exited. */
        struct pollfd pfd = {fd, POLLIN, 0};
        int r;
        do
            r = poll(&pfd, 1, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return errno;
        if (pfd.revents & POLLNVAL)
            return EBADF;
        return (r > 0 && (pfd.revents & (POLLIN | POLLHUP))) ? ESRCH : 0;
    }
    pid_t pp = getppid();
    if (pp == 0)
        return EINVAL;
    return pp == st->parent ? 0 : ESRCH;
}

#ifndef TIOCGPTPEER
#define TIOCGPTPEER 0x5441
#endif

static int send_fd(int sock, int fd)
{
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? errno : 0;
}

/* CONSOLE: a pty of the devpts whose ptmx is s2 (the container's own, mounted by the plan)
 * becomes stdio and the controlling terminal; the master goes to the supervisor over socket a.
 * The peer is opened from the master (TIOCGPTPEER), never by a path of the container's. */
static int do_console(const struct child_state *st, const struct iso_op *op)
{
    const char *ptmx = op->s2 ? str_at(st, op->s2) : "/dev/pts/ptmx";
    int master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return errno;
    int unlock = 0, e = 0, peer = -1;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        e = errno;
    if (!e && (peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
        e = errno;
    if (!e && op->b > 0) {
        struct winsize ws = {(unsigned short)(op->b >> 16), (unsigned short)op->b, 0, 0};
        if (ioctl(peer, TIOCSWINSZ, &ws) < 0)
            e = errno;
    }
    /* A controlling terminal needs a session of our own: ours already (SETSID), or a new one. */
    if (!e && getsid(0) != getpid() && setsid() < 0)
        e = errno;
    if (!e && ioctl(peer, TIOCSCTTY, 0) < 0)
        e = errno;
    if (!e)
        e = send_fd((int)op->a, master);
    close(master);
    for (int fd = 0; !e && fd < 3; fd++)
        if ((fd != peer && dup2(peer, fd) < 0) || fcntl(fd, F_SETFD, 0) < 0)
            e = errno;
    if (peer > 2)
        close(peer);
    return e;
}

/* An fd of a thread of isolate's own, moved above the numbers the caller's threads use: what
 * that thread opens does not shift the fds the caller's next sandbox gets, whose compiled plan
 * is kept per those numbers (isolate.sandbox._template). Where RLIMIT_NOFILE is lower, the fd
 * stays where it is. */
#define ISO_AWAY_FD 512
static int away(int fd)
{
    if (fd < 0 || fd >= ISO_AWAY_FD)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, ISO_AWAY_FD);
    if (moved < 0)
        return fd;
    close(fd);
    return moved;
}

static int loopback_up(int keep_away)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (keep_away)
        s = away(s);
    if (s < 0)
        return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    return r < 0 ? e : 0;
}

/* Made ahead of a sandbox that asks for one (the spare of isolate._spare_netns): the kernel's
 * work of a clone into CLONE_NEWNET and LOOPBACK_UP, done by a thread of the caller's own. A
 * namespace is a per-thread attribute, so the rest of the process never leaves its own. */
int iso_new_netns(int *stranded)
{
    *stranded = 0;
    int home = away(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (home < 0)
        return -1;
    if (syscall(SYS_unshare, CLONE_NEWNET) < 0) {
        int e = errno;
        close(home);
        errno = e;
        return -1;
    }
    int fd = away(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    int e = fd < 0 ? errno : loopback_up(1);
    if (syscall(SYS_setns, home, CLONE_NEWNET) < 0) {
        *stranded = 1;
        if (!e)
            e = errno;
    }
    close(home);
    if (e) {
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* execvp without malloc: PATH comes from the new environment. */
int iso_exec_search(const char *file, char *const argv[], char *const envp[])
{
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return errno;
    }
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (char *const *e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    size_t flen = strlen(file);
    int seen_eacces = 0, last = ENOENT;
    char buf[ISO_PATH_MAX];
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen + flen + 2 <= sizeof buf) {
            if (dlen) {
                memcpy(buf, p, dlen);
                buf[dlen] = '/';
                memcpy(buf + dlen + 1, file, flen + 1);
            } else {
                memcpy(buf, file, flen + 1);
            }
            execve(buf, argv, envp);
            switch (errno) {
            case EACCES:
                seen_eacces = 1;
                break;
            case ENOENT:
            case ENOTDIR:
            case ENAMETOOLONG:
            case ELOOP:
            case ESTALE:
            case ENODEV:
            case ETIMEDOUT:
                break;
            default:
                return errno;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    (void)last;
    return seen_eacces ? EACCES : ENOENT;
}

static void reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        struct sigaction old;
        if (sigaction(sig, NULL, &old) < 0)
            continue;
        /* A handler lives in the parent's memory: never run it here. Python ignores SIGPIPE
         * and SIGXFSZ for itself; a child expects the defaults (as subprocess restores). */
        if (old.sa_handler != SIG_DFL &&
            (old.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ)) {
            sa.sa_handler = SIG_DFL;
            sigaction(sig, &sa, NULL);
        }
    }
}

static int run_ops(struct child_state *st);

static int grandchild_main(void *arg)
{
    struct child_state *st = arg;
    return run_ops(st);
}

static int do_fork_into_pidns(struct child_state *st, const struct iso_op *op, uint32_t index)
{
    /* a >= 0: join that pid namespace; a == -1: a new one (owned by our user namespace). */
    if (op->a >= 0 ? syscall(SYS_setns, (int)op->a, CLONE_NEWPID) < 0
                   : syscall(SYS_unshare, CLONE_NEWPID) < 0)
        return errno;
    /* The grandchild is born in the pid namespace; CLONE_PARENT makes it the caller's (Python's)
     * child, so the caller reaps it and owns its pidfd. This process only reports its pid. */
    struct child_state gst = *st;
    gst.next_op = index + 1;
    pid_t pid;
    /* An INIT later on stays alive after the exec, so it must not run in the caller's memory
     * (the caller stays suspended until then): fork a copy of its own instead. */
    int init_follows = st->init_op != UINT32_MAX && st->init_op > index;
    if (st->hdr->mode == ISO_MODE_VFORK && !init_follows) {
        pid = clone(grandchild_main, st->grand_stack + ISO_STACK_SIZE,
                    CLONE_PARENT | CLONE_VM | CLONE_VFORK, &gst);
    } else {
        gst.shares_vm = 0;
        pid = (pid_t)syscall(SYS_clone, CLONE_PARENT, 0, NULL, NULL, 0);
        if (pid == 0) {
            take_caller_dumpability(&gst);
            _exit(run_ops(&gst));
        }
    }
    if (pid < 0)
        return errno;
    report(st, ISO_REPORT_PID, 0, ISO_OP_FORK_INTO_PIDNS, (int32_t)index, pid);
    _exit(0);
}

/* ---- INIT: a tiny init as pid 1, like tini or `docker run --init` ---------------------------- */

/* Close every fd but keep (-1: all of them). */
void iso_close_all_but(int keep)
{
    int done = keep < 0 ? syscall(SYS_close_range, 0U, ~0U, 0) == 0
                        : (keep == 0 || syscall(SYS_close_range, 0U, (unsigned)keep - 1, 0) == 0) &&
                              syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0) == 0;
    if (done)
        return;
    struct rlimit rl;
    int lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < lim; fd++)
        if (fd != keep)
            close(fd);
}

/* The init is a copy of the caller's memory, so the sandbox would read the caller's command
 * line in /proc/1/cmdline, which anyone may read (environ is closed to them: the init is not
 * dumpable), and so would `ps` on the host. The caller reads where its argument and environment
 * areas lie (fields 48-51 of /proc/self/stat) before it clones; the copy has them at the same
 * addresses. Returns 0 or an errno. */
static int read_caller_areas(uint64_t v[4])
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n <= 0)
        return n < 0 ? e : EIO;
    buf[n] = '\0';
    /* Count the fields from the ")" that ends field 2 (the command name, which may hold
     * spaces). */
    char *p = strrchr(buf, ')');
    if (!p)
        return EIO;
    v[0] = v[1] = v[2] = v[3] = 0;
    int field = 2;
    for (; *p && field <= 51; p++) {
        if (*p == ' ')
            field++;
        else if (field >= 48 && *p >= '0' && *p <= '9')
            v[field - 48] = v[field - 48] * 10 + (uint64_t)(*p - '0');
    }
    /* A /proc that hides them from us shows zeros. */
    return field > 51 && v[0] && v[1] > v[0] ? 0 : EIO;
}

/* Overwrite the argument area with "isolate-init" (or, once the command has exec'd, the
 * environment area with zeros) in our copy of the caller's memory. process_vm_writev on
 * ourselves: an address we did not expect fails (EFAULT) instead of faulting, and, unlike
 * /proc/self/mem, it needs no /proc of ours, nor to be dumpable (a non-dumpable task's /proc
 * files belong to root of the caller's user namespace, which a rootless init cannot open).
 * Returns 0 or an errno. */
static int hide_caller_cmdline(const struct child_state *st, int environment)
{
    if (st->caller_areas_err)
        return st->caller_areas_err;
    static const char name[] = "isolate-init";
    static const char zeros[256];
    pid_t self = getpid();
    for (int k = environment ? 2 : 0; k < (environment ? 4 : 2); k += 2) {
        uint64_t at = st->caller_areas[k], end = st->caller_areas[k + 1];
        if (end <= at || end - at > (1U << 20))
            return environment ? 0 : EIO;
        const char *src = k == 0 ? name : zeros;
        size_t first = k == 0 ? sizeof name : sizeof zeros;
        while (at < end) {
            size_t len = end - at < first ? (size_t)(end - at) : first;
            struct iovec local = {(void *)src, len};
            struct iovec remote = {(void *)(uintptr_t)at, len};
            ssize_t n = process_vm_writev(self, &local, 1, &remote, 1, 0);
            if (n <= 0)
                return n < 0 ? errno : EIO;
            at += (size_t)n;
            src = zeros;
            first = sizeof zeros;
        }
    }
    return 0;
}

/* pid 1's loop: every signal is blocked and taken here. SIGCHLD: reap every zombie (orphans
 * of the namespace are ours); once the command is among them, report its wait status on
 * exit_fd and exit with it the shell's way (128 + N for a signal: an init cannot die by a
 * signal from inside its namespace, so the caller learns N from the report). Any other
 * signal goes to the command itself, not its process group, as tini does by default. */
__attribute__((noreturn)) static void init_main(const struct child_state *st, pid_t command,
                                                uint32_t index)
{
    int exit_fd = st->hdr->exit_fd;
    /* Nothing of the command's (stdio, pipes, the status pipe) stays open here, so its
     * readers see EOF when it ends, and the caller's status read ends at its exec. */
    iso_close_all_but(exit_fd);
    /* The command has exec'd (or failed): no one shares this memory now. Nothing reads the
     * environment area (environ is closed to all but the caller): its clearing is a second
     * line that does the same writes as the argument area's, which succeeded. */
    (void)hide_caller_cmdline(st, 1);
    uint64_t all = ~(uint64_t)0;
    for (;;) {
        siginfo_t si;
        int sig = (int)syscall(SYS_rt_sigtimedwait, &all, &si, NULL, sizeof all);
        if (sig <= 0)
            continue; /* EINTR */
        if (sig != SIGCHLD) {
            kill(command, sig);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
            if (pid != command)
                continue;
            if (exit_fd >= 0) {
                struct iso_report r = {ISO_REPORT_EXIT, 0, ISO_OP_INIT, (int32_t)index, status};
                write_all(exit_fd, &r, sizeof r);
            }
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
    }
}

static int command_main(void *arg)
{
    struct child_state *st = arg;
    /* What it would have had without an init in between. */
    sigaction(SIGCHLD, &st->command_sigchld, NULL);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &st->command_mask, NULL, sizeof st->command_mask);
    /* A session of its own, as it had as pid 1: its kill(0, sig) does not hit the init, and
     * it may take a controlling terminal (CTTY). */
    if (setsid() < 0)
        fail(st, errno, ISO_OP_INIT, (int)st->next_op - 1);
    return run_ops(st);
}

static int do_init(struct child_state *st, uint32_t index)
{
    /* In the caller's memory (a VFORK child) the caller would wait for us as long as we live:
     * the plan must fork a copy first (FORK mode, or FORK_INTO_PIDNS before this op). */
    if (st->shares_vm)
        return EINVAL;
    struct child_state cst = *st;
    cst.next_op = index + 1;
    cst.shares_vm = 1;
    cst.parent = getpid(); /* the command's parent, as PDEATHSIG after this op sees it */
    /* Block everything first: a signal or the command's end from now on waits for the loop. */
    uint64_t all = ~(uint64_t)0;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &cst.command_mask, sizeof all) < 0)
        return errno;
    /* Exit statuses must wait for waitpid, whatever SIGCHLD disposition the caller had. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &dfl, &cst.command_sigchld);
    /* Before the command exists, so that it never sees the caller through /proc/1: we run
     * outside its seccomp filter, so it must not ptrace us (and environ becomes unreadable),
     * and the name and argument area are ours. The command's exec resets its own name and
     * dumpability; the plan it runs until then does not read the argument strings. An init
     * that cannot hide the caller's command line fails, never shows it. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_NAME, (unsigned long)"isolate-init", 0, 0, 0);
    int hidden = hide_caller_cmdline(st, 0);
    if (hidden)
        return hidden;
    int e = 0;
    pid_t pid = -1;
    char *stack = mmap(NULL, ISO_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        e = errno;
    } else {
        /* We are suspended until the command execs (or fails), so no copy is needed. */
        pid = clone(command_main, stack + ISO_STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &cst);
        e = errno;
        munmap(stack, ISO_STACK_SIZE);
    }
    if (pid < 0) {
        sigaction(SIGCHLD, &cst.command_sigchld, NULL);
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &cst.command_mask, NULL, sizeof all);
        return e;
    }
    init_main(st, pid, index);
}

static int run_ops(struct child_state *st)
{
    const struct iso_plan_header *h = st->hdr;
    for (uint32_t i = st->next_op; i < h->n_ops; i++) {
        const struct iso_op *op = &st->ops[i];
        int e = 0;
        switch (op->kind) {
        case ISO_OP_WAIT_PARENT: {
            char go;
            ssize_t n;
            do
                n = read(h->sync_fd, &go, 1);
            while (n < 0 && errno == EINTR);
            if (n != 1)
                e = n < 0 ? errno : ECANCELED;
            else
                close(h->sync_fd);
            break;
        }
        case ISO_OP_SETNS:
            if (op->a >= 0) {
                if (syscall(SYS_setns, (int)op->a, (int)op->b) < 0)
                    e = errno;
            } else {
                /* By path: e.g. /proc/self/ns/time_for_children after unshare(CLONE_NEWTIME). */
                int fd = open(str_at(st, op->s2), O_RDONLY | O_CLOEXEC);
                if (fd < 0 || syscall(SYS_setns, fd, (int)op->b) < 0)
                    e = errno;
                if (fd >= 0)
                    close(fd);
            }
            break;
        case ISO_OP_UNSHARE:
            if (syscall(SYS_unshare, (int)op->a) < 0)
                e = errno;
            break;
        case ISO_OP_SETHOSTNAME: {
            const char *s = str_at(st, op->s1);
            if (sethostname(s, strlen(s)) < 0)
                e = errno;
            break;
        }
        case ISO_OP_SETDOMAINNAME: {
            const char *s = str_at(st, op->s1);
            if (setdomainname(s, strlen(s)) < 0)
                e = errno;
            break;
        }
        case ISO_OP_MOUNT:
            e = do_mount(st, op);
            break;
        case ISO_OP_MOUNT_SETATTR:
            e = do_setattr(st, op);
            break;
        case ISO_OP_OPEN_TREE:
            e = do_open_tree(st, op);
            break;
        case ISO_OP_MOVE_MOUNT:
            e = do_move_mount(st, op);
            break;
        case ISO_OP_OVERLAY:
            e = do_overlay(st, op);
            break;
        case ISO_OP_MKDIR: {
            struct child_state where = *st;
            if (!(op->flags & ISO_F_IN_ROOT))
                where.root_fd = -1;
            int fd = open_in_root(&where, str_at(st, op->s2),
                                  (op->flags & ISO_F_MKFILE) ? ISO_F_MKFILE : ISO_F_MKDIR);
            if (fd < 0)
                e = errno;
            else
                close(fd);
            break;
        }
        case ISO_OP_SYMLINK:
            e = do_symlink(st, op);
            break;
        case ISO_OP_WRITE_FILE:
            e = do_write_file(st, op);
            break;
        case ISO_OP_MASK:
            e = do_mask(st, op);
            break;
        case ISO_OP_ROOT:
            e = do_root(st, op);
            break;
        case ISO_OP_PIVOT_ROOT:
            e = do_pivot_root(st, op);
            break;
        case ISO_OP_CHROOT: {
            int fd = open_in_root(st, str_at(st, op->s2), 0);
            if (fd < 0 || fchdir(fd) < 0 || chroot(".") < 0 || chdir("/") < 0)
                e = errno;
            if (fd >= 0)
                close(fd);
            break;
        }
        case ISO_OP_CHDIR:
            if (chdir(str_at(st, op->s2)) < 0)
                e = errno;
            break;
        case ISO_OP_RLIMIT: {
            struct rlimit rl = {(rlim_t)op->b, (rlim_t)op->c};
            if (op->a == RLIMIT_NOFILE && fds_op_follows(st, i))
                e = rlimit_nofile_before_fds(st, &rl, i);
            else if (setrlimit((int)op->a, &rl) < 0)
                e = errno;
            break;
        }
        case ISO_OP_SETGROUPS: {
            /* The raw syscall: glibc's setgroups would signal other threads (setxid). */
            const uint32_t *gids = (const uint32_t *)(st->plan + op->s1);
            if (syscall(SYS_setgroups, (size_t)op->a, gids) < 0)
                e = errno;
            break;
        }
        case ISO_OP_SETRESGID:
            if (syscall(SYS_setresgid, (gid_t)op->a, (gid_t)op->a, (gid_t)op->a) < 0)
                e = errno;
            break;
        case ISO_OP_SETRESUID:
            if (syscall(SYS_setresuid, (uid_t)op->a, (uid_t)op->a, (uid_t)op->a) < 0)
                e = errno;
            break;
        case ISO_OP_CAPBSET:
            e = do_capbset(op);
            break;
        case ISO_OP_CAPS:
            e = do_caps(st, op);
            break;
        case ISO_OP_KEEPCAPS:
            if (prctl(PR_SET_KEEPCAPS, (unsigned long)op->a, 0, 0, 0) < 0)
                e = errno;
            break;
        case ISO_OP_NO_NEW_PRIVS:
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                e = errno;
            break;
        case ISO_OP_SECCOMP: {
            struct sock_fprog prog = {(unsigned short)op->a,
                                      (struct sock_filter *)(st->plan + op->s1)};
            if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
                e = errno;
            break;
        }
        case ISO_OP_FDS:
            e = do_fds(st, op);
            if (!e && st->nofile_op >= 0) {
                int32_t asked = st->nofile_op;
                st->nofile_op = -1;
                if (setrlimit(RLIMIT_NOFILE, &st->nofile) < 0)
                    fail(st, errno, ISO_OP_RLIMIT, (int)asked);
            }
            break;
        case ISO_OP_KEEP_FDS:
            e = do_keep_fds(st, op);
            break;
        case ISO_OP_UMOUNT:
            e = do_umount(st, op);
            break;
        case ISO_OP_MKNOD:
            e = do_mknod(st, op);
            break;
        case ISO_OP_SETSID:
            if (setsid() < 0)
                e = errno;
            break;
        case ISO_OP_CTTY:
            if (ioctl((int)op->a, TIOCSCTTY, 0) < 0)
                e = errno;
            break;
        case ISO_OP_LOOPBACK_UP:
            e = loopback_up(0);
            break;
        case ISO_OP_CGROUP_JOIN:
            if (write((int)op->a, "0", 1) < 0)
                e = errno;
            break;
        case ISO_OP_UMASK:
            umask((mode_t)op->a);
            break;
        case ISO_OP_PDEATHSIG:
            /* The parent may have died before prctl: its pidfd (opened by the parent before
             * clone; works across pid namespaces) is readable once it has. */
            if (prctl(PR_SET_PDEATHSIG, (unsigned long)op->a, 0, 0, 0) < 0)
                e = errno;
            else
                e = parent_gone(st, op);
            break;
        case ISO_OP_FORK_INTO_PIDNS:
            e = do_fork_into_pidns(st, op, i);
            break;
        case ISO_OP_INIT:
            e = do_init(st, i);
            break;
        case ISO_OP_CONSOLE:
            e = do_console(st, op);
            break;
        case ISO_OP_REROOT:
            e = do_reroot();
            break;
        case ISO_OP_OPEN: {
            int fd = open(str_at(st, op->s2), (int)op->a | O_CLOEXEC);
            if (fd < 0)
                e = errno;
            else
                report(st, ISO_REPORT_FD, 0, ISO_OP_OPEN, (int32_t)i, fd);
            break;
        }
        case ISO_OP_SOCKET: {
            /* A socket belongs to the network namespace it is made in: after a SETNS this
             * is how a caller gets one of another namespace without ever changing its own. */
            int fd = socket((int)op->a, (int)op->b | SOCK_CLOEXEC, (int)op->c);
            if (fd < 0)
                e = errno;
            else
                report(st, ISO_REPORT_FD, 0, ISO_OP_SOCKET, (int32_t)i, fd);
            break;
        }
        case ISO_OP_EXEC: {
            char *const *argv = (char *const *)(st->plan + op->a);
            char *const *envp = (char *const *)(st->plan + op->b);
            if (h->flags & ISO_PLAN_RESET_SIGNALS) {
                sigset_t empty;
                sigemptyset(&empty);
                sigprocmask(SIG_SETMASK, &empty, NULL);
            }
            if (op->flags & ISO_F_EXEC_FD) {
                syscall(SYS_execveat, (int)op->c, "", argv, envp, AT_EMPTY_PATH);
                e = errno;
            } else if (op->flags & ISO_F_SEARCH_PATH) {
                e = iso_exec_search(str_at(st, op->s1), argv, envp);
            } else {
                execve(str_at(st, op->s1), argv, envp);
                e = errno;
            }
            break;
        }
        default:
            e = EINVAL;
            break;
        }
        if (e) {
            if ((op->flags & ISO_F_OPTIONAL) && e == ENOENT)
                continue;
            if ((op->flags & ISO_F_IF_MOUNTED) && e == EINVAL && op->kind == ISO_OP_MOUNT_SETATTR)
                continue;
            fail(st, e, (int)op->kind, (int)i);
        }
    }
    /* A plan without EXEC: the child's work is done. */
    _exit(0);
}

static int child_main(void *arg)
{
    struct child_state *st = arg;
    if (!st->shares_vm) {
        take_caller_dumpability(st);
        if (st->dumpable_fd >= 0)
            close(st->dumpable_fd);
    }
    /* Every signal is blocked until an EXEC (or an INIT's command) lets them in: a plan
     * with neither (the shared child that builds a sandbox's root) runs no handler of the
     * caller's whatever they are, and a fault still kills it (the kernel takes a blocked
     * fault signal as SIG_DFL), so its 63 sigaction calls would change nothing. */
    if ((st->hdr->flags & ISO_PLAN_RESET_SIGNALS) && st->unblocks)
        reset_signals();
    return run_ops(st);
}

/* ---- the parent --------------------------------------------------------------------------- */

static int fixup_table(uint8_t *plan, size_t len, uint64_t off)
{
    if (off == 0 || off % 8 || off >= len)
        return EINVAL;
    uint64_t *t = (uint64_t *)(plan + off);
    for (; (uint8_t *)t + 8 <= plan + len; t++) {
        if (*t == 0)
            return 0;
        if (*t >= len)
            return EINVAL;
        *t = (uint64_t)(uintptr_t)(plan + *t);
    }
    return EINVAL;
}

/* A child that shares our memory (VFORK mode) and changes its uid or gid makes the kernel set
 * that memory non-dumpable (commit_creds): right while the child runs as another user with our
 * memory mapped (nobody of that uid may ptrace it), wrong for us once it has exec'd. While any
 * such child runs, dumpable stays as the kernel left it; when the last one is done, the
 * value from before the first is given back. */
static pthread_mutex_t dumpable_lock = PTHREAD_MUTEX_INITIALIZER;
static int dumpable_spawns;
static int dumpable_before;

static void shared_vm_begin(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (dumpable_spawns++ == 0)
        dumpable_before = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

static void shared_vm_end(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (--dumpable_spawns == 0 && (dumpable_before == 0 || dumpable_before == 1) &&
        prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable_before)
        prctl(PR_SET_DUMPABLE, (unsigned long)dumpable_before, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

/* The caller's own dumpability: while such a child runs, the value from before it. A FORK child
 * made meanwhile is a copy of memory the kernel made non-dumpable for the moment; it takes this
 * value instead (take_caller_dumpability), or newuidmap would refuse to map it ("owned by a
 * different user") and the parent could not open its namespaces. */
static int caller_dumpable(void)
{
    pthread_mutex_lock(&dumpable_lock);
    int d = dumpable_spawns ? dumpable_before : prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
    return d;
}

int iso_spawn(uint8_t *plan, size_t len, struct iso_spawn_result *out)
{
    out->pid = -1;
    out->pidfd = -1;
    out->err = 0;
    out->step = ISO_STEP_PLAN;
    struct iso_plan_header *h = (struct iso_plan_header *)plan;
    if (len < sizeof *h || h->magic != ISO_PLAN_MAGIC || h->version != ISO_PLAN_VERSION ||
        h->size != len || h->ops_offset + (uint64_t)h->n_ops * sizeof(struct iso_op) > len) {
        out->err = EINVAL;
        return -1;
    }
    struct child_state st;
    memset(&st, 0, sizeof st);
    st.plan = plan;
    st.hdr = h;
    st.ops = (const struct iso_op *)(plan + h->ops_offset);
    st.root_fd = -1;
    st.status_fd = h->status_fd;
    st.parent = getpid();
    st.shares_vm = h->mode == ISO_MODE_VFORK;
    st.init_op = UINT32_MAX;
    st.dumpable_fd = -1;
    st.nofile_op = -1;
    for (int i = 0; i < ISO_SLOTS; i++)
        st.slots[i] = -1;
    for (uint32_t i = 0; i < h->n_ops; i++) {
        if (st.ops[i].kind == ISO_OP_INIT && st.init_op == UINT32_MAX)
            st.caller_areas_err = read_caller_areas(st.caller_areas);
        if (st.ops[i].kind == ISO_OP_INIT)
            st.init_op = i;
        if (st.ops[i].kind == ISO_OP_INIT || st.ops[i].kind == ISO_OP_EXEC)
            st.unblocks = 1;
        if (st.ops[i].kind == ISO_OP_EXEC) {
            int e = fixup_table(plan, len, (uint64_t)st.ops[i].a);
            if (!e)
                e = fixup_table(plan, len, (uint64_t)st.ops[i].b);
            if (e) {
                out->err = e;
                return -1;
            }
        }
    }

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    out->step = ISO_STEP_CLONE;
    int pidfd = -1;
    pid_t pid;
    char *stack = NULL;
    if (h->mode == ISO_MODE_VFORK) {
        stack = mmap(NULL, 2 * ISO_STACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) {
            out->err = errno;
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
        st.grand_stack = stack + ISO_STACK_SIZE;
        st.dumpable = caller_dumpable();
        shared_vm_begin();
        uint64_t flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | h->clone_flags |
                         ((h->flags & ISO_PLAN_SHARE_FILES) ? CLONE_FILES : 0);
        if (h->cgroup_fd >= 0) {
#if ISO_HAVE_CLONE3_VM
            /* Born in the v2 group: no cgroup.procs write, which takes the kernel's global
             * threadgroup lock for writing (an RCU grace period after a quiet moment). */
            struct iso_clone_args args;
            memset(&args, 0, sizeof args);
            args.flags = flags | CLONE_INTO_CGROUP;
            args.pidfd = (uint64_t)(uintptr_t)&pidfd;
            args.exit_signal = SIGCHLD;
            args.stack = (uint64_t)(uintptr_t)stack;
            args.stack_size = ISO_STACK_SIZE;
            args.cgroup = (uint64_t)h->cgroup_fd;
            long r = iso_clone3_vm(&args, sizeof args, child_main, &st);
            pid = r < 0 ? -1 : (pid_t)r;
            out->err = r < 0 ? (int)-r : 0;
#else
            pid = -1;
            out->err = ENOSYS;
#endif
        } else {
            pid = clone(child_main, stack + ISO_STACK_SIZE, (int)flags | SIGCHLD, &st, &pidfd);
            out->err = errno;
        }
        shared_vm_end();
    } else {
        st.dumpable = caller_dumpable();
        /* A vfork sibling with other ids runs in our memory right now, so the copy starts
         * non-dumpable: wait below until the child has made itself ours, or a parent step
         * (newuidmap, opening its namespaces) would find it closed. */
        int fixing[2] = {-1, -1};
        if (st.dumpable != prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) &&
            pipe2(fixing, O_CLOEXEC) == 0)
            st.dumpable_fd = fixing[1];
        struct iso_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_PIDFD | h->clone_flags;
        args.pidfd = (uint64_t)(uintptr_t)&pidfd;
        args.exit_signal = SIGCHLD;
        if (h->cgroup_fd >= 0) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = (uint64_t)h->cgroup_fd;
        }
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
        if (pid < 0 && errno == ENOSYS && h->cgroup_fd < 0)
            pid = (pid_t)syscall(SYS_clone, CLONE_PIDFD | SIGCHLD | h->clone_flags, 0, &pidfd,
                                 NULL, 0);
        out->err = errno;
        if (pid == 0)
            child_main(&st); /* never returns */
        if (fixing[0] >= 0) {
            close(fixing[1]);
            char c;
            while (pid > 0 && read(fixing[0], &c, 1) < 0 && errno == EINTR)
                ; /* EOF: the child closed its end (or died) */
            close(fixing[0]);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (stack)
        munmap(stack, 2 * ISO_STACK_SIZE);
    if (pid < 0)
        return -1;
    out->err = 0;
    out->pid = pid;
    out->pidfd = pidfd;
    return 0;
}
