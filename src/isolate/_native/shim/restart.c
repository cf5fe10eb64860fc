/* restart.c -- Docker's restart policies and back-off, for one container.
 *
 *   no               never start it again
 *   on-failure[:N]   again when it exited with a code other than 0, at most N times (no N: no limit)
 *   always           again whatever the code
 *   unless-stopped   the same as always for a shim (the difference is what a daemon does when it
 *                    restarts, and there is no daemon)
 *
 * A stop request (STOP, or KILL with the stop signal or SIGKILL, or SIGTERM to the shim) turns
 * restarting off for good. The delay before each restart is Docker's: 100 ms, doubled each time,
 * at most one minute, back to 100 ms when the run before lasted 10 s or more.
 */
#include <string.h>

#include "shim.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 60000
#define BACKOFF_RESET_MS 10000

int restart_parse(const char *s, int *policy, unsigned *max)
{
    *max = 0;
    if (strcmp(s, "no") == 0) {
        *policy = SHIM_RESTART_NO;
    } else if (strcmp(s, "always") == 0) {
        *policy = SHIM_RESTART_ALWAYS;
    } else if (strcmp(s, "unless-stopped") == 0) {
        *policy = SHIM_RESTART_UNLESS_STOPPED;
    } else if (strncmp(s, "on-failure", 10) == 0 && (s[10] == '\0' || s[10] == ':')) {
        *policy = SHIM_RESTART_ON_FAILURE;
        if (s[10] == ':') {
            uint64_t v;
            if (parse_u64(s + 11, &v) < 0 || v > 0x7fffffff)
                return -1;
            *max = (unsigned)v;
        }
    } else {
        return -1;
    }
    return 0;
}

int restart_decide(struct shim *s, int exit_code, uint64_t ran_ms, uint64_t *delay_ms)
{
    /* The back-off moves on every exit, as Docker's restart manager does. */
    if (ran_ms >= BACKOFF_RESET_MS)
        s->backoff_ms = 0;
    if (s->backoff_ms == 0)
        s->backoff_ms = BACKOFF_FIRST_MS;
    else if (s->backoff_ms < BACKOFF_MAX_MS)
        s->backoff_ms *= 2;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    *delay_ms = s->backoff_ms;
    if (s->stopped)
        return 0;
    switch (s->opt.restart) {
    case SHIM_RESTART_ALWAYS:
    case SHIM_RESTART_UNLESS_STOPPED:
        return 1;
    case SHIM_RESTART_ON_FAILURE:
        if (s->opt.restart_max && s->restart_count >= s->opt.restart_max)
            return 0;
        return exit_code != 0;
    default:
        return 0;
    }
}
