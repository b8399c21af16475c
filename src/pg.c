/* PostgreSQL connections through libpq, and what their failures mean. */
#include "mtr/pg.h"
#include "mtr/bounded.h"
#include "mtr/pg_target.h"
#include "mtr/resolve.h"
#include "mtr/signals.h"
#include "mtr/strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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
		*w++ = (char)(blank ? ' ' : *r);
	}
	*w = '\0';
	err->sqlstate[0] = '\0';
}

/* libpq's parse errors quote the offending text, which may be (part of) a password written
 * where a URL belongs: hide every quoted value that is not a connection keyword. */
static void mask_quoted(struct pg_error *err)
{
	PQconninfoOption *kw = PQconndefaults();
	char out[sizeof err->msg];
	size_t o = 0;
	const char *p = err->msg;
	while (*p && o + 8 < sizeof out) {
		const char *close = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (!close) {
			out[o++] = *p++;
			continue;
		}
		size_t len = (size_t)(close - p - 1);
		bool keyword = len <= 1; /* "=" and the like say where, not what */
		for (PQconninfoOption *k = kw; k && k->keyword && !keyword; k++)
			keyword = strlen(k->keyword) == len && strncmp(k->keyword, p + 1, len) == 0;
		int n = keyword ? snprintf(out + o, sizeof out - o, "\"%.*s\"", (int)len, p + 1)
				: snprintf(out + o, sizeof out - o, "\"***\"");
		o += (size_t)n < sizeof out - o ? (size_t)n : sizeof out - o - 1;
		p = close + 1;
	}
	out[o] = '\0';
	snprintf(err->msg, sizeof err->msg, "%s", out);
	PQconninfoFree(kw);
}

enum pg_status pg_check_target(const struct pg_target *t, struct pg_error *err)
{
	memset(err, 0, sizeof *err);
	char *perr = NULL;
	PQconninfoOption *opts = t->url ? PQconninfoParse(t->url, &perr) : NULL;
	if (t->url && !opts) {
		copy_msg(err, perr ? perr : "cannot parse the database URL");
		mask_quoted(err);
		PQfreemem(perr);
		return PG_CONFIG;
	}
	PQconninfoFree(opts);
	/* What libpq would only find while connecting, or never (connect_timeout=abc). */
	struct pg_hosts hosts;
	enum pg_status st = pg_hosts_plan(t, &hosts, err);
	pg_hosts_free(&hosts);
	return st;
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
		"unterminated quoted string", "invalid percent-encoded token", "invalid value for parameter",
		/* TLS verification: waiting will not make a certificate match */
		"certificate verify failed", "does not match host name", "root certificate file",
		"could not read root certificate", "certificate present, but not private key",
		/* client certificate and key files, and settings libpq checks while connecting */
		"has group or world access", "could not open certificate file",
		"could not read certificate file", "could not load private key file",
		"could not open private key file", "is not a regular file",
		"invalid target_session_attrs value", "invalid gssencmode value",
		"invalid channel_binding value", "invalid ssl_min_protocol_version value",
		"invalid ssl_max_protocol_version value", "invalid SSL protocol version range",
		"could not match", "invalid integer value"};
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

/* The process's stop signals as a descriptor, for callers that pass none of their own: every
 * round trip yields to SIGTERM. Opened once, never read (the signal stays pending for the
 * pipeline's own wait to take). */
static int g_own_stop_fd = -1;

static void open_own_stop_fd(void)
{
	g_own_stop_fd = signals_stop_fd();
}

static int default_stop_fd(int fd)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT; /* a watcher thread may connect too */
	if (fd >= 0)
		return fd;
	pthread_once(&once, open_own_stop_fd);
	return g_own_stop_fd;
}

/* Set once the process is stopping (pg_stopping): no round trip starts after that. */
static atomic_bool g_stopping;

void pg_stopping(void)
{
	atomic_store(&g_stopping, true);
}

static bool stop_pending(int stop_fd)
{
	struct pollfd p = {stop_fd, POLLIN, 0};
	return atomic_load(&g_stopping) ||
	       (stop_fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN));
}

/* TCP keepalives, unless the URL sets its own (it comes later in the keyword list and wins):
 * a peer that vanishes while we wait for an answer is noticed in about 15 s, not hours. */
static const char *const keepalive_keys[] = {"keepalives", "keepalives_idle", "keepalives_interval",
					     "keepalives_count", "tcp_user_timeout"};
