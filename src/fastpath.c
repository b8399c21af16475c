/* Skip a migration tool when nothing changed: fingerprints of its files and its history rows. */
#include "mtr/fastpath.h"
#include "mtr/bookkeeping.h"
#include "mtr/fileio.h"
#include "mtr/strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FP_TABLE "tool_fingerprint"
#define FP_COLUMNS                                                                            \
	"source text PRIMARY KEY, files text NOT NULL, history text NOT NULL, "               \
	"saved_at timestamptz NOT NULL DEFAULT pg_catalog.now()"
/* A migration file is far smaller; a larger one is refused as sql_runner refuses it. */
#define FP_MAX_FILE ((size_t)1 << 30)
#define FP_MAX_DEPTH 16

struct fastpath {
	struct fastpath_spec spec; /* owned copies */
	char files[65];            /* as the last check saw them */
};

/* ---- the running digest ------------------------------------------------------------------ */

struct digest {
	EVP_MD_CTX *ctx;
	bool ok;
};

static void digest_init(struct digest *d)
{
	d->ctx = EVP_MD_CTX_new();
	d->ok = d->ctx && EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL);
}

static void digest_add(struct digest *d, const void *data, size_t len)
{
	d->ok = d->ok && EVP_DigestUpdate(d->ctx, data, len);
}

/* A string and its terminating NUL: "ab","c" and "a","bc" differ. */
static void digest_str(struct digest *d, const char *s)
{
	digest_add(d, s, strlen(s) + 1);
}

