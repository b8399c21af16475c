/* Native readers of other tools: the plan, the checks every tool shares, the report, and the
 * apply loop on sql_runner (or the tool's CLI); each tool's format lives in source_<tool>.c. */
#include "mtr/tool_native.h"
#include "mtr/argv.h"
#include "mtr/exitcode.h"
#include "mtr/log.h"
#include "mtr/source_cmd.h"
#include "mtr/sql_runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct native_source {
	struct native n;
	bool native_apply;
	struct source cli;     /* the tool's CLI, when it applies */
	size_t *pending;       /* indexes into n.migs */
	size_t npending;
	char *describe;        /* for pipeline.start */
};

/* ---- helpers for the tools --------------------------------------------------------------- */

struct native_mig *native_add(struct native *n, const char *version, const char *name,
			      const char *file, const char *sql, size_t sqllen)
{
	n->migs = xrealloc(n->migs, (n->nmigs + 1) * sizeof *n->migs);
	struct native_mig *m = &n->migs[n->nmigs++];
	*m = (struct native_mig){version ? xstrdup(version) : NULL, xstrdup(name ? name : ""),
				 xstrdup(file), sql ? xstrndup(sql, sqllen) : NULL, false, NULL, false};
	return m;
}

void native_add_row(struct native *n, const char *version, const char *checksum)
{
	n->rows = xrealloc(n->rows, (n->nrows + 1) * sizeof *n->rows);
	n->rows[n->nrows++] = (struct native_row){xstrdup(version ? version : ""),
						  checksum ? xstrdup(checksum) : NULL};
}

bool native_create_table(struct native *n, PGconn *conn, char *sql, struct pg_error *err)
{
	bool ok = pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, err);
	struct pg_error ignored;
	if (!ok && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE &&
	    !pg_command(conn, "ROLLBACK", 0, NULL, PG_QUERY_MS, -1, &ignored)) {
		/* the failure is reported either way */
	}
	free(sql);
	n->table_exists = ok;
	return ok;
}

void native_match_rows(struct native *n, struct problems *pr, const char *fix_missing,
		       const char *fix_checksum)
{
	for (size_t r = 0; r < n->nrows; r++) {
		struct native_mig *hit = NULL;
		for (size_t i = 0; i < n->nmigs && !hit; i++)
			if (n->migs[i].version && strcmp(n->migs[i].version, n->rows[r].version) == 0)
				hit = &n->migs[i];
		if (!hit) {
			problems_add(pr, "missing",
				     "applied migration %s is not found locally in %s (the database is newer "
				     "than this image, or the file was renamed or deleted): %s",
				     n->rows[r].version, n->dir, fix_missing);
			continue;
		}
		hit->applied = true;
		if (hit->checksum && n->rows[r].checksum && strcmp(hit->checksum, n->rows[r].checksum) != 0)
			problems_add(pr, "checksum",
				     "%s/%s was edited after it was applied (checksum %s in %s, %s now): %s",
				     n->dir, hit->file, n->rows[r].checksum, n->table, hit->checksum,
				     fix_checksum);
	}
}

PGresult *native_query(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	struct pg_error e;
	PGresult *res = pg_run(conn, sql, 0, NULL, PG_QUERY_MS, -1, &e);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	set_err(err, errlen, "%s", e.msg);
	PQclear(res);
	return NULL;
}

bool native_resolve_table(struct native *n, PGconn *conn, const char *table, char *err,
			  size_t errlen)
{
	const char *dot = strchr(table, '.');
	char *schema = dot ? xstrndup(table, (size_t)(dot - table)) : NULL;
	const char *params[2] = {schema, dot ? dot + 1 : table};
	struct pg_error e;
	PGresult *res = pg_run(conn,
			       "SELECT pg_catalog.quote_ident(s) OPERATOR(pg_catalog.||) '.' "
			       "OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2), "
			       "pg_catalog.quote_ident(s), "
			       "pg_catalog.to_regclass(pg_catalog.quote_ident(s) OPERATOR(pg_catalog.||) '.' "
			       "OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2)) IS NOT NULL "
			       "FROM COALESCE($1, pg_catalog.current_schema(), 'public') s",
			       2, params, PG_QUERY_MS, -1, &e);
	free(schema);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok) {
		free(n->table);
		n->table = xstrdup(PQgetvalue(res, 0, 0));
		free(n->schema);
		n->schema = xstrdup(PQgetvalue(res, 0, 1));
		n->table_exists = PQgetvalue(res, 0, 2)[0] == 't';
	} else {
		set_err(err, errlen, "%s", e.msg);
	}
	PQclear(res);
	return ok;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **native_list(int dirfd, bool want_dirs, size_t *n)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	char **names = NULL;
	*n = 0;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (struct dirent *e = readdir(d); e; e = readdir(d)) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dirfd, e->d_name, &st, 0) != 0 ||
		    (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)))
			continue;
		names = xrealloc(names, (*n + 1) * sizeof *names);
		names[(*n)++] = xstrdup(e->d_name);
	}
	closedir(d);
	if (*n)
		qsort(names, *n, sizeof *names, by_name);
	return names;
}

