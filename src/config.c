/* Configuration: one option table drives parsing (flags > MTR_* environment > defaults) and --help. */
#include "mtr/config.h"
#include "mtr/fileio.h"
#include "mtr/source.h"
#include "mtr/http.h"
#include "mtr/user.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* T_AUTO is a flag that may also be left to the tool: an int, -1 (auto), 0 or 1. */
/* T_LIST repeats: each flag adds a value; its variable holds them separated by white space. */
enum opt_type { T_STRING, T_LIST, T_DURATION, T_COUNT, T_FLAG, T_AUTO, T_CHOICE, T_HELP, T_VERSION, T_HEALTH };

struct option_def {
	const char *name;     /* long flag without "--" */
	const char *env;      /* MTR_* variable, NULL for --help/--version */
	enum opt_type type;
	const char *def;      /* default as text, NULL for none */
	const char *metavar;
	const char *help;
	size_t off;           /* field in struct config */
	const char *const *choices;
	bool secret;          /* also read from NAME_FILE */
};

static const char *const log_formats[] = {"json", "text", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
/* In enum log_schema's order. */
static const char *const log_schemas[] = {"default", "ecs", "gcp", "datadog", NULL};
static const char *const on_failures[] = {"exit", "hold", NULL};
static const char *const backup_modes[] = {"required", "optional", "off", "always", NULL};
static const char *const applies[] = {"auto", "native", "cli", NULL};
static const char *const notify_ons[] = {"failure", "success,failure", "failure,success", "success", NULL};

#define F(field) offsetof(struct config, field)

/* The option table: parsing, --help and the README check all read it. */
static const struct option_def options[] = {
	{"database-url", "MTR_DATABASE_URL", T_STRING, NULL, "URL",
	 "PostgreSQL URL or conninfo string; else DATABASE_URL, else libpq's PG* variables",
	 F(database_url), NULL, true},
	{"alembic-ini", "MTR_ALEMBIC_INI", T_STRING, NULL, "PATH",
	 "Alembic project: check, then migrate with PYTHON -m alembic -c PATH upgrade heads", F(alembic_ini), NULL,
	 false},
	{"sql-dir", "MTR_SQL_DIR", T_STRING, NULL, "DIR",
	 "SQL migrations: DIR/<version>_<name>.sql, applied natively in numeric order", F(sql_dir),
	 NULL, false},
	{"history-table", "MTR_HISTORY_TABLE", T_STRING, "public.mtr_schema_history", "SCHEMA.TABLE",
	 "where --sql-dir records applied migrations", F(history_table), NULL, false},
	{"allow-out-of-order", "MTR_ALLOW_OUT_OF_ORDER", T_FLAG, "false", NULL,
	 "apply a pending file whose version is below the highest applied one", F(allow_out_of_order),
	 NULL, false},
	{"baseline", "MTR_BASELINE", T_STRING, NULL, "VERSION",
	 "on a database without history: record files up to VERSION as applied, without running them",
	 F(baseline), NULL, false},
	{"repair-failed", "MTR_REPAIR_FAILED", T_STRING, NULL, "VERSION",
	 "after repairing by hand: forget the failed record of VERSION, so that it is applied again",
	 F(repair_failed), NULL, false},
	{"migration-lock-timeout", "MTR_MIGRATION_LOCK_TIMEOUT", T_DURATION, "5s", "DURATION",
	 "lock_timeout of each SQL migration; on 55P03 it is retried with backoff",
	 F(migration_lock_timeout_ms), NULL, false},
	{"statement-timeout", "MTR_STATEMENT_TIMEOUT", T_DURATION, "0", "DURATION",
	 "statement_timeout of each SQL migration (0: none)", F(statement_timeout_ms), NULL, false},
	{"lock-timeout", "MTR_LOCK_TIMEOUT", T_DURATION, "5m", "DURATION",
	 "give up waiting for another replica's migration lock after this long (exit 75)",
	 F(lock_timeout_ms), NULL, false},
	{"check", "MTR_CHECK", T_FLAG, "false", NULL,
	 "print the plan (applied, pending, problems) and exit 0 if consistent, 65 if not; change "
	 "nothing", F(check), NULL, false},
	{"pending-exit-code", "MTR_PENDING_EXIT_CODE", T_COUNT, "0", "N",
	 "with --check: exit N when the state is consistent but something is pending (a CI gate)",
	 F(pending_exit_code), NULL, false},
	{"alembic-version-table", "MTR_ALEMBIC_VERSION_TABLE", T_STRING, "alembic_version",
	 "[SCHEMA.]TABLE", "Alembic's version table (as env.py configures it)",
	 F(alembic_version_table), NULL, false},
	{"alembic-section", "MTR_ALEMBIC_SECTION", T_STRING, "alembic", "NAME",
	 "the section of --alembic-ini to read, as alembic -n NAME (and passed on to Alembic so)",
	 F(alembic_section), NULL, false},
	{"alembic-baseline", "MTR_ALEMBIC_BASELINE", T_STRING, NULL, "REV",
	 "on a non-empty database without a version table: stamp REV first, then upgrade",
	 F(alembic_baseline), NULL, false},
	{"repair-version-table", "MTR_REPAIR_VERSION_TABLE", T_FLAG, "false", NULL,
	 "delete alembic_version rows that are ancestors of another row (stale), then go on",
	 F(repair_version_table), NULL, false},
	{"python", "MTR_PYTHON", T_STRING, "python3", "PATH", "Python interpreter for --alembic-ini",
	 F(python), NULL, false},
	{"migrate-cmd", "MTR_MIGRATE_CMD", T_STRING, NULL, "CMD",
	 "migration command, split shell-like and run without a shell (overrides the Alembic command)",
	 F(migrate_cmd), NULL, false},
	{"tool", "MTR_TOOL", T_STRING, NULL, "NAME",
	 "another migration tool's preset: dbmate, golang-migrate, goose, flyway, prisma, django, "
	 "knex, node-pg-migrate, typeorm, sequelize, sqitch, yoyo or liquibase (its files, history "
	 "table and command; see README)", F(tool), NULL, false},
	{"migrate-files", "MTR_MIGRATE_FILES", T_LIST, NULL, "PATH",
	 "the migration command's files, directories or globs, relative to --migrate-cwd "
	 "(repeatable; with --migrate-history-table: the tool is not started when neither changed "
	 "since its last success)", F(migrate_files), NULL, false},
	{"migrate-history-table", "MTR_MIGRATE_HISTORY_TABLE", T_LIST, NULL, "[SCHEMA.]TABLE",
	 "the migration command's history table (repeatable; see --migrate-files)",
	 F(migrate_history_table), NULL, false},
	{"apply", "MTR_APPLY", T_CHOICE, "auto", "auto|native|cli",
	 "--tool with a native applier (dbmate, golang-migrate, goose, flyway, prisma): apply the "
	 "pending migrations ourselves, recorded as the tool records them (native), or run its CLI "
	 "(cli); auto: native when the CLI is not on PATH", F(apply), applies, false},
	{"migrate-cwd", "MTR_MIGRATE_CWD", T_STRING, NULL, "DIR",
	 "working directory of the migration command (default: the current one)", F(migrate_cwd), NULL,
	 false},
	{"migrate-only", "MTR_MIGRATE_ONLY", T_FLAG, "false", NULL,
	 "migrate and exit 0; no app command (initContainer, Job)", F(migrate_only), NULL, false},
	{"wait-timeout", "MTR_WAIT_TIMEOUT", T_DURATION, "60s", "DURATION",
	 "give up waiting for the database after this long (exit 69)", F(wait_timeout_ms), NULL, false},
	{"wait-max-interval", "MTR_WAIT_MAX_INTERVAL", T_DURATION, "2s", "DURATION",
	 "longest pause between connection attempts (backoff cap)", F(wait_max_interval_ms), NULL,
	 false},
	{"wait-http", "MTR_WAIT_HTTP", T_LIST, NULL, "URL",
	 "also wait until URL answers 2xx to a GET (repeatable; same deadline and backoff)",
	 F(wait_http), NULL, false},
	{"progress-interval", "MTR_PROGRESS_INTERVAL", T_DURATION, "10s", "DURATION",
	 "while a migration runs, log migrate.progress this often: its step, what the server is "
	 "waiting for and who blocks it (0: never)", F(progress_interval_ms), NULL, false},
	{"retries", "MTR_RETRIES", T_COUNT, "3", "N",
	 "retries of a migration that failed because the database went away", F(retries), NULL, false},
	{"log-format", "MTR_LOG_FORMAT", T_CHOICE, NULL, "json|text",
	 "log format on stderr (default: text on a terminal, else json)", F(log_format), log_formats,
	 false},
	{"log-level", "MTR_LOG_LEVEL", T_CHOICE, "info", "debug|info|warn|error", "least severe level logged",
	 F(log_level), log_levels, false},
	{"log-schema", "MTR_LOG_SCHEMA", T_CHOICE, "default", "default|ecs|gcp|datadog",
	 "JSON key names: ours (ts, level, msg), or what Elastic (ECS), Google Cloud Logging or "
	 "Datadog read by default", F(log_schema), log_schemas, false},
	{"init", "MTR_INIT", T_AUTO, "auto", NULL,
	 "supervise the app as its init (forward signals, reap zombies); --no-init execs it "
	 "instead; auto: init when PID 1",
	 F(init), NULL, false},
	{"stop-timeout", "MTR_STOP_TIMEOUT", T_DURATION, "8s", "DURATION",
	 "one stop budget from the first SIGTERM: the app and its leftover processes together, "
	 "then SIGKILL; keep it 2s below the runtime's grace (Docker and podman: 10s)",
	 F(stop_timeout_ms), NULL, false},
	{"signal-group", "MTR_SIGNAL_GROUP", T_FLAG, "false", NULL,
	 "forward signals to the app's whole process group, not only the app", F(signal_group),
	 NULL, false},
	{"user", "MTR_USER", T_STRING, NULL, "USER[:GROUP]",
	 "run the app as USER (name or uid; its groups and HOME) or USER:GROUP; the migration runs "
	 "as the user the tool started as, which must be root", F(user), NULL, false},
	{"backup", "MTR_BACKUP", T_CHOICE, NULL, "required|optional|off|always",
	 "pg_dump before migrating: required (no backup, no migration), optional (warn), off, or "
	 "always (even with nothing pending); default: required when pg_dump is on PATH, else off",
	 F(backup_mode), backup_modes, false},
	{"backup-dir", "MTR_BACKUP_DIR", T_STRING, NULL, "DIR",
	 "where backups go (created 0700; default /var/backups/migrate-then-run as root, else "
	 "./backups); none: keep no local copy (with --backup-upload-url)",
	 F(backup_dir), NULL, false},
	{"backup-upload-url", "MTR_BACKUP_UPLOAD_URL", T_STRING, NULL, "URL",
	 "also stream each backup to this URL with an HTTP PUT (S3/GCS presigned URL, WebDAV; a URL "
	 "ending in / gets the file name appended); its failure counts as the backup's",
	 F(backup_upload_url), NULL, true},
	{"backup-keep", "MTR_BACKUP_KEEP", T_COUNT, "5", "N",
	 "backups of this database to keep; older ones of ours are removed", F(backup_keep), NULL,
	 false},
	{"backup-stall-timeout", "MTR_BACKUP_STALL_TIMEOUT", T_DURATION, "10m", "DURATION",
	 "end pg_dump when its dump has not grown for this long (a silent server: retried from the "
	 "wait; held up by the upload or the verification: the backup fails); pg_dump waits at most "
	 "half of it for a table lock, the verification's verdict at most this long after the dump; "
	 "0: never",
	 F(backup_stall_ms), NULL, false},
	{"on-failure", "MTR_ON_FAILURE", T_CHOICE, NULL, "exit|hold",
	 "after a failure: exit (pausing longer each time the same failure repeats), or hold: "
	 "stay up without the app and retry (default: exit with --migrate-only, else hold)",
	 F(on_failure), on_failures, false},
	{"failure-backoff", "MTR_FAILURE_BACKOFF", T_DURATION, "5s", "DURATION",
	 "exit policy: a permanent failure pauses twice this before exiting, doubling as it repeats",
	 F(failure_backoff_ms), NULL, false},
	{"failure-backoff-max", "MTR_FAILURE_BACKOFF_MAX", T_DURATION, "5m", "DURATION",
	 "exit policy: longest such pause", F(failure_backoff_max_ms), NULL, false},
	{"hold-interval", "MTR_HOLD_INTERVAL", T_DURATION, "1m", "DURATION",
	 "hold policy: first wait before trying again (doubles each time; SIGHUP retries at once)",
	 F(hold_interval_ms), NULL, false},
	{"hold-max-interval", "MTR_HOLD_MAX_INTERVAL", T_DURATION, "30m", "DURATION",
	 "hold policy: longest wait between tries", F(hold_max_interval_ms), NULL, false},
	{"hold-reminder", "MTR_HOLD_REMINDER", T_DURATION, "10m", "DURATION",
	 "hold policy: how often to log a one-line failure.holding reminder", F(hold_reminder_ms),
	 NULL, false},
	{"state-dir", "MTR_STATE_DIR", T_STRING, NULL, "DIR",
	 "keep the last failure here across restarts (a volume); default: a table in the database",
	 F(state_dir), NULL, false},
	{"state-schema", "MTR_STATE_SCHEMA", T_STRING, "migrate_then_run", "SCHEMA",
	 "the database schema of the tool's own bookkeeping (the failure memory without "
	 "--state-dir, the --tool fast path's fingerprints), created when first needed; never one "
	 "of the app's schemas",
	 F(state_schema), NULL, false},
	{"status-file", "MTR_STATUS_FILE", T_STRING, NULL, "PATH",
	 "keep the current state (waiting, locked-out, migrating, failed-holding, running) in PATH",
	 F(status_file), NULL, false},
	{"termination-log", "MTR_TERMINATION_LOG", T_STRING, NULL, "PATH",
	 "on a failure, write a summary of at most 4 KiB to PATH, for kubectl describe (default: "
	 "/dev/termination-log when it exists and is writable; none: never)", F(termination_log),
	 NULL, false},
	{"notify-url", "MTR_NOTIFY_URL", T_LIST, NULL, "URL",
	 "POST a JSON report of a failure (see --notify-on) to URL (repeatable); never changes the "
	 "exit code", F(notify_url), NULL, true},
	{"notify-on", "MTR_NOTIFY_ON", T_CHOICE, "failure", "failure|success,failure",
	 "when to notify: failures, or also successful migrations", F(notify_on), notify_ons, false},
	{"notify-timeout", "MTR_NOTIFY_TIMEOUT", T_DURATION, "10s", "DURATION",
	 "longest time notifying may take, retries included (each try: 5s at most)",
	 F(notify_timeout_ms), NULL, false},
	{"ca-file", "MTR_CA_FILE", T_STRING, NULL, "PATH",
	 "CA certificates for HTTPS (default: CURL_CA_BUNDLE, SSL_CERT_FILE, else "
	 "/etc/ssl/certs/ca-certificates.crt)", F(ca_file), NULL, false},
	{"health", NULL, T_HEALTH, NULL, NULL,
	 "with --status-file: exit 0 if the app is running, else 1 (HEALTHCHECK, probes)", 0, NULL,
	 false},
	{"help", NULL, T_HELP, NULL, NULL, "print this help and exit", 0, NULL, false},
	{"version", NULL, T_VERSION, NULL, NULL, "print the version and exit", 0, NULL, false},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

bool config_parse_duration(const char *s, int64_t *ms)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return false;
	unsigned long long mult;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mult = 60ULL * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600ULL * 1000;
	else
		return false;
	/* A year is more than any deadline needs and keeps the arithmetic far from overflow. */
	if (v > 366ULL * 24 * 3600 * 1000 / mult)
		return false;
	*ms = (int64_t)(v * mult);
	return true;
}

bool config_parse_count(const char *s, long *n)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno || *end || v > 1000000)
		return false;
	*n = v;
	return true;
}