static const char *const keepalive_vals[] = {"1", "5", "2", "3", "15000"};

/* Which host one attempt goes to: host (kept for TLS, SNI and messages), hostaddr (what our
 * lookup found) and port override the target's lists; NULL leaves the target's setting. */
struct one_host {
	const char *host, *hostaddr, *port, *session_attrs;
};

/* One connection attempt to one host within timeout_ms. */
static PGconn *connect_one(const struct pg_target *t, const struct one_host *h, int64_t timeout_ms,
			   int cancel_fd, enum pg_status *st, struct pg_error *err)
{
	const char *keys[16], *vals[16];
	int n = 0;
	for (size_t i = 0; i < sizeof keepalive_keys / sizeof keepalive_keys[0]; i++) {
		keys[n] = keepalive_keys[i];
		vals[n++] = keepalive_vals[i];
	}
	/* A password from PGPASSWORD_FILE comes first, so that one written in the URL wins, as
	 * PGPASSWORD would; application_name comes after the URL, so that ours holds. */
	if (t->password) {
		keys[n] = "password";
		vals[n++] = t->password;
	}
	keys[n] = "dbname";
	vals[n++] = t->url ? t->url : "";
	const char *over_k[] = {"host", "hostaddr", "port", "target_session_attrs"};
	const char *over_v[] = {h->host, h->hostaddr, h->port, h->session_attrs};
	for (size_t i = 0; i < sizeof over_k / sizeof over_k[0]; i++) {
		if (!over_v[i])
			continue;
		keys[n] = over_k[i];
		vals[n++] = over_v[i];
	}
	keys[n] = "application_name";
	vals[n++] = "migrate-then-run";
	keys[n] = NULL;
	vals[n] = NULL;
	/* With no URL, an empty dbname lets libpq fall back to PGDATABASE and its defaults.
	 * Non-blocking, so that a stop signal or the deadline ends a connect in progress. */
	PGconn *conn = PQconnectStartParams(keys, vals, t->url ? 1 : 0);
	if (!conn)
		die_oom();
	*st = PQstatus(conn) == CONNECTION_BAD ? PG_TRANSIENT
					       : connect_poll(conn, timeout_ms, cancel_fd, err);
	if (*st == PG_OK && PQstatus(conn) == CONNECTION_OK && PQsetnonblocking(conn, 1) == 0)
		return conn;
	if (*st == PG_OK || *st == PG_TRANSIENT) {
		const char *msg = PQerrorMessage(conn);
		copy_msg(err, msg);
		*st = pg_classify_connect_error(msg, PQconnectionNeedsPassword(conn));
		if (*st == PG_CONFIG)
			mask_quoted(err);
	}
	PQfinish(conn);
	return NULL;
}

/* The multi-host walk: each host (each address of a name) gets its share of the time left,
 * capped by connect_timeout, so that a black-holed host cannot use up the time of the next
 * one; a refusal that another host would repeat (authentication, configuration, no such
 * database) ends it, as it ends libpq's. */
struct walk {
	const struct pg_target *t;
	const struct pg_hosts *hosts;
	int64_t deadline;
	int stop_fd;
	const char *session_attrs; /* a pass's override (prefer-standby), or NULL */
	struct strbuf msgs;         /* every host's failure, for the last error */
	enum pg_status st;
};

/* One address (or one host libpq finds itself); units: attempts left, this one included. */
static PGconn *walk_try(struct walk *w, const struct pg_host *h, const char *addr, size_t units)
{
	int64_t left = w->deadline - now_ms();
	int64_t share = left / (int64_t)(units ? units : 1);
	if (w->hosts->per_host_ms > 0 && share > w->hosts->per_host_ms)
		share = w->hosts->per_host_ms;
	if (share < 100)
		share = left < 100 ? left : 100;
	struct one_host one = {h->host, addr ? addr : h->hostaddr, h->port, w->session_attrs};
	struct pg_error err = {0};
	enum pg_status st = PG_TIMEOUT;
	PGconn *conn = share > 0 ? connect_one(w->t, &one, share, w->stop_fd, &st, &err) : NULL;
	if (conn)
		return conn;
	if (w->msgs.len)
		sb_adds(&w->msgs, "; ");
	if (st != PG_TIMEOUT) {
		sb_adds(&w->msgs, err.msg);
	} else { /* in libpq's words, which name the host */
		sb_addf(&w->msgs, "connection to server at \"%s\"", h->host ? h->host : "localhost");
		if (addr)
			sb_addf(&w->msgs, " (%s)", addr);
		if (h->port)
			sb_addf(&w->msgs, ", port %s", h->port);
		sb_addf(&w->msgs, " failed: timeout expired after %lldms", (long long)share);
	}
	w->st = st == PG_TIMEOUT ? PG_TRANSIENT : st;
	return NULL;
}

