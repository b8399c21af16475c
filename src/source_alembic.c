/* Alembic projects: read the ini and every revision file as text, check the graph and the
 * database's alembic_version, and start Python only when something is pending. */
#include "mtr/source_alembic.h"
#include "mtr/chain.h"
#include "mtr/exitcode.h"
#include "mtr/fileio.h"
#include "mtr/log.h"
#include "mtr/source.h"
#include "mtr/source_cmd.h"
#include "mtr/strbuf.h"

#include <cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- alembic.ini ---------------------------------------------------------------------------- */

struct ini_entry {
	char *section, *key, *value;
};

struct ini {
	struct ini_entry *e;
	size_t n;
};

static void ini_free(struct ini *ini)
{
	for (size_t i = 0; i < ini->n; i++) {
		free(ini->e[i].section);
		free(ini->e[i].key);
		free(ini->e[i].value);
	}
	free(ini->e);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* configparser's shape: [section], key = value or key: value, indented continuation lines,
 * # and ; comment lines; keys are case-insensitive. */
static bool alembic_ini_parse(const char *text, struct ini *ini, char *err, size_t errlen)
{
	char *copy = xstrdup(text), *save = NULL, *section = NULL;
	int lineno = 0;
	memset(ini, 0, sizeof *ini);
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		char *t = trim(line);
		if (!*t || *t == '#' || *t == ';')
			continue;
		if (isspace((unsigned char)line[0]) && ini->n && section) {
			struct ini_entry *last = &ini->e[ini->n - 1];
			char *joined = xasprintf("%s\n%s", last->value, t);
			free(last->value);
			last->value = joined;
			continue;
		}
		if (*t == '[') {
			char *end = strchr(t, ']');
			if (!end) {
				set_err(err, errlen, "line %d: unterminated section header '%s'", lineno, t);
				goto fail;
			}
			free(section);
			section = xstrndup(t + 1, (size_t)(end - t - 1));
			continue;
		}
		char *sep = strpbrk(t, "=:");
		if (!sep || !section) {
			set_err(err, errlen, "line %d: expected key = value inside a [section], got '%s'",
				lineno, t);
			goto fail;
		}
		*sep = '\0';
		ini->e = xrealloc(ini->e, (ini->n + 1) * sizeof *ini->e);
		struct ini_entry *e = &ini->e[ini->n++];
		e->section = xstrdup(section);
		e->key = xstrdup(trim(t));
		for (char *k = e->key; *k; k++)
			*k = (char)tolower((unsigned char)*k);
		e->value = xstrdup(trim(sep + 1));
	}
	free(section);
	free(copy);
	return true;
fail:
	free(section);
	free(copy);
	ini_free(ini);
	return false;
}

static const char *ini_raw(const struct ini *ini, const char *section, const char *key)
{
	const char *v = NULL;
	for (size_t i = 0; i < ini->n; i++)
		if (strcmp(ini->e[i].key, key) == 0 &&
		    (strcmp(ini->e[i].section, section) == 0 || strcmp(ini->e[i].section, "DEFAULT") == 0))
			v = ini->e[i].value;
	return v;
}

/* Bounds on expanding one value: ConfigParser's own depth limit (it refuses a reference loop),
 * and budgets of references and bytes, since every level may multiply the text before it. */
#define INI_MAX_DEPTH 10
#define INI_MAX_REFS 1000
#define INI_MAX_VALUE 65536

struct ini_budget {
	int refs;
	bool exceeded;
};

static char *ini_expand(const struct ini *ini, const char *section, const char *key, const char *here,
			int depth, struct ini_budget *b);

/* The text of the %(name)s reference at *pp, which moves past it (and its 's'); %(here)s is
 * the ini's directory. Caller frees; NULL when the name is not set. */
static char *ini_reference(const struct ini *ini, const char *section, const char **pp,
			   const char *here, int depth, struct ini_budget *b)
{
	const char *p = *pp, *close = strchr(p, ')');
	char *name = xstrndup(p + 2, (size_t)(close - p - 2));
	p = close + 1;
	if (*p == 's')
		p++;
	*pp = p;
	char *v = strcmp(name, "here") == 0 ? xstrdup(here)
					    : ini_expand(ini, section, name, here, depth + 1, b);
	free(name);
	return v;
}

static char *ini_expand(const struct ini *ini, const char *section, const char *key, const char *here,
			int depth, struct ini_budget *b)
{
	const char *raw = ini_raw(ini, section, key);
	if (!raw)
		return NULL;
	struct strbuf out = STRBUF_INIT;
	for (const char *p = raw; *p && !b->exceeded;) {
		const char *add = p;
		char *owned = NULL;
		size_t addlen = 1;
		if (p[0] == '%' && p[1] == '%') {
			add = "%";
			p += 2;
		} else if (p[0] == '%' && p[1] == '(' && strchr(p, ')')) {
			if (depth >= INI_MAX_DEPTH || ++b->refs > INI_MAX_REFS) {
				b->exceeded = true;
				break;
			}
			add = owned = ini_reference(ini, section, &p, here, depth, b);
			addlen = add ? strlen(add) : 0;
		} else {
			p++;
		}
		if (out.len + addlen >= INI_MAX_VALUE)
			b->exceeded = true;
		else
			sb_add(&out, add, addlen);
		free(owned);
	}
	return sb_take(&out);
}

/* The value with %(here)s, %(name)s (from the same section or DEFAULT) and %% expanded, as
 * Alembic's ConfigParser does. Caller frees; NULL when the key is absent, or with *bad set
 * when the expansion does not end (a reference loop) or grows past INI_MAX_VALUE bytes. */
static char *ini_get(const struct ini *ini, const char *section, const char *key, const char *here,
		     bool *bad)
{
	struct ini_budget b = {0, false};
	char *v = ini_expand(ini, section, key, here, 0, &b);
	if (b.exceeded) {
		free(v);
		*bad = true;
		return NULL;
	}
	return v;
}

/* ---- revision files, read as text ------------------------------------------------------------ */

struct pyvalue {
	bool none;
	char **items;
	size_t n;
};

static void pyvalue_free(struct pyvalue *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->items[i]);
	free(v->items);
	memset(v, 0, sizeof *v);
}

