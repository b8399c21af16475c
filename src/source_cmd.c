/* Migrations by an external command (Alembic, Flyway, anything): argv, environment, outcome. */
#include "mtr/source_cmd.h"
#include "mtr/argv.h"
#include "mtr/bookkeeping.h"
#include "mtr/exitcode.h"
#include "mtr/fastpath.h"
#include "mtr/fold.h"
#include "mtr/tools.h"
#include "mtr/log.h"
#include "mtr/source.h"
#include "mtr/strbuf.h"

#include <unistd.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

bool source_cmd_argv(const struct config *cfg, char ***argv, char *err, size_t errlen)
{
	if (cfg->migrate_cmd) {
		char msg[256];
		int argc;
		if (argv_split(cfg->migrate_cmd, argv, &argc, msg, sizeof msg))
			return true;
		set_err(err, errlen, "--migrate-cmd: %s", msg);
		return false;
	}
	char **v = xcalloc(10, sizeof *v);
	int n = 0;
	v[n++] = xstrdup(cfg->python);
	v[n++] = xstrdup("-m");
	v[n++] = xstrdup("alembic");
	v[n++] = xstrdup("-c");
	v[n++] = xstrdup(cfg->alembic_ini);
	if (cfg->alembic_section && strcmp(cfg->alembic_section, "alembic") != 0) {
		v[n++] = xstrdup("-n"); /* --alembic-section: the same section for Alembic */
		v[n++] = xstrdup(cfg->alembic_section);
	}
	v[n++] = xstrdup("upgrade");
	v[n++] = xstrdup("heads"); /* the same as head for one head; right for labeled branches */
	*argv = v;
	return true;
}

static bool env_is(const char *entry, const char *name)
{
	size_t n = strlen(name);
	return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

char **source_cmd_env(const char *url, const char *pgpassword, const char *appname)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = xcalloc(n + 4, sizeof *env);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if ((url && env_is(environ[i], "DATABASE_URL")) ||
		    (pgpassword && env_is(environ[i], "PGPASSWORD")) ||
		    (appname && env_is(environ[i], "PGAPPNAME")))
			continue;
		env[o++] = xstrdup(environ[i]);
	}
	if (url)
		env[o++] = xasprintf("DATABASE_URL=%s", url);
	if (pgpassword)
		env[o++] = xasprintf("PGPASSWORD=%s", pgpassword);
	if (appname)
		env[o++] = xasprintf("PGAPPNAME=%s", appname);
	env[o] = NULL;
	return env;
}

bool source_cmd_line_lost_connection(const char *line)
{
	static const char *const lost[] = {
		"server closed the connection unexpectedly",
		"terminating connection due to administrator command",
		"the database system is shutting down",
		"the database system is starting up",
		"the database system is in recovery mode",
		"SSL SYSCALL error: EOF detected",
		"connection already closed",
		"no connection to the server"};
	for (size_t i = 0; i < sizeof lost / sizeof lost[0]; i++)
		if (strstr(line, lost[i]))
			return true;
	return false;
}

static bool looks_like_error(const char *line)
{
	return strstr(line, "Error") || strstr(line, "ERROR") || strstr(line, "error:") ||
	       strstr(line, "FAILED") || strstr(line, "FATAL");
}

const char *source_cmd_line_sqlstate(const char *line)
{
	static const struct {
		const char *name, *state;
	} classes[] = {
		{"DuplicateColumn", "42701"}, {"DuplicateTable", "42P07"}, {"DuplicateObject", "42710"},
		{"DuplicateSchema", "42P06"}, {"UndefinedTable", "42P01"}, {"UndefinedColumn", "42703"},
		{"UndefinedObject", "42704"}, {"UndefinedFunction", "42883"}, {"SyntaxError", "42601"},
		{"UniqueViolation", "23505"}, {"NotNullViolation", "23502"},
		{"ForeignKeyViolation", "23503"}, {"CheckViolation", "23514"},
		{"LockNotAvailable", "55P03"}, {"DeadlockDetected", "40P01"},
		{"SerializationFailure", "40001"}, {"InsufficientPrivilege", "42501"},
	};
	static const char *const prefixes[] = {"psycopg2.errors.", "psycopg.errors.",
					       "asyncpg.exceptions."};
	for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
		const char *hit = strstr(line, prefixes[k]);
		if (!hit)
			continue;
		hit += strlen(prefixes[k]);
		for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
			size_t n = strlen(classes[i].name);
			if (strncmp(hit, classes[i].name, n) != 0)
				continue;
			/* asyncpg spells them DuplicateColumnError */
			if (!isalnum((unsigned char)hit[n]) || strncmp(hit + n, "Error", 5) == 0)
				return classes[i].state;
		}
	}
	return NULL;
}

