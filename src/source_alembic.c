/* Alembic projects: read the ini and every revision file as text, check the graph and the
 * database's alembic_version, and start Python only when something is pending. */
#include "mtr/source_alembic.h"
#include "mtr/alembic_rev.h"
#include "mtr/alembic_where.h"
#include "mtr/chain.h"
#include "mtr/exitcode.h"
#include "mtr/fileio.h"
#include "mtr/log.h"
#include "mtr/source.h"
#include "mtr/source_cmd.h"
#include "mtr/strbuf.h"
#include "mtr/strmap.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the source ------------------------------------------------------------------------------ */

struct alembic_source {
	const struct config *cfg;
	char *vt_sql; /* --alembic-version-table as SQL: [SCHEMA.]TABLE, each part quoted */
	char *ini_path, *ini_dir; /* ini_dir: its absolute directory, %(here)s */
	char *cwd;                /* where the migration command runs: relative paths start there */
	struct alembic_where where;
	struct source cmd; /* runs the tool */
	/* plan results */
	struct chain chain;
	bool files_failed; /* a file could not be read: the graph is not the whole one */
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
	bool pending_known; /* false: problems stopped the computation */
	struct preload *pre; /* the first plan's files, being read since open */
	int look_col;        /* the first look's version-table columns (alembic_look), or 0 */
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
	as->pending_known = as->files_failed = false;
}

/* Shortens a path under the ini's directory for messages: versions/0004_x.py. */
static char *display_path(const struct alembic_source *as, const char *path)
{
	size_t n = strlen(as->ini_dir);
	if (strncmp(path, as->ini_dir, n) == 0 && path[n] == '/')
		return xstrdup(path + n + 1);
	return xstrdup(path);
}

/* What display_path makes of the paths of dir's files, without their names: "versions/". Caller
 * frees. */
static char *shown_prefix(const struct alembic_source *as, const char *dir)
{
	char *p = xasprintf("%s/", dir), *shown = display_path(as, p);
	free(p);
	return shown;
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

/* Alembic's revision file names: *.py, except those starting with ".#" (an editor's lock) or
 * "__init__". */
static bool is_revision_file(const char *name)
{
	size_t n = strlen(name);
	return n >= 3 && strcmp(name + n - 3, ".py") == 0 && strncmp(name, ".#", 2) != 0 &&
	       strncmp(name, "__init__", 8) != 0;
}

/* A compiled revision (name.pyc or name.pyo) as a sourceless project has them. */
static bool is_compiled_file(const char *name)
{
	size_t n = strlen(name);
	return n >= 4 && (strcmp(name + n - 4, ".pyc") == 0 || strcmp(name + n - 4, ".pyo") == 0) &&
	       strncmp(name, ".#", 2) != 0 && strncmp(name, "__init__", 8) != 0;
}

/* One revision file: listed in Alembic's order first, then read and parsed (on one of the
 * reading threads), then added to the chain in the listed order. */
struct item {
	size_t dir;   /* its directory: an index in load's dirs (open until the items are read) */
	bool special; /* not a regular file: refused unopened */
	bool regular; /* the listing says it is a regular file: read without an fstat */
	char *name;   /* in it */
	bool ok;      /* r holds it; else problem says why not */
	struct rev r;
	char *problem;
};

/* One reading of every version location. Only the source's settings are read from as, which
 * do not change after open: a load may run on a thread of its own (see struct preload). */
struct load {
	const struct alembic_source *as;
	struct problems p;    /* what cannot be read, kind "files" (or "sourceless"), listed first */
	struct item *items;
	size_t nitems;
	struct open_dir {
		DIR *d;
		char *real;   /* its real path */
		char *shown;  /* what its files' paths start with in messages: "versions/" */
	} *dirs;              /* the directories the items are in */
	size_t ndirs;
	/* The real path of every file listed (Alembic reads a file once), kept from when a second
	 * directory or a link is listed: files of one directory cannot be listed twice otherwise. */
	bool keyed;
	struct strmap seen;
	char **keys;          /* the strings seen points at */
	size_t nkeys;
	size_t twice;         /* files reached a second time, skipped */
	char *twice_example;
	struct strbuf missing; /* version locations that do not exist, skipped */
	bool sourceless;      /* a revision exists only compiled */
};

/* One directory entry: its name, and whether it is a directory (a link to one counts, as
 * os.walk counts it, but is not walked into), a link, or known not to be a regular file (a
 * FIFO, a device, a socket: refused without being opened, since opening some devices acts). */
struct entry {
	char *name;
	bool dir, link, special, regular; /* regular: known to be a regular file */
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* The entries of the open directory d, sorted by name (Alembic 1.10 and later sort them;
 * earlier ones took the file system's order). d_type says what most entries are; only links
 * and entries of unknown type are looked at with a stat. */
static struct entry *list_dir(DIR *d, size_t *n)
{
	struct entry *v = NULL;
	size_t cap = 0;
	struct dirent *e;
	*n = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, cap * sizeof *v);
		}
		struct entry *x = &v[(*n)++];
		struct stat st;
		x->name = xstrdup(e->d_name);
		x->dir = e->d_type == DT_DIR;
		x->link = e->d_type == DT_LNK;
		x->special = e->d_type != DT_REG && e->d_type != DT_DIR && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN;
		x->regular = e->d_type == DT_REG;
		if (e->d_type == DT_UNKNOWN)
			x->link = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
		if (e->d_type == DT_LNK || e->d_type == DT_UNKNOWN) { /* what it leads to: unknown if nothing */
			bool known = fstatat(dirfd(d), e->d_name, &st, 0) == 0;
			x->dir = known && S_ISDIR(st.st_mode);
			x->special = known && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode);
			x->regular = known && S_ISREG(st.st_mode);
		}
	}
	if (*n)
		qsort(v, *n, sizeof *v, by_name);
	return v;
}

