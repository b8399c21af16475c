/* Native readers of other tools' plain migrations (dbmate, golang-migrate, goose, Flyway SQL,
 * Prisma, Django): what is at head is decided here, the tool's stuck states are diagnosed with
 * its own way out before anything runs, and plain-SQL tools can be applied by our runner and
 * recorded exactly as the tool records them. Each tool is a file (source_<tool>.c) with its
 * ops and a row in tools.c. */
#ifndef MTR_TOOL_NATIVE_H
#define MTR_TOOL_NATIVE_H

#include "mtr/config.h"
#include "mtr/pg.h"
#include "mtr/problems.h"
#include "mtr/source.h"
#include "mtr/tools.h"

#include <stdbool.h>
#include <stddef.h>

/* One local migration, as the tool reads it. */
struct native_mig {
	char *version;  /* as the tool records it ("20240101000000", "1.1"; NULL: repeatable) */
	char *name;     /* its description or name */
	char *file;     /* path relative to the migrations directory */
	char *sql;      /* what applying it runs (the up section) */
	bool no_tx;     /* the tool's own marker says: outside a transaction */
	char *checksum; /* what the tool records for it, NULL where it records none */
	bool applied;   /* set by the tool's state() */
};

/* One row of the tool's history, as far as the generic checks need it. */
struct native_row {
	char *version;  /* the key the files are matched by */
	char *checksum; /* NULL where the tool keeps none */
};

struct native;

struct native_ops {
	/* Reads the migrations directory (dirfd, named dir in messages) into n->migs, in the
	 * tool's order; false with err (a file the tool itself would refuse, and why). */
	bool (*scan)(struct native *n, int dirfd, const char *dir, char *err, size_t errlen);
	/* Reads the history (n->rows, n->table_exists), marks migs applied and adds the tool's
	 * own problems (stuck states with their fix). False with err when it cannot be read. */
	bool (*state)(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen);
	/* Creates the history table as the tool does, when it is missing. NULL: reader only. */
	bool (*ensure)(struct native *n, PGconn *conn, struct pg_error *err);
	/* The statements that record m as the tool does: *record in the same transaction, or for
	 * a no-transaction file *before (may stay NULL) and *after ($1: the duration in ms). */
	void (*record)(struct native *n, PGconn *conn, const struct native_mig *m, char **record,
		       char **before, char **after);
	void (*destroy)(struct native *n); /* the tool's own state (n->tool) */
	const char *no_tx_marker;          /* the line that marks a file no-transaction */
	bool unordered;                    /* no version order (Django's graph): no out-of-order */
	const char *dir;                   /* the directory to read when not the preset's first file */
};

struct native {
	const struct native_ops *ops;
	const struct tool_def *def;
	const struct config *cfg;
	char *dir;                 /* the migrations directory, relative to --migrate-cwd */
	char *table;               /* the history table, quoted (set by state) */
	char *schema;              /* its schema, quoted */
	bool table_exists;
	struct native_mig *migs;
	size_t nmigs;
	struct native_row *rows;
	size_t nrows;
	void *tool;                /* per-tool state */
	bool native_apply;         /* our runner applies (else the CLI): what it cannot apply is refused */
};

/* Opens a native source for preset t: ops read and diagnose; pending migrations are applied
 * by sql_runner when native, else by the tool's CLI (cli_argv, moved in). */
bool tool_native_open(const struct config *cfg, const struct tool_def *t,
		      const struct native_ops *ops, bool native_apply, char **cli_argv,
		      struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

/* Adds a migration (strings copied; sql and checksum may be NULL). */
struct native_mig *native_add(struct native *n, const char *version, const char *name,
			      const char *file, const char *sql, size_t sqllen);
/* Forgets the migrations and rows read (scan and state fill them again). */
void native_clear(struct native *n);

/* Adds a history row (strings copied; checksum may be NULL). */
void native_add_row(struct native *n, const char *version, const char *checksum);

/* The generic checks of rows against files: a row no file has (applied but missing locally),
 * a checksum that differs (edited after it was applied); marks the matched files applied. */
void native_match_rows(struct native *n, struct problems *pr, const char *fix_missing,
		       const char *fix_checksum);

/* The table name [schema.]table resolved as the tool resolves it (schema: given, else
 * current_schema()), quoted; *exists says whether it is there. False with err. */
bool native_resolve_table(struct native *n, PGconn *conn, const char *table, char *err,
			  size_t errlen) MTR_MUST_CHECK;

/* Creates the tool's history table with sql (one transaction, as the tool writes it; a failed
 * one is rolled back); n->table_exists says whether it is there now. Takes sql (frees it). */
bool native_create_table(struct native *n, PGconn *conn, char *sql, struct pg_error *err);

/* Runs sql (a query whose rows the caller reads) on conn; NULL with err. Caller PQclears. */
PGresult *native_query(PGconn *conn, const char *sql, char *err, size_t errlen) MTR_MUST_CHECK;

/* The tools' own readers, for tools.c's table. */
extern const struct native_ops native_dbmate, native_golang_migrate, native_goose, native_flyway,
	native_prisma, native_django;

/* The names in the directory dirfd (regular files, or directories with want_dirs), sorted
 * byte-wise; *n their count. Caller frees each and the vector (native_free_list). */
char **native_list(int dirfd, bool want_dirs, size_t *n);
void native_free_list(char **names, size_t n);

/* Whether the program is on PATH. */
bool native_cli_found(const char *program);

/* CRC-32 (zlib's, as java.util.zip.CRC32) of len bytes, continuing from crc (start with 0). */
uint32_t native_crc32(uint32_t crc, const void *data, size_t len);

/* Flyway's checksum of a file's text: CRC-32 over its lines read as Java's readLine reads
 * them (no line terminators; a byte-order mark dropped from the first), as a signed int. */
int32_t native_flyway_checksum(const char *text, size_t len);

#endif
