/* The phases in order: wait, migrate, run. Decides what is logged, retried, and the exit code. */
#include "mtr/pipeline.h"
#include "mtr/argv.h"
#include "mtr/exitcode.h"
#include "mtr/init.h"
#include "mtr/log.h"
#include "mtr/redact.h"
#include "mtr/retry.h"
#include "mtr/run.h"
#include "mtr/source_cmd.h"
#include "mtr/wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <string.h>
#include <unistd.h>

#define URL_HINT                                                                              \
	"expected postgresql://app@db:5432/app with the password after the user (app:PASSWORD) " \
	"and its special characters percent-encoded (/ as %2F, @ as %40, : as %3A)"

/* Everything that may carry a password is known to the logger before anything is logged. */
static void register_secrets(const struct config *cfg)
{
	if (cfg->database_url) {
		char *pw = redact_url_password(cfg->database_url);
		log_add_secret(pw);
		free(pw);
		/* A password with an unencoded '/' ends libpq's authority early: whatever lies
		 * between "user:" and the last '@' is hidden too, as it is meant as a password. */
		const char *sep = strstr(cfg->database_url, "://");
		const char *at = strrchr(cfg->database_url, '@');
		const char *colon = sep ? strchr(sep + 3, ':') : NULL;
		if (colon && at && colon < at) {
			char *loose = xstrndup(colon + 1, (size_t)(at - colon - 1));
			log_add_secret(loose);
			free(loose);
		}
		/* A conninfo string: password=... is hidden by pattern. */
	}
	log_add_secret(cfg->pgpassword);
	log_add_secret(getenv("PGPASSWORD"));
}

static int stopped(const char *phase, int signo)
{
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

/* A short-lived connection for a quick look after the migration command ran (NULL if none). */
static PGconn *quick_connect(const struct pg_target *t, int64_t timeout_ms)
{
	enum pg_status st;
	struct pg_error err;
	return pg_connect(t, timeout_ms, -1, &st, &err);
}

/* Did the database go away while the command ran? It is unreachable now, or the server
 * restarted (its start time changed). Our own connection was closed while the command ran,
 * so an idle-session timeout cannot pass for an outage. */
static bool server_went_away(const struct pg_target *t, const char *start_time)
{
	char now_start[64];
	struct pg_error err;
	PGconn *conn = quick_connect(t, 5000);
	if (!conn)
		return true;
	bool away = !pg_query_value(conn, "SELECT pg_catalog.pg_postmaster_start_time()::pg_catalog.text",
				    5000, -1, now_start, sizeof now_start, &err) ||
		    strcmp(now_start, start_time) != 0;
	PQfinish(conn);
	return away;
}

/* After the migration command was stopped: its sessions may still be running a statement
 * the server has not noticed is orphaned (a dead client is only seen at the next write).
 * Ending them rolls their transactions back now, not when the statement finishes. */
static void end_sessions(const struct pg_target *t, const char *appname)
{
	PGconn *conn = quick_connect(t, 3000);
	if (!conn)
		return;
	const char *params[1] = {appname};
	PGresult *res = PQexecParams(conn,
				     "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) "
				     "FROM pg_catalog.pg_stat_activity "
				     "WHERE application_name = $1 AND pid <> pg_catalog.pg_backend_pid()",
				     1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) > 0)
		log_event(LOG_INFO, "migrate.rollback",
			  LOG_FIELDS(LF_I("sessions", atoi(PQgetvalue(res, 0, 0)))),
			  "ended the stopped migration command's database sessions; their "
			  "transactions are rolled back");
	PQclear(res);
	PQfinish(conn);
}

/* A name no other replica uses, even when every replica is PID 1 of its own container. */
static void session_name(char *buf, size_t len)
{
	uint64_t nonce = 0;
	if (getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != (ssize_t)sizeof nonce)
		nonce = (uint64_t)now_ms() * 6364136223846793005ULL ^ (uint64_t)getpid();
	snprintf(buf, len, "migrate-then-run/migrate/%016llx", (unsigned long long)nonce);
}

static bool is_url(const char *s)
{
	return s && (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0);
}

