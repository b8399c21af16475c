/* No restart storms: which failures are transient, and the memory of the last failure across
 * restarts (a file in --state-dir, else a one-row table in the tool's own schema of the target
 * database, --state-schema). */
#include "mtr/breaker.h"
#include "mtr/fileio.h"
#include "mtr/exitcode.h"
#include "mtr/log.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_FILE "migrate-then-run.state.json"
/* In --state-schema; a later fingerprint of a tool's history belongs beside it. */
#define STATE_TABLE "failure_state"

enum failure_class breaker_classify(int code, const char *sqlstate)
{
	if (sqlstate && *sqlstate)
		return pg_sqlstate_is_transient(sqlstate) ? FAILURE_TRANSIENT : FAILURE_PERMANENT;
	switch (code) {
	case MTR_EXIT_UNAVAILABLE: /* not ready in time: may be ready next time */
	case MTR_EXIT_TEMPFAIL:
		return FAILURE_TRANSIENT;
	default:
		return FAILURE_PERMANENT;
	}
}

void breaker_signature(const struct failure *f, char *out, size_t len)
{
	snprintf(out, len, "%d:%s:%s:%s:%s", f->code, f->phase ? f->phase : "", f->sqlstate,
		 f->revision, f->fingerprint);
}

int64_t breaker_pause(long n, int64_t base_ms, int64_t cap_ms)
{
	if (n < 1)
		return 0;
	int64_t d = base_ms;
	for (long i = 0; i < n && d < cap_ms; i++)
		d *= 2;
	return d < cap_ms ? d : cap_ms;
}

/* A number within [min, max]: the file may be corrupt or edited by hand, and converting a
 * double outside the target type's range is undefined. */
static bool number_in(const cJSON *n, double min, double max)
{
	return cJSON_IsNumber(n) && n->valuedouble >= min && n->valuedouble <= max;
}

bool breaker_parse_state(const char *text, struct failure_memory *m)
{
	cJSON *o = cJSON_Parse(text);
	const cJSON *sig = cJSON_GetObjectItemCaseSensitive(o, "signature");
	const cJSON *count = cJSON_GetObjectItemCaseSensitive(o, "count");
	const cJSON *first = cJSON_GetObjectItemCaseSensitive(o, "first_ms");
	const cJSON *last = cJSON_GetObjectItemCaseSensitive(o, "last_ms");
	bool ok = cJSON_IsString(sig) && number_in(count, 1, 1e9) && number_in(first, -9e18, 9e18) &&
		  number_in(last, -9e18, 9e18);
	if (ok) {
		snprintf(m->signature, sizeof m->signature, "%s", sig->valuestring);
		m->count = (long)count->valuedouble;
		m->first_ms = (long long)first->valuedouble;
		m->last_ms = (long long)last->valuedouble;
	}
	cJSON_Delete(o);
	return ok;
}

static char *state_path(const struct config *cfg)
{
	return xasprintf("%s/%s", cfg->state_dir, STATE_FILE);
}

/* Reads the file; a missing one is no memory, a corrupt one is reported and ignored (the
 * next write replaces it). */
static void load_file(const struct config *cfg, struct failure_memory *m)
{
	char *path = state_path(cfg);
	char *text = read_secret_file(path);
	if (text && !breaker_parse_state(text, m)) {
		log_event(LOG_WARN, "state.corrupt", LOG_FIELDS(LF_S("path", path)),
			  "the failure state in %s is not readable as a state record; starting afresh "
			  "(it will be replaced)",
			  path);
		memset(m, 0, sizeof *m);
	} else if (!text && errno != ENOENT) {
		log_event(LOG_WARN, "state.unreadable", LOG_FIELDS(LF_S("path", path), LF_S("error", strerror(errno))),
			  "cannot read the failure state %s: %s", path, strerror(errno));
	}
	free(text);
	free(path);
}

