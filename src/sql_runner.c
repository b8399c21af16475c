/* Applying SQL files for every source that does it itself: load, checksum, one transaction with
 * its bookkeeping and timeouts, error positions, retries of lock timeouts and deadlocks. */
#include "mtr/sql_runner.h"
#include "mtr/exitcode.h"
#include "mtr/fileio.h"
#include "mtr/log.h"
#include "mtr/retry.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- files ------------------------------------------------------------------------------- */

void sqlr_hash_init(struct sqlr_hash *h)
{
	h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	h->ctx = EVP_MD_CTX_new();
}

void sqlr_hash_free(struct sqlr_hash *h)
{
	EVP_MD_CTX_free(h->ctx);
	EVP_MD_free(h->md);
	h->md = h->ctx = NULL;
}

/* SHA-256 of what went into h's context since EVP_DigestInit_ex, as 64 hex digits ("" if the
 * library failed or ok is false). */
static void hash_end(struct sqlr_hash *h, bool ok, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!ok || !EVP_DigestFinal_ex(h->ctx, digest, &n) || n != 32)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[2 * (size_t)n] = '\0';
}

static bool hash_begin(struct sqlr_hash *h)
{
	return h->md && h->ctx && EVP_DigestInit_ex(h->ctx, h->md, NULL);
}

void sqlr_sha256_hex(struct sqlr_hash *h, const char *data, size_t len, char out[65])
{
	hash_end(h, hash_begin(h) && EVP_DigestUpdate(h->ctx, data, len), out);
}

/* Whether a file's first line is a marker, blanks after it allowed, decided from the file's
 * pieces as they come. */
enum line_state { LINE_MATCHING, LINE_BLANKS, LINE_YES, LINE_NO };
struct first_line {
	const char *marker;
	size_t at; /* bytes of the marker matched so far */
	enum line_state state;
};

static void first_line_feed(struct first_line *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n && m->state < LINE_YES; i++) {
		char c = p[i];
		bool blank = c == ' ' || c == '\t' || c == '\r';
		if (m->state == LINE_MATCHING)
			m->state = c != m->marker[m->at] ? LINE_NO
				 : m->marker[++m->at]    ? LINE_MATCHING
							 : LINE_BLANKS;
		else
			m->state = c == '\n' ? LINE_YES : blank ? LINE_BLANKS : LINE_NO;
	}
}

/* At the end of the file: the marker and only blanks after it are a first line too. */
static bool first_line_is(const struct first_line *m)
{
	return m->state == LINE_YES || m->state == LINE_BLANKS;
}

bool sqlr_first_line_is(const char *text, size_t len, const char *marker)
{
	struct first_line m = {marker, 0, *marker ? LINE_MATCHING : LINE_BLANKS};
	first_line_feed(&m, text, len);
	return first_line_is(&m);
}

/* A piece of a file: what it says about the whole (not text, not only white space). */
static void scan_piece(struct sqlr_file *out, struct first_line *m, bool *blank, const char *p,
		       size_t n, const char **why)
{
	if (memchr(p, '\0', n))
		*why = "contains a NUL byte; a migration must be text";
	for (size_t i = 0; i < n && *blank; i++)
		*blank = isspace((unsigned char)p[i]);
	first_line_feed(m, p, n);
	out->size += n;
}

/* The chunk that bounds a scan's memory; a file up to this size is one read(2). */
#define SCAN_CHUNK 65536

/* Reads fd (size bytes long) piece by piece into h and out; a reason it is no migration in *why. */
static bool scan_fd(int fd, size_t size, const char *marker, struct sqlr_hash *h,
		    struct sqlr_file *out, const char **why)
{
	char chunk[SCAN_CHUNK];
	struct first_line m = {marker, 0, *marker ? LINE_MATCHING : LINE_BLANKS};
	bool blank = true, hashing = hash_begin(h);
	while (out->size < size && !*why) {
		size_t want = size - out->size < sizeof chunk ? size - out->size : sizeof chunk;
		ssize_t got = file_read_full(fd, chunk, want);
		if (got < 0)
			return false;
		if (got == 0)
			break; /* it shrank since fstat: its checksum says what was read */
		hashing = hashing && EVP_DigestUpdate(h->ctx, chunk, (size_t)got);
		scan_piece(out, &m, &blank, chunk, (size_t)got, why);
	}
	if (!*why && blank)
		*why = "the file is empty; a migration must hold SQL (delete the file if it is not meant "
		       "to be one)";
	out->marked = first_line_is(&m);
	hash_end(h, hashing, out->checksum);
	return true;
}

