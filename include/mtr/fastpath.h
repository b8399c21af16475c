/* The fast path of a migration tool we run: a fingerprint of its migration files and of the
 * rows of its history table(s), kept after a success; when both are unchanged at the next
 * start, the tool has nothing to do and is not started. */
#ifndef MTR_FASTPATH_H
#define MTR_FASTPATH_H

#include "mtr/pg.h"

#include <stdbool.h>
#include <stddef.h>

/* What to fingerprint. Strings are copied by fastpath_new. */
struct fastpath_spec {
	const char *key;     /* which tool's history this is: one stored row per key */
	const char *schema;  /* the tool's own bookkeeping schema (bookkeeping.h) */
	const char *cwd;     /* relative paths are relative to it; NULL: the working directory */
	const char *command; /* the command line: another command is another fingerprint */
	char *const *files;  /* files, directories (every file below) or glob patterns */
	size_t nfiles;
	char *const *history; /* [schema.]table, as the tool's connection resolves it */
	size_t nhistory;
};

struct fastpath;
struct fastpath *fastpath_new(const struct fastpath_spec *spec);
void fastpath_free(struct fastpath *fp);

enum fastpath_verdict {
	FP_UNCHANGED,       /* files and history as they were after the last success */
	FP_FIRST,           /* nothing kept yet */
	FP_FILES_CHANGED,   /* a file added, removed, renamed or edited, or another command */
	FP_HISTORY_CHANGED, /* a history row added, removed or changed */
	FP_UNKNOWN          /* could not tell (why says it): the tool runs */
};

/* Fingerprints the files and the history now and compares them with what was kept. why
 * receives a short reason for logs ("3 files, schema_migrations: 4 rows"). */
enum fastpath_verdict fastpath_check(struct fastpath *fp, PGconn *conn, char *why, size_t whylen);

/* After the tool succeeded: the history fingerprinted again, kept with the files as the last
 * check saw them. False with err when it cannot be kept (err.sqlstate 42501: the role may
 * not create the bookkeeping table). */
bool fastpath_save(struct fastpath *fp, PGconn *conn, struct pg_error *err) MTR_MUST_CHECK;

/* The files' fingerprint alone (SHA-256 hex of names and contents in name order), with the
 * number of files; for tests. False with err naming the path that could not be read. */
bool fastpath_files(const struct fastpath_spec *spec, char out[65], size_t *count, char *err,
		    size_t errlen) MTR_MUST_CHECK;

#endif
