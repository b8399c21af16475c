/* migrate.progress while a migration runs: its step, what its session waits for, who blocks it
 * and the phase of a long statement, from a thread with a database connection of its own. */
#include "mtr/progress.h"
#include "mtr/log.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Why a thread. The migration waits in loops that belong to others: pg.c's wait for a
 * statement's answer and proc.c's loop over the child's output and signals. A progress query
 * made from either would add its round trip, or a slow server's silence, to the migration's own
 * wait and to the way a stop signal reaches it. A thread with its own connection, its own stop
 * pipe and queries bounded by QUERY_MS touches neither: the migration never waits for it, stop
 * signals stay blocked here and are taken by the main thread as before, and progress_stop waits
 * at most STOP_WAIT_MS for the thread before leaving it to end (and free itself) alone. Nothing
 * is logged once progress_stop has begun, so no progress line follows the migration's end.
 */
#define QUERY_MS 5000
#define STOP_WAIT_MS 1000

struct progress_watch {
	pthread_t thread;
	int stop[2];          /* a byte on stop[1] ends it; stop[0] stays readable after */
	char *url, *password; /* copies: the thread may outlive the caller's target */
	int64_t interval_ms;
	pthread_mutex_t mu;   /* guards everything below */
	pthread_cond_t done_cv;
	bool done;            /* the thread has finished its work */
	bool orphan;          /* progress_stop gave up waiting: the thread frees the watch */
	bool stopping;        /* nothing more is logged */
	int pid;              /* the backend to watch, else 0 */
	char app[128];        /* else the application_name of the sessions to watch */
	char step[256];
	int64_t step_start;
	bool idle;            /* between steps: nothing to report */
	unsigned long gen;    /* changes with every step and idle: a look at an older one is dropped */
};

/* What the thread keeps between looks: its connection and the query that fits the server. */
struct looker {
	PGconn *conn;
	char *sql;
};

/* One look at the watched session, as the thread took it. */
struct snapshot {
	int pid;
	char app[128];
	char step[256];
	int64_t elapsed_ms;
	unsigned long gen;
};

static void watch_free(struct progress_watch *w)
{
	close(w->stop[0]);
	close(w->stop[1]);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->done_cv);
	free(w->url);
	free(w->password);
	free(w);
}

/* Each view's operation, phase and percentage, for those this server has (to_regclass: asking
 * for a missing one would put an error in the server's log). */
static char *progress_views(PGconn *conn)
{
	static const char *const views[][2] = {
		{"create_index", "SELECT pid, command::text AS operation, phase::text AS phase, CASE "
				 "WHEN blocks_total > 0 THEN 100 * blocks_done / blocks_total WHEN "
				 "tuples_total > 0 THEN 100 * tuples_done / tuples_total END AS percent"},
		{"cluster", "SELECT pid, command::text, phase::text, CASE WHEN heap_blks_total > 0 THEN "
			    "100 * heap_blks_scanned / heap_blks_total END"},
		{"vacuum", "SELECT pid, 'VACUUM'::text, phase::text, CASE WHEN heap_blks_total > 0 THEN "
			   "100 * heap_blks_scanned / heap_blks_total END"},
		{"analyze", "SELECT pid, 'ANALYZE'::text, phase::text, CASE WHEN sample_blks_total > 0 "
			    "THEN 100 * sample_blks_scanned / sample_blks_total END"},
		{"copy", "SELECT pid, command::text, NULL::text, CASE WHEN bytes_total > 0 THEN "
			 "100 * bytes_processed / bytes_total END"},
	};
	struct strbuf b = STRBUF_INIT;
	for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
		char probe[128], got[8] = "";
		snprintf(probe, sizeof probe,
			 "SELECT pg_catalog.to_regclass('pg_catalog.pg_stat_progress_%s') IS NOT NULL",
			 views[i][0]);
		struct pg_error err;
		if (!pg_query_value(conn, probe, QUERY_MS, -1, got, sizeof got, &err) || strcmp(got, "t") != 0)
			continue;
		sb_addf(&b, "%s%s FROM pg_catalog.pg_stat_progress_%s", b.len ? " UNION ALL " : "",
			views[i][1], views[i][0]);
	}
	if (!b.len)
		sb_adds(&b, "SELECT 0 AS pid, NULL::text AS operation, NULL::text AS phase, NULL::bigint AS percent");
	return sb_take(&b);
}

/* The watched session (by pid, else by application_name; the busiest first), the oldest
 * transaction among those that block it, and its progress view's row. */
