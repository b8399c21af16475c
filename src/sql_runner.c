/* Applying SQL files for every source that does it itself: load, checksum, one transaction with
 * its bookkeeping and timeouts, error positions, retries of lock timeouts and deadlocks. */
#include "mtr/sql_runner.h"
#include "mtr/exitcode.h"
#include "mtr/fileio.h"
#include "mtr/log.h"
#include "mtr/retry.h"
#include "mtr/strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
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

/* A file that could not be opened or read (errno e): not a regular file after all (a socket
 * cannot even be opened: ENXIO), a symbolic link to nothing or to itself, or a plain error. */
static enum sqlr_load open_failed(int dirfd, const char *dir, const char *name, int e, char *err,
				  size_t errlen)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, 0) == 0 && !S_ISREG(st.st_mode))
		return SQLR_NOT_REGULAR;
	bool link = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
	if (link && (e == ENOENT || e == ELOOP))
		set_err(err, errlen, "%s/%s: a symbolic link %s; point it at the migration's SQL "
			"file, or remove it", dir, name,
			e == ELOOP ? "that loops (it leads back to itself)"
				   : "to nothing (its target does not exist)");
	else
		set_err(err, errlen, "%s/%s: cannot read: %s", dir, name, file_strerror(e));
	return SQLR_BAD;
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
	if (!read_ok)
		return open_failed(dirfd, dir, name, e, err, errlen);
	if (!why)
		return SQLR_LOADED;
	set_err(err, errlen, "%s/%s: %s", dir, name, why);
	return SQLR_BAD;
}

enum sqlr_load sqlr_load(int dirfd, const char *dir, const char *name, char **sql, size_t *len,
			 char *err, size_t errlen)
{
	*sql = file_read_at(dirfd, name, SQLR_MAX_BYTES, len);
	if (!*sql && errno == ENOTSUP)
		return SQLR_NOT_REGULAR;
	if (!*sql)
		return open_failed(dirfd, dir, name, errno, err, errlen);
	const char *why = NULL;
	if (strlen(*sql) != *len)
		why = "contains a NUL byte; a migration must be text";
	bool blank = true;
	for (const char *p = *sql; *p && blank; p++)
		blank = isspace((unsigned char)*p);
	if (!why && blank)
		why = "the file is empty; a migration must hold SQL (delete the file if it is not meant "
		      "to be one)";
	if (!why)
		return SQLR_LOADED;
	set_err(err, errlen, "%s/%s: %s", dir, name, why);
	free(*sql);
	*sql = NULL;
	return SQLR_BAD;
}

const char *sqlr_not_regular(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, 0) != 0)
		return "not a regular file";
	if (S_ISFIFO(st.st_mode))
		return "a FIFO (named pipe), not a regular file: reading it would wait for a writer";
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		return "a device, not a regular file: reading it may never end";
	if (S_ISSOCK(st.st_mode))
		return "a socket, not a regular file";
	if (S_ISDIR(st.st_mode))
		return "a directory, not a regular file";
	return "not a regular file";
}

char *sqlr_text_name(const char *raw)
{
	struct strbuf b = STRBUF_INIT;
	sb_adds(&b, "");
	for (const char *p = raw; *p;) {
		size_t n = utf8_char_len(p);
		if (n == 0 || (n == 1 && *p == '\\')) {
			sb_addf(&b, "\\x%02x", (unsigned char)*p);
			p++;
			continue;
		}
		sb_add(&b, p, n);
		p += n;
	}
	return sb_take(&b);
}

/* ---- transaction control in a file --------------------------------------------------------- */

/* Where a quoted or commented stretch that starts at p ends (just past it); p itself when
 * none starts there. Knows '…' (and E'…' escapes), "…", $tag$…$tag$, -- and nested slash-star
 * comments, as PostgreSQL's lexer does. */
