/* isolate-shim -- the supervisor of one container (the role conmon plays for podman), and a tiny
 * init (init.c). A small static C program that Python execs, never a fork of Python: it starts
 * the container from a plan with the same core as lowlevel.spawn (spawn.c), and from then on owns
 * it -- its stdio or pty, its json-file log, its exit status, its restarts, its attach socket --
 * whether or not the process that started it is still alive. It never interprets the
 * container's config: it is handed a plan, fds and paths, and does its few jobs.
 *
 * One file per duty: main.c (this: options, daemon, event loop), start.c (the plan, parent
 * steps), logging.c (json-file), exit.c (state files, OOM), attach.c (the socket), console.c
 * (the pty), restart.c (policies, back-off), cleanup.c (the end), init.c (init mode), util.c.
 *
 * Command line (isolate/_shim.py builds it):
 *
 *   isolate-shim run --state-dir DIR --plan FILE --ready-fd N
 *       [--log PATH] [--log-max-size BYTES] [--log-max-file N] [--tty] [--stdin]
 *       [--restart no|on-failure[:N]|always|unless-stopped] [--stop-signal N]
 *       [--oom-cgroup DIR] [--setgroups TEXT] [--uid-map TEXT] [--gid-map TEXT]
 *       [--newuidmap "IN OUT COUNT ..."] [--newgidmap "IN OUT COUNT ..."]
 *       [--cgroup DIR]... [--exit-command PATH [--exit-arg ARG]...] [--exit-lock FILE]
 *   isolate-shim init [--exit-fd N] [--status-fd N] [--report-op I] [--] COMMAND ARG...
 *   (argv[0] "isolate-init": init mode too)
 *
 * Every fd it inherits stays open (close-on-exec) for its whole life, at the number it had, so
 * the plan can name them: cgroup.procs fds for CGROUP_JOIN, namespace fds for SETNS, the
 * header's cgroup_fd; and so the shim holds what the caller handed it: the flock on the
 * container cgroup's directories, by which the orphan sweep (isolate/cgroups/cgroup.py)
 * tells a group in use, and takes it once the shim is gone. The plan (FILE, Plan.encode() with placeholders) is read once.
 *
 * Start-up:
 *
 *   Python                          shim (exec'd)         shim daemon                container
 *   ------                          -------------         -----------                ---------
 *   write DIR/plan
 *   pipe(ready); spawn the shim ->  read + check the plan
 *     in a new session, keeping     fork --------------> (not a session leader:
 *     ready fd + the plan's fds     _exit(0)              setsid, fork, _exit) |
 *   waitpid(shim) <-----------------+                                         v
 *                                                        subreaper; flock DIR/shim.lock
 *                                                        write DIR/shim.pid; listen on
 *   read ready fd  <----------------------------------- {SHIM, pid}     DIR/attach.sock
 *                                                        stdio pipes on 0/1/2 (or a console
 *                                                        socket); fill in the placeholders
 *                                                        iso_spawn(plan) --------------> set-up ops
 *                                                        [WAIT_PARENT] setgroups/uid_map/
 *                                                          gid_map or newuidmap/newgidmap,
 *                                                          then GO ---------------------> ...
 *                                                        status pipe <------------------- EOF: exec'd
 *                                                        [--tty] the pty master <-------- CONSOLE op
 *                  <----------------------------------- {STARTED, pid}
 *                                                        or {ERROR, errno, step, op_index}
 *                                                        or {FAILED, errno, SHIM_STEP_*}, exit
 *   EOF: the report is complete                          close the ready fd
 *                                                        write container.pid, start.json
 *
 * Records are 24 bytes, laid out as struct iso_report {kind, err, step, op_index, value}; the
 * kinds and steps are in shim.h. An ERROR is the container's own set-up report, so Python
 * raises the same typed error as lowlevel.spawn would for that op.
 *
 * Then one poll loop: output pipes (or the pty master) -> log + attached clients; clients ->
 * stdin, resize, stop, kill; SIGCHLD -> reap every child (the shim is a subreaper), and for the
 * container: record the exit (exit.json), restart after the back-off or leave; SIGTERM, SIGINT,
 * SIGHUP -> a stop request. The shim exits once the container has exited for good: exit.json
 * has "restarting": false, the socket is removed, clients see EOF, the cgroup dirs go, the
 * lock is free, the exit command starts (cleanup.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC 4
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static struct shim S;

/* ---- options ----------------------------------------------------------------------------- */