bool config_parse_bool(const char *s, bool *b)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*b = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*b = false;
			return true;
		}
	}
	return false;
}

static const char *expected(const struct option_def *o)
{
	switch (o->type) {
	case T_DURATION: return "a duration such as 60, 30s, 500ms or 2m";
	case T_COUNT: return "a whole number from 0 to 1000000";
	case T_FLAG: return "true or false";
	case T_AUTO: return "true, false or auto";
	case T_CHOICE: return o->metavar;
	default: return "a value";
	}
}

static void strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Stores value into the option's field; `where` names the flag or variable for errors. A
 * list option adds to its values when `append`, else replaces them. */
/* A list option's value: white-space separated items, added to the list (append) or
 * replacing it. */
static bool set_list(struct strlist *l, const struct option_def *o, const char *value,
		     const char *where, bool append, char *err, size_t errlen)
{
	if (!append)
		strlist_clear(l);
	size_t added = 0;
	for (const char *p = value; *p;) {
		size_t len = strcspn(p, " \t\r\n");
		if (len) {
			l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
			l->v[l->n++] = xstrndup(p, len);
			added++;
		}
		p += len + strspn(p + len, " \t\r\n");
	}
	if (added)
		return true;
	set_err(err, errlen, "%s: expected %s, got an empty string", where, o->metavar);
	return false;
}