static const char *skip_quoted(const char *start, const char *p, long *line)
{
	const char *q = p;
	if (p[0] == '-' && p[1] == '-') {
		while (*q && *q != '\n')
			q++;
		return q;
	}
	if (p[0] == '/' && p[1] == '*') {
		int depth = 0;
		do {
			if (q[0] == '/' && q[1] == '*') {
				depth++;
				q += 2;
			} else if (q[0] == '*' && q[1] == '/') {
				depth--;
				q += 2;
			} else {
				*line += *q == '\n';
				q++;
			}
		} while (*q && depth > 0);
		return q;
	}
	if (*p == '\'' || *p == '"') {
		bool esc = *p == '\'' && p > start && (p[-1] == 'E' || p[-1] == 'e') &&
			   (p - 1 == start || !(isalnum((unsigned char)p[-2]) || p[-2] == '_'));
		char quote = *q++;
		while (*q) {
			if (esc && *q == '\\' && q[1]) {
				*line += q[1] == '\n';
				q += 2;
			} else if (*q == quote && q[1] == quote) {
				q += 2;
			} else if (*q == quote) {
				return q + 1;
			} else {
				*line += *q == '\n';
				q++;
			}
		}
		return q;
	}
	if (*p == '$' && !(p > start && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '$'))) {
		const char *t = p + 1;
		if (isalpha((unsigned char)*t) || *t == '_' || (unsigned char)*t >= 0x80)
			while (isalnum((unsigned char)*t) || *t == '_' || (unsigned char)*t >= 0x80)
				t++;
		if (*t != '$')
			return p;
		size_t taglen = (size_t)(t + 1 - p);
		for (q = t + 1; *q; q++) {
			if (*q == '$' && strncmp(q, p, taglen) == 0)
				return q + taglen;
			*line += *q == '\n';
		}
		return q;
	}
	return p;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* The word after the one at w (skipping blanks and comments), for two-word statements. */
static const char *next_word(const char *start, const char *w, size_t n, size_t *len)
{
	const char *p = w + n;
	long ignored = 0;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		const char *q = skip_quoted(start, p, &ignored);
		if (q == p || (*p != '-' && *p != '/'))
			break;
		p = q;
	}
	*len = 0;
	while (isalnum((unsigned char)p[*len]) || p[*len] == '_')
		(*len)++;
	return p;
}

/* Whether the statement that starts with word w controls transactions; its name if so. */
static const char *control_word(const char *start, const char *w, size_t n)
{
	static const char *const always[] = {"BEGIN", "COMMIT", "END", "ABORT"};
	for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
		if (word_is(w, n, always[i]))
			return always[i];
	size_t n2;
	const char *w2 = next_word(start, w, n, &n2);
	if (word_is(w, n, "ROLLBACK")) /* ROLLBACK TO SAVEPOINT stays inside our transaction */
		return word_is(w2, n2, "TO") ? NULL : "ROLLBACK";
	if (word_is(w, n, "START") && word_is(w2, n2, "TRANSACTION"))
		return "START TRANSACTION";
	if (word_is(w, n, "PREPARE") && word_is(w2, n2, "TRANSACTION"))
		return "PREPARE TRANSACTION";
	return NULL;
}

const char *sqlr_transaction_control(const char *sql, long *line)
{
	long ln = 1, stmt_line = 1;
	int words = 0, depth = 0; /* psql's rule: BEGIN or CASE after the first word opens a block */
	for (const char *p = sql; *p;) {
		const char *q = skip_quoted(sql, p, &ln);
		if (q != p) {
			p = q;
			continue;
		}
		if (isalpha((unsigned char)*p) || *p == '_') {
			size_t n = 0;
			while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '$')
				n++;
			if (++words == 1) {
				stmt_line = ln;
				const char *kw = control_word(sql, p, n);
				if (kw) {
					*line = stmt_line;
					return kw;
				}
			} else if (word_is(p, n, "BEGIN") || word_is(p, n, "CASE")) {
				depth++;
			} else if (word_is(p, n, "END") && depth > 0) {
				depth--;
			}
			p += n;
			continue;
		}
		if (*p == ';' && depth == 0)
			words = 0;
		if (!isspace((unsigned char)*p) && *p != ';' && words == 0)
			words = -1000000; /* a statement that starts with no word: (SELECT …) */
		ln += *p == '\n';
		p++;
	}
	return NULL;
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
	char *buf;        /* owned, or NULL */
	const char *sql;  /* what is sent, NUL-terminated: buf, or the step's own text */
	const char *text; /* the file's text within it */
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

#define GUARD "migrate_then_run_file"

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