static int parse_options(int argc, char **argv, struct shim_options *o)
{
    memset(o, 0, sizeof *o);
    o->log_max_file = 1;
    o->stop_signal = SIGTERM;
    o->ready_fd = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--tty") == 0) {
            o->tty = 1;
            continue;
        }
        if (strcmp(a, "--stdin") == 0) {
            o->open_stdin = 1;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        uint64_t n;
        if (strcmp(a, "--state-dir") == 0)
            o->state_dir = v;
        else if (strcmp(a, "--plan") == 0)
            o->plan_path = v;
        else if (strcmp(a, "--log") == 0)
            o->log_path = *v ? v : NULL;
        else if (strcmp(a, "--log-max-size") == 0 && parse_u64(v, &n) == 0)
            o->log_max_size = n;
        else if (strcmp(a, "--log-max-file") == 0 && parse_u64(v, &n) == 0 && n >= 1 &&
                 n <= 1000)
            o->log_max_file = (unsigned)n;
        else if (strcmp(a, "--restart") == 0 && restart_parse(v, &o->restart, &o->restart_max) == 0)
            ;
        else if (strcmp(a, "--stop-signal") == 0 && parse_u64(v, &n) == 0 && n >= 1 && n < 65)
            o->stop_signal = (int)n;
        else if (strcmp(a, "--oom-cgroup") == 0)
            o->oom_cgroup = v;
        else if (strcmp(a, "--setgroups") == 0)
            o->setgroups = v;
        else if (strcmp(a, "--uid-map") == 0)
            o->uid_map = v;
        else if (strcmp(a, "--gid-map") == 0)
            o->gid_map = v;
        else if (strcmp(a, "--newuidmap") == 0)
            o->newuidmap = v;
        else if (strcmp(a, "--newgidmap") == 0)
            o->newgidmap = v;
        else if (strcmp(a, "--cgroup") == 0 && *v && o->ncgroups < SHIM_MAX_CGROUPS)
            o->cgroups[o->ncgroups++] = v;
        else if (strcmp(a, "--exit-command") == 0 && *v == '/' && o->nexit == 0)
            o->exit_argv[o->nexit++] = v;
        else if (strcmp(a, "--exit-lock") == 0 && *v == '/')
            o->exit_lock = v;
        else if (strcmp(a, "--exit-arg") == 0 && o->nexit > 0 && o->nexit < SHIM_MAX_EXIT_ARGS)
            o->exit_argv[o->nexit++] = v;
        else if (strcmp(a, "--ready-fd") == 0 && parse_u64(v, &n) == 0 && n < 1 << 20)
            o->ready_fd = (int)n;
        else
            return -1;
    }
    if (!o->state_dir || !o->plan_path || o->ready_fd < 0 ||
        fcntl(o->ready_fd, F_GETFD) < 0)
        return -1;
    return 0;
}

static uint8_t *read_plan(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size <= (64 << 20)) {
        /* 8-aligned, as iso_spawn's tables need: malloc's alignment is 16. */
        buf = malloc((size_t)st.st_size);
        size_t got = 0;
        while (buf && got < (size_t)st.st_size) {
            ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                free(buf);
                buf = NULL;
                errno = n < 0 ? errno : EINVAL;
                break;
            }
            got += (size_t)n;
        }
        *len = got;
    } else if (errno == 0 || st.st_size <= 0 || st.st_size > (64 << 20)) {
        errno = EINVAL;
    }
    int e = errno;
    close(fd);
    errno = e;
    return buf;
}

