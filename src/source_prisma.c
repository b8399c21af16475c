/* Prisma Migrate, read and applied natively as `prisma migrate deploy` does (prisma/prisma-
 * engines: schema-engine/connectors/schema-connector/src/checksum.rs compute_checksum and
 * script_matches_checksum; sql-schema-connector/src/flavour/postgres.rs
 * create_migrations_table; sql-schema-connector/src/sql_migration_persistence.rs
 * initialize, record_migration_started_impl, record_successful_step, record_migration_finished). */
#include "mtr/sql_runner.h"
#include "mtr/strbuf.h"
#include "mtr/tool_native.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct prisma_state {
	struct sqlr_hash hash;
	long other_tables; /* in the schema, when _prisma_migrations is missing (P3005) */
};

static struct prisma_state *state_of(struct native *n)
{
	if (!n->tool) {
		struct prisma_state *st = xcalloc(1, sizeof *st);
		sqlr_hash_init(&st->hash);
		n->tool = st;
	}
	return n->tool;
}

/* Every directory holding a migration.sql, by name: the migration is named by its directory. */
static bool prisma_scan(struct native *n, int dirfd, const char *dir, char *err, size_t errlen)
{
	struct prisma_state *st = state_of(n);
	size_t count = 0;
	char **names = native_list(dirfd, true, &count);
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		char *file = xasprintf("%s/migration.sql", names[i]), *text = NULL;
		size_t len = 0;
		enum sqlr_load l = sqlr_load(dirfd, dir, file, &text, &len, err, errlen);
		if (l == SQLR_LOADED) {
			char sum[65];
			sqlr_sha256_hex(&st->hash, text, len, sum);
			native_add(n, names[i], names[i], file, text, len)->checksum = xstrdup(sum);
		} else if (l == SQLR_BAD && faccessat(dirfd, file, F_OK, 0) != 0) {
			set_err(err, errlen, "%s/%s: no migration.sql in the migration directory (Prisma "
				"P3015): add it, or remove the directory", dir, names[i]);
		}
		ok = l != SQLR_BAD;
		free(text);
		free(file);
	}
	native_free_list(names, count);
	return ok;
}

/* script_matches_checksum: the script as it is, with CRLF as LF, or LF as CRLF. */
static bool same_script(struct native *n, const struct native_mig *m, const char *checksum)
{
	struct prisma_state *st = state_of(n);
	if (strcmp(m->checksum, checksum) == 0)
		return true;
	struct strbuf lf = STRBUF_INIT, crlf = STRBUF_INIT;
	for (const char *p = m->sql; *p; p++) {
		if (!(p[0] == '\r' && p[1] == '\n'))
			sb_addc(&lf, *p);
		if (*p == '\n')
			sb_addc(&crlf, '\r');
		sb_addc(&crlf, *p);
	}
	char a[65], b[65];
	sqlr_sha256_hex(&st->hash, lf.s ? lf.s : "", lf.len, a);
	sqlr_sha256_hex(&st->hash, crlf.s ? crlf.s : "", crlf.len, b);
	sb_free(&lf);
	sb_free(&crlf);
	return strcmp(a, checksum) == 0 || strcmp(b, checksum) == 0;
}

/* A row neither finished nor rolled back: `migrate deploy` stops with P3009. */
static void failed(PGresult *res, int i, struct problems *pr)
{
	const char *name = PQgetvalue(res, i, 0), *logs = PQgetvalue(res, i, 4);
	problems_add(pr, "failed",
		     "migrate found failed migrations in the target database, new migrations will not "
		     "be applied (Prisma P3009): the `%s` migration started at %s failed%s%.300s. If it "
		     "changed nothing, or you undid what it did: run `prisma migrate resolve "
		     "--rolled-back %s`, and the next start applies it again; if you finished it by "
		     "hand: run `prisma migrate resolve --applied %s`",
		     name, PQgetvalue(res, i, 5), *logs ? "; its logs: " : "", logs, name, name);
}

