/* isolate.h -- the C interface of isolate's native core.
 *
 * This one header is both the C interface (included by spawn.c) and the cffi declaration
 * (build.py feeds the part between the CDEF markers to ffi.cdef). Keep that part plain: fixed
 * width types, integer #defines, no expressions.
 *
 * A spawn plan is one flat buffer that Python builds (isolate/_plan.py) and the child interprets:
 *
 *   [iso_plan_header][iso_op * n_ops][string/blob area]
 *
 * Every reference inside the buffer is a byte offset from the buffer start (0 = none), never a
 * pointer. The only exception is the argv/envp tables, which hold offsets when Python writes them
 * and are turned into pointers by iso_spawn() in the parent, before clone.
 */
#ifndef ISOLATE_NATIVE_H
#define ISOLATE_NATIVE_H
#include <stdint.h>
#include <sys/types.h>
/* CDEF-BEGIN */
#define ISO_PLAN_MAGIC 1230197553
#define ISO_PLAN_VERSION 3

/* Clone modes. */
#define ISO_MODE_VFORK 1   /* CLONE_VM|CLONE_VFORK: parent resumes at exec or exit */
#define ISO_MODE_FORK 2    /* copy-on-write child; may wait for the parent (ISO_OP_WAIT_PARENT) */

/* Operation kinds. The numbers are part of the protocol: isolate/_plan.py has the same IntEnum
 * and a test checks that they agree. Report "steps" use the same numbers; steps outside the op
 * list are the ISO_STEP_* values. */
#define ISO_OP_WAIT_PARENT 1     /* block until the parent sends GO on the sync socket */
#define ISO_OP_SETNS 2           /* a = fd (or -1: open path s2), b = nstype */
#define ISO_OP_UNSHARE 3         /* a = flags */
#define ISO_OP_SETHOSTNAME 4     /* s1 = name */
#define ISO_OP_SETDOMAINNAME 5   /* s1 = name */
#define ISO_OP_MOUNT 6           /* s1 source, s2 target, s3 fstype, s4 data, a = MS_* flags */
#define ISO_OP_MOUNT_SETATTR 7   /* s2 target, a = attr_set, b = attr_clr, c = propagation */
#define ISO_OP_OPEN_TREE 8       /* s1 source, a = slot: clone a mount tree into a slot fd */
#define ISO_OP_MOVE_MOUNT 9      /* a = slot, s2 target: attach a slot's tree at target */
#define ISO_OP_MKDIR 10          /* s2 path; parents too; an empty file with ISO_F_MKFILE */
#define ISO_OP_SYMLINK 11        /* s1 link content, s2 link path */
#define ISO_OP_WRITE_FILE 12     /* s2 path, s3 content, a = content length, b = mode */
#define ISO_OP_MASK 13           /* s2 path: hide it; a dir gets s1 (an empty read-only dir) or an empty tmpfs, a file /dev/null */
#define ISO_OP_ROOT 14           /* s2 path: the directory that IN_ROOT paths resolve in */
#define ISO_OP_PIVOT_ROOT 15     /* s2 new root: pivot_root there and detach the old root */
#define ISO_OP_CHROOT 16         /* s2 path */
#define ISO_OP_CHDIR 17          /* s2 path */
#define ISO_OP_RLIMIT 18         /* a = resource, b = soft, c = hard */
#define ISO_OP_SETGROUPS 19      /* a = count, s1 = offset of uint32 gids */
#define ISO_OP_SETRESGID 20      /* a = gid */
#define ISO_OP_SETRESUID 21      /* a = uid */
#define ISO_OP_CAPBSET 22        /* a = mask of capabilities to keep in the bounding set */
#define ISO_OP_CAPS 23           /* a = permitted, b = inheritable, c = ambient, s1 = effective
                                    (8 bytes; 0: the permitted set) */
#define ISO_OP_KEEPCAPS 24       /* a = 0/1 */
#define ISO_OP_NO_NEW_PRIVS 25
#define ISO_OP_SECCOMP 26        /* s1 = offset of sock_filter[], a = instruction count */
#define ISO_OP_FDS 27            /* s1 = offset of int32 triples (src, dst, cloexec), a = count */
#define ISO_OP_SETSID 28
#define ISO_OP_CTTY 29           /* a = fd that becomes the controlling terminal */
#define ISO_OP_LOOPBACK_UP 30
#define ISO_OP_CGROUP_JOIN 31    /* a = fd of a cgroup.procs file: the child writes "0" */
#define ISO_OP_UMASK 32          /* a = mask */
#define ISO_OP_PDEATHSIG 33      /* a = signal, b = parent's pidfd or -1 (getppid()): fail with
                                    ESRCH if it died already, EINVAL if it cannot tell */