static bool set_string(char **p, const struct option_def *o, const char *value, const char *where,
		       char *err, size_t errlen)
{
	if (!*value) {
		set_err(err, errlen, "%s: expected %s, got an empty string", where, o->metavar);
		return false;
	}
	free(*p);
	*p = xstrdup(value);
	return true;
}

static bool set_value(struct config *cfg, const struct option_def *o, const char *value,
		      const char *where, bool append, char *err, size_t errlen)
{
	char *field = (char *)cfg + o->off;
	switch (o->type) {
	case T_LIST:
		return set_list((struct strlist *)(void *)field, o, value, where, append, err, errlen);
	case T_STRING:
		return set_string((char **)(void *)field, o, value, where, err, errlen);
	case T_DURATION:
		if (config_parse_duration(value, (int64_t *)(void *)field))
			return true;
		break;
	case T_COUNT:
		if (config_parse_count(value, (long *)(void *)field))
			return true;
		break;
	case T_FLAG:
		if (config_parse_bool(value, (bool *)(void *)field))
			return true;
		break;
	case T_AUTO: {
		bool b;
		if (strcmp(value, "auto") == 0) {
			*(int *)(void *)field = -1;
			return true;
		}
		if (config_parse_bool(value, &b)) {
			*(int *)(void *)field = b;
			return true;
		}
		break;
	}
	case T_CHOICE:
		for (int i = 0; o->choices[i]; i++) {
			if (strcmp(o->choices[i], value) == 0) {
				*(int *)(void *)field = i;
				return true;
			}
		}
		break;
	case T_HELP:
	case T_VERSION:
	case T_HEALTH:
		return true;
	}
	set_err(err, errlen, "%s: expected %s, got '%s'", where, expected(o), value);
	return false;
}

