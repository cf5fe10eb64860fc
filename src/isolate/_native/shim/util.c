/* util.c -- small helpers every duty of isolate-shim uses: writes, numbers, times, queues.
 * No stdio: the shim stays small (its idle RSS is measured) and never buffers behind a write. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

void write_all(int fd, const void *buf, size_t len)
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

void report(int fd, int32_t kind, int32_t err, int32_t step, int32_t op_index, int64_t value)
{
    if (fd < 0)
        return;
    struct iso_report r = {kind, err, step, op_index, value};
    write_all(fd, &r, sizeof r);
}

int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

size_t fmt_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

size_t fmt_i64(char *buf, int64_t v)
{
    if (v >= 0)
        return fmt_u64(buf, (uint64_t)v);
    buf[0] = '-';
    return 1 + fmt_u64(buf + 1, (uint64_t)(-(v + 1)) + 1);
}

static void digits(char *p, unsigned long v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void fmt_time(char *buf, const struct timespec *ts)
{
    struct tm tm;
    time_t t = ts->tv_sec;
    gmtime_r(&t, &tm);
    /* 2006-01-02T15:04:05.000000000Z */
    digits(buf, (unsigned long)tm.tm_year + 1900, 4);
    buf[4] = '-';
    digits(buf + 5, (unsigned long)tm.tm_mon + 1, 2);
    buf[7] = '-';
    digits(buf + 8, (unsigned long)tm.tm_mday, 2);
    buf[10] = 'T';
    digits(buf + 11, (unsigned long)tm.tm_hour, 2);
    buf[13] = ':';
    digits(buf + 14, (unsigned long)tm.tm_min, 2);
    buf[16] = ':';
    digits(buf + 17, (unsigned long)tm.tm_sec, 2);
    buf[19] = '.';
    digits(buf + 20, (unsigned long)ts->tv_nsec, 9);
    buf[29] = 'Z';
    buf[30] = '\0';
}

void now_monotone(struct timespec *ts)
{
    static struct timespec last;
    clock_gettime(CLOCK_REALTIME, ts);
    if (ts->tv_sec < last.tv_sec || (ts->tv_sec == last.tv_sec && ts->tv_nsec < last.tv_nsec))
        *ts = last; /* the wall clock was set back: keep the log in order */
    last = *ts;
}

uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0)
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

void set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* A queue grows on demand up to max and gives its memory back once it drains, so an idle
 * shim holds no buffers. Returns -1 (nothing queued) when len does not fit. */
int queue_push(struct queue *q, const void *data, size_t len, size_t max)
{
    if (q->len + len > max)
        return -1;
    if (q->start + q->len + len > q->cap) {
        if (q->start) {
            memmove(q->data, q->data + q->start, q->len);
            q->start = 0;
        }
        if (q->len + len > q->cap) {
            size_t cap = q->cap ? q->cap : 4096;
            while (cap < q->len + len)
                cap *= 2;
            if (cap > max)
                cap = max;
            uint8_t *p = realloc(q->data, cap);
            if (!p)
                return -1;
            q->data = p;
            q->cap = cap;
        }
    }
    memcpy(q->data + q->start + q->len, data, len);
    q->len += len;
    return 0;
}

void queue_pop(struct queue *q, size_t n)
{
    q->start += n;
    q->len -= n;
    if (q->len == 0)
        queue_free(q);
}

void queue_free(struct queue *q)
{
    free(q->data);
    q->data = NULL;
    q->start = q->len = q->cap = 0;
}
