/* Flyway's SQL migrations, read and applied natively as Flyway does (flyway/flyway: flyway-core
 * resolver/ChecksumCalculator.java calculateChecksumForResource, resolver/MigrationInfoHelper.java
 * extractVersionAndDescription, schemahistory/JdbcTableSchemaHistory.java
 * doAddAppliedMigration, flyway-database-postgresql PostgreSQLDatabase.java getRawCreateScript). */
#include "mtr/sql_runner.h"
#include "mtr/tool_native.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FLYWAY_DEPTH 8

/* Compares two versions as MigrationVersion does: dot-separated numbers, trailing zeros equal. */
static int version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		while (*a == '0') /* leading zeros; a part of only zeros is a missing part */
			a++;
		while (*b == '0')
			b++;
		size_t la = strspn(a, "0123456789"), lb = strspn(b, "0123456789");
		if (la != lb)
			return la < lb ? -1 : 1;
		int c = strncmp(a, b, la);
		if (c)
			return c;
		a += la + (a[la] == '.');
		b += lb + (b[lb] == '.');
	}
	return 0;
}

/* V<version>__<description>.sql or R__<description>.sql; the version with '_' as '.', the
 * description with '_' as ' '. */
static bool flyway_name(const char *base, char **version, char **desc, bool *repeatable)
{
	size_t len = strlen(base);
	const char *sep = strstr(base, "__");
	if ((base[0] != 'V' && base[0] != 'R') || !sep || len < 4 || strcmp(base + len - 4, ".sql") != 0)
		return false;
	*repeatable = base[0] == 'R';
	size_t vlen = (size_t)(sep - base - 1);
	if (*repeatable != (vlen == 0))
		return false;
	*version = *repeatable ? NULL : xstrndup(base + 1, vlen);
	for (char *p = *version; p && *p; p++)
		if (*p == '_')
			*p = '.';
	if (*version && strspn(*version, "0123456789.") != strlen(*version)) {
		free(*version);
		return false;
	}
	*desc = xstrndup(sep + 2, (size_t)(base + len - 4 - sep - 2));
	for (char *p = *desc; *p; p++)
		if (*p == '_')
			*p = ' ';
	return true;
}

/* Statements PostgreSQL refuses inside a transaction: Flyway runs such a script outside one. */
static bool non_transactional(const char *sql)
{
	return strcasestr(sql, "CONCURRENTLY") || strcasestr(sql, "VACUUM") ||
	       strcasestr(sql, "ALTER SYSTEM") || strcasestr(sql, "CREATE DATABASE");
}

static bool add_file(struct native *n, int dirfd, const char *dir, const char *rel, const char *base,
		     char *err, size_t errlen)
{
	char *version = NULL, *desc = NULL, *text = NULL;
	bool repeatable;
	size_t len = 0;
	if (!flyway_name(base, &version, &desc, &repeatable))
		return true;
	enum sqlr_load l = sqlr_load(dirfd, dir, rel, &text, &len, err, errlen);
	bool ok = l != SQLR_BAD;
	if (l == SQLR_LOADED && n->native_apply && strstr(text, "${")) {
		set_err(err, errlen, "%s/%s: uses Flyway placeholders (${...}), which only Flyway "
			"replaces: apply with the Flyway CLI (--apply cli)", dir, rel);
		ok = false;
	} else if (l == SQLR_LOADED) {
		size_t bom = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* Flyway drops it */
		struct native_mig *m = native_add(n, version, desc, rel, text + bom, len - bom);
		m->no_tx = non_transactional(text);
		m->checksum = xasprintf("%d", (int)native_flyway_checksum(text, len));
	}
	free(version);
	free(desc);
	free(text);
	return ok;
}

