/* shim.h -- what the files of isolate-shim share: the wire numbers, the state, the duties.
 *
 * Every number below is part of a protocol with Python (isolate/_shim.py has the same values as
 * IntEnums and constants; a test parses this header and checks that they agree). The protocol
 * itself is drawn at the top of main.c.
 */
#ifndef ISOLATE_SHIM_H
#define ISOLATE_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "isolate.h"

/* ---- the ready fd: 24-byte records laid out as struct iso_report ---------------------------- */
#define SHIM_REPORT_ERROR 1       /* the container's set-up failed: err, step, op_index; value = pid */
#define SHIM_REPORT_SHIM 16       /* value = the supervising daemon's pid */
#define SHIM_REPORT_STARTED 17    /* value = the container's pid (in the shim's pid namespace) */
#define SHIM_REPORT_FAILED 18     /* the shim's own work failed: err = errno, step = SHIM_STEP_* */

/* ---- steps of the shim's own work (a FAILED record's step) ----------------------------------- */
#define SHIM_STEP_ARGS 200        /* a bad command line */
#define SHIM_STEP_PLAN 201        /* reading or checking the plan file */
#define SHIM_STEP_DAEMON 202      /* fork/setsid */
#define SHIM_STEP_LOCK 203        /* shim.lock held by another live shim: EBUSY */
#define SHIM_STEP_STATE 204       /* writing a state file */
#define SHIM_STEP_SOCKET 205      /* the attach socket */
#define SHIM_STEP_LOG 206         /* opening the log */
#define SHIM_STEP_STDIO 207       /* pipes, the console socket, /dev/null */
#define SHIM_STEP_SETGROUPS 208   /* writing /proc/PID/setgroups */
#define SHIM_STEP_UID_MAP 209     /* writing /proc/PID/uid_map */
#define SHIM_STEP_GID_MAP 210     /* writing /proc/PID/gid_map */
#define SHIM_STEP_NEWUIDMAP 211   /* running newuidmap PID ... (err: errno, or 256 + exit code) */
#define SHIM_STEP_NEWGIDMAP 212   /* running newgidmap PID ... */
#define SHIM_STEP_CONSOLE 213     /* --tty, but no pty master came from the CONSOLE op */

/* ---- the attach/control socket: frames of [kind u8][0 0 0][length u32 big-endian][payload] --- */
#define SHIM_MSG_STDOUT 1         /* shim -> client: output, Docker's stream 1 (raw bytes with a tty) */
#define SHIM_MSG_STDERR 2         /* shim -> client: output, Docker's stream 2 */
#define SHIM_MSG_NOTE 3           /* shim -> client: a line of text from the shim (Docker's systemerr) */
#define SHIM_MSG_ATTACH 16        /* client -> shim: send me output; payload: u8 mask 1 = stdout, 2 = stderr */
#define SHIM_MSG_STDIN 17         /* client -> shim: bytes for the container's stdin */
#define SHIM_MSG_CLOSE_STDIN 18   /* client -> shim: close the container's stdin (pipes) */
#define SHIM_MSG_RESIZE 19        /* client -> shim: u16 rows, u16 cols: TIOCSWINSZ on the pty */
#define SHIM_MSG_STOP 20          /* client -> shim: u32 signal (0: the stop signal), u32 ms to SIGKILL */
#define SHIM_MSG_KILL 21          /* client -> shim: u32 signal */
#define SHIM_MSG_MAX_PAYLOAD 65536
#define SHIM_STOP_NO_TIMEOUT 4294967295  /* STOP's timeout: never escalate to SIGKILL */

/* ---- restart policies (--restart) ------------------------------------------------------------ */
#define SHIM_RESTART_NO 0
#define SHIM_RESTART_ON_FAILURE 1
#define SHIM_RESTART_ALWAYS 2
#define SHIM_RESTART_UNLESS_STOPPED 3

/* Docker's json-file driver splits a line longer than this into partial messages. */
#define SHIM_LOG_LINE_MAX 16384
/* What one attached client may have queued before output to it is dropped. */
#define SHIM_CLIENT_QUEUE_MAX (256 * 1024)
/* What stdin may have queued before clients' stdin is no longer read. */
#define SHIM_STDIN_QUEUE_MAX 65536

