/* start.c -- start the container from the plan: the same iso_spawn() as lowlevel.spawn, with
 * no Python anywhere, for the first start and every restart.
 *
 * For each start the plan as Python wrote it is copied (iso_spawn turns the copy's argv/envp
 * offsets into pointers) and the copy's placeholders are filled in: the header's status_fd,
 * sync_fd and exit_fd, and wherever an op names an ISO_FD_* (FDS sources, PDEATHSIG's pidfd,
 * CONSOLE's socket). The container's stdio is whatever the shim has on fds 0, 1 and 2 when it
 * clones, so the plan's FDS op keeps (0, 0), (1, 1), (2, 2): the shim puts the pipes there
 * (stdin: a pipe with --stdin, else /dev/null) for the clone, and /dev/null again after. With
 * --tty they are /dev/null and the plan's CONSOLE op replaces them with the pty.
 *
 * Parent steps, for a plan that waits (WAIT_PARENT): the shim writes /proc/PID/setgroups,
 * uid_map and gid_map with what it was given, or runs newuidmap/newgidmap PID ARGS..., then
 * sends GO.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

#define N_PLACEHOLDERS 5 /* ISO_FD_STATUS (-2) ... ISO_FD_CONSOLE (-6) */

struct plan_needs {
    int sync, exit, console;
};

static int placeholder(int64_t v) { return v <= ISO_FD_STATUS && v >= ISO_FD_CONSOLE; }

/* What the plan asks of its spawner, and (with fds) fill in its placeholders. 0, or -1 for a
 * plan whose ops point outside it. */
static int scan_plan(uint8_t *plan, size_t len, struct plan_needs *needs, const int *fds)
{
    struct iso_plan_header *h = (struct iso_plan_header *)plan;
    struct iso_op *ops = (struct iso_op *)(plan + h->ops_offset);
    memset(needs, 0, sizeof *needs);
    for (uint32_t i = 0; i < h->n_ops; i++) {
        struct iso_op *op = &ops[i];
        switch (op->kind) {
        case ISO_OP_WAIT_PARENT:
            needs->sync = 1;
            break;
        case ISO_OP_INIT:
            needs->exit = 1;
            break;
        case ISO_OP_CONSOLE:
            needs->console = 1;
            if (fds && placeholder(op->a))
                op->a = fds[-op->a - 2];
            break;
        case ISO_OP_PDEATHSIG:
            if (fds && placeholder(op->b))
                op->b = fds[-op->b - 2];
            break;
        case ISO_OP_FDS: {
            if (op->a < 0 || op->s1 % 4 || op->s1 + (uint64_t)op->a * 12 > len)
                return -1;
            int32_t *t = (int32_t *)(plan + op->s1);
            for (int64_t k = 0; k < op->a; k++) {
                if (t[3 * k] == ISO_FD_EXIT)
                    needs->exit = 1;
                if (fds && placeholder(t[3 * k]))
                    t[3 * k] = fds[-t[3 * k] - 2];
            }
            break;
        }
        default:
            break;
        }
    }
    return 0;
}

int plan_check(const uint8_t *plan, size_t len)
{
    const struct iso_plan_header *h = (const struct iso_plan_header *)plan;
    if (len < sizeof *h || h->magic != ISO_PLAN_MAGIC || h->version != ISO_PLAN_VERSION ||
        h->size != len || h->ops_offset % 8 ||
        h->ops_offset + (uint64_t)h->n_ops * sizeof(struct iso_op) > len)
        return -1;
    uint8_t *copy = malloc(len);
    if (!copy)
        return -1;
    memcpy(copy, plan, len);
    struct plan_needs needs;
    int r = scan_plan(copy, len, &needs, NULL);
    free(copy);
    /* A vfork child that waits for its parent would wait for ever: the parent is suspended. */
    if (r == 0 && needs.sync && h->mode != ISO_MODE_FORK)
        r = -1;
    return r;
}

static int write_proc(pid_t pid, const char *name, const char *content)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    size_t len = strlen(content);
    ssize_t n = write(fd, content, len);
    int e = n < 0 ? errno : (size_t)n != len ? EIO : 0;
    close(fd);
    return e;
}

/* newuidmap PID ARGS...: 0, or errno (ENOENT when it is not installed) with *status set to
 * its wait status when it ran and failed. */