/* One run of the command: what it did, its output being grouped into events, and where its
 * progress is told. */
struct run {
	struct cmd_outcome *out;
	struct fold fold;
	struct progress_watch *progress;
	const char *appname; /* the application_name of its sessions */
	char **revs;         /* the revisions its output says it applied, NULL-terminated */
	size_t nrevs;
};

/* One migrate.output event: a line, or a folded traceback (lines) under its exception line. */
static void emit_output(void *ctx, const char *stream, enum log_level level, const char *msg,
			const char *const *lines)
{
	(void)ctx;
	if (lines)
		log_event(level, "migrate.output",
			  LOG_FIELDS(LF_S("stream", stream), LF_S("line", msg), LF_L("lines", lines)),
			  "%s", msg);
	else
		log_event(level, "migrate.output", LOG_FIELDS(LF_S("stream", stream), LF_S("line", msg)),
			  "%s", msg);
}

/* Alembic: "INFO  [alembic.runtime.migration] Running upgrade 0003 -> 0004, message": the
 * revision becomes the step migrate.progress names, and one the command applied. */
static void note_upgrade(struct run *r, const char *line)
{
	const char *run = strstr(line, "Running upgrade ");
	const char *arrow = run ? strstr(run, "-> ") : NULL;
	if (!arrow)
		return;
	size_t n = strcspn(arrow + 3, ", ");
	snprintf(r->out->revision, sizeof r->out->revision, "%.*s", (int)n, arrow + 3);
	r->revs = xrealloc(r->revs, (r->nrevs + 2) * sizeof *r->revs);
	r->revs[r->nrevs++] = xstrdup(r->out->revision);
	r->revs[r->nrevs] = NULL;
	char step[160];
	snprintf(step, sizeof step, "upgrade %.*s", (int)strcspn(run + 16, ","), run + 16);
	progress_watch_app(r->progress, r->appname, step);
}

static void on_line(void *ctx, const char *stream, const char *line)
{
	struct run *r = ctx;
	struct cmd_outcome *out = r->out;
	const char *state = source_cmd_line_sqlstate(line);
	if (state && !out->sqlstate[0])
		snprintf(out->sqlstate, sizeof out->sqlstate, "%s", state);
	note_upgrade(r, line);
	if (source_cmd_line_lost_connection(line))
		out->lost_connection = true;
	if (looks_like_error(line))
		snprintf(out->last_error, sizeof out->last_error, "%s", line);
	fold_line(&r->fold, stream, line, emit_output, NULL);
}

/* How often the lock is looked at while the command runs (its connection turning readable),
 * and how often it must answer a query (a network gone silent says nothing). */
#define WATCH_MS 200
#define PING_EVERY_MS 5000

/* The command runs only while the lock holds: another replica may take it the moment it is
 * gone, and two migration commands at once is what the lock exists to prevent. */
static bool watch_lock(void *ctx)
{
	struct cmd_outcome *out = ((struct run *)ctx)->out;
	int64_t now = now_ms();
	bool ping = now >= out->next_ping;
	if (ping)
		out->next_ping = now + PING_EVERY_MS;
	if (lock_held(out->lock, ping))
		return true;
	out->lock_lost = true;
	return false;
}

