/* extract.c -- the fast path of layer extraction (isolate/fs/layers.py, extract()).
 *
 * Why C: on tmpfs, where the filesystem is cheap, extracting a layer in Python costs most of its
 * time in per-entry interpreter work (header parsing, path handling, one wrapper per syscall).
 * This file does the common entries in C and leaves everything else to the Python code, which
 * stays complete on its own.
 *
 * Division of work (one extraction, one struct iso_extract):
 *
 *   Python                                      C (iso_extract_feed, GIL released)
 *   ------                                      ----------------------------------
 *   read + decompress + hash 1 MiB chunks  ---> parse ustar headers; for a plain regular file,
 *                                               directory or symlink whose name needs nothing
 *                                               special: resolve the parent below root_fd (no
 *                                               symlink followed), create, write, set owner,
 *                                               mode, mtime; dirs' metadata recorded for later
 *                          <--- ISO_X_MORE       input used up (possibly inside a file's data)
 *                          <--- ISO_X_HANDOFF    at a header C does not take: PAX/GNU extended
 *   tarfile reads that member and the           headers, hardlinks, devices, fifos, whiteouts,
 *   existing Python code unpacks it; C's        '..', absolute or root names, bad checksums or
 *   cached directory fd is dropped first        numbers, end of archive, an existing directory
 *   (Python may have replaced directories)      in the way, any failure before the entry
 *                                               changed anything -- Python then redoes the
 *                                               entry and raises its own typed error
 *                          <--- ISO_X_ERROR      a call failed after the entry began: err +
 *                                               entry name (Python raises IsolateOSError)
 *
 * Safety holds as in Python: parents are opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | ...) or, when that fails, one component at a time with O_NOFOLLOW, and a
 * symlink or non-directory in the way is handed to Python (which refuses it); the last component
 * is created exclusively (O_EXCL, mkdirat, symlinkat) after unlinking a non-directory that was
 * there, never written through.
 *
 * A directory record in x->dirs: uint32 mode, uid, gid; int64 mtime; uint16 path length,
 * uint16 entry length (little-endian, packed); then the normalised path and the entry name.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isolate.h"

#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_NO_SYMLINKS
#define RESOLVE_NO_SYMLINKS 0x04
#endif
#ifndef RESOLVE_BENEATH
#define RESOLVE_BENEATH 0x08
#endif

#define BLOCK 512
#define DIR_OPEN (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define FILE_CREATE (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)
#define PATH_MAX_X 512

/* Every name buffer holds the longest name a ustar header can spell, prefix (155) '/' name
 * (100) NUL, so no copy below needs a length check; these keep that true if a size changes. */
_Static_assert(155 + 1 + 100 + 1 <= PATH_MAX_X, "header names fit struct header");
_Static_assert(sizeof(((struct iso_extract *)0)->entry) >= PATH_MAX_X, "entry holds a name");
_Static_assert(sizeof(((struct iso_extract *)0)->parent) >= PATH_MAX_X, "parent holds a path");

/* What a header asks for. */
enum kind { K_REG, K_DIR, K_SYM };

struct header {
    enum kind kind;
    uint64_t mode, uid, gid, size, mtime;
    char name[PATH_MAX_X];  /* as tarfile spells it: prefix joined, a dir's slashes stripped */
    char path[PATH_MAX_X];  /* normalised: no empty or '.' components */
    size_t parent_len;      /* path[0:parent_len] is the parent, path + base_at the base */
    size_t base_at;
    char link[101];
};

void iso_extract_init(struct iso_extract *x, int root_fd, uint32_t flags)
{
    memset(x, 0, sizeof *x);
    x->root_fd = root_fd;
    x->flags = flags;
    x->file_fd = -1;
    x->parent_fd = -1;
}

void iso_extract_forget_dirs(struct iso_extract *x)
{
    if (x->parent_fd >= 0) {
        int saved = errno;
        close(x->parent_fd);
        errno = saved;
    }
    x->parent_fd = -1;
    x->parent[0] = 0;
}