static char *progress_query(PGconn *conn)
{
	char *views = progress_views(conn);
	char *sql = xasprintf(
		"SELECT a.pid, a.state, a.wait_event_type, a.wait_event, b.pid, b.application_name, "
		"b.state, (EXTRACT(epoch FROM COALESCE(b.xact_start, b.query_start, "
		"b.backend_start)) * 1000)::bigint, pg_catalog.left(b.query, 200), b.n, p.operation, "
		"p.phase, p.percent "
		"FROM pg_catalog.pg_stat_activity a "
		"LEFT JOIN LATERAL (SELECT x.pid, x.application_name, x.state, x.xact_start, "
		"x.query_start, x.backend_start, x.query, pg_catalog.count(*) OVER () AS n "
		"FROM pg_catalog.pg_stat_activity x WHERE x.pid = ANY (pg_catalog.pg_blocking_pids(a.pid)) "
		"ORDER BY x.xact_start NULLS LAST LIMIT 1) b ON true "
		"LEFT JOIN LATERAL (SELECT v.operation, v.phase, v.percent FROM (%s) v "
		"WHERE v.pid = a.pid LIMIT 1) p ON true "
		"WHERE (a.pid = $1::int OR a.application_name = $2) AND a.pid <> pg_catalog.pg_backend_pid() "
		"ORDER BY b.pid IS NOT NULL DESC, a.state = 'active' DESC, a.query_start DESC NULLS LAST "
		"LIMIT 1",
		views);
	free(views);
	return sql;
}

/* What to look at now; false before anything was named, and once stopping. */
static bool snapshot(struct progress_watch *w, struct snapshot *s)
{
	pthread_mutex_lock(&w->mu);
	bool ok = !w->stopping && !w->idle && w->step[0];
	if (ok) {
		s->gen = w->gen;
		s->pid = w->pid;
		snprintf(s->app, sizeof s->app, "%s", w->app);
		snprintf(s->step, sizeof s->step, "%s", w->step);
		s->elapsed_ms = now_ms() - w->step_start;
	}
	pthread_mutex_unlock(&w->mu);
	return ok;
}

static const char *value(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : PQgetvalue(res, 0, col);
}

static long long number(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? -1 : atoll(PQgetvalue(res, 0, col));
}

#define MAX_FIELDS 16

/* The fields and the message of one look: res holds the session's row (or none), why says
 * why nothing could be read. */
static void describe(const struct snapshot *s, const PGresult *res, const char *why,
		     struct log_field *f, char *since, size_t since_len, struct strbuf *msg)
{
	size_t n = 0;
	f[n++] = (struct log_field)LF_S("step", s->step);
	f[n++] = (struct log_field)LF_I("elapsed_ms", s->elapsed_ms);
	sb_addf(msg, "%s: running for %llds", s->step, (long long)(s->elapsed_ms / 1000));
	if (!res || PQntuples(res) != 1) {
		sb_addf(msg, "; %s", why);
		if (!res) /* the database could not be asked */
			f[n++] = (struct log_field)LF_S("error", why);
		f[n] = (struct log_field)LF_END;
		return;
	}
	const char *wtype = value(res, 2), *wevent = value(res, 3);
	f[n++] = (struct log_field)LF_I("backend_pid", number(res, 0));
	f[n++] = (struct log_field)LF_S("state", value(res, 1));
	f[n++] = (struct log_field)LF_S("wait_event_type", wtype);
	f[n++] = (struct log_field)LF_S("wait_event", wevent);
	if (wevent)
		sb_addf(msg, "; waiting for %s:%s", wtype ? wtype : "?", wevent);
	if (value(res, 4)) {
		utc_format(number(res, 7), UTC_ISO, since, since_len);
		f[n++] = (struct log_field)LF_I("blockers", number(res, 9));
		f[n++] = (struct log_field)LF_I("blocker_pid", number(res, 4));
		f[n++] = (struct log_field)LF_S("blocker_application", value(res, 5));
		f[n++] = (struct log_field)LF_S("blocker_state", value(res, 6));
		f[n++] = (struct log_field)LF_S("blocker_since", since);
		f[n++] = (struct log_field)LF_S("blocker_query", value(res, 8));
		sb_addf(msg, "; blocked by pid %s (%s, %s since %s): %s", value(res, 4),
			value(res, 5) ? value(res, 5) : "", value(res, 6) ? value(res, 6) : "?", since,
			value(res, 8) ? value(res, 8) : "");
	}
	if (value(res, 10)) {
		f[n++] = (struct log_field)LF_S("operation", value(res, 10));
		f[n++] = (struct log_field)LF_S("phase", value(res, 11));
		sb_addf(msg, "; %s%s%s", value(res, 10), value(res, 11) ? ": " : "",
			value(res, 11) ? value(res, 11) : "");
		if (number(res, 12) >= 0) {
			f[n++] = (struct log_field)LF_I("percent", number(res, 12));
			sb_addf(msg, ", %lld%%", number(res, 12));
		}
	}
	f[n] = (struct log_field)LF_END;
}

/* Logs one migrate.progress, unless progress_stop or another step has begun meanwhile (so that
 * no progress line follows the step's own end). */
static void report(struct progress_watch *w, const struct snapshot *s, const PGresult *res,
		   const char *why)
{
	struct log_field f[MAX_FIELDS];
	char since[UTC_LEN] = "";
	struct strbuf msg = STRBUF_INIT;
	describe(s, res, why, f, since, sizeof since, &msg);
	pthread_mutex_lock(&w->mu);
	if (!w->stopping && w->gen == s->gen)
		log_event(LOG_INFO, "migrate.progress", f, "%s", msg.s);
	pthread_mutex_unlock(&w->mu);
	sb_free(&msg);
}