static bool run_command(char *const *argv, const char *cwd, char *const *envp,
			const struct sigstate *sigs, int64_t stop_grace_ms, struct lock *lock,
			struct run *r)
{
	memset(r->out, 0, sizeof *r->out);
	struct proc_spec spec = {
		.argv = argv, .cwd = cwd, .envp = envp, .sigs = sigs, .stop_grace_ms = stop_grace_ms};
	if (lock && lock->conn) {
		r->out->lock = lock;
		r->out->next_ping = now_ms() + PING_EVERY_MS;
		spec.watch = watch_lock;
		spec.watch_ms = WATCH_MS;
	}
	bool started = proc_run(&spec, on_line, r, &r->out->proc);
	progress_idle(r->progress); /* it is over: no progress line after its outcome */
	fold_flush(&r->fold, emit_output, NULL);
	return started;
}

static void run_free(struct run *r)
{
	argv_free(r->revs);
	r->revs = NULL;
}

/* A command that exited 0: what it says it applied, when it says so. */
static void log_finished(const struct run *r)
{
	const struct cmd_outcome *out = r->out;
	if (r->nrevs == 0) {
		log_event(LOG_INFO, "migrate.done", LOG_FIELDS(LF_I("duration_ms", out->proc.duration_ms)),
			  "the migration command finished; its output does not say what it applied");
		return;
	}
	struct strbuf list = STRBUF_INIT;
	for (size_t i = 0; i < r->nrevs; i++)
		sb_addf(&list, "%s%s", i ? ", " : "", r->revs[i]);
	log_event(LOG_INFO, "migrate.done",
		  LOG_FIELDS(LF_I("duration_ms", out->proc.duration_ms),
			     LF_L("applied_revisions", (const char *const *)r->revs)),
		  "the migration command finished; its output reports applying %s", list.s);
	sb_free(&list);
}

struct cmd_source {
	char **argv;
	char *joined; /* for logs */
	struct cmd_spec spec; /* what a preset adds (tools.h); zero for a plain command */
	struct fastpath *fp;  /* the skip-when-unchanged check, when files and history are known */
};

/* A short-lived connection for a quick look after the command ran (NULL if none). */
static PGconn *quick_connect(const struct pg_target *t, int64_t timeout_ms)
{
	enum pg_status st;
	struct pg_error err;
	return pg_connect(t, timeout_ms, -1, &st, &err);
}

/* Did the database go away while the command ran? It cannot be reached now, or the server
 * restarted (its start time changed). */
static bool server_went_away(const struct pg_target *t, const char *start_time)
{
	char now_start[64];
	struct pg_error err;
	PGconn *conn = quick_connect(t, 5000);
	if (!conn)
		return true;
	bool away = !pg_query_value(conn,
				    "SELECT pg_catalog.pg_postmaster_start_time()::pg_catalog.text",
				    5000, -1, now_start, sizeof now_start, &err) ||
		    strcmp(now_start, start_time) != 0;
	PQfinish(conn);
	return away;
}

/* After the command was stopped: its sessions may still be running a statement the server
 * has not noticed is orphaned (a dead client is only seen at the next write). Ending them
 * rolls their transactions back now, not when the statement finishes. */
static void end_sessions(const struct pg_target *t, const char *appname)
{
	PGconn *conn = quick_connect(t, 3000);
	if (!conn)
		return;
	const char *params[1] = {appname};
	struct pg_error err;
	PGresult *res = pg_run(conn,
			       "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) "
			       "FROM pg_catalog.pg_stat_activity "
			       "WHERE application_name = $1 AND pid <> pg_catalog.pg_backend_pid()",
			       1, params, 3000, -1, &err);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) > 0)
		log_event(LOG_INFO, "migrate.rollback",
			  LOG_FIELDS(LF_I("sessions", atoi(PQgetvalue(res, 0, 0)))),
			  "ended the stopped migration command's database sessions; their "
			  "transactions are rolled back");
	PQclear(res);
	PQfinish(conn);
}

