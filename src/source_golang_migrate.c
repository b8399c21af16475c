/* golang-migrate, read and applied natively as migrate v4 does (golang-migrate/migrate:
 * source/parse.go Regex, migrate.go ErrDirty, database/postgres/postgres.go ensureVersionTable,
 * SetVersion and Version). */
#include "mtr/sql_runner.h"
#include "mtr/tool_native.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the history says: one row, the current version and whether it is dirty. */
struct gm_state {
	bool has_row, dirty;
	unsigned long long version;
};

/* `^([0-9]+)_(.*)\.(down|up)\.(.*)$` for the up files: the version and the name. */
static bool up_file(const char *f, unsigned long long *v, char **name)
{
	size_t digits = strspn(f, "0123456789");
	const char *up = strstr(f, ".up.");
	if (digits == 0 || f[digits] != '_' || !up || up < f + digits || !up[4])
		return false;
	errno = 0;
	*v = strtoull(f, NULL, 10);
	if (errno)
		return false;
	*name = xstrndup(f + digits + 1, (size_t)(up - f - digits - 1));
	return true;
}

static int by_version(const void *a, const void *b)
{
	unsigned long long x = strtoull(((const struct native_mig *)a)->version, NULL, 10);
	unsigned long long y = strtoull(((const struct native_mig *)b)->version, NULL, 10);
	return x < y ? -1 : x > y;
}

/* A body wrapped in BEGIN … COMMIT of its own cannot have half-applied. */
static bool self_wrapped(const char *sql)
{
	while (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '\r')
		sql++;
	return strncasecmp(sql, "BEGIN", 5) == 0 && strcasestr(sql, "COMMIT");
}

static bool gm_scan(struct native *n, int dirfd, const char *dir, char *err, size_t errlen)
{
	size_t count = 0;
	char **names = native_list(dirfd, false, &count);
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		unsigned long long v;
		char *name = NULL, *text = NULL, vtext[24];
		size_t len = 0;
		if (!up_file(names[i], &v, &name))
			continue;
		snprintf(vtext, sizeof vtext, "%llu", v);
		for (size_t k = 0; k < n->nmigs && ok; k++)
			if (strcmp(n->migs[k].version, vtext) == 0) {
				set_err(err, errlen, "%s: %s and %s have the same version %s (golang-migrate "
					"refuses duplicate migration files)", dir, n->migs[k].file, names[i], vtext);
				ok = false;
			}
		enum sqlr_load l = ok ? sqlr_load(dirfd, dir, names[i], &text, &len, err, errlen) : SQLR_BAD;
		/* a file with its own BEGIN … COMMIT runs as it is, as migrate runs it */
		if (l == SQLR_LOADED)
			native_add(n, vtext, name, names[i], text, len)->no_tx = self_wrapped(text);
		ok = ok && l != SQLR_BAD;
		free(text);
		free(name);
	}
	native_free_list(names, count);
	if (ok && n->nmigs)
		qsort(n->migs, n->nmigs, sizeof *n->migs, by_version);
	return ok;
}

/* migrate's ErrDirty, with what it means and the exact way out. */
static void dirty(struct native *n, const struct gm_state *st, struct problems *pr)
{
	const struct native_mig *m = NULL, *prev = NULL;
	for (size_t i = 0; i < n->nmigs; i++) {
		unsigned long long v = strtoull(n->migs[i].version, NULL, 10);
		if (v == st->version)
			m = &n->migs[i];
		else if (v < st->version)
			prev = &n->migs[i];
	}
	char before[600];
	if (prev)
		snprintf(before, sizeof before, "migrate -path %s -database URL force %s", n->dir, prev->version);
	else
		snprintf(before, sizeof before, "DELETE FROM %s", n->table);
	problems_add(pr, "dirty",
		     "Dirty database version %llu: %s in %s failed part-way, and golang-migrate refuses "
		     "to go on (\"Dirty database version %llu. Fix and force version.\"). %s Then: if "
		     "all of it is applied, run `migrate -path %s -database URL force %llu`; if none of "
		     "it is, run `%s` and the next start applies it again",
		     st->version, m ? m->file : "its migration", n->dir, st->version,
		     m && self_wrapped(m->sql)
			     ? "Its body is one transaction of its own: it was rolled back whole."
			     : "Its body ran outside a transaction: it may be half-applied; compare the "
			       "database with the file and finish or undo it by hand.",
		     n->dir, st->version, before);
}

static bool gm_state(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen)
{
	const struct config *cfg = n->cfg;
	struct gm_state *st = n->tool = n->tool ? n->tool : xcalloc(1, sizeof *st);
	memset(st, 0, sizeof *st);
	const char *table = cfg->migrate_history_table.n ? cfg->migrate_history_table.v[0] : "schema_migrations";
	if (!native_resolve_table(n, conn, table, err, errlen))
		return false;
	if (n->table_exists) {
		char *sql = xasprintf("SELECT version, dirty FROM %s LIMIT 1", n->table);
		PGresult *res = native_query(conn, sql, err, errlen);
		free(sql);
		if (!res)
			return false;
		st->has_row = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] != '-';
		st->version = st->has_row ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		st->dirty = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';
		PQclear(res);
	}
	bool found = !st->has_row;
	for (size_t i = 0; i < n->nmigs; i++) {
		unsigned long long v = strtoull(n->migs[i].version, NULL, 10);
		n->migs[i].applied = st->has_row && (v < st->version || (v == st->version && !st->dirty));
		found |= v == st->version;
	}
	if (st->dirty)
		dirty(n, st, pr);
	else if (!found)
		problems_add(pr, "missing",
			     "the database is at golang-migrate version %llu, which no file in %s has (the "
			     "database is newer than this image, or the file was renamed): restore the "
			     "file, or, if the database really is at an older version, `migrate force` it",
			     st->version, n->dir);
	return true;
}

static bool gm_ensure(struct native *n, PGconn *conn, struct pg_error *err)
{
	if (n->table_exists)
		return true;
	char *sql = xasprintf("CREATE TABLE IF NOT EXISTS %s (version bigint not null primary key, "
			      "dirty boolean not null)", n->table);
	bool ok = pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, err);
	free(sql);
	n->table_exists = ok;
	return ok;
}

/* SetVersion(v, false): the table holds the one row of where the database is. In one
 * transaction with the body, the dirty state migrate passes through is never seen; a
 * no-transaction body is marked dirty before, as migrate marks it. */
static void gm_record(struct native *n, PGconn *conn, const struct native_mig *m, char **record,
		      char **before, char **after)
{
	(void)conn;
	char *set = xasprintf("TRUNCATE %s; INSERT INTO %s (version, dirty) VALUES (%s, false)",
			      n->table, n->table, m->version);
	if (!m->no_tx) {
		*record = set;
		return;
	}
	free(set);
	*before = xasprintf("BEGIN; TRUNCATE %s; INSERT INTO %s (version, dirty) VALUES (%s, true); COMMIT",
			    n->table, n->table, m->version);
	*after = xasprintf("UPDATE %s SET dirty = false WHERE version = %s AND $1::bigint IS NOT NULL",
			   n->table, m->version);
}

static void gm_destroy(struct native *n)
{
	free(n->tool);
	n->tool = NULL;
}

const struct native_ops native_golang_migrate = {
	.scan = gm_scan,
	.state = gm_state,
	.ensure = gm_ensure,
	.record = gm_record,
	.destroy = gm_destroy,
	.no_tx_marker = "(golang-migrate has no marker: every file runs in one transaction here)",
};