/* Flyway scans its locations recursively; script is the path below the location. */
static bool walk(struct native *n, int rootfd, const char *dir, const char *rel, int depth,
		 char *err, size_t errlen)
{
	int fd = *rel ? openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : dup(rootfd);
	if (fd < 0)
		return true;
	bool ok = true;
	size_t nf = 0, nd = 0;
	char **files = native_list(fd, false, &nf), **dirs = native_list(fd, true, &nd);
	for (size_t i = 0; i < nf && ok; i++) {
		char *path = *rel ? xasprintf("%s/%s", rel, files[i]) : xstrdup(files[i]);
		ok = add_file(n, rootfd, dir, path, files[i], err, errlen);
		free(path);
	}
	for (size_t i = 0; i < nd && ok && depth < FLYWAY_DEPTH; i++) {
		char *path = *rel ? xasprintf("%s/%s", rel, dirs[i]) : xstrdup(dirs[i]);
		ok = walk(n, rootfd, dir, path, depth + 1, err, errlen);
		free(path);
	}
	native_free_list(files, nf);
	native_free_list(dirs, nd);
	close(fd);
	return ok;
}

/* Versioned by version, then repeatables by description. */
static int flyway_order(const void *pa, const void *pb)
{
	const struct native_mig *a = pa, *b = pb;
	if (!a->version != !b->version)
		return a->version ? -1 : 1;
	return a->version ? version_cmp(a->version, b->version) : strcmp(a->name, b->name);
}

static bool flyway_scan(struct native *n, int dirfd, const char *dir, char *err, size_t errlen)
{
	if (!walk(n, dirfd, dir, "", 0, err, errlen))
		return false;
	for (size_t i = 0; i + 1 < n->nmigs; i++)
		for (size_t k = i + 1; k < n->nmigs; k++)
			if (n->migs[i].version && n->migs[k].version &&
			    version_cmp(n->migs[i].version, n->migs[k].version) == 0) {
				set_err(err, errlen, "%s: found more than one migration with version %s (%s, "
					"%s): Flyway refuses this too", dir, n->migs[i].version,
					n->migs[i].file, n->migs[k].file);
				return false;
			}
	if (n->nmigs)
		qsort(n->migs, n->nmigs, sizeof *n->migs, flyway_order);
	return true;
}

static struct native_mig *versioned(struct native *n, const char *version)
{
	for (size_t i = 0; i < n->nmigs; i++)
		if (n->migs[i].version && version_cmp(n->migs[i].version, version) == 0)
			return &n->migs[i];
	return NULL;
}

/* One row of flyway_schema_history: failed, baseline, versioned or repeatable. */
static void flyway_row(struct native *n, PGresult *res, int i, struct problems *pr)
{
	const char *rank = PQgetvalue(res, i, 0), *type = PQgetvalue(res, i, 3);
	const char *script = PQgetvalue(res, i, 4), *sum = PQgetvalue(res, i, 5);
	const char *version = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
	bool success = PQgetvalue(res, i, 6)[0] == 't';
	if (!success) {
		problems_add(pr, "failed",
			     "%s records a failed migration: %s %s (installed_rank %s), which ran outside "
			     "a transaction and may be half-applied; Flyway refuses to migrate until it is "
			     "repaired: undo or finish what it did by hand, then run `flyway repair` (it "
			     "removes the failed row), and the next start applies it again",
			     n->table, version ? "version" : "repeatable", version ? version : script, rank);
		return;
	}
	if (strcmp(type, "BASELINE") == 0) { /* everything up to the baseline counts as applied */
		for (size_t k = 0; version && k < n->nmigs; k++)
			if (n->migs[k].version && version_cmp(n->migs[k].version, version) <= 0)
				n->migs[k].applied = true;
		return;
	}
	if (strcmp(type, "SQL") != 0 && strcmp(type, "JDBC") != 0)
		return; /* SCHEMA, DELETE and the like: Flyway's own markers */
	if (!version) { /* repeatable: applied while its last checksum is the file's */
		for (size_t k = 0; k < n->nmigs; k++)
			if (!n->migs[k].version && strcmp(n->migs[k].file, script) == 0)
				n->migs[k].applied = strcmp(n->migs[k].checksum, sum) == 0;
		return;
	}
	struct native_mig *m = versioned(n, version);
	if (!m) {
		problems_add(pr, "missing",
			     "Detected applied migration not resolved locally: %s (%s, in %s): restore the "
			     "file, or, if it was deleted on purpose, run `flyway repair` to mark it deleted",
			     version, script, n->table);
		return;
	}
	m->applied = true;
	if (*sum && strcmp(m->checksum, sum) != 0)
		problems_add(pr, "checksum",
			     "Migration checksum mismatch for migration version %s: applied to database: %s, "
			     "resolved locally: %s (%s/%s was edited after it was applied): revert the "
			     "change, or, if it is intended, run `flyway repair` to update the checksum",
			     version, sum, m->checksum, n->dir, m->file);
}

