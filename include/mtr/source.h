/* The migration source interface: plan what is pending, check it, apply it; and the table of
 * sources that the pipeline and the configuration ask. */
#ifndef MTR_SOURCE_H
#define MTR_SOURCE_H

#include "mtr/config.h"
#include "mtr/lock.h"
#include "mtr/look.h"
#include "mtr/pg.h"
#include "mtr/progress.h"
#include "mtr/signals.h"

#include <stdbool.h>
#include <stddef.h>

/* PLAN_REPORT: print the plan (--check). PLAN_QUIET: a look before the lock (pipeline.c says
 * why). PLAN_REPEAT: the final plan under the lock, after a quiet look that already logged
 * the notes about the files. */
enum plan_flags { PLAN_REPORT = 1, PLAN_QUIET = 2, PLAN_REPEAT = 4 };

/* What plan() found, for the phases after it (backup names, failure signatures). */
struct plan_info {
	uint64_t fingerprint; /* a hash of the migration set */
	char from[64];        /* where the database is ("" when new) */
	char to[64];          /* where it will be */
	bool files_refused;   /* the migration files themselves were refused (logged): final */
	/* A pending step that needs one server session to itself (a file run outside a
	 * transaction), which a transaction pooler cannot give: "" when none. */
	char session_only[256];
};

/* What the phases around a source give it. */
struct source_ctx {
	const struct config *cfg;
	const struct pg_target *target;
	const char *start_time; /* the server's start time when we connected: restarts show */
	const struct sigstate *sigs;
	long attempt;           /* 0 on the first try */
	struct plan_info *info; /* plan() reports here what it read */
	/* While migrate() runs: where it says what it is doing, for migrate.progress (or NULL). */
	struct progress_watch *progress;
	struct lock *lock;      /* the migration lock, held while migrate() runs: watch it */
	/* The first look's answers (look()), asked with the readiness check before the lock:
	 * for a plan with PLAN_QUIET or PLAN_REPORT only (under the lock they may be stale). */
	const struct look *look;
};

enum migrate_result {
	MIGRATE_OK,
	MIGRATE_FAILED,  /* permanent: code says which exit code (already logged) */
	MIGRATE_LOST,    /* the database went away: wait, lock, plan and try again */
	MIGRATE_STOPPED, /* a stop signal arrived: signo */
	MIGRATE_LOCK_LOST /* the migration lock was lost meanwhile and the work stopped: how */
};

struct migrate_outcome {
	enum migrate_result result;
	int code;
	int signo;
	char how[512]; /* MIGRATE_LOST, MIGRATE_LOCK_LOST: what happened, for the log line */
	char sqlstate[6];  /* a command's failure: the SQLSTATE its output names, if any */
	char revision[64]; /* a command's failure: the revision it was applying, if it said */
	char message[512]; /* a failure's error message, one line */
	char file[256];    /* the migration file to blame (file:line:column when known) */
};

struct source {
	const struct source_def *def; /* its row in the table of sources */
	const char *kind;     /* "sql", "alembic", "command" */
	const char *describe; /* for logs: the directory, or the command line (owned by self) */
	void *self;
	/* Optional (NULL): adds the catalog questions its quiet plan needs to the first look, so
	 * that they ride on the readiness check's round trip. */
	void (*look)(void *self, struct look *l);
	/* Reads what the source holds and what the database has applied; logs and returns an
	 * exit code (65 for an inconsistency) or 0 with *pending set. PLAN_REPORT prints the
	 * plan to stdout (--check). PLAN_QUIET (a look before taking the lock, which a replica
	 * that is migrating right now may make stale) logs no problem: only a locked plan may
	 * refuse. */
	int (*plan)(void *self, PGconn *conn, const struct source_ctx *ctx, int flags,
		    size_t *pending);
	/* Applies what plan() found pending. */
	void (*migrate)(void *self, PGconn *conn, const struct source_ctx *ctx,
			struct migrate_outcome *out);
	void (*destroy)(void *self);
};

struct source_def;

/* One row of the table of sources (source.c). The pipeline and the configuration ask the
 * table and never name a source: a new source is its file, its row and its options. */
struct source_def {
	const char *name;      /* "sql", "alembic", "command": the pipeline.start "source" field */
	const char *option;    /* the option that selects it, with its argument: "--sql-dir DIR" */
	const char *env;       /* its environment variable: "MTR_SQL_DIR" */
	const char *log_field; /* pipeline.start's field naming what it reads or runs */
	bool (*wanted)(const struct config *cfg);
	/* The migration lock's name: replicas that may touch the same tables share it. */
	const char *(*lock_name)(const struct config *cfg);
	const char *no_check; /* why --check cannot report a plan for it; NULL when it can */
	bool (*open)(const struct config *cfg, struct source *src, char *err, size_t errlen);
};

/* The one source the configuration names; NULL with err (one line naming the options, for
 * exit 64) when none or several are. */
const struct source_def *source_choose(const struct config *cfg, char *err, size_t errlen) MTR_MUST_CHECK;

/* Whether cfg's options fit its source (--check only where a plan can be reported); false
 * with err. */
bool source_check_options(const struct config *cfg, char *err, size_t errlen) MTR_MUST_CHECK;

/* Opens the source the configuration names; false with err (one line naming the option) if
 * it cannot be set up. src->def is its row. Caller calls src->destroy(src->self). */
bool source_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

#endif