#define ISO_OP_FORK_INTO_PIDNS 34 /* a = pid ns fd (-1: a new one): the rest runs in a grandchild */
#define ISO_OP_EXEC 35           /* s1 file, a = argv table, b = envp table, c = fd (EXEC_FD) */
#define ISO_OP_OVERLAY 36       /* s1 lowers (a, top first), s3 upper+work, s4 opts (c); s2 target/slot b */
#define ISO_OP_OPEN 37           /* s2 path, a = open flags: report the fd (ISO_REPORT_FD) */
#define ISO_OP_INIT 38           /* the rest runs in a child (the command); we stay as its init */
#define ISO_OP_KEEP_FDS 39       /* s1 = int32 fds, ascending (a): at exec close all but 0-2 and
                                    these (marked close-on-exec now; these made inheritable) */
#define ISO_OP_UMOUNT 40         /* s2 target, a = umount2 flags */
#define ISO_OP_MKNOD 41          /* s2 path, a = mode (S_IFCHR/S_IFBLK/S_IFIFO | perms, not
                                    masked by the umask), b = device number,
                                    c = uid << 32 | gid ((uint32_t)-1: unchanged) */
#define ISO_OP_SOCKET 42         /* a = domain, b = type, c = protocol: report the fd (ISO_REPORT_FD) */
#define ISO_OP_CONSOLE 43        /* a = socket, b = rows << 16 | cols (0: as is), s2 = ptmx (NULL:
                                    /dev/pts/ptmx): a pty of that devpts becomes stdio and the
                                    controlling terminal; its master goes over a (SCM_RIGHTS) */
#define ISO_OP_REROOT 44         /* make our root the root of our mount namespace; rslave it all */
#define ISO_OP__MAX 45

#define ISO_STEP_CLONE 100
#define ISO_STEP_SIGNALS 101
#define ISO_STEP_PLAN 102

/* Op flags. */
#define ISO_F_IN_ROOT 1          /* resolve the target inside the ROOT dir, symlinks stay inside */
#define ISO_F_MKDIR 2            /* create the target directory (and parents) if missing */
#define ISO_F_MKFILE 4           /* create the target as an empty file if missing */
#define ISO_F_OPTIONAL 8         /* a missing source/target is not an error */
#define ISO_F_RECURSIVE 16       /* OPEN_TREE/MOUNT_SETATTR: whole subtree */
#define ISO_F_SEARCH_PATH 32     /* EXEC: search PATH from the new environment, like execvp */
#define ISO_F_EXEC_FD 64         /* EXEC: execveat(c, "", AT_EMPTY_PATH) */
#define ISO_F_IF_MOUNTED 128     /* MOUNT_SETATTR: a target that is no mount (EINVAL) skips it */

/* Placeholder fds: where a plan names one of these (an FDS source, PDEATHSIG's b, CONSOLE's a),
 * the spawner puts an fd of its own before the clone: lowlevel.spawn its status pipe, sync
 * socket and exit pipe; isolate-shim all five. isolate/_plan.py: Fd. */
#define ISO_FD_STATUS -2         /* the status pipe (an exec'd init reports exec errors there) */
#define ISO_FD_SYNC -3           /* the child's end of the sync socket */
#define ISO_FD_EXIT -4           /* the write end of the exit report pipe */
#define ISO_FD_PARENT -5         /* a pidfd of the spawning process (PDEATHSIG's b) */
#define ISO_FD_CONSOLE -6        /* the socket the pty master goes to (CONSOLE's a) */

/* Plan flags. */
#define ISO_PLAN_RESET_SIGNALS 1 /* restore default dispositions, empty mask before exec */
#define ISO_PLAN_SHARE_FILES 2   /* VFORK mode: share the fd table (CLONE_FILES), so fds the
                                    child opens (ISO_OP_OPEN) are the parent's; no FDS op then */

/* Report kinds sent by the child on the status fd. */
#define ISO_REPORT_ERROR 1
#define ISO_REPORT_PID 2
#define ISO_REPORT_FD 3
#define ISO_REPORT_EXIT 4        /* from an INIT on exit_fd: value = the command's wait status */

struct iso_plan_header {
    uint32_t magic;
    uint32_t version;
    uint64_t clone_flags;
    uint32_t mode;
    uint32_t flags;
    int32_t status_fd;
    int32_t sync_fd;
    int32_t cgroup_fd;
    uint32_t n_ops;
    uint32_t ops_offset;
    uint32_t size;
    int32_t exit_fd;             /* where an INIT op reports the command's end, -1: nowhere */
    uint32_t reserved;
};