enum sqlr_load sqlr_scan(int dirfd, const char *dir, const char *name, const char *marker,
			 struct sqlr_hash *h, struct sqlr_file *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	size_t size = 0;
	int fd = file_open_regular_at(dirfd, name, SQLR_MAX_BYTES, &size);
	if (fd < 0 && errno == ENOTSUP)
		return SQLR_NOT_REGULAR;
	const char *why = NULL;
	bool read_ok = fd >= 0 && scan_fd(fd, size, marker, h, out, &why);
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (!read_ok) {
		set_err(err, errlen, "%s/%s: cannot read: %s", dir, name, file_strerror(e));
		return SQLR_BAD;
	}
	if (!why)
		return SQLR_LOADED;
	set_err(err, errlen, "%s/%s: %s", dir, name, why);
	return SQLR_BAD;
}

/* sqlr_position within the first len bytes of text. */
static void position_in(const char *text, size_t len, long pos, long *line, long *col)
{
	*line = 1;
	*col = 1;
	long chars = 1;
	const unsigned char *p = (const unsigned char *)text, *end = p + len;
	for (; p < end && *p && chars < pos; p++) {
		if ((*p & 0xC0) == 0x80)
			continue; /* a continuation byte: same character */
		chars++;
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

void sqlr_position(const char *text, long pos, long *line, long *col)
{
	position_in(text, strlen(text), pos, line, col);
}

/* ---- one attempt ------------------------------------------------------------------------- */

enum attempt { APPLIED, RETRY, FINAL };

/* Whether a failure means the connection or the server went away. */
static bool lost(PGconn *conn, const char *state)
{
	return !pg_usable(conn) || strncmp(state, "08", 2) == 0 ||
	       strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0;
}

static bool retryable(const char *state)
{
	return strcmp(state, "55P03") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0;
}

static const char *field(const PGresult *res, int code)
{
	const char *v = res ? PQresultErrorField(res, code) : NULL;
	return v ? v : "";
}

static void failed(struct migrate_outcome *out, int code, const char *message, const char *file)
{
	out->result = MIGRATE_FAILED;
	out->code = code;
	snprintf(out->message, sizeof out->message, "%.*s", (int)sizeof out->message - 1, message);
	snprintf(out->file, sizeof out->file, "%.*s", (int)sizeof out->file - 1, file);
}

/* The text a step sends, read from its file when it is applied. A transactional file is read
 * into a buffer that already has room for the settings before it and the record and COMMIT
 * after it: the file's text is in memory once (libpq copies the query once more to send it). */
struct query {
	char *buf;        /* what is sent, NUL-terminated (owned) */
	const char *text; /* the file's text within buf */
	size_t len;       /* and its length */
	long offset;      /* characters before it (ASCII), so that an error position maps back */
};

static void fail_step(const struct sqlr_step *s, const PGresult *res, PGconn *conn,
		      const struct query *q, struct migrate_outcome *out)
{
	long line = 0, col = 0;
	const char *pos = field(res, PG_DIAG_STATEMENT_POSITION);
	if (*pos && atol(pos) > q->offset)
		position_in(q->text, q->len, atol(pos) - q->offset, &line, &col);
	const char *msg = res ? field(res, PG_DIAG_MESSAGE_PRIMARY) : PQerrorMessage(conn);
	char where[64] = "";
	if (line)
		snprintf(where, sizeof where, ":%ld:%ld", line, col);
	const char *detail = field(res, PG_DIAG_MESSAGE_DETAIL), *hint = field(res, PG_DIAG_MESSAGE_HINT);
	const char *context = field(res, PG_DIAG_CONTEXT), *state = field(res, PG_DIAG_SQLSTATE);
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_S("version", s->version), LF_S("sqlstate", state),
			     LF_S("error", msg), LF_S("detail", *detail ? detail : NULL),
			     LF_S("hint", *hint ? hint : NULL), LF_S("context", *context ? context : NULL),
			     LF_I("line", line), LF_I("column", col), LF_B("no_transaction", s->no_tx),
			     LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "%s/%s%s: %s (SQLSTATE %s)%s%s%s%s; %s", s->dir, s->file, where, msg, state,
		  *detail ? "; detail: " : "", detail, *hint ? "; hint: " : "", hint,
		  s->no_tx ? s->no_tx_failed
			   : "it was rolled back; migrations before it stay applied, the app was not "
			     "started");
	char file[256];
	snprintf(file, sizeof file, "%s%s", s->file, where);
	failed(out, MTR_EXIT_MIGRATION, msg, file);
	snprintf(out->sqlstate, sizeof out->sqlstate, "%s", state);
	snprintf(out->revision, sizeof out->revision, "%s", s->version);
}

/* Reads the file at path into q->buf, with room for before bytes ahead of its text and after
 * bytes and a NUL behind it. False with errno (q->buf may be set: the caller frees it). */
static bool read_text(const char *path, size_t before, size_t after, struct query *q)
{
	size_t size = 0;
	int fd = file_open_regular_at(AT_FDCWD, path, SQLR_MAX_BYTES, &size);
	if (fd < 0)
		return false;
	q->buf = xmalloc(before + size + after + 1);
	ssize_t got = file_read_full(fd, q->buf + before, size);
	int e = errno;
	close(fd);
	errno = e;
	if (got < 0)
		return false;
	q->text = q->buf + before;
	q->len = (size_t)got; /* shorter if it shrank: the checksum tells */
	return true;
}

/* The file could not be read again, or is not what the plan checked: nothing of it is sent. */
static bool not_as_planned(const struct sqlr_step *s, const char *why, struct migrate_outcome *out)
{
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_S("version", s->version), LF_S("error", why),
			     LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "%s/%s: %s; nothing of it was applied (migrations before it stay applied, the app "
		  "was not started): the files must not change while migrate-then-run runs; run it "
		  "again to check and apply the file as it is now",
		  s->dir, s->file, why);
	failed(out, MTR_EXIT_MIGRATION, why, s->file);
	snprintf(out->revision, sizeof out->revision, "%s", s->version);
	return false;
}

