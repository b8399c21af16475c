/* migrate.progress while a migration runs: its step and elapsed time, what its database session
 * waits for, who blocks it and the phase of a long statement, from a connection of its own. */
#ifndef MTR_PROGRESS_H
#define MTR_PROGRESS_H

#include "mtr/pg.h"

#include <stdint.h>

struct progress_watch;

/* Starts watching: every interval_ms a migrate.progress event about the session last named by
 * progress_watch_pid / progress_watch_app (none is logged before one is). NULL when interval_ms
 * is 0 or the watcher cannot start (logged); every function here accepts NULL. t must outlive
 * it. The caller ends it with progress_stop. */
struct progress_watch *progress_start(const struct pg_target *t, int64_t interval_ms);

/* The migration is now at step (a file, a revision, a command), on the server backend pid (a
 * connection of ours: PQbackendPID). Its elapsed time counts from here. Copied. */
void progress_watch_pid(struct progress_watch *w, int pid, const char *step);

/* The same for a tool's sessions, found by the application_name it was given (PGAPPNAME).
 * Naming the current step again (a retry) keeps its start time. */
void progress_watch_app(struct progress_watch *w, const char *application_name, const char *step);

/* The step is over (or the migration is): nothing is reported until a step is named again, and
 * a look already under way is dropped. Call it before logging the step's outcome. */
void progress_idle(struct progress_watch *w);

/* Stops the watcher and frees it: at once, whatever it was doing (a query in progress is
 * cancelled; it waits for no server). */
void progress_stop(struct progress_watch *w);

#endif