/* Reads NAME, or the file NAME_FILE names; both set is an error. *out is NULL when neither is
 * set (an empty value counts as unset). *from names the variable that was used. */
static bool getenv_secret(const char *name, char **out, const char **from, char *err,
			  size_t errlen)
{
	static char file_names[8][64];
	static size_t used;
	char file_var[64];
	snprintf(file_var, sizeof file_var, "%s_FILE", name);
	const char *v = getenv(name);
	const char *f = getenv(file_var);
	if (v && !*v)
		v = NULL;
	if (f && !*f)
		f = NULL;
	*out = NULL;
	if (v && f) {
		set_err(err, errlen, "%s and %s are both set: set only one", name, file_var);
		return false;
	}
	if (v) {
		*out = xstrdup(v);
		*from = name;
		return true;
	}
	if (!f)
		return true;
	*out = read_secret_file(f);
	if (!*out) {
		set_err(err, errlen, "%s: cannot read '%s': %s", file_var, f, file_strerror(errno));
		return false;
	}
	/* A stable copy of the variable's name for cfg->database_url_from. */
	char *slot = file_names[used++ % 8];
	snprintf(slot, sizeof file_names[0], "%s", file_var);
	*from = slot;
	return true;
}

static bool apply_defaults_and_env(struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_def *o = &options[i];
		if (o->def && !set_value(cfg, o, o->def, o->name, false, err, errlen))
			return false;
		if (!o->env)
			continue;
		if (o->secret) {
			char *v = NULL;
			const char *from = NULL;
			if (!getenv_secret(o->env, &v, &from, err, errlen))
				return false;
			if (v) {
				bool ok = set_value(cfg, o, v, from, false, err, errlen);
				free(v);
				if (!ok)
					return false;
				if (o->off == F(database_url))
					cfg->database_url_from = from;
			}
			continue;
		}
		const char *v = getenv(o->env);
		if (v && *v && !set_value(cfg, o, v, o->env, false, err, errlen))
			return false;
	}
	return true;
}