void native_free_list(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

bool native_cli_found(const char *program)
{
	const char *path = getenv("PATH");
	char *copy = xstrdup(path ? path : "/usr/local/bin:/usr/bin:/bin"), *save = NULL;
	bool found = false;
	for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *full = xasprintf("%s/%s", *d ? d : ".", program);
		found = access(full, X_OK) == 0;
		free(full);
	}
	free(copy);
	return found;
}

/* ---- the plan ---------------------------------------------------------------------------- */

void native_clear(struct native *n)
{
	for (size_t i = 0; i < n->nmigs; i++) {
		free(n->migs[i].version);
		free(n->migs[i].name);
		free(n->migs[i].file);
		free(n->migs[i].sql);
		free(n->migs[i].checksum);
	}
	for (size_t i = 0; i < n->nrows; i++) {
		free(n->rows[i].version);
		free(n->rows[i].checksum);
	}
	free(n->migs);
	free(n->rows);
	n->migs = NULL;
	n->rows = NULL;
	n->nmigs = n->nrows = 0;
}

static void free_state(struct native_source *ns)
{
	native_clear(&ns->n);
	free(ns->pending);
	ns->pending = NULL;
	ns->npending = 0;
}

/* Reads the directory relative to --migrate-cwd. */
static bool scan(struct native_source *ns, char *err, size_t errlen)
{
	struct native *n = &ns->n;
	const char *cwd = n->cfg->migrate_cwd;
	int base = cwd ? open(cwd, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : AT_FDCWD;
	int fd = base >= 0 || !cwd ? openat(base, n->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	bool ok = fd >= 0;
	if (!ok)
		set_err(err, errlen, "%s: the %s migrations directory cannot be read: %s (give it with "
			"--migrate-files DIR, relative to --migrate-cwd)", n->dir, n->def->name, strerror(errno));
	else
		ok = n->ops->scan(n, fd, n->dir, err, errlen);
	if (fd >= 0)
		close(fd);
	if (cwd && base >= 0)
		close(base);
	return ok;
}

/* Pending: every file not applied. One below the last applied is out of order. */
static void find_pending(struct native_source *ns, struct problems *pr)
{
	struct native *n = &ns->n;
	size_t last = 0;
	bool any = false;
	for (size_t i = 0; i < n->nmigs; i++)
		if (n->migs[i].applied && n->migs[i].version) {
			last = i;
			any = true;
		}
	ns->pending = xcalloc(n->nmigs + 1, sizeof *ns->pending);
	for (size_t i = 0; i < n->nmigs; i++) {
		if (n->migs[i].applied)
			continue;
		if (any && i < last && n->migs[i].version && !n->cfg->allow_out_of_order &&
		    !n->ops->unordered)
			problems_add(pr, "out_of_order",
				     "%s/%s (%s) is pending but sorts before %s, which is applied: apply it "
				     "out of order with --allow-out-of-order, or give it a later version",
				     n->dir, n->migs[i].file, n->migs[i].version, n->migs[last].version);
		ns->pending[ns->npending++] = i;
	}
}

static void print_report(const struct native_source *ns, const struct problems *pr)
{
	const struct native *n = &ns->n;
	printf("%s history: %s (%s)\n", n->def->name, n->table ? n->table : "?",
	       n->table_exists ? "present" : "not created yet");
	for (size_t i = 0; i < n->nmigs; i++)
		printf("%-8s %-20s %s\n", n->migs[i].applied ? "applied" : "pending",
		       n->migs[i].version ? n->migs[i].version : "(repeatable)", n->migs[i].file);
	for (size_t i = 0; i < pr->n; i++)
		printf("problem: %s\n", pr->items[i].msg);
	printf("%s: %zu pending, %zu problem%s\n", pr->n ? "INCONSISTENT" : "consistent", ns->npending,
	       pr->n, pr->n == 1 ? "" : "s");
}

/* Where the database is and where it goes, for the backup's name and the failure memory. */
static void set_info(const struct native_source *ns, const struct source_ctx *ctx)
{
	const struct native *n = &ns->n;
	const char *from = "", *to = NULL;
	uint64_t h = FNV_OFFSET;
	for (size_t i = 0; i < n->nmigs; i++) {
		if (n->migs[i].applied && n->migs[i].version)
			from = n->migs[i].version;
		if (n->migs[i].version)
			to = n->migs[i].version;
		h = fnv1a(n->migs[i].file, strlen(n->migs[i].file), h);
	}
	ctx->info->fingerprint = h;
	/* a file run outside a transaction needs a server session to itself (no transaction pooler) */
	ctx->info->session_only[0] = '\0';
	for (size_t i = 0; ns->native_apply && i < ns->npending && !ctx->info->session_only[0]; i++)
		if (n->migs[ns->pending[i]].no_tx)
			snprintf(ctx->info->session_only, sizeof ctx->info->session_only, "%s/%s", n->dir,
				 n->migs[ns->pending[i]].file);
	snprintf(ctx->info->from, sizeof ctx->info->from, "%s", from);
	snprintf(ctx->info->to, sizeof ctx->info->to, "%s", ns->npending && to ? to : from);
}

static void log_outcome(const struct native_source *ns, const struct problems *pr, int flags)
{
	const struct native *n = &ns->n;
	bool quiet = flags & PLAN_QUIET;
	if (!quiet)
		problems_log(pr);
	if (pr->n && !quiet)
		log_event(LOG_ERROR, "check.refused",
			  LOG_FIELDS(LF_I("problems", pr->n), LF_S("tool", n->def->name),
				     LF_I("exit_code", MTR_EXIT_INCONSISTENT)),
			  "refusing to migrate: %zu problem%s with the %s migrations in %s (see "
			  "check.failed above); nothing was changed",
			  pr->n, pr->n == 1 ? "" : "s", n->def->name, n->dir);
	else if (!pr->n && (!quiet || ns->npending == 0))
		log_event(LOG_INFO, "plan.ready",
			  LOG_FIELDS(LF_S("tool", n->def->name), LF_I("applied", n->nmigs - ns->npending),
				     LF_I("pending", ns->npending),
				     LF_S("apply", ns->native_apply ? "native" : "cli")),
			  "%zu %s migration%s pending", ns->npending, n->def->name,
			  ns->npending == 1 ? "" : "s");
}

static int native_plan(void *self, PGconn *conn, const struct source_ctx *ctx, int flags,
		       size_t *pending)
{
	struct native_source *ns = self;
	struct native *n = &ns->n;
	char err[1024];
	free_state(ns);
	*pending = 0;
	if (!scan(ns, err, sizeof err)) {
		if (flags & PLAN_QUIET) /* the locked plan says it */
			return MTR_EXIT_INCONSISTENT;
		log_event(LOG_ERROR, "check.failed",
			  LOG_FIELDS(LF_S("problem", "files"), LF_I("exit_code", MTR_EXIT_INCONSISTENT)),
			  "%s", err);
		if (flags & PLAN_REPORT)
			printf("problem: %s\nINCONSISTENT: the %s migrations cannot be read\n", err,
			       n->def->name);
		return MTR_EXIT_INCONSISTENT;
	}
	struct problems pr = {0};
	if (!n->ops->state(n, conn, &pr, err, sizeof err)) {
		problems_free(&pr);
		log_event(LOG_ERROR, "plan.failed", LOG_FIELDS(LF_I("exit_code", MTR_EXIT_TEMPFAIL)),
			  "reading the %s history: %s", n->def->name, err);
		return MTR_EXIT_TEMPFAIL;
	}
	find_pending(ns, &pr);
	log_outcome(ns, &pr, flags);
	if (flags & PLAN_REPORT)
		print_report(ns, &pr);
	int code = pr.n ? MTR_EXIT_INCONSISTENT : 0;
	problems_free(&pr);
	set_info(ns, ctx);
	*pending = ns->npending;
	return code;
}

/* ---- applying ---------------------------------------------------------------------------- */

/* One file through the shared runner; a transactional one commits only while the migration
 * lock is still ours (the fence before its record). */
static bool apply_one(struct native_source *ns, PGconn *conn, const struct source_ctx *ctx,
		      const struct sqlr_opts *o, const struct native_mig *m, struct migrate_outcome *out)
{
	struct native *n = &ns->n;
	char *record = NULL, *before = NULL, *after = NULL;
	n->ops->record(n, conn, m, &record, &before, &after);
	char *fence = record ? lock_fence_sql(ctx->lock) : NULL;
	if (fence) {
		char *fenced = xasprintf("%s; %s", fence, record);
		free(record);
		free(fence);
		record = fenced;
	}
	char *failed_fix = xasprintf("it ran outside a transaction and may be half-applied: repair "
				     "the database by hand, then record %s in %s as %s would",
				     m->file, n->table, n->def->name);
	struct sqlr_step step = {
		.dir = n->dir,
		.file = m->file,
		.version = m->version ? m->version : m->name,
		.sql = m->sql,
		.no_tx = m->no_tx,
		.record_sql = record,
		.before_sql = before,
		.after_sql = after,
		.fence_state = LOCK_FENCE_STATE,
		.no_tx_failed = failed_fix,
		.no_tx_marker = n->ops->no_tx_marker,
	};
	bool ok = sqlr_apply(conn, &step, o, out);
	free(record);
	free(before);
	free(after);
	free(failed_fix);
	return ok;
}

/* What native_migrate's steps need besides the step's number. */
struct native_run {
	struct native_source *ns;
	const struct source_ctx *ctx;
};

static bool apply_pending_one(void *self, PGconn *conn, size_t i, const struct sqlr_opts *o,
			      struct migrate_outcome *out)
{
	const struct native_run *run = self;
	return apply_one(run->ns, conn, run->ctx, o, &run->ns->n.migs[run->ns->pending[i]], out);
}

static void native_migrate(void *self, PGconn *conn, const struct source_ctx *ctx,
			   struct migrate_outcome *out)
{
	struct native_source *ns = self;
	struct native *n = &ns->n;
	memset(out, 0, sizeof *out);
	if (!ns->native_apply) {
		ns->cli.migrate(ns->cli.self, conn, ctx, out);
		return;
	}
	struct pg_error e;
	if (!n->ops->ensure(n, conn, &e)) {
		log_event(LOG_ERROR, "migrate.failed",
			  LOG_FIELDS(LF_S("sqlstate", e.sqlstate), LF_S("error", e.msg),
				     LF_I("exit_code", MTR_EXIT_MIGRATION)),
			  "creating the %s history table %s: %s", n->def->name, n->table, e.msg);
		out->result = PQstatus(conn) == CONNECTION_OK ? MIGRATE_FAILED : MIGRATE_LOST;
		out->code = MTR_EXIT_MIGRATION;
		snprintf(out->how, sizeof out->how, "the connection was lost creating %s", n->table);
		snprintf(out->message, sizeof out->message, "%.*s", (int)sizeof out->message - 1, e.msg);
		return;
	}
	int64_t start = now_ms();
	struct native_run run = {ns, ctx};
	if (!sqlr_apply_pending(conn, ctx, ns->npending, apply_pending_one, &run, out))
		return;
	log_event(LOG_INFO, "migrate.done",
		  LOG_FIELDS(LF_I("duration_ms", now_ms() - start), LF_I("applied", ns->npending)),
		  "%zu %s migration%s applied natively, recorded in %s", ns->npending, n->def->name,
		  ns->npending == 1 ? "" : "s", n->table);
	out->result = MIGRATE_OK;
}

static void native_destroy(void *self)
{
	struct native_source *ns = self;
	free_state(ns);
	if (ns->n.ops->destroy)
		ns->n.ops->destroy(&ns->n);
	if (ns->cli.destroy)
		ns->cli.destroy(ns->cli.self);
	free(ns->n.dir);
	free(ns->n.table);
	free(ns->n.schema);
	free(ns->describe);
	free(ns);
}

bool tool_native_open(const struct config *cfg, const struct tool_def *t,
		      const struct native_ops *ops, bool native_apply, char **cli_argv,
		      struct source *src, char *err, size_t errlen)
{
	struct native_source *ns = xcalloc(1, sizeof *ns);
	ns->n = (struct native){.ops = ops, .def = t, .cfg = cfg};
	ns->n.dir = xstrdup(cfg->migrate_files.n ? cfg->migrate_files.v[0] : ops->dir ? ops->dir : t->files[0]);
	ns->native_apply = ns->n.native_apply = native_apply;
	struct cmd_spec spec = {.tool = t->name, .env = t->env, .expand_argv = cfg->migrate_cmd == NULL};
	if (!source_cmd_open_spec(cfg, cli_argv, &spec, &ns->cli, err, errlen)) {
		free(ns->n.dir);
		free(ns);
		return false;
	}
	src->kind = "tool";
	ns->describe = native_apply ? xasprintf("%s: %s, applied natively", t->name, ns->n.dir)
				    : xasprintf("%s (%s read natively)", ns->cli.describe, ns->n.dir);
	src->describe = ns->describe;
	src->self = ns;
	src->plan = native_plan;
	src->migrate = native_migrate;
	src->destroy = native_destroy;
	return true;
}

/* ---- checksums --------------------------------------------------------------------------- */

uint32_t native_crc32(uint32_t crc, const void *data, size_t len)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	const unsigned char *p = data;
	crc = ~crc;
	for (size_t i = 0; i < len; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

int32_t native_flyway_checksum(const char *text, size_t len)
{
	uint32_t crc = 0;
	size_t i = 0;
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		i = 3; /* BomFilter.FilterBomFromString on the first line */
	while (i < len) {
		size_t start = i;
		while (i < len && text[i] != '\n' && text[i] != '\r')
			i++;
		crc = native_crc32(crc, text + start, i - start);
		if (i < len && text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
			i++;
		i++;
	}
	return (int32_t)crc;
}