static void free_entries(struct entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* Remembers key (taken) as listed: false when it was listed already. */
static bool seen_key(struct load *l, char *key)
{
	if (!strmap_put(&l->seen, key, 0)) {
		free(key);
		return false;
	}
	if ((l->nkeys & (l->nkeys - 1)) == 0) /* doubling */
		l->keys = xrealloc(l->keys, (l->nkeys ? l->nkeys * 2 : 1) * sizeof *l->keys);
	l->keys[l->nkeys++] = key;
	return true;
}

/* From the second directory or the first link on, every file listed is remembered by its real
 * path; the files listed before (all in one directory, none a link) are remembered now. */
static void start_keys(struct load *l)
{
	if (l->keyed)
		return;
	l->keyed = true;
	for (size_t i = 0; i < l->nitems; i++)
		(void)seen_key(l, xasprintf("%s/%s", l->dirs[l->items[i].dir].real, l->items[i].name));
}

/* Lists one revision file (e, whose name it takes, in the directory last opened, dir), unless
 * its real path was listed already (Alembic warns and skips it). */
static void list_revision(struct load *l, const char *dir, struct entry *e)
{
	const struct open_dir *od = &l->dirs[l->ndirs - 1];
	if (e->link)
		start_keys(l);
	if (l->keyed) {
		char *path = xasprintf("%s/%s", dir, e->name);
		char *key = e->link ? realpath(path, NULL) : xasprintf("%s/%s", od->real, e->name);
		free(path);
		if (!key) /* a dangling link: reading it says why it cannot be read */
			key = xasprintf("%s/%s", dir, e->name);
		if (!seen_key(l, key)) {
			if (!l->twice_example)
				l->twice_example = xasprintf("%s%s", od->shown, e->name);
			l->twice++;
			return;
		}
	}
	if ((l->nitems & (l->nitems - 1)) == 0)
		l->items = xrealloc(l->items, (l->nitems ? l->nitems * 2 : 1) * sizeof *l->items);
	struct item *it = &l->items[l->nitems++];
	memset(it, 0, sizeof *it);
	it->dir = l->ndirs - 1;
	it->special = e->special;
	it->regular = e->regular;
	it->name = e->name;
	e->name = NULL; /* the item's now */
}

/* What a thread reading items keeps from one file to the next: the text read, the path shown. */
struct read_buf {
	char *text;
	size_t cap;
	struct strbuf shown;
};

/* Reads and parses one listed file: three system calls (open, read, close; four when the
 * listing did not say it is a regular file) into a buffer reused for every file, as the SQL
 * reader's. Touches nothing but the item and b: items are read in parallel. */
static void read_item(const struct load *l, struct item *it, struct read_buf *b)
{
	const struct open_dir *od = &l->dirs[it->dir];
	size_t len;
	char *text = NULL;
	errno = ENOTSUP;
	if (it->regular) {
		if (file_read_listed(dirfd(od->d), it->name, REV_MAX_BYTES, &b->text, &b->cap, &len))
			text = b->text;
	} else if (!it->special) {
		text = file_read_at(dirfd(od->d), it->name, REV_MAX_BYTES, &len);
	}
	int err_no = errno;
	char err[1024];
	sb_truncate(&b->shown, 0);
	sb_adds(&b->shown, od->shown);
	sb_adds(&b->shown, it->name);
	if (!text) {
		char why[128];
		it->problem = xasprintf("%s: cannot read: %s", b->shown.s, read_reason(err_no, REV_MAX_BYTES, why, sizeof why));
	} else if (alembic_rev_parse(text, len, b->shown.s, &it->r, err, sizeof err)) {
		it->ok = true;
	} else {
		it->problem = xstrdup(err);
		rev_free(&it->r);
	}
	if (text != b->text)
		free(text);
}

/* The first part of a file name, up to its first dot (how Alembic pairs x.py with its .pyc). */
static bool same_stem(const char *a, const char *b)
{
	size_t n = strcspn(a, ".");
	return strncmp(a, b, n) == 0 && (b[n] == '.' || b[n] == '\0');
}

/* A sourceless project: a revision that is only compiled (x.pyc without x.py, or one in
 * __pycache__ that no file of the directory goes with) cannot be read as text. */
static void check_compiled(struct load *l, const char *dir, const struct entry *v, size_t n)
{
	const char *only = NULL;
	for (size_t i = 0; i < n && !only; i++) {
		if (v[i].dir || !is_compiled_file(v[i].name))
			continue;
		bool source = false;
		for (size_t k = 0; k < n && !source; k++)
			source = strlen(v[k].name) == strlen(v[i].name) - 1 && strncmp(v[k].name, v[i].name, strlen(v[k].name)) == 0;
		if (!source)
			only = v[i].name;
	}
	char *cache = xasprintf("%s/__pycache__", dir);
	DIR *d = only ? NULL : opendir(cache);
	size_t nc = 0;
	struct entry *c = d ? list_dir(d, &nc) : NULL;
	for (size_t i = 0; i < nc && !only; i++) {
		bool paired = false;
		for (size_t k = 0; k < n && !paired; k++)
			paired = same_stem(c[i].name, v[k].name);
		if (!paired && !c[i].dir)
			only = c[i].name;
	}
	if (only) {
		char *shown = display_path(l->as, dir);
		problems_add(&l->p, "sourceless",
			     "%s: the revision %s exists only compiled, and sourceless = true in %s: a compiled "
			     "file cannot be read as text. Let Alembic decide on every start instead: drop "
			     "--alembic-ini and give --migrate-cmd '%s -m alembic -c %s upgrade heads'",
			     shown, only, l->as->ini_path, l->as->cfg->python, l->as->ini_path);
		free(shown);
		l->sourceless = true;
	}
	free_entries(c, nc);
	if (d)
		closedir(d);
	free(cache);
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	return n >= t && strcmp(s + n - t, tail) == 0;
}

/* Walks a version location as Alembic does (os.walk, top down): the revision files of dir in
 * name order, then, with recursive_version_locations, each subdirectory in name order; links
 * to directories are not followed, and files in a __pycache__ are not revisions. real is
 * dir's real path. The directory stays open for its files to be read. */
static void walk(struct load *l, const char *dir, const char *real, int depth)
{
	DIR *d = opendir(dir);
	if (!d) {
		char *shown = display_path(l->as, dir);
		problems_add(&l->p, "files", "%s: cannot read the Alembic versions directory %s: %s", l->as->ini_path,
			     shown, strerror(errno));
		free(shown);
		return;
	}
	if (l->ndirs)
		start_keys(l); /* a second directory: it may hold files listed already */
	l->dirs = xrealloc(l->dirs, (l->ndirs + 1) * sizeof *l->dirs);
	l->dirs[l->ndirs++] = (struct open_dir){d, xstrdup(real), shown_prefix(l->as, dir)};
	size_t n;
	struct entry *v = list_dir(d, &n);
	bool cache = ends_with(dir, "__pycache__");
	if (l->as->where.sourceless && !cache)
		check_compiled(l, dir, v, n);
	for (size_t i = 0; i < n && !cache; i++)
		if (!v[i].dir && is_revision_file(v[i].name))
			list_revision(l, dir, &v[i]);
	for (size_t i = 0; i < n && l->as->where.recursive && depth < 64; i++) {
		if (!v[i].dir || v[i].link)
			continue;
		char *sub = xasprintf("%s/%s", dir, v[i].name), *subreal = xasprintf("%s/%s", real, v[i].name);
		walk(l, sub, subreal, depth + 1);
		free(sub);
		free(subreal);
	}
	free_entries(v, n);
}

/* One version location: walked when it is a directory; skipped, as Alembic skips it, when it
 * does not exist (or is no directory). */
static void load_location(struct load *l, const char *dir)
{
	struct stat st;
	char *shown = display_path(l->as, dir);
	if (stat(dir, &st) != 0 && errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
		problems_add(&l->p, "files", "%s: cannot read the Alembic versions directory %s: %s", l->as->ini_path,
			     shown, strerror(errno));
	} else if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		sb_addf(&l->missing, "%s%s", l->missing.len ? ", " : "", shown);
	} else {
		char *real = realpath(dir, NULL);
		walk(l, dir, real ? real : dir, 0);
		free(real);
	}
	free(shown);
}