static const struct option_def *find_option(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
			return &options[i];
	return NULL;
}

/* Whether a program is on PATH (for the default backup policy). */
static bool on_path(const char *name)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	char *copy = xstrdup(path), *save = NULL;
	bool found = false;
	for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		char *full = xasprintf("%s/%s", *dir ? dir : ".", name);
		found = access(full, X_OK) == 0;
		free(full);
	}
	free(copy);
	return found;
}

/* Every URL option names an http(s) URL libcurl accepts. */
static bool check_urls(const struct config *cfg, char *err, size_t errlen)
{
	struct {
		const char *opt;
		const struct strlist *list;
	} lists[] = {{"--wait-http", &cfg->wait_http}, {"--notify-url", &cfg->notify_url}};
	char why[256];
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < lists[k].list->n; i++)
			if (!http_check_url(lists[k].list->v[i], why, sizeof why)) {
				char *pub = http_url_public(lists[k].list->v[i], true);
				set_err(err, errlen, "%s: %s: '%s'", lists[k].opt, why, pub);
				free(pub);
				return false;
			}
	if (cfg->backup_upload_url && !http_check_url(cfg->backup_upload_url, why, sizeof why)) {
		char *pub = http_url_public(cfg->backup_upload_url, false);
		set_err(err, errlen, "--backup-upload-url: %s: '%s'", why, pub);
		free(pub);
		return false;
	}
	return true;
}