/* A step's file read again and compared with the plan's checksum; false with why. */
static bool read_as_planned(const struct sqlr_step *s, size_t before, size_t after,
			    struct query *q, char *why, size_t whylen)
{
	char *path = xasprintf("%s/%s", s->dir, s->file);
	bool ok = read_text(path, before, after, q);
	int e = errno;
	free(path);
	if (!ok) {
		snprintf(why, whylen, "cannot read it again to apply it: %s", file_strerror(e));
		return false;
	}
	char sum[65];
	struct sqlr_hash h;
	sqlr_hash_init(&h);
	sqlr_sha256_hex(&h, q->text, q->len, sum);
	sqlr_hash_free(&h);
	if (strcmp(sum, s->checksum) == 0)
		return true;
	snprintf(why, whylen, "it changed after it was checked (SHA-256 %s when planned, %s now)",
		 s->checksum, sum);
	return false;
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
 * COMMIT in one round trip; else the file alone (sent as the source holds it, when it does).
 * A file the source does not hold is read again and hashed, so that a file changed since the
 * plan is refused rather than applied under the old checksum. */
static bool build_query(const struct sqlr_step *s, const struct sqlr_opts *o, struct query *q,
			struct migrate_outcome *out)
{
	char prefix[200] = "", why[256] = "";
	if (s->no_tx && s->sql) {
		q->sql = q->text = s->sql;
		q->len = strlen(s->sql);
		return true;
	}
	if (!s->no_tx)
		snprintf(prefix, sizeof prefix, "BEGIN; SET LOCAL lock_timeout = %lld; "
			 "SET LOCAL statement_timeout = %lld; SAVEPOINT " GUARD ";\n",
			 (long long)o->lock_timeout_ms, (long long)o->statement_timeout_ms);
	/* "\n;" ends a last statement without a semicolon, and a last line that is a comment.
	 * The savepoint is the guard against a COMMIT or ROLLBACK inside the file that the lexer
	 * missed: it ended our transaction, so releasing the savepoint fails (3B001) and what
	 * follows, the record included, is not committed. */
	char *suffix = s->no_tx ? xstrdup("")
				: xasprintf("\n;\nRELEASE SAVEPOINT " GUARD ";\n%s; COMMIT", s->record_sql);
	size_t plen = strlen(prefix), slen = strlen(suffix);
	bool ok = true;
	if (s->sql) {
		q->len = strlen(s->sql);
		q->buf = xmalloc(plen + q->len + slen + 1);
		q->text = q->buf + plen;
		memcpy(q->buf + plen, s->sql, q->len);
	} else {
		ok = read_as_planned(s, plen, slen, q, why, sizeof why);
	}
	if (ok) {
		memcpy(q->buf, prefix, plen);
		memcpy(q->buf + plen + q->len, suffix, slen + 1);
		q->sql = q->buf;
		q->offset = (long)plen;
	}
	free(suffix);
	return ok ? true : not_as_planned(s, why, out);
}

/* A statement of ours around a no-transaction file failed (what: which one): stopped, lost,
 * or a failure of its own. */
static enum attempt record_failed(PGconn *conn, const struct sqlr_step *s, const char *what,
				  const struct pg_error *e, struct migrate_outcome *out)
{
	if (e->interrupted) {
		out->result = MIGRATE_STOPPED;
		return FINAL;
	}
	if (PQstatus(conn) != CONNECTION_OK || !e->sqlstate[0]) {
		snprintf(out->how, sizeof out->how, "%s: the database connection was lost", s->file);
		out->result = MIGRATE_LOST;
		return FINAL;
	}
	char msg[1100];
	snprintf(msg, sizeof msg, "%s: %s", what, e->msg);
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_S("error", msg), LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "%s: %s", s->file, msg);
	failed(out, MTR_EXIT_MIGRATION, msg, s->file);
	return FINAL;
}

#define RECORDING "recording the migration in the history table"

/* The text ran without an error but left a transaction open, or closed ours (caught by the
 * guard savepoint: what ran before its COMMIT may be committed). */
static enum attempt controls_transactions(const struct sqlr_step *s, struct migrate_outcome *out)
{
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", s->file), LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "%s/%s: the file controls transactions itself (BEGIN, COMMIT or ROLLBACK); "
		  "it is not recorded as applied, but what ran before its own COMMIT may be "
		  "committed: check the database; then remove those statements (each file already "
		  "runs in its own transaction), or mark it %s",
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
	if (!s->no_tx && strcmp(state, "3B001") == 0 && strstr(field(res, PG_DIAG_MESSAGE_PRIMARY), GUARD))
		return controls_transactions(s, out);
	if (res && PQresultStatus(res) != PGRES_FATAL_ERROR)
		return controls_transactions(s, out);
	fail_step(s, res, conn, q, out);
	return FINAL;
}

