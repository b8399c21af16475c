/* PostgreSQL connections through libpq, and what their failures mean. */
#include "mtr/pg.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy_msg(struct pg_error *err, const char *msg)
{
	if (!err)
		return;
	size_t n = strlen(msg ? msg : "");
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	snprintf(err->msg, sizeof err->msg, "%.*s", (int)n, msg ? msg : "");
	/* libpq's multi-line messages read better on one line in logs: collapse "\n\t" runs. */
	char *w = err->msg;
	for (const char *r = err->msg; *r; r++) {
		bool blank = *r == '\n' || *r == '\t' || *r == ' ';
		if (blank && (w == err->msg || w[-1] == ' '))
			continue;
		*w++ = blank ? ' ' : *r;
	}
	*w = '\0';
	err->sqlstate[0] = '\0';
}

enum pg_status pg_check_target(const struct pg_target *t, struct pg_error *err)
{
	if (!t->url)
		return PG_OK;
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(t->url, &perr);
	if (!opts) {
		copy_msg(err, perr ? perr : "cannot parse the database URL");
		PQfreemem(perr);
		return PG_CONFIG;
	}
	PQconninfoFree(opts);
	return PG_OK;
}

enum pg_status pg_classify_connect_error(const char *msg, bool needs_password)
{
	static const char *const auth[] = {
		"authentication failed", "no password supplied", "pg_hba.conf rejects",
		"no pg_hba.conf entry", "permission denied for database", "password is required",
		"must be superuser", "not permitted to log in", "SCRAM authentication"};
	static const char *const config[] = {
		"invalid connection option", "invalid URI", "missing \"=\" after", "invalid port number",
		"invalid sslmode value", "invalid integer value", "does not support SSL, but SSL was required",
		"unterminated quoted string", "invalid percent-encoded token", "invalid value for parameter"};
	if (needs_password)
		return PG_AUTH;
	if (!msg)
		return PG_TRANSIENT;
	/* role "x" does not exist is an authentication failure (28000), database "x" is not. */
	if (strstr(msg, "role \"") && strstr(msg, "\" does not exist"))
		return PG_AUTH;
	if (strstr(msg, "database \"") && strstr(msg, "\" does not exist"))
		return PG_NO_DATABASE;
	for (size_t i = 0; i < sizeof auth / sizeof auth[0]; i++)
		if (strstr(msg, auth[i]))
			return PG_AUTH;
	for (size_t i = 0; i < sizeof config / sizeof config[0]; i++)
		if (strstr(msg, config[i]))
			return PG_CONFIG;
	/* Refused, unreachable, unresolvable (DNS not ready yet), starting up, shutting down,
	 * in recovery, too many clients, timeouts: all may pass. */
	return PG_TRANSIENT;
}

/* Drives a non-blocking connection to completion, the deadline, or cancel_fd turning readable. */
static enum pg_status connect_poll(PGconn *conn, int64_t timeout_ms, int cancel_fd,
				   struct pg_error *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	for (;;) {
		if (st == PGRES_POLLING_OK)
			return PG_OK;
		if (st == PGRES_POLLING_FAILED)
			return PG_TRANSIENT; /* classified by the caller from the message */
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			copy_msg(err, "timeout expired while connecting");
			return PG_TIMEOUT;
		}
		struct pollfd fds[2] = {
			{PQsocket(conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0},
			{cancel_fd, POLLIN, 0}};
		int n = poll(fds, cancel_fd >= 0 ? 2 : 1, (int)left);
		if (n < 0 && errno != EINTR) {
			copy_msg(err, strerror(errno));
			return PG_TRANSIENT;
		}
		if (cancel_fd >= 0 && (fds[1].revents & POLLIN)) {
			copy_msg(err, "interrupted while connecting");
			return PG_INTERRUPTED;
		}
		if (n > 0)
			st = PQconnectPoll(conn);
	}
}

