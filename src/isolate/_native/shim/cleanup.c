/* cleanup.c -- what the shim does once its container has ended for good, before it exits (the
 * part of Docker's daemon, or of conmon's exit command, that runs when a container ends):
 *
 *   1. the run's cgroup dirs (--cgroup DIR, one per hierarchy) are removed, once the kernel has
 *      let go of the last exiting task (rmdir says EBUSY until then; every child is reaped
 *      meanwhile), and the shared "isolate" dir above each, when it is left empty;
 *   2. the lock is let go: from here on any reader sees the supervisor gone;
 *   3. the exit command (--exit-command PATH [--exit-arg ARG]...), if any, is started in a
 *      child of its own, with /dev/null as stdio, and the shim exits without waiting for it:
 *      whoever waits for the shim (a stop, a remove) is not held up, and the command can take
 *      the container's locks, which those callers may hold. With --exit-lock FILE the child
 *      first takes FILE exclusively (waiting for those who hold it shared: whoever waits to
 *      read how the container ended), and runs nothing if FILE was removed meanwhile (they
 *      removed the container): no interpreter starts for a container someone else settled.
 *
 * Nothing here fails the container: a cgroup that stays busy (a process that another pid
 * namespace keeps alive) is left for the next reader to kill and remove, as is everything
 * else when the command cannot be started.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

extern char **environ;

#define CGROUP_BUSY_MS 2000

static void reap_all(void)
{
    int status;
    while (waitpid(-1, &status, WNOHANG | __WALL) > 0)
        ;
}

static void remove_cgroup(const char *dir)
{
    uint64_t deadline = monotonic_ms() + CGROUP_BUSY_MS;
    long delay_ns = 200000;
    while (rmdir(dir) < 0) {
        if (errno == ENOENT)
            break;
        if (errno != EBUSY || monotonic_ms() >= deadline)
            return; /* still in use: the next reader kills and removes it */
        reap_all();
        struct timespec ts = {0, delay_ns};
        nanosleep(&ts, NULL);
        if (delay_ns < 20000000)
            delay_ns *= 2;
    }
    /* The shared base goes with its last group (rmdir refuses while it holds any). */
    char parent[4096];
    size_t n = strlen(dir);
    if (n >= sizeof parent)
        return;
    memcpy(parent, dir, n + 1);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent)
        return;
    *slash = '\0';
    const char *base = strrchr(parent, '/');
    if (base && strcmp(base + 1, "isolate") == 0)
        rmdir(parent);
}

void shim_cleanup(struct shim *s)
{
    reap_all();
    for (unsigned i = 0; i < s->opt.ncgroups; i++)
        remove_cgroup(s->opt.cgroups[i]);
    /* Nothing of ours stays open where the container lived (its log's filesystem can be
     * unmounted the moment the lock is free). */
    if (s->log.fd >= 0) {
        close(s->log.fd);
        s->log.fd = -1;
    }
    if (s->log.dirfd >= 0) {
        close(s->log.dirfd);
        s->log.dirfd = -1;
    }
    if (s->lockfd >= 0) {
        close(s->lockfd);
        s->lockfd = -1;
    }
    if (!s->opt.nexit)
        return;
    pid_t pid = fork();
    if (pid != 0)
        return; /* the shim exits now; the command is reaped by whoever reaps orphans */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (s->null_fd >= 0)
        for (int fd = 0; fd < 3; fd++)
            dup2(s->null_fd, fd);
    if (s->opt.exit_lock) {
        /* The state dir gone (ENOENT): there is nothing left to clean. */
        int fd = open(s->opt.exit_lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            _exit(0);
        while (flock(fd, LOCK_EX) < 0)
            if (errno != EINTR)
                _exit(1);
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_nlink == 0)
            _exit(0);
        /* The lock goes at the exec (close-on-exec): the command takes it again itself. */
    }
    execve(s->opt.exit_argv[0], (char *const *)s->opt.exit_argv, environ);
    _exit(127);
}