/* --user: only for an app, only from root, and a user the image knows (or plain ids). */
static bool check_user(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->migrate_only) {
		set_err(err, errlen, "--user: applies to the app, and %s runs none (drop one of the two)",
			cfg->check ? "--check" : "--migrate-only");
		return false;
	}
	if (geteuid() != 0) {
		set_err(err, errlen, "--user: switching the app to another user needs the tool to start "
			"as root, and it runs as uid %u; start the container as root (USER 0, runAsUser: "
			"0) or drop --user", (unsigned)geteuid());
		return false;
	}
	return user_resolve(cfg->user, &cfg->run_as, err, errlen);
}

static bool check_combination(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->backup_mode < 0) { /* the default: back up when we can, and when asked to upload */
		cfg->backup_mode = on_path("pg_dump") || cfg->backup_upload_url ? BACKUP_REQUIRED : BACKUP_OFF;
		cfg->backup_defaulted_off = cfg->backup_mode == BACKUP_OFF;
	}
	if (!check_urls(cfg, err, errlen))
		return false;
	if (cfg->backup_upload_url && cfg->backup_mode == BACKUP_OFF) {
		set_err(err, errlen, "--backup-upload-url: expected backups on, got --backup=off (drop one of the two)");
		return false;
	}
	if (cfg->backup_dir && strcmp(cfg->backup_dir, BACKUP_DIR_NONE) == 0 && cfg->backup_upload_url &&
	    http_needs_length(cfg->backup_upload_url)) {
		set_err(err, errlen, "--backup-dir none: a presigned S3/GCS URL needs the dump's length before "
			"the upload, so the dump must be kept locally first: give --backup-dir a directory");
		return false;
	}
	if (cfg->backup_dir && strcmp(cfg->backup_dir, BACKUP_DIR_NONE) == 0 && !cfg->backup_upload_url &&
	    cfg->backup_mode != BACKUP_OFF) {
		set_err(err, errlen, "--backup-dir none: expected --backup-upload-url (else the backup "
			"would go nowhere), or --backup=off");
		return false;
	}
	if (cfg->check && cfg->app_argc > 0) {
		set_err(err, errlen, "--check: expected no app command, got '%s' (drop one of the two)",
			cfg->app_argv[0]);
		return false;
	}
	if (cfg->pending_exit_code > 255) {
		set_err(err, errlen, "--pending-exit-code: expected an exit code from 0 to 255, got %ld",
			cfg->pending_exit_code);
		return false;
	}
	if (cfg->pending_exit_code && !cfg->check) {
		set_err(err, errlen, "--pending-exit-code: expected --check as well (it is the answer of "
			"a check)");
		return false;
	}
	if (cfg->check)
		cfg->migrate_only = true; /* nothing to exec after a check */
	if (cfg->migrate_only && cfg->app_argc > 0) {
		set_err(err, errlen,
			"--migrate-only: expected no app command, got '%s' (drop one of the two)",
			cfg->app_argv[0]);
		return false;
	}
	if (!cfg->migrate_only && cfg->app_argc == 0) {
		set_err(err, errlen,
			"missing app command: expected COMMAND [ARGS...] after the options (or "
			"--migrate-only to migrate and exit)");
		return false;
	}
	if (!source_check_options(cfg, err, errlen))
		return false;
	if (cfg->backup_keep < 1) {
		set_err(err, errlen, "--backup-keep: expected 1 or more (the new backup is always kept), got %ld",
			cfg->backup_keep);
		return false;
	}
	if (cfg->user && !check_user(cfg, err, errlen))
		return false;
	if (cfg->on_failure < 0)
		cfg->on_failure = cfg->migrate_only ? ON_FAILURE_EXIT : ON_FAILURE_HOLD;
	if (cfg->hold_interval_ms <= 0 || cfg->hold_reminder_ms <= 0) {
		set_err(err, errlen, "--hold-interval and --hold-reminder: expected durations above 0");
		return false;
	}
	if (cfg->wait_max_interval_ms <= 0) {
		set_err(err, errlen, "--wait-max-interval: expected a duration above 0, got 0");
		return false;
	}
	return true;
}

