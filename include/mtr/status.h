/* The status file: where the tool is now (waiting, migrating, holding, running), for probes. */
#ifndef MTR_STATUS_H
#define MTR_STATUS_H

#include <stdbool.h>
#include <stddef.h>

/* States, as written to the file. */
#define STATUS_WAITING "waiting"
#define STATUS_LOCKED_OUT "locked-out"
#define STATUS_MIGRATING "migrating"
#define STATUS_HOLDING "failed-holding"
#define STATUS_RUNNING "running"

/* Where later status_set() calls write (NULL: nowhere). The path is copied. */
void status_init(const char *path);

/* Rewrites the file atomically (a temporary file renamed over it): state, phase, since,
 * attempt, last error, pid. Never fails the run: a status file is advisory. */
void status_set(const char *state, const char *phase, long attempt, const char *last_error);

/* What a status file's text says: its state (copied into state; "" and false when there is
 * none) and pid (0 when there is none). */
bool status_parse(const char *text, char *state, size_t statelen, long *pid);

/* --health: 0 when the file says running and its pid is alive, 1 otherwise. */
int status_health(const char *path);

#endif