static const char *skip_space(const char *p, bool newlines, int *line)
{
	for (;;) {
		if (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		else if (*p == '\\' && p[1] == '\n') {
			p += 2;
			(*line)++;
		} else if (newlines && *p == '\n') {
			p++;
			(*line)++;
		} else if (newlines && *p == '#') {
			while (*p && *p != '\n')
				p++;
		} else {
			return p;
		}
	}
}

/* A Python string literal ('…' or "…", with an optional r/u prefix). NULL if p is not one. */
static char *py_string(const char **pp)
{
	const char *p = *pp;
	if (*p == 'r' || *p == 'u' || *p == 'R' || *p == 'U')
		p++;
	char q = *p;
	if (q != '\'' && q != '"')
		return NULL;
	if (p[1] == q && p[2] == q)
		return NULL; /* a triple-quoted string is not an id */
	struct strbuf out = STRBUF_INIT;
	for (p++; *p && *p != q && *p != '\n'; p++) {
		if (*p == '\\' && p[1] && p[1] != '\n')
			p++;
		sb_addc(&out, *p);
	}
	if (*p != q) {
		sb_free(&out);
		return NULL;
	}
	*pp = p + 1;
	return sb_take(&out);
}

/* None, a string, or a tuple/list of strings, possibly over several lines. */
static bool py_literal(const char **pp, int *line, struct pyvalue *v)
{
	const char *p = skip_space(*pp, false, line);
	memset(v, 0, sizeof *v);
	if (strncmp(p, "None", 4) == 0 && !isalnum((unsigned char)p[4]) && p[4] != '_') {
		v->none = true;
		*pp = p + 4;
		return true;
	}
	char *s = py_string(&p);
	if (s) {
		v->items = xmalloc(sizeof *v->items);
		v->items[v->n++] = s;
		*pp = p;
		return true;
	}
	char close = (char)(*p == '(' ? ')' : *p == '[' ? ']' : 0);
	if (!close)
		return false;
	p++;
	for (;;) {
		p = skip_space(p, true, line);
		if (*p == close) {
			*pp = p + 1;
			return true;
		}
		s = py_string(&p);
		if (!s) {
			pyvalue_free(v);
			return false;
		}
		v->items = xrealloc(v->items, (v->n + 1) * sizeof *v->items);
		v->items[v->n++] = s;
		p = skip_space(p, true, line);
		if (*p == ',')
			p++;
		else if (*p != close) {
			pyvalue_free(v);
			return false;
		}
	}
}

static const char *const KEYS[] = {"revision", "down_revision", "branch_labels", "depends_on"};

/* Where the scan of a revision file is. */
struct revscan {
	const char *p;
	int line;
	bool line_start; /* p is at the first column of a line */
	char triple;     /* inside a triple-quoted string opened with this quote; 0 outside */
};

/* Keeps v (a literal read for KEYS[k] at line vline) in r. False with err when a revision
 * is not one string id; v is consumed either way. */
static bool rev_store(struct rev *r, size_t k, struct pyvalue *v, int vline, char *err, size_t errlen)
{
	if (k == 0) {
		bool one = !v->none && v->n == 1;
		if (!one) {
			set_err(err, errlen, "%s:%d: revision must be one string id", r->file, vline);
		} else {
			free(r->id);
			r->id = xstrdup(v->items[0]);
			r->line = vline;
		}
		pyvalue_free(v);
		return one;
	}
	char ***dst = k == 1 ? &r->down : k == 2 ? &r->labels : &r->depends;
	size_t *dn = k == 1 ? &r->ndown : k == 2 ? &r->nlabels : &r->ndepends;
	for (size_t i = 0; i < *dn; i++)
		free((*dst)[i]);
	free(*dst);
	*dst = v->items;
	*dn = v->n;
	if (k == 1)
		r->down_line = vline;
	return true;
}

/* At the start of a line: `key = literal` or `key: annotation = literal` for one of KEYS is
 * read into r and skipped. Anything else is left for scan_code. False with err when the value
 * is not a literal. */
static bool scan_assignment(struct revscan *s, struct rev *r, char *err, size_t errlen)
{
	for (size_t k = 0; k < sizeof KEYS / sizeof KEYS[0]; k++) {
		size_t n = strlen(KEYS[k]);
		if (strncmp(s->p, KEYS[k], n) != 0 || isalnum((unsigned char)s->p[n]) || s->p[n] == '_')
			continue;
		int vline = s->line;
		const char *q = skip_space(s->p + n, false, &s->line);
		if (*q == ':') { /* an annotation: up to the '=' */
			while (*q && *q != '=' && *q != '\n')
				q++;
		}
		if (*q != '=' || q[1] == '=')
			return true;
		q++;
		struct pyvalue v;
		if (!py_literal(&q, &s->line, &v)) {
			set_err(err, errlen,
				"%s:%d: %s is not a literal (expected None, 'id', \"id\" or a tuple or "
				"list of them); revision files are read as text and their values are "
				"never guessed",
				r->file, vline, KEYS[k]);
			return false;
		}
		if (!rev_store(r, k, &v, vline, err, errlen))
			return false;
		s->p = q;
		return true;
	}
	return true;
}

/* One step inside a triple-quoted string, which may hold text that looks like code. */
static void scan_triple(struct revscan *s)
{
	const char *p = s->p;
	if (p[0] == s->triple && p[1] == s->triple && p[2] == s->triple) {
		s->triple = 0;
		s->p = p + 3;
		return;
	}
	if (*p == '\\' && p[1])
		p++;
	s->line_start = *p == '\n';
	if (*p == '\n')
		s->line++;
	s->p = p + 1;
}

/* One step through code: opens a triple-quoted string, skips a comment or a one-line string
 * (whose text may look like an assignment), counts lines. */
static void scan_code(struct revscan *s)
{
	const char *p = s->p;
	if ((p[0] == '"' || p[0] == '\'') && p[1] == p[0] && p[2] == p[0]) {
		s->triple = p[0];
		s->p = p + 3;
		return;
	}
	if (*p == '#') {
		while (*p && *p != '\n')
			p++;
		s->p = p;
		return;
	}
	if (*p == '\'' || *p == '"') {
		char *str = py_string(&p);
		free(str);
		if (str) {
			s->p = p;
			return;
		}
	}
	if (*p == '\n') {
		s->line++;
		s->line_start = true;
	}
	s->p = p + 1;
}

/* Parses one revision file's text into r (file and strings owned by r). False with err naming
 * file:line when a value is not a literal, or when there is no revision at all. */
bool alembic_parse_revision(const char *text, const char *file, struct rev *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	r->file = xstrdup(file);
	struct revscan s = {text, 1, true, 0};
	while (*s.p) {
		if (s.triple) {
			scan_triple(&s);
		} else if (s.line_start) {
			s.line_start = false;
			if (!scan_assignment(&s, r, err, errlen))
				return false;
		} else {
			scan_code(&s);
		}
	}
	if (!r->id) {
		set_err(err, errlen,
			"%s: no `revision = '...'` line; every file in a versions directory must be an "
			"Alembic revision (move other files elsewhere)",
			file);
		return false;
	}
	return true;
}

/* ---- the source ------------------------------------------------------------------------------ */

struct alembic_source {
	const struct config *cfg;
	char *vt_sql; /* --alembic-version-table as SQL: [SCHEMA.]TABLE, each part quoted */
	char *ini_path, *ini_dir;
	char **dirs;   /* where revision files live */
	size_t ndirs;
	bool recursive;
	struct source cmd; /* runs the tool */
	/* plan results */
	struct chain chain;
	char **db_revs;
	size_t ndb;
	bool table_exists;
	bool do_baseline, do_repair;
	char **stale;
	size_t nstale;
	size_t *heads;
	size_t nheads;
	size_t *pending;
	size_t npending;
};

/* Forgets the rows read from the version table (before reading them again). */
static void forget_versions(struct alembic_source *as)
{
	for (size_t i = 0; i < as->ndb; i++)
		free(as->db_revs[i]);
	free(as->db_revs);
	as->db_revs = NULL;
	as->ndb = 0;
}

static void free_plan(struct alembic_source *as)
{
	chain_free(&as->chain);
	forget_versions(as);
	for (size_t i = 0; i < as->nstale; i++)
		free(as->stale[i]);
	free(as->stale);
	free(as->heads);
	free(as->pending);
	as->stale = NULL;
	as->heads = as->pending = NULL;
	as->nstale = as->nheads = as->npending = 0;
}

/* Shortens a path under the ini's directory for messages: versions/0004_x.py. */
static char *display_path(const struct alembic_source *as, const char *path)
{
	size_t n = strlen(as->ini_dir);
	if (strncmp(path, as->ini_dir, n) == 0 && path[n] == '/')
		return xstrdup(path + n + 1);
	return xstrdup(path);
}

/* ---- the revision files ---------------------------------------------------------------------- */

/* alembic.ini and revision files are source text: anything larger is not one. */
#define INI_MAX_BYTES ((size_t)1 << 20)
#define REV_MAX_BYTES ((size_t)16 << 20)

/* Why file_read failed, with the limit when the file was too large. Returns buf or static text. */
static const char *read_reason(int e, size_t max, char *buf, size_t len)
{
	if (e != EFBIG)
		return file_strerror(e);
	snprintf(buf, len, "%s (more than %zu MiB)", file_strerror(e), max >> 20);
	return buf;
}

static bool is_revision_file(const char *name)
{
	size_t n = strlen(name);
	return n > 3 && strcmp(name + n - 3, ".py") == 0 && strncmp(name, "__init__", 8) != 0 &&
	       name[0] != '.' && name[0] != '#' && name[0] != '~';
}

/* The directories one version location's walk has entered, by device and inode: with
 * recursive_version_locations a symlink may lead back up, and a loop must end. */
struct walk {
	struct walk_dir {
		dev_t dev;
		ino_t ino;
	} *seen;
	size_t n;
};

/* Records the open directory d; false when this walk has been in it already. */
static bool walk_enter(struct walk *w, DIR *d)
{
	struct stat st;
	if (fstat(dirfd(d), &st) != 0)
		return true; /* cannot tell; it opened, so read it */
	for (size_t i = 0; i < w->n; i++)
		if (w->seen[i].dev == st.st_dev && w->seen[i].ino == st.st_ino)
			return false;
	w->seen = xrealloc(w->seen, (w->n + 1) * sizeof *w->seen);
	w->seen[w->n].dev = st.st_dev;
	w->seen[w->n].ino = st.st_ino;
	w->n++;
	return true;
}

/* Reads and parses one revision file (name inside the directory dfd; path for messages) into
 * the chain. Returns 0, or MTR_EXIT_INCONSISTENT with err naming the file. */
static int read_revision(struct alembic_source *as, int dfd, const char *name, const char *path,
			 bool not_regular, char *err, size_t errlen)
{
	size_t len;
	/* A device or FIFO is refused without being opened: opening some devices acts. */
	errno = ENOTSUP;
	char *text = not_regular ? NULL : file_read_at(dfd, name, REV_MAX_BYTES, &len);
	int e = errno;
	char *shown = display_path(as, path);
	int code = 0;
	struct rev r;
	if (!text) {
		char why[128];
		set_err(err, errlen, "%s: cannot read: %s", shown, read_reason(e, REV_MAX_BYTES, why, sizeof why));
		code = MTR_EXIT_INCONSISTENT;
	} else if (alembic_parse_revision(text, shown, &r, err, errlen)) {
		chain_add(&as->chain, &r);
	} else {
		rev_free(&r);
		code = MTR_EXIT_INCONSISTENT;
	}
	free(text);
	free(shown);
	return code;
}

static int scan_dir(struct alembic_source *as, struct walk *w, const char *dir, char *err,
		    size_t errlen);

/* One entry of the directory d (dir for messages): a directory is walked when recursive, a
 * revision file is read, anything else skipped. A revision file that cannot be read (a
 * dangling link, a link loop, a FIFO or a device) is refused with the reason, since Alembic
 * would try to load it. Returns 0 or an exit code. */
static int scan_entry(struct alembic_source *as, struct walk *w, DIR *d, const char *dir,
		      const char *name, char *err, size_t errlen)
{
	char *path = xasprintf("%s/%s", dir, name);
	struct stat st;
	int code = 0;
	bool known = fstatat(dirfd(d), name, &st, 0) == 0;
	if (known && S_ISDIR(st.st_mode)) {
		if (as->recursive && strcmp(name, "__pycache__") != 0)
			code = scan_dir(as, w, path, err, errlen);
	} else if (is_revision_file(name)) {
		code = read_revision(as, dirfd(d), name, path, known && !S_ISREG(st.st_mode), err,
				     errlen);
	}
	free(path);
	return code;
}

/* Reads the revision files of dir (and below it, when recursive) into the chain, in the
 * directory's order. Returns 0, or an exit code with err. */
static int scan_dir(struct alembic_source *as, struct walk *w, const char *dir, char *err,
		    size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d) {
		set_err(err, errlen, "%s: cannot read the Alembic versions directory '%s': %s",
			as->ini_path, dir, strerror(errno));
		return MTR_EXIT_INCONSISTENT;
	}
	int code = 0;
	if (walk_enter(w, d)) {
		struct dirent *e;
		while (!code && (e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				code = scan_entry(as, w, d, dir, e->d_name, err, errlen);
	}
	closedir(d);
	return code;
}

/* Every version location into the chain; logs and returns an exit code when one cannot be
 * read or none holds a revision. */
static int load_revisions(struct alembic_source *as)
{
	char err[1024];
	for (size_t i = 0; i < as->ndirs; i++) {
		struct walk w = {NULL, 0};
		int code = scan_dir(as, &w, as->dirs[i], err, sizeof err);
		free(w.seen);
		if (code) {
			log_event(LOG_ERROR, "check.failed",
				  LOG_FIELDS(LF_S("problem", "files"), LF_I("exit_code", code)), "%s", err);
			return code;
		}
	}
	if (as->chain.n == 0) {
		log_event(LOG_ERROR, "check.failed",
			  LOG_FIELDS(LF_S("problem", "empty"), LF_I("exit_code", MTR_EXIT_INCONSISTENT)),
			  "%s: no revision files in %s; check script_location / version_locations",
			  as->ini_path, as->dirs[0]);
		return MTR_EXIT_INCONSISTENT;
	}
	return 0;
}

/* ---- the database ---------------------------------------------------------------------------- */

/* False only when to_regclass says the table is not there: asking for a missing table would
 * leave an ERROR in the server's log on every fresh database. */
static bool version_table_maybe(PGconn *conn, const char *table)
{
	const char *params[1] = {table};
	struct pg_error e;
	PGresult *res = pg_run(conn, "SELECT pg_catalog.to_regclass($1) IS NULL", 1, params, PG_QUERY_MS, -1, &e);
	bool absent = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		      strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return !absent;
}

/* The tool's own small queries: bounded by PG_QUERY_MS. libpq's message when the server
 * answered with an error, pg_run's when no answer came. */
static PGresult *small_query(PGconn *conn, const char *sql, const char **msg, struct pg_error *e)
{
	PGresult *res = pg_run(conn, sql, 0, NULL, PG_QUERY_MS, -1, e);
	*msg = res ? PQresultErrorMessage(res) : e->msg;
	return res;
}

/* The tables of the current schema (not ours): a database Alembic did not set up has some. */
static bool count_tables(PGconn *conn, long *tables, char *err, size_t errlen)
{
	struct pg_error e;
	const char *msg;
	PGresult *res = small_query(conn,
				    "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
				    "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
				    "AND n.nspname = pg_catalog.current_schema() AND c.relname <> 'mtr_failure_state'",
				    &msg, &e);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (ok)
		*tables = atol(PQgetvalue(res, 0, 0));
	else
		set_err(err, errlen, "reading the catalog: %s", msg);
	PQclear(res);
	return ok;
}

/* Reads the version table's rows into as->db_revs (as->table_exists says whether there is
 * one; *tables counts the schema's tables when there is not). False with err. */
static bool read_versions(PGconn *conn, struct alembic_source *as, long *tables, char *err, size_t errlen)
{
	/* The usual case: the table is there. Only when it is not (to_regclass, else 42P01, or
	 * 3F000 for a missing schema) is the schema counted, to tell a new database from one
	 * set up without Alembic. */
	*tables = 0;
	struct pg_error e;
	const char *msg;
	char *sql = xasprintf("SELECT version_num FROM %s ORDER BY 1", as->vt_sql);
	bool absent = !version_table_maybe(conn, as->vt_sql);
	PGresult *res = absent ? NULL : small_query(conn, sql, &msg, &e);
	free(sql);
	const char *state = absent ? "42P01" : PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		as->table_exists = true;
		as->ndb = (size_t)PQntuples(res);
		as->db_revs = xcalloc(as->ndb + 1, sizeof *as->db_revs);
		for (size_t i = 0; i < as->ndb; i++)
			as->db_revs[i] = xstrdup(PQgetvalue(res, (int)i, 0));
		PQclear(res);
		return true;
	}
	if (!state || (strcmp(state, "42P01") != 0 && strcmp(state, "3F000") != 0)) {
		set_err(err, errlen, "reading %s: %s", as->cfg->alembic_version_table, msg);
		PQclear(res);
		return false;
	}
	PQclear(res);
	as->table_exists = false;
	return count_tables(conn, tables, err, errlen);
}

/* ---- plan ------------------------------------------------------------------------------------ */

/* The ids at idx, ", "-separated, for messages. Caller frees. */
static char *join_ids(const struct chain *c, const size_t *idx, size_t n)
{
	struct strbuf b = STRBUF_INIT;
	for (size_t i = 0; i < n; i++)
		sb_addf(&b, "%s%s", i ? ", " : "", c->revs[idx[i]].id);
	return sb_take(&b);
}

/* The database's rows, ","-separated (plan.ready's from). Caller frees. */
static char *join_rows(const struct alembic_source *as)
{
	struct strbuf b = STRBUF_INIT;
	for (size_t i = 0; i < as->ndb; i++)
		sb_addf(&b, "%s%s", i ? "," : "", as->db_revs[i]);
	return sb_take(&b);
}

/* No version table: --alembic-baseline to stamp, or a schema that Alembic did not set up. */
static void check_no_table(struct alembic_source *as, long tables, struct problems *p)
{
	const struct config *cfg = as->cfg;
	if (cfg->alembic_baseline) {
		if (chain_find(&as->chain, cfg->alembic_baseline) < 0)
			problems_add(p, "baseline", "--alembic-baseline %s: no revision file declares that id",
				     cfg->alembic_baseline);
		else
			as->do_baseline = true;
	} else if (tables > 0) {
		problems_add(p, "no_version_table",
			     "the database has %ld tables but no %s table: it was not set up by "
			     "Alembic, or by another tool. Running upgrade head would replay every "
			     "migration on top of it. Find the revision its schema matches and stamp "
			     "it: --alembic-baseline REV (or: alembic stamp REV)",
			     tables, cfg->alembic_version_table);
	}
}

/* The database's rows as chain indexes into at (room for as->ndb); a row that no revision
 * file declares is a problem. Returns how many were found. */
static size_t known_rows(const struct alembic_source *as, size_t *at, struct problems *p)
{
	const char *table = as->cfg->alembic_version_table;
	size_t nat = 0;
	for (size_t i = 0; i < as->ndb; i++) {
		long k = chain_find(&as->chain, as->db_revs[i]);
		if (k < 0) {
			problems_add(p, "unknown_revision",
				     "the database is at revision '%s' (%s), which no revision file here "
				     "declares: the image is older than the database, or migrations were "
				     "lost. Running alembic would fail with \"Can't locate revision "
				     "identified by '%s'\". Deploy an image that has it (or restore the file)",
				     as->db_revs[i], table, as->db_revs[i]);
			continue;
		}
		at[nat++] = (size_t)k;
	}
	return nat;
}

/* A row that is an ancestor of another row is stale (the incident's 0003 beside 0004): with
 * --repair-version-table it is kept in as->stale for removal, else it is a problem. */
static void check_stale(struct alembic_source *as, const size_t *at, size_t nat, struct problems *p)
{
	const struct chain *c = &as->chain;
	const char *table = as->cfg->alembic_version_table;
	for (size_t i = 0; i < nat; i++) {
		for (size_t k = 0; k < nat; k++) {
			if (i == k || !chain_is_ancestor(c, at[i], at[k]) || at[i] == at[k])
				continue;
			const char *old = c->revs[at[i]].id, *newer = c->revs[at[k]].id;
			if (as->cfg->repair_version_table) {
				as->stale = xrealloc(as->stale, (as->nstale + 1) * sizeof *as->stale);
				as->stale[as->nstale++] = xstrdup(old);
				as->do_repair = true;
			} else {
				problems_add(p, "stale_row",
					     "%s holds both '%s' and '%s', but '%s' (%s) is an ancestor of "
					     "'%s' (%s): the row '%s' is stale, left by a hand repair. Alembic "
					     "would say \"Requested revision %s overlaps with other requested "
					     "revisions\". Remove it: --repair-version-table (or DELETE FROM %s "
					     "WHERE version_num = '%s')",
					     table, old, newer, old, c->revs[at[i]].file, newer, c->revs[at[k]].file,
					     old, newer, table, old);
			}
			break;
		}
	}
}

static void check_database(struct alembic_source *as, long tables, struct problems *p)
{
	as->do_baseline = false;
	if (!as->table_exists) {
		check_no_table(as, tables, p);
		return;
	}
	size_t *at = xmalloc((as->ndb + 1) * sizeof *at);
	size_t nat = known_rows(as, at, p);
	check_stale(as, at, nat, p);
	free(at);
}

static size_t db_positions(const struct alembic_source *as, size_t *at)
{
	size_t nat = 0;
	if (as->do_baseline) {
		at[nat++] = (size_t)chain_find(&as->chain, as->cfg->alembic_baseline);
		return nat;
	}
	for (size_t i = 0; i < as->ndb; i++) {
		long k = chain_find(&as->chain, as->db_revs[i]);
		bool stale = false;
		for (size_t s = 0; s < as->nstale; s++)
			stale = stale || strcmp(as->stale[s], as->db_revs[i]) == 0;
		if (k >= 0 && !stale)
			at[nat++] = (size_t)k;
	}
	return nat;
}

/* The heads, and what is pending from where the database is (nothing when there are problems). */
static void find_pending(struct alembic_source *as, const struct problems *p)
{
	as->heads = xmalloc((as->chain.n + 1) * sizeof *as->heads);
	as->nheads = chain_heads(&as->chain, as->heads, as->chain.n);
	as->pending = xmalloc((as->chain.n + 1) * sizeof *as->pending);
	if (p->n == 0) {
		size_t *at = xmalloc((as->ndb + 2) * sizeof *at);
		size_t nat = db_positions(as, at);
		as->npending = chain_pending(&as->chain, at, nat, as->pending);
		free(at);
	}
}

static void add_ids(cJSON *o, const char *name, const struct chain *c, const size_t *idx, size_t n)
{
	cJSON *a = cJSON_AddArrayToObject(o, name);
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(c->revs[idx[i]].id));
}