/* Writes the file atomically (file_write_atomic: never through a planted symlink). */
static void store_file(const struct config *cfg, const struct failure_memory *m)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "signature", m->signature);
	cJSON_AddNumberToObject(o, "count", (double)m->count);
	cJSON_AddNumberToObject(o, "first_ms", (double)m->first_ms);
	cJSON_AddNumberToObject(o, "last_ms", (double)m->last_ms);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		die_oom();
	char *path = state_path(cfg);
	mkdir(cfg->state_dir, 0700);
	if (!file_write_atomic(path, text, strlen(text), 0600)) {
		int e = errno;
		log_event(LOG_WARN, "state.unwritable", LOG_FIELDS(LF_S("path", path), LF_S("error", strerror(e))),
			  "cannot write the failure state %s: %s; restarts will not be spaced out",
			  path, strerror(e));
	}
	free(path);
	cJSON_free(text);
}

/* The failure memory's table in the tool's own schema (--state-schema), never one of the
 * app's: "schema".failure_state, quoted for SQL (caller frees). */
static char *state_table(PGconn *conn, const struct config *cfg)
{
	char *s = PQescapeIdentifier(conn, cfg->state_schema, strlen(cfg->state_schema));
	char *q = xasprintf("%s." STATE_TABLE, s ? s : "\"?\"");
	PQfreemem(s);
	return q;
}

/* Whether the schema and the table exist: to_regnamespace and to_regclass read the catalog,
 * and nothing is created when both do (CREATE … IF NOT EXISTS still checks the privilege). */
static bool state_exists(PGconn *conn, const struct config *cfg, bool *schema, bool *table,
			 struct pg_error *err)
{
	const char *params[1] = {cfg->state_schema};
	PGresult *res = pg_run(conn,
			       "SELECT pg_catalog.to_regnamespace(pg_catalog.quote_ident($1)) IS NOT NULL, "
			       "pg_catalog.to_regclass(pg_catalog.quote_ident($1) || '." STATE_TABLE "') "
			       "IS NOT NULL",
			       1, params, 3000, -1, err);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	*schema = ok && PQgetvalue(res, 0, 0)[0] == 't';
	*table = ok && PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return ok;
}

/* Creates what is missing of the schema and the table, in one transaction. */
static bool ensure_state_table(PGconn *conn, const struct config *cfg, const char *table,
			       struct pg_error *err)
{
	bool schema, exists;
	if (!state_exists(conn, cfg, &schema, &exists, err))
		return false;
	if (exists)
		return true;
	char *s = PQescapeIdentifier(conn, cfg->state_schema, strlen(cfg->state_schema));
	char *sql = xasprintf("BEGIN; SET LOCAL client_min_messages = warning; %s%s%s"
			      "CREATE TABLE IF NOT EXISTS %s (id int PRIMARY KEY CHECK (id = 1), "
			      "signature text NOT NULL, count bigint NOT NULL, "
			      "first_at timestamptz NOT NULL, last_at timestamptz NOT NULL); COMMIT",
			      schema ? "" : "CREATE SCHEMA IF NOT EXISTS ", schema || !s ? "" : s,
			      schema ? "" : "; ", table);
	bool ok = pg_command(conn, sql, 0, NULL, 3000, -1, err);
	struct pg_error ignored;
	if (!ok && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE &&
	    !pg_command(conn, "ROLLBACK", 0, NULL, 3000, -1, &ignored)) {
		/* the connection is closed right after */
	}
	PQfreemem(s);
	free(sql);
	return ok;
}

/* Said once per process: the memory cannot be kept by this role, and how to fix that. */
static void state_unavailable(const struct config *cfg, PGconn *conn, const struct pg_error *err)
{
	static bool said;
	if (said)
		return;
	said = true;
	const char *role = PQuser(conn), *db = PQdb(conn);
	log_event(LOG_WARN, "state.unavailable",
		  LOG_FIELDS(LF_S("schema", cfg->state_schema), LF_S("sqlstate", err->sqlstate),
			     LF_S("error", err->msg)),
		  "the failure memory cannot be kept in schema %s (%s): restarts after a permanent "
		  "failure are not spaced out. Let the role keep it (GRANT CREATE ON DATABASE %s TO "
		  "%s, or CREATE SCHEMA %s AUTHORIZATION %s), or keep it in a volume with --state-dir",
		  cfg->state_schema, err->msg, db, role, cfg->state_schema, role);
}

/* The database variant: one row, updated in one statement. False when unreachable or when
 * the role may not keep it (said once). */