/* The files of a large project are read by up to this many threads (system calls, mostly),
 * READER_CHUNK files at a time: a thread that the system runs less (the connection's work, the
 * server's) leaves more of them to the others. */
#define READERS_MAX 4
#define READER_MIN_FILES 256
#define READER_CHUNK 32

struct readers {
	const struct load *l;
	atomic_size_t next; /* the first item no reader has taken yet */
};

static void *reader_main(void *arg)
{
	struct readers *r = arg;
	struct read_buf b = {NULL, 0, STRBUF_INIT};
	size_t n = r->l->nitems;
	for (size_t k; (k = atomic_fetch_add(&r->next, READER_CHUNK)) < n;)
		for (size_t i = k; i < n && i < k + READER_CHUNK; i++)
			read_item(r->l, &r->l->items[i], &b);
	free(b.text);
	sb_free(&b.shown);
	return NULL;
}

/* Reads every listed item, in parallel when there are many and several processors; the items
 * of a thread that cannot be started are read by the others. */
static void read_items(struct load *l)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t t = cpus > READERS_MAX ? READERS_MAX : cpus > 1 ? (size_t)cpus : 1;
	if (l->nitems < READER_MIN_FILES)
		t = 1;
	struct readers r = {l, 0};
	pthread_t th[READERS_MAX];
	bool started[READERS_MAX] = {false};
	for (size_t k = 1; k < t; k++)
		started[k] = pthread_create(&th[k], NULL, reader_main, &r) == 0;
	reader_main(&r);
	for (size_t k = 1; k < t; k++)
		if (started[k])
			pthread_join(th[k], NULL);
}

