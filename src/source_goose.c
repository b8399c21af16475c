/* goose, read and applied natively as goose v3 does (pressly/goose: migration.go
 * NumericComponent, internal/sqlparser/parser.go extractAnnotation, internal/dialects/
 * postgres.go CreateTable and InsertVersion, provider_run.go tryEnsureVersionTable). */
#include "mtr/sql_runner.h"
#include "mtr/tool_native.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* NumericComponent: "<version>_<name>.sql", version > 0. Go files are goose's too. */
static bool goose_file(const char *f, long long *v, bool *go)
{
	size_t len = strlen(f), digits = strspn(f, "0123456789");
	*go = len > 3 && strcmp(f + len - 3, ".go") == 0;
	if (!*go && !(len > 4 && strcmp(f + len - 4, ".sql") == 0))
		return false;
	if (digits == 0 || f[digits] != '_')
		return false;
	errno = 0;
	*v = strtoll(f, NULL, 10);
	return errno == 0 && *v > 0;
}

/* The annotation of a line "-- +goose X" (extractAnnotation: no leading white space, matched
 * case-insensitively), "" for none. */
static const char *annotation(const char *line, size_t len, char *buf, size_t buflen)
{
	if (len < 2 || strncmp(line, "--", 2) != 0 || !memmem(line, len, "+goose", 6))
		return "";
	const char *p = (const char *)memmem(line, len, "+goose", 6) + 6;
	size_t rest = len - (size_t)(p - line);
	while (rest && isspace((unsigned char)*p))
		p++, rest--;
	while (rest && isspace((unsigned char)p[rest - 1]))
		rest--;
	snprintf(buf, buflen, "%.*s", (int)rest, p);
	return buf;
}

/* The up section and its markers; false with goose's own words for what it refuses. */
static bool parse(struct native *n, const char *file, const char *text, const char *version,
		  char *err, size_t errlen)
{
	const char *up = NULL, *down = NULL;
	bool no_tx = false, envsub = false;
	char buf[64];
	for (const char *line = text; *line;) {
		size_t len = strcspn(line, "\n");
		const char *a = annotation(line, len, buf, sizeof buf);
		if (strcasecmp(a, "Up") == 0 && !up)
			up = line + len;
		else if (strcasecmp(a, "Down") == 0 && up && !down)
			down = line;
		no_tx |= strcasecmp(a, "NO TRANSACTION") == 0;
		envsub |= strcasecmp(a, "ENVSUB ON") == 0;
		line += len + (line[len] == '\n');
	}
	const char *why = !up ? "failed to parse migration: must start with '-- +goose Up' annotation"
		: envsub ? "uses '-- +goose ENVSUB ON' (environment substitution): apply it with the goose "
			   "CLI (--apply cli)"
			 : NULL;
	if (why) {
		set_err(err, errlen, "%s/%s: %s", n->dir, file, why);
		return false;
	}
	size_t len = down ? (size_t)(down - up) : strlen(up);
	native_add(n, version, file, file, up, len)->no_tx = no_tx;
	return true;
}

static int by_version(const void *a, const void *b)
{
	long long x = strtoll(((const struct native_mig *)a)->version, NULL, 10);
	long long y = strtoll(((const struct native_mig *)b)->version, NULL, 10);
	return x < y ? -1 : x > y;
}

static bool goose_scan(struct native *n, int dirfd, const char *dir, char *err, size_t errlen)
{
	size_t count = 0;
	char **names = native_list(dirfd, false, &count);
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		long long v;
		bool go;
		char vtext[24], *text = NULL;
		size_t len = 0;
		if (!goose_file(names[i], &v, &go))
			continue;
		if (go) {
			set_err(err, errlen, "%s/%s: a Go migration, which only the goose binary built with "
				"it can run: apply with that binary (--apply cli)", dir, names[i]);
			ok = false;
			break;
		}
		snprintf(vtext, sizeof vtext, "%lld", v);
		enum sqlr_load l = sqlr_load(dirfd, dir, names[i], &text, &len, err, errlen);
		if (l == SQLR_LOADED)
			ok = parse(n, names[i], text, vtext, err, errlen);
		ok = ok && l != SQLR_BAD;
		free(text);
	}
	native_free_list(names, count);
	if (ok && n->nmigs)
		qsort(n->migs, n->nmigs, sizeof *n->migs, by_version);
	return ok;
}

/* ListMigrations (ORDER BY id DESC): a version's latest row says whether it is applied;
 * version 0 is the row goose writes when it creates the table. */
static bool goose_state(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen)
{
	const struct config *cfg = n->cfg;
	const char *table = cfg->migrate_history_table.n ? cfg->migrate_history_table.v[0] : "goose_db_version";
	if (!native_resolve_table(n, conn, table, err, errlen))
		return false;
	if (n->table_exists) {
		char *sql = xasprintf("SELECT DISTINCT ON (version_id) version_id, is_applied FROM %s "
				      "WHERE version_id <> 0 ORDER BY version_id, id DESC", n->table);
		PGresult *res = native_query(conn, sql, err, errlen);
		free(sql);
		if (!res)
			return false;
		for (int i = 0; i < PQntuples(res); i++)
			if (PQgetvalue(res, i, 1)[0] == 't')
				native_add_row(n, PQgetvalue(res, i, 0), NULL);
		PQclear(res);
	}
	native_match_rows(n, pr, "restore the file, or, if it was rolled back by hand, record that "
				 "(goose down-to, or delete its rows from goose_db_version)", NULL);
	return true;
}

/* tryEnsureVersionTable: the table and its version-0 row, in one transaction. */
static bool goose_ensure(struct native *n, PGconn *conn, struct pg_error *err)
{
	if (n->table_exists)
		return true;
	char *sql = xasprintf("BEGIN; CREATE TABLE %s (\n"
			      "\t\tid integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,\n"
			      "\t\tversion_id bigint NOT NULL,\n"
			      "\t\tis_applied boolean NOT NULL,\n"
			      "\t\ttstamp timestamp NOT NULL DEFAULT now()\n"
			      "\t); INSERT INTO %s (version_id, is_applied) VALUES (0, true); COMMIT",
			      n->table, n->table);
	return native_create_table(n, conn, sql, err);
}

/* InsertVersion (version, true): in the migration's transaction, or after it ran. */
static void goose_record(struct native *n, PGconn *conn, const struct native_mig *m, char **record,
			 char **before, char **after)
{
	(void)conn;
	(void)before;
	if (m->no_tx)
		*after = xasprintf("INSERT INTO %s (version_id, is_applied) SELECT %s, true WHERE "
				   "$1::bigint IS NOT NULL", n->table, m->version);
	else
		*record = xasprintf("INSERT INTO %s (version_id, is_applied) VALUES (%s, true)", n->table,
				    m->version);
}

const struct native_ops native_goose = {
	.scan = goose_scan,
	.state = goose_state,
	.ensure = goose_ensure,
	.record = goose_record,
	.no_tx_marker = "-- +goose NO TRANSACTION",
};