/* One look: connects when it has no connection, asks, reports. */
static void look(struct progress_watch *w, struct looker *l)
{
	struct snapshot s;
	if (!snapshot(w, &s))
		return;
	struct pg_error err = {0};
	if (!l->conn) {
		struct pg_target t = {w->url, w->password};
		enum pg_status st;
		l->conn = pg_connect(&t, QUERY_MS, w->stop[0], &st, &err);
		free(l->sql);
		l->sql = l->conn ? progress_query(l->conn) : NULL;
	}
	PGresult *res = NULL;
	if (l->conn) {
		char pid[16];
		snprintf(pid, sizeof pid, "%d", s.pid);
		const char *params[2] = {s.pid ? pid : NULL, s.app[0] ? s.app : NULL};
		res = pg_run(l->conn, l->sql, 2, params, QUERY_MS, w->stop[0], &err);
		if (!res || PQstatus(l->conn) != CONNECTION_OK) {
			PQfinish(l->conn); /* no answer: a new connection next time */
			l->conn = NULL;
		}
	}
	char why[1100];
	if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
		snprintf(why, sizeof why, "cannot read pg_stat_activity: %s", err.msg);
	else if (res)
		snprintf(why, sizeof why, "no database session of it is open");
	else
		snprintf(why, sizeof why, "cannot look at the database: %s", err.msg);
	report(w, &s, PQresultStatus(res) == PGRES_TUPLES_OK ? res : NULL, why);
	PQclear(res);
}

/* Waits one interval; false when the stop came instead. */
static bool next_tick(struct progress_watch *w)
{
	for (;;) {
		struct pollfd p = {w->stop[0], POLLIN, 0};
		int n = poll(&p, 1, w->interval_ms > INT_MAX ? INT_MAX : (int)w->interval_ms);
		if (n < 0 && errno == EINTR)
			continue;
		return n == 0;
	}
}

static void *watch_main(void *arg)
{
	struct progress_watch *w = arg;
	struct looker l = {NULL, NULL};
	while (next_tick(w))
		look(w, &l);
	PQfinish(l.conn);
	free(l.sql);
	pthread_mutex_lock(&w->mu);
	bool orphan = w->orphan;
	w->done = true;
	pthread_cond_signal(&w->done_cv);
	pthread_mutex_unlock(&w->mu);
	if (orphan)
		watch_free(w);
	return NULL;
}

struct progress_watch *progress_start(const struct pg_target *t, int64_t interval_ms)
{
	if (interval_ms <= 0)
		return NULL;
	struct progress_watch *w = xcalloc(1, sizeof *w);
	w->interval_ms = interval_ms;
	w->url = t->url ? xstrdup(t->url) : NULL;
	w->password = t->password ? xstrdup(t->password) : NULL;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	int e = pipe2(w->stop, O_CLOEXEC) == 0 ? 0 : errno;
	if (e == 0)
		e = pthread_create(&w->thread, NULL, watch_main, w);
	else
		w->stop[0] = w->stop[1] = -1;
	if (e == 0)
		return w;
	log_event(LOG_WARN, "migrate.progress", LOG_FIELDS(LF_S("error", strerror(e))),
		  "cannot watch the migration's progress (%s): it goes on without migrate.progress",
		  strerror(e));
	watch_free(w);
	return NULL;
}

static void set_step(struct progress_watch *w, int pid, const char *app, const char *step)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	bool same = w->pid == pid && strcmp(w->app, app) == 0 && strncmp(w->step, step, sizeof w->step - 1) == 0;
	w->pid = pid;
	snprintf(w->app, sizeof w->app, "%s", app);
	snprintf(w->step, sizeof w->step, "%s", step);
	if (!same)
		w->step_start = now_ms();
	w->idle = false;
	w->gen++;
	pthread_mutex_unlock(&w->mu);
}

void progress_idle(struct progress_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->idle = true;
	w->gen++;
	pthread_mutex_unlock(&w->mu);
}

void progress_watch_pid(struct progress_watch *w, int pid, const char *step)
{
	set_step(w, pid, "", step);
}

void progress_watch_app(struct progress_watch *w, const char *application_name, const char *step)
{
	set_step(w, 0, application_name, step);
}

void progress_stop(struct progress_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_mutex_unlock(&w->mu);
	if (write(w->stop[1], "x", 1) != 1) {
		/* a pipe with room for a byte: cannot fail; the deadline below bounds it anyway */
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_WAIT_MS / 1000;
	until.tv_nsec += (STOP_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done && pthread_cond_timedwait(&w->done_cv, &w->mu, &until) == 0) {
	}
	bool done = w->done;
	w->orphan = !done;
	pthread_mutex_unlock(&w->mu);
	if (done) {
		pthread_join(w->thread, NULL);
		watch_free(w);
	} else {
		pthread_detach(w->thread); /* stuck in a connect or a cancel: it frees itself */
	}
}
