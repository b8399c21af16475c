/* PostgreSQL connections through libpq, and what their failures mean. */
#ifndef MTR_PG_H
#define MTR_PG_H

#include "mtr/util.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a failure means for the caller's retry loop and exit code. */
enum pg_status {
	PG_OK,
	PG_TRANSIENT,   /* not up yet, starting, in recovery, too many clients, network: retry */
	PG_AUTH,        /* authentication or authorization refused: permanent (77) */
	PG_NO_DATABASE, /* the target database does not exist: permanent (69) */
	PG_CONFIG,      /* malformed URL or connection option: permanent (64) */
	PG_INTERRUPTED, /* the caller's cancel descriptor became readable */
	PG_TIMEOUT      /* internal: the attempt's own deadline passed (reported as transient) */
};

struct pg_target {
	const char *url;      /* URL or conninfo; NULL for libpq's PG* variables */
	const char *password; /* from PGPASSWORD_FILE, NULL otherwise */
};

struct pg_error {
	char msg[1024];
	char sqlstate[6];
	bool interrupted; /* the stop descriptor fired (a cancel was sent) */
	bool timed_out;   /* the deadline passed before the server answered */
};

/* Checks the URL/conninfo for syntax without connecting. */
enum pg_status pg_check_target(const struct pg_target *t, struct pg_error *err) MTR_MUST_CHECK;

/* Connects (application_name=migrate-then-run) within
 * timeout_ms; gives up with PG_INTERRUPTED as soon as cancel_fd (if >= 0) is
 * readable. Returns the connection (caller PQfinish-es) or NULL with *st and err set. */
PGconn *pg_connect(const struct pg_target *t, int64_t timeout_ms, int cancel_fd,
		   enum pg_status *st, struct pg_error *err) MTR_MUST_CHECK;

/* Classifies a failed connection by libpq's message (libpq exposes no SQLSTATE for it). */
enum pg_status pg_classify_connect_error(const char *msg, bool needs_password);

/* Whether a query failure's SQLSTATE is transient (class 08, 53, 57P01-57P03, 40001, 40P01,
 * 55P03). NULL or empty sqlstate (no answer at all) counts as transient. */
bool pg_sqlstate_is_transient(const char *sqlstate);

/* The deadline of the tool's own small queries (bookkeeping, lock polls, probes). */
#define PG_QUERY_MS 30000

/* The one way to run a query (make lint: no libpq query call outside pg.c). Sends sql, with
 * nparams text parameters (0: the simple protocol, several statements allowed), and waits
 * for all of it until timeout_ms passes (-1: no deadline of ours, for a migration's own text:
 * statement_timeout and the stop descriptor bound it) or stop_fd (if >= 0) turns readable.
 * A stop sends a cancel and waits a few seconds more for the server's error
 * (err->interrupted). Returns the first failed statement's result or the last one (caller
 * PQclears), with err filled (message, SQLSTATE) when that result is an error; NULL with err
 * when no answer came (deadline, stop, broken connection): the connection is then unusable.
 * Queries name pg_catalog objects explicitly: no search_path is assumed. */
PGresult *pg_run(PGconn *conn, const char *sql, int nparams, const char *const *params,
		 int64_t timeout_ms, int stop_fd, struct pg_error *err) MTR_MUST_CHECK;

/* Whether conn can take another query: connected, and not still busy with one that was given
 * up on (a deadline passed). A connection that is not usable is finished and made again. */
bool pg_usable(PGconn *conn);

/* The process is stopping (a stop signal was taken, the tool exits): from now on pg_run and
 * pg_connect return at once as interrupted, so that cleanup (a lock's COMMIT, a record)
 * never waits for a server that may be silent; closing the connection ends the session. */
void pg_stopping(void);

/* pg_run for a statement whose result is only success or failure; false too when a stop
 * signal arrived meanwhile (err->interrupted). */
bool pg_command(PGconn *conn, const char *sql, int nparams, const char *const *params,
		int64_t timeout_ms, int stop_fd, struct pg_error *err) MTR_MUST_CHECK;

/* pg_run for a query that must return one row: its first column is copied into out. False
 * when a stop signal arrived meanwhile (err->interrupted), even if the answer came. */
bool pg_query_value(PGconn *conn, const char *sql, int64_t timeout_ms, int cancel_fd, char *out,
		    size_t outlen, struct pg_error *err) MTR_MUST_CHECK;

/* A postgresql:// URL equivalent to the open connection, for tools that want one (caller
 * frees): host, port, user, password, database, and every other non-default setting as a
 * query parameter (sslmode, target_session_attrs …). */
char *pg_conn_url(PGconn *conn);

#endif
