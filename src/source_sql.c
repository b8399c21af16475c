/* Native SQL migrations: DIR/<version>_<name>.sql, one transaction each, a history table. */
#include "mtr/source_sql.h"
#include "mtr/exitcode.h"
#include "mtr/fileio.h"
#include "mtr/log.h"
#include "mtr/pg.h"
#include "mtr/problems.h"
#include "mtr/retry.h"
#include "mtr/source.h"
#include "mtr/sql_runner.h"

#include <cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIRECTIVE "-- migrate-then-run: no-transaction"

struct sql_file {
	uint64_t version;
	char vtext[24];
	char *name;
	char *file;
	char checksum[65];
	bool no_tx;
};

struct applied {
	uint64_t version;
	char vtext[24];
	char *name;
	char checksum[65];
	bool success;
};

struct sql_source {
	const struct config *cfg;
	char *schema, *table;
	bool has_baseline, has_repair;
	uint64_t baseline, repair;
	/* Filled by plan(), used by migrate(). */
	struct sql_file *files;
	size_t nfiles;
	bool history_exists;
	struct applied *applied;
	size_t napplied;
	size_t *pending;
	size_t npending;
	bool do_baseline, do_repair;
	bool notes_logged; /* this plan follows a quiet look that logged the notes (PLAN_REPEAT) */
	char bookkeeping_state[6]; /* the SQLSTATE of a failed history table creation */
	char plan_state[6];        /* the SQLSTATE of a failed read of the history */
	int look_col;              /* the first look's history columns (sql_look), or 0 */
};