/* --check with --log-format json: one object on stdout. */
static void report_json(const struct alembic_source *as, const size_t *roots, size_t nroots,
			const struct problems *p)
{
	const struct chain *c = &as->chain;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "revisions", (double)c->n);
	add_ids(o, "roots", c, roots, nroots);
	add_ids(o, "heads", c, as->heads, as->nheads);
	cJSON *a = cJSON_AddArrayToObject(o, "database");
	for (size_t i = 0; i < as->ndb; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(as->db_revs[i]));
	add_ids(o, "pending", c, as->pending, as->npending);
	a = cJSON_AddArrayToObject(o, "problems");
	for (size_t i = 0; i < p->n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(p->items[i].msg));
	cJSON_AddBoolToObject(o, "consistent", p->n == 0);
	char *text = cJSON_PrintUnformatted(o);
	if (text)
		printf("%s\n", text);
	cJSON_free(text);
	cJSON_Delete(o);
}

/* --check: a few lines on stdout. */
static void report_text(const struct alembic_source *as, const size_t *roots, size_t nroots,
			const struct problems *p)
{
	const struct chain *c = &as->chain;
	char *r = join_ids(c, roots, nroots), *h = join_ids(c, as->heads, as->nheads);
	char *pend = join_ids(c, as->pending, as->npending);
	printf("revisions: %zu; roots: %s; heads: %s\n", c->n, r, h);
	printf("database: ");
	if (!as->table_exists)
		printf("no %s table\n", as->cfg->alembic_version_table);
	for (size_t i = 0; i < as->ndb; i++)
		printf("%s%s", i ? ", " : "", as->db_revs[i]);
	if (as->table_exists)
		printf("%s\n", as->ndb ? "" : "(empty)");
	printf("pending: %s\n", as->npending ? pend : "none");
	for (size_t i = 0; i < p->n; i++)
		printf("problem: %s\n", p->items[i].msg);
	printf("%s: %zu problem%s\n", p->n ? "INCONSISTENT" : "consistent", p->n, p->n == 1 ? "" : "s");
	free(r);
	free(h);
	free(pend);
}