static bool digest_hex(struct digest *d, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	d->ok = d->ok && EVP_DigestFinal_ex(d->ctx, md, &n) && n == 32;
	EVP_MD_CTX_free(d->ctx);
	d->ctx = NULL;
	for (size_t i = 0; d->ok && i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[d->ok ? 64 : 0] = '\0';
	return d->ok;
}

/* ---- the files --------------------------------------------------------------------------- */

struct names {
	char **v;
	size_t n;
};

static void names_add(struct names *l, char *owned)
{
	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	l->v[l->n++] = owned;
}

static void names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What a tool's run writes beside its files, never one of them: caches, dependencies. */
static bool skipped(const char *name)
{
	return name[0] == '.' || strcmp(name, "__pycache__") == 0 || strcmp(name, "node_modules") == 0;
}

static bool is_dir(int base, const char *rel)
{
	struct stat st;
	return fstatat(base, rel, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *dir, const char *name)
{
	return *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
}

/* Every file below the directory rel (relative to base), depth-first. */
static void walk(int base, const char *rel, int depth, struct names *out)
{
	int fd = openat(base, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	for (struct dirent *e = readdir(d); e; e = readdir(d)) {
		if (skipped(e->d_name))
			continue;
		char *child = join(rel, e->d_name);
		if (!is_dir(base, child))
			names_add(out, child);
		else if (depth < FP_MAX_DEPTH) {
			walk(base, child, depth + 1, out);
			free(child);
		} else
			free(child);
	}
	closedir(d);
}

/* The paths matching the components pat[0..n) below rel; a matched directory means every
 * file below it. */
static void expand(int base, const char *rel, char **pat, size_t n, struct names *out)
{
	if (n == 0) {
		if (is_dir(base, *rel ? rel : "."))
			walk(base, *rel ? rel : ".", 0, out);
		else if (faccessat(base, rel, F_OK, 0) == 0)
			names_add(out, xstrdup(rel));
		return;
	}
	if (!strpbrk(pat[0], "*?[")) { /* a plain name: no need to list the directory */
		char *child = join(rel, pat[0]);
		expand(base, child, pat + 1, n - 1, out);
		free(child);
		return;
	}
	int fd = openat(base, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	for (struct dirent *e = readdir(d); e; e = readdir(d)) {
		if (skipped(e->d_name) || fnmatch(pat[0], e->d_name, FNM_PERIOD) != 0)
			continue;
		char *child = join(rel, e->d_name);
		expand(base, child, pat + 1, n - 1, out);
		free(child);
	}
	closedir(d);
}

/* One pattern (a directory such as db/migrations, a glob such as APP/migrations/NAME.py
 * with wildcards, an absolute path) into out. */
static void match(int base, const char *pattern, struct names *out)
{
	char *copy = xstrdup(pattern), *save = NULL;
	char *parts[64];
	size_t n = 0;
	for (char *p = strtok_r(copy, "/", &save); p && n < 64; p = strtok_r(NULL, "/", &save))
		if (strcmp(p, ".") != 0)
			parts[n++] = p;
	expand(base, pattern[0] == '/' ? "/" : "", parts, n, out);
	free(copy);
}

/* The sorted, distinct files of the spec. */
static void list_files(int base, const struct fastpath_spec *s, struct names *out)
{
	for (size_t i = 0; i < s->nfiles; i++)
		match(base, s->files[i], out);
	if (out->n)
		qsort(out->v, out->n, sizeof *out->v, name_cmp);
	size_t o = 0;
	for (size_t i = 0; i < out->n; i++) {
		if (o && strcmp(out->v[o - 1], out->v[i]) == 0)
			free(out->v[i]);
		else
			out->v[o++] = out->v[i];
	}
	out->n = o;
}

bool fastpath_files(const struct fastpath_spec *s, char out[65], size_t *count, char *err,
		    size_t errlen)
{
	int base = s->cwd ? open(s->cwd, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : AT_FDCWD;
	if (base < 0 && s->cwd) {
		set_err(err, errlen, "%s: %s", s->cwd, strerror(errno));
		return false;
	}
	struct names files = {0};
	list_files(base, s, &files);
	struct digest d;
	digest_init(&d);
	digest_str(&d, s->command ? s->command : "");
	bool ok = true;
	for (size_t i = 0; i < files.n && ok; i++) {
		size_t len = 0;
		char *text = file_read_at(base, files.v[i], FP_MAX_FILE, &len);
		if (!text && errno == ENOTSUP)
			continue; /* a FIFO or a device is nobody's migration */
		if (!text) {
			set_err(err, errlen, "%s: %s", files.v[i], file_strerror(errno));
			ok = false;
			break;
		}
		char size[24];
		snprintf(size, sizeof size, "%zu", len);
		digest_str(&d, files.v[i]);
		digest_str(&d, size);
		digest_add(&d, text, len);
		free(text);
	}
	*count = files.n;
	names_free(&files);
	if (base >= 0)
		close(base);
	if (!digest_hex(&d, out) && ok) {
		set_err(err, errlen, "SHA-256 is not available");
		ok = false;
	}
	return ok;
}

/* ---- the history ------------------------------------------------------------------------- */

/* One table's rows, ordered, every column: "name\0absent" or "name\0count\0md5". */
static bool history_table(PGconn *conn, const char *table, struct digest *d, struct strbuf *why,
			  struct pg_error *err)
{
	char name[512];
	const char *params[1] = {table};
	PGresult *res = pg_run(conn, "SELECT pg_catalog.to_regclass($1)::pg_catalog.text", 1, params,
			       PG_QUERY_MS, -1, err);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	bool absent = ok && PQgetisnull(res, 0, 0);
	if (ok && !absent)
		snprintf(name, sizeof name, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	digest_str(d, table);
	if (!ok || absent) {
		digest_str(d, "absent");
		sb_addf(why, "%s%s: none", why->len ? ", " : "", table);
		return ok;
	}
	/* regclass output is the server's own quoting of the name: safe to splice */
	char *sql = xasprintf("SELECT pg_catalog.count(*), pg_catalog.md5(COALESCE(pg_catalog.string_agg("
			      "t::pg_catalog.text, E'\\n' ORDER BY t::pg_catalog.text), '')) FROM %s t",
			      name);
	res = pg_run(conn, sql, 0, NULL, PG_QUERY_MS, -1, err);
	free(sql);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok) {
		digest_str(d, PQgetvalue(res, 0, 0));
		digest_str(d, PQgetvalue(res, 0, 1));
		sb_addf(why, "%s%s: %s row%s", why->len ? ", " : "", table, PQgetvalue(res, 0, 0),
			strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? "" : "s");
	}
	PQclear(res);
	return ok;
}

static bool history(const struct fastpath_spec *s, PGconn *conn, char out[65], struct strbuf *why,
		    struct pg_error *err)
{
	struct digest d;
	digest_init(&d);
	bool ok = true;
	for (size_t i = 0; i < s->nhistory && ok; i++)
		ok = history_table(conn, s->history[i], &d, why, err);
	return digest_hex(&d, out) && ok;
}

/* ---- what is kept ------------------------------------------------------------------------ */

/* The kept fingerprints of the key; *found false when there are none (no table, no row). */
static bool load(const struct fastpath_spec *s, PGconn *conn, char files[65], char hist[65],
		 bool *found, struct pg_error *err)
{
	bool has_schema, has_table;
	*found = false;
	if (!bk_exists(conn, s->schema, FP_TABLE, &has_schema, &has_table, err))
		return false;
	if (!has_table)
		return true;
	char *table = bk_table(conn, s->schema, FP_TABLE);
	char *sql = xasprintf("SELECT files, history FROM %s WHERE source = $1", table);
	const char *params[1] = {s->key};
	PGresult *res = pg_run(conn, sql, 1, params, PG_QUERY_MS, -1, err);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (ok && PQntuples(res) == 1) {
		*found = true;
		snprintf(files, 65, "%s", PQgetvalue(res, 0, 0));
		snprintf(hist, 65, "%s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	free(sql);
	free(table);
	return ok;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static char **dup_list(char *const *v, size_t n)
{
	char **c = xcalloc(n + 1, sizeof *c);
	for (size_t i = 0; i < n; i++)
		c[i] = xstrdup(v[i]);
	return c;
}

struct fastpath *fastpath_new(const struct fastpath_spec *spec)
{
	struct fastpath *fp = xcalloc(1, sizeof *fp);
	fp->spec = (struct fastpath_spec){
		.key = xstrdup(spec->key), .schema = xstrdup(spec->schema),
		.cwd = dup_or_null(spec->cwd), .command = dup_or_null(spec->command),
		.files = dup_list(spec->files, spec->nfiles), .nfiles = spec->nfiles,
		.history = dup_list(spec->history, spec->nhistory), .nhistory = spec->nhistory};
	return fp;
}

void fastpath_free(struct fastpath *fp)
{
	if (!fp)
		return;
	struct fastpath_spec *s = &fp->spec;
	free((char *)s->key);
	free((char *)s->schema);
	free((char *)s->cwd);
	free((char *)s->command);
	for (size_t i = 0; i < s->nfiles; i++)
		free(s->files[i]);
	for (size_t i = 0; i < s->nhistory; i++)
		free(s->history[i]);
	free((void *)s->files);
	free((void *)s->history);
	free(fp);
}

enum fastpath_verdict fastpath_check(struct fastpath *fp, PGconn *conn, char *why, size_t whylen)
{
	char ferr[512], hist[65], kept_files[65], kept_hist[65];
	size_t count = 0;
	struct pg_error err;
	struct strbuf rows = STRBUF_INIT;
	bool found = false;
	enum fastpath_verdict v;
	fp->files[0] = '\0';
	if (!fastpath_files(&fp->spec, fp->files, &count, ferr, sizeof ferr)) {
		set_err(why, whylen, "the files cannot be read: %s", ferr);
		fp->files[0] = '\0';
		return FP_UNKNOWN;
	}
	if (count == 0) { /* a mistyped path would otherwise freeze the fingerprint for good */
		set_err(why, whylen, "no file matches the migration files given (%s%s): check "
			"--migrate-files and --migrate-cwd", fp->spec.files[0], fp->spec.nfiles > 1 ? ", …" : "");
		fp->files[0] = '\0';
		return FP_UNKNOWN;
	}
	if (!history(&fp->spec, conn, hist, &rows, &err) ||
	    !load(&fp->spec, conn, kept_files, kept_hist, &found, &err)) {
		set_err(why, whylen, "the history cannot be read: %s", err.msg);
		sb_free(&rows);
		return FP_UNKNOWN;
	}
	v = !found ? FP_FIRST
	    : strcmp(kept_files, fp->files) != 0 ? FP_FILES_CHANGED
	    : strcmp(kept_hist, hist) != 0 ? FP_HISTORY_CHANGED
					   : FP_UNCHANGED;
	set_err(why, whylen, "%zu file%s, %s", count, count == 1 ? "" : "s", rows.s ? rows.s : "no history");
	sb_free(&rows);
	return v;
}

bool fastpath_save(struct fastpath *fp, PGconn *conn, struct pg_error *err)
{
	char hist[65];
	struct strbuf rows = STRBUF_INIT;
	memset(err, 0, sizeof *err);
	bool ok = fp->files[0] && history(&fp->spec, conn, hist, &rows, err);
	sb_free(&rows);
	if (!ok)
		return false;
	if (!bk_ensure(conn, fp->spec.schema, FP_TABLE, FP_COLUMNS, err))
		return false;
	char *table = bk_table(conn, fp->spec.schema, FP_TABLE);
	char *sql = xasprintf("INSERT INTO %s AS f (source, files, history) VALUES ($1, $2, $3) "
			      "ON CONFLICT (source) DO UPDATE SET files = EXCLUDED.files, "
			      "history = EXCLUDED.history, saved_at = pg_catalog.now()",
			      table);
	const char *params[3] = {fp->spec.key, fp->files, hist};
	ok = pg_command(conn, sql, 3, params, PG_QUERY_MS, -1, err);
	free(sql);
	free(table);
	return ok;
}
