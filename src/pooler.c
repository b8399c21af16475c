/* Telling a direct connection from one through a session or a transaction pooler. */
#include "mtr/pooler.h"

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

bool pooler_probe(PGconn *conn, const struct pg_target *t, enum pooling *mode, struct pg_error *err)
{
	static const char pid_sql[] = "SELECT pg_catalog.pg_backend_pid()";
	long first = 0, probe = 0, second = 0;
	if (!backend_pid(conn, pid_sql, PG_QUERY_MS, &first, err))
		return false;
	if (first == (long)PQbackendPID(conn)) {
		*mode = POOLING_NONE;
		return true;
	}
	*mode = POOLING_SESSION;
	enum pg_status st;
	struct pg_error perr;
	PGconn *p = pg_connect(t, PROBE_MS, -1, &st, &perr);
	if (!p)
		return true; /* no room for one more client: nothing to tell, nothing changed */
	bool in_tx = backend_pid(p, "BEGIN; SELECT pg_catalog.pg_backend_pid()", PROBE_MS, &probe, &perr);
	bool ok = !in_tx || backend_pid(conn, pid_sql, PG_QUERY_MS, &second, err);
	if (in_tx && (probe == first || second != first))
		*mode = POOLING_TRANSACTION;
	if (in_tx && !pg_command(p, "ROLLBACK", 0, NULL, PROBE_MS, -1, &perr)) {
		/* closing ends it too */
	}
	PQfinish(p);
	return ok;
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