static void print_report(const struct alembic_source *as, const struct problems *p)
{
	size_t *roots = xmalloc((as->chain.n + 1) * sizeof *roots);
	size_t nroots = chain_roots(&as->chain, roots, as->chain.n);
	if (as->cfg->log_format == LOG_FORMAT_JSON)
		report_json(as, roots, nroots, p);
	else
		report_text(as, roots, nroots, p);
	free(roots);
}

/* The plan's last word: refused (code), or ready with what is pending. A quiet plan (before
 * the lock) that found problems or work leaves the telling to the locked one. */
static void log_verdict(const struct alembic_source *as, const struct problems *p, bool quiet, int code)
{
	if (quiet && (p->n || as->npending + as->do_repair + as->do_baseline > 0))
		return;
	if (p->n) {
		log_event(LOG_ERROR, "check.refused", LOG_FIELDS(LF_I("problems", p->n), LF_I("exit_code", code)),
			  "refusing to migrate: %zu problem%s with the Alembic project %s (see "
			  "check.failed above); nothing was changed, Alembic was not started",
			  p->n, p->n == 1 ? "" : "s", as->ini_path);
		return;
	}
	char *from = join_rows(as), *to = join_ids(&as->chain, as->heads, as->nheads);
	log_event(LOG_INFO, "plan.ready",
		  LOG_FIELDS(LF_I("revisions", as->chain.n), LF_I("pending", as->npending),
			     LF_S("from", as->ndb ? from : NULL), LF_S("to", to)),
		  "%zu Alembic revision%s pending", as->npending, as->npending == 1 ? "" : "s");
	free(from);
	free(to);
}