/* A name no other replica uses, even when every replica is PID 1 of its own container: the
 * command's sessions are found by it when they must be ended. A PGAPPNAME of the user's (which
 * the app and every replica may share, so it cannot say which sessions are the command's) is
 * kept as its beginning. PostgreSQL keeps 63 bytes of it. */
static void session_name(char *buf, size_t len)
{
	const char *own = getenv("PGAPPNAME");
	unsigned long long id = (unsigned long long)random_u64();
	/* Only what PostgreSQL stores as given (it rewrites other bytes: '?' in 15, \xNN later),
	 * so that the name searched for is the name stored. */
	char prefix[31];
	size_t n = 0;
	for (; own && own[n] && n < sizeof prefix - 1; n++) {
		prefix[n] = own[n];
		if (own[n] < 0x20 || own[n] > 0x7e)
			prefix[n] = '_';
	}
	prefix[n] = '\0';
	snprintf(buf, len, "%s/migrate/%016llx", n ? prefix : "migrate-then-run", id);
}

/* The lock was lost while the command ran and its group was killed: its sessions are ended
 * too, so that what it was doing rolls back now. A server that restarted (or cannot be
 * reached) took the lock with it: that is a lost connection, retried as such. */
static void lock_lost(const struct source_ctx *ctx, const char *appname, struct migrate_outcome *res)
{
	end_sessions(ctx->target, appname);
	if (server_went_away(ctx->target, ctx->start_time)) {
		res->result = MIGRATE_LOST;
		snprintf(res->how, sizeof res->how,
			 "the database went away while the migration command ran (%.400s)", ctx->lock->lost);
		return;
	}
	res->result = MIGRATE_LOCK_LOST;
	snprintf(res->how, sizeof res->how, "%s", ctx->lock->lost);
}

static bool is_url(const char *s)
{
	return s && (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0);
}

/* Why the tool runs, for the fast path's log line and the --check report. */
static const char *run_reason(enum fastpath_verdict v)
{
	switch (v) {
	case FP_FIRST:
		return "no fingerprint of a successful run is kept yet";
	case FP_FILES_CHANGED:
		return "the migration files (or the command) changed since the last successful run";
	case FP_HISTORY_CHANGED:
		return "the history table changed since the last successful run";
	case FP_UNKNOWN:
	case FP_UNCHANGED:
	default:
		return "the fingerprints could not be compared";
	}
}

/* The fast path's verdict, logged (a quiet look logs only a skip: the locked plan that
 * follows any other verdict says why the tool runs) or printed for --check. */
static void fast_verdict(const struct cmd_source *cs, enum fastpath_verdict v, const char *why,
			 int flags)
{
	const char *tool = cs->spec.tool ? cs->spec.tool : cs->argv[0];
	if (flags & PLAN_REPORT) {
		if (v == FP_UNCHANGED)
			printf("%s: unchanged since the last successful run (%s): nothing to do\n", tool, why);
		else
			printf("%s: would run %s: %s (%s)\n", tool, cs->joined, run_reason(v), why);
		return;
	}
	if (v == FP_UNCHANGED)
		log_event(LOG_INFO, "fastpath.skip", LOG_FIELDS(LF_S("tool", tool), LF_S("state", why)),
			  "the migration files and the history are as the last successful run left "
			  "them (%s): %s is not started", why, tool);
	else if (!(flags & PLAN_QUIET))
		log_event(LOG_INFO, "fastpath.run",
			  LOG_FIELDS(LF_S("tool", tool), LF_S("reason", v == FP_UNKNOWN ? "unknown"
							 : v == FP_FIRST ? "first" : v == FP_FILES_CHANGED ? "files"
							 : "history"),
				     LF_S("state", why)),
			  "starting %s: %s (%s)", tool, v == FP_UNKNOWN ? why : run_reason(v),
			  v == FP_UNKNOWN ? "it decides itself" : why);
}