/* Every version location listed, then every file read. */
static void load_all(struct load *l, const struct alembic_source *as)
{
	memset(l, 0, sizeof *l);
	l->as = as;
	for (size_t i = 0; i < as->where.ndirs; i++)
		load_location(l, as->where.dirs[i]);
	read_items(l);
	for (size_t i = 0; i < l->ndirs; i++) {
		closedir(l->dirs[i].d);
		free(l->dirs[i].real);
		free(l->dirs[i].shown);
	}
	free(l->dirs);
	l->dirs = NULL;
	l->ndirs = 0;
}

static void load_free(struct load *l)
{
	for (size_t i = 0; i < l->nitems; i++) {
		if (l->items[i].ok)
			rev_free(&l->items[i].r);
		free(l->items[i].name);
		free(l->items[i].problem);
	}
	free(l->items);
	for (size_t i = 0; i < l->nkeys; i++)
		free(l->keys[i]);
	free(l->keys);
	strmap_free(&l->seen);
	sb_free(&l->missing);
	free(l->twice_example);
	problems_free(&l->p);
	memset(l, 0, sizeof *l);
}

/* What a reading noticed and skipped, as Alembic skips it: logged once per start (the quiet
 * look logs them; the locked plan after it does not). */
static void log_notes(const struct load *l)
{
	if (l->missing.len)
		log_event(LOG_WARN, "plan.note",
			  LOG_FIELDS(LF_S("kind", "missing_location"), LF_S("location", l->missing.s)),
			  "version location %s does not exist (or is no directory): skipped, as Alembic skips it",
			  l->missing.s);
	if (l->twice)
		log_event(LOG_WARN, "plan.note",
			  LOG_FIELDS(LF_S("kind", "read_twice"), LF_S("file", l->twice_example), LF_I("count", l->twice)),
			  "%zu revision file%s reached a second time (e.g. %s: the version locations overlap, or a "
			  "recursive search finds a listed directory again): read once, as Alembic reads them",
			  l->twice, l->twice == 1 ? " was" : "s were", l->twice_example);
}

