/* logging.c -- the container's output as Docker's json-file log.
 *
 * One JSON object per line, keys in Docker's order:
 *     {"log":"hello\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}
 * "log" is one line of output with its newline; a line longer than 16 KiB is cut into records of
 * 16 KiB without a newline (Docker's partial messages), and so is what is left unfinished when a
 * stream ends. Escaping follows Docker's writer: '"' and '\' escaped, \n and \r by name, other
 * control characters and < > & as \u00XX, U+2028/U+2029 as \u2028/\u2029, and every byte that is
 * not part of valid UTF-8 as \ufffd -- so any bytes make valid JSON. "time" is RFC 3339 in UTC
 * with nine fraction digits (Docker trims trailing zeros; both parse as RFC 3339), never going
 * back within a shim's life.
 *
 * Rotation (max-size, max-file): before a record would take the file past max-size, the file
 * becomes NAME.1 (NAME.1 becomes NAME.2 ... up to NAME.<max-file - 1>) and a new one is started;
 * with max-file 1 the file is emptied instead. A record never spans two files.
 *
 * A failed write (a full disk, a quota) never blocks or stops the container: the half-written
 * record is cut off again (ftruncate), the record is counted as dropped, and the first record
 * that can be written again is preceded by one on stream "stderr" that says how many lines and
 * bytes were dropped and why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim.h"

static const char HEX[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at p (the rules of Go's utf8.DecodeRune: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0 if the byte at p starts none. */
static size_t utf8_len(const uint8_t *p, size_t avail, uint32_t *cp)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    if (c < 0xE0) {
        n = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c < 0xF0) {
        n = 3;
        v = c & 0x0F;
        min = 0x800;
    } else {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

size_t json_escape(char *out, const uint8_t *data, size_t len)
{
    char *o = out;
    size_t i = 0;
    while (i < len) {
        uint8_t b = data[i];
        if (b < 0x80) {
            if (b >= 0x20 && b != '\\' && b != '"' && b != '<' && b != '>' && b != '&') {
                *o++ = (char)b;
            } else if (b == '\\' || b == '"') {
                *o++ = '\\';
                *o++ = (char)b;
            } else if (b == '\n') {
                *o++ = '\\';
                *o++ = 'n';
            } else if (b == '\r') {
                *o++ = '\\';
                *o++ = 'r';
            } else {
                memcpy(o, "\\u00", 4);
                o[4] = HEX[b >> 4];
                o[5] = HEX[b & 15];
                o += 6;
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = utf8_len(data + i, len - i, &cp);
        if (n == 0) {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            i++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            memcpy(o, "\\u202", 5);
            o[5] = HEX[cp & 15];
            o += 6;
            i += n;
        } else {
            memcpy(o, data + i, n);
            o += n;
            i += n;
        }
    }
    return (size_t)(o - out);
}

int log_open(struct shim_log *log, const char *path, uint64_t max_size, unsigned max_file)
{
    log->fd = -1;
    log->dirfd = -1;
    log->max_size = max_size;
    log->max_file = max_file ? max_file : 1;
    if (!path)
        return 0;
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!*name || strlen(name) + 8 > sizeof log->name) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(log->name, name, strlen(name) + 1);
    if (slash) {
        char dir[4096];
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
        log->dirfd = open(n ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    } else {
        log->dirfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (log->dirfd < 0)
        return -1;
    log->fd = openat(log->dirfd, log->name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log->fd < 0)
        return -1;
    struct stat st;
    log->size = fstat(log->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

static void rotate(struct shim_log *log)
{
    if (log->max_file <= 1) {
        if (ftruncate(log->fd, 0) == 0)
            log->size = 0;
        return;
    }
    char from[300], to[300];
    for (unsigned i = log->max_file - 1; i >= 1; i--) {
        if (i == 1)
            snprintf(from, sizeof from, "%s", log->name);
        else
            snprintf(from, sizeof from, "%s.%u", log->name, i - 1);
        snprintf(to, sizeof to, "%s.%u", log->name, i);
        if (renameat(log->dirfd, from, log->dirfd, to) < 0 && errno != ENOENT && i == 1)
            return; /* keep appending to the current file rather than lose it */
    }
    int fd = openat(log->dirfd, log->name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return; /* the next write goes to the renamed file; try again then */
    close(log->fd);
    log->fd = fd;
    log->size = 0;
}

/* Write one whole record, rotating first if it would not fit; 0, or -1 (errno) after cutting
 * off whatever part of it reached the file. */
static int put_record(struct shim_log *log, const char *rec, size_t len)
{
    if (log->max_size && log->size > 0 && log->size + len > log->max_size)
        rotate(log);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(log->fd, rec + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : ENOSPC;
            if (done && ftruncate(log->fd, (off_t)log->size) < 0) {
                /* Could not cut it off: end the torn record so the next one starts a line. */
                if (write(log->fd, "\n", 1) == 1)
                    log->size += done + 1;
            }
            errno = e;
            return -1;
        }
        done += (size_t)n;
    }
    log->size += len;
    return 0;
}

/* The record for data on stream into buf (big enough: 6 * len + 80). */
static size_t format_record(char *buf, int stream, const uint8_t *data, size_t len,
                            const char *time)
{
    char *o = buf;
    memcpy(o, "{\"log\":\"", 8);
    o += 8;
    o += json_escape(o, data, len);
    const char *s = stream == 2 ? "\",\"stream\":\"stderr\",\"time\":\""
                                : "\",\"stream\":\"stdout\",\"time\":\"";
    size_t sl = strlen(s);
    memcpy(o, s, sl);
    o += sl;
    memcpy(o, time, SHIM_TIME_LEN);
    o += SHIM_TIME_LEN;
    memcpy(o, "\"}\n", 3);
    o += 3;
    return (size_t)(o - buf);
}

static char record_buf[6 * SHIM_LOG_LINE_MAX + 128];

static void emit(struct shim_log *log, int stream, const uint8_t *data, size_t len)
{
    if (log->fd < 0 || len == 0)
        return;
    struct timespec ts;
    char time[SHIM_TIME_LEN + 1];
    now_monotone(&ts);
    fmt_time(time, &ts);
    if (log->dropped_lines) {
        char note[200];
        int n = snprintf(note, sizeof note,
                         "isolate-shim: %llu log line(s) (%llu bytes) were dropped: %s\n",
                         (unsigned long long)log->dropped_lines,
                         (unsigned long long)log->dropped_bytes, strerror(log->dropped_errno));
        size_t rl = format_record(record_buf, 2, (const uint8_t *)note, (size_t)n, time);
        if (put_record(log, record_buf, rl) < 0) {
            log->dropped_lines++;
            log->dropped_bytes += len;
            log->dropped_errno = errno;
            return;
        }
        log->dropped_lines = log->dropped_bytes = 0;
    }
    size_t rl = format_record(record_buf, stream, data, len, time);
    if (put_record(log, record_buf, rl) < 0) {
        log->dropped_lines++;
        log->dropped_bytes += len;
        log->dropped_errno = errno;
    }
}

void log_data(struct shim_log *log, int stream, const uint8_t *data, size_t len)
{
    if (log->fd < 0)
        return;
    struct log_stream *ls = &log->streams[stream == 2];
    while (len > 0) {
        const uint8_t *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) + 1 : len;
        size_t room = SHIM_LOG_LINE_MAX - ls->len;
        if (take > room)
            take = room;
        if (ls->len == 0 && (take == SHIM_LOG_LINE_MAX || (nl && data + take - 1 == nl))) {
            emit(log, stream, data, take); /* a whole line (or a full partial): no copy */
        } else {
            memcpy(ls->line + ls->len, data, take);
            ls->len += take;
            if (ls->len == SHIM_LOG_LINE_MAX || ls->line[ls->len - 1] == '\n') {
                emit(log, stream, ls->line, ls->len);
                ls->len = 0;
            }
        }
        data += take;
        len -= take;
    }
}

void log_flush(struct shim_log *log, int stream)
{
    struct log_stream *ls = &log->streams[stream == 2];
    if (ls->len) {
        emit(log, stream, ls->line, ls->len);
        ls->len = 0;
    }
}
