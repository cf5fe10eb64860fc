/* exit.c -- what the shim leaves in the state dir for any process to read.
 *
 *   shim.lock      flock(LOCK_EX) held for the shim's whole life: a reader that can lock it
 *                  knows the shim is dead (pids can be reused; a lock cannot outlive its holder)
 *   shim.pid       "PID\n" of the supervising daemon
 *   container.pid  "PID\n" of the container's first process, rewritten at each (re)start
 *   start.json     {"pid":P,"started_at":"RFC 3339","restart_count":N} at each (re)start
 *   exit.json      at each exit: {"pid":P,"status":S,"exit_code":C,"signal":N,
 *                  "oom_killed":false,"started_at":"...","finished_at":"...","restart_count":N,
 *                  "restarting":false,"stopped":false,"error":null}
 *                  "status" is the wait status, "exit_code" Docker's (the code, or 128 + N for
 *                  signal N); "restarting" says the shim will start it again; "stopped" that a
 *                  stop request came; "error" is {"errno":E,"step":S,"op_index":I} when a
 *                  restart's set-up failed (then the shim gives up)
 *
 * Every file is written as a temp file and renamed over the old one: a reader sees the old
 * content or the new, never a part. None is fsync'd: what they record means nothing once the
 * machine is down (no shim and no run survive a reboot, and shim.lock then tells any reader
 * the shim is dead), and each fsync cost 0.2-0.8 ms of a start or an exit on a quiet disk,
 * tens of ms on a busy one. After a crash of the machine a file may be empty, which readers
 * take as no record.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

int state_open(const char *dir)
{
    return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int state_lock(int dirfd)
{
    int fd = openat(dirfd, "shim.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? EBUSY : errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int state_write(int dirfd, const char *name, const char *data, size_t len)
{
    char tmp[128];
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            unlinkat(dirfd, tmp, 0);
            errno = e;
            return -1;
        }
        done += (size_t)n;
    }
    if (close(fd) < 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    return 0;
}

int state_write_pid(int dirfd, const char *name, pid_t pid)
{
    char buf[24];
    size_t n = fmt_u64(buf, (uint64_t)pid);
    buf[n++] = '\n';
    return state_write(dirfd, name, buf, n);
}

int state_write_start(int dirfd, pid_t pid, const struct timespec *started, unsigned restarts)
{
    char buf[160], t[SHIM_TIME_LEN + 1];
    fmt_time(t, started);
    int n = snprintf(buf, sizeof buf, "{\"pid\":%d,\"started_at\":\"%s\",\"restart_count\":%u}\n",
                     (int)pid, t, restarts);
    return state_write(dirfd, "start.json", buf, (size_t)n);
}

int state_write_exit(int dirfd, const struct exit_record *r)
{
    char buf[512], t0[SHIM_TIME_LEN + 1], t1[SHIM_TIME_LEN + 1], error[96];
    fmt_time(t0, &r->started);
    fmt_time(t1, &r->finished);
    int sig = WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0;
    int code = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : 128 + sig;
    if (r->err)
        snprintf(error, sizeof error, "{\"errno\":%d,\"step\":%d,\"op_index\":%d}", r->err,
                 r->step, r->op_index);
    else
        memcpy(error, "null", 5);
    int n = snprintf(buf, sizeof buf,
                     "{\"pid\":%d,\"status\":%d,\"exit_code\":%d,\"signal\":%d,"
                     "\"oom_killed\":%s,\"started_at\":\"%s\",\"finished_at\":\"%s\","
                     "\"restart_count\":%u,\"restarting\":%s,\"stopped\":%s,\"error\":%s}\n",
                     (int)r->pid, r->status, code, sig, r->oom_killed ? "true" : "false", t0, t1,
                     r->restart_count, r->restarting ? "true" : "false",
                     r->stopped ? "true" : "false", error);
    return state_write(dirfd, "exit.json", buf, (size_t)n);
}

void state_clear(int dirfd)
{
    static const char *const names[] = {"exit.json", "start.json", "container.pid",
                                        ".exit.json.tmp", ".start.json.tmp",
                                        ".container.pid.tmp", ".shim.pid.tmp"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlinkat(dirfd, names[i], 0);
}

/* The OOM killer's count for a memory cgroup: "oom_kill N" in memory.events (v2) or in
 * memory.oom_control (v1, Linux 4.13+). */
int64_t oom_kills(const char *cgroup_dir)
{
    if (!cgroup_dir)
        return -1;
    static const char *const files[] = {"memory.events", "memory.oom_control"};
    int dfd = open(cgroup_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int64_t found = -1;
    for (size_t i = 0; i < 2 && found < 0; i++) {
        int fd = openat(dfd, files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        char buf[1024];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        for (char *line = buf; line && *line;) {
            char *next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            if (strncmp(line, "oom_kill ", 9) == 0) {
                uint64_t v;
                if (parse_u64(line + 9, &v) == 0)
                    found = (int64_t)v;
            }
            line = next;
        }
    }
    close(dfd);
    return found;
}