/* ---- the options (argv) ------------------------------------------------------------------------ */
#define SHIM_MAX_CGROUPS 32
#define SHIM_MAX_EXIT_ARGS 256

struct shim_options {
    const char *state_dir;
    const char *plan_path;
    const char *log_path;         /* NULL: no log */
    uint64_t log_max_size;        /* 0: no rotation */
    unsigned log_max_file;        /* files kept, >= 1 */
    int tty;
    int open_stdin;
    int restart;                  /* SHIM_RESTART_* */
    unsigned restart_max;         /* on-failure:N (0: no limit) */
    int stop_signal;
    const char *oom_cgroup;       /* a memory cgroup dir (v2 or v1), or NULL */
    const char *setgroups;        /* parent steps: contents to write, or NULL */
    const char *uid_map;
    const char *gid_map;
    const char *newuidmap;        /* "0 100000 65536 ..." for newuidmap PID ..., or NULL */
    const char *newgidmap;
    int ready_fd;
    /* cleanup.c: once the container has ended for good */
    const char *cgroups[SHIM_MAX_CGROUPS]; /* its cgroup dirs, removed by the shim */
    unsigned ncgroups;
    const char *exit_argv[SHIM_MAX_EXIT_ARGS + 1]; /* an exit command (argv, NULL-ended) */
    unsigned nexit;
    const char *exit_lock;        /* the command runs once this is locked, never if removed */
};

/* ---- a byte queue (attach clients, stdin) ---------------------------------------------------- */
struct queue {
    uint8_t *data;
    size_t start, len, cap;
};
int queue_push(struct queue *q, const void *data, size_t len, size_t max);
void queue_pop(struct queue *q, size_t n);
void queue_free(struct queue *q);

/* ---- util.c ------------------------------------------------------------------------------------ */
void write_all(int fd, const void *buf, size_t len);
int parse_u64(const char *s, uint64_t *out);
size_t fmt_u64(char *buf, uint64_t v);
size_t fmt_i64(char *buf, int64_t v);
/* RFC 3339 in UTC with nanoseconds: 2006-01-02T15:04:05.000000000Z (30 bytes + NUL). */
#define SHIM_TIME_LEN 30
void fmt_time(char *buf, const struct timespec *ts);
/* Real time that never goes back within this process (for log order). */
void now_monotone(struct timespec *ts);
uint64_t monotonic_ms(void);
void set_cloexec(int fd);
void set_nonblock(int fd);
void report(int fd, int32_t kind, int32_t err, int32_t step, int32_t op_index, int64_t value);

/* ---- exit.c: the state dir -------------------------------------------------------------------- */
struct exit_record {
    pid_t pid;
    int status;                   /* wait status of the command */
    int oom_killed;
    struct timespec started, finished;
    unsigned restart_count;
    int restarting, stopped;
    int err, step, op_index;      /* a restart whose set-up failed (err != 0) */
};
int state_open(const char *dir);                  /* the dir fd, or -1 */
int state_lock(int dirfd);                        /* the held lock's fd, or -1 (errno) */
int state_write(int dirfd, const char *name, const char *data, size_t len);
int state_write_pid(int dirfd, const char *name, pid_t pid);
int state_write_start(int dirfd, pid_t pid, const struct timespec *started, unsigned restarts);
int state_write_exit(int dirfd, const struct exit_record *r);
void state_clear(int dirfd);                      /* what an earlier shim left */
int64_t oom_kills(const char *cgroup_dir);        /* -1 if unknown */

/* ---- logging.c: json-file ----------------------------------------------------------------- */
struct log_stream {
    uint8_t line[SHIM_LOG_LINE_MAX];
    size_t len;
};
struct shim_log {
    int fd;                       /* -1: no log */
    int dirfd;                    /* the log's directory, for rotation */
    char name[256];               /* the log's file name in that directory */
    uint64_t size, max_size;
    unsigned max_file;
    uint64_t dropped_lines, dropped_bytes;
    int dropped_errno;
    struct log_stream streams[2]; /* stdout, stderr */
};
int log_open(struct shim_log *log, const char *path, uint64_t max_size, unsigned max_file);
/* Output of a stream (1 stdout, 2 stderr) as read: whole lines become records at once. */
void log_data(struct shim_log *log, int stream, const uint8_t *data, size_t len);
/* The stream ended (or the container exited): its unfinished line becomes a partial record. */
void log_flush(struct shim_log *log, int stream);
/* A JSON string body for data (no quotes); returns its length. out needs 6 * len bytes. */
size_t json_escape(char *out, const uint8_t *data, size_t len);