PGconn *pg_connect(const struct pg_target *t, int64_t timeout_ms, int cancel_fd,
		   enum pg_status *st, struct pg_error *err)
{
	const char *keys[8], *vals[8];
	int n = 0;
	/* Later keywords override the expanded URL: ours are the ones that must hold. */
	keys[n] = "dbname";
	vals[n++] = t->url ? t->url : "";
	if (t->password) {
		keys[n] = "password";
		vals[n++] = t->password;
	}
	keys[n] = "application_name";
	vals[n++] = "migrate-then-run";
	keys[n] = "options";
	vals[n++] = "-c search_path=pg_catalog";
	keys[n] = NULL;
	vals[n] = NULL;
	/* With no URL, an empty dbname lets libpq fall back to PGDATABASE and its defaults.
	 * Non-blocking, so that a stop signal or the deadline ends a connect in progress. */
	PGconn *conn = PQconnectStartParams(keys, vals, t->url ? 1 : 0);
	if (!conn) {
		copy_msg(err, "out of memory");
		*st = PG_TRANSIENT;
		return NULL;
	}
	*st = PQstatus(conn) == CONNECTION_BAD ? PG_TRANSIENT
					       : connect_poll(conn, timeout_ms, cancel_fd, err);
	if (*st == PG_OK && PQstatus(conn) == CONNECTION_OK)
		return conn;
	if (*st == PG_TRANSIENT) {
		const char *msg = PQerrorMessage(conn);
		copy_msg(err, msg);
		*st = pg_classify_connect_error(msg, PQconnectionNeedsPassword(conn));
	} else if (*st == PG_TIMEOUT) {
		*st = PG_TRANSIENT;
	}
	PQfinish(conn);
	return NULL;
}

bool pg_sqlstate_is_transient(const char *s)
{
	if (!s || !*s)
		return true;
	static const char *const exact[] = {"57P01", "57P02", "57P03", "40001", "40P01", "55P03"};
	if (strncmp(s, "08", 2) == 0 || strncmp(s, "53", 2) == 0)
		return true;
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
		if (strcmp(s, exact[i]) == 0)
			return true;
	return false;
}

bool pg_query_value(PGconn *conn, const char *sql, int col, char *out, size_t outlen,
		    struct pg_error *err)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		copy_msg(err, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		if (err)
			snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
		goto fail;
	}
	if (PQntuples(res) != 1 || PQnfields(res) <= col) {
		copy_msg(err, "query returned an unexpected shape");
		goto fail;
	}
	snprintf(out, outlen, "%s", PQgetvalue(res, 0, col));
	ok = true;
fail:
	PQclear(res);
	return ok;
}

struct urlbuf {
	char *p;
	size_t len, cap;
};

/* Appends s, percent-encoded unless raw (RFC 3986 unreserved characters are kept). */
static void url_add(struct urlbuf *b, const char *s, bool raw)
{
	for (; *s; s++) {
		if (b->len + 4 > b->cap) {
			b->cap = b->cap * 2 + 64;
			b->p = xrealloc(b->p, b->cap);
		}
		unsigned char c = (unsigned char)*s;
		if (raw || isalnum(c) || strchr("-._~", c))
			b->p[b->len++] = (char)c;
		else
			b->len += (size_t)snprintf(b->p + b->len, 4, "%%%02X", c);
	}
	b->p[b->len] = '\0';
}

char *pg_conn_url(PGconn *conn)
{
	struct urlbuf b = {xmalloc(64), 0, 64};
	const char *host = PQhost(conn), *port = PQport(conn), *user = PQuser(conn);
	const char *pass = PQpass(conn), *db = PQdb(conn);
	bool socket = host && host[0] == '/';
	b.p[0] = '\0';
	url_add(&b, "postgresql://", true);
	url_add(&b, user ? user : "", false);
	if (pass && *pass) {
		url_add(&b, ":", true);
		url_add(&b, pass, false);
	}
	url_add(&b, "@", true);
	if (host && !socket)
		url_add(&b, host, false);
	if (port && *port) {
		url_add(&b, ":", true);
		url_add(&b, port, false);
	}
	url_add(&b, "/", true);
	url_add(&b, db ? db : "", false);
	if (socket) {
		url_add(&b, "?host=", true);
		url_add(&b, host, false);
	}
	return b.p;
}