static int cmd_plan(void *self, PGconn *conn, const struct source_ctx *ctx, int flags,
		    size_t *pending)
{
	struct cmd_source *cs = self;
	ctx->info->fingerprint = fnv1a(cs->joined, strlen(cs->joined), FNV_OFFSET);
	snprintf(ctx->info->to, sizeof ctx->info->to, "command");
	*pending = 1; /* without the fast path a command cannot say what it would do: it runs */
	if (!cs->fp) {
		if (flags & PLAN_REPORT)
			printf("%s: would run %s (no --migrate-files and --migrate-history-table: "
			       "a command cannot say what it would do)\n",
			       cs->spec.tool ? cs->spec.tool : cs->argv[0], cs->joined);
		return 0;
	}
	char why[512];
	enum fastpath_verdict v = fastpath_check(cs->fp, conn, why, sizeof why);
	fast_verdict(cs, v, why, flags);
	*pending = v != FP_UNCHANGED;
	return 0;
}

/* After a success: the fingerprints kept for the next start. A role that may not keep them
 * still migrates; the tool then runs at every start (said once). */
static void keep_fingerprint(struct cmd_source *cs, PGconn *conn, const struct config *cfg)
{
	static bool said;
	struct pg_error err;
	if (fastpath_save(cs->fp, conn, &err) || said || PQstatus(conn) != CONNECTION_OK)
		return;
	said = true;
	const char *schema = bk_schema(cfg);
	log_event(LOG_WARN, "fastpath.unavailable",
		  LOG_FIELDS(LF_S("schema", schema), LF_S("sqlstate", err.sqlstate), LF_S("error", err.msg)),
		  "cannot keep the fast path's fingerprint in schema %s (%s): %s will be started at "
		  "every start. Let the role keep it (GRANT CREATE ON DATABASE %s TO %s, or CREATE "
		  "SCHEMA %s AUTHORIZATION %s)",
		  schema, err.msg, cs->spec.tool ? cs->spec.tool : cs->argv[0], PQdb(conn),
		  PQuser(conn), schema, PQuser(conn));
}

/* What a preset's templates stand for, from the connection we made (the strings are owned
 * by the struct and freed by vars_free). */
struct preset_vars {
	struct tool_vars v;
	char *url, *nopass, *jdbc, *target;
};

static void vars_fill(struct preset_vars *p, PGconn *conn, const struct config *cfg, const char *url)
{
	const char *host = PQhost(conn), *port = PQport(conn), *db = PQdb(conn), *user = PQuser(conn);
	char *conn_url = pg_conn_url(conn), *plain = tool_url_for_drivers(conn_url);
	p->url = tool_url_for_drivers(url);
	p->nopass = tool_url_without_password(plain);
	char *sslmode = tool_url_param(plain, "sslmode");
	bool tcp = host && host[0] != '/';
	p->jdbc = tcp ? xasprintf("jdbc:postgresql://%s:%s/%s%s%s", host, port, db,
				  sslmode ? "?sslmode=" : "", sslmode ? sslmode : "")
		      : xstrdup("");
	p->target = xasprintf("db:pg://%s@%s%s%s/%s", user, tcp ? host : "", tcp ? ":" : "",
			      tcp ? port : "", db);
	free(sslmode);
	free(plain);
	free(conn_url);
	p->v = (struct tool_vars){p->url, p->nopass, p->jdbc, host, port, user, PQpass(conn), db,
				  cfg->python, p->target};
}

static void vars_free(struct preset_vars *p)
{
	free(p->url);
	free(p->nopass);
	free(p->jdbc);
	free(p->target);
}

/* The preset's NAME=template variables added to env (replacing ours of the same name); a
 * variable whose value comes out empty (no password) is left out. */
static void add_tool_env(char ***env, const char *const *tmpl, const struct tool_vars *v)
{
	size_t n = 0, extra = 0;
	while ((*env)[n])
		n++;
	while (tmpl && tmpl[extra])
		extra++;
	*env = xrealloc(*env, (n + extra + 1) * sizeof **env);
	for (size_t i = 0; i < extra; i++) {
		char *val = tool_expand(tmpl[i], v);
		size_t name = strcspn(tmpl[i], "=");
		for (size_t k = 0; val && k < n; k++)
			if (strncmp((*env)[k], tmpl[i], name + 1) == 0) {
				free((*env)[k]);
				(*env)[k] = (*env)[--n];
				break;
			}
		if (val && val[name + 1])
			(*env)[n++] = val;
		else
			free(val);
	}
	(*env)[n] = NULL;
}