/* ---- attach.c: the control socket ------------------------------------------------------------ */
struct client {
    int fd;
    int attached;                 /* mask of streams it wants */
    struct queue out;
    uint64_t dropped;             /* output bytes dropped since its queue last drained */
    uint8_t hdr[8];
    size_t hdr_len;
    uint32_t want;                /* payload bytes still to come of the current message */
    uint8_t payload[16];          /* a control message's payload (STDIN streams past this) */
    size_t payload_len;
    struct client *next;
};

/* ---- main.c's state, seen by every duty ------------------------------------------------------ */
struct shim {
    struct shim_options opt;
    int dirfd, lockfd, listen_fd, sigfd, timerfd, null_fd, self_pidfd;
    uint8_t *plan;                /* the plan as read (never patched; copied for each start) */
    size_t plan_len;
    uint8_t *work;                /* the copy that iso_spawn patches */
    /* the current run */
    pid_t pid;                    /* 0: not running */
    int out_fd, err_fd;           /* pipe read ends (or out_fd = the pty master), -1: closed */
    int stdin_fd;                 /* pipe write end (or a dup of the master), -1: closed */
    int exit_fd;                  /* read end of an init's exit report, -1: none */
    struct queue stdin_q;
    struct timespec started;
    uint64_t started_ms;
    int64_t oom_before;
    /* policy */
    unsigned restart_count;
    uint64_t backoff_ms;
    int stopped;                  /* a stop request came: never restart again */
    uint64_t restart_at_ms;       /* 0: no restart pending */
    uint64_t kill_at_ms;          /* 0: no stop escalation pending */
    int done;                     /* leave the loop */
    int stdin_closing;            /* close stdin once its queue has drained */
    struct exit_record last;      /* the last exit, rewritten if a stop cancels a restart */
    struct shim_log log;
    struct client *clients;
};

/* start.c: run the plan once; 0, or -1 after reporting/recording why (fields of r set). */
struct start_error {
    int32_t kind;                 /* SHIM_REPORT_ERROR or SHIM_REPORT_FAILED */
    int32_t err, step, op_index;
    int64_t value;
};
int start_container(struct shim *s, struct start_error *e);
int plan_check(const uint8_t *plan, size_t len);  /* 0, or -1: not a plan this shim can run */
/* console.c */
int console_receive(int sock);                    /* the master fd, or -1 */
void console_resize(int master, unsigned rows, unsigned cols);
/* restart.c */
int restart_parse(const char *s, int *policy, unsigned *max);
/* Whether to start again after an exit with code (0-255, 128+N), and the delay (Docker's). */
int restart_decide(struct shim *s, int exit_code, uint64_t ran_ms, uint64_t *delay_ms);
/* attach.c */
int attach_listen(int dirfd, const char *name);
void attach_accept(struct shim *s);
void attach_broadcast(struct shim *s, int stream, const uint8_t *data, size_t len);
void attach_note(struct shim *s, const char *text);
int attach_client_wants_read(const struct shim *s, const struct client *c);
/* These two return -1 when the client is gone (and freed). */
int attach_client_read(struct shim *s, struct client *c);
int attach_client_write(struct shim *s, struct client *c);
void attach_close_all(struct shim *s);
/* main.c: requests from clients and signals */
void shim_stop(struct shim *s, int sig, uint32_t timeout_ms);
void shim_kill(struct shim *s, int sig);
void shim_stdin(struct shim *s, const uint8_t *data, size_t len);
void shim_close_stdin(struct shim *s);
void shim_resize(struct shim *s, unsigned rows, unsigned cols);
/* cleanup.c: remove the cgroup dirs, free the lock, start the exit command */
void shim_cleanup(struct shim *s);
/* init.c */
/* argv as main got it; the init's own options start at argv[first]. */
int init_main(int argc, char **argv, int first);

#endif