/* The query that applies a step: for a transactional file, settings, the file, its record and
 * COMMIT in one round trip; else the file alone. The text is hashed again, so that a file
 * changed since the plan is refused rather than applied under the old checksum. */
static bool build_query(const struct sqlr_step *s, const struct sqlr_opts *o, struct query *q,
			struct migrate_outcome *out)
{
	char prefix[160] = "", why[256] = "", sum[65];
	if (!s->no_tx)
		snprintf(prefix, sizeof prefix,
			 "BEGIN; SET LOCAL lock_timeout = %lld; SET LOCAL statement_timeout = %lld;\n",
			 (long long)o->lock_timeout_ms, (long long)o->statement_timeout_ms);
	/* "\n;" ends a last statement without a semicolon, and a last line that is a comment. */
	char *suffix = s->no_tx ? xstrdup("") : xasprintf("\n;\n%s; COMMIT", s->record_sql);
	char *path = xasprintf("%s/%s", s->dir, s->file);
	size_t plen = strlen(prefix), slen = strlen(suffix);
	struct sqlr_hash h;
	sqlr_hash_init(&h);
	bool ok = read_text(path, plen, slen, q);
	if (!ok) {
		snprintf(why, sizeof why, "cannot read it again to apply it: %s", file_strerror(errno));
	} else {
		sqlr_sha256_hex(&h, q->text, q->len, sum);
		ok = strcmp(sum, s->checksum) == 0;
		if (!ok)
			snprintf(why, sizeof why, "it changed after it was checked (SHA-256 %s when planned, "
				 "%s now)", s->checksum, sum);
	}
	sqlr_hash_free(&h);
	free(path);
	if (ok) {
		memcpy(q->buf, prefix, plen);
		memcpy(q->buf + plen + q->len, suffix, slen + 1);
		q->offset = (long)plen;
	}
	free(suffix);
	return ok ? true : not_as_planned(s, why, out);
}

/* A bookkeeping statement of a no-transaction file failed: lost, or a failure of its own. */
static enum attempt record_failed(PGconn *conn, const struct sqlr_step *s, const struct pg_error *e,
				  struct migrate_outcome *out)
{
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(out->how, sizeof out->how, "%s: the database connection was lost", s->file);
		out->result = MIGRATE_LOST;
		return FINAL;
	}
	char msg[1100];
	snprintf(msg, sizeof msg, "recording the migration in the history table: %s", e->msg);
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_S("error", msg), LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "%s: %s", s->file, msg);
	failed(out, MTR_EXIT_MIGRATION, msg, s->file);
	return FINAL;
}

/* The text ran without an error but left a transaction open, or closed ours. */
static enum attempt controls_transactions(const struct sqlr_step *s, struct migrate_outcome *out)
{
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "%s/%s: the file controls transactions itself (BEGIN, COMMIT or ROLLBACK); "
		  "remove those statements (each file already runs in its own transaction), "
		  "or mark it %s",
		  s->dir, s->file, s->no_tx_marker);
	failed(out, MTR_EXIT_MIGRATION, "the file controls transactions itself", s->file);
	return FINAL;
}