void iso_extract_release(struct iso_extract *x)
{
    int saved = errno;
    iso_extract_forget_dirs(x);
    if (x->file_fd >= 0)
        close(x->file_fd);
    x->file_fd = -1;
    free(x->created);
    free(x->dirs);
    x->created = x->dirs = NULL;
    x->created_len = x->created_cap = x->dirs_len = x->dirs_cap = 0;
    errno = saved;
}

static int append(uint8_t **buf, uint64_t *len, uint64_t *cap, const void *data, size_t n)
{
    if (*len + n > *cap) {
        uint64_t want = *cap ? *cap * 2 : 65536;
        while (want < *len + n)
            want *= 2;
        uint8_t *bigger = realloc(*buf, want);
        if (bigger == NULL) {
            errno = ENOMEM;
            return -1;
        }
        *buf = bigger;
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    return 0;
}

static int note_created(struct iso_extract *x, const char *path, size_t n)
{
    if (!(x->flags & ISO_X_TRACK_CREATED))
        return 0;
    if (append(&x->created, &x->created_len, &x->created_cap, path, n) < 0)
        return -1;
    return append(&x->created, &x->created_len, &x->created_cap, "", 1);
}

/* ---- header parsing: exactly what tarfile reads, or "not mine" (-1) */

/* An octal field as tarfile's nti() reads it, for the spellings writers use: spaces, octal
 * digits, spaces, then NUL or the field's end. Base-256 and anything unusual: -1. */
static int octal(const uint8_t *f, size_t n, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    if (f[0] == 0x80 || f[0] == 0xff)
        return -1;
    while (i < n && f[i] == ' ')
        i++;
    while (i < n && f[i] >= '0' && f[i] <= '7')
        v = v * 8 + (uint64_t)(f[i++] - '0');
    while (i < n && f[i] == ' ')
        i++;
    if (i < n && f[i] != 0)
        return -1;
    *out = v;
    return 0;
}

static size_t field_len(const uint8_t *f, size_t n)
{
    const uint8_t *nul = memchr(f, 0, n);
    return nul ? (size_t)(nul - f) : n;
}

/* Split h->name into h->path; -1 for what Python must judge (absolute, '..', the root itself,
 * whiteouts). */
static int normalise(struct header *h)
{
    const char *s = h->name;
    size_t out = 0, last = 0;
    if (s[0] == '/')
        return -1;
    while (*s) {
        const char *end = strchr(s, '/');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return -1;
        if (n && !(n == 1 && s[0] == '.')) {
            if (out)
                h->path[out++] = '/';
            last = out;
            memcpy(h->path + out, s, n);
            out += n;
        }
        s += n;
        if (*s == '/')
            s++;
    }
    if (out == 0)
        return -1;
    h->path[out] = 0;
    h->base_at = last;
    h->parent_len = last ? last - 1 : 0;
    if (strncmp(h->path + last, ".wh.", 4) == 0)
        return -1;
    return 0;
}

static int parse(const uint8_t *b, struct header *h)
{
    uint64_t chksum, devmajor, devminor, sum = 256;
    if (octal(b + 100, 8, &h->mode) || octal(b + 108, 8, &h->uid) ||
        octal(b + 116, 8, &h->gid) || octal(b + 124, 12, &h->size) ||
        octal(b + 136, 12, &h->mtime) || octal(b + 148, 8, &chksum) ||
        octal(b + 329, 8, &devmajor) || octal(b + 337, 8, &devminor))
        return -1;
    for (int i = 0; i < BLOCK; i++)
        sum += (i >= 148 && i < 156) ? 0 : b[i];
    if (sum != chksum)  /* signed sums and bad checksums: tarfile decides */
        return -1;
    /* uid/gid must fit chown's id_t; an mtime of 12 digits would overflow ns in Python. */
    if (h->uid > 0xfffffffeu || h->gid > 0xfffffffeu || h->mtime >= (1ull << 33))
        return -1;

    size_t nlen = field_len(b, 100), plen = field_len(b + 345, 155);
    uint8_t type = b[156];
    memcpy(h->name, b, nlen);
    h->name[nlen] = 0;
    if (type == 0 && nlen && h->name[nlen - 1] == '/')
        type = '5';  /* old V7 tars mark directories with a slash only */
    if (type == '0' || type == 0 || type == '7')
        h->kind = K_REG;
    else if (type == '5')
        h->kind = K_DIR;
    else if (type == '2')
        h->kind = K_SYM;
    else
        return -1;
    if (h->kind == K_DIR)
        while (nlen && h->name[nlen - 1] == '/')
            h->name[--nlen] = 0;
    if (plen) {
        memmove(h->name + plen + 1, h->name, nlen + 1);
        memcpy(h->name, b + 345, plen);
        h->name[plen] = '/';
    }
    size_t llen = field_len(b + 157, 100);
    memcpy(h->link, b + 157, llen);
    h->link[llen] = 0;
    return normalise(h);
}

/* ---- the filesystem side */

/* Open the parent directory of h below the root, creating missing directories as Python's
 * dir_fd() does. -1: hand the entry to Python (a symlink or non-directory in the way, or any
 * failure: Python repeats the walk and raises its own error). */
static int open_parent(struct iso_extract *x, const struct header *h)
{
    size_t n = h->parent_len;
    if (n == 0)
        return x->root_fd;
    if (x->parent_fd >= 0 && strlen(x->parent) == n && memcmp(x->parent, h->path, n) == 0)
        return x->parent_fd;
    iso_extract_forget_dirs(x);

    char parent[PATH_MAX_X];
    memcpy(parent, h->path, n);
    parent[n] = 0;
    int fd = iso_openat2(x->root_fd, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
                         RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                         RESOLVE_NO_XDEV);
    if (fd < 0) {
        /* Missing directories, a mount below the root, no openat2: walk. */
        int dir = x->root_fd;
        char *s = parent;
        for (;;) {
            char *slash = strchr(s, '/');
            if (slash)
                *slash = 0;
            int sub = openat(dir, s, DIR_OPEN);
            if (sub < 0 && errno == ENOENT && mkdirat(dir, s, 0755) == 0) {
                if (note_created(x, parent, strlen(parent)) < 0) {
                    if (dir != x->root_fd)
                        close(dir);
                    return -1;
                }
                sub = openat(dir, s, DIR_OPEN);
            }
            if (dir != x->root_fd)
                close(dir);
            if (sub < 0)
                return -1;
            dir = sub;
            if (!slash)
                break;
            *slash = '/';
            s = slash + 1;
        }
        fd = dir;
    }
    memcpy(x->parent, h->path, n);
    x->parent[n] = 0;
    x->parent_fd = fd;
    return fd;
}

/* Make the last component with make(); on EEXIST unlink what is there (not a directory) and
 * try once more. 1: made; 0: hand off (nothing made). */
#define MAKE_EXCLUSIVE(made, call, pfd, base)                                              \
    do {                                                                                   \
        made = (call);                                                                     \
        if (made < 0 && errno == EEXIST &&                                                 \
            (unlinkat((pfd), (base), 0) == 0 || errno == ENOENT))                          \
            made = (call);                                                                 \
    } while (0)

static int finish_file(struct iso_extract *x)
{
    int fd = x->file_fd;
    struct timespec times[2] = {{(time_t)x->mtime, 0}, {(time_t)x->mtime, 0}};
    int r = 0;
    /* chown first: it clears set-id bits and file capabilities. */
    if ((x->flags & ISO_X_CHOWN) && fchown(fd, x->uid, x->gid) < 0)
        r = -1;
    if (r == 0 && fchmod(fd, x->mode & 07777) < 0)
        r = -1;
    if (r == 0 && futimens(fd, times) < 0)
        r = -1;
    int saved = errno;
    close(fd);
    errno = saved;
    x->file_fd = -1;
    return r;
}

/* One header. 0: taken (a regular file's data may follow); ISO_X_HANDOFF; ISO_X_ERROR. */
static int entry(struct iso_extract *x, const uint8_t *block)
{
    struct header h;
    if (parse(block, &h) < 0)
        return ISO_X_HANDOFF;
    int pfd = open_parent(x, &h);
    if (pfd < 0)
        return ISO_X_HANDOFF;
    const char *base = h.path + h.base_at;
    size_t path_len = strlen(h.path);
    int made;
    memcpy(x->entry, h.name, strlen(h.name) + 1);

    if (h.kind == K_DIR) {
        if (mkdirat(pfd, base, 0700) == 0) {
            if (note_created(x, h.path, path_len) < 0)
                goto fail;
        } else {
            struct stat st;
            if (errno != EEXIST || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                !S_ISDIR(st.st_mode))
                return ISO_X_HANDOFF;
        }
        uint32_t rec[3] = {(uint32_t)(h.mode & 07777), (uint32_t)h.uid, (uint32_t)h.gid};
        int64_t mtime = (int64_t)h.mtime;
        uint16_t lens[2] = {(uint16_t)path_len, (uint16_t)strlen(h.name)};
        if (append(&x->dirs, &x->dirs_len, &x->dirs_cap, rec, sizeof rec) < 0 ||
            append(&x->dirs, &x->dirs_len, &x->dirs_cap, &mtime, sizeof mtime) < 0 ||
            append(&x->dirs, &x->dirs_len, &x->dirs_cap, lens, sizeof lens) < 0 ||
            append(&x->dirs, &x->dirs_len, &x->dirs_cap, h.path, lens[0]) < 0 ||
            append(&x->dirs, &x->dirs_len, &x->dirs_cap, h.name, lens[1]) < 0)
            goto fail;
    } else if (h.kind == K_SYM) {
        MAKE_EXCLUSIVE(made, symlinkat(h.link, pfd, base), pfd, base);
        if (made < 0)
            return ISO_X_HANDOFF;
        x->uid = (uint32_t)h.uid; /* the owner an error names, as for a file */
        x->gid = (uint32_t)h.gid;
        struct timespec times[2] = {{(time_t)h.mtime, 0}, {(time_t)h.mtime, 0}};
        if (note_created(x, h.path, path_len) < 0 ||
            ((x->flags & ISO_X_CHOWN) &&
             fchownat(pfd, base, (uid_t)h.uid, (gid_t)h.gid, AT_SYMLINK_NOFOLLOW) < 0) ||
            utimensat(pfd, base, times, AT_SYMLINK_NOFOLLOW) < 0)
            goto fail;
    } else {
        int fd;
        MAKE_EXCLUSIVE(fd, openat(pfd, base, FILE_CREATE, 0600), pfd, base);
        if (fd < 0)
            return ISO_X_HANDOFF;
        x->file_fd = fd;
        x->remaining = h.size;
        x->padding = (BLOCK - h.size % BLOCK) % BLOCK;
        x->mode = (uint32_t)h.mode;
        x->uid = (uint32_t)h.uid;
        x->gid = (uint32_t)h.gid;
        x->mtime = (int64_t)h.mtime;
        x->bytes += h.size;
        if (note_created(x, h.path, path_len) < 0)
            goto fail;
    }
    x->files++;
    return 0;
fail:
    x->err = errno;
    return ISO_X_ERROR;
}

int iso_extract_feed(struct iso_extract *x, const uint8_t *buf, uint64_t len,
                     uint64_t *consumed)
{
    uint64_t at = 0;
    int saved = errno;
    int r = ISO_X_MORE;
    for (;;) {
        while (x->file_fd >= 0 && x->remaining) {
            if (at == len)
                goto out;
            uint64_t n = len - at < x->remaining ? len - at : x->remaining;
            ssize_t w = write(x->file_fd, buf + at, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                x->err = w < 0 ? errno : EIO;
                goto failed;
            }
            at += (uint64_t)w;
            x->remaining -= (uint64_t)w;
        }
        if (x->file_fd >= 0 && finish_file(x) < 0) {
            x->err = errno;
            goto failed;
        }
        if (x->padding) {
            uint64_t n = len - at < x->padding ? len - at : x->padding;
            at += n;
            x->padding -= n;
            if (x->padding)
                goto out;
        }
        x->in_entry = 0;
        if (len - at < BLOCK)
            goto out;
        r = entry(x, buf + at);
        if (r == ISO_X_HANDOFF)
            goto out;
        at += BLOCK;
        if (r == ISO_X_ERROR)
            goto out;
        x->in_entry = 1;
        r = ISO_X_MORE;
    }
failed:
    if (x->file_fd >= 0)
        close(x->file_fd);
    x->file_fd = -1;
    r = ISO_X_ERROR;
out:
    *consumed = at;
    errno = saved;
    return r;
}
