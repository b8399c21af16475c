/* Phase 3: the migration lock, a transaction-level advisory lock on a connection of its own. */
#include "mtr/lock.h"
#include "mtr/log.h"
#include "mtr/retry.h"
#include "mtr/status.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* How long the lock's own round trips (a ping, the final COMMIT) may take. */
#define LOCK_PING_MS 5000
/* How often a waiting replica says who holds the lock. */
#define LOCK_REPORT_MS 5000

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

/* The server's last word on the lock's connection: an ERROR or FATAL that arrives while the
 * transaction is idle (libpq hands it to the notice receiver) says why it is being ended. */
static void keep_last_word(void *arg, const PGresult *res)
{
	struct lock *l = arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (sev && msg && strcmp(sev, "WARNING") != 0 && strcmp(sev, "NOTICE") != 0 && !l->lost[0])
		snprintf(l->lost, sizeof l->lost, "the lock's session was ended: %.400s", msg);
}


enum try_result { TRY_OURS, TRY_TAKEN, TRY_FAILED, TRY_STOPPED };

/* One try on conn: BEGIN, then the lock. TRY_OURS keeps conn in l->conn, its transaction open:
 * that transaction is the lock. An idle-in-transaction timeout of the server must not end it:
 * SET LOCAL, so that nothing leaks into a pooled session. TRY_TAKEN leaves the transaction open
 * (the caller ends it), after saying who holds the lock when it is time to. */
static enum try_result try_on(struct lock *l, PGconn *conn, int stop_fd, struct lock_waiting *w,
			      struct pg_error *err)
{
	char sql[320], got[32];
	do
		l->run_key = (int64_t)random_u64();
	while (l->run_key == l->key);
	/* run_key only once key is ours (CASE evaluates THEN only then), in the same transaction */
	snprintf(sql, sizeof sql,
		 "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; "
		 "SELECT CASE WHEN pg_catalog.pg_try_advisory_xact_lock(%" PRId64 ") "
		 "THEN pg_catalog.pg_try_advisory_xact_lock(%" PRId64 ")::text ELSE 'false' END "
		 "|| ' ' || pg_catalog.pg_backend_pid()",
		 l->key, l->run_key);
	if (!pg_query_value(conn, sql, PG_QUERY_MS, stop_fd, got, sizeof got, err))
		return err->interrupted ? TRY_STOPPED : TRY_FAILED;
	if (strncmp(got, "true ", 5) == 0) {
		PQsetNoticeReceiver(conn, keep_last_word, l);
		l->conn = conn;
		l->backend_pid = atol(got + 5); /* the server's, even through a pooler: pinned */
		return TRY_OURS;
	}
	int64_t now = now_ms();
	if (!w->reported || now >= w->next_report) {
		if (!w->reported)
			status_set(STATUS_LOCKED_OUT, "lock", 1, "another replica holds the migration lock");
		log_holder(conn, l->key, now - w->start);
		w->reported = true;
		w->next_report = now + LOCK_REPORT_MS;
	}
	return TRY_TAKEN;
}

/* Ends the transaction of a try that found the lock taken. */
static void end_try(PGconn *conn, int stop_fd)
{
	struct pg_error ignored;
	if (!pg_command(conn, "ROLLBACK", 0, NULL, PG_QUERY_MS, stop_fd, &ignored)) {
		/* closing the connection ends the transaction just the same */
	}
}

/* One try on a connection of its own, closed unless the lock is ours: cleanly, so that a
 * pooler can hand the server session to someone else. */
static enum try_result try_once(struct lock *l, const struct pg_target *t, int stop_fd,
				int64_t left, struct lock_waiting *w, struct pg_error *err)
{
	enum pg_status st;
	int64_t connect_ms = left < 1000 ? 1000 : left < PG_QUERY_MS ? left : PG_QUERY_MS;
	PGconn *conn = pg_connect(t, connect_ms, stop_fd, &st, err);
	if (!conn)
		return st == PG_INTERRUPTED ? TRY_STOPPED : TRY_FAILED;
	enum try_result r = try_on(l, conn, stop_fd, w, err);
	if (r == TRY_OURS)
		return r;
	if (r == TRY_TAKEN)
		end_try(conn, stop_fd);
	PQfinish(conn);
	return r;
}

static void log_acquired(const char *name, const struct lock_waiting *w)
{
	log_event(w->reported ? LOG_INFO : LOG_DEBUG, "lock.acquired",
		  LOG_FIELDS(LF_I("waited_ms", now_ms() - w->start), LF_S("name", name)),
		  "migration lock acquired");
}