struct iso_op {
    uint32_t kind;
    uint32_t flags;
    int64_t a;
    int64_t b;
    int64_t c;
    uint32_t s1;
    uint32_t s2;
    uint32_t s3;
    uint32_t s4;
};

struct iso_report {
    int32_t kind;
    int32_t err;
    int32_t step;
    int32_t op_index;
    int64_t value;
};

struct iso_spawn_result {
    int32_t pid;
    int32_t pidfd;
    int32_t err;
    int32_t step;
};

/* Clone a child that runs the plan. Returns 0 and fills *out, or -1 with out->err/out->step. */
int iso_spawn(uint8_t *plan, size_t len, struct iso_spawn_result *out);

/* Thin errno-preserving wrappers for the calling process: return -1 and leave errno set. */
int iso_setns(int fd, int nstype);
int iso_unshare(int flags);
int iso_pivot_root(const char *new_root, const char *put_old);
int iso_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data);
int iso_umount2(const char *target, int flags);
int iso_pidfd_open(int pid, unsigned int flags);
int iso_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int iso_sethostname(const char *name, size_t len);
int iso_mount_setattr(int dfd, const char *path, unsigned int flags, uint64_t attr_set,
                      uint64_t attr_clr, uint64_t propagation);
int iso_open_tree(int dfd, const char *path, unsigned int flags);
int iso_move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
                   unsigned int flags);
int iso_fsopen(const char *fsname, unsigned int flags);
int iso_fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux);
int iso_fsmount(int fd, unsigned int flags, unsigned int attr_flags);
int iso_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int iso_clone3_works(void);
int iso_vfork_into_cgroup_works(void); /* VFORK plans may have a cgroup_fd */
int iso_bpf(int cmd, void *attr, unsigned int size);
/* A new network namespace with lo up, made by the calling thread, which is back in its own on
 * return: an O_CLOEXEC fd of it, or -1 with errno set. *stranded is set to 1 when the thread
 * could not go back (it is then still in the new namespace and must run nothing else). */
int iso_new_netns(int *stranded);
/* Layer extraction fast path (extract.c). Python reads and decompresses the stream and feeds
 * it here in big chunks; C unpacks the common entries (plain ustar/GNU regular files,
 * directories and symlinks) itself and hands every other entry back to Python, untouched, by
 * stopping at its header. Paths are resolved below root_fd without following symlinks. */
#define ISO_X_CHOWN 1             /* keep owners (euid 0) */
#define ISO_X_TRACK_CREATED 2     /* record created paths (whiteouts must not hide them) */

#define ISO_X_MORE 1              /* all input used: feed more, or hand off at end of stream */
#define ISO_X_HANDOFF 2           /* the header at *consumed is Python's to handle */
#define ISO_X_ERROR 3             /* a filesystem call failed mid-entry: err, entry */

struct iso_extract {
    int32_t root_fd;
    uint32_t flags;
    uint64_t files;               /* entries made */
    uint64_t bytes;               /* regular-file data written */
    int32_t err;                  /* errno of ISO_X_ERROR */
    int32_t in_entry;             /* a file's data or padding is still to come */
    char entry[512];              /* name of the entry being unpacked, as tarfile spells it */
    uint8_t *created;             /* NUL-terminated paths made, for Python to take */
    uint64_t created_len;
    uint64_t created_cap;
    uint8_t *dirs;                /* directory records, see extract.c */
    uint64_t dirs_len;
    uint64_t dirs_cap;
    /* private to extract.c */
    int32_t file_fd;
    int32_t parent_fd;
    uint64_t remaining;
    uint64_t padding;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    int64_t mtime;
    char parent[512];
};

void iso_extract_init(struct iso_extract *x, int root_fd, uint32_t flags);
int iso_extract_feed(struct iso_extract *x, const uint8_t *buf, uint64_t len,
                     uint64_t *consumed);
void iso_extract_forget_dirs(struct iso_extract *x);
void iso_extract_release(struct iso_extract *x);
/* CDEF-END */

/* For isolate-shim's init (C only): execve file, searching PATH of envp when it has no '/', as
 * execvp does but without malloc; returns the errno to report (ENOENT, EACCES ...). */
int iso_exec_search(const char *file, char *const argv[], char *const envp[]);
/* Close every fd but keep (-1: all of them). */
void iso_close_all_but(int keep);
#endif