static bool record_db(const struct config *cfg, const struct pg_target *t, const char *sig,
		      struct failure_memory *m)
{
	enum pg_status st;
	struct pg_error err;
	PGconn *conn = pg_connect(t, 3000, -1, &st, &err);
	if (!conn)
		return false;
	char *table = state_table(conn, cfg);
	char *sql = xasprintf("INSERT INTO %s AS f VALUES (1, $1, 1, now(), now()) "
			      "ON CONFLICT (id) DO UPDATE SET "
			      "count = CASE WHEN f.signature = $1 THEN f.count + 1 ELSE 1 END, "
			      "first_at = CASE WHEN f.signature = $1 THEN f.first_at ELSE now() END, "
			      "signature = $1, last_at = now() "
			      "RETURNING count, (extract(epoch FROM first_at) * 1000)::bigint, "
			      "(extract(epoch FROM last_at) * 1000)::bigint",
			      table);
	const char *params[1] = {sig};
	PGresult *res = NULL;
	bool ok = ensure_state_table(conn, cfg, table, &err);
	if (ok) {
		res = pg_run(conn, sql, 1, params, 3000, -1, &err);
		ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	}
	if (ok) {
		snprintf(m->signature, sizeof m->signature, "%s", sig);
		m->count = atol(PQgetvalue(res, 0, 0));
		m->first_ms = atoll(PQgetvalue(res, 0, 1));
		m->last_ms = atoll(PQgetvalue(res, 0, 2));
	} else if (PQstatus(conn) == CONNECTION_OK && err.sqlstate[0]) {
		state_unavailable(cfg, conn, &err);
	}
	PQclear(res);
	free(sql);
	free(table);
	PQfinish(conn);
	return ok;
}

void breaker_record(const struct config *cfg, const struct pg_target *t, const struct failure *f,
		    struct failure_memory *m)
{
	char sig[200];
	breaker_signature(f, sig, sizeof sig);
	memset(m, 0, sizeof *m);
	long long now = (long long)wall_ms();
	if (!cfg->state_dir) {
		if (record_db(cfg, t, sig, m))
			return;
		/* Not reachable (the failure may be exactly that): nothing is remembered. */
		snprintf(m->signature, sizeof m->signature, "%s", sig);
		m->count = 1;
		m->first_ms = m->last_ms = now;
		return;
	}
	struct failure_memory old = {0};
	load_file(cfg, &old);
	snprintf(m->signature, sizeof m->signature, "%s", sig);
	m->last_ms = now;
	if (old.count >= 1 && strcmp(old.signature, sig) == 0) {
		m->count = old.count + 1;
		m->first_ms = old.first_ms;
	} else {
		m->count = 1;
		m->first_ms = now;
	}
	store_file(cfg, m);
}

int breaker_look(const struct config *cfg, struct look *l)
{
	return cfg->state_dir ? 0 : look_table(l, cfg->state_schema, STATE_TABLE);
}

void breaker_clear(const struct config *cfg, PGconn *conn, const struct look *l, int col)
{
	if (cfg->state_dir) {
		char *path = state_path(cfg);
		if (unlink(path) == 0)
			log_event(LOG_INFO, "state.cleared", LOG_FIELDS(LF_S("path", path)),
				  "the last failure is forgotten after this success");
		free(path);
		return;
	}
	if (!conn)
		return;
	/* No write at all while there is nothing to forget; without the table, no round trip
	 * either when the first look answered. */
	struct pg_error err;
	bool schema, table;
	if (look_known(l, col) ? !look_true(l, col)
			       : !state_exists(conn, cfg, &schema, &table, &err) || !table)
		return;
	char *q = state_table(conn, cfg);
	char *sql = xasprintf("DELETE FROM %s", q);
	PGresult *res = pg_run(conn, sql, 0, NULL, PG_QUERY_MS, -1, &err);
	if (PQresultStatus(res) == PGRES_COMMAND_OK && atoi(PQcmdTuples(res)) > 0)
		log_event(LOG_INFO, "state.cleared", LOG_FIELDS(LF_S("table", q)),
			  "the last failure is forgotten after this success");
	PQclear(res);
	free(sql);
	free(q);
}