/* The load's revisions into the chain in Alembic's order, what could not be read into p (every
 * file of it, not only the first). Returns 0, or MTR_EXIT_USAGE when the project can only be
 * run by Alembic (sourceless). The load is emptied. */
static int take_load(struct alembic_source *as, struct load *l, struct problems *p, int flags)
{
	if (!(flags & PLAN_REPEAT))
		log_notes(l);
	for (size_t i = 0; i < l->p.n; i++)
		problems_add(p, l->p.items[i].kind, "%s", l->p.items[i].msg);
	for (size_t i = 0; i < l->nitems; i++) {
		struct item *it = &l->items[i];
		if (it->ok)
			chain_add(&as->chain, &it->r);
		else
			problems_add(p, "files", "%s", it->problem);
		it->ok = false; /* the chain owns the strings now */
	}
	if (as->chain.n == 0 && p->n == 0) {
		struct strbuf where = STRBUF_INIT;
		for (size_t i = 0; i < as->where.ndirs; i++)
			sb_addf(&where, "%s%s", i ? ", " : "", as->where.dirs[i]);
		problems_add(p, "empty", "%s: no revision files in %s%s%s%s; check script_location / version_locations",
			     as->ini_path, where.s, l->missing.len ? " (missing: " : "", l->missing.len ? l->missing.s : "",
			     l->missing.len ? ")" : "");
		sb_free(&where);
	}
	as->files_failed = p->n > 0;
	int code = l->sourceless ? MTR_EXIT_USAGE : 0;
	load_free(l);
	return code;
}

/* The first plan's files are read while the database is being waited for (on a thread started
 * at open): its connection and the reading of a large project overlap. A load that then waited
 * long for its plan (the database was not up yet) is read again: only a fresh reading may
 * decide. */
#define PRELOAD_FRESH_MS 2000

struct preload {
	pthread_t thread;
	struct load l;
	int64_t finished; /* now_ms() when the thread was done */
};

static void *preload_main(void *arg)
{
	struct preload *pre = arg;
	load_all(&pre->l, pre->l.as);
	pre->finished = now_ms();
	return NULL;
}

static void preload_start(struct alembic_source *as)
{
	struct preload *pre = xcalloc(1, sizeof *pre);
	pre->l.as = as;
	if (pthread_create(&pre->thread, NULL, preload_main, pre) == 0)
		as->pre = pre;
	else
		free(pre); /* no thread: the first plan reads the files itself */
}

/* The preloaded files, when there are and they are fresh (the thread is joined either way):
 * true with *l taken over. */
static bool preload_take(struct alembic_source *as, struct load *l)
{
	struct preload *pre = as->pre;
	if (!pre)
		return false;
	pthread_join(pre->thread, NULL);
	as->pre = NULL;
	bool fresh = now_ms() - pre->finished <= PRELOAD_FRESH_MS;
	if (fresh)
		*l = pre->l;
	else
		load_free(&pre->l);
	free(pre);
	return fresh;
}