/* ---- requests (clients, signals) ------------------------------------------------------------ */

static void finish(struct shim *s)
{
    /* A stop during the back-off: the exit already recorded is the last one. */
    s->restart_at_ms = 0;
    s->last.restarting = 0;
    s->last.stopped = 1;
    state_write_exit(s->dirfd, &s->last);
    s->done = 1;
}

void shim_stop(struct shim *s, int sig, uint32_t timeout_ms)
{
    s->stopped = 1;
    if (!s->pid) {
        if (s->restart_at_ms)
            finish(s);
        return;
    }
    kill(s->pid, sig > 0 && sig < 65 ? sig : s->opt.stop_signal);
    if (timeout_ms != SHIM_STOP_NO_TIMEOUT) {
        uint64_t at = monotonic_ms() + timeout_ms;
        if (!s->kill_at_ms || at < s->kill_at_ms)
            s->kill_at_ms = at ? at : 1;
    }
}

void shim_kill(struct shim *s, int sig)
{
    if (sig <= 0 || sig >= 65)
        return;
    /* As `docker kill`: the stop signal or SIGKILL means "stop", any other is just a signal. */
    if (sig == SIGKILL || sig == s->opt.stop_signal) {
        s->stopped = 1;
        if (!s->pid && s->restart_at_ms)
            finish(s);
    }
    if (s->pid)
        kill(s->pid, sig);
}

static void stdin_flush(struct shim *s)
{
    int fd = s->opt.tty ? s->out_fd : s->stdin_fd;
    while (fd >= 0 && s->stdin_q.len) {
        ssize_t n = write(fd, s->stdin_q.data + s->stdin_q.start, s->stdin_q.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            queue_free(&s->stdin_q); /* the reader is gone */
            break;
        }
        queue_pop(&s->stdin_q, (size_t)n);
    }
    if (s->stdin_closing && !s->stdin_q.len && s->stdin_fd >= 0) {
        close(s->stdin_fd);
        s->stdin_fd = -1;
        s->stdin_closing = 0;
    }
}

void shim_stdin(struct shim *s, const uint8_t *data, size_t len)
{
    int fd = s->opt.tty ? s->out_fd : s->stdin_fd;
    if (fd < 0 || s->stdin_closing)
        return; /* no stdin: as /dev/null would, it takes nothing */
    /* attach.c reads no more than fits, so this always queues. */
    queue_push(&s->stdin_q, data, len, SHIM_STDIN_QUEUE_MAX);
    stdin_flush(s);
}

void shim_close_stdin(struct shim *s)
{
    if (s->opt.tty || s->stdin_fd < 0)
        return;
    s->stdin_closing = 1;
    stdin_flush(s);
}

void shim_resize(struct shim *s, unsigned rows, unsigned cols)
{
    if (s->opt.tty)
        console_resize(s->out_fd, rows, cols);
}

/* ---- the container's output ---------------------------------------------------------------- */

static uint8_t read_buf[16384];

static void close_stream(struct shim *s, int stream)
{
    int *fd = stream == 1 ? &s->out_fd : &s->err_fd;
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    log_flush(&s->log, stream);
}

/* Read what is there now (a bounded number of reads, so no stream starves the others). */
static void on_output(struct shim *s, int stream, int drain)
{
    int *fd = stream == 1 ? &s->out_fd : &s->err_fd;
    for (int round = 0; *fd >= 0 && (drain || round < 4); round++) {
        ssize_t n = read(*fd, read_buf, sizeof read_buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* EOF; EIO from a pty master once no one holds its peer */
            if (s->opt.tty && *fd == s->out_fd && s->stdin_q.len)
                queue_free(&s->stdin_q);
            close_stream(s, stream);
            return;
        }
        log_data(&s->log, stream, read_buf, (size_t)n);
        attach_broadcast(s, stream, read_buf, (size_t)n);
    }
}

