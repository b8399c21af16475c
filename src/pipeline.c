/* The phases in order: wait, migrate, run. Decides what is logged, retried, and the exit code. */
#include "mtr/pipeline.h"
#include "mtr/argv.h"
#include "mtr/backup.h"
#include "mtr/breaker.h"
#include "mtr/exitcode.h"
#include "mtr/http.h"
#include "mtr/init.h"
#include "mtr/lock.h"
#include "mtr/notify.h"
#include "mtr/pg_target.h"
#include "mtr/pooler.h"
#include "mtr/source.h"
#include "mtr/status.h"
#include "mtr/log.h"
#include "mtr/redact.h"
#include "mtr/retry.h"
#include "mtr/run.h"
#include "mtr/source_cmd.h"
#include "mtr/wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define URL_HINT                                                                              \
	"expected postgresql://app@db:5432/app with the password after the user (app:PASSWORD) " \
	"and its special characters percent-encoded (/ as %2F, @ as %40, : as %3A)"

/* Everything that may carry a password is known to the logger before anything is logged. */
static void register_secrets(const struct config *cfg)
{
	if (cfg->database_url) {
		/* libpq's own reading says which part is the password (URL or conninfo), and, when
		 * an unencoded '@' or '/' split it, what was meant as one and its pieces. */
		pg_target_secrets(cfg->database_url, log_add_secret);
		char *pw = redact_url_password(cfg->database_url); /* a URL libpq cannot parse */
		log_add_secret(pw);
		free(pw);
	}
	log_add_secret(cfg->pgpassword);
	log_add_secret(getenv("PGPASSWORD"));
	if (cfg->backup_upload_url)
		http_register_secrets(cfg->backup_upload_url, false);
	for (size_t i = 0; i < cfg->notify_url.n; i++)
		http_register_secrets(cfg->notify_url.v[i], true);
	for (size_t i = 0; i < cfg->wait_http.n; i++)
		http_register_secrets(cfg->wait_http.v[i], false);
}

/* What one run did, for the webhook report: timings and where the database went. */
struct run_report {
	int64_t wait_ms, backup_ms, migrate_ms;
	char from[64], to[64];
	char database[64];
	bool applied; /* migrations ran and succeeded */
	size_t pending; /* what the last plan found pending (--check reports it) */
};

static int stopped(const char *phase, int signo)
{
	pg_stopping(); /* what is left to do (the lock's release) must not wait for the server */
	log_event(LOG_WARN, "stop.signal",
		  LOG_FIELDS(LF_S("phase", phase), LF_S("signal", signals_name(signo)),
			     LF_I("exit_code", MTR_EXIT_SIGNAL_BASE + signo)),
		  "stopped by %s during the %s phase; the app was not started", signals_name(signo),
		  phase);
	return MTR_EXIT_SIGNAL_BASE + signo;
}