/* What the phases after the plan name backups and failures by. */
static void record_info(const struct alembic_source *as, struct plan_info *info)
{
	uint64_t h = FNV_OFFSET;
	for (size_t i = 0; i < as->chain.n; i++)
		h = fnv1a(as->chain.revs[i].id, strlen(as->chain.revs[i].id) + 1, h);
	info->fingerprint = h;
	snprintf(info->from, sizeof info->from, "%s", as->ndb ? as->db_revs[as->ndb - 1] : "");
	snprintf(info->to, sizeof info->to, "%s",
		 as->nheads ? as->chain.revs[as->heads[as->nheads - 1]].id : "");
}

static int alembic_plan(void *self, PGconn *conn, const struct source_ctx *ctx, int flags,
			size_t *pending)
{
	struct alembic_source *as = self;
	free_plan(as);
	as->do_repair = false;
	int code = load_revisions(as);
	if (code) {
		ctx->info->files_refused = true;
		return code;
	}
	struct problems p = {0};
	chain_check(&as->chain, &p);
	char err[1024];
	long tables = 0;
	if (!read_versions(conn, as, &tables, err, sizeof err)) {
		problems_free(&p);
		log_event(LOG_ERROR, "plan.failed", LOG_FIELDS(LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
			  "%s", err);
		return MTR_EXIT_TEMPFAIL;
	}
	check_database(as, tables, &p);
	find_pending(as, &p);
	if (!(flags & PLAN_QUIET))
		problems_log(&p);
	if (flags & PLAN_REPORT)
		print_report(as, &p);
	code = p.n ? MTR_EXIT_INCONSISTENT : 0;
	log_verdict(as, &p, flags & PLAN_QUIET, code);
	problems_free(&p);
	*pending = as->npending + as->do_repair + as->do_baseline;
	record_info(as, ctx->info);
	return code;
}

/* ---- migrate --------------------------------------------------------------------------------- */

/* One bookkeeping statement (small: PG_QUERY_MS). False with libpq's message in err. */
static bool exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	struct pg_error e;
	const char *msg;
	PGresult *res = small_query(conn, sql, &msg, &e);
	ExecStatusType st = PQresultStatus(res);
	bool ok = res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
	if (!ok)
		set_err(err, errlen, "%s", msg);
	PQclear(res);
	return ok;
}