int pipeline_run(const struct config *cfg, const struct sigstate *sigs)
{
	char err[512];
	char **mig_argv = NULL;
	int code = MTR_EXIT_OK;
	PGconn *conn = NULL;
	register_secrets(cfg);

	struct pg_target target = {cfg->database_url, cfg->pgpassword};
	struct pg_error perr;
	if (pg_check_target(&target, &perr) != PG_OK) {
		log_event(LOG_ERROR, "config.invalid",
			  LOG_FIELDS(LF_S("option", cfg->database_url_from), LF_S("error", perr.msg),
				     LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s: not a valid PostgreSQL URL or conninfo string (%s); %s",
			  cfg->database_url_from, perr.msg, URL_HINT);
		return MTR_EXIT_USAGE;
	}
	if (!source_cmd_argv(cfg, &mig_argv, err, sizeof err)) {
		log_event(LOG_ERROR, "config.invalid",
			  LOG_FIELDS(LF_S("option", "--migrate-cmd"), LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s", err);
		return MTR_EXIT_USAGE;
	}
	char *mig_cmd = argv_join(mig_argv);
	log_event(LOG_INFO, "pipeline.start",
		  LOG_FIELDS(LF_S("version", MTR_VERSION), LF_I("pid", getpid()),
			     LF_S("mode", cfg->migrate_only ? "migrate-only" : "exec"),
			     LF_S("database_from", cfg->database_url_from),
			     LF_S("migrate_command", mig_cmd)),
		  "migrate-then-run %s starting", MTR_VERSION);

	struct wait_opts wopts = {cfg->wait_timeout_ms, cfg->wait_max_interval_ms};
	struct backoff retry_backoff;
	backoff_init(&retry_backoff, 1000, 30000, (uint64_t)getpid() ^ (uint64_t)now_ms());
	for (long attempt = 0;; attempt++) {
		struct wait_result w;
		wait_for_database(&target, &wopts, sigs, &w);
		if (w.status != WAIT_READY) {
			code = wait_failed(cfg, &w);
			goto done;
		}
		conn = w.conn;
		log_event(LOG_INFO, "wait.ready",
			  LOG_FIELDS(LF_I("attempts", w.attempts), LF_I("elapsed_ms", w.elapsed_ms),
				     LF_S("server_version", PQparameterStatus(conn, "server_version")),
				     LF_S("database", PQdb(conn))),
			  "database is ready");

		char *url = is_url(cfg->database_url) ? xstrdup(cfg->database_url) : pg_conn_url(conn);
		char appname[64];
		session_name(appname, sizeof appname);
		char **env = source_cmd_env(url, cfg->pgpassword, appname);
		free(url);
		/* Not held while the tool runs: an idle connection can be cut (idle_session_timeout,
		 * a pooler, NAT) and would then look like an outage. */
		PQfinish(conn);
		conn = NULL;
		log_event(LOG_INFO, "migrate.start",
			  LOG_FIELDS(LF_S("command", mig_cmd), LF_I("attempt", attempt + 1)),
			  "running the migration command");
		struct cmd_outcome out;
		bool started = source_cmd_run(mig_argv, cfg->migrate_cwd, env, sigs, cfg->stop_timeout_ms,
					      &out);
		argv_free(env);
		if (!started) {
			log_event(LOG_ERROR, "migrate.failed",
				  LOG_FIELDS(LF_S("command", mig_cmd), LF_S("error", out.proc.err),
					     LF_I("exit_code", MTR_EXIT_USAGE)),
				  "%s; check --migrate-cmd / --python / --migrate-cwd and the image's PATH",
				  out.proc.err);
			code = MTR_EXIT_USAGE;
			goto done;
		}
		if (out.proc.stop_signal) {
			end_sessions(&target, appname);
			code = stopped("migrate", out.proc.stop_signal);
			goto done;
		}
		if (out.proc.outcome == PROC_EXITED && out.proc.exit_code == 0) {
			log_event(LOG_INFO, "migrate.done",
				  LOG_FIELDS(LF_I("duration_ms", out.proc.duration_ms)),
				  "migrations applied");
			break;
		}
		char how[64];
		if (out.proc.outcome == PROC_SIGNALED)
			snprintf(how, sizeof how, "was killed by %s", signals_name(out.proc.term_signal));
		else
			snprintf(how, sizeof how, "exited with status %d", out.proc.exit_code);
		bool lost = out.lost_connection || server_went_away(&target, w.start_time);
		if (!lost) {
			log_event(LOG_ERROR, "migrate.failed",
				  LOG_FIELDS(LF_S("command", mig_cmd),
					     LF_I("status", out.proc.outcome == PROC_EXITED ? out.proc.exit_code : -1),
					     LF_S("signal", out.proc.outcome == PROC_SIGNALED
								    ? signals_name(out.proc.term_signal)
								    : NULL),
					     LF_S("error", out.last_error),
					     LF_I("duration_ms", out.proc.duration_ms),
					     LF_I("exit_code", MTR_EXIT_MIGRATION)),
				  "the migration command %s; the app was not started. Its output is in "
				  "the migrate.output events above%s%s",
				  how, out.last_error[0] ? "; last error: " : "", out.last_error);
			code = MTR_EXIT_MIGRATION;
			goto done;
		}
		if (attempt >= cfg->retries) {
			log_event(LOG_ERROR, "migrate.failed",
				  LOG_FIELDS(LF_S("command", mig_cmd), LF_B("transient", true),
					     LF_I("attempts", attempt + 1),
					     LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
				  "the migration command %s after the database connection was lost, "
				  "%ld times; giving up (raise --retries, or check why the server restarts)",
				  how, attempt + 1);
			code = MTR_EXIT_TEMPFAIL;
			goto done;
		}
		int64_t delay = backoff_next(&retry_backoff);
		log_event(LOG_WARN, "migrate.retry",
			  LOG_FIELDS(LF_I("attempt", attempt + 1), LF_I("retries", cfg->retries),
				     LF_I("delay_ms", delay)),
			  "the migration command %s after the database connection was lost; "
			  "waiting for the database and retrying",
			  how);
		int sig = signals_sleep(sigs, delay);
		if (sig) {
			code = stopped("migrate", sig);
			goto done;
		}
	}
	argv_free(mig_argv);
	free(mig_cmd);
	if (cfg->migrate_only) {
		log_event(LOG_INFO, "pipeline.done", NULL, "migrations are up to date; exiting (--migrate-only)");
		return MTR_EXIT_OK;
	}
	if (cfg->init == 1 || (cfg->init == -1 && getpid() == 1)) {
		struct init_opts io = {cfg->stop_timeout_ms, cfg->signal_group};
		init_reexec(cfg->app_argv, &io, sigs, cfg->log_format, cfg->log_level);
		return init_run(cfg->app_argv, &io, sigs);
	}
	return run_exec(cfg->app_argv, sigs);
done:
	PQfinish(conn);
	argv_free(mig_argv);
	free(mig_cmd);
	return code;
}