enum lock_status lock_acquire(struct lock *l, const struct pg_target *t, const char *name,
			      int64_t timeout_ms, const struct sigstate *sigs, PGconn **release,
			      int *signo, struct pg_error *err)
{
	memset(l, 0, sizeof *l);
	l->key = lock_key(name);
	int stop_fd = signals_stop_fd();
	struct lock_waiting w = {now_ms(), 0, false, 0};
	struct backoff b;
	backoff_init(&b, 100, 2000, random_u64());
	enum lock_status result;
	/* Before the first try: a session pool the replicas' connections fill would leave no
	 * room for any try, the holder's included. */
	if (release && *release) {
		PQfinish(*release);
		*release = NULL;
	}
	for (;;) {
		int64_t left = w.start + timeout_ms - now_ms();
		enum try_result r = try_once(l, t, stop_fd, left, &w, err);
		if (r == TRY_OURS) {
			log_acquired(name, &w);
			result = LOCK_ACQUIRED;
			break;
		}
		if (r == TRY_FAILED || r == TRY_STOPPED) {
			result = r == TRY_FAILED ? LOCK_LOST : LOCK_INTERRUPTED;
			if (r == TRY_STOPPED)
				*signo = signals_stop_read(stop_fd);
			break;
		}
		left = w.start + timeout_ms - now_ms();
		if (left <= 0) {
			snprintf(err->msg, sizeof err->msg,
				 "the migration lock was still held after %lldms", (long long)timeout_ms);
			result = LOCK_TIMEOUT;
			break;
		}
		int64_t delay = backoff_next(&b);
		int sig = signals_sleep(sigs, delay < left ? delay : left);
		if (sig) {
			*signo = sig;
			result = LOCK_INTERRUPTED;
			break;
		}
	}
	signals_stop_close(stop_fd);
	return result;
}

/* The pause between looks at a lock that another session holds: short while the wait is
 * young (most holders finish within seconds, and a look is one cheap statement on an open
 * connection), then growing to a second. */
#define FREE_LOOK_MS INT64_C(25)
#define FREE_LOOK_MAX_MS INT64_C(1000)
static int64_t free_look_pause(const struct lock_waiting *w, struct backoff *b)
{
	/* Looked again more than twice and still taken (replicas racing, or a session holding the
	 * key shared): no more quick looks, each of which costs a plan. */
	if (now_ms() - w->start < LOCK_REPORT_MS && w->relooks <= 2)
		return FREE_LOOK_MS + (int64_t)(random_u64() % (FREE_LOOK_MS + 1));
	return backoff_next(b);
}

/* Looks at the lock every so often on conn (autocommit: a shared try is granted and released
 * within the statement, and no snapshot stays open that a CREATE INDEX CONCURRENTLY of the
 * holder would wait for) until nobody holds it: LOCK_RELEASED. lock.wait every 5 s. */
static enum lock_status wait_free(struct lock *l, PGconn *conn, int64_t deadline,
				  const struct sigstate *sigs, int stop_fd, struct lock_waiting *w,
				  int *signo, struct pg_error *err)
{
	char sql[120], got[8];
	snprintf(sql, sizeof sql, "SELECT pg_catalog.pg_try_advisory_xact_lock_shared(%" PRId64 ")", l->key);
	struct backoff b;
	backoff_init(&b, FREE_LOOK_MS * 4, FREE_LOOK_MAX_MS, random_u64());
	for (;;) {
		int64_t now = now_ms(), left = deadline - now;
		if (left <= 0) {
			snprintf(err->msg, sizeof err->msg, "the migration lock was still held after %lldms",
				 (long long)(now - w->start));
			return LOCK_TIMEOUT;
		}
		int64_t pause = free_look_pause(w, &b);
		int sig = signals_sleep(sigs, pause < left ? pause : left);
		if (sig) {
			*signo = sig;
			return LOCK_INTERRUPTED;
		}
		if (!pg_query_value(conn, sql, PG_QUERY_MS, stop_fd, got, sizeof got, err)) {
			if (err->interrupted)
				*signo = signals_stop_read(stop_fd);
			return err->interrupted ? LOCK_INTERRUPTED : LOCK_LOST;
		}
		if (strcmp(got, "t") == 0)
			return LOCK_RELEASED;
		if (now_ms() >= w->next_report) {
			log_holder(conn, l->key, now_ms() - w->start);
			w->next_report = now_ms() + LOCK_REPORT_MS;
		}
	}
}