/* Every version location into the chain (see take_load). */
static int load_revisions(struct alembic_source *as, struct problems *p, int flags)
{
	struct load l;
	if (!preload_take(as, &l))
		load_all(&l, as);
	return take_load(as, &l, p, flags);
}

/* ---- the database ---------------------------------------------------------------------------- */

/* The catalog questions of the quiet plan, with the version table as parameter $n: is it
 * missing, and (only then) how many tables the current schema has, a database Alembic did
 * not set up having some. */
#define ALEMBIC_VT_ABSENT "pg_catalog.to_regclass($%d) IS NULL"
#define ALEMBIC_SCHEMA_TABLES                                                                     \
	"CASE WHEN pg_catalog.to_regclass($%d) IS NULL THEN (SELECT pg_catalog.count(*) "         \
	"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) " \
	"c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname OPERATOR(pg_catalog.=) "       \
	"pg_catalog.current_schema() AND c.relname OPERATOR(pg_catalog.<>) 'mtr_failure_state') END"

static void alembic_look(void *self, struct look *l)
{
	struct alembic_source *as = self;
	/* Only "is it there": the schema's tables matter only when it is not (source_sql.c). */
	const char *name = as->cfg->alembic_version_table, *dot = strchr(name, '.');
	as->look_col = 0;
	if (!dot) {
		as->look_col = look_table(l, NULL, name);
	} else if (!strchr(dot + 1, '.')) { /* more parts: asked in the plan, as written */
		char *schema = xstrndup(name, (size_t)(dot - name));
		as->look_col = look_table(l, schema, dot + 1);
		free(schema);
	}
}

/* Whether the version table is missing, and then the schema's tables: "there" from the first
 * look when it said so, else both asked now. False when the catalog could not be read: the
 * caller then asks for the table itself, and an error answer says more. Asking for a missing
 * table would leave an ERROR in the server's log on every fresh database. */