/* ---- exits and restarts ------------------------------------------------------------------- */

static void release_run(struct shim *s)
{
    /* Output still in the pipes belongs to this run's log: read it all first. */
    on_output(s, 1, 1);
    on_output(s, 2, 1);
    close_stream(s, 1);
    close_stream(s, 2);
    if (s->stdin_fd >= 0) {
        close(s->stdin_fd);
        s->stdin_fd = -1;
    }
    queue_free(&s->stdin_q);
    s->stdin_closing = 0;
}

static void record_start(struct shim *s)
{
    state_write_pid(s->dirfd, "container.pid", s->pid);
    state_write_start(s->dirfd, s->pid, &s->started, s->restart_count);
}

static void on_exit_status(struct shim *s, int status)
{
    release_run(s);
    if (s->exit_fd >= 0) {
        /* An init in the container reports what its command ended with. */
        struct iso_report r;
        ssize_t n = read(s->exit_fd, &r, sizeof r);
        if (n == (ssize_t)sizeof r && r.kind == ISO_REPORT_EXIT)
            status = (int)r.value;
        close(s->exit_fd);
        s->exit_fd = -1;
    }
    struct exit_record *x = &s->last;
    memset(x, 0, sizeof *x);
    x->pid = s->pid;
    x->status = status;
    int64_t oom = oom_kills(s->opt.oom_cgroup);
    x->oom_killed = s->oom_before >= 0 && oom > s->oom_before;
    x->started = s->started;
    now_monotone(&x->finished);
    x->restart_count = s->restart_count;
    x->stopped = s->stopped;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    uint64_t delay;
    x->restarting = restart_decide(s, code, monotonic_ms() - s->started_ms, &delay);
    s->pid = 0;
    s->kill_at_ms = 0;
    state_write_exit(s->dirfd, x);
    if (x->restarting)
        s->restart_at_ms = monotonic_ms() + delay;
    else
        s->done = 1;
}

static void restart(struct shim *s)
{
    s->restart_at_ms = 0;
    s->restart_count++;
    struct start_error e;
    if (start_container(s, &e) < 0) {
        /* It cannot be started again: say why, and give up (Docker stops it too). */
        struct exit_record *x = &s->last;
        x->restart_count = s->restart_count;
        x->restarting = 0;
        x->err = e.err ? e.err : EIO;
        x->step = e.step;
        x->op_index = e.op_index;
        state_write_exit(s->dirfd, x);
        s->done = 1;
        return;
    }
    record_start(s);
}

static void on_signals(struct shim *s)
{
    struct signalfd_siginfo si;
    while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
            shim_stop(s, 0, SHIM_STOP_NO_TIMEOUT);
            continue;
        }
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0)
        if (pid == s->pid)
            on_exit_status(s, status);
}

/* ---- the loop ----------------------------------------------------------------------------- */

enum { P_SIGNALS, P_LISTEN, P_OUT, P_ERR, P_STDIN, P_CLIENTS };

