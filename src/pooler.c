/* Telling a direct connection from one through a session or a transaction pooler. */
#include "mtr/pooler.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

/* How long the probe connection may wait for a server session of the pool. */
#define PROBE_MS 3000

static bool backend_pid(PGconn *conn, const char *sql, int64_t timeout_ms, long *pid,
			struct pg_error *err)
{
	char v[24];
	if (!pg_query_value(conn, sql, timeout_ms, -1, v, sizeof v, err))
		return false;
	*pid = atol(v);
	return true;
}

/* One round of the probe: p's open transaction takes a server session, then conn asks for
 * one. True when that showed transaction pooling; false with *failed when conn did not answer. */
static bool round_shows_transactions(PGconn *conn, PGconn *p, long *last, bool *failed,
				     struct pg_error *err)
{
	static const char pid_sql[] = "SELECT pg_catalog.pg_backend_pid()";
	long probe = 0, next = 0;
	struct pg_error perr;
	if (!backend_pid(p, "BEGIN; SELECT pg_catalog.pg_backend_pid()", PROBE_MS, &probe, &perr))
		return false; /* no server session for it in time: the pool is held by sessions */
	*failed = !backend_pid(conn, pid_sql, PG_QUERY_MS, &next, err);
	bool shown = !*failed && (probe == *last || next != *last);
	*last = next;
	if (!pg_command(p, "ROLLBACK", 0, NULL, PROBE_MS, -1, &perr)) {
		/* the caller closes p */
	}
	return shown;
}

/* Other clients of the pool (waiting replicas among them) may take the session conn just
 * left before the probe does, so a round that shows nothing is tried again a little later;
 * one that shows transaction pooling settles it. A session pooler costs all the rounds:
 * about a tenth of a second, and only when something is pending. */
#define PROBE_ROUNDS 8
#define PROBE_GAP_MS 10

bool pooler_probe(PGconn *conn, const struct pg_target *t, enum pooling *mode, struct pg_error *err)
{
	long last = 0;
	if (!backend_pid(conn, "SELECT pg_catalog.pg_backend_pid()", PG_QUERY_MS, &last, err))
		return false;
	if (last == (long)PQbackendPID(conn)) {
		*mode = POOLING_NONE;
		return true;
	}
	*mode = POOLING_SESSION;
	enum pg_status st;
	struct pg_error perr;
	PGconn *p = pg_connect(t, PROBE_MS, -1, &st, &perr);
	if (!p)
		return true; /* no room for one more client: nothing to tell, nothing changed */
	bool failed = false;
	for (int i = 0; i < PROBE_ROUNDS && *mode == POOLING_SESSION && !failed; i++) {
		if (i > 0)
			(void)poll(NULL, 0, PROBE_GAP_MS);
		if (round_shows_transactions(conn, p, &last, &failed, err))
			*mode = POOLING_TRANSACTION;
	}
	PQfinish(p);
	return !failed;
}

bool pooler_seen(PGconn *conn, bool *pooled, struct pg_error *err)
{
	long pid = 0;
	if (!backend_pid(conn, "SELECT pg_catalog.pg_backend_pid()", PG_QUERY_MS, &pid, err))
		return false;
	*pooled = pid != (long)PQbackendPID(conn);
	return true;
}

const char *pooler_name(enum pooling mode)
{
	switch (mode) {
	case POOLING_SESSION:
		return "session";
	case POOLING_TRANSACTION:
		return "transaction";
	case POOLING_NONE:
	default:
		return "none";
	}
}
