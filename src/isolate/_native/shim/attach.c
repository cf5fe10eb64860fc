/* attach.c -- the attach/control socket: DIR/attach.sock, a SOCK_STREAM unix socket.
 *
 * Any number of clients, at any time. Every message either way is a frame shaped like Docker's
 * multiplexed stream: [kind u8][0 0 0][payload length u32 big-endian][payload].
 *
 *   client -> shim   ATTACH [mask u8]      send me output (1 stdout, 2 stderr; none: both)
 *                    STDIN  bytes          to the container's stdin (with --stdin or --tty)
 *                    CLOSE_STDIN           the container reads EOF (pipes; ignored for a tty)
 *                    RESIZE rows u16 cols u16   TIOCSWINSZ on the pty master
 *                    STOP   sig u32 ms u32      no more restarts; signal (0: the stop signal),
 *                                               SIGKILL after ms (0xffffffff: never)
 *                    KILL   sig u32             signal it (the stop signal or SIGKILL also
 *                                               ends restarting, as `docker kill` does)
 *   shim -> client   STDOUT/STDERR frames of output, Docker's streams 1 and 2; with a tty the
 *                    output is raw bytes instead, no frames (one stream, as Docker's attach)
 *                    NOTE   text            e.g. output dropped for this client (no tty only)
 *
 * A client gets output from the moment it attaches, across restarts, until the shim exits
 * (then EOF). Output to a client that does not keep up is queued up to 256 KiB and then
 * dropped for that client only, with a NOTE (with a tty: a bracketed line) once it catches up:
 * a slow client never slows the container. Stdin is queued up to 64 KiB; beyond that the shim
 * stops reading clients' stdin until the container reads (back-pressure, nothing dropped).
 * A malformed frame ends that client's connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_header(uint8_t *h, int kind, uint32_t len)
{
    h[0] = (uint8_t)kind;
    h[1] = h[2] = h[3] = 0;
    h[4] = (uint8_t)(len >> 24);
    h[5] = (uint8_t)(len >> 16);
    h[6] = (uint8_t)(len >> 8);
    h[7] = (uint8_t)len;
}

int attach_listen(int dirfd, const char *name)
{
    /* By the directory's fd, so the state dir's path may be longer than sun_path. */
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd, name);
    if (n < 0 || (size_t)n >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    unlinkat(dirfd, name, 0);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void attach_accept(struct shim *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->next = s->clients;
        s->clients = c;
    }
}