/* Ends the transaction a bookkeeping step failed in; the step's own error is what is reported. */
static void rollback(PGconn *conn)
{
	struct pg_error e;
	if (!pg_command(conn, "ROLLBACK", 0, NULL, PG_QUERY_MS, -1, &e)) {
		/* nothing more to do: the connection's state is checked by the caller */
	}
}

/* --alembic-baseline on a database without the version table: create it holding the baseline. */
static bool stamp_baseline(PGconn *conn, const struct alembic_source *as, char *err, size_t errlen)
{
	const char *table = as->cfg->alembic_version_table, *base = as->cfg->alembic_baseline;
	char *rev = PQescapeLiteral(conn, base, strlen(base));
	char *sql = xasprintf("BEGIN; CREATE TABLE %s (version_num varchar(32) NOT NULL, "
			      "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)); "
			      "INSERT INTO %s VALUES (%s); COMMIT",
			      as->vt_sql, as->vt_sql, rev ? rev : "''");
	bool ok = exec_ok(conn, sql, err, errlen);
	free(sql);
	PQfreemem(rev);
	if (!ok) {
		rollback(conn);
		return false;
	}
	log_event(LOG_INFO, "migrate.baseline", LOG_FIELDS(LF_S("revision", base)),
		  "stamped %s with %s (--alembic-baseline): revisions up to it count as applied", table,
		  base);
	return true;
}

/* --repair-version-table: the stale rows go, in one transaction. */
static bool remove_stale(PGconn *conn, const struct alembic_source *as, char *err, size_t errlen)
{
	const char *table = as->cfg->alembic_version_table;
	if (!exec_ok(conn, "BEGIN", err, errlen))
		return false;
	for (size_t i = 0; i < as->nstale; i++) {
		char *rev = PQescapeLiteral(conn, as->stale[i], strlen(as->stale[i]));
		char *sql = xasprintf("DELETE FROM %s WHERE version_num = %s", as->vt_sql, rev ? rev : "''");
		bool ok = exec_ok(conn, sql, err, errlen);
		free(sql);
		PQfreemem(rev);
		if (!ok) {
			rollback(conn);
			return false;
		}
		log_event(LOG_WARN, "migrate.repair", LOG_FIELDS(LF_S("table", table), LF_S("removed", as->stale[i])),
			  "removed the stale row '%s' from %s (an ancestor of another row; "
			  "--repair-version-table)",
			  as->stale[i], table);
	}
	return exec_ok(conn, "COMMIT", err, errlen);
}

static bool bookkeeping(PGconn *conn, const struct alembic_source *as, char *err, size_t errlen)
{
	if (as->do_baseline && !stamp_baseline(conn, as, err, errlen))
		return false;
	return !as->do_repair || remove_stale(conn, as, err, errlen);
}

/* The version table could not be updated: the connection was lost (try again), or it is a
 * migration failure. */
