/* PID-1 supervision: run the app as our child, forward signals, reap everything, stop cleanly. */
#ifndef MTR_INIT_H
#define MTR_INIT_H

#include "mtr/signals.h"
#include "mtr/user.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct init_opts {
	int64_t stop_timeout_ms;     /* the one stop budget: the app and its leftovers together */
	bool signal_group;           /* forward to the app's process group */
	const struct user_ids *user; /* --user for the app, NULL: ours */
};

/* Forks argv (found on PATH, no shell) in its own process group, as o->user, then forwards
 * signals and reaps every child (orphans included) until the app has exited and its leftover
 * processes are gone. From the first stop signal, or the app's exit if that is first, the
 * app and the leftovers have o->stop_timeout_ms together (the leftovers SIGTERM when the app
 * is gone), then SIGKILL. Outside PID 1, a job-control stop of the app stops us too, and
 * SIGCONT resumes both. Returns the app's exit status, 128+n if a signal n killed it, or
 * 126/127 if it could not be started. */
int init_run(char *const *argv, const struct init_opts *o, const struct sigstate *sigs);

/* Replaces the process image with a fresh copy of this binary that does nothing but
 * init_run(): the supervisor that stays for the app's whole life then holds none of the
 * migration phases' memory, libraries' state or connections. The options, log settings and
 * the original signal state travel in MTR_INTERNAL_SUPERVISE (--user's ids in
 * MTR_INTERNAL_SUPERVISE_USER), removed again before the app starts. Returns only if the
 * re-exec failed (then supervise in place). */
void init_reexec(char *const *argv, const struct init_opts *o, const struct sigstate *sigs,
		 int log_format, int log_level);

/* In main(), first thing: if this process is such a re-exec, names itself migrate-then-run
 * (not "exe") for ps, supervises argv (everything after "--") and returns the exit code in
 * *code; false when it is an ordinary start. */
bool init_resume(int argc, char **argv, int *code);

#endif