/* Host i: looked up (with its share of the time) and tried address by address. */
static PGconn *walk_host(struct walk *w, size_t i)
{
	const struct pg_host *h = &w->hosts->v[i];
	size_t later = w->hosts->n - i - 1;
	if (!h->lookup)
		return walk_try(w, h, NULL, later + 1);
	struct resolve_result r;
	char msg[512];
	int64_t left = w->deadline - now_ms();
	enum resolve_status rs = resolve_host(h->host, left / (int64_t)(later + 1), w->stop_fd, &r,
					      msg, sizeof msg);
	if (rs != RESOLVE_OK) {
		if (w->msgs.len)
			sb_adds(&w->msgs, "; ");
		sb_adds(&w->msgs, msg);
		w->st = rs == RESOLVE_INTERRUPTED ? PG_INTERRUPTED : PG_TRANSIENT;
		return NULL;
	}
	PGconn *conn = NULL;
	for (size_t k = 0; k < r.n && !conn; k++) {
		conn = walk_try(w, h, r.addr[k], r.n - k + later);
		if (!conn && w->st != PG_TRANSIENT)
			break;
	}
	return conn;
}

PGconn *pg_connect(const struct pg_target *t, int64_t timeout_ms, int cancel_fd,
		   enum pg_status *st, struct pg_error *err)
{
	memset(err, 0, sizeof *err);
	struct pg_hosts hosts;
	cancel_fd = default_stop_fd(cancel_fd);
	if (atomic_load(&g_stopping)) {
		copy_msg(err, "interrupted before connecting");
		*st = PG_INTERRUPTED;
		return NULL;
	}
	*st = pg_hosts_plan(t, &hosts, err);
	if (*st != PG_OK) {
		pg_hosts_free(&hosts);
		return NULL;
	}
	struct walk w = {t, &hosts, now_ms() + timeout_ms, cancel_fd, NULL, STRBUF_INIT, PG_TRANSIENT};
	PGconn *conn = NULL;
	if (hosts.as_given) {
		struct pg_host all = {0};
		conn = walk_try(&w, &all, NULL, 1);
	}
	/* prefer-standby: a pass that takes only a standby, then one that takes any server. */
	for (int pass = 0; !hosts.as_given && !conn && pass < (hosts.prefer_standby ? 2 : 1); pass++) {
		w.session_attrs = hosts.prefer_standby ? (pass == 0 ? "standby" : "any") : NULL;
		for (size_t i = 0; i < hosts.n && !conn; i++) {
			conn = walk_host(&w, i);
			if (!conn && w.st != PG_TRANSIENT)
				break;
		}
		if (w.st != PG_TRANSIENT)
			break;
	}
	if (!conn) {
		copy_msg(err, w.msgs.s ? w.msgs.s : "could not connect");
		*st = w.st;
	}
	sb_free(&w.msgs);
	pg_hosts_free(&hosts);
	return conn;
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

static void cancel_send(void *c)
{
	char buf[256];
	(void)PQcancel(c, buf, sizeof buf);
}

static void cancel_free(void *c)
{
	PQfreeCancel(c);
}

/* Asks the server to cancel what conn is running (best effort: it may have finished).
 * PQcancel connects and sends with no deadline of its own: it runs on a thread with its own
 * copy of the cancel key, and the caller waits for it at most wait_ms. */
static void cancel_query(PGconn *conn, int64_t wait_ms)
{
	PGcancel *c = PQgetCancel(conn);
	if (!c)
		return;
	switch (bounded_call(cancel_send, c, cancel_free, wait_ms, -1)) {
	case BOUNDED_DONE:
	case BOUNDED_NO_THREAD: /* no thread: no cancel; the server ends it when we close */
		PQfreeCancel(c);
		break;
	case BOUNDED_TIMEOUT:
	case BOUNDED_INTERRUPTED:
		break; /* the thread frees c */
	}
}

/* How long a statement we were asked to stop may take to send its error back (the cancel's
 * own sending included) before the connection is given up on: the server rolls back either
 * way, and a stop must end the tool within a second even when the server is silent. */
#define PG_STOP_GRACE_MS 500
/* The cancel sent when our own deadline passed: as long as it may take to be sent. */
#define PG_CANCEL_MS 1000

/* Waits until conn has a whole result, the deadline passes (-1: none) or stop_fd turns
 * readable; the first stop sends a cancel and then waits PG_STOP_GRACE_MS more. True when a
 * result can be read without blocking; false with err when the connection was given up on. */
static bool wait_result(PGconn *conn, int64_t deadline, int stop_fd, struct pg_error *err)
{
	while (PQisBusy(conn)) {
		int64_t left = poll_ms_until(deadline);
		struct pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {stop_fd, POLLIN, 0}};
		bool watch_stop = stop_fd >= 0 && !err->interrupted;
		int n = left != 0 ? poll(fds, watch_stop ? 2 : 1, (int)left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			if (!err->interrupted)
				cancel_query(conn, PG_CANCEL_MS);
			copy_msg(err, err->interrupted ? "interrupted while waiting for the server"
						       : "the server did not answer in time");
			err->timed_out = !err->interrupted;
			return false;
		}
		if (watch_stop && (fds[1].revents & POLLIN)) {
			/* The server ends the statement and rolls its transaction back; its error is
			 * still read, so the connection stays usable. */
			int64_t grace = now_ms() + PG_STOP_GRACE_MS;
			cancel_query(conn, PG_STOP_GRACE_MS);
			err->interrupted = true;
			deadline = grace;
		}
		if (n < 0 || ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(conn)))
			return true; /* PQgetResult reports the broken connection */
	}
	return true;
}

