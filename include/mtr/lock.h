/* Phase 3: a session-level advisory lock, so that one replica migrates and the others wait. */
#ifndef MTR_LOCK_H
#define MTR_LOCK_H

#include "mtr/pg.h"
#include "mtr/signals.h"

#include <stdint.h>

enum lock_status {
	LOCK_ACQUIRED,
	LOCK_TIMEOUT,     /* another session held it past the deadline: 75 */
	LOCK_LOST,        /* the connection failed: the database went away */
	LOCK_INTERRUPTED  /* a stop signal: signo */
};

/* The advisory lock key for a name: FNV-1a 64 of its bytes, as a signed bigint. The same
 * name always gives the same key, on every replica and version of the tool. */
int64_t lock_key(const char *name);

/* Polls pg_try_advisory_lock(key) on conn with backoff until it is ours, timeout_ms passes
 * or a stop signal arrives. While waiting, logs lock.wait every 5 s naming the holder. */
enum lock_status lock_acquire(PGconn *conn, const char *name, int64_t timeout_ms,
			      const struct sigstate *sigs, int *signo, struct pg_error *err);

#endif
