/* Configuration: one option table drives parsing (flags > MTR_* environment > defaults) and --help. */
#ifndef MTR_CONFIG_H
#define MTR_CONFIG_H

#include "mtr/log.h"
#include "mtr/user.h"
#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A repeatable option's values, in order. */
struct strlist {
	char **v;
	size_t n;
};

struct config {
	char *database_url;         /* NULL: libpq's PG* variables and defaults */
	const char *database_url_from; /* where it came from, for logs: "--database-url", "DATABASE_URL_FILE" … */
	char *pgpassword;           /* from PGPASSWORD_FILE, else NULL */
	char *alembic_ini;
	char *python;
	char *migrate_cmd;
	char *migrate_cwd;
	char *tool;                 /* --tool: a preset of tools.c */
	struct strlist migrate_files;         /* the command's files, for the fast path */
	struct strlist migrate_history_table; /* the command's history tables, likewise */
	int apply;                  /* enum apply_mode: --tool's native applier or its CLI */
	char *sql_dir;
	char *history_table;        /* schema.table */
	bool allow_out_of_order;
	char *baseline;             /* a version, validated by the SQL source */
	char *repair_failed;
	int64_t migration_lock_timeout_ms;
	int64_t statement_timeout_ms;
	int64_t lock_timeout_ms;
	bool check;
	long pending_exit_code;     /* --check: the exit code when consistent with work pending */
	int64_t progress_interval_ms; /* migrate.progress while a migration runs; 0: never */
	char *alembic_version_table;
	char *alembic_baseline;
	char *alembic_section; /* the ini section, as alembic -n NAME */
	bool repair_version_table;
	int on_failure;             /* enum on_failure; -1 until resolved */
	int64_t failure_backoff_ms;
	int64_t failure_backoff_max_ms;
	int64_t hold_interval_ms;
	int64_t hold_max_interval_ms;
	int64_t hold_reminder_ms;
	char *state_dir;
	char *state_schema;         /* the tool's own schema in the database */
	char *status_file;
	char *termination_log;      /* NULL: /dev/termination-log when writable; "none": never */
	int backup_mode;            /* enum backup_mode; -1: required if pg_dump is on PATH, else off */
	char *backup_dir;
	bool backup_defaulted_off;  /* off only because no pg_dump was found */
	long backup_keep;
	int64_t backup_stall_ms;
	char *backup_upload_url;    /* PUT the dump here as well (secret: may be presigned) */
	struct strlist wait_http;   /* --wait-http: URLs that must answer 2xx */
	struct strlist notify_url;  /* --notify-url: webhooks */
	int notify_on;              /* enum notify_on */
	int64_t notify_timeout_ms;
	char *ca_file;
	bool migrate_only;
	int64_t wait_timeout_ms;
	int64_t wait_max_interval_ms;
	long retries;
	int init;                   /* -1: supervise when PID 1; 0: exec the app; 1: supervise */
	int64_t stop_timeout_ms;
	bool signal_group;
	char *user;                 /* --user USER[:GROUP] as given, resolved into run_as */
	struct user_ids run_as;
	int log_format;             /* enum log_format; -1 until resolved: text on a TTY */
	int log_level;              /* enum log_level */
	int log_schema;             /* enum log_schema */
	char **app_argv;            /* points into argv; NULL-terminated; NULL with --migrate-only */
	int app_argc;
};

enum on_failure { ON_FAILURE_EXIT, ON_FAILURE_HOLD };
enum apply_mode { APPLY_AUTO, APPLY_NATIVE, APPLY_CLI };
enum backup_mode { BACKUP_REQUIRED, BACKUP_OPTIONAL, BACKUP_OFF, BACKUP_ALWAYS };
/* --notify-on values, in the option table's order. */
enum notify_on { NOTIFY_FAILURE, NOTIFY_SUCCESS_FAILURE, NOTIFY_FAILURE_SUCCESS, NOTIFY_SUCCESS };

/* --backup-dir none: upload only, keep no local file. */
#define BACKUP_DIR_NONE "none"

enum config_result { CONFIG_OK, CONFIG_HELP, CONFIG_VERSION, CONFIG_HEALTH, CONFIG_ERROR };

/* Fills cfg from defaults, then MTR_* (and NAME_FILE) environment, then argv. On CONFIG_ERROR,
 * err holds one line naming the option or variable and what was expected. The caller owns
 * cfg's strings and frees them with config_free(), whatever the result. */
enum config_result config_parse(struct config *cfg, int argc, char **argv, char *err,
				size_t errlen) MTR_MUST_CHECK;
void config_free(struct config *cfg);

/* Writes --help, generated from the option table. */
void config_print_help(FILE *out);

/* Value parsers, exposed for unit tests. Return false on malformed or negative input. */
bool config_parse_duration(const char *s, int64_t *ms) MTR_MUST_CHECK;
bool config_parse_count(const char *s, long *n) MTR_MUST_CHECK;
bool config_parse_bool(const char *s, bool *b) MTR_MUST_CHECK;

#endif