/* Sends what libpq buffered (a migration's text may be larger than the socket's buffer; a
 * blocking send to a silent server would never return), reading meanwhile as libpq asks. */
static bool flush_query(PGconn *conn, int64_t deadline, int stop_fd, struct pg_error *err)
{
	int f;
	while ((f = PQflush(conn)) == 1) {
		int64_t left = poll_ms_until(deadline);
		struct pollfd fds[2] = {{PQsocket(conn), POLLIN | POLLOUT, 0}, {stop_fd, POLLIN, 0}};
		int n = left != 0 ? poll(fds, stop_fd >= 0 ? 2 : 1, (int)left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (stop_fd >= 0 && (fds[1].revents & POLLIN))) {
			/* Not all of it reached the server: nothing of it runs; the connection is dropped. */
			copy_msg(err, n ? "interrupted while sending to the server"
					: "the server did not take the query in time");
			err->interrupted = n != 0;
			err->timed_out = n == 0;
			return false;
		}
		if ((fds[0].revents & POLLIN) && !PQconsumeInput(conn))
			break;
	}
	if (f < 0) {
		copy_msg(err, PQerrorMessage(conn));
		return false;
	}
	return true;
}

PGresult *pg_run(PGconn *conn, const char *sql, int nparams, const char *const *params,
		 int64_t timeout_ms, int stop_fd, struct pg_error *err)
{
	memset(err, 0, sizeof *err);
	stop_fd = default_stop_fd(stop_fd);
	if (stop_pending(stop_fd)) { /* stopping: no new round trip */
		copy_msg(err, "interrupted before the query was sent");
		err->interrupted = true;
		return NULL;
	}
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int sent = PQsetnonblocking(conn, 1) == 0 &&
		   (nparams > 0 ? PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)
				: PQsendQuery(conn, sql));
	if (!sent) {
		copy_msg(err, PQerrorMessage(conn));
		return NULL;
	}
	if (!flush_query(conn, deadline, stop_fd, err))
		return NULL;
	PGresult *keep = NULL;
	for (;;) {
		if (!wait_result(conn, deadline, stop_fd, err)) {
			PQclear(keep);
			return NULL;
		}
		PGresult *r = PQgetResult(conn);
		if (!r)
			break;
		/* One result per statement; after an error the rest are not run. Keep the error. */
		if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			PQclear(keep);
			keep = r;
		}
		if (PQstatus(conn) == CONNECTION_BAD)
			break;
	}
	if (!keep)
		keep = PQmakeEmptyPGresult(conn, PGRES_EMPTY_QUERY);
	if (!keep)
		die_oom();
	ExecStatusType st = PQresultStatus(keep);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		bool interrupted = err->interrupted;
		const char *msg = PQresultErrorMessage(keep);
		copy_msg(err, msg && *msg ? msg : PQerrorMessage(conn));
		const char *state = PQresultErrorField(keep, PG_DIAG_SQLSTATE);
		snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
		err->interrupted = interrupted;
	}
	return keep;
}