/* What a failed attempt means: stopped, lost, worth retrying, or final (logged). */
static enum attempt judge(PGconn *conn, const struct sqlr_step *s, PGresult *res,
			  const struct pg_error *e, const struct query *q, struct migrate_outcome *out,
			  char state[6])
{
	snprintf(state, 6, "%s", field(res, PG_DIAG_SQLSTATE));
	if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE) {
		struct pg_error ignored;
		if (!pg_command(conn, "ROLLBACK", 0, NULL, PG_QUERY_MS, -1, &ignored)) {
			/* the connection is finished by the caller's retry either way */
		}
	}
	if (e->interrupted) {
		out->result = MIGRATE_STOPPED;
		return FINAL;
	}
	if (s->fence_state && strcmp(state, s->fence_state) == 0) { /* rolled back, not applied */
		out->result = MIGRATE_LOCK_LOST;
		snprintf(out->how, sizeof out->how, "%s: %s", s->file, field(res, PG_DIAG_MESSAGE_PRIMARY));
		return FINAL;
	}
	if (lost(conn, state)) {
		snprintf(out->how, sizeof out->how, "%s: the database connection was lost (%s)", s->file,
			 *state ? state : "no answer");
		out->result = MIGRATE_LOST;
		return FINAL;
	}
	if (!s->no_tx && retryable(state))
		return RETRY;
	if (res && PQresultStatus(res) != PGRES_FATAL_ERROR)
		return controls_transactions(s, out);
	fail_step(s, res, conn, q, out);
	return FINAL;
}

static enum attempt attempt(PGconn *conn, const struct sqlr_step *s, const struct sqlr_opts *o,
			    const struct query *q, struct migrate_outcome *out, char state[6])
{
	int64_t start = now_ms();
	struct pg_error e;
	state[0] = '\0';
	if (s->no_tx && s->before_sql && !pg_command(conn, s->before_sql, 0, NULL, PG_QUERY_MS, -1, &e))
		return record_failed(conn, s, &e, out);
	progress_watch_pid(o->progress, PQbackendPID(conn), s->file);
	PGresult *res = pg_run(conn, q->buf, 0, NULL, -1, o->stop_fd, &e);
	progress_idle(o->progress); /* before its outcome is logged, whatever it is */
	ExecStatusType st = PQresultStatus(res);
	if (!res || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) ||
	    PQtransactionStatus(conn) != PQTRANS_IDLE) {
		enum attempt a = judge(conn, s, res, &e, q, out, state);
		PQclear(res);
		return a;
	}
	PQclear(res);
	int64_t ms = now_ms() - start;
	char dur[24];
	snprintf(dur, sizeof dur, "%lld", (long long)ms);
	const char *params[1] = {dur};
	if (s->no_tx && s->after_sql && !pg_command(conn, s->after_sql, 1, params, PG_QUERY_MS, -1, &e))
		return record_failed(conn, s, &e, out);
	log_event(LOG_INFO, "migrate.step",
		  LOG_FIELDS(LF_S("version", s->version), LF_S("file", s->file), LF_I("duration_ms", ms),
			     LF_B("no_transaction", s->no_tx)),
		  "applied %s", s->file);
	return APPLIED;
}

/* ---- retries ----------------------------------------------------------------------------- */

static void blocked_for_good(const struct sqlr_step *s, const char *state, long tries,
			     struct migrate_outcome *out)
{
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_S("sqlstate", state), LF_I("attempts", tries),
			     LF_B("transient", true), LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
		  "%s/%s: still blocked (SQLSTATE %s) after %ld attempts; another session holds "
		  "locks it needs: find it in pg_locks, or raise --migration-lock-timeout / --retries",
		  s->dir, s->file, state, tries);
	out->result = MIGRATE_FAILED;
	out->code = MTR_EXIT_TEMPFAIL;
}

/* The attempts of one step, with the query built once. */
static bool attempts(PGconn *conn, const struct sqlr_step *s, const struct sqlr_opts *o,
		     const struct query *q, struct migrate_outcome *out)
{
	struct backoff b;
	backoff_init(&b, 500, 10000, random_u64());
	for (long tries = 0;; tries++) {
		char state[6];
		enum attempt a = attempt(conn, s, o, q, out, state);
		if (a != RETRY)
			return a == APPLIED;
		if (tries >= o->retries) {
			blocked_for_good(s, state, tries + 1, out);
			return false;
		}
		int64_t delay = backoff_next(&b);
		log_event(LOG_WARN, "migrate.retry",
			  LOG_FIELDS(LF_S("file", s->file), LF_S("sqlstate", state),
				     LF_I("attempt", tries + 1), LF_I("delay_ms", delay)),
			  "%s: %s (SQLSTATE %s); rolled back, retrying in %lldms", s->file,
			  strcmp(state, "55P03") == 0 ? "lock not available within lock_timeout"
						       : "deadlock or serialization failure",
			  state, (long long)delay);
		int sig = signals_sleep(o->sigs, delay);
		if (sig) {
			out->result = MIGRATE_STOPPED;
			out->signo = sig;
			return false;
		}
	}
}

bool sqlr_apply(PGconn *conn, const struct sqlr_step *s, const struct sqlr_opts *o,
		struct migrate_outcome *out)
{
	struct query q = {0};
	bool ok = build_query(s, o, &q, out) && attempts(conn, s, o, &q, out);
	free(q.buf);
	return ok;
}