/* The preset's argv with its placeholders filled in (argv_free). */
static char **expand_argv(char *const *argv, const struct tool_vars *v)
{
	size_t n = 0;
	while (argv[n])
		n++;
	char **out = xcalloc(n + 1, sizeof *out);
	for (size_t i = 0; i < n; i++) {
		out[i] = tool_expand(argv[i], v);
		if (!out[i])
			out[i] = xstrdup(argv[i]); /* the table names only known placeholders */
	}
	return out;
}

/* The command's argv and environment for this run (both argv_free). */
static void prepare(const struct cmd_source *cs, PGconn *conn, const struct config *cfg,
		    const char *appname, char ***argv, char ***env)
{
	char *url = is_url(cfg->database_url) ? xstrdup(cfg->database_url) : pg_conn_url(conn);
	*env = source_cmd_env(url, cfg->pgpassword, appname);
	*argv = NULL;
	if (cs->spec.env || cs->spec.expand_argv) {
		struct preset_vars p;
		vars_fill(&p, conn, cfg, url);
		/* the tools' own drivers refuse what only libpq understands (keepalives…) */
		static const char *const url_only[] = {"DATABASE_URL={url}", NULL};
		add_tool_env(env, cs->spec.env, &p.v);
		if (cs->spec.tool)
			add_tool_env(env, url_only, &p.v);
		if (cs->spec.expand_argv)
			*argv = expand_argv(cs->argv, &p.v);
		vars_free(&p);
	}
	free(url);
}

/* The command ran and did not exit 0: lost (the database went away meanwhile) or failed. */
static void cmd_failed(const struct source_ctx *ctx, const struct cmd_source *cs,
		       const struct cmd_outcome *out, struct migrate_outcome *res)
{
	char how[64];
	if (out->proc.outcome == PROC_SIGNALED)
		snprintf(how, sizeof how, "was killed by %s", signals_name(out->proc.term_signal));
	else
		snprintf(how, sizeof how, "exited with status %d", out->proc.exit_code);
	if (out->lost_connection || server_went_away(ctx->target, ctx->start_time)) {
		res->result = MIGRATE_LOST;
		snprintf(res->how, sizeof res->how,
			 "the migration command %s after the database connection was lost", how);
		return;
	}
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("command", cs->joined),
			     LF_I("status", out->proc.outcome == PROC_EXITED ? out->proc.exit_code : -1),
			     LF_S("signal", out->proc.outcome == PROC_SIGNALED
						    ? signals_name(out->proc.term_signal)
						    : NULL),
			     LF_S("error", out->last_error), LF_I("duration_ms", out->proc.duration_ms),
			     LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "the migration command %s; the app was not started. Its output is in the "
		  "migrate.output events above%s%s",
		  how, out->last_error[0] ? "; last error: " : "", out->last_error);
	res->result = MIGRATE_FAILED;
	res->code = MTR_EXIT_MIGRATION;
	snprintf(res->sqlstate, sizeof res->sqlstate, "%s", out->sqlstate);
	snprintf(res->revision, sizeof res->revision, "%s", out->revision);
	if (out->last_error[0])
		snprintf(res->message, sizeof res->message, "%s", out->last_error);
	else
		snprintf(res->message, sizeof res->message, "the migration command %s", how);
}