static void prisma_row(struct native *n, PGresult *res, int i, struct problems *pr)
{
	const char *name = PQgetvalue(res, i, 0), *sum = PQgetvalue(res, i, 1);
	bool finished = PQgetvalue(res, i, 2)[0] == 't', rolled_back = PQgetvalue(res, i, 3)[0] == 't';
	if (rolled_back)
		return; /* acknowledged: applied again */
	if (!finished) {
		failed(res, i, pr);
		return;
	}
	struct native_mig *m = NULL;
	for (size_t k = 0; k < n->nmigs && !m; k++)
		if (strcmp(n->migs[k].version, name) == 0)
			m = &n->migs[k];
	if (!m) {
		problems_add(pr, "missing",
			     "applied migration %s is not found locally in %s (the database is newer than "
			     "this image, or the directory was renamed or deleted): restore it", name, n->dir);
		return;
	}
	m->applied = true;
	if (!same_script(n, m, sum))
		problems_add(pr, "checksum",
			     "%s/%s was edited after it was applied (checksum %s in %s, %s now): restore "
			     "it; if the edit is intended and the database already has it, record the new "
			     "checksum (UPDATE %s SET checksum = '%s' WHERE migration_name = '%s')",
			     n->dir, m->file, sum, n->table, m->checksum, n->table, m->checksum, name);
}

static long count_tables(PGconn *conn, const struct native *n, char *err, size_t errlen)
{
	char *sql = xasprintf("SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c JOIN "
			      "pg_catalog.pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind IN "
			      "('r', 'p', 'v', 'm') AND pg_catalog.quote_ident(s.nspname) = %s", "$1");
	const char *params[1] = {n->schema};
	struct pg_error e;
	PGresult *res = pg_run(conn, sql, 1, params, PG_QUERY_MS, -1, &e);
	free(sql);
	long count = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;
	if (count < 0)
		set_err(err, errlen, "%s", e.msg);
	PQclear(res);
	return count;
}

static bool prisma_state(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen)
{
	const struct config *cfg = n->cfg;
	const char *table = cfg->migrate_history_table.n ? cfg->migrate_history_table.v[0] : "_prisma_migrations";
	if (!native_resolve_table(n, conn, table, err, errlen))
		return false;
	if (!n->table_exists) { /* initialize: a schema with tables but no history is refused */
		long tables = count_tables(conn, n, err, errlen);
		if (tables < 0)
			return false;
		if (tables > 0)
			problems_add(pr, "no_history",
				     "The database schema is not empty (Prisma P3005): %ld table%s in %s but "
				     "no %s. Baseline it: for each migration the database already has, run "
				     "`prisma migrate resolve --applied NAME`", tables, tables == 1 ? "" : "s",
				     n->schema, n->table);
		return true;
	}
	char *sql = xasprintf("SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at "
			      "IS NOT NULL, COALESCE(logs, ''), started_at::text FROM %s ORDER BY started_at",
			      n->table);
	PGresult *res = native_query(conn, sql, err, errlen);
	free(sql);
	if (!res)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
		prisma_row(n, res, i, pr);
	PQclear(res);
	return true;
}

static bool prisma_ensure(struct native *n, PGconn *conn, struct pg_error *err)
{
	if (n->table_exists)
		return true;
	char *sql = xasprintf("CREATE TABLE %s (\n"
			      "    id                      VARCHAR(36) PRIMARY KEY NOT NULL,\n"
			      "    checksum                VARCHAR(64) NOT NULL,\n"
			      "    finished_at             TIMESTAMPTZ,\n"
			      "    migration_name          VARCHAR(255) NOT NULL,\n"
			      "    logs                    TEXT,\n"
			      "    rolled_back_at          TIMESTAMPTZ,\n"
			      "    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),\n"
			      "    applied_steps_count     INTEGER NOT NULL DEFAULT 0\n)",
			      n->table);
	bool ok = pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, err);
	free(sql);
	n->table_exists = ok;
	return ok;
}

/* Started, one successful step, finished: the row deploy leaves, in the script's transaction
 * (a failure leaves no row where deploy would leave a failed one). */
static void prisma_record(struct native *n, PGconn *conn, const struct native_mig *m, char **record,
			  char **before, char **after)
{
	(void)before;
	(void)after;
	char *name = PQescapeLiteral(conn, m->version, strlen(m->version));
	*record = xasprintf("INSERT INTO %s (id, checksum, started_at, finished_at, migration_name, "
			    "applied_steps_count) VALUES (pg_catalog.gen_random_uuid()::text, '%s', "
			    "pg_catalog.now(), pg_catalog.clock_timestamp(), %s, 1)",
			    n->table, m->checksum, name ? name : "''");
	PQfreemem(name);
}

static void prisma_destroy(struct native *n)
{
	struct prisma_state *st = n->tool;
	if (st)
		sqlr_hash_free(&st->hash);
	free(st);
	n->tool = NULL;
}

const struct native_ops native_prisma = {
	.scan = prisma_scan,
	.state = prisma_state,
	.ensure = prisma_ensure,
	.record = prisma_record,
	.destroy = prisma_destroy,
	.no_tx_marker = "(Prisma has no marker: each migration.sql runs in one transaction here)",
};
