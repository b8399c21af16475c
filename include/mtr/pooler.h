/* What stands between the tool and the server: nothing, a pooler that keeps one server session
 * per client (session pooling), or one that hands out a server session per transaction
 * (PgBouncer's pool_mode=transaction, and the poolers of Supabase, Neon, DigitalOcean …). */
#ifndef MTR_POOLER_H
#define MTR_POOLER_H

#include "mtr/pg.h"

#include <stdbool.h>

enum pooling { POOLING_NONE, POOLING_SESSION, POOLING_TRANSACTION };

/* Finds out how conn reaches the server (t: the same target, for one probe connection).
 * A pooler shows in the cancel key it hands out: its own, so that the pid libpq was given is
 * not the server's pg_backend_pid(). Then the modes are told apart: a pooler in transaction
 * mode gives the server session conn just used to the next transaction that needs one (last
 * in, first out), so a probe connection's open transaction lands on it, and conn's next
 * statement on another; a session pooler keeps it for conn. A probe that gets no server
 * session in time means the pool is held by sessions: session pooling. False with err when
 * conn failed. */
bool pooler_probe(PGconn *conn, const struct pg_target *t, enum pooling *mode,
		  struct pg_error *err) MTR_MUST_CHECK;

/* The cheap first step of pooler_probe: whether anything pools conn at all (one round trip).
 * False with err when conn failed. */
bool pooler_seen(PGconn *conn, bool *pooled, struct pg_error *err) MTR_MUST_CHECK;

/* "none", "session", "transaction". */
const char *pooler_name(enum pooling mode);

#endif