static void bookkeeping_failed(const struct alembic_source *as, PGconn *conn, const char *err,
			       struct migrate_outcome *out)
{
	if (PQstatus(conn) != CONNECTION_OK) {
		out->result = MIGRATE_LOST;
		snprintf(out->how, sizeof out->how, "the database connection was lost");
		return;
	}
	log_event(LOG_ERROR, "migrate.failed", LOG_FIELDS(LF_S("error", err), LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "cannot update %s: %s", as->cfg->alembic_version_table, err);
	snprintf(out->message, sizeof out->message, "cannot update %.100s: %.300s",
		 as->cfg->alembic_version_table, err);
	out->result = MIGRATE_FAILED;
	out->code = MTR_EXIT_MIGRATION;
}

/* Explains a failure whose SQLSTATE says the schema and the revision history disagree. */
static void diagnose(const struct alembic_source *as, const struct migrate_outcome *out, long tables)
{
	const char *s = out->sqlstate;
	const char *rev = out->revision[0] ? out->revision : "?";
	if (!strcmp(s, "42701") || !strcmp(s, "42P07") || !strcmp(s, "42710")) {
		log_event(LOG_ERROR, "migrate.diagnosis",
			  LOG_FIELDS(LF_S("kind", "schema_drift"), LF_S("sqlstate", s), LF_S("revision", rev)),
			  "schema drift: revision %s tried to create something the database already has "
			  "(SQLSTATE %s): the change was made outside Alembic, or %s was not updated "
			  "after it. This is permanent; retrying cannot help. Check the schema, then "
			  "record the revision as applied: alembic stamp %s",
			  rev, s, as->cfg->alembic_version_table, rev);
	} else if (!strcmp(s, "42P01")) {
		long k = chain_find(&as->chain, rev);
		bool first = k >= 0 && as->chain.revs[k].ndown == 0;
		if (first && tables <= 1)
			log_event(LOG_ERROR, "migrate.diagnosis",
				  LOG_FIELDS(LF_S("kind", "missing_history"), LF_S("sqlstate", s),
					     LF_S("revision", rev)),
				  "revision %s (%s) is the first of its chain yet uses a table that does "
				  "not exist, on an empty database: the chain is probably missing its "
				  "earlier migrations (they may exist only in another checkout)",
				  rev, as->chain.revs[k].file);
	}
}

/* Alembic failed: a diagnosis from what the database holds now, and the file to blame. */
static void explain_failure(struct alembic_source *as, PGconn *conn, bool had_table,
			    struct migrate_outcome *out)
{
	char err[256];
	long tables_before = 0;
	forget_versions(as);
	if (read_versions(conn, as, &tables_before, err, sizeof err))
		diagnose(as, out, had_table ? 2 : tables_before);
	long k = out->revision[0] ? chain_find(&as->chain, out->revision) : -1;
	if (k >= 0)
		snprintf(out->file, sizeof out->file, "%s", as->chain.revs[k].file);
}

/* At the heads: nothing left pending from where the rows say we are (Alembic leaves out
 * a head that another head depends_on, so the rows need not list every head). */
static bool at_heads(const struct alembic_source *as)
{
	size_t *at = xmalloc((as->ndb + 1) * sizeof *at), nat = 0;
	bool ok = as->ndb > 0;
	for (size_t i = 0; i < as->ndb; i++) {
		long k = chain_find(&as->chain, as->db_revs[i]);
		if (k < 0)
			ok = false;
		else
			at[nat++] = (size_t)k;
	}
	size_t *left = xmalloc((as->chain.n + 1) * sizeof *left);
	if (ok && chain_pending(&as->chain, at, nat, left) > 0)
		ok = false;
	free(left);
	free(at);
	return ok;
}

/* Alembic exited 0: confirm where the database is now, the heads and nothing else. */
static void verify_heads(struct alembic_source *as, PGconn *conn, struct migrate_outcome *out)
{
	char err[1024];
	long tables;
	forget_versions(as);
	if (!read_versions(conn, as, &tables, err, sizeof err)) {
		log_event(LOG_WARN, "migrate.verify", LOG_FIELDS(LF_S("error", err)),
			  "cannot confirm the database's revision after Alembic ran: %s", err);
		return;
	}
	char *to = join_ids(&as->chain, as->heads, as->nheads);
	if (!at_heads(as)) {
		log_event(LOG_ERROR, "migrate.failed",
			  LOG_FIELDS(LF_S("expected", to), LF_I("exit_code", MTR_EXIT_MIGRATION)),
			  "Alembic exited 0 but %s does not hold the head revision(s) %s; check the "
			  "migration command (--migrate-cmd) and env.py's version table settings",
			  as->cfg->alembic_version_table, to);
		snprintf(out->message, sizeof out->message, "Alembic exited 0 but %s does not hold the head "
			 "revision(s) %s", as->cfg->alembic_version_table, to);
		out->result = MIGRATE_FAILED;
		out->code = MTR_EXIT_MIGRATION;
	} else {
		char *applied = join_ids(&as->chain, as->pending, as->npending);
		log_event(LOG_INFO, "migrate.revisions",
			  LOG_FIELDS(LF_S("to", to), LF_S("applied", applied), LF_I("count", as->npending)),
			  "the database is at %s; applied %s", to, applied);
		free(applied);
	}
	free(to);
}

static void alembic_migrate(void *self, PGconn *conn, const struct source_ctx *ctx,
			    struct migrate_outcome *out)
{
	struct alembic_source *as = self;
	char err[1024];
	memset(out, 0, sizeof *out);
	if (!bookkeeping(conn, as, err, sizeof err)) {
		bookkeeping_failed(as, conn, err, out);
		return;
	}
	if (as->npending == 0) {
		out->result = MIGRATE_OK;
		return;
	}
	bool had_table = as->table_exists;
	as->cmd.migrate(as->cmd.self, conn, ctx, out);
	if (out->result == MIGRATE_FAILED)
		explain_failure(as, conn, had_table, out);
	else if (out->result == MIGRATE_OK)
		verify_heads(as, conn, out);
}

/* [SCHEMA.]TABLE as SQL, each part a quoted identifier (as SQLAlchemy quotes a name that is
 * not all lower case), so that no option value is ever read as SQL. Caller frees. */
static char *quote_table(const char *name)
{
	struct strbuf b = STRBUF_INIT;
	sb_addc(&b, '"');
	for (const char *p = name; *p; p++) {
		if (*p == '.') {
			sb_adds(&b, "\".\"");
			continue;
		}
		if (*p == '"')
			sb_addc(&b, '"');
		sb_addc(&b, *p);
	}
	sb_addc(&b, '"');
	return sb_take(&b);
}

static void alembic_destroy(void *self)
{
	struct alembic_source *as = self;
	free_plan(as);
	free(as->vt_sql);
	if (as->cmd.destroy)
		as->cmd.destroy(as->cmd.self);
	for (size_t i = 0; i < as->ndirs; i++)
		free(as->dirs[i]);
	free(as->dirs);
	free(as->ini_path);
	free(as->ini_dir);
	free(as);
}

/* ---- where the revision files are ------------------------------------------------------------ */

/* Splits version_locations as Alembic does for the given version_path_separator. */
static bool split_locations(const char *value, const char *sep, char ***out, size_t *n)
{
	const char *chars;
	if (!sep)
		chars = " ,"; /* the legacy rule: spaces and/or commas */
	else if (!strcmp(sep, "space"))
		chars = " ";
	else if (!strcmp(sep, "os") || !strcmp(sep, ":"))
		chars = ":";
	else if (!strcmp(sep, ";"))
		chars = ";";
	else if (!strcmp(sep, "newline"))
		chars = "\n";
	else
		return false;
	char *copy = xstrdup(value), *save = NULL;
	for (char *t = strtok_r(copy, chars, &save); t; t = strtok_r(NULL, chars, &save)) {
		char *s = trim(t);
		if (!*s)
			continue;
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		(*out)[(*n)++] = xstrdup(s);
	}
	free(copy);
	return true;
}

/* The [alembic] settings that say where the revision files are. */
enum { WHERE_SCRIPT, WHERE_VERSIONS, WHERE_SEPARATOR, WHERE_RECURSIVE, WHERE_N };
static const char *const WHERE_KEYS[WHERE_N] = {"script_location", "version_locations",
						"version_path_separator", "recursive_version_locations"};

/* Parses the ini's text and expands WHERE_KEYS into v (NULL where absent; caller frees each).
 * False with err, and nothing to free, when the text is not an ini or a value never ends. */
static bool ini_where(const char *text, const char *ini, const char *here, char *v[WHERE_N],
		      char *err, size_t errlen)
{
	struct ini parsed;
	char perr[256];
	for (size_t i = 0; i < WHERE_N; i++)
		v[i] = NULL;
	if (!alembic_ini_parse(text, &parsed, perr, sizeof perr)) {
		set_err(err, errlen, "--alembic-ini: %s: %s", ini, perr);
		return false;
	}
	bool bad = false;
	for (size_t i = 0; i < WHERE_N && !bad; i++) {
		v[i] = ini_get(&parsed, "alembic", WHERE_KEYS[i], here, &bad);
		if (bad)
			set_err(err, errlen,
				"--alembic-ini: %s: %s does not expand to a value: its %%(name)s "
				"references nest deeper than %d (a loop?) or grow past %d bytes",
				ini, WHERE_KEYS[i], INI_MAX_DEPTH, INI_MAX_VALUE);
	}
	ini_free(&parsed);
	for (size_t i = 0; bad && i < WHERE_N; i++) {
		free(v[i]);
		v[i] = NULL;
	}
	return !bad;
}

/* The revision directories from the settings: version_locations (relative ones under here),
 * else script_location/versions. False with err; *dirs may then hold some to free. */
static bool where_dirs(char *const v[WHERE_N], const char *ini, const char *here, char ***dirs,
		       size_t *ndirs, char *err, size_t errlen)
{
	const char *loc = v[WHERE_SCRIPT], *vloc = v[WHERE_VERSIONS], *vsep = v[WHERE_SEPARATOR];
	if (!loc) {
		set_err(err, errlen, "--alembic-ini: %s has no script_location in its [alembic] section", ini);
		return false;
	}
	struct stat st;
	if (strchr(loc, ':') && loc[0] != '/' && stat(loc, &st) != 0) {
		set_err(err, errlen,
			"--alembic-ini: script_location = %s is a package resource (package:path), "
			"which is not supported; give a directory (e.g. %%(here)s/migrations)",
			loc);
		return false;
	}
	if (vloc && !split_locations(vloc, vsep, dirs, ndirs)) {
		set_err(err, errlen,
			"--alembic-ini: version_path_separator = %s: expected space, os, :, ; or newline", vsep);
		return false;
	}
	for (size_t i = 0; i < *ndirs; i++) {
		if ((*dirs)[i][0] != '/') {
			char *abs = xasprintf("%s/%s", here, (*dirs)[i]);
			free((*dirs)[i]);
			(*dirs)[i] = abs;
		}
	}
	if (*ndirs == 0) {
		*dirs = xrealloc(*dirs, sizeof **dirs);
		(*dirs)[(*ndirs)++] = loc[0] == '/' ? xasprintf("%s/versions", loc)
						    : xasprintf("%s/%s/versions", here, loc);
	}
	return true;
}

bool alembic_ini_locate(const char *text, const char *ini, const char *here, char ***dirs,
			size_t *ndirs, bool *recursive, char *err, size_t errlen)
{
	char *v[WHERE_N];
	*dirs = NULL;
	*ndirs = 0;
	*recursive = false;
	if (!ini_where(text, ini, here, v, err, errlen))
		return false;
	bool ok = where_dirs(v, ini, here, dirs, ndirs, err, errlen);
	bool b = false;
	*recursive = ok && v[WHERE_RECURSIVE] && config_parse_bool(v[WHERE_RECURSIVE], &b) && b;
	for (size_t i = 0; i < WHERE_N; i++)
		free(v[i]);
	if (!ok) {
		for (size_t i = 0; i < *ndirs; i++)
			free((*dirs)[i]);
		free(*dirs);
		*dirs = NULL;
		*ndirs = 0;
	}
	return ok;
}

/* Reads --alembic-ini and sets as->ini_dir (its real directory: %(here)s). Returns the text
 * (caller frees), or NULL with err. */
static char *read_ini(struct alembic_source *as, char *err, size_t errlen)
{
	const char *ini = as->cfg->alembic_ini;
	char *real = realpath(ini, NULL);
	size_t len;
	char *text = real ? file_read(real, INI_MAX_BYTES, &len) : NULL;
	if (!text) {
		int e = errno;
		char why[128];
		set_err(err, errlen, "--alembic-ini: cannot read '%s': %s", ini,
			read_reason(e, INI_MAX_BYTES, why, sizeof why));
		free(real);
		return NULL;
	}
	as->ini_dir = xstrdup(dirname(real));
	free(real);
	return text;
}

bool source_alembic_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	struct alembic_source *as = xcalloc(1, sizeof *as);
	as->cfg = cfg;
	as->vt_sql = quote_table(cfg->alembic_version_table);
	as->ini_path = xstrdup(cfg->alembic_ini);
	char *text = read_ini(as, err, errlen);
	bool located = text && alembic_ini_locate(text, cfg->alembic_ini, as->ini_dir, &as->dirs,
						  &as->ndirs, &as->recursive, err, errlen);
	free(text);
	/* The tool: --migrate-cmd, else PYTHON -m alembic -c INI upgrade head. */
	if (!located || !source_cmd_open(cfg, &as->cmd, err, errlen)) {
		alembic_destroy(as);
		return false;
	}
	src->kind = "alembic";
	src->describe = as->cmd.describe;
	src->self = as;
	src->plan = alembic_plan;
	src->migrate = alembic_migrate;
	src->destroy = alembic_destroy;
	return true;
}