static void cmd_migrate(void *self, PGconn *conn, const struct source_ctx *ctx,
			struct migrate_outcome *res)
{
	struct cmd_source *cs = self;
	const struct config *cfg = ctx->cfg;
	memset(res, 0, sizeof *res);
	char appname[64];
	session_name(appname, sizeof appname);
	char **argv = NULL, **env = NULL;
	prepare(cs, conn, cfg, appname, &argv, &env);
	char *joined = argv ? argv_join(argv) : NULL;
	log_event(LOG_INFO, "migrate.start",
		  LOG_FIELDS(LF_S("command", joined ? joined : cs->joined), LF_I("attempt", ctx->attempt + 1)),
		  "running the migration command");
	free(joined);
	struct cmd_outcome out = {0}; /* run_command fills it; zero for the checkers that cannot see that */
	struct run r = {.out = &out, .progress = ctx->progress, .appname = appname}; /* its sessions' name */
	progress_watch_app(ctx->progress, r.appname, cs->joined);
	bool started = run_command(argv ? argv : cs->argv, cfg->migrate_cwd, env, ctx->sigs,
				   cfg->stop_timeout_ms, ctx->lock, &r);
	argv_free(env);
	argv_free(argv);
	if (!started) {
		log_event(LOG_ERROR, "migrate.failed",
			  LOG_FIELDS(LF_S("command", cs->joined), LF_S("error", out.proc.err),
				     LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s; check --migrate-cmd / --python / --migrate-cwd and the image's PATH",
			  out.proc.err);
		res->result = MIGRATE_FAILED;
		res->code = MTR_EXIT_USAGE;
	} else if (out.proc.stop_signal) {
		end_sessions(ctx->target, appname);
		res->result = MIGRATE_STOPPED;
		res->signo = out.proc.stop_signal;
	} else if (out.lock_lost) {
		lock_lost(ctx, appname, res);
	} else if (out.proc.outcome == PROC_EXITED && out.proc.exit_code == 0) {
		log_finished(&r);
		if (cs->fp)
			keep_fingerprint(cs, conn, cfg);
		res->result = MIGRATE_OK;
	} else {
		cmd_failed(ctx, cs, &out, res);
	}
	run_free(&r);
}

static void cmd_destroy(void *self)
{
	struct cmd_source *cs = self;
	argv_free(cs->argv);
	free(cs->joined);
	fastpath_free(cs->fp);
	free(cs);
}

/* The key of the kept fingerprint: the tool (or "command") and its history tables. */
static char *fast_key(const struct cmd_spec *spec)
{
	struct strbuf b = STRBUF_INIT;
	sb_adds(&b, spec->tool ? spec->tool : "command");
	for (size_t i = 0; i < spec->nhistory; i++)
		sb_addf(&b, " %s", spec->history[i]);
	return sb_take(&b);
}

bool source_cmd_open_spec(const struct config *cfg, char **argv, const struct cmd_spec *spec,
			  struct source *src, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct cmd_source *cs = xcalloc(1, sizeof *cs);
	cs->argv = argv;
	cs->joined = argv_join(argv);
	cs->spec = *spec;
	if (spec->nfiles && spec->nhistory) {
		char *key = fast_key(spec);
		struct fastpath_spec fs = {key, bk_schema(cfg), cfg->migrate_cwd, cs->joined,
					   spec->files, spec->nfiles, spec->history, spec->nhistory};
		cs->fp = fastpath_new(&fs);
		free(key);
	}
	src->kind = "command";
	src->describe = cs->joined;
	src->self = cs;
	src->plan = cmd_plan;
	src->migrate = cmd_migrate;
	src->destroy = cmd_destroy;
	return true;
}

bool source_cmd_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	char **argv;
	if (!source_cmd_argv(cfg, &argv, err, errlen))
		return false;
	/* --migrate-files and --migrate-history-table give a plain command the fast path; the
	 * Alembic source (which opens this one to run Alembic) plans by itself. */
	struct cmd_spec spec = {0};
	if (!cfg->alembic_ini)
		spec = (struct cmd_spec){NULL, NULL, false, cfg->migrate_files.v, cfg->migrate_files.n,
					 cfg->migrate_history_table.v, cfg->migrate_history_table.n};
	return source_cmd_open_spec(cfg, argv, &spec, src, err, errlen);
}
