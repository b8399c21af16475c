/* The migration source interface: plan what is pending, check it, apply it. One table of
 * function pointers per kind (SQL directory, external command). */
#ifndef MTR_SOURCE_H
#define MTR_SOURCE_H

#include "mtr/config.h"
#include "mtr/pg.h"
#include "mtr/signals.h"

#include <stdbool.h>
#include <stddef.h>

enum plan_flags { PLAN_REPORT = 1, PLAN_QUIET = 2 };

/* What plan() found, for the phases after it (backup names, failure signatures). */
struct plan_info {
	uint64_t fingerprint; /* a hash of the migration set */
	char from[64];        /* where the database is ("" when new) */
	char to[64];          /* where it will be */
};

/* What the phases around a source give it. */
struct source_ctx {
	const struct config *cfg;
	const struct pg_target *target;
	const char *start_time; /* the server's start time when we connected: restarts show */
	const struct sigstate *sigs;
	long attempt;           /* 0 on the first try */
	struct plan_info *info; /* plan() reports here what it read */
};

enum migrate_result {
	MIGRATE_OK,
	MIGRATE_FAILED,  /* permanent: code says which exit code (already logged) */
	MIGRATE_LOST,    /* the database went away: wait, lock, plan and try again */
	MIGRATE_STOPPED  /* a stop signal arrived: signo */
};

struct migrate_outcome {
	enum migrate_result result;
	int code;
	int signo;
	char how[160]; /* for MIGRATE_LOST: what happened, for the retry log line */
	char sqlstate[6];  /* a command's failure: the SQLSTATE its output names, if any */
	char revision[64]; /* a command's failure: the revision it was applying, if it said */
	char message[512]; /* a failure's error message, one line */
	char file[256];    /* the migration file to blame (file:line:column when known) */
};

struct source {
	const char *kind;     /* "sql", "alembic", "command" */
	const char *describe; /* for logs: the directory, or the command line (owned by self) */
	void *self;
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

/* The source the configuration names (--sql-dir, else the command/Alembic); false with err
 * (one line naming the option) if it cannot be set up. Caller calls src->destroy(src->self). */
bool source_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

#endif
