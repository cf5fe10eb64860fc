/* fuzz_extract.c -- libFuzzer harness for the C tar fast path (src/isolate/_native/extract.c).
 *
 * Build and run: see README.md beside this file. Not part of the pytest suite.
 *
 * Input: byte 0 = flags (bit 0 ISO_X_CHOWN, bit 1 ISO_X_TRACK_CREATED, bit 2 at a handoff
 * replace the named first component by a symlink to the sentinel, bit 3 then keep C's cached
 * parent fd instead of calling iso_extract_forget_dirs, bit 4 limit files to 1000 bytes with
 * RLIMIT_FSIZE so that writes fail mid-file, the error path), bytes 1-2 = chunk size seed, the
 * rest is the tar stream. It is fed the way isolate.fs.layers feeds it: in chunks, each window copied
 * to an exactly-sized heap buffer (so ASan sees any read past it), unconsumed bytes kept; at a
 * handoff the 512-byte header is skipped, as if Python had unpacked a member without data.
 *
 * Each input gets a fresh root below one private directory on /dev/shm:
 *
 *   BASE/sentinel/f             a file outside the root; nothing may touch either
 *   BASE/root/abs -> BASE/sentinel, root/up -> ../sentinel, root/d/up -> ../../sentinel,
 *   root/lnkf -> ../sentinel/f, root/hl (a hardlink of sentinel/f)
 *
 * After each input: BASE holds only sentinel and root, sentinel only f, f and sentinel keep
 * content, mode, owner and times (C never wrote, chmod-ed, chown-ed or touched through a symlink
 * or hardlink), and the lowest free fd is what it was (every fd C opened was closed). The root
 * is then removed without following symlinks. The harness writes nowhere but BASE.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isolate.h"

#define SENTINEL_DATA "sentinel: must never change\n"

static char base[64];
static char sentinel[96];
static char sentinel_file[112];
static char root[96];
static struct stat sentinel_st, sentinel_file_st;
static unsigned moved;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz_extract: check failed: %s (line %d, errno %d)\n", #cond,    \
                    __LINE__, errno);                                                        \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        return rmdir(path);
    return unlink(path);
}

static void remove_tree(const char *path)
{
    /* FTW_PHYS: symlinks are removed, never followed; FTW_MOUNT: stay on /dev/shm. */
    CHECK(nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == 0 || errno == ENOENT);
}

static void cleanup(void)
{
    if (base[0])
        remove_tree(base);
}

/* atime only where asked: reading the sentinel directory's names updates its own. */
static int same_meta(const struct stat *a, const struct stat *b, int atime)
{
    return a->st_ino == b->st_ino && a->st_mode == b->st_mode && a->st_uid == b->st_uid &&
           a->st_gid == b->st_gid && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           (!atime || (a->st_atim.tv_sec == b->st_atim.tv_sec &&
                       a->st_atim.tv_nsec == b->st_atim.tv_nsec));
}

/* The names in dir, besides . and .., are exactly want[0..n). */
static void only_names(const char *dir, const char *const *want, size_t n)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int known = 0;
        for (size_t i = 0; i < n; i++)
            known |= strcmp(e->d_name, want[i]) == 0;
        if (!known)
            fprintf(stderr, "fuzz_extract: unexpected %s/%s\n", dir, e->d_name);
        CHECK(known);
        seen++;
    }
    closedir(d);
    CHECK(seen == n);
}

