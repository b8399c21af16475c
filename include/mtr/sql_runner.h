/* The runner shared by every source that applies SQL files itself: scan a file, checksum it,
 * apply it in one transaction (or outside one) with its bookkeeping, map errors to
 * file:line:column and SQLSTATE, retry what a lock timeout or a deadlock ended. */
#ifndef MTR_SQL_RUNNER_H
#define MTR_SQL_RUNNER_H

#include "mtr/pg.h"
#include "mtr/progress.h"
#include "mtr/signals.h"
#include "mtr/source.h"

#include <stdbool.h>
#include <stddef.h>

/* A migration file's size limit: larger is refused, not read. */
#define SQLR_MAX_BYTES ((size_t)1 << 30)

/* SHA-256 state reused over a whole directory: fetching the digest for each of hundreds of
 * files would cost more than the hashing itself. */
struct sqlr_hash {
	void *md, *ctx;
};
void sqlr_hash_init(struct sqlr_hash *h);
void sqlr_hash_free(struct sqlr_hash *h);
/* SHA-256 of data as 64 lowercase hex digits ("" if the library failed). */
void sqlr_sha256_hex(struct sqlr_hash *h, const char *data, size_t len, char out[65]);

enum sqlr_load { SQLR_LOADED, SQLR_NOT_REGULAR, SQLR_BAD };

/* Reads dir's file name (relative to dirfd) whole into *sql (caller frees) and *len, for a
 * source that keeps the text (a tool's file with sections of its own). What is not a regular
 * file is SQLR_NOT_REGULAR (nothing read, never a blocking open); a file that cannot be read,
 * is over SQLR_MAX_BYTES, holds a NUL byte or only white space is SQLR_BAD with err naming
 * dir/name and the fix. */
enum sqlr_load sqlr_load(int dirfd, const char *dir, const char *name, char **sql, size_t *len,
			 char *err, size_t errlen) MTR_MUST_CHECK;

/* What sqlr_scan learned of a file, which it does not keep. */
struct sqlr_file {
	char checksum[65]; /* SHA-256 of its bytes, 64 lowercase hex digits */
	size_t size;
	bool marked;       /* its first line is the marker, blanks after it allowed */
};

/* Reads dir's file name (relative to dirfd) piece by piece in a buffer of fixed size, so that
 * memory does not grow with the file: hashes it, checks that it is text and not only white
 * space, and whether its first line is marker. What is not a regular file is SQLR_NOT_REGULAR
 * (nothing read, never a blocking open); otherwise as sqlr_load. A file of up to 64 KiB costs four system calls: open, fstat, read, close. */
enum sqlr_load sqlr_scan(int dirfd, const char *dir, const char *name, const char *marker,
			 struct sqlr_hash *h, struct sqlr_file *out, char *err, size_t errlen) MTR_MUST_CHECK;

/* Whether the first line of text (len bytes) is marker, blanks after it allowed: the rule of
 * sqlr_scan's marked. */
bool sqlr_first_line_is(const char *text, size_t len, const char *marker);

/* Why dir entry name (relative to dirfd) is not a regular file, for a refusal: "a FIFO …",
 * "a device …" (static text; found with fstatat, nothing is opened). */
const char *sqlr_not_regular(int dirfd, const char *name);

/* A file name as text for the history table and logs (caller frees): valid UTF-8 stays as
 * it is, every other byte (and a backslash) becomes \xNN, so that a name in another
 * encoding is recorded readably and never as an empty string. */
char *sqlr_text_name(const char *raw);

/* The first statement of sql that starts or ends a transaction (BEGIN, START TRANSACTION,
 * COMMIT, END, ROLLBACK but not ROLLBACK TO, ABORT, PREPARE TRANSACTION): its keyword (static
 * text) and 1-based *line, or NULL. A lexer that knows comments, quoted strings and names,
 * dollar quoting and BEGIN ATOMIC bodies finds it before anything is sent, because a COMMIT
 * inside a file would commit the first part of it for good. */
const char *sqlr_transaction_control(const char *sql, long *line);

/* 1-based line and column of the 1-based character position pos in text (UTF-8). */
void sqlr_position(const char *text, long pos, long *line, long *col);

/* One file to apply, and how the source records it. */
struct sqlr_step {
	const char *dir;      /* for messages: dir/file */
	const char *file;
	const char *version;  /* the revision, for the outcome */
	/* The text to apply, when the source holds it; NULL: dir/file is read again when it is
	 * applied and refused unless it still has checksum (sqlr_scan's, at plan time). */
	const char *sql;
	const char *checksum;
	bool no_tx;           /* run outside a transaction */
	/* Transactional: statements that record the migration, sent after the text in the same
	 * transaction and round trip (literal SQL). */
	const char *record_sql;
	/* No transaction: a record before the text (may be NULL), and one after it succeeded,
	 * whose $1 is the duration in milliseconds. */
	const char *before_sql, *after_sql;
	/* The SQLSTATE with which record_sql's lock fence fails (NULL: none): MIGRATE_LOCK_LOST. */
	const char *fence_state;
	const char *no_tx_failed; /* a no-transaction file failed: what the user should do */
	const char *no_tx_marker; /* the line that marks a file no-transaction, for advice */
};

struct sqlr_opts {
	int64_t lock_timeout_ms, statement_timeout_ms;
	long retries;              /* of a lock timeout, deadlock or serialization failure */
	const struct sigstate *sigs;
	int stop_fd;
	struct progress_watch *progress; /* told each step, or NULL */
};

/* Applies one step: unless the step holds its text, reads the file (the only one in memory,
 * once) and checks it against the plan's checksum; runs it; retries (with backoff, logged) what a lock timeout, a deadlock or a
 * serialization failure rolled back. Logs migrate.step on success and migrate.failed on a
 * failure. True when applied; false with out set (MIGRATE_FAILED, _LOST or _STOPPED). */
bool sqlr_apply(PGconn *conn, const struct sqlr_step *s, const struct sqlr_opts *o,
		struct migrate_outcome *out) MTR_MUST_CHECK;

/* A source's step i of the pending ones, applied with o (sqlr_apply_pending). */
typedef bool (*sqlr_step_fn)(void *self, PGconn *conn, size_t i, const struct sqlr_opts *o,
			     struct migrate_outcome *out);

/* Applies steps 0 to n-1 in order with apply, each only while the migration lock is still
 * ours (ctx->lock, if any). A statement in progress is cancelled by a stop signal, and by the
 * lock being lost (the lock's connection speaking). True when all were applied; false with
 * out set: MIGRATE_LOCK_LOST, or MIGRATE_LOST when our own connection went with the lock, or
 * what apply said. */
bool sqlr_apply_pending(PGconn *conn, const struct source_ctx *ctx, size_t n, sqlr_step_fn apply,
			void *self, struct migrate_outcome *out);

#endif