/* Maps a failed wait to its exit code, with the diagnosis and the fix in one event. */
static int wait_failed(const struct config *cfg, const struct wait_result *w)
{
	const char *from = cfg->database_url_from;
	switch (w->status) {
	case WAIT_INTERRUPTED:
		return stopped("wait", w->signo);
	case WAIT_AUTH:
		log_event(LOG_ERROR, "wait.failed",
			  LOG_FIELDS(LF_S("reason", "authentication"), LF_S("error", w->last.msg),
				     LF_S("database_from", from), LF_I("exit_code", MTR_EXIT_AUTH)),
			  "the database refused our credentials: %s; check the user and password in %s "
			  "and the server's pg_hba.conf (not retried: it would fail the same way)",
			  w->last.msg, from);
		return MTR_EXIT_AUTH;
	case WAIT_NO_DATABASE:
		log_event(LOG_ERROR, "wait.failed",
			  LOG_FIELDS(LF_S("reason", "no_database"), LF_S("error", w->last.msg),
				     LF_S("database_from", from), LF_I("exit_code", MTR_EXIT_UNAVAILABLE)),
			  "%s; create it (createdb, or POSTGRES_DB in the postgres image) or fix the "
			  "database name in %s",
			  w->last.msg, from);
		return MTR_EXIT_UNAVAILABLE;
	case WAIT_CONFIG:
		log_event(LOG_ERROR, "config.invalid",
			  LOG_FIELDS(LF_S("option", from), LF_S("error", w->last.msg),
				     LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s: %s; %s", from, w->last.msg, URL_HINT);
		return MTR_EXIT_USAGE;
	case WAIT_TIMEOUT:
	default:
		log_event(LOG_ERROR, "wait.failed",
			  LOG_FIELDS(LF_S("reason", "timeout"), LF_I("attempts", w->attempts),
				     LF_I("elapsed_ms", w->elapsed_ms), LF_S("error", w->last.msg),
				     LF_I("exit_code", MTR_EXIT_UNAVAILABLE)),
			  "the database was not ready within %lldms (%u attempts); last error: %s; "
			  "check that the server runs and is reachable from here, or raise "
			  "--wait-timeout",
			  (long long)cfg->wait_timeout_ms, w->attempts, w->last.msg);
		return MTR_EXIT_UNAVAILABLE;
	}
}

/* --wait-http, after the database answered: each URL by the same deadline. */
static int wait_http(const struct config *cfg, int64_t deadline_ms, const struct sigstate *sigs,
		     struct failure *f)
{
	struct wait_opts o = {cfg->wait_timeout_ms, cfg->wait_max_interval_ms, NULL};
	struct wait_http_result r;
	wait_for_http(cfg->wait_http.v, cfg->wait_http.n, &o, deadline_ms, sigs, &r);
	if (r.status == WAIT_READY)
		return 0;
	f->phase = "wait";
	if (r.status == WAIT_INTERRUPTED)
		return stopped("wait", r.signo);
	char *pub = http_url_public(r.url, false);
	log_event(LOG_ERROR, "wait.failed",
		  LOG_FIELDS(LF_S("reason", "http_timeout"), LF_S("url", pub), LF_I("attempts", r.attempts),
			     LF_S("error", r.last), LF_I("exit_code", MTR_EXIT_UNAVAILABLE)),
		  "%s did not answer 2xx within --wait-timeout %lldms (%u attempts); last: %s; check "
		  "that the service runs and is reachable from here, or raise --wait-timeout",
		  pub, (long long)cfg->wait_timeout_ms, r.attempts, r.last);
	f->transient = true;
	snprintf(f->error, sizeof f->error, "%s", r.last);
	free(pub);
	return MTR_EXIT_UNAVAILABLE;
}

/* Takes the migration lock into l; returns 0 or the exit code (already logged). -1: lost,
 * retry. 1: the holder finished, look again (direct only). conn: the caller's connection.
 * Through a pooler it is closed meanwhile (so that it holds no pooled session) and each try
 * is a connection of its own; directly, the tries and the waiting use it, and when the lock
 * is taken on it, *conn is NULL. w: how this attempt has waited so far (direct only). */
static int take_lock(const struct config *cfg, const struct source *src,
		     const struct pg_target *target, struct lock *l, PGconn **conn, bool pooled,
		     struct lock_waiting *w, const struct sigstate *sigs)
{
	const char *name = src->def->lock_name(cfg);
	int signo = 0;
	struct pg_error err;
	enum lock_status st =
		pooled ? lock_acquire(l, target, name, cfg->lock_timeout_ms, sigs, conn, &signo, &err)
		       : lock_try_or_wait(l, conn, name, w, cfg->lock_timeout_ms, sigs, &signo, &err);
	switch (st) {
	case LOCK_ACQUIRED:
		return 0;
	case LOCK_RELEASED:
		return 1;
	case LOCK_INTERRUPTED:
		return stopped("lock", signo);
	case LOCK_TIMEOUT:
		log_event(LOG_ERROR, "lock.failed",
			  LOG_FIELDS(LF_S("name", name), LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
			  "%s; another replica is still migrating (see lock.wait above for who): "
			  "raise --lock-timeout if its migrations are long, or end that session",
			  err.msg);
		return MTR_EXIT_TEMPFAIL;
	case LOCK_LOST:
	default:
		return -1;
	}
}

/* Server notices (RAISE NOTICE in a migration, warnings) become log events, never raw text
 * on stderr between our JSON lines. */
static void notice_to_log(void *arg, const PGresult *res)
{
	(void)arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	log_event(sev && strcmp(sev, "WARNING") == 0 ? LOG_WARN : LOG_INFO, "db.notice",
		  LOG_FIELDS(LF_S("severity", sev), LF_S("sqlstate", PQresultErrorField(res, PG_DIAG_SQLSTATE))),
		  "%s", msg ? msg : "");
}

#define BACKUP_PATH_MAX 4096

/* After pg_dump failed: whether the server restarted or the connection went away meanwhile
 * (pg_dump's "server closed the connection unexpectedly" is then ours too). start_time: the
 * server's start time when we connected. */
static bool server_went_away(PGconn *conn, const char *start_time)
{
	char now[64];
	struct pg_error err;
	if (!pg_query_value(conn, "SELECT pg_catalog.pg_postmaster_start_time()::pg_catalog.text",
			    PG_QUERY_MS, -1, now, sizeof now, &err))
		return !err.sqlstate[0] || pg_sqlstate_is_transient(err.sqlstate);
	return start_time && start_time[0] && strcmp(now, start_time) != 0;
}

/* pg_dump's own words for a connection that the server ended under it (libpq's and the
 * server's messages, as Debian's PostgreSQL 15 writes them in English). Our own connection
 * tells the same a moment later (server_went_away), unless its session has not yet been ended
 * when we ask: both are asked. */
static bool dump_lost_its_connection(const char *err)
{
	static const char *const lost[] = {
		"server closed the connection unexpectedly", "terminating connection",
		"could not receive data from server", "no connection to the server",
		"the database system is shutting down", "SSL SYSCALL error",
	};
	for (size_t i = 0; i < sizeof lost / sizeof lost[0]; i++)
		if (strstr(err, lost[i]))
			return true;
	return false;
}

/* Phase 6 under the lock, before anything is applied. Returns 0 or the exit code; -1 when the
 * server went away during the dump (not logged as a backup failure: the caller retries). */
static int take_backup(const struct config *cfg, PGconn *conn, const struct plan_info *info,
		       const char *start_time, const struct sigstate *sigs, char *path, size_t pathlen,
		       struct failure *f)
{
	const char *dir = cfg->backup_dir ? cfg->backup_dir : backup_default_dir();
	if (strcmp(dir, BACKUP_DIR_NONE) == 0)
		dir = NULL;
	struct backup_opts bo = {dir, cfg->backup_keep, "pg_dump", "pg_restore", cfg->backup_upload_url,
				 cfg->backup_stall_ms};
	struct backup_result br;
	int code = backup_run(&bo, conn, info->from, info->to, sigs, &br);
	if (code >= MTR_EXIT_SIGNAL_BASE) {
		return stopped("backup", br.signo);
	}
	if (code == 0) {
		snprintf(path, pathlen, "%s", br.path);
		log_event(LOG_INFO, "backup.done",
			  LOG_FIELDS(LF_S("path", br.path[0] ? br.path : NULL), LF_I("bytes", br.bytes),
				     LF_I("duration_ms", br.ms), LF_I("verify_ms", br.verify_ms),
				     LF_S("uploaded_to", br.uploaded[0] ? br.uploaded : NULL),
				     LF_I("upload_attempts", br.upload_attempts), LF_B("streamed", br.streamed)),
			  "backed up to %s%s%s (%lld bytes%s)", br.path[0] ? br.path : br.uploaded,
			  br.path[0] && br.uploaded[0] ? " and " : "", br.path[0] && br.uploaded[0] ? br.uploaded : "",
			  br.bytes, br.path[0] ? ", verified" : ", verified, not kept locally");
		return 0;
	}
	if (br.path[0]) /* verified and kept, though the upload failed */
		snprintf(path, pathlen, "%s", br.path);
	else if (br.stalled || dump_lost_its_connection(br.err) || server_went_away(conn, start_time)) {
		/* a restart, a failover or a silent server, not a backup problem: retried from the wait */
		snprintf(f->error, sizeof f->error, "%.1000s", br.stalled ? br.err : "");
		return -1;
	}
	if (cfg->backup_mode == BACKUP_OPTIONAL) {
		log_event(LOG_WARN, "backup.failed",
			  LOG_FIELDS(LF_S("error", br.err), LF_B("required", false)),
			  "backup failed, going on without one (--backup=optional): %s", br.err);
		return 0;
	}
	log_event(LOG_ERROR, "backup.failed",
		  LOG_FIELDS(LF_S("error", br.err), LF_B("required", true), LF_I("exit_code", code)),
		  "backup failed, so nothing was migrated: %s (or pass --backup=optional / off)",
		  br.err);
	snprintf(f->error, sizeof f->error, "%.1000s", br.err);
	return code;
}

/* One attempt of the phases before the app, and what they share. */
struct attempt {
	const struct config *cfg;
	const struct sigstate *sigs;
	struct source *src;
	const struct pg_target *target;
	long run;          /* 0 on the first run; a hold's retry is the next */
	char *backup_path; /* one backup per process (BACKUP_PATH_MAX) */
	struct failure *f;
	struct run_report *rep;
	PGconn *conn;
	struct plan_info info;
	struct source_ctx ctx;
	size_t pending;
	char start_time[64]; /* the server's start time when we connected: restarts show */
	int code;          /* OUT_FAILED: the exit code (already logged) */
	char lost[600];    /* OUT_LOST: what happened, for the retry line */
	struct lock lock;  /* the migration lock, from phase_lock to the end of the attempt */
	enum pooling pooling; /* what stands between us and the server (phase_pooler) */
	struct look look;  /* the first look, asked with the readiness check (phase_wait) */
	int failure_col;   /* its failure-memory column (breaker_look) */
	struct lock_waiting waiting; /* how this attempt has waited for the lock (direct) */
	bool locking;       /* it went for the lock: the first look's answers are stale now */
	bool relook;        /* the quiet look is made again: its notes were logged already */
};

/* What a phase did: go on, stop with success (nothing left to do), or ask for another
 * attempt because the database went away, or fail with a->code. */
enum outcome { OUT_OK, OUT_DONE, OUT_LOST, OUT_FAILED, OUT_AGAIN };

static enum outcome fail(struct attempt *a, int code, const char *phase, bool transient,
			 const char *error)
{
	a->code = code;
	a->f->phase = phase;
	a->f->transient = transient;
	snprintf(a->f->error, sizeof a->f->error, "%s", error);
	return OUT_FAILED;
}

static enum outcome nothing_to_do(void)
{
	log_event(LOG_INFO, "migrate.skip", NULL, "nothing to migrate");
	return OUT_DONE;
}

/* Phase 2: a connection to a ready database (and --wait-http's services). */
static enum outcome phase_wait(struct attempt *a)
{
	const struct config *cfg = a->cfg;
	look_free(&a->look);
	if (a->src->look)
		a->src->look(a->src->self, &a->look);
	a->failure_col = cfg->check ? 0 : breaker_look(cfg, &a->look);
	struct wait_opts wopts = {cfg->wait_timeout_ms, cfg->wait_max_interval_ms, &a->look};
	struct wait_result w;
	status_set(STATUS_WAITING, "wait", a->run + 1, NULL);
	int64_t wait_start = now_ms();
	wait_for_database(a->target, &wopts, a->sigs, &w);
	if (w.status != WAIT_READY)
		return fail(a, wait_failed(cfg, &w), "wait", w.status == WAIT_TIMEOUT, w.last.msg);
	a->conn = w.conn;
	snprintf(a->rep->database, sizeof a->rep->database, "%s", PQdb(a->conn));
	if (cfg->wait_http.n) {
		a->code = wait_http(cfg, wait_start + cfg->wait_timeout_ms, a->sigs, a->f);
		if (a->code)
			return OUT_FAILED;
	}
	a->rep->wait_ms += now_ms() - wait_start;
	PQsetNoticeReceiver(a->conn, notice_to_log, NULL);
	log_event(LOG_INFO, "wait.ready",
		  LOG_FIELDS(LF_I("attempts", w.attempts), LF_I("elapsed_ms", w.elapsed_ms),
			     LF_S("server_version", PQparameterStatus(a->conn, "server_version")),
			     LF_S("database", PQdb(a->conn))),
		  "database is ready");
	snprintf(a->start_time, sizeof a->start_time, "%s", w.start_time);
	a->ctx.start_time = a->start_time;
	a->ctx.look = &a->look;
	return OUT_OK;
}

/*
 * Planning happens twice, on purpose. The common start has nothing to do, and settling that
 * needs no lock: a quiet look (PLAN_QUIET) without the lock decides it. A replica that is
 * migrating right now can only make this look show work that is already being done, never
 * hide work, so "nothing pending" is safe to trust without the lock. Anything else (work, or
 * anything that looks wrong) is decided again under the lock, where the plan is final and
 * may refuse. The quiet look logs the notes about the files (skipped names and the like);
 * the locked plan (PLAN_REPEAT) does not log them again. Files that cannot be read at all are
 * refused by the quiet look at once: no lock can change the image's files.
 */
static enum outcome phase_quick_plan(struct attempt *a)
{
	a->f->phase = "check";
	a->info.files_refused = false;
	int flags = PLAN_QUIET | (a->relook ? PLAN_REPEAT : 0);
	a->code = a->src->plan(a->src->self, a->conn, &a->ctx, flags, &a->pending);
	if (a->code && a->info.files_refused) /* no lock can change the image's files */
		return fail(a, a->code, "check", false, "the migration files were refused (see check.failed)");
	if (a->code == 0 && a->pending == 0 && a->cfg->backup_mode != BACKUP_ALWAYS)
		return nothing_to_do();
	/* A permanent failure (logged) would only repeat under the lock: it ends here, once. */
	if (a->code && a->code != MTR_EXIT_INCONSISTENT && a->code != MTR_EXIT_TEMPFAIL)
		return fail(a, a->code, "check", false, "the migrations could not be planned");
	return OUT_OK;
}

/* The connection was given up while locking (lock_acquire says why): a new one, now. */
static enum outcome reconnect(struct attempt *a)
{
	enum pg_status st;
	struct pg_error err;
	int stop_fd = signals_stop_fd();
	a->conn = pg_connect(a->target, PG_QUERY_MS, stop_fd, &st, &err);
	int sig = !a->conn && st == PG_INTERRUPTED ? signals_stop_read(stop_fd) : 0;
	signals_stop_close(stop_fd);
	if (sig) {
		a->code = stopped("lock", sig);
		return OUT_FAILED;
	}
	if (!a->conn) {
		snprintf(a->lost, sizeof a->lost, "cannot connect again after taking the lock: %.400s", err.msg);
		return OUT_LOST;
	}
	PQsetNoticeReceiver(a->conn, notice_to_log, NULL);
	return OUT_OK;
}

/* Phase 3: the migration lock. OUT_AGAIN: the holder finished meanwhile; the quiet look is
 * made again, and most often finds that nothing is left to do. */
static enum outcome phase_lock(struct attempt *a)
{
	a->f->phase = "lock";
	a->ctx.look = NULL; /* its answers were from before the lock: the locked plan asks again */
	/* Through a pooler, a connection kept while waiting holds a server session of a pool the
	 * holder needs: it is given up (and opened again once the lock is ours). Directly, it
	 * waits for the lock itself: no connection is made while waiting. */
	bool pooled = true;
	struct pg_error err;
	if (!pooler_seen(a->conn, &pooled, &err)) {
		snprintf(a->lost, sizeof a->lost, "the database connection was lost while locking: %.400s", err.msg);
		return OUT_LOST;
	}
	a->locking = true;
	int lock = take_lock(a->cfg, a->src, a->target, &a->lock, &a->conn, pooled, &a->waiting, a->sigs);
	if (lock < 0) {
		snprintf(a->lost, sizeof a->lost, "the database connection was lost while locking or planning");
		return OUT_LOST;
	}
	if (lock == 1)
		return OUT_AGAIN;
	if (lock > 0)
		return fail(a, lock, "lock", lock == MTR_EXIT_TEMPFAIL, "the migration lock stayed taken");
	return a->conn ? OUT_OK : reconnect(a);
}

/* Phases 4 and 5 under the lock: the final plan and its check. */
static enum outcome phase_plan(struct attempt *a)
{
	a->f->phase = "check";
	int code = a->src->plan(a->src->self, a->conn, &a->ctx, PLAN_REPEAT, &a->pending);
	if (code == MTR_EXIT_TEMPFAIL && !pg_usable(a->conn)) {
		snprintf(a->lost, sizeof a->lost, "the database connection was lost while locking or planning");
		return OUT_LOST;
	}
	if (code)
		return fail(a, code, "check", code == MTR_EXIT_TEMPFAIL,
			    code == MTR_EXIT_INCONSISTENT
				    ? "the migrations and the database disagree (see check.failed)"
				    : "the migrations could not be planned");
	if (a->pending == 0 && a->cfg->backup_mode != BACKUP_ALWAYS)
		return nothing_to_do();
	return OUT_OK;
}

/*
 * Through a pooler in transaction mode the lock still holds (its open transaction pins one
 * server session), and so does every migration that is one transaction. A step that needs a
 * server session of its own does not: its statements may each land on another session, and
 * session settings would reach other clients of the pool. Refused here, before anything is
 * changed (the backup included), with the fix: a direct URL for the tool.
 */
static enum outcome phase_pooler(struct attempt *a)
{
	struct pg_error err;
	if (!pooler_probe(a->conn, a->target, &a->pooling, &err)) {
		snprintf(a->lost, sizeof a->lost, "the database connection was lost while planning: %.400s", err.msg);
		return OUT_LOST;
	}
	if (a->pooling == POOLING_NONE)
		return OUT_OK;
	log_event(LOG_INFO, "pooler.detected", LOG_FIELDS(LF_S("mode", pooler_name(a->pooling))),
		  "connected through a connection pooler in %s mode; the migration lock holds through "
		  "it (a transaction of its own pins one server session)",
		  pooler_name(a->pooling));
	/* Session pooling cannot be proven from outside (a busy transaction pool can look like
	 * one), so a step that needs a session of its own is refused through any pooler. */
	if (!a->info.session_only[0])
		return OUT_OK;
	log_event(LOG_ERROR, "pooler.refused",
		  LOG_FIELDS(LF_S("file", a->info.session_only), LF_S("mode", pooler_name(a->pooling)),
			     LF_S("database_from", a->cfg->database_url_from),
			     LF_I("exit_code", MTR_EXIT_USAGE)),
		  "%s runs outside a transaction, which a connection pooler cannot be relied on to keep "
		  "on one server session (in transaction mode each statement may land on another, and "
		  "session settings reach other clients); nothing was changed. Give migrate-then-run "
		  "a direct URL to the server in MTR_DATABASE_URL (it wins over DATABASE_URL) and let the app keep its "
		  "pooled DATABASE_URL",
		  a->info.session_only);
	return fail(a, MTR_EXIT_USAGE, "check", false,
		    "a no-transaction migration cannot run through a connection pooler");
}

/* Phase 6: one backup per process, before anything is applied. */
static enum outcome phase_backup(struct attempt *a)
{
	if (a->backup_path[0] || a->cfg->backup_mode == BACKUP_OFF)
		return a->pending ? OUT_OK : nothing_to_do();
	a->f->phase = "backup";
	status_set(STATUS_MIGRATING, "backup", a->run + 1, NULL);
	int64_t backup_start = now_ms();
	a->code = take_backup(a->cfg, a->conn, &a->info, a->start_time, a->sigs, a->backup_path,
			      BACKUP_PATH_MAX, a->f);
	a->rep->backup_ms += now_ms() - backup_start;
	if (a->code < 0) {
		snprintf(a->lost, sizeof a->lost, "%.590s",
			 a->f->error[0] ? a->f->error : "the database went away during the backup");
		a->f->error[0] = '\0';
		return OUT_LOST;
	}
	if (a->code)
		return OUT_FAILED;
	return a->pending ? OUT_OK : nothing_to_do();
}

/* Where to find the backup of the database as it was, after a migration failed. */
static void log_restore_hint(PGconn *conn, const char *path)
{
	log_event(LOG_ERROR, "backup.restore",
		  LOG_FIELDS(LF_S("path", path), LF_S("database", PQdb(conn))),
		  "the database as it was before migrating is in %s. To go back to it, recreate the "
		  "database empty (dropdb/createdb %s) and run: pg_restore --no-owner --host=%s "
		  "--port=%s --username=%s --dbname=%s %s",
		  path, PQdb(conn), PQhost(conn), PQport(conn), PQuser(conn), PQdb(conn), path);
}

static enum outcome migrate_failed(struct attempt *a, const struct migrate_outcome *out)
{
	struct failure *f = a->f;
	if (a->backup_path[0])
		log_restore_hint(a->conn, a->backup_path);
	snprintf(f->sqlstate, sizeof f->sqlstate, "%s", out->sqlstate);
	snprintf(f->revision, sizeof f->revision, "%s", out->revision);
	snprintf(f->message, sizeof f->message, "%s", out->message);
	snprintf(f->file, sizeof f->file, "%s", out->file);
	char error[160];
	snprintf(error, sizeof error, "a migration failed (exit %d%s%s)", out->code,
		 out->sqlstate[0] ? ", SQLSTATE " : "", out->sqlstate);
	return fail(a, out->code, "migrate",
		    breaker_classify(out->code, out->sqlstate) == FAILURE_TRANSIENT, error);
}

/* The lock went while the backup ran: nothing was changed yet, so plan again under a new one. */
static enum outcome lock_gone_before(struct attempt *a)
{
	log_event(LOG_WARN, "lock.lost",
		  LOG_FIELDS(LF_S("phase", a->f->phase), LF_S("error", a->lock.lost), LF_B("changed", false)),
		  "the migration lock was lost before migrating (%s); nothing was changed: locking "
		  "and planning again", a->lock.lost);
	snprintf(a->lost, sizeof a->lost, "the migration lock was lost before migrating");
	return OUT_LOST;
}

/* The lock went while migrating: the source stopped the work (a command's process group is
 * killed). Transient, and not retried here: the next attempt plans again under a new lock. */
static enum outcome lock_gone_during(struct attempt *a, const struct migrate_outcome *out)
{
	log_event(LOG_ERROR, "lock.lost",
		  LOG_FIELDS(LF_S("phase", "migrate"), LF_S("error", out->how), LF_B("changed", true),
			     LF_B("transient", true), LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
		  "the migration lock was lost while migrating (%s); the migration was stopped at once, "
		  "so that no other replica runs it at the same time. The next attempt plans again "
		  "under a new lock; find what ends idle sessions (idle_in_transaction_session_timeout, "
		  "a pooler's idle_transaction_timeout, a session killer) if it repeats",
		  out->how);
	snprintf(a->f->message, sizeof a->f->message, "%s", out->how);
	return fail(a, MTR_EXIT_TEMPFAIL, "migrate", true, "the migration lock was lost while migrating");
}

/* Phase 7: apply what the locked plan found. */
static enum outcome phase_migrate(struct attempt *a)
{
	struct migrate_outcome out = {0};
	if (!lock_held(&a->lock, true))
		return lock_gone_before(a);
	status_set(STATUS_MIGRATING, "migrate", a->run + 1, NULL);
	/* Our connection may idle while a migration command runs; a server-side idle timeout must
	 * not drop it (the setting is unknown before PostgreSQL 14: then there is nothing to
	 * keep). Never through a transaction pooler: the setting would stay with a pooled
	 * session that other clients get. */
	struct pg_error ignored;
	if (a->pooling != POOLING_TRANSACTION &&
	    !pg_command(a->conn, "SET idle_session_timeout = 0", 0, NULL, PG_QUERY_MS, -1, &ignored)) {
	}
	int64_t migrate_start = now_ms();
	a->ctx.progress = progress_start(a->target, a->cfg->progress_interval_ms);
	a->src->migrate(a->src->self, a->conn, &a->ctx, &out);
	progress_stop(a->ctx.progress);
	a->ctx.progress = NULL;
	a->rep->migrate_ms += now_ms() - migrate_start;
	a->rep->applied = out.result == MIGRATE_OK;
	a->f->phase = "migrate";
	switch (out.result) {
	case MIGRATE_OK:
		return OUT_OK;
	case MIGRATE_STOPPED:
		a->code = stopped("migrate", out.signo);
		return OUT_FAILED;
	case MIGRATE_FAILED:
		return migrate_failed(a, &out);
	case MIGRATE_LOCK_LOST:
		return lock_gone_during(a, &out);
	case MIGRATE_LOST:
	default:
		snprintf(a->lost, sizeof a->lost, "%s", out.how);
		return OUT_LOST;
	}
}

/* A stop signal ends any round trip at once (pg.c): a phase that ended (failed, lost the
 * database, or went on) while one is pending was stopped, and exits as stopped, not retried
 * or counted as a failure. */
static enum outcome stop_wins(struct attempt *a, enum outcome o)
{
	if (o == OUT_DONE || (o == OUT_FAILED && a->code >= MTR_EXIT_SIGNAL_BASE))
		return o;
	int sig = signals_take_stop();
	if (!sig)
		return o;
	a->code = stopped(a->f->phase ? a->f->phase : "wait", sig);
	return OUT_FAILED;
}

/* Every phase of one attempt, in order, until one does not say "go on". After OUT_AGAIN (the
 * lock's holder finished) the quiet look and what follows it are made again. */
static enum outcome attempt_once(struct attempt *a)
{
	static enum outcome (*const phases[])(struct attempt *) = {
		phase_wait, phase_quick_plan, phase_lock, phase_plan, phase_pooler, phase_backup,
		phase_migrate,
	};
	for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
		enum outcome o = stop_wins(a, phases[i](a));
		if (o == OUT_AGAIN) {
			a->relook = true;
			i = 0; /* phase_quick_plan next */
			continue;
		}
		if (o != OUT_OK)
			return o;
		if (phases[i] == phase_wait && a->cfg->check) { /* no lock, no change: a report */
			a->f->phase = "check";
			a->code = a->src->plan(a->src->self, a->conn, &a->ctx, PLAN_REPORT, &a->pending);
			return stop_wins(a, a->code ? OUT_FAILED : OUT_DONE);
		}
	}
	return OUT_DONE;
}

/* After OUT_LOST: within --retries, a pause; then the caller starts over from the wait. */
static enum outcome retry_lost(struct attempt *a, long attempt, struct backoff *b)
{
	if (!lock_release(&a->lock)) {
		/* lost already: the next attempt takes it anew */
	}
	PQfinish(a->conn);
	a->conn = NULL;
	if (attempt >= a->cfg->retries) {
		log_event(LOG_ERROR, "migrate.failed",
			  LOG_FIELDS(LF_B("transient", true), LF_I("attempts", attempt + 1),
				     LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
			  "%s, %ld times; giving up (raise --retries, or check why the database goes away)",
			  a->lost, attempt + 1);
		return fail(a, MTR_EXIT_TEMPFAIL, "migrate", true, a->lost);
	}
	int64_t delay = backoff_next(b);
	log_event(LOG_WARN, "migrate.retry",
		  LOG_FIELDS(LF_I("attempt", attempt + 1), LF_I("retries", a->cfg->retries),
			     LF_I("delay_ms", delay)),
		  "%s; waiting for the database and retrying", a->lost);
	int sig = signals_sleep(a->sigs, delay);
	if (sig) {
		a->code = stopped("migrate", sig);
		return OUT_FAILED;
	}
	return OUT_OK;
}

/* One run of the phases up to (not including) the app, with in-process retries of a lost
 * connection. Returns 0, or the exit code with f saying what failed; the connection (and
 * with it the lock, for the next replica) is released either way. */
static int migrate_once(const struct config *cfg, const struct sigstate *sigs, struct source *src,
			const struct pg_target *target, long run, char *backup_path, struct failure *f,
			struct run_report *rep)
{
	memset(f, 0, sizeof *f);
	memset(rep, 0, sizeof *rep);
	struct attempt a = {.cfg = cfg, .sigs = sigs, .src = src, .target = target, .run = run,
			    .backup_path = backup_path, .f = f, .rep = rep};
	struct backoff retry_backoff;
	backoff_init(&retry_backoff, 1000, 30000, random_u64());
	enum outcome o;
	for (long attempt = 0;; attempt++) {
		a.ctx = (struct source_ctx){.cfg = cfg, .target = target, .sigs = sigs,
					    .attempt = attempt, .info = &a.info, .lock = &a.lock};
		a.waiting = (struct lock_waiting){0};
		a.locking = false;
		a.relook = false;
		o = attempt_once(&a);
		if (o != OUT_LOST || retry_lost(&a, attempt, &retry_backoff) != OUT_OK)
			break;
	}
	/* Released on every path (failures and stop signals too), its COMMIT checked. */
	if (!lock_release(&a.lock) && o == OUT_DONE)
		log_event(LOG_WARN, "lock.lost",
			  LOG_FIELDS(LF_S("phase", "release"), LF_S("error", a.lock.lost), LF_B("changed", true)),
			  "the migration lock ended before the tool released it (%s), after the "
			  "migrations had finished",
			  a.lock.lost);
	if (o == OUT_DONE && !cfg->check) /* success: forget the last failure */
		breaker_clear(cfg, a.conn, a.locking ? NULL : &a.look, a.failure_col);
	int code = o == OUT_DONE ? MTR_EXIT_OK : a.code;
	rep->pending = a.pending;
	snprintf(rep->from, sizeof rep->from, "%s", a.info.from);
	snprintf(rep->to, sizeof rep->to, "%s", a.info.to);
	if (code && a.info.fingerprint)
		snprintf(f->fingerprint, sizeof f->fingerprint, "%016llx",
			 (unsigned long long)a.info.fingerprint);
	f->code = code;
	PQfinish(a.conn);
	look_free(&a.look);
	return code;
}

/* --on-failure=exit: a permanent failure seen again pauses before exiting, longer each time,
 * so that even an immediate restart policy cannot hammer the database. */
static int exit_after(const struct config *cfg, const struct pg_target *target,
		      const struct failure *f, const struct sigstate *sigs)
{
	if (f->transient)
		return f->code; /* the orchestrator's own backoff is right for these */
	struct failure_memory m;
	breaker_record(cfg, target, f, &m);
	int64_t pause = breaker_pause(m.count, cfg->failure_backoff_ms, cfg->failure_backoff_max_ms);
	if (pause > 0) {
		char first[UTC_LEN];
		utc_format(m.first_ms, UTC_ISO, first, sizeof first);
		log_event(LOG_WARN, m.count > 1 ? "failure.repeat" : "failure.pause",
			  LOG_FIELDS(LF_I("count", m.count), LF_S("first", first), LF_S("phase", f->phase),
				     LF_I("exit_code", f->code), LF_I("pause_ms", pause)),
			  "%s (%ld time%s in a row since %s); pausing %llds before exiting, so that "
			  "restarts do not hammer the database (longer each time it repeats)",
			  m.count > 1 ? "the same failure again" : "a permanent failure", m.count,
			  m.count == 1 ? "" : "s", first, (long long)(pause / 1000));
		(void)signals_sleep(sigs, pause); /* a stop signal ends the pause, not the exit code */
	}
	return f->code;
}

enum hold_result { HOLD_RETRY, HOLD_STOP };

/* --on-failure=hold: stay up without the app; retry on a doubling schedule, or at once on
 * SIGHUP; a reminder line now and then; SIGTERM/SIGINT end it. */
static enum hold_result hold_after(const struct config *cfg, const struct failure *f,
				   const struct sigstate *sigs, int64_t *interval, long run)
{
	int64_t start = now_ms(), retry_at = start + *interval, remind_at = start + cfg->hold_reminder_ms;
	status_set(STATUS_HOLDING, f->phase, run + 1, f->error);
	log_event(LOG_WARN, "failure.hold",
		  LOG_FIELDS(LF_S("phase", f->phase), LF_I("exit_code", f->code),
			     LF_I("retry_in_ms", *interval), LF_I("pid", getpid())),
		  "holding after the failure above: the app is not started; retrying in %llds, or "
		  "at once on SIGHUP (docker kill -s HUP <container>); SIGTERM exits with %d",
		  (long long)(*interval / 1000), f->code);
	int64_t next = *interval * 2;
	*interval = next < cfg->hold_max_interval_ms ? next : cfg->hold_max_interval_ms;
	for (;;) {
		int64_t now = now_ms();
		if (now >= retry_at)
			return HOLD_RETRY;
		if (now >= remind_at) {
			log_event(LOG_WARN, "failure.holding",
				  LOG_FIELDS(LF_S("phase", f->phase), LF_I("exit_code", f->code),
					     LF_I("held_ms", now - start), LF_I("retry_in_ms", retry_at - now)),
				  "still holding after a %s failure (exit %d): %s", f->phase, f->code,
				  f->error);
			remind_at = now + cfg->hold_reminder_ms;
		}
		int64_t wake = retry_at < remind_at ? retry_at : remind_at;
		int64_t wait = wake - now_ms();
		struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
		int sig = wait > 0 ? sigtimedwait(&sigs->blocked, NULL, &ts) : 0;
		if (sig == SIGHUP) {
			log_event(LOG_INFO, "failure.retry", LOG_FIELDS(LF_S("signal", "SIGHUP")),
				  "SIGHUP: trying again now");
			return HOLD_RETRY;
		}
		if (sig > 0 && signals_is_stop(sig)) {
			log_event(LOG_WARN, "stop.signal",
				  LOG_FIELDS(LF_S("phase", "hold"), LF_S("signal", signals_name(sig)),
					     LF_I("exit_code", f->code)),
				  "stopped by %s while holding; exiting with the failure's code %d",
				  signals_name(sig), f->code);
			return HOLD_STOP;
		}
	}
}

/* The webhook report of a run that ended with `code` (0: success). Returns the number of a
 * stop signal that arrived meanwhile (the report is cut short), else 0. */
static int notify(const struct config *cfg, const struct run_report *rep, const struct failure *f,
		   int code, const char *backup_path, int64_t start)
{
	struct notify_report n = {
		.event = code ? "failure" : "success",
		.phase = code ? f->phase : "migrate",
		.exit_code = code,
		.message = f->message[0] ? f->message : f->error,
		.sqlstate = f->sqlstate,
		.file = f->file,
		.revision = f->revision,
		.from = rep->from,
		.to = rep->to,
		.backup_path = backup_path,
		.database = rep->database,
		.wait_ms = rep->wait_ms,
		.backup_ms = rep->backup_ms,
		.migrate_ms = rep->migrate_ms,
		.total_ms = now_ms() - start,
	};
	return notify_send(cfg, &n);
}

/* The end of a consistent --check: what it found, and the exit code a CI gate reads. */
static int check_done(const struct config *cfg, const struct run_report *rep)
{
	int code = rep->pending ? (int)cfg->pending_exit_code : MTR_EXIT_OK;
	log_event(LOG_INFO, "pipeline.done",
		  LOG_FIELDS(LF_S("mode", "check"), LF_I("pending", rep->pending), LF_I("exit_code", code)),
		  "%zu pending, check mode, nothing changed%s", rep->pending,
		  rep->pending && code ? " (--pending-exit-code)" : "");
	return code;
}

/* Everything before the first phase: secrets known to the logger, the target and the source
 * checked, the start event. Returns 0, or 64 (logged). */
static int pipeline_setup(const struct config *cfg, struct pg_target *target, struct source *src)
{
	char err[512];
	register_secrets(cfg);
	status_init(cfg->status_file);
	if (cfg->backup_upload_url || cfg->notify_url.n || cfg->wait_http.n)
		http_setup(cfg->ca_file); /* libcurl's start-up costs time: only when it is used */
	struct pg_error perr;
	if (pg_check_target(target, &perr) != PG_OK) {
		log_event(LOG_ERROR, "config.invalid",
			  LOG_FIELDS(LF_S("option", cfg->database_url_from), LF_S("error", perr.msg),
				     LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s: not a valid PostgreSQL URL or conninfo string (%s); %s",
			  cfg->database_url_from, perr.msg, URL_HINT);
		return MTR_EXIT_USAGE;
	}
	if (!source_open(cfg, src, err, sizeof err)) {
		log_event(LOG_ERROR, "config.invalid", LOG_FIELDS(LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s", err);
		return MTR_EXIT_USAGE;
	}
	const char *mode = cfg->check ? "check" : cfg->migrate_only ? "migrate-only" : "exec";
	log_event(LOG_INFO, "pipeline.start",
		  LOG_FIELDS(LF_S("version", MTR_VERSION), LF_I("pid", getpid()), LF_S("mode", mode),
			     LF_S("database_from", cfg->database_url_from), LF_S("source", src->kind),
			     LF_S(src->def->log_field, src->describe),
			     LF_S("on_failure", cfg->on_failure == ON_FAILURE_HOLD ? "hold" : "exit")),
		  "migrate-then-run %s starting", MTR_VERSION);
	if (cfg->backup_defaulted_off)
		log_event(LOG_INFO, "backup.off", NULL,
			  "no pg_dump on PATH: migrating without a backup (install the PostgreSQL client, "
			  "or say --backup=off to silence this)");
	return 0;
}

/* A failed run under the --on-failure policy: -1 to run again (holding), else the exit
 * code. A check, a configuration error or a stop signal ends here, whatever the policy. */
static int after_failure(const struct config *cfg, const struct pg_target *target,
			 const struct failure *f, const struct run_report *rep, int code,
			 const char *backup_path, int64_t start, int64_t *hold_interval, long run,
			 const struct sigstate *sigs)
{
	int sig = 0;
	if (!cfg->check && code < MTR_EXIT_SIGNAL_BASE)
		sig = notify(cfg, rep, f, code, backup_path, start);
	if (sig)
		log_event(LOG_WARN, "stop.signal",
			  LOG_FIELDS(LF_S("phase", "notify"), LF_S("signal", signals_name(sig)),
				     LF_I("exit_code", code)),
			  "stopped by %s while reporting the failure; exiting with its code %d",
			  signals_name(sig), code);
	if (sig || cfg->check || code == MTR_EXIT_USAGE || code >= MTR_EXIT_SIGNAL_BASE)
		return code;
	if (cfg->on_failure == ON_FAILURE_EXIT)
		return exit_after(cfg, target, f, sigs);
	return hold_after(cfg, f, sigs, hold_interval, run) == HOLD_STOP ? code : -1;
}

/* The phases before the app, run again while holding after a failure. Returns 0 when the
 * app may start, else the exit code; a consistent --check returns its own (its end logged). */
static int migrate_until_done(const struct config *cfg, const struct sigstate *sigs,
			      struct source *src, const struct pg_target *target)
{
	int64_t start = now_ms(), hold_interval = cfg->hold_interval_ms;
	/* One backup per process: retries while holding keep the one from before the failure
	 * (and the rotation cannot push it out). */
	char backup_path[BACKUP_PATH_MAX] = "";
	struct run_report rep;
	for (long run = 0;; run++) {
		struct failure f;
		int code = migrate_once(cfg, sigs, src, target, run, backup_path, &f, &rep);
		if (code == 0 && cfg->check)
			return check_done(cfg, &rep);
		if (code == 0) {
			int sig = rep.applied ? notify(cfg, &rep, &f, 0, backup_path, start) : 0;
			return sig ? stopped("notify", sig) : 0; /* before the app: a stop is a stop */
		}
		code = after_failure(cfg, target, &f, &rep, code, backup_path, start, &hold_interval,
				     run, sigs);
		if (code >= 0)
			return code;
	}
}

/* Phase 8: exec the app, or supervise it as PID 1 / with --init. */
static int run_app(const struct config *cfg, const struct sigstate *sigs)
{
	status_set(STATUS_RUNNING, "run", 1, NULL);
	const struct user_ids *user = cfg->user ? &cfg->run_as : NULL; /* the migration ran as us */
	if (cfg->init == 1 || (cfg->init == -1 && getpid() == 1)) {
		struct init_opts io = {cfg->stop_timeout_ms, cfg->signal_group, user};
		init_reexec(cfg->app_argv, &io, sigs, cfg->log_format, cfg->log_level);
		return init_run(cfg->app_argv, &io, sigs);
	}
	return run_exec(cfg->app_argv, user, sigs);
}

int pipeline_run(const struct config *cfg, const struct sigstate *sigs)
{
	struct source src = {0};
	struct pg_target target = {cfg->database_url, cfg->pgpassword};
	int code = pipeline_setup(cfg, &target, &src);
	if (code)
		return code;
	code = migrate_until_done(cfg, sigs, &src, &target);
	src.destroy(src.self);
	if (code || cfg->check) /* a check's end is logged with what it found */
		return code;
	if (cfg->migrate_only) {
		log_event(LOG_INFO, "pipeline.done", NULL, "migrations are up to date; exiting (--migrate-only)");
		return MTR_EXIT_OK;
	}
	return run_app(cfg, sigs);
}
