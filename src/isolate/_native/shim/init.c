/* init.c -- isolate-init: the same binary as a tiny init, pid 1 of a container or sandbox.
 *
 *   isolate-shim init [--exit-fd N] [--status-fd N] [--report-op I] [--] COMMAND ARG...
 *   (or exec'd with argv[0] "isolate-init", the same options following)
 *
 * It is exec'd as the last step of a plan (through an fd opened before the root changed: EXEC
 * with EXEC_FD; being static it runs in any root), so it costs an exec instead of a fork of the
 * caller, and shows nothing of the caller: its name is isolate-init, its argument area is
 * overwritten with that name (so /proc/1/cmdline says only "isolate-init"), and it makes itself
 * non-dumpable (the command cannot read its environment or memory, or follow its fds).
 *
 *   init                                           command
 *   ----                                           -------
 *   block every signal; SIGCHLD to default
 *   clone (CLONE_VM|CLONE_VFORK) ----------------> a session of its own (setsid); or, when the
 *                                                    init holds a terminal as its controlling
 *                                                    one, a process group of its own made the
 *                                                    terminal's foreground (job control, ^C)
 *                                                  the signal mask and SIGCHLD as they were
 *                                                  exec COMMAND, PATH searched as execvp does
 *                                                  failed: {ERROR, errno, EXEC, I} on the status
 *                                                    fd, _exit(127)
 *   (resumes at the exec or the exit)
 *   close the status fd: its reader sees EOF now
 *   close every fd but the exit fd
 *   loop: sigtimedwait every signal
 *     SIGCHLD: reap every zombie (orphans of the namespace are ours); the command among them:
 *       {EXIT, 0, INIT, I, wait status} on the exit fd, _exit(code, or 128 + N for signal N)
 *     any other: pass it on to the command (its pid, as tini does by default)
 *
 * The records are struct iso_report, as the fork-based INIT op writes them, so lowlevel.spawn
 * and command_status() read them unchanged: an exec error names the plan's op I (the command's
 * EXEC op that follows the init's own), and the EXIT record gives the real status, since an
 * init cannot die by a signal sent from inside its pid namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "shim.h"

extern char **environ;

#define INIT_STACK (64 * 1024)

struct command {
    char **argv;
    int status_fd;
    int report_op;
    uint64_t mask;                /* the signal mask it gets back (raw: all 64 signals) */
    int sigchld_ignored;
    int job_control;
};

static int command_main(void *arg)
{
    struct command *c = arg;
    if (c->job_control) {
        /* SIGTTOU is blocked: a background group may take the foreground. */
        if (setpgid(0, 0) == 0)
            tcsetpgrp(0, getpid());
    } else {
        setsid();
    }
    if (c->sigchld_ignored)
        signal(SIGCHLD, SIG_IGN);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &c->mask, NULL, sizeof c->mask);
    int e = iso_exec_search(c->argv[0], c->argv, environ);
    report(c->status_fd, ISO_REPORT_ERROR, e, ISO_OP_EXEC, c->report_op, 0);
    _exit(127);
}

/* The argument area (what /proc/PID/cmdline shows) says "isolate-init" and nothing else. */
static void hide_arguments(int argc, char **argv)
{
    char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    static const char name[] = "isolate-init";
    memset(start, 0, (size_t)(end - start));
    if ((size_t)(end - start) >= sizeof name)
        memcpy(start, name, sizeof name);
}

static int fd_option(const char *v, int *out)
{
    uint64_t n;
    if (parse_u64(v, &n) < 0 || n > 1 << 20)
        return -1;
    *out = (int)n;
    return 0;
}

int init_main(int argc, char **argv, int first)
{
    prctl(PR_SET_NAME, (unsigned long)"isolate-init", 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.status_fd = -1;
    cmd.report_op = -1;
    int exit_fd = -1, i = first;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break;
        uint64_t n;
        if (i + 1 < argc && strcmp(a, "--exit-fd") == 0 && fd_option(argv[i + 1], &exit_fd) == 0)
            i++;
        else if (i + 1 < argc && strcmp(a, "--status-fd") == 0 &&
                 fd_option(argv[i + 1], &cmd.status_fd) == 0)
            i++;
        else if (i + 1 < argc && strcmp(a, "--report-op") == 0 &&
                 parse_u64(argv[i + 1], &n) == 0 && n < 1 << 30)
            cmd.report_op = (int)n, i++;
        else
            goto usage;
    }
    if (i >= argc)
        goto usage;
    /* Our own copy of the command line, before its area is wiped. */
    cmd.argv = calloc((size_t)(argc - i + 1), sizeof *cmd.argv);
    if (!cmd.argv)
        return 127;
    for (int k = i; k < argc; k++)
        if (!(cmd.argv[k - i] = strdup(argv[k])))
            return 127;
    hide_arguments(argc, argv);

    /* Raw calls: libc's sigset functions leave out the signals it keeps for itself. */
    uint64_t all = ~(uint64_t)0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &cmd.mask, sizeof all);
    /* Exit statuses wait for waitpid, whatever SIGCHLD disposition we were given. */
    struct sigaction old;
    if (sigaction(SIGCHLD, NULL, &old) == 0 && old.sa_handler == SIG_IGN) {
        signal(SIGCHLD, SIG_DFL);
        cmd.sigchld_ignored = 1;
    }
    cmd.job_control = isatty(0) && tcgetsid(0) == getsid(0);
    if (exit_fd >= 0)
        set_cloexec(exit_fd);
    if (cmd.status_fd >= 0)
        set_cloexec(cmd.status_fd);

    char *stack = mmap(NULL, INIT_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    pid_t command = -1;
    int e = errno;
    if (stack != MAP_FAILED) {
        /* We are suspended until the command execs (or fails), so it may use our memory. */
        command = clone(command_main, stack + INIT_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &cmd);
        e = errno;
        munmap(stack, INIT_STACK);
    }
    if (command < 0) {
        report(cmd.status_fd, ISO_REPORT_ERROR, e, ISO_OP_INIT, cmd.report_op, 0);
        return 127;
    }
    /* Nothing of the command's stays open here: its readers see EOF when it closes them. */
    iso_close_all_but(exit_fd);
    for (;;) {
        siginfo_t si;
        int sig = (int)syscall(SYS_rt_sigtimedwait, &all, &si, NULL, sizeof all);
        if (sig <= 0)
            continue;
        if (sig != SIGCHLD) {
            kill(command, sig);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
            if (pid != command)
                continue;
            report(exit_fd, ISO_REPORT_EXIT, 0, ISO_OP_INIT, cmd.report_op, status);
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
    }

usage: {
    static const char text[] =
        "usage: isolate-init [--exit-fd N] [--status-fd N] [--report-op I] [--] CMD [ARG...]\n";
    write_all(2, text, sizeof text - 1);
    return 2;
}
}
