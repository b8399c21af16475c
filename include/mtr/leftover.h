/* The processes an app leaves behind: signalled with kill(-1) as PID 1, found through /proc
 * elsewhere, and only through a /proc that belongs to our own PID namespace. */
#ifndef MTR_LEFTOVER_H
#define MTR_LEFTOVER_H

#include <stdbool.h>
#include <sys/types.h>

struct leftovers {
	bool pid1;     /* kill(-1) reaches every other process of the namespace */
	bool own_proc; /* /proc shows this namespace's pids: its numbers can be counted and signalled */
	pid_t self;
};

/* Looks at where we run: PID 1 or not, and whether /proc/self is us (a /proc mounted from
 * another namespace, or none, is never used for pids). */
void leftover_init(struct leftovers *l);

/* Sends sig to every process left behind: as PID 1 everyone but us (kill(-1, sig)); else
 * each of our descendants in our own /proc, or, without one, the app's process group (pgid,
 * 0 for none). The app itself (pid app, 0 when it is gone) is signalled too but not counted.
 * Returns how many live processes (zombies not counted) received it, or -1 when no /proc of
 * ours can tell. */
long leftover_signal(const struct leftovers *l, pid_t app, pid_t pgid, int sig);

/* Our descendants, read from our own /proc, zombies left out (at most max; returns how many;
 * 0 without a /proc of ours). */
size_t leftover_descendants(const struct leftovers *l, pid_t *out, size_t max);

#endif
