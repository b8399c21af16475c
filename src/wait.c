/* Phase 2: wait until PostgreSQL accepts an authenticated connection and is not in recovery. */
#include "mtr/wait.h"
#include "mtr/http.h"
#include "mtr/log.h"
#include "mtr/retry.h"
#include "mtr/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The readiness check's own column: empty while in recovery, else the postmaster's start time. */
#define READY_COLUMN                                                                              \
	"CASE WHEN pg_catalog.pg_is_in_recovery() THEN '' "                                       \
	"ELSE pg_catalog.pg_postmaster_start_time()::pg_catalog.text END"

/* Whether a refused first look is worth asking again without its columns: the server answered
 * (a privilege, a setting), and the readiness check alone is not what it refused. */
static bool look_refused(const PGresult *res, const struct pg_error *e)
{
	const char *st = e->sqlstate;
	return res && PQresultStatus(res) == PGRES_FATAL_ERROR && !e->interrupted && st[0] &&
	       strncmp(st, "08", 2) != 0 && strncmp(st, "57P", 3) != 0 && strncmp(st, "53", 2) != 0;
}

/* The readiness check in one round trip, with the first look's columns when there is one;
 * false with r->last when no row came. Should the server refuse the look's columns, the check
 * is asked alone and the look stays unanswered (the plan asks for itself). */
static bool ask_ready(PGconn *conn, const char *sql, struct look *look, int64_t timeout_ms,
		      int stop_fd, struct wait_result *r)
{
	if (look)
		look_answer(look, NULL); /* an earlier attempt's answer is not this server's */
	PGresult *res = pg_run(conn, sql, look ? look->nparams : 0,
			       look ? (const char *const *)look->params : NULL, timeout_ms, stop_fd, &r->last);
	if (look && look_refused(res, &r->last)) {
		PQclear(res);
		look = NULL;
		res = pg_run(conn, "SELECT " READY_COLUMN, 0, NULL, timeout_ms, stop_fd, &r->last);
	}
	/* pg_run says why when no answer came or the server refused; a stop signal wins. */
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && !r->last.interrupted;
	if (ok && PQntuples(res) != 1) {
		snprintf(r->last.msg, sizeof r->last.msg, "the readiness check returned %d rows", PQntuples(res));
		ok = false;
	}
	if (ok)
		snprintf(r->start_time, sizeof r->start_time, "%s", PQgetvalue(res, 0, 0));
	if (ok && look)
		look_answer(look, res);
	else
		PQclear(res);
	return ok;
}

/* One attempt: connect, then ask whether the server is still in recovery. */
static enum pg_status attempt(const struct pg_target *t, const struct wait_opts *o, const char *sql,
			      int64_t timeout_ms, int stop_fd, struct wait_result *r)
{
	enum pg_status st;
	PGconn *conn = pg_connect(t, timeout_ms, stop_fd, &st, &r->last);
	if (!conn)
		return st;
	if (!ask_ready(conn, sql, o->look, timeout_ms, stop_fd, r)) {
		PQfinish(conn);
		return r->last.interrupted ? PG_INTERRUPTED : PG_TRANSIENT;
	}
	if (!r->start_time[0]) {
		snprintf(r->last.msg, sizeof r->last.msg,
			 "the server is in recovery (a standby, or still replaying WAL)");
		PQfinish(conn);
		return PG_TRANSIENT;
	}
	/* libpq may have found the password in a passfile or PGPASSWORD: hide it too. */
	log_add_secret(PQpass(conn));
	r->conn = conn;
	return PG_OK;
}

/* An attempt that failed within this long cost the server next to nothing (a refused port, a
 * missing socket, "starting up"): the next one follows soon, so that readiness is noticed
 * within tens of milliseconds. */
#define WAIT_CHEAP_MS 20
#define WAIT_CHEAP_DELAY_MS 25

/* The pause after a failed attempt that took cost_ms: cheap failures are retried every
 * 25-50 ms without growing the backoff; only attempts that cost something (a timeout, a slow
 * answer, a round trip that got far) back off exponentially, up to --wait-max-interval. */
static int64_t next_delay(struct backoff *b, int64_t cost_ms, int64_t max_interval_ms)
{
	if (cost_ms >= WAIT_CHEAP_MS) {
		return backoff_next(b);
	}
	int64_t d = WAIT_CHEAP_DELAY_MS + (int64_t)(random_u64() % (WAIT_CHEAP_DELAY_MS + 1));
	return d < max_interval_ms ? d : max_interval_ms;
}

