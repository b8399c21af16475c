/* Phase 3: a session-level advisory lock, so that one replica migrates and the others wait. */
#include "mtr/lock.h"
#include "mtr/log.h"
#include "mtr/retry.h"
#include "mtr/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t lock_key(const char *name)
{
	return (int64_t)fnv1a(name, strlen(name), FNV_OFFSET);
}

/* Logs who holds the lock: pid, application, client, since when, and what it runs. */
static void log_holder(PGconn *conn, int64_t key, int64_t waited_ms)
{
	char keytext[32];
	snprintf(keytext, sizeof keytext, "%" PRId64, key);
	const char *params[1] = {keytext};
	/* A bigint advisory key shows in pg_locks as classid (high half) and objid (low half). */
	struct pg_error err;
	PGresult *res = pg_run(
		conn,
		"SELECT a.pid, a.application_name, COALESCE(a.client_addr::text, 'local'), "
		"a.backend_start::text, COALESCE(EXTRACT(epoch FROM now() - a.query_start)::int, 0), "
		"a.state "
		"FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
		"WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
		"AND l.classid::bigint = ($1::bigint >> 32) & 4294967295 "
		"AND l.objid::bigint = $1::bigint & 4294967295 "
		"AND l.database = (SELECT oid FROM pg_catalog.pg_database "
		"WHERE datname = pg_catalog.current_database())",
		1, params, PG_QUERY_MS, -1, &err);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
		log_event(LOG_INFO, "lock.wait",
			  LOG_FIELDS(LF_I("waited_ms", waited_ms), LF_S("key", keytext),
				     LF_I("holder_pid", atoi(PQgetvalue(res, 0, 0))),
				     LF_S("holder_application", PQgetvalue(res, 0, 1)),
				     LF_S("holder_client", PQgetvalue(res, 0, 2)),
				     LF_S("holder_since", PQgetvalue(res, 0, 3)),
				     LF_I("holder_query_age_s", atoi(PQgetvalue(res, 0, 4))),
				     LF_S("holder_state", PQgetvalue(res, 0, 5))),
			  "waiting for the migration lock held by pid %s (%s, from %s)",
			  PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
	} else {
		log_event(LOG_INFO, "lock.wait", LOG_FIELDS(LF_I("waited_ms", waited_ms), LF_S("key", keytext)),
			  "waiting for the migration lock");
	}
	PQclear(res);
}

enum lock_status lock_acquire(PGconn *conn, const char *name, int64_t timeout_ms,
			      const struct sigstate *sigs, int *signo, struct pg_error *err)
{
	int64_t key = lock_key(name);
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT pg_catalog.pg_try_advisory_lock(%" PRId64 ")::text", key);
	int64_t start = now_ms(), next_report = start + 5000;
	struct backoff b;
	backoff_init(&b, 100, 2000, random_u64());
	bool reported = false;
	for (;;) {
		char got[8];
		if (!pg_query_value(conn, sql, PG_QUERY_MS, -1, got, sizeof got, err))
			return LOCK_LOST;
		if (strcmp(got, "true") == 0) {
			if (reported)
				log_event(LOG_INFO, "lock.acquired",
					  LOG_FIELDS(LF_I("waited_ms", now_ms() - start), LF_S("name", name)),
					  "migration lock acquired");
			else
				log_event(LOG_DEBUG, "lock.acquired",
					  LOG_FIELDS(LF_I("waited_ms", now_ms() - start), LF_S("name", name)),
					  "migration lock acquired");
			return LOCK_ACQUIRED;
		}
		int64_t now = now_ms();
		if (!reported || now >= next_report) {
			if (!reported)
				status_set(STATUS_LOCKED_OUT, "lock", 1, "another replica holds the migration lock");
			log_holder(conn, key, now - start);
			reported = true;
			next_report = now + 5000;
		}
		int64_t left = start + timeout_ms - now;
		if (left <= 0) {
			snprintf(err->msg, sizeof err->msg,
				 "the migration lock was still held after %lldms", (long long)timeout_ms);
			return LOCK_TIMEOUT;
		}
		int64_t delay = backoff_next(&b);
		int sig = signals_sleep(sigs, delay < left ? delay : left);
		if (sig) {
			*signo = sig;
			return LOCK_INTERRUPTED;
		}
	}
}