/* DATABASE_URL when no MTR_ variable or flag gave one; PGPASSWORD_FILE for libpq's variable. */
static bool apply_fallback_env(struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->database_url) {
		const char *from = NULL;
		if (!getenv_secret("DATABASE_URL", &cfg->database_url, &from, err, errlen))
			return false;
		if (cfg->database_url)
			cfg->database_url_from = from;
	}
	const char *from = NULL;
	char *pw = NULL;
	if (!getenv_secret("PGPASSWORD", &pw, &from, err, errlen))
		return false;
	if (pw && strcmp(from, "PGPASSWORD") != 0)
		cfg->pgpassword = pw; /* only the _FILE form needs passing on; libpq reads PGPASSWORD */
	else
		free(pw);
	if (!cfg->database_url)
		cfg->database_url_from = "PG* environment";
	return true;
}

/* Where the command line stands while it is read. */
struct cmdline {
	int argc;
	char **argv;
	int i;                  /* the argument being read */
	bool seen[N_OPTIONS];   /* a list given by flags replaces the environment's, then grows */
	bool health, url_from_flag;
};

/* The value of option o given as argv[i] (--name=value, a flag, or the next argument). NULL
 * with err when it is missing. */
static const char *option_value(struct cmdline *c, const struct option_def *o, const char *eq,
				bool negated, const char *where, char *err, size_t errlen)
{
	if (negated)
		return "false";
	if (eq)
		return eq + 1;
	if (o->type == T_FLAG || o->type == T_AUTO)
		return "true";
	if (c->i + 1 < c->argc)
		return c->argv[++c->i];
	set_err(err, errlen, "%s: expected %s after it, got nothing", where,
		o->type == T_STRING || o->type == T_LIST ? o->metavar : expected(o));
	return NULL;
}

/* The option argv[i] names, --no-NAME for flags included; NULL with err when unknown. */
static const struct option_def *option_named(const char *name, size_t len, bool has_value,
					     bool *negated, char *err, size_t errlen)
{
	const struct option_def *o = find_option(name, len);
	*negated = false;
	if (!o && len > 3 && strncmp(name, "no-", 3) == 0 && !has_value) {
		/* --no-NAME turns a flag off: --no-init, --no-signal-group */
		o = find_option(name + 3, len - 3);
		*negated = o && (o->type == T_FLAG || o->type == T_AUTO);
		if (!*negated)
			o = NULL;
	}
	if (!o)
		set_err(err, errlen, "unknown option '--%.*s' (see --help)", (int)len, name);
	return o;
}

/* Reads one option at argv[i]. CONFIG_OK to go on; the app command (or "--") ends the
 * options with *done; anything else is the result. */
static enum config_result parse_one(struct config *cfg, struct cmdline *c, bool *done, char *err,
				    size_t errlen)
{
	const char *a = c->argv[c->i];
	if (strcmp(a, "--") == 0 || a[0] != '-' || a[1] == '\0') {
		c->i += strcmp(a, "--") == 0;
		*done = true; /* the app command starts here */
		return CONFIG_OK;
	}
	if (strcmp(a, "-h") == 0)
		return CONFIG_HELP;
	if (a[1] != '-') {
		set_err(err, errlen, "unknown option '%s' (see --help)", a);
		return CONFIG_ERROR;
	}
	const char *name = a + 2, *eq = strchr(name, '=');
	bool negated;
	const struct option_def *o = option_named(name, eq ? (size_t)(eq - name) : strlen(name),
						  eq != NULL, &negated, err, errlen);
	if (!o)
		return CONFIG_ERROR;
	if (o->type == T_HELP || o->type == T_VERSION)
		return o->type == T_HELP ? CONFIG_HELP : CONFIG_VERSION;
	if (o->type == T_HEALTH) {
		c->health = true;
		c->i++;
		return CONFIG_OK;
	}
	char where[80];
	snprintf(where, sizeof where, "--%s", o->name);
	const char *value = option_value(c, o, eq, negated, where, err, errlen);
	c->i++;
	bool append = c->seen[o - options];
	c->seen[o - options] = true;
	if (!value || !set_value(cfg, o, value, where, append, err, errlen))
		return CONFIG_ERROR;
	c->url_from_flag |= o->off == F(database_url);
	return CONFIG_OK;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv, char *err,
				size_t errlen)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->log_format = -1;
	cfg->on_failure = -1;
	cfg->backup_mode = -1;
	if (!apply_defaults_and_env(cfg, err, errlen))
		return CONFIG_ERROR;
	struct cmdline c = {.argc = argc, .argv = argv, .i = 1};
	for (bool done = false; c.i < argc && !done;) {
		enum config_result r = parse_one(cfg, &c, &done, err, errlen);
		if (r != CONFIG_OK)
			return r;
	}
	if (c.url_from_flag)
		cfg->database_url_from = "--database-url";
	cfg->app_argv = c.i < argc ? &argv[c.i] : NULL;
	cfg->app_argc = argc - c.i;
	if (cfg->log_format < 0)
		cfg->log_format = isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON;
	if (c.health) {
		if (!cfg->status_file) {
			set_err(err, errlen, "--health: expected --status-file PATH (or MTR_STATUS_FILE)");
			return CONFIG_ERROR;
		}
		return CONFIG_HEALTH;
	}
	if (!apply_fallback_env(cfg, err, errlen) || !check_combination(cfg, err, errlen))
		return CONFIG_ERROR;
	return CONFIG_OK;
}