static void check_outside(void)
{
    static const char *const in_base[] = {"sentinel", "root"};
    static const char *const in_sentinel[] = {"f"};
    struct stat st;
    only_names(base, in_base, 2);
    only_names(sentinel, in_sentinel, 1);
    CHECK(lstat(sentinel, &st) == 0 && same_meta(&st, &sentinel_st, 0));
    CHECK(lstat(sentinel_file, &st) == 0);
    /* nlink may drop: C may unlink root/hl (a name inside the root), never write through it. */
    CHECK(same_meta(&st, &sentinel_file_st, 1));
    char buf[64];
    int fd = open(sentinel_file, O_RDONLY | O_NOATIME | O_CLOEXEC);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    CHECK(n == (ssize_t)strlen(SENTINEL_DATA) && memcmp(buf, SENTINEL_DATA, (size_t)n) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    strcpy(base, "/dev/shm/isolate-fuzz-XXXXXX");
    CHECK(mkdtemp(base) != NULL);
    atexit(cleanup);
    snprintf(sentinel, sizeof sentinel, "%s/sentinel", base);
    snprintf(sentinel_file, sizeof sentinel_file, "%s/f", sentinel);
    snprintf(root, sizeof root, "%s/root", base);
    CHECK(mkdir(sentinel, 0755) == 0);
    int fd = open(sentinel_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    CHECK(fd >= 0 && write(fd, SENTINEL_DATA, strlen(SENTINEL_DATA)) ==
                         (ssize_t)strlen(SENTINEL_DATA));
    close(fd);
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    CHECK(utimensat(AT_FDCWD, sentinel_file, old, 0) == 0);
    CHECK(utimensat(AT_FDCWD, sentinel, old, 0) == 0);
    CHECK(lstat(sentinel, &sentinel_st) == 0 && lstat(sentinel_file, &sentinel_file_st) == 0);
    return 0;
}

static int make_root(void)
{
    CHECK(mkdir(root, 0755) == 0);
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(symlinkat(sentinel, fd, "abs") == 0);
    CHECK(symlinkat("../sentinel", fd, "up") == 0);
    CHECK(symlinkat("../sentinel/f", fd, "lnkf") == 0);
    CHECK(mkdirat(fd, "d", 0755) == 0);
    CHECK(symlinkat("../../sentinel", fd, "d/up") == 0);
    CHECK(linkat(AT_FDCWD, sentinel_file, fd, "hl", 0) == 0);
    return fd;
}

static int lowest_free_fd(void)
{
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

/* What Python may do at a handoff: replace a directory by a symlink (a symlink entry over a
 * directory). Only ever the first component of the header's name, only inside the root. */
static void hostile_replace(int root_fd, const uint8_t *header)
{
    char name[101];
    memcpy(name, header, 100);
    name[100] = 0;
    char *slash = strchr(name, '/');
    if (slash)
        *slash = 0;
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return;
    struct stat st;
    if (fstatat(root_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return;
    char away[32];
    snprintf(away, sizeof away, ".moved%u", moved++);
    CHECK(renameat(root_fd, name, root_fd, away) == 0);
    CHECK(symlinkat(sentinel, root_fd, name) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    size_t seed = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    size_t chunk = size ? 1 + seed % size : 1;

    int root_fd = make_root();
    int free_before = lowest_free_fd();
    struct rlimit fsize;
    CHECK(getrlimit(RLIMIT_FSIZE, &fsize) == 0);
    if (flags & 16) {
        /* Only the soft limit, only while C runs: libFuzzer writes its corpus files too. */
        struct rlimit small = {1000, fsize.rlim_max};
        /* Past the limit write() fails with EFBIG, as ENOSPC would, rather than raising
         * SIGXFSZ (libFuzzer's handler, set after LLVMFuzzerInitialize, would end the run). */
        signal(SIGXFSZ, SIG_IGN);
        CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    }
    struct iso_extract x;
    iso_extract_init(&x, root_fd, flags & (ISO_X_CHOWN | ISO_X_TRACK_CREATED));

    size_t start = 0, end = chunk < size ? chunk : size;
    for (;;) {
        size_t n = end - start;
        uint8_t *window = malloc(n ? n : 1);
        CHECK(window != NULL);
        memcpy(window, data + start, n);
        uint64_t used = UINT64_MAX;
        int r = iso_extract_feed(&x, window, n, &used);
        free(window);
        CHECK(used <= n);
        if (r == ISO_X_ERROR) {
            CHECK(x.err != 0);  /* an open file_fd is iso_extract_release's to close */
            break;
        }
        if (r == ISO_X_HANDOFF) {
            /* At a whole header, with no file open. */
            CHECK(n - used >= 512 && x.file_fd < 0 && x.remaining == 0 && x.padding == 0);
            if (flags & 4)
                hostile_replace(root_fd, data + start + used);
            if (!(flags & 8))
                iso_extract_forget_dirs(&x);
            start += used + 512;
            if (end < start + 512 && end < size)
                end = start + 512 + chunk < size ? start + 512 + chunk : size;
            continue;
        }
        CHECK(r == ISO_X_MORE);
        start += used;
        /* All used but a partial header, or a file's data to come. */
        CHECK(end - start < 512 && (end == start || (x.file_fd < 0 && x.padding == 0)));
        if (end == size)
            break;
        end = end + chunk < size ? end + chunk : size;
    }
    iso_extract_release(&x);
    CHECK(setrlimit(RLIMIT_FSIZE, &fsize) == 0);
    CHECK(x.file_fd == -1 && x.parent_fd == -1);
    CHECK(lowest_free_fd() == free_before);
    close(root_fd);
    check_outside();
    remove_tree(root);
    return 0;
}