static bool version_table_absent(PGconn *conn, const struct alembic_source *as, const struct look *look,
				 bool *absent, long *tables)
{
	*absent = false;
	*tables = 0;
	if (look_true(look, as->look_col)) /* the usual start: the first look saw it */
		return true;
	const char *params[1] = {as->vt_sql};
	char *sql = xasprintf("SELECT " ALEMBIC_VT_ABSENT ", " ALEMBIC_SCHEMA_TABLES, 1, 1);
	struct pg_error e;
	PGresult *res = pg_run(conn, sql, 1, params, PG_QUERY_MS, -1, &e);
	free(sql);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok) {
		*absent = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		*tables = PQgetisnull(res, 0, 1) ? 0 : atol(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return ok;
}

/* The tool's own small queries: bounded by PG_QUERY_MS. libpq's message when the server
 * answered with an error, pg_run's when no answer came. */
static PGresult *small_query(PGconn *conn, const char *sql, const char **msg, struct pg_error *e)
{
	PGresult *res = pg_run(conn, sql, 0, NULL, PG_QUERY_MS, -1, e);
	*msg = res ? PQresultErrorMessage(res) : e->msg;
	return res;
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the version table's rows into as->db_revs (as->table_exists says whether there is
 * one; *tables counts the schema's tables when there is not). look: the first look's answers,
 * or NULL under the lock. False with err. */
static bool read_versions(PGconn *conn, struct alembic_source *as, const struct look *look, long *tables,
			  char *err, size_t errlen)
{
	/* The usual case: the table is there. Only when it is not (the catalog, else 42P01, or
	 * 3F000 for a missing schema) are the schema's tables counted. */
	*tables = 0;
	bool absent = false;
	bool known = version_table_absent(conn, as, look, &absent, tables);
	struct pg_error e;
	const char *msg;
	/* Sorted here (strcmp), not by the server: an ORDER BY costs a fresh session its planning. */
	char *sql = xasprintf("SELECT version_num FROM %s", as->vt_sql);
	PGresult *res = absent ? NULL : small_query(conn, sql, &msg, &e);
	free(sql);
	const char *state = absent ? "42P01" : PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		as->table_exists = true;
		*tables = 0;
		as->ndb = (size_t)PQntuples(res);
		as->db_revs = xcalloc(as->ndb + 1, sizeof *as->db_revs);
		for (size_t i = 0; i < as->ndb; i++)
			as->db_revs[i] = xstrdup(PQgetvalue(res, (int)i, 0));
		qsort(as->db_revs, as->ndb, sizeof *as->db_revs, by_text);
		PQclear(res);
		return true;
	}
	bool missing = state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0);
	if (!missing || !known) {
		set_err(err, errlen, "reading %s: %s", as->cfg->alembic_version_table,
			missing ? "the catalog could not be read" : msg);
		PQclear(res);
		return false;
	}
	PQclear(res);
	as->table_exists = false;
	return true;
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
	struct chain *c = &as->chain;
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

/* Whether every row of the version table names a revision we read (or the baseline does). */
static bool rows_known(const struct alembic_source *as)
{
	if (as->do_baseline)
		return true;
	for (size_t i = 0; i < as->ndb; i++)
		if (chain_find(&as->chain, as->db_revs[i]) < 0)
			return false;
	return true;
}

/* The heads, and what `alembic upgrade heads` would apply from where the database is, in its
 * order. Computed whenever the graph allows it (a problem of policy, such as unmerged heads,
 * still refuses, but the report shows what would run); not when a file could not be read, the
 * graph is broken, or the database is at a revision no file declares. */
static void find_pending(struct alembic_source *as)
{
	as->heads = xmalloc((as->chain.n + 1) * sizeof *as->heads);
	as->nheads = chain_heads(&as->chain, as->heads, as->chain.n);
	as->pending = xmalloc((as->chain.n + 1) * sizeof *as->pending);
	as->pending_known = !as->files_failed && chain_plannable(&as->chain) && rows_known(as);
	if (as->pending_known) {
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
	if (as->pending_known)
		add_ids(o, "pending", c, as->pending, as->npending);
	else
		cJSON_AddNullToObject(o, "pending"); /* problems stopped the computation */
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
	if (!as->pending_known)
		printf("pending: not computed (see the problems below)\n");
	else
		printf("pending: %s\n", as->npending ? pend : "none");
	for (size_t i = 0; i < p->n; i++)
		printf("problem: %s\n", p->items[i].msg);
	printf("%s: %zu problem%s\n", p->n ? "INCONSISTENT" : "consistent", p->n, p->n == 1 ? "" : "s");
	free(r);
	free(h);
	free(pend);
}

static void print_report(struct alembic_source *as, const struct problems *p)
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
	if (p->n && as->cfg->check) {
		log_event(LOG_ERROR, "check.refused", LOG_FIELDS(LF_I("problems", p->n), LF_I("exit_code", code)),
			  "the check found %zu problem%s with the Alembic project %s (see check.failed "
			  "above); --check changed nothing",
			  p->n, p->n == 1 ? "" : "s", as->ini_path);
		return;
	}
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
	struct problems p = {0};
	free_plan(as);
	as->do_repair = false;
	int code = load_revisions(as, &p, flags);
	ctx->info->files_refused = as->files_failed; /* the image's files: no lock can change them */
	if ((flags & PLAN_QUIET) && p.n) { /* refused at once (pipeline.c), said once */
		problems_log(&p);
		problems_free(&p);
		return code ? code : MTR_EXIT_INCONSISTENT;
	}
	if (!as->files_failed)
		chain_check(&as->chain, &p);
	char err[1024];
	long tables = 0;
	if (!read_versions(conn, as, ctx->look, &tables, err, sizeof err)) {
		problems_free(&p);
		log_event(LOG_ERROR, "plan.failed", LOG_FIELDS(LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
			  "%s", err);
		return MTR_EXIT_TEMPFAIL;
	}
	if (!as->files_failed)
		check_database(as, tables, &p);
	find_pending(as);
	if (!(flags & PLAN_QUIET))
		problems_log(&p);
	if (flags & PLAN_REPORT)
		print_report(as, &p);
	code = code ? code : p.n ? MTR_EXIT_INCONSISTENT : 0;
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
	if (read_versions(conn, as, NULL, &tables_before, err, sizeof err))
		diagnose(as, out, had_table ? 2 : tables_before);
	long k = out->revision[0] ? chain_find(&as->chain, out->revision) : -1;
	if (k >= 0)
		snprintf(out->file, sizeof out->file, "%s", as->chain.revs[k].file);
}

/* At the heads: nothing left pending from where the rows say we are (Alembic leaves out
 * a head that another head depends_on, so the rows need not list every head). */
static bool at_heads(struct alembic_source *as)
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
	if (!read_versions(conn, as, NULL, &tables, err, sizeof err)) {
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
	struct load unused;
	if (preload_take(as, &unused))
		load_free(&unused);
	free_plan(as);
	free(as->vt_sql);
	if (as->cmd.destroy)
		as->cmd.destroy(as->cmd.self);
	alembic_where_free(&as->where);
	free(as->ini_path);
	free(as->ini_dir);
	free(as->cwd);
	free(as);
}

/* ---- opening the project --------------------------------------------------------------------- */

/* Where the migration command runs: --migrate-cwd (from ours), else our working directory.
 * Alembic resolves -c and the relative paths in the ini from there. Caller frees. */
static char *command_cwd(const struct config *cfg)
{
	char *ours = getcwd(NULL, 0);
	if (!ours)
		ours = xstrdup("/"); /* ours was removed: absolute paths still work */
	if (!cfg->migrate_cwd)
		return ours;
	char *c = alembic_path_join(ours, cfg->migrate_cwd);
	free(ours);
	return c;
}

/* Reads --alembic-ini, relative to the command's directory as Alembic's -c is, and sets
 * as->ini_dir (its absolute directory: %(here)s). Returns the text (caller frees), or NULL
 * with err. */
static char *read_ini(struct alembic_source *as, size_t *len, char *err, size_t errlen)
{
	char *path = alembic_path_join(as->cwd, as->cfg->alembic_ini);
	char *text = file_read(path, INI_MAX_BYTES, len);
	if (!text) {
		int e = errno;
		char why[128];
		set_err(err, errlen, "--alembic-ini: cannot read '%s': %s", as->cfg->alembic_ini,
			read_reason(e, INI_MAX_BYTES, why, sizeof why));
		free(path);
		return NULL;
	}
	as->ini_dir = xstrdup(dirname(path));
	free(path);
	return text;
}

/* What Alembic checks before it reads a revision (the script directory exists), and that the
 * migration command can run the project. False with err. */
static bool usable(const struct alembic_source *as, char *err, size_t errlen)
{
	if (access(as->where.script_dir, F_OK) != 0) {
		set_err(err, errlen,
			"--alembic-ini: %s: the script_location %s does not exist (relative paths start in "
			"the migration command's directory, %s, as Alembic's do; see --migrate-cwd)",
			as->ini_path, as->where.script_dir, as->cwd);
		return false;
	}
	if (as->where.flask && !as->cfg->migrate_cmd) {
		set_err(err, errlen,
			"--alembic-ini: %s has no script_location: a Flask-Migrate project (env.py and "
			"versions/ beside it), which the alembic command cannot run; give the command that "
			"runs it: --migrate-cmd 'flask db upgrade'",
			as->ini_path);
		return false;
	}
	return true;
}

bool source_alembic_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	struct alembic_source *as = xcalloc(1, sizeof *as);
	as->cfg = cfg;
	as->vt_sql = quote_table(cfg->alembic_version_table);
	as->ini_path = xstrdup(cfg->alembic_ini);
	as->cwd = command_cwd(cfg);
	size_t len = 0;
	char *text = read_ini(as, &len, err, errlen);
	struct alembic_paths paths = {cfg->alembic_ini, as->ini_dir, as->cwd,
				      cfg->alembic_section ? cfg->alembic_section : "alembic", getenv("PYTHONPATH")};
	bool ok = text && alembic_locate(text, len, &paths, &as->where, err, errlen) && usable(as, err, errlen);
	free(text);
	/* The tool: --migrate-cmd, else PYTHON -m alembic -c INI [-n SECTION] upgrade heads. */
	if (!ok || !source_cmd_open(cfg, &as->cmd, err, errlen)) {
		alembic_destroy(as);
		return false;
	}
	src->kind = "alembic";
	src->describe = as->cmd.describe;
	src->self = as;
	src->look = alembic_look;
	src->plan = alembic_plan;
	src->migrate = alembic_migrate;
	src->destroy = alembic_destroy;
	preload_start(as);
	return true;
}
