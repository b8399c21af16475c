/* Phase 3: the migration lock, so that one replica migrates and the others wait. It is a
 * transaction-level advisory lock held by a transaction that stays open, on a connection of
 * its own, for the whole run: an open transaction pins one server backend even through a
 * transaction pooler (PgBouncer, Supabase, Neon), and the lock ends with that transaction,
 * that connection or that backend, so nothing is ever left locked behind the tool. */
#ifndef MTR_LOCK_H
#define MTR_LOCK_H

#include "mtr/pg.h"
#include "mtr/signals.h"

#include <stdbool.h>
#include <stdint.h>

enum lock_status {
	LOCK_ACQUIRED,
	LOCK_TIMEOUT,     /* another session held it past the deadline: 75 */
	LOCK_LOST,        /* the connection failed: the database went away */
	LOCK_INTERRUPTED, /* a stop signal: signo */
	LOCK_RELEASED     /* lock_try_or_wait: the holder finished; look again before locking */
};

/* A held (or not yet held) lock. Zero-initialised means "not held". */
struct lock {
	PGconn *conn;   /* the dedicated connection, its transaction open while held; owned */
	int64_t key;
	long backend_pid; /* the server session that holds it */
	int64_t run_key; /* a random key held beside key in the same transaction, by nothing
			  * else: the fence's probe (lock_fence_sql) */
	char lost[512]; /* why the lock was lost, once lock_held() saw it */
};

/* The SQLSTATE of a failed fence (lock_fence_sql). */
#define LOCK_FENCE_STATE "MTR01"

/* The advisory lock key for a name: FNV-1a 64 of its bytes, as a signed bigint. The same
 * name always gives the same key, on every replica and version of the tool. */
int64_t lock_key(const char *name);

/* Polls pg_try_advisory_xact_lock(key) with backoff until it is ours, timeout_ms passes or a
 * stop signal arrives. Each try is a short-lived connection of its own, so that a waiting
 * replica holds no pooled server connection between tries (session pooling with a small
 * pool would otherwise starve the holder); *release, a connection of the caller's, is closed
 * (and set to NULL) before the first try, for the same reason. While waiting, logs lock.wait every
 * 5 s naming the holder. LOCK_ACQUIRED: l->conn holds the lock until lock_release(). */
enum lock_status lock_acquire(struct lock *l, const struct pg_target *t, const char *name,
			      int64_t timeout_ms, const struct sigstate *sigs, PGconn **release,
			      int *signo, struct pg_error *err) MTR_MUST_CHECK;

/* How long and how a replica has waited for the lock (zero-initialised before the first call:
 * then start is set), kept by the caller across the lock_try_or_wait calls of one attempt. */
struct lock_waiting {
	int64_t start, next_report;
	bool reported; /* lock.wait was logged (the lock, once taken, is then said at info) */
	int relooks;   /* LOCK_RELEASED answers so far */
};

/* Directly connected (no pooler between us and the server): one try on the caller's open
 * connection *conn; when another session holds the lock, looks at it on that same connection
 * (a cheap statement every 25-50 ms at first, later up to every second) until it is free,
 * w->start + timeout_ms passes or a stop signal arrives. No connection is made while waiting.
 * LOCK_ACQUIRED: the lock is *conn's transaction, now l->conn, and *conn is NULL (the caller
 * connects again for its work). LOCK_RELEASED: the holder finished and *conn is idle: what it
 * did may leave nothing to do, so the caller looks again before it tries again (after two
 * such answers the looks are spaced out). lock.wait every 5 s across the calls, as
 * lock_acquire. */
enum lock_status lock_try_or_wait(struct lock *l, PGconn **conn, const char *name,
				  struct lock_waiting *w, int64_t timeout_ms, const struct sigstate *sigs,
				  int *signo, struct pg_error *err) MTR_MUST_CHECK;

/* Whether the lock is still held. An idle transaction hears from the server only when it is
 * being ended (pg_terminate_backend, an idle timeout, a pooler dropping it, a restart), so
 * its connection turning readable means the lock is gone; with round_trip, a cheap query
 * must also be answered within a few seconds (a silent network). False with l->lost set. */
bool lock_held(struct lock *l, bool round_trip) MTR_MUST_CHECK;

/* A descriptor that turns readable when stop_fd does or when the lock's connection does (the
 * lock is being lost), for waits that take one stop descriptor (pg_run). The caller closes
 * it; -1 (use stop_fd alone) when none can be made or no lock is held. */
int lock_watch_fd(const struct lock *l, int stop_fd);

/* Ends the lock's transaction (COMMIT, its result checked) and closes its connection. True
 * when the lock was still held to the end; false with l->lost when it had been lost. The
 * lock is released either way. Safe on a lock that is not held. */
bool lock_release(struct lock *l);

/* A statement that fails (SQLSTATE LOCK_FENCE_STATE) unless the lock is still held by its
 * session, for a migration's transaction to run just before its COMMIT. It probes run_key
 * (one lookup in the server's lock table, whatever the number of locks held there): only the
 * lock's transaction holds that key, and it holds key until it ends. The lock alone cannot
 * cover the migration connection: if the tool dies, its lock ends at once, while the server
 * may still be running (and would commit) what the tool sent before it died; the fence makes
 * that transaction roll back instead. Caller frees; NULL when no lock is held. */
char *lock_fence_sql(const struct lock *l);

#endif
