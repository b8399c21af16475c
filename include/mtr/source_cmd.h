/* Migrations by an external command (Alembic, Flyway, anything): argv, environment, outcome. */
#ifndef MTR_SOURCE_CMD_H
#define MTR_SOURCE_CMD_H

#include "mtr/config.h"
#include "mtr/lock.h"
#include "mtr/proc.h"

#include <stdbool.h>
#include <stddef.h>

/* The migration command's argv (argv_free) from --migrate-cmd, else the Alembic command
 * from --alembic-ini. False with err (naming the option) when it cannot be split. */
bool source_cmd_argv(const struct config *cfg, char ***argv, char *err, size_t errlen) MTR_MUST_CHECK;

/* Our environment plus DATABASE_URL=url, PGPASSWORD when given as PGPASSWORD_FILE, and
 * PGAPPNAME=appname in place of any (so that the tool's sessions can be found and ended if we
 * are stopped): a new vector the caller frees with argv_free. */
char **source_cmd_env(const char *url, const char *pgpassword, const char *appname);

/* What the command did (internal to the source, exposed for its parts). */
struct cmd_outcome {
	struct proc_result proc;
	bool lost_connection; /* the output says the database connection went away */
	char last_error[512]; /* the last output line that looks like an error, for the summary */
	char sqlstate[6];     /* from a driver's error class in the output (psycopg2.errors.X) */
	char revision[64];    /* the revision Alembic said it was running last */
	struct lock *lock;    /* the migration lock the command runs under (NULL: none) */
	int64_t next_ping;    /* when the lock's connection is next asked to answer */
	bool lock_lost;       /* the lock was lost: the command's group was killed */
};

/* The SQLSTATE behind a driver's error class name in a line of output (psycopg2.errors.
 * DuplicateColumn → 42701; also psycopg and asyncpg names), or NULL. */
const char *source_cmd_line_sqlstate(const char *line);

/* The command source: runs it (always: a command cannot say what is pending); its output
 * lines become migrate.output events; a failure while the database went away is MIGRATE_LOST. */
struct source;
bool source_cmd_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

/* What a preset or the fast-path options add to a command (source_tool.c fills it). */
struct cmd_spec {
	const char *tool;            /* the preset's name, for logs; NULL for a plain command */
	const char *const *env;      /* NAME=template (tools.h), set for the command */
	bool expand_argv;            /* argv holds the preset's {placeholders} */
	char *const *files;          /* fast path: the migration files ... */
	size_t nfiles;
	char *const *history;        /* ... and the history table(s); none: no fast path */
	size_t nhistory;
};

/* The command source with argv (moved into the source on success) and spec (copied). */
bool source_cmd_open_spec(const struct config *cfg, char **argv, const struct cmd_spec *spec,
			  struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

/* Whether a line of a tool's output reports that the database connection was lost. */
bool source_cmd_line_lost_connection(const char *line);

#endif