void config_free(struct config *cfg)
{
	free(cfg->database_url);
	free(cfg->pgpassword);
	free(cfg->alembic_ini);
	free(cfg->python);
	free(cfg->migrate_cmd);
	free(cfg->migrate_cwd);
	free(cfg->tool);
	strlist_clear(&cfg->migrate_files);
	strlist_clear(&cfg->migrate_history_table);
	free(cfg->sql_dir);
	free(cfg->history_table);
	free(cfg->baseline);
	free(cfg->repair_failed);
	free(cfg->alembic_version_table);
	free(cfg->alembic_baseline);
	free(cfg->alembic_section);
	free(cfg->state_dir);
	free(cfg->state_schema);
	free(cfg->status_file);
	free(cfg->termination_log);
	free(cfg->user);
	free(cfg->backup_dir);
	free(cfg->backup_upload_url);
	free(cfg->ca_file);
	strlist_clear(&cfg->wait_http);
	strlist_clear(&cfg->notify_url);
	memset(cfg, 0, sizeof *cfg);
}

void config_print_help(FILE *out)
{
	fprintf(out,
		"Usage: migrate-then-run [OPTIONS] [--] COMMAND [ARGS...]\n"
		"       migrate-then-run [OPTIONS] --migrate-only\n"
		"       migrate-then-run [OPTIONS] --sql-dir DIR --check\n"
		"\n"
		"Waits for PostgreSQL, runs the migrations, then execs COMMAND.\n"
		"Logs are JSON lines (or text) on stderr; stdout belongs to COMMAND.\n"
		"\n"
		"Options (each also as its environment variable; flags win):\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option_def *o = &options[i];
		char flag[64];
		if (o->metavar)
			snprintf(flag, sizeof flag, "--%s %s", o->name, o->metavar);
		else if (o->type == T_AUTO)
			snprintf(flag, sizeof flag, "--%s, --no-%s", o->name, o->name);
		else
			snprintf(flag, sizeof flag, "--%s", o->name);
		fprintf(out, "  %-40s %s", flag, o->help);
		if (o->def && o->type != T_FLAG && o->type != T_AUTO)
			fprintf(out, " [default: %s]", o->def);
		fputc('\n', out);
		if (o->env && o->secret)
			fprintf(out, "  %-40s   env %s, or %s_FILE naming a file that holds it\n", "",
				o->env, o->env);
		else if (o->env)
			fprintf(out, "  %-40s   env %s\n", "", o->env);
	}
	fprintf(out,
		"\n"
		"Database: --database-url, MTR_DATABASE_URL, DATABASE_URL (each also as *_FILE),\n"
		"else libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD (or PGPASSWORD_FILE), PGDATABASE ...\n"
		"Durations: 60 (seconds), 30s, 500ms, 2m, 1h.\n"
		"\n"
		"Exit codes:\n"
		"  0    success (--migrate-only, --check consistent), or the app's own 0\n"
		"  N    --check --pending-exit-code N: consistent, but something is pending\n"
		"  64   usage or configuration error\n"
		"  65   migration chain or database state is inconsistent\n"
		"  69   database not ready before the wait deadline, or does not exist\n"
		"  70   a migration failed\n"
		"  73   backup failed\n"
		"  75   a transient failure outlasted the retry budget\n"
		"  77   authentication failed\n"
		"  126  app found but not executable; 127 app not found\n"
		"  128+n  stopped by signal n\n"
		"  otherwise the app's own exit status\n");
}