static void loop(struct shim *s)
{
    struct pollfd *fds = NULL;
    struct client **who = NULL;
    size_t cap = 0;
    while (!s->done) {
        size_t nclients = 0;
        for (struct client *c = s->clients; c; c = c->next)
            nclients++;
        if (P_CLIENTS + nclients > cap) {
            cap = (P_CLIENTS + nclients) * 2;
            fds = realloc(fds, cap * sizeof *fds);
            who = realloc(who, cap * sizeof *who);
            if (!fds || !who)
                _exit(1); /* out of memory: the lock frees, readers see a dead shim */
        }
        int stdin_fd = s->opt.tty ? s->out_fd : s->stdin_fd;
        fds[P_SIGNALS] = (struct pollfd){s->sigfd, POLLIN, 0};
        fds[P_LISTEN] = (struct pollfd){s->listen_fd, POLLIN, 0};
        fds[P_OUT] = (struct pollfd){s->out_fd, POLLIN, 0};
        fds[P_ERR] = (struct pollfd){s->err_fd, POLLIN, 0};
        fds[P_STDIN] = (struct pollfd){s->stdin_q.len ? stdin_fd : -1, POLLOUT, 0};
        size_t n = P_CLIENTS;
        for (struct client *c = s->clients; c; c = c->next) {
            short ev = (short)((attach_client_wants_read(s, c) ? POLLIN : 0) |
                               (c->out.len || c->dropped ? POLLOUT : 0));
            who[n] = c;
            fds[n++] = (struct pollfd){c->fd, ev, 0};
        }
        int timeout = -1;
        uint64_t now = monotonic_ms();
        uint64_t at = s->restart_at_ms;
        if (s->kill_at_ms && (!at || s->kill_at_ms < at))
            at = s->kill_at_ms;
        if (at)
            timeout = at > now ? (int)(at - now < 86400000 ? at - now : 86400000) : 0;
        if (poll(fds, n, timeout) < 0 && errno != EINTR)
            _exit(1);
        now = monotonic_ms();
        if (s->kill_at_ms && now >= s->kill_at_ms) {
            s->kill_at_ms = 0;
            if (s->pid)
                kill(s->pid, SIGKILL);
        }
        if (fds[P_SIGNALS].revents)
            on_signals(s);
        if (!s->done && s->restart_at_ms && monotonic_ms() >= s->restart_at_ms)
            restart(s);
        if (s->done)
            break;
        if (fds[P_OUT].revents && fds[P_OUT].fd == s->out_fd)
            on_output(s, 1, 0);
        if (fds[P_ERR].revents && fds[P_ERR].fd == s->err_fd)
            on_output(s, 2, 0);
        if (fds[P_STDIN].revents)
            stdin_flush(s);
        if (fds[P_LISTEN].revents)
            attach_accept(s);
        for (size_t i = P_CLIENTS; i < n && !s->done; i++) {
            struct client *c = who[i];
            short ev = fds[i].revents;
            if (!ev)
                continue;
            /* Handlers free only the client they act on, and only it is touched here. */
            if ((ev & (POLLIN | POLLHUP | POLLERR)) && attach_client_read(s, c) < 0)
                continue;
            if ((ev & POLLOUT) && attach_client_write(s, c) < 0)
                continue;
            if ((ev & (POLLHUP | POLLERR)) && !(ev & POLLIN)) {
                /* Hung up with nothing left to read: drop it by reading its EOF. */
                attach_client_read(s, c);
            }
        }
    }
    free(fds);
    free(who);
}

/* ---- start-up ------------------------------------------------------------------------------ */

/* The last word of a shim that could not start its container: the lock goes first, so that a
 * caller who has read the report finds the state dir free. */
__attribute__((noreturn)) static void give_up(struct shim *s, int32_t kind, int32_t err,
                                              int32_t step, int32_t op_index, int64_t value)
{
    if (s->lockfd >= 0)
        close(s->lockfd);
    report(s->opt.ready_fd, kind, err, step, op_index, value);
    _exit(1);
}

__attribute__((noreturn)) static void die(int ready_fd, int err, int step)
{
    S.opt.ready_fd = ready_fd;
    give_up(&S, SHIM_REPORT_FAILED, err, step, -1, 0);
}