bool pg_usable(PGconn *conn)
{
	PGTransactionStatusType t = PQtransactionStatus(conn);
	return PQstatus(conn) == CONNECTION_OK && t != PQTRANS_ACTIVE && t != PQTRANS_UNKNOWN;
}

bool pg_command(PGconn *conn, const char *sql, int nparams, const char *const *params,
		int64_t timeout_ms, int stop_fd, struct pg_error *err)
{
	PGresult *res = pg_run(conn, sql, nparams, params, timeout_ms, stop_fd, err);
	ExecStatusType st = PQresultStatus(res);
	/* A stop signal wins over an answer that raced it: the caller must stop, not go on. */
	bool ok = res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) && !err->interrupted;
	PQclear(res);
	return ok;
}

bool pg_query_value(PGconn *conn, const char *sql, int64_t timeout_ms, int cancel_fd, char *out,
		    size_t outlen, struct pg_error *err)
{
	PGresult *res = pg_run(conn, sql, 0, NULL, timeout_ms, cancel_fd, err);
	bool ok = false;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || err->interrupted)
		goto fail; /* a stop signal wins over an answer that raced it */
	if (PQntuples(res) != 1 || PQnfields(res) < 1) {
		copy_msg(err, "query returned an unexpected shape");
		goto fail;
	}
	snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
	ok = true;
fail:
	PQclear(res);
	return ok;
}

/* Appends s, percent-encoded unless raw (RFC 3986 unreserved characters are kept). */
static void url_add(struct strbuf *b, const char *s, bool raw)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (raw || isalnum(c) || strchr("-._~", c))
			sb_addc(b, (char)c);
		else
			sb_addf(b, "%%%02X", c);
	}
}

/* Keywords that live in the URL's authority and path, or that are ours, not the user's. */
static bool url_skip(const char *kw)
{
	static const char *const skip[] = {"host", "port", "user", "password", "dbname",
					   "application_name", "fallback_application_name"};
	for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
		if (strcmp(kw, skip[i]) == 0)
			return true;
	return false;
}

char *pg_conn_url(PGconn *conn)
{
	struct strbuf b = STRBUF_INIT;
	const char *host = PQhost(conn), *port = PQport(conn), *user = PQuser(conn);
	const char *pass = PQpass(conn), *db = PQdb(conn);
	bool socket = host && host[0] == '/';
	url_add(&b, "postgresql://", true);
	url_add(&b, user ? user : "", false);
	if (pass && *pass) {
		url_add(&b, ":", true);
		url_add(&b, pass, false);
	}
	url_add(&b, "@", true);
	if (host && !socket && strchr(host, ':')) {
		url_add(&b, "[", true); /* an IPv6 literal */
		url_add(&b, host, true);
		url_add(&b, "]", true);
	} else if (host && !socket) {
		url_add(&b, host, false);
	}
	if (port && *port) {
		url_add(&b, ":", true);
		url_add(&b, port, false);
	}
	url_add(&b, "/", true);
	url_add(&b, db ? db : "", false);
	char sep = '?';
	if (socket) {
		url_add(&b, "?host=", true);
		url_add(&b, host, false);
		sep = '&';
	}
	/* Every other setting in force that is not libpq's built-in default: sslmode,
	 * sslrootcert, target_session_attrs, options … — the tool must connect as we did. */
	PQconninfoOption *opts = PQconninfo(conn);
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val || !*o->val || url_skip(o->keyword) || strchr(o->dispchar, 'D'))
			continue;
		if (o->compiled && strcmp(o->val, o->compiled) == 0)
			continue;
		char s2[2] = {sep, '\0'};
		url_add(&b, s2, true);
		url_add(&b, o->keyword, true);
		url_add(&b, "=", true);
		url_add(&b, o->val, false);
		sep = '&';
	}
	PQconninfoFree(opts);
	return sb_take(&b);
}