void wait_for_database(const struct pg_target *t, const struct wait_opts *o,
		       const struct sigstate *sigs, struct wait_result *r)
{
	memset(r, 0, sizeof *r);
	/* Readable when a stop signal is pending: ends a connection attempt in progress. */
	int stop_fd = signals_stop_fd();
	int64_t start = now_ms(), deadline = start + o->timeout_ms;
	struct backoff b;
	backoff_init(&b, 100, o->max_interval_ms, random_u64());
	char *sql = o->look ? look_query(o->look, READY_COLUMN) : xasprintf("SELECT %s", READY_COLUMN);
	for (;;) {
		int64_t left = deadline - now_ms();
		/* Bound each attempt by the time left, so a black-holed host cannot stretch the deadline. */
		int64_t timeout_ms = left < 10000 ? left : 10000;
		if (timeout_ms < 100)
			timeout_ms = 100;
		r->attempts++;
		int64_t attempt_start = now_ms();
		enum pg_status st = attempt(t, o, sql, timeout_ms, stop_fd, r);
		r->elapsed_ms = now_ms() - start;
		if (st == PG_OK) {
			log_event(LOG_DEBUG, "wait.attempt",
				  LOG_FIELDS(LF_I("attempt", r->attempts),
					     LF_I("elapsed_ms", r->elapsed_ms), LF_B("ready", true)),
				  "database ready");
			r->status = WAIT_READY;
			break;
		}
		if (st == PG_INTERRUPTED) {
			r->status = WAIT_INTERRUPTED;
			r->signo = signals_stop_read(stop_fd);
			break;
		}
		log_event(LOG_DEBUG, "wait.attempt",
			  LOG_FIELDS(LF_I("attempt", r->attempts), LF_I("elapsed_ms", r->elapsed_ms),
				     LF_B("ready", false), LF_S("error", r->last.msg)),
			  "database not ready");
		if (r->attempts == 1 && st == PG_TRANSIENT)
			log_event(LOG_INFO, "wait.waiting",
				  LOG_FIELDS(LF_S("error", r->last.msg),
					     LF_I("timeout_ms", o->timeout_ms)),
				  "waiting for the database (up to %llds)",
				  (long long)(o->timeout_ms / 1000));
		if (st == PG_AUTH || st == PG_NO_DATABASE || st == PG_CONFIG) {
			r->status = st == PG_AUTH ? WAIT_AUTH
				    : st == PG_NO_DATABASE ? WAIT_NO_DATABASE : WAIT_CONFIG;
			break;
		}
		left = deadline - now_ms();
		if (left <= 0) {
			r->status = WAIT_TIMEOUT;
			break;
		}
		int64_t delay = next_delay(&b, now_ms() - attempt_start, o->max_interval_ms);
		if (delay > left)
			delay = left;
		int sig = signals_sleep(sigs, delay);
		if (sig) {
			r->status = WAIT_INTERRUPTED;
			r->signo = sig;
			r->elapsed_ms = now_ms() - start;
			break;
		}
	}
	free(sql);
	signals_stop_close(stop_fd);
}

void wait_for_http(char *const *urls, size_t n, const struct wait_opts *o, int64_t deadline_ms,
		   const struct sigstate *sigs, struct wait_http_result *r)
{
	memset(r, 0, sizeof *r);
	r->status = WAIT_READY;
	int stop_fd = signals_stop_fd();
	int64_t start = now_ms();
	for (size_t i = 0; i < n && r->status == WAIT_READY; i++) {
		struct backoff b;
		backoff_init(&b, 100, o->max_interval_ms, random_u64());
		char *pub = http_url_public(urls[i], false);
		for (unsigned attempt = 1;; attempt++) {
			int64_t left = deadline_ms - now_ms();
			struct http_result hr;
			r->url = urls[i];
			r->attempts = attempt;
			if (http_get(urls[i], left < 10000 ? (left > 100 ? left : 100) : 10000, stop_fd, &hr)) {
				log_event(LOG_INFO, "wait.http.ready",
					  LOG_FIELDS(LF_S("url", pub), LF_I("status", hr.status),
						     LF_I("attempts", attempt), LF_I("elapsed_ms", now_ms() - start)),
					  "%s answers", pub);
				break;
			}
			snprintf(r->last, sizeof r->last, "%s", hr.err);
			if (hr.signo) {
				r->status = WAIT_INTERRUPTED;
				r->signo = hr.signo;
				break;
			}
			if (attempt == 1)
				log_event(LOG_INFO, "wait.http.waiting",
					  LOG_FIELDS(LF_S("url", pub), LF_S("error", hr.err),
						     LF_I("timeout_ms", deadline_ms - now_ms())),
					  "waiting for %s (%s)", pub, hr.err);
			left = deadline_ms - now_ms();
			if (left <= 0) {
				r->status = WAIT_TIMEOUT;
				break;
			}
			int64_t delay = backoff_next(&b);
			int sig = signals_sleep(sigs, delay < left ? delay : left);
			if (sig) {
				r->status = WAIT_INTERRUPTED;
				r->signo = sig;
				break;
			}
		}
		free(pub);
	}
	signals_stop_close(stop_fd);
}