static int run(int argc, char **argv)
{
    struct shim *s = &S;
    s->lockfd = -1;
    /* What we inherit stays open, at its number, for the plan; none of it leaks further. */
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    if (parse_options(argc, argv, &s->opt) < 0) {
        /* The ready fd may be the one thing that parsed: say what went wrong there. */
        for (int i = 0; i + 1 < argc; i++) {
            uint64_t fd;
            if (strcmp(argv[i], "--ready-fd") == 0 && parse_u64(argv[i + 1], &fd) == 0 &&
                fd < 1 << 20)
                die((int)fd, EINVAL, SHIM_STEP_ARGS);
        }
        return 2;
    }
    int ready = s->opt.ready_fd;
    s->plan = read_plan(s->opt.plan_path, &s->plan_len);
    if (!s->plan)
        die(ready, errno, SHIM_STEP_PLAN);
    if (plan_check(s->plan, s->plan_len) < 0)
        die(ready, EINVAL, SHIM_STEP_PLAN);
    s->work = malloc(s->plan_len);
    if (!s->work)
        die(ready, ENOMEM, SHIM_STEP_PLAN);
    s->dirfd = state_open(s->opt.state_dir);
    if (s->dirfd < 0)
        die(ready, errno, SHIM_STEP_STATE);

    /* The daemon: not the caller's child, not a session leader, in a session of its own.
     * Started as a session leader (isolate._shim.start does so), one fork is enough: the
     * child is in that session and leads none. */
    int leader = getsid(0) == getpid();
    pid_t pid = fork();
    if (pid < 0)
        die(ready, errno, SHIM_STEP_DAEMON);
    if (pid > 0)
        _exit(0);
    if (!leader) {
        if (setsid() < 0)
            die(ready, errno, SHIM_STEP_DAEMON);
        pid = fork();
        if (pid < 0)
            die(ready, errno, SHIM_STEP_DAEMON);
        if (pid > 0)
            _exit(0);
    }

    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    s->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (s->null_fd < 0)
        die(ready, errno, SHIM_STEP_STDIO);
    for (int fd = 0; fd < 3; fd++)
        dup2(s->null_fd, fd);
    if (chdir("/") < 0)
        die(ready, errno, SHIM_STEP_DAEMON);
    s->lockfd = state_lock(s->dirfd);
    if (s->lockfd < 0)
        die(ready, errno, SHIM_STEP_LOCK);
    state_clear(s->dirfd);
    s->self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (s->self_pidfd < 0)
        die(ready, errno, SHIM_STEP_DAEMON);
    set_cloexec(s->self_pidfd);
    if (state_write_pid(s->dirfd, "shim.pid", getpid()) < 0)
        die(ready, errno, SHIM_STEP_STATE);
    s->listen_fd = attach_listen(s->dirfd, "attach.sock");
    if (s->listen_fd < 0)
        die(ready, errno, SHIM_STEP_SOCKET);
    if (log_open(&s->log, s->opt.log_path, s->opt.log_max_size, s->opt.log_max_file) < 0) {
        int e = errno;
        unlinkat(s->dirfd, "attach.sock", 0);
        die(ready, e, SHIM_STEP_LOG);
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGQUIT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->sigfd < 0)
        die(ready, errno, SHIM_STEP_DAEMON);
    report(ready, SHIM_REPORT_SHIM, 0, 0, -1, getpid());

    s->out_fd = s->err_fd = s->stdin_fd = s->exit_fd = -1;
    struct start_error e;
    if (start_container(s, &e) < 0) {
        unlinkat(s->dirfd, "attach.sock", 0);
        give_up(s, e.kind, e.err, e.step, e.op_index, e.value);
    }
    /* The caller goes on at once; the run's files are written (and synced) meanwhile, and
     * before anything else happens: a reader that finds none yet has the pid from the
     * caller's own record. */
    report(ready, SHIM_REPORT_STARTED, 0, 0, -1, s->pid);
    close(ready);
    record_start(s);

    loop(s);

    attach_close_all(s);
    unlinkat(s->dirfd, "attach.sock", 0);
    shim_cleanup(s);
    return 0;
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    if (strcmp(name, "isolate-init") == 0)
        return init_main(argc, argv, 1);
    if (argc >= 2 && strcmp(argv[1], "init") == 0)
        return init_main(argc, argv, 2);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return run(argc - 2, argv + 2);
    static const char usage[] =
        "usage: isolate-shim run --state-dir DIR --plan FILE --ready-fd N [options]\n"
        "       isolate-shim init [--exit-fd N] [--status-fd N] [--report-op I] [--] CMD...\n";
    write_all(2, usage, sizeof usage - 1);
    return 2;
}