int source_sql_parse_name(const char *file, uint64_t *version, char *name, size_t namelen)
{
	size_t digits = 0;
	while (isdigit((unsigned char)file[digits]))
		digits++;
	size_t len = strlen(file);
	if (digits == 0 || file[digits] != '_' || len < digits + 6 ||
	    strcmp(file + len - 4, ".sql") != 0)
		return 0;
	uint64_t v = 0;
	for (size_t i = 0; i < digits; i++) {
		unsigned d = (unsigned)(file[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*version = v;
	snprintf(name, namelen, "%.*s", (int)(len - digits - 5), file + digits + 1);
	return 1;
}

bool source_sql_no_transaction(const char *text)
{
	return sqlr_first_line_is(text, strlen(text), DIRECTIVE);
}

/* A version as given to --baseline or --repair-failed: digits only, within 64 bits. */
static bool parse_version(const char *s, uint64_t *v)
{
	char name[8];
	char probe[64];
	size_t n = strlen(s);
	if (n == 0 || n >= 40 || strspn(s, "0123456789") != n)
		return false;
	snprintf(probe, sizeof probe, "%s_x.sql", s);
	return source_sql_parse_name(probe, v, name, sizeof name) == 1;
}

/* ---- reading the directory ------------------------------------------------------------ */

static void free_files(struct sql_source *ss)
{
	for (size_t i = 0; i < ss->nfiles; i++) {
		free(ss->files[i].name);
		free(ss->files[i].file);
	}
	free(ss->files);
	ss->files = NULL;
	ss->nfiles = 0;
	for (size_t i = 0; i < ss->napplied; i++)
		free(ss->applied[i].name);
	free(ss->applied);
	ss->applied = NULL;
	ss->napplied = 0;
	free(ss->pending);
	ss->pending = NULL;
	ss->npending = 0;
}

static int by_version(const void *a, const void *b)
{
	const struct sql_file *x = a, *y = b;
	return x->version < y->version ? -1 : x->version > y->version;
}

/* Reads every migration file of dir, keeping only its checksum and marker (memory does not
 * grow with the files); logs skipped names. Returns 0, or 65 with err. */
static int load_files(struct sql_source *ss, char *err, size_t errlen)
{
	const char *dir = ss->cfg->sql_dir;
	DIR *d = opendir(dir);
	if (!d) {
		set_err(err, errlen, "--sql-dir: cannot read the directory '%s': %s", dir, strerror(errno));
		return MTR_EXIT_INCONSISTENT;
	}
	size_t cap = 0;
	struct dirent *e;
	int code = 0;
	struct sqlr_hash hash;
	sqlr_hash_init(&hash);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		uint64_t version;
		char name[256];
		int m = source_sql_parse_name(e->d_name, &version, name, sizeof name);
		/* A directory or a device not named like a migration is none of ours. */
		if (m == 0 && e->d_type != DT_REG && e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
			continue;
		char *path = xasprintf("%s/%s", dir, e->d_name);
		if (m == 0 && ss->notes_logged) {
			free(path);
			continue;
		}
		if (m == 0) {
			log_event(LOG_WARN, "plan.skipped", LOG_FIELDS(LF_S("file", e->d_name), LF_S("dir", dir)),
				  "skipping '%s': not a migration file (expected <version>_<name>.sql, "
				  "version in digits)",
				  e->d_name);
			free(path);
			continue;
		}
		if (m < 0) {
			set_err(err, errlen, "%s: the version does not fit in 64 bits; use at most 20 digits "
				"(e.g. a timestamp such as 20250121093000)", path);
			free(path);
			code = MTR_EXIT_INCONSISTENT;
			break;
		}
		struct sqlr_file scan;
		enum sqlr_load l = sqlr_scan(dirfd(d), dir, e->d_name, DIRECTIVE, &hash, &scan, err, errlen);
		/* Named like a migration, it must be one: a FIFO, a device or a socket is refused
		 * (never read: it could block or never end), and so is a directory. */
		if (l == SQLR_NOT_REGULAR)
			set_err(err, errlen, "%s: %s; a migration must be a regular file: replace it "
				"with the SQL file, or remove it", path, sqlr_not_regular(dirfd(d), e->d_name));
		free(path);
		if (l != SQLR_LOADED) {
			code = MTR_EXIT_INCONSISTENT;
			break;
		}
		if (ss->nfiles == cap)
			ss->files = xrealloc(ss->files, (cap = cap ? cap * 2 : 64) * sizeof *ss->files);
		struct sql_file *f = &ss->files[ss->nfiles++];
		memset(f, 0, sizeof *f);
		f->version = version;
		snprintf(f->vtext, sizeof f->vtext, "%" PRIu64, version);
		f->name = sqlr_text_name(name); /* a name in another encoding, escaped */
		f->file = xstrdup(e->d_name);
		f->no_tx = scan.marked;
		memcpy(f->checksum, scan.checksum, sizeof f->checksum);
	}
	closedir(d);
	sqlr_hash_free(&hash);
	if (code)
		return code;
	qsort(ss->files, ss->nfiles, sizeof *ss->files, by_version);
	for (size_t i = 1; i < ss->nfiles; i++) {
		if (ss->files[i].version == ss->files[i - 1].version) {
			set_err(err, errlen, "%s/%s and %s/%s have the same version %s; give one of them "
				"a new version above every other", dir, ss->files[i - 1].file, dir,
				ss->files[i].file, ss->files[i].vtext);
			return MTR_EXIT_INCONSISTENT;
		}
	}
	return 0;
}

/* ---- the database's record ------------------------------------------------------------- */

/* "schema"."table", quoted for SQL (caller frees). */
static char *qualified(PGconn *conn, const struct sql_source *ss)
{
	char *s = PQescapeIdentifier(conn, ss->schema, strlen(ss->schema));
	char *t = PQescapeIdentifier(conn, ss->table, strlen(ss->table));
	char *q = xasprintf("%s.%s", s ? s : "\"?\"", t ? t : "\"?\"");
	PQfreemem(s);
	PQfreemem(t);
	return q;
}

/* The source's own small queries: pg_run with the usual deadline. On failure (NULL, or an
 * error result) err says why, with what it was doing, and state (may be NULL) receives the
 * SQLSTATE ("" when no answer came). */
static PGresult *small_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
			     const char *what, char *err, size_t errlen, char state[6])
{
	struct pg_error e;
	PGresult *res = pg_run(conn, sql, nparams, params, PG_QUERY_MS, -1, &e);
	ExecStatusType st = PQresultStatus(res);
	if (!res || (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)) {
		set_err(err, errlen, "%s: %s", what, e.msg);
		if (state)
			snprintf(state, 6, "%s", e.sqlstate);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* The catalog questions of the quiet plan: is the history table there, and (only when it is
 * not) how many tables the schema has. Parameters: $s the schema, $t the table. */
#define SQL_HISTORY_REGCLASS                                                                      \
	"pg_catalog.to_regclass(pg_catalog.quote_ident($%d) OPERATOR(pg_catalog.||) '.' "        \
	"OPERATOR(pg_catalog.||) pg_catalog.quote_ident($%d))"
#define SQL_SCHEMA_TABLES                                                                         \
	"(SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "   \
	"ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE n.nspname OPERATOR(pg_catalog.=) $%d " \
	"AND c.relkind IN ('r', 'p') AND c.relname OPERATOR(pg_catalog.<>) 'mtr_failure_state')"

/* The two columns "is the history there" and "the schema's tables, when it is not", with the
 * parameter numbers of the schema and the table (caller frees). */
static char *history_there(int s, int t)
{
	return xasprintf(SQL_HISTORY_REGCLASS " IS NOT NULL", s, t);
}

static char *schema_tables(int s, int t)
{
	return xasprintf("CASE WHEN " SQL_HISTORY_REGCLASS " IS NULL THEN " SQL_SCHEMA_TABLES " END", s, t, s);
}

static void sql_look(void *self, struct look *l)
{
	struct sql_source *ss = self;
	/* Only "is it there": counting the schema's tables (needed only when it is not) would
	 * cost every start the planning of a join. */
	ss->look_col = look_table(l, ss->schema, ss->table);
}

/* Whether the history table is there, and when it is not the schema's tables: "there" from the
 * first look when it said so (a quiet plan), else both asked now. False on a database error. */
static bool history_presence(PGconn *conn, struct sql_source *ss, const struct look *look,
			     long *tables_in_schema, char *err, size_t errlen)
{
	*tables_in_schema = 0;
	if (look_true(look, ss->look_col)) { /* the usual start: the first look saw it */
		ss->history_exists = true;
		return true;
	}
	const char *params[2] = {ss->schema, ss->table};
	char *there = history_there(1, 2), *tables = schema_tables(1, 2);
	char *sql = xasprintf("SELECT %s, %s", there, tables);
	PGresult *res = small_query(conn, sql, 2, params, "reading the catalog", err, errlen, ss->plan_state);
	free(sql);
	free(there);
	free(tables);
	if (!res)
		return false;
	ss->history_exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	*tables_in_schema = PQgetisnull(res, 0, 1) ? 0 : atol(PQgetvalue(res, 0, 1));
	PQclear(res);
	return true;
}

static int by_applied_version(const void *a, const void *b)
{
	uint64_t x = ((const struct applied *)a)->version, y = ((const struct applied *)b)->version;
	return x < y ? -1 : x > y;
}

/* Reads the history table, if there is one. Returns false on a database error. */
static bool read_history(PGconn *conn, struct sql_source *ss, const struct look *look,
			 long *tables_in_schema, char *err, size_t errlen)
{
	if (!history_presence(conn, ss, look, tables_in_schema, err, errlen))
		return false;
	if (!ss->history_exists)
		return true;
	char *q = qualified(conn, ss);
	/* Sorted here, not by the server: planning an ORDER BY costs a fresh session more than
	 * sorting a few hundred rows does. */
	char *sql = xasprintf("SELECT h.version::text, h.name, h.checksum, h.success FROM %s h", q);
	free(q);
	PGresult *res = small_query(conn, sql, 0, NULL, "reading the history table", err, errlen, ss->plan_state);
	free(sql);
	if (!res) {
		PQclear(res);
		return false;
	}
	int n = PQntuples(res);
	ss->applied = xcalloc((size_t)n + 1, sizeof *ss->applied);
	for (int i = 0; i < n; i++) {
		struct applied *a = &ss->applied[ss->napplied++];
		snprintf(a->vtext, sizeof a->vtext, "%s", PQgetvalue(res, i, 0));
		a->version = strtoull(a->vtext, NULL, 10);
		a->name = xstrdup(PQgetvalue(res, i, 1));
		snprintf(a->checksum, sizeof a->checksum, "%s", PQgetvalue(res, i, 2));
		a->success = strcmp(PQgetvalue(res, i, 3), "t") == 0;
	}
	qsort(ss->applied, ss->napplied, sizeof *ss->applied, by_applied_version);
	PQclear(res);
	return true;
}

/* ---- plan and check ---------------------------------------------------------------------- */

/* Both lists are sorted by version: binary search keeps a plan of thousands linear-ish. */
static const struct sql_file *find_file(const struct sql_source *ss, uint64_t v)
{
	size_t lo = 0, hi = ss->nfiles;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ss->files[mid].version == v)
			return &ss->files[mid];
		if (ss->files[mid].version < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const struct applied *find_applied(const struct sql_source *ss, uint64_t v)
{
	size_t lo = 0, hi = ss->napplied;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ss->applied[mid].version == v)
			return &ss->applied[mid];
		if (ss->applied[mid].version < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Each history row against the files: failed rows, missing files, changed checksums.
 * Returns the newest applied version in *max (false when nothing is applied). */
static bool check_rows(struct sql_source *ss, const char *hist, struct problems *pr, uint64_t *max)
{
	const char *dir = ss->cfg->sql_dir;
	bool any_applied = false;
	*max = 0;
	for (size_t i = 0; i < ss->napplied; i++) {
		const struct applied *a = &ss->applied[i];
		if (!a->success) {
			if (ss->has_repair && ss->repair == a->version) {
				ss->do_repair = true;
				continue;
			}
			problems_add(pr, "failed",
				"migration %s (%s) is recorded as failed: it ran outside a transaction "
				"and did not finish, so part of it may be applied. Check what it left in "
				"the database and repair it by hand, then run once with --repair-failed %s "
				"(or DELETE FROM %s WHERE version = %s AND NOT success) to apply it again",
				a->vtext, a->name, a->vtext, hist, a->vtext);
			continue;
		}
		if (!any_applied || a->version > *max)
			*max = a->version;
		any_applied = true;
		const struct sql_file *f = find_file(ss, a->version);
		if (!f) {
			problems_add(pr, "missing",
				"applied migration %s (%s) not found locally in %s: the image is older "
				"than the database, or the file was renamed or removed. Deploy an image "
				"that has it; if it is gone for good, DELETE FROM %s WHERE version = %s",
				a->vtext, a->name, dir, hist, a->vtext);
		} else if (strcmp(f->checksum, a->checksum) != 0) {
			problems_add(pr, "checksum",
				"migration %s was changed after it was applied: %s/%s has checksum %s, "
				"the database recorded %s. Restore the file as it was and put the change "
				"in a new migration",
				a->vtext, dir, f->file, f->checksum, a->checksum);
		}
	}
	return any_applied;
}

/* --repair-failed and --baseline against what the history holds. */
static void check_repair_and_baseline(struct sql_source *ss, const char *hist, long tables,
				      struct problems *pr)
{
	if (ss->has_repair && !ss->do_repair && !ss->notes_logged)
		log_event(LOG_WARN, "plan.repair",
			  LOG_FIELDS(LF_S("version", ss->cfg->repair_failed)),
			  "--repair-failed %s: no failed record of that version; nothing to repair",
			  ss->cfg->repair_failed);
	if (!ss->history_exists || ss->napplied == 0) {
		if (ss->has_baseline)
			ss->do_baseline = true;
		else if (tables > (ss->history_exists ? 1 : 0))
			problems_add(pr, "no_history",
				"the database has %ld tables in schema %s but no migration history in "
				"%s: it was set up without migrate-then-run. Record what it already has "
				"with --baseline VERSION (the last migration its schema contains); files up "
				"to VERSION are then marked applied without running",
				tables - (ss->history_exists ? 1 : 0), ss->schema, hist);
	} else if (ss->has_baseline && !ss->notes_logged) {
		log_event(LOG_WARN, "plan.baseline", LOG_FIELDS(LF_S("version", ss->cfg->baseline)),
			  "--baseline %s ignored: the history table already records migrations",
			  ss->cfg->baseline);
	}
}

/* What is pending, and whether any of it comes too late. */
static void find_pending(struct sql_source *ss, bool any_applied, uint64_t max_applied,
			 struct problems *pr)
{
	ss->pending = xcalloc(ss->nfiles + 1, sizeof *ss->pending);
	for (size_t i = 0; i < ss->nfiles; i++) {
		const struct sql_file *f = &ss->files[i];
		const struct applied *a = find_applied(ss, f->version);
		if (a && (a->success || !ss->do_repair || ss->repair != f->version))
			continue;
		if (ss->do_baseline && f->version <= ss->baseline)
			continue;
		if (any_applied && f->version < max_applied && !ss->cfg->allow_out_of_order) {
			char maxtext[24];
			snprintf(maxtext, sizeof maxtext, "%" PRIu64, max_applied);
			problems_add(pr, "out_of_order",
				"pending migration %s/%s (version %s) is older than the newest applied "
				"migration %s: it was added out of order. Give it a version above %s, or "
				"pass --allow-out-of-order if it is independent of the later ones",
				ss->cfg->sql_dir, f->file, f->vtext, maxtext, maxtext);
		}
		ss->pending[ss->npending++] = i;
	}
}

static void check_state(struct sql_source *ss, PGconn *conn, long tables, struct problems *pr)
{
	char *hist = qualified(conn, ss);
	uint64_t max_applied;
	ss->do_repair = false;
	ss->do_baseline = false;
	bool any_applied = check_rows(ss, hist, pr, &max_applied);
	check_repair_and_baseline(ss, hist, tables, pr);
	find_pending(ss, any_applied, max_applied, pr);
	free(hist);
}

static void print_report(const struct sql_source *ss, const struct problems *pr)
{
	if (ss->cfg->log_format == LOG_FORMAT_JSON) {
		cJSON *o = cJSON_CreateObject();
		cJSON *applied = cJSON_AddArrayToObject(o, "applied");
		for (size_t i = 0; i < ss->napplied; i++) {
			cJSON *a = cJSON_CreateObject();
			cJSON_AddStringToObject(a, "version", ss->applied[i].vtext);
			cJSON_AddStringToObject(a, "name", ss->applied[i].name);
			cJSON_AddBoolToObject(a, "success", ss->applied[i].success);
			cJSON_AddItemToArray(applied, a);
		}
		cJSON *pending = cJSON_AddArrayToObject(o, "pending");
		for (size_t i = 0; i < ss->npending; i++) {
			const struct sql_file *f = &ss->files[ss->pending[i]];
			cJSON *p = cJSON_CreateObject();
			cJSON_AddStringToObject(p, "version", f->vtext);
			char *file = sqlr_text_name(f->file); /* valid JSON text whatever the name */
			cJSON_AddStringToObject(p, "file", file);
			free(file);
			cJSON_AddBoolToObject(p, "no_transaction", f->no_tx);
			cJSON_AddItemToArray(pending, p);
		}
		cJSON *probs = cJSON_AddArrayToObject(o, "problems");
		for (size_t i = 0; i < pr->n; i++)
			cJSON_AddItemToArray(probs, cJSON_CreateString(pr->items[i].msg));
		cJSON_AddBoolToObject(o, "consistent", pr->n == 0);
		char *text = cJSON_PrintUnformatted(o);
		if (text)
			printf("%s\n", text);
		cJSON_free(text);
		cJSON_Delete(o);
		return;
	}
	printf("history: %s.%s (%s)\n", ss->schema, ss->table,
	       ss->history_exists ? "present" : "not created yet");
	for (size_t i = 0; i < ss->napplied; i++)
		printf("applied  %-20s %s%s\n", ss->applied[i].vtext, ss->applied[i].name,
		       ss->applied[i].success ? "" : "  [FAILED]");
	for (size_t i = 0; i < ss->npending; i++)
		printf("pending  %-20s %s%s\n", ss->files[ss->pending[i]].vtext,
		       ss->files[ss->pending[i]].file,
		       ss->files[ss->pending[i]].no_tx ? "  [no transaction]" : "");
	for (size_t i = 0; i < pr->n; i++)
		printf("problem: %s\n", pr->items[i].msg);
	printf("%s: %zu applied, %zu pending, %zu problem%s\n", pr->n ? "INCONSISTENT" : "consistent",
	       ss->napplied, ss->npending, pr->n, pr->n == 1 ? "" : "s");
}

/* The history could not be read. No answer, or a transient SQLSTATE, may pass (75); any
 * other error, such as 42501 (permission denied), is for a person to fix (65), and a
 * restart loop must not hammer the database with it. Logged once: by the locked plan, not by
 * the quiet look before the lock. */
static int history_unreadable(const struct sql_source *ss, PGconn *conn, const char *err, bool quiet)
{
	bool transient = pg_sqlstate_is_transient(ss->plan_state);
	int code = transient ? MTR_EXIT_TEMPFAIL : MTR_EXIT_INCONSISTENT;
	if (quiet)
		return code;
	bool denied = strcmp(ss->plan_state, "42501") == 0;
	log_event(LOG_ERROR, "plan.failed",
		  LOG_FIELDS(LF_S("sqlstate", ss->plan_state[0] ? ss->plan_state : NULL),
			     LF_B("transient", transient), LF_I("exit_code", code)),
		  "%s%s%s%s%s", err, denied ? "; grant the role " : "", denied ? PQuser(conn) : "",
		  denied ? " USAGE on the schema and SELECT, INSERT, UPDATE on the history table, or "
			   "point --history-table at a schema it owns" : "",
		  transient || denied ? "" : " (not retried: it would fail the same way)");
	return code;
}

/* The image's files were refused (err): logged, and final, since no lock can change them. */
static int refuse_files(const struct source_ctx *ctx, int code, const char *err)
{
	ctx->info->files_refused = true;
	log_event(LOG_ERROR, "check.failed", LOG_FIELDS(LF_S("problem", "files"), LF_I("exit_code", code)),
		  "%s", err);
	return code;
}

/* A pending transactional file that starts or ends a transaction itself, found before anything
 * runs: a COMMIT inside it would commit its first part for good. Only pending files are read
 * whole for this, one at a time, each freed at once: a start at head reads none, and an applied
 * file is never sent again. One that cannot be read is left to the apply, which reads it again
 * and says why. True with err when one is found. */
static bool control_in_pending(const struct sql_source *ss, char *err, size_t errlen)
{
	bool found = false;
	struct sqlr_hash h;
	sqlr_hash_init(&h);
	for (size_t i = 0; i < ss->npending && !found; i++) {
		const struct sql_file *f = &ss->files[ss->pending[i]];
		if (f->no_tx)
			continue;
		char *path = xasprintf("%s/%s", ss->cfg->sql_dir, f->file);
		size_t len = 0;
		char *sql = file_read(path, SQLR_MAX_BYTES, &len);
		char sum[65] = "";
		if (sql) /* the text looked at must be the one planned, and so the one applied */
			sqlr_sha256_hex(&h, sql, len, sum);
		bool changed = sql && strcmp(sum, f->checksum) != 0;
		long line = 0;
		const char *control = sql && !changed ? sqlr_transaction_control(sql, &line) : NULL;
		if (changed)
			set_err(err, errlen, "%s changed while it was being checked (SHA-256 %s, now %s); "
				"nothing was applied: start again once the files stay put", path, f->checksum,
				sum);
		else if (control)
			set_err(err, errlen, "%s:%ld: %s controls the transaction from inside the file; "
				"remove it (each file already runs in one transaction of its own, committed "
				"with its record), or mark the file '%s' to run it outside one; nothing "
				"was applied", path, line, control, DIRECTIVE);
		found = control != NULL || changed;
		free(sql);
		free(path);
	}
	sqlr_hash_free(&h);
	return found;
}

static int sql_plan(void *self, PGconn *conn, const struct source_ctx *ctx, int flags,
		    size_t *pending)
{
	struct sql_source *ss = self;
	char err[1024];
	free_files(ss);
	ss->notes_logged = flags & PLAN_REPEAT;
	int code = load_files(ss, err, sizeof err);
	if (code)
		return refuse_files(ctx, code, err);
	long tables = 0;
	bool quiet = flags & PLAN_QUIET;
	ss->plan_state[0] = '\0';
	/* The first look's answers hold before the lock only (pipeline.c clears them after). */
	if (!read_history(conn, ss, ctx->look, &tables, err, sizeof err))
		return history_unreadable(ss, conn, err, quiet);
	struct problems pr = {0};
	check_state(ss, conn, tables, &pr);
	if (control_in_pending(ss, err, sizeof err)) {
		problems_free(&pr);
		return refuse_files(ctx, MTR_EXIT_INCONSISTENT, err);
	}
	if (!quiet)
		problems_log(&pr);
	if (flags & PLAN_REPORT)
		print_report(ss, &pr);
	code = pr.n ? MTR_EXIT_INCONSISTENT : 0;
	if (pr.n && !quiet)
		log_event(LOG_ERROR, "check.refused",
			  LOG_FIELDS(LF_I("problems", pr.n), LF_I("exit_code", code)),
			  "refusing to migrate: %zu problem%s with the migrations in %s (see check.failed "
			  "above); nothing was changed",
			  pr.n, pr.n == 1 ? "" : "s", ss->cfg->sql_dir);
	else if (!pr.n && (!quiet || ss->npending == 0))
		log_event(LOG_INFO, "plan.ready",
			  LOG_FIELDS(LF_I("applied", ss->napplied), LF_I("pending", ss->npending),
				     LF_S("from", ss->napplied ? ss->applied[ss->napplied - 1].vtext : NULL),
				     LF_S("to", ss->npending ? ss->files[ss->pending[ss->npending - 1]].vtext
							     : NULL)),
			  "%zu migration%s pending", ss->npending, ss->npending == 1 ? "" : "s");
	problems_free(&pr);
	*pending = ss->npending + (ss->do_baseline || ss->do_repair);
	uint64_t h = FNV_OFFSET;
	for (size_t i = 0; i < ss->nfiles; i++)
		h = fnv1a(ss->files[i].checksum, strlen(ss->files[i].checksum), h);
	ctx->info->fingerprint = h;
	snprintf(ctx->info->from, sizeof ctx->info->from, "%s",
		 ss->napplied ? ss->applied[ss->napplied - 1].vtext : "");
	snprintf(ctx->info->to, sizeof ctx->info->to, "%s",
		 ss->npending ? ss->files[ss->pending[ss->npending - 1]].vtext : ctx->info->from);
	ctx->info->session_only[0] = '\0';
	for (size_t i = 0; i < ss->npending && !ctx->info->session_only[0]; i++)
		if (ss->files[ss->pending[i]].no_tx)
			snprintf(ctx->info->session_only, sizeof ctx->info->session_only, "%s/%s",
				 ss->cfg->sql_dir, ss->files[ss->pending[i]].file);
	return code;
}

/* ---- applying ------------------------------------------------------------------------------ */

static bool exec_simple(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	struct pg_error e;
	if (pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, &e))
		return true;
	set_err(err, errlen, "%s: %s", sql, e.msg);
	return false;
}

static char *applied_by(void)
{
	char host[256] = "unknown";
	gethostname(host, sizeof host - 1);
	return xasprintf("%s:%d", host, (int)getpid());
}

/* The history table, created when missing, and no DDL at all when it exists: PostgreSQL
 * checks CREATE privileges before it looks at IF NOT EXISTS, so a role that may only write
 * into its own schema would be refused every time. The schema is created only when it does
 * not exist either. */
static bool ensure_history(PGconn *conn, struct sql_source *ss, char *err, size_t errlen)
{
	if (ss->history_exists)
		return true; /* the plan just looked, under the lock */
	char *q = qualified(conn, ss);
	char *s = PQescapeIdentifier(conn, ss->schema, strlen(ss->schema));
	char *ns = PQescapeLiteral(conn, s ? s : "", s ? strlen(s) : 0);
	char *probe = xasprintf("SELECT pg_catalog.to_regnamespace(%s) IS NOT NULL", ns ? ns : "''");
	char has_schema[8] = "f";
	struct pg_error e;
	bool ok = pg_query_value(conn, probe, PG_QUERY_MS, -1, has_schema, sizeof has_schema, &e);
	if (!ok)
		set_err(err, errlen, "%s", e.msg);
	char *create = strcmp(has_schema, "t") == 0 ? xstrdup("")
						    : xasprintf("CREATE SCHEMA IF NOT EXISTS %s; ", s ? s : "public");
	char *sql = xasprintf(
		"BEGIN; SET LOCAL client_min_messages = warning; %sCREATE TABLE IF NOT EXISTS %s ("
		"version numeric(20,0) PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
		"applied_at timestamptz NOT NULL DEFAULT now(), duration_ms bigint NOT NULL DEFAULT 0, "
		"applied_by text NOT NULL, success boolean NOT NULL); COMMIT",
		create, q);
	ok = ok && pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, &e);
	if (!ok && !*err)
		set_err(err, errlen, "%s", e.msg);
	snprintf(ss->bookkeeping_state, sizeof ss->bookkeeping_state, "%s", ok ? "" : e.sqlstate);
	if (!ok && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE &&
	    !pg_command(conn, "ROLLBACK", 0, NULL, PG_QUERY_MS, -1, &e)) {
		/* the caller fails the run; the connection is closed with it */
	}
	PQfreemem(s);
	PQfreemem(ns);
	free(probe);
	free(create);
	free(sql);
	free(q);
	return ok;
}

/* The statement that records f in the history table (caller frees); an existing
 * success=false row is turned into this one. duration: a SQL expression in milliseconds. */
static char *record_sql(PGconn *conn, const struct sql_source *ss, const struct sql_file *f,
			const char *duration, bool success, const char *by)
{
	char *q = qualified(conn, ss);
	char *name = PQescapeLiteral(conn, f->name, strlen(f->name));
	char *who = PQescapeLiteral(conn, by, strlen(by));
	char *sql = xasprintf(
		"INSERT INTO %s (version, name, checksum, duration_ms, applied_by, success) "
		"VALUES (%s, %s, '%s', %s, %s, %s) "
		"ON CONFLICT (version) DO UPDATE SET success = EXCLUDED.success, "
		"duration_ms = EXCLUDED.duration_ms, applied_at = now(), applied_by = EXCLUDED.applied_by",
		q, f->vtext, name ? name : "''", f->checksum, duration, who ? who : "''",
		success ? "true" : "false");
	PQfreemem(name);
	PQfreemem(who);
	free(q);
	return sql;
}

static bool record(PGconn *conn, const struct sql_source *ss, const struct sql_file *f,
		   bool success, const char *by, char *err, size_t errlen)
{
	char *sql = record_sql(conn, ss, f, "0", success, by);
	struct pg_error e;
	bool ok = pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, &e);
	if (!ok)
		set_err(err, errlen, "recording the migration in the history table: %s", e.msg);
	free(sql);
	return ok;
}

static bool forget_failed(PGconn *conn, struct sql_source *ss, char *err, size_t errlen)
{
	char *q = qualified(conn, ss);
	char *sql = xasprintf("DELETE FROM %s WHERE version = %s AND NOT success", q,
			      ss->cfg->repair_failed);
	bool ok = exec_simple(conn, sql, err, errlen);
	free(sql);
	free(q);
	if (ok)
		log_event(LOG_INFO, "migrate.repair", LOG_FIELDS(LF_S("version", ss->cfg->repair_failed)),
			  "forgot the failed record of %s; it is applied again now", ss->cfg->repair_failed);
	return ok;
}

static bool record_baseline(PGconn *conn, struct sql_source *ss, const char *by, char *err,
			    size_t errlen)
{
	size_t n = 0;
	if (!exec_simple(conn, "BEGIN", err, errlen))
		return false;
	char *tag = xasprintf("baseline by %s", by);
	for (size_t i = 0; i < ss->nfiles && ss->files[i].version <= ss->baseline; i++, n++) {
		if (!record(conn, ss, &ss->files[i], true, tag, err, errlen)) {
			char ignored[8];
			exec_simple(conn, "ROLLBACK", ignored, 0);
			free(tag);
			return false;
		}
	}
	free(tag);
	if (!exec_simple(conn, "COMMIT", err, errlen))
		return false;
	log_event(LOG_INFO, "migrate.baseline",
		  LOG_FIELDS(LF_S("version", ss->cfg->baseline), LF_I("recorded", n)),
		  "recorded %zu migration%s up to %s as applied without running them", n,
		  n == 1 ? "" : "s", ss->cfg->baseline);
	return true;
}

static bool write_bookkeeping(PGconn *conn, struct sql_source *ss, const char *by, char *err,
			      size_t errlen)
{
	return ensure_history(conn, ss, err, errlen) &&
	       (!ss->do_repair || forget_failed(conn, ss, err, errlen)) &&
	       (!ss->do_baseline || record_baseline(conn, ss, by, err, errlen));
}

/* Applies f through the shared runner, recorded in our history table; a transactional file
 * commits only while the migration lock is still ours (the fence before its record). */
static bool apply_file(PGconn *conn, const struct sql_source *ss, const struct sql_file *f,
		       const char *by, const struct source_ctx *ctx, const struct sqlr_opts *o,
		       struct migrate_outcome *out)
{
	char *rec = record_sql(conn, ss, f,
			       "(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.now()) "
			       "* 1000)::bigint",
			       true, by);
	char *fence = lock_fence_sql(ctx->lock);
	char *in_tx = fence ? xasprintf("%s; %s", fence, rec) : rec;
	if (fence) {
		free(rec);
		free(fence);
	}
	char *before = record_sql(conn, ss, f, "0", false, by);
	char *after = record_sql(conn, ss, f, "$1::bigint", true, by);
	struct sqlr_step step = {
		.dir = ss->cfg->sql_dir,
		.file = f->file,
		.version = f->vtext,
		.checksum = f->checksum,
		.no_tx = f->no_tx,
		.record_sql = in_tx,
		.before_sql = before,
		.after_sql = after,
		.fence_state = LOCK_FENCE_STATE,
		.no_tx_failed = "it ran outside a transaction and is recorded as failed: check what it "
				"changed, repair, then use --repair-failed",
		.no_tx_marker = DIRECTIVE,
	};
	bool ok = sqlr_apply(conn, &step, o, out);
	free(in_tx);
	free(before);
	free(after);
	return ok;
}

/* The history table could not be written before anything was applied. */
static void bookkeeping_failed(PGconn *conn, const struct sql_source *ss, const char *err,
			       struct migrate_outcome *out)
{
	if (PQstatus(conn) != CONNECTION_OK) {
		out->result = MIGRATE_LOST;
		snprintf(out->how, sizeof out->how, "the database connection was lost");
		return;
	}
	bool denied = strcmp(ss->bookkeeping_state, "42501") == 0;
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("error", err), LF_S("sqlstate", ss->bookkeeping_state[0] ? ss->bookkeeping_state : NULL),
			     LF_I("exit_code", MTR_EXIT_MIGRATION)),
		  "cannot write the history table %s.%s: %s%s%s%s; nothing was migrated", ss->schema,
		  ss->table, err, denied ? "; grant the role CREATE on schema " : "",
		  denied ? ss->schema : "",
		  denied ? " (or create the schema for it: CREATE SCHEMA ... AUTHORIZATION role), or "
			   "point --history-table at a schema where it may create tables" : "");
	out->result = MIGRATE_FAILED;
	out->code = MTR_EXIT_MIGRATION;
	snprintf(out->sqlstate, sizeof out->sqlstate, "%s", ss->bookkeeping_state);
}

/* What sql_migrate's steps need besides the step's number. */
struct sql_run {
	const struct sql_source *ss;
	const char *by;
	const struct source_ctx *ctx;
};

static bool apply_pending_file(void *self, PGconn *conn, size_t i, const struct sqlr_opts *o,
			       struct migrate_outcome *out)
{
	const struct sql_run *run = self;
	const struct sql_source *ss = run->ss;
	return apply_file(conn, ss, &ss->files[ss->pending[i]], run->by, run->ctx, o, out);
}

static void sql_migrate(void *self, PGconn *conn, const struct source_ctx *ctx,
			struct migrate_outcome *out)
{
	struct sql_source *ss = self;
	memset(out, 0, sizeof *out);
	char err[1024] = "";
	char *by = applied_by();
	int64_t start = now_ms();
	bool ok = write_bookkeeping(conn, ss, by, err, sizeof err);
	if (!ok)
		bookkeeping_failed(conn, ss, err, out);
	struct sql_run run = {ss, by, ctx};
	ok = ok && sqlr_apply_pending(conn, ctx, ss->npending, apply_pending_file, &run, out);
	if (ok) {
		log_event(LOG_INFO, "migrate.done",
			  LOG_FIELDS(LF_I("applied", ss->npending), LF_I("duration_ms", now_ms() - start)),
			  "%zu migration%s applied", ss->npending, ss->npending == 1 ? "" : "s");
		out->result = MIGRATE_OK;
	}
	free(by);
}

static void sql_destroy(void *self)
{
	struct sql_source *ss = self;
	free_files(ss);
	free(ss->schema);
	free(ss->table);
	free(ss);
}

bool source_sql_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	const char *h = cfg->history_table;
	const char *dot = strchr(h, '.');
	if (!dot || dot == h || !dot[1] || strchr(dot + 1, '.')) {
		set_err(err, errlen, "--history-table: expected SCHEMA.TABLE, got '%s'", h);
		return false;
	}
	struct sql_source *ss = xcalloc(1, sizeof *ss);
	ss->cfg = cfg;
	ss->schema = xstrndup(h, (size_t)(dot - h));
	ss->table = xstrdup(dot + 1);
	if (cfg->baseline) {
		ss->has_baseline = parse_version(cfg->baseline, &ss->baseline);
		if (!ss->has_baseline) {
			set_err(err, errlen, "--baseline: expected a version (digits), got '%s'", cfg->baseline);
			sql_destroy(ss);
			return false;
		}
	}
	if (cfg->repair_failed) {
		ss->has_repair = parse_version(cfg->repair_failed, &ss->repair);
		if (!ss->has_repair) {
			set_err(err, errlen, "--repair-failed: expected a version (digits), got '%s'",
				cfg->repair_failed);
			sql_destroy(ss);
			return false;
		}
	}
	src->kind = "sql";
	src->describe = cfg->sql_dir;
	src->self = ss;
	src->look = sql_look;
	src->plan = sql_plan;
	src->migrate = sql_migrate;
	src->destroy = sql_destroy;
	return true;
}