static void drop_client(struct shim *s, struct client *c)
{
    for (struct client **p = &s->clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    close(c->fd);
    queue_free(&c->out);
    free(c);
}

/* One unit (a frame, or a piece of raw tty output): sent now as far as the socket takes it,
 * the rest queued whole. A unit that cannot be queued begins a gap: nothing more goes to this
 * client until its queue has drained, then a note says how much it missed. */
static void send_unit(struct client *c, const uint8_t *data, size_t len, size_t payload)
{
    if (c->dropped) {
        c->dropped += payload;
        return;
    }
    size_t done = 0;
    if (c->out.len == 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return; /* a gone peer: poll reports it and the client is dropped */
        done = n > 0 ? (size_t)n : 0;
    }
    if (done < len && queue_push(&c->out, data + done, len - done, SHIM_CLIENT_QUEUE_MAX) < 0)
        c->dropped += payload;
}

#define UNIT_MAX 4096

void attach_broadcast(struct shim *s, int stream, const uint8_t *data, size_t len)
{
    uint8_t frame[8 + UNIT_MAX];
    while (len > 0) {
        size_t n = len < UNIT_MAX ? len : UNIT_MAX;
        put_header(frame, stream, (uint32_t)n);
        memcpy(frame + 8, data, n);
        for (struct client *c = s->clients; c; c = c->next) {
            if (!(c->attached & stream))
                continue;
            if (s->opt.tty)
                send_unit(c, frame + 8, n, n);
            else
                send_unit(c, frame, n + 8, n);
        }
        data += n;
        len -= n;
    }
}

static void note_to(struct shim *s, struct client *c, const char *text)
{
    uint8_t frame[8 + 256];
    size_t len = strlen(text);
    if (len > 250)
        len = 250;
    if (s->opt.tty) {
        /* One stream of raw bytes: the note goes in as a line of its own. */
        frame[0] = '\r';
        frame[1] = '\n';
        frame[2] = '[';
        memcpy(frame + 3, text, len);
        memcpy(frame + 3 + len, "]\r\n", 3);
        send_unit(c, frame, len + 6, 0);
        return;
    }
    put_header(frame, SHIM_MSG_NOTE, (uint32_t)len);
    memcpy(frame + 8, text, len);
    send_unit(c, frame, len + 8, 0);
}

void attach_note(struct shim *s, const char *text)
{
    for (struct client *c = s->clients; c; c = c->next)
        if (c->attached)
            note_to(s, c, text);
}

int attach_client_wants_read(const struct shim *s, const struct client *c)
{
    /* Mid-way through stdin data while stdin is full: let the container catch up first. */
    if (c->hdr_len == 8 && c->hdr[0] == SHIM_MSG_STDIN && c->want &&
        s->stdin_q.len >= SHIM_STDIN_QUEUE_MAX)
        return 0;
    return 1;
}

static void dispatch(struct shim *s, struct client *c)
{
    const uint8_t *p = c->payload;
    size_t n = c->payload_len;
    switch (c->hdr[0]) {
    case SHIM_MSG_ATTACH:
        c->attached = n ? (p[0] & 3) : 3;
        break;
    case SHIM_MSG_CLOSE_STDIN:
        shim_close_stdin(s);
        break;
    case SHIM_MSG_RESIZE:
        if (n >= 4)
            shim_resize(s, (unsigned)p[0] << 8 | p[1], (unsigned)p[2] << 8 | p[3]);
        break;
    case SHIM_MSG_STOP:
        shim_stop(s, n >= 4 ? (int)be32(p) : 0, n >= 8 ? be32(p + 4) : SHIM_STOP_NO_TIMEOUT);
        break;
    case SHIM_MSG_KILL:
        if (n >= 4)
            shim_kill(s, (int)be32(p));
        break;
    default:
        break;
    }
}

int attach_client_read(struct shim *s, struct client *c)
{
    uint8_t buf[4096];
    for (;;) {
        if (!attach_client_wants_read(s, c))
            return 0;
        size_t room = sizeof buf;
        if (c->hdr_len == 8 && c->hdr[0] == SHIM_MSG_STDIN) {
            size_t free_q = SHIM_STDIN_QUEUE_MAX - s->stdin_q.len;
            if (room > c->want)
                room = c->want;
            if (room > free_q)
                room = free_q;
        } else if (c->hdr_len < 8) {
            room = 8 - c->hdr_len;
        } else {
            room = c->want;
        }
        ssize_t n = recv(c->fd, buf, room, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (n <= 0) {
            drop_client(s, c);
            return -1;
        }
        if (c->hdr_len < 8) {
            memcpy(c->hdr + c->hdr_len, buf, (size_t)n);
            c->hdr_len += (size_t)n;
            if (c->hdr_len < 8)
                continue;
            c->want = be32(c->hdr + 4);
            c->payload_len = 0;
            int stdin_msg = c->hdr[0] == SHIM_MSG_STDIN;
            if ((c->hdr[1] | c->hdr[2] | c->hdr[3]) ||
                (stdin_msg ? c->want > SHIM_MSG_MAX_PAYLOAD : c->want > sizeof c->payload)) {
                drop_client(s, c);
                return -1;
            }
        } else if (c->hdr[0] == SHIM_MSG_STDIN) {
            shim_stdin(s, buf, (size_t)n);
            c->want -= (uint32_t)n;
        } else {
            memcpy(c->payload + c->payload_len, buf, (size_t)n);
            c->payload_len += (size_t)n;
            c->want -= (uint32_t)n;
        }
        if (c->want == 0) {
            if (c->hdr[0] != SHIM_MSG_STDIN)
                dispatch(s, c);
            c->hdr_len = 0;
            if (s->done)
                return 0;
        }
    }
}

int attach_client_write(struct shim *s, struct client *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out.start, c->out.len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            drop_client(s, c);
            return -1;
        }
        queue_pop(&c->out, (size_t)n);
    }
    if (c->dropped) {
        char text[128];
        snprintf(text, sizeof text,
                 "isolate-shim: %llu bytes of output were dropped: this client read too slowly",
                 (unsigned long long)c->dropped);
        c->dropped = 0;
        note_to(s, c, text);
    }
    return 0;
}

void attach_close_all(struct shim *s)
{
    while (s->clients) {
        struct client *c = s->clients;
        /* A last try at what is queued; whoever cannot take it now gets EOF without it. */
        if (c->out.len)
            (void)!send(c->fd, c->out.data + c->out.start, c->out.len,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
        drop_client(s, c);
    }
}