static bool flyway_state(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen)
{
	const struct config *cfg = n->cfg;
	const char *table = cfg->migrate_history_table.n ? cfg->migrate_history_table.v[0] : "flyway_schema_history";
	if (!native_resolve_table(n, conn, table, err, errlen))
		return false;
	if (!n->table_exists)
		return true;
	char *sql = xasprintf("SELECT installed_rank, version, description, type, script, "
			      "COALESCE(checksum::text, ''), success FROM %s ORDER BY installed_rank", n->table);
	PGresult *res = native_query(conn, sql, err, errlen);
	free(sql);
	if (!res)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
		flyway_row(n, res, i, pr);
	PQclear(res);
	return true;
}

/* getRawCreateScript, without a tablespace and without a baseline. */
static bool flyway_ensure(struct native *n, PGconn *conn, struct pg_error *err)
{
	if (n->table_exists)
		return true;
	const char *t = n->cfg->migrate_history_table.n ? n->cfg->migrate_history_table.v[0] : "flyway_schema_history";
	const char *name = strrchr(t, '.') ? strrchr(t, '.') + 1 : t;
	char *sql = xasprintf(
		"BEGIN; CREATE TABLE %s (\n"
		"    \"installed_rank\" INT NOT NULL,\n    \"version\" VARCHAR(50),\n"
		"    \"description\" VARCHAR(200) NOT NULL,\n    \"type\" VARCHAR(20) NOT NULL,\n"
		"    \"script\" VARCHAR(1000) NOT NULL,\n    \"checksum\" INTEGER,\n"
		"    \"installed_by\" VARCHAR(100) NOT NULL,\n"
		"    \"installed_on\" TIMESTAMP NOT NULL DEFAULT now(),\n"
		"    \"execution_time\" INTEGER NOT NULL,\n    \"success\" BOOLEAN NOT NULL\n);\n"
		"ALTER TABLE %s ADD CONSTRAINT \"%s_pk\" PRIMARY KEY (\"installed_rank\");\n"
		"CREATE INDEX \"%s_s_idx\" ON %s (\"success\"); COMMIT",
		n->table, n->table, name, name, n->table);
	return native_create_table(n, conn, sql, err);
}

/* doAddAppliedMigration: the next installed_rank, type SQL, the checksum, current_user. In a
 * transaction the execution time is the transaction's age; outside one, the row is written
 * failed first and made successful after, so that a crash leaves what `flyway repair` fixes. */
static void flyway_record(struct native *n, PGconn *conn, const struct native_mig *m, char **record,
			  char **before, char **after)
{
	char *ver = m->version ? PQescapeLiteral(conn, m->version, strlen(m->version)) : NULL;
	char *desc = PQescapeLiteral(conn, m->name, strlen(m->name));
	char *script = PQescapeLiteral(conn, m->file, strlen(m->file));
	char *row = xasprintf("INSERT INTO %s (installed_rank, version, description, type, script, "
			      "checksum, installed_by, execution_time, success) SELECT "
			      "COALESCE(MAX(installed_rank), 0) + 1, %s, %s, 'SQL', %s, %s, current_user, %s FROM %s",
			      n->table, ver ? ver : "NULL", desc ? desc : "''", script ? script : "''",
			      m->checksum, m->no_tx ? "0, false" :
			      "(EXTRACT(EPOCH FROM clock_timestamp() - now()) * 1000)::int, true", n->table);
	if (m->no_tx) {
		*before = row;
		*after = xasprintf("UPDATE %s SET success = true, execution_time = $1::int WHERE "
				   "installed_rank = (SELECT MAX(installed_rank) FROM %s)", n->table, n->table);
	} else {
		*record = row;
	}
	PQfreemem(ver);
	PQfreemem(desc);
	PQfreemem(script);
}

const struct native_ops native_flyway = {
	.scan = flyway_scan,
	.state = flyway_state,
	.ensure = flyway_ensure,
	.record = flyway_record,
	.no_tx_marker = "(Flyway runs a script outside a transaction when it holds CREATE INDEX CONCURRENTLY and the like)",
};