enum lock_status lock_try_or_wait(struct lock *l, PGconn **conn, const char *name,
				  struct lock_waiting *w, int64_t timeout_ms, const struct sigstate *sigs,
				  int *signo, struct pg_error *err)
{
	memset(l, 0, sizeof *l);
	l->key = lock_key(name);
	int stop_fd = signals_stop_fd();
	if (!w->start)
		*w = (struct lock_waiting){now_ms(), 0, false, 0};
	enum lock_status result;
	switch (try_on(l, *conn, stop_fd, w, err)) {
	case TRY_OURS:
		*conn = NULL; /* it is the lock's now */
		log_acquired(name, w);
		result = LOCK_ACQUIRED;
		break;
	case TRY_TAKEN:
		end_try(*conn, stop_fd);
		result = wait_free(l, *conn, w->start + timeout_ms, sigs, stop_fd, w, signo, err);
		if (result == LOCK_RELEASED)
			w->relooks++;
		break;
	case TRY_STOPPED:
		*signo = signals_stop_read(stop_fd);
		result = LOCK_INTERRUPTED;
		break;
	case TRY_FAILED:
	default:
		result = LOCK_LOST;
		break;
	}
	signals_stop_close(stop_fd);
	return result;
}

/* The lock is gone: keep the best reason there is (the server's own words first). */
static bool lost_now(struct lock *l, const char *why)
{
	/* Reading and parsing what arrived hands a FATAL to keep_last_word. */
	if (!l->lost[0] && l->conn) {
		(void)PQconsumeInput(l->conn); /* what came before an end of file is kept */
		(void)PQisBusy(l->conn);
	}
	if (!why && l->conn && *PQerrorMessage(l->conn))
		why = PQerrorMessage(l->conn);
	if (!l->lost[0] && why && *why)
		snprintf(l->lost, sizeof l->lost, "the lock's connection failed: %.400s", why);
	if (!l->lost[0])
		snprintf(l->lost, sizeof l->lost, "the server or a pooler closed the lock's connection");
	/* libpq's messages end in a newline and may hold several lines: one line for the logs */
	size_t n = strlen(l->lost);
	while (n > 0 && (l->lost[n - 1] == '\n' || l->lost[n - 1] == ' '))
		l->lost[--n] = '\0';
	for (char *c = l->lost; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	return false;
}

bool lock_held(struct lock *l, bool round_trip)
{
	if (l->lost[0])
		return false;
	if (!l->conn)
		return lost_now(l, "no lock is held");
	struct pollfd p = {PQsocket(l->conn), POLLIN, 0};
	if (p.fd < 0 || poll(&p, 1, 0) != 0) /* readable, hung up, or broken */
		return lost_now(l, NULL);
	if (!round_trip)
		return true;
	struct pg_error err;
	char one[4];
	if (!pg_query_value(l->conn, "SELECT 1", LOCK_PING_MS, -1, one, sizeof one, &err))
		return lost_now(l, err.msg);
	if (PQtransactionStatus(l->conn) != PQTRANS_INTRANS)
		return lost_now(l, "its transaction is no longer open");
	return true;
}

int lock_watch_fd(const struct lock *l, int stop_fd)
{
	if (!l || !l->conn || PQsocket(l->conn) < 0)
		return -1;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -1;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = PQsocket(l->conn)};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
		goto fail;
	ev.events = EPOLLIN;
	ev.data.fd = stop_fd;
	if (stop_fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev) < 0)
		goto fail;
	return ep;
fail:
	close(ep);
	return -1;
}

bool lock_release(struct lock *l)
{
	if (!l->conn)
		return !l->lost[0];
	bool held = lock_held(l, false);
	if (held && PQtransactionStatus(l->conn) != PQTRANS_INTRANS)
		held = lost_now(l, "its transaction is no longer open");
	if (held) {
		/* A transaction that failed meanwhile answers COMMIT with ROLLBACK: read the tag. */
		struct pg_error err;
		PGresult *res = pg_run(l->conn, "COMMIT", 0, NULL, LOCK_PING_MS, -1, &err);
		held = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
		if (!held)
			snprintf(l->lost, sizeof l->lost, "the lock's transaction did not commit: %.400s",
				 res && !err.msg[0] ? PQcmdStatus(res) : err.msg);
		PQclear(res);
	}
	PQfinish(l->conn);
	l->conn = NULL;
	return held;
}

char *lock_fence_sql(const struct lock *l)
{
	if (!l || !l->conn || l->backend_pid <= 0)
		return NULL;
	/* Granted shared only when no session holds run_key: the lock's transaction has ended. */
	return xasprintf(
		"DO $mtr_fence$ BEGIN IF pg_catalog.pg_try_advisory_xact_lock_shared(%" PRId64 ") "
		"THEN RAISE EXCEPTION "
		"'the migration lock is no longer held by this run (its session, pid %ld, ended)' "
		"USING ERRCODE = '" LOCK_FENCE_STATE "'; END IF; END $mtr_fence$",
		l->run_key, l->backend_pid);
}