static int run_idmap(const char *tool, pid_t pid, const char *args, int *status)
{
    char *argv[3 + 3 * 340 + 1];
    char buf[4096], pidbuf[24];
    size_t n = strlen(args);
    if (n >= sizeof buf)
        return E2BIG;
    memcpy(buf, args, n + 1);
    int argc = 0;
    argv[argc++] = (char *)tool;
    fmt_u64(pidbuf, (uint64_t)pid);
    argv[argc++] = pidbuf;
    for (char *tok = strtok(buf, " \t\n"); tok; tok = strtok(NULL, " \t\n")) {
        if (argc >= (int)(sizeof argv / sizeof argv[0]) - 1)
            return E2BIG;
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    /* The exec's errno comes back on a close-on-exec pipe: EOF means it ran. */
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return errno;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(tool, argv);
        int e = errno;
        write_all(p[1], &e, sizeof e);
        _exit(127);
    }
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(p[1]);
    if (child < 0) {
        close(p[0]);
        return fork_errno;
    }
    int e = 0;
    ssize_t r;
    do
        r = read(p[0], &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(p[0]);
    while (waitpid(child, status, 0) < 0 && errno == EINTR)
        ;
    if (r == (ssize_t)sizeof e)
        return e;
    return WIFEXITED(*status) && WEXITSTATUS(*status) == 0 ? 0 : EPERM;
}

static int parent_steps(struct shim *s, pid_t pid, struct start_error *e)
{
    const struct shim_options *o = &s->opt;
    int status = 0, err;
    if (o->setgroups && (err = write_proc(pid, "setgroups", o->setgroups))) {
        *e = (struct start_error){SHIM_REPORT_FAILED, err, SHIM_STEP_SETGROUPS, -1, pid};
        return -1;
    }
    if (o->uid_map && (err = write_proc(pid, "uid_map", o->uid_map))) {
        *e = (struct start_error){SHIM_REPORT_FAILED, err, SHIM_STEP_UID_MAP, -1, pid};
        return -1;
    }
    if (o->newuidmap && (err = run_idmap("newuidmap", pid, o->newuidmap, &status))) {
        *e = (struct start_error){SHIM_REPORT_FAILED, err, SHIM_STEP_NEWUIDMAP, -1, status};
        return -1;
    }
    if (o->gid_map && (err = write_proc(pid, "gid_map", o->gid_map))) {
        *e = (struct start_error){SHIM_REPORT_FAILED, err, SHIM_STEP_GID_MAP, -1, pid};
        return -1;
    }
    if (o->newgidmap && (err = run_idmap("newgidmap", pid, o->newgidmap, &status))) {
        *e = (struct start_error){SHIM_REPORT_FAILED, err, SHIM_STEP_NEWGIDMAP, -1, status};
        return -1;
    }
    return 0;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

int start_container(struct shim *s, struct start_error *e)
{
    memcpy(s->work, s->plan, s->plan_len);
    struct plan_needs needs;
    scan_plan(s->work, s->plan_len, &needs, NULL); /* checked when it was read */
    int status_p[2] = {-1, -1}, sync_p[2] = {-1, -1}, exit_p[2] = {-1, -1};
    int console_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    int in_p[2] = {-1, -1};
    int ok = pipe2(status_p, O_CLOEXEC) == 0 &&
             (!needs.sync ||
              socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync_p) == 0) &&
             (!needs.exit || pipe2(exit_p, O_CLOEXEC) == 0) &&
             (!s->opt.tty ||
              socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, console_p) == 0) &&
             (s->opt.tty || (pipe2(out_p, O_CLOEXEC) == 0 && pipe2(err_p, O_CLOEXEC) == 0)) &&
             (s->opt.tty || !s->opt.open_stdin || pipe2(in_p, O_CLOEXEC) == 0);
    int fail_errno = errno;
    /* The container's stdio, on our 0, 1, 2 while it is cloned. */
    if (ok)
        ok = dup2(in_p[0] >= 0 ? in_p[0] : s->null_fd, 0) == 0 &&
             dup2(out_p[1] >= 0 ? out_p[1] : s->null_fd, 1) == 1 &&
             dup2(err_p[1] >= 0 ? err_p[1] : s->null_fd, 2) == 2;
    if (!ok) {
        if (!fail_errno)
            fail_errno = errno;
        *e = (struct start_error){SHIM_REPORT_FAILED, fail_errno, SHIM_STEP_STDIO, -1, 0};
        goto fail_fds;
    }
    int fds[N_PLACEHOLDERS] = {status_p[1], sync_p[1], exit_p[1], s->self_pidfd, console_p[1]};
    scan_plan(s->work, s->plan_len, &needs, fds);
    struct iso_plan_header *h = (struct iso_plan_header *)s->work;
    h->status_fd = status_p[1];
    h->sync_fd = sync_p[1];
    h->exit_fd = exit_p[1];

    s->oom_before = oom_kills(s->opt.oom_cgroup);
    struct iso_spawn_result res;
    int r = iso_spawn(s->work, s->plan_len, &res);
    /* Our ends only, from here on; stdio back to /dev/null. */
    close_fd(&status_p[1]);
    close_fd(&sync_p[1]);
    close_fd(&exit_p[1]);
    close_fd(&console_p[1]);
    close_fd(&out_p[1]);
    close_fd(&err_p[1]);
    close_fd(&in_p[0]);
    for (int fd = 0; fd < 3; fd++)
        dup2(s->null_fd, fd);
    if (r < 0) {
        *e = (struct start_error){SHIM_REPORT_ERROR, res.err, res.step, -1, 0};
        goto fail_fds;
    }
    if (res.pidfd >= 0)
        close(res.pidfd);
    pid_t first = res.pid, pid = res.pid;
    int step_failed = 0;
    if (needs.sync) {
        if (parent_steps(s, first, e) < 0) {
            step_failed = 1;
            kill(first, SIGKILL);
        } else {
            (void)!send(sync_p[0], "G", 1, MSG_NOSIGNAL);
        }
        close_fd(&sync_p[0]);
    }
    /* EOF once the container has exec'd (or every process of its set-up has ended). */
    struct iso_report rep, error;
    int have_error = 0;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(status_p[0], (uint8_t *)&rep + got, sizeof rep - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got < sizeof rep)
            continue;
        got = 0;
        if (rep.kind == ISO_REPORT_PID)
            pid = (pid_t)rep.value;
        else if (rep.kind == ISO_REPORT_ERROR && !have_error) {
            error = rep;
            have_error = 1;
        }
    }
    close_fd(&status_p[0]);
    if (pid != first)
        reap(first); /* it only forked the container into its pid namespace */
    if (have_error || step_failed) {
        if (have_error)
            *e = (struct start_error){SHIM_REPORT_ERROR, error.err, error.step, error.op_index,
                                      pid};
        if (pid != first)
            kill(pid, SIGKILL);
        reap(pid);
        goto fail_fds;
    }
    if (s->opt.tty) {
        int master = console_receive(console_p[0]);
        if (master < 0) {
            *e = (struct start_error){SHIM_REPORT_FAILED, errno, SHIM_STEP_CONSOLE, -1, pid};
            kill(pid, SIGKILL);
            reap(pid);
            goto fail_fds;
        }
        close_fd(&console_p[0]);
        set_nonblock(master);
        s->out_fd = master;
    } else {
        set_nonblock(out_p[0]);
        set_nonblock(err_p[0]);
        s->out_fd = out_p[0];
        s->err_fd = err_p[0];
        if (in_p[1] >= 0) {
            set_nonblock(in_p[1]);
            s->stdin_fd = in_p[1];
        }
    }
    if (exit_p[0] >= 0)
        set_nonblock(exit_p[0]);
    s->exit_fd = exit_p[0];
    s->pid = pid;
    now_monotone(&s->started);
    s->started_ms = monotonic_ms();
    return 0;

fail_fds:
    for (int fd = 0; fd < 3; fd++)
        dup2(s->null_fd, fd);
    int *all[] = {&status_p[0], &status_p[1], &sync_p[0], &sync_p[1], &exit_p[0], &exit_p[1],
                  &console_p[0], &console_p[1], &out_p[0], &out_p[1], &err_p[0], &err_p[1],
                  &in_p[0], &in_p[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        close_fd(all[i]);
    return -1;
}