static enum attempt run_step(PGconn *conn, const struct sqlr_step *s, const struct sqlr_opts *o,
			     const struct query *q, struct migrate_outcome *out, char state[6])
{
	int64_t start = now_ms();
	struct pg_error e;
	state[0] = '\0';
	if (s->no_tx && s->before_sql && !pg_command(conn, s->before_sql, 0, NULL, PG_QUERY_MS, -1, &e))
		return record_failed(conn, s, RECORDING, &e, out);
	progress_watch_pid(o->progress, PQbackendPID(conn), s->file);
	PGresult *res = pg_run(conn, q->sql, 0, NULL, -1, o->stop_fd, &e);
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
		return record_failed(conn, s, RECORDING, &e, out);
	log_event(LOG_INFO, "migrate.step",
		  LOG_FIELDS(LF_S("version", s->version), LF_S("file", s->file), LF_I("duration_ms", ms),
			     LF_B("no_transaction", s->no_tx)),
		  "applied %s", s->file);
	return APPLIED;
}

/* A no-transaction file gets the timeouts too, for the session while it runs: SET before,
 * RESET after (SET LOCAL needs a transaction). */
static bool session_timeouts(PGconn *conn, const struct sqlr_opts *o, bool set, struct pg_error *e)
{
	char *sql = set ? xasprintf("SET lock_timeout = %lld; SET statement_timeout = %lld",
				    (long long)o->lock_timeout_ms, (long long)o->statement_timeout_ms)
			: xstrdup("RESET lock_timeout; RESET statement_timeout");
	bool ok = pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, e);
	free(sql);
	return ok;
}

static enum attempt attempt(PGconn *conn, const struct sqlr_step *s, const struct sqlr_opts *o,
			    const struct query *q, struct migrate_outcome *out, char state[6])
{
	state[0] = '\0';
	if (!s->no_tx)
		return run_step(conn, s, o, q, out, state);
	struct pg_error e;
	if (!session_timeouts(conn, o, true, &e))
		return record_failed(conn, s, "setting lock_timeout and statement_timeout", &e, out);
	enum attempt a = run_step(conn, s, o, q, out, state);
	/* A failed RESET leaves only our own timeouts in force on our own session. */
	if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE &&
	    !session_timeouts(conn, o, false, &e)) {
	}
	return a;
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

/* Before each step, and when one was interrupted: is the migration lock still ours? A step
 * stopped because the lock's connection spoke (it is being ended) is MIGRATE_LOCK_LOST, or
 * MIGRATE_LOST when our own connection went too (the server restarted). */
static bool lock_still_held(PGconn *conn, const struct source_ctx *ctx, struct migrate_outcome *out)
{
	if (!ctx->lock || lock_held(ctx->lock, false))
		return true;
	bool server_gone = PQstatus(conn) != CONNECTION_OK;
	out->result = server_gone ? MIGRATE_LOST : MIGRATE_LOCK_LOST;
	snprintf(out->how, sizeof out->how, "%s%.400s",
		 server_gone ? "the database connection was lost with the migration lock: " : "",
		 ctx->lock->lost);
	return false;
}

bool sqlr_apply_pending(PGconn *conn, const struct source_ctx *ctx, size_t n, sqlr_step_fn apply,
			void *self, struct migrate_outcome *out)
{
	int sig_fd = signals_stop_fd(), watch_fd = lock_watch_fd(ctx->lock, sig_fd);
	struct sqlr_opts o = {ctx->cfg->migration_lock_timeout_ms, ctx->cfg->statement_timeout_ms,
			      ctx->cfg->retries, ctx->sigs, watch_fd >= 0 ? watch_fd : sig_fd,
			      ctx->progress};
	bool ok = true;
	for (size_t i = 0; ok && i < n; i++)
		ok = lock_still_held(conn, ctx, out) && apply(self, conn, i, &o, out);
	if (out->result == MIGRATE_STOPPED && !out->signo && lock_still_held(conn, ctx, out))
		out->signo = signals_stop_read(sig_fd);
	if (watch_fd >= 0)
		close(watch_fd);
	signals_stop_close(sig_fd);
	return ok;
}
