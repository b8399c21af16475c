/* dbmate, read and applied natively as dbmate itself does (amacneil/dbmate v2: pkg/dbmate/
 * migration.go parseMigrationContents, pkg/dbmate/db.go FindMigrations and Migrate,
 * pkg/driver/postgres/postgres.go CreateMigrationsTable and InsertMigration). */
#include "mtr/sql_runner.h"
#include "mtr/tool_native.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Go's \s: what dbmate's regular expressions count as white space. */
static bool go_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

/* Whether `-- migrate:<word>` starts at p, as `(?m)^--\s*migrate:up(\s*$|\s+\S+)` matches at
 * a line start: after the word comes the end of the text or white space. */
static bool directive_at(const char *p, const char *word)
{
	if (strncmp(p, "--", 2) != 0)
		return false;
	p += 2;
	while (go_space(*p))
		p++;
	size_t n = strlen(word);
	if (strncmp(p, "migrate:", 8) != 0 || strncmp(p + 8, word, n) != 0)
		return false;
	char next = p[8 + n];
	return next == '\0' || go_space(next);
}

/* Offsets of every line start holding the directive; the count. */
static size_t find_directives(const char *text, const char *word, size_t *first, size_t *second)
{
	size_t count = 0;
	for (const char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (!directive_at(line, word))
			continue;
		if (count == 0)
			*first = (size_t)(line - text);
		else if (count == 1)
			*second = (size_t)(line - text);
		count++;
	}
	return count;
}

/* dbmate's statementsPrecedeMigrateBlocks: a line before the up block that is neither blank
 * nor a comment. */
static bool statements_before(const char *text, size_t end)
{
	for (size_t i = 0; i < end;) {
		size_t j = i;
		while (j < end && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r' || text[j] == '\f'))
			j++;
		if (j < end && text[j] != '\n' && strncmp(text + j, "--", 2) != 0)
			return true;
		while (i < end && text[i] != '\n')
			i++;
		i++;
	}
	return false;
}

/* transaction:false among the options on the up directive's line. */
static bool no_transaction(const char *up)
{
	size_t len = strcspn(up, "\n");
	char *line = xstrndup(up, len), *save = NULL;
	bool off = false;
	char *opts = strstr(line, "migrate:up") + strlen("migrate:up");
	for (char *w = strtok_r(opts, " \t\r\f", &save); w; w = strtok_r(NULL, " \t\r\f", &save))
		off |= strcmp(w, "transaction:false") == 0;
	free(line);
	return off;
}

/* One file's up section, with dbmate's own words for what it refuses. */
static bool parse(struct native *n, const char *file, const char *text, const char *version,
		  char *err, size_t errlen)
{
	size_t up = 0, up2 = 0, down = 0, down2 = 0;
	size_t ups = find_directives(text, "up", &up, &up2);
	size_t downs = find_directives(text, "down", &down, &down2);
	const char *why = NULL;
	if (ups == 0)
		why = "dbmate requires each migration to define an up block with '-- migrate:up'";
	else if (statements_before(text, up))
		why = "dbmate does not support statements preceding the '-- migrate:up' block";
	else if (downs == 0)
		why = "dbmate requires each migration to define a down block with '-- migrate:down'";
	else if (down < up)
		why = "dbmate requires '-- migrate:up' to appear before '-- migrate:down'";
	else if (ups > 1 || downs > 1)
		why = "has more than one '-- migrate:up' section: apply it with the dbmate CLI (--apply cli)";
	if (why) {
		set_err(err, errlen, "%s/%s: %s", n->dir, file, why);
		return false;
	}
	struct native_mig *m = native_add(n, version, file, file, text + up, down - up);
	m->no_tx = no_transaction(text + up);
	return true;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dbmate's migrationFileRegexp `^(\d+).*\.sql$`, and the version it captures. */
static char *version_of(const char *name)
{
	size_t digits = strspn(name, "0123456789"), len = strlen(name);
	if (digits == 0 || len < 4 || strcmp(name + len - 4, ".sql") != 0 || digits > len - 4)
		return NULL;
	return xstrndup(name, digits);
}

static bool dbmate_scan(struct native *n, int dirfd, const char *dir, char *err, size_t errlen)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	char **names = NULL;
	size_t count = 0;
	for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d)) {
		char *v = version_of(e->d_name);
		if (!v)
			continue;
		free(v);
		names = xrealloc(names, (count + 1) * sizeof *names);
		names[count++] = xstrdup(e->d_name);
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	if (count)
		qsort(names, count, sizeof *names, by_name); /* dbmate sorts by file name */
	bool ok = true;
	for (size_t i = 0; i < count; i++) {
		char *text = NULL, *v = version_of(names[i]);
		size_t len = 0;
		enum sqlr_load l = ok ? sqlr_load(dirfd, dir, names[i], &text, &len, err, errlen) : SQLR_BAD;
		if (l == SQLR_LOADED)
			ok = parse(n, names[i], text, v, err, errlen);
		else if (l == SQLR_BAD)
			ok = false;
		free(text);
		free(v);
		free(names[i]);
	}
	free(names);
	return ok;
}

static bool dbmate_state(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen)
{
	const struct config *cfg = n->cfg;
	const char *table = cfg->migrate_history_table.n ? cfg->migrate_history_table.v[0] : "schema_migrations";
	if (!native_resolve_table(n, conn, table, err, errlen))
		return false;
	if (n->table_exists) {
		char *sql = xasprintf("SELECT version FROM %s ORDER BY version", n->table);
		PGresult *res = native_query(conn, sql, err, errlen);
		free(sql);
		if (!res)
			return false;
		for (int i = 0; i < PQntuples(res); i++)
			native_add_row(n, PQgetvalue(res, i, 0), NULL);
		PQclear(res);
	}
	native_match_rows(n, pr, "restore the file, or, if it was rolled back by hand, delete its row "
				 "from the history table", NULL);
	return true;
}

/* CreateMigrationsTable: the table, and its schema when that is what was missing (3F000). */
static bool dbmate_ensure(struct native *n, PGconn *conn, struct pg_error *err)
{
	if (n->table_exists)
		return true;
	char *create = xasprintf("CREATE TABLE IF NOT EXISTS %s (version varchar PRIMARY KEY)", n->table);
	bool ok = pg_command(conn, create, 0, NULL, PG_QUERY_MS, -1, err);
	if (!ok && strcmp(err->sqlstate, "3F000") == 0) {
		char *schema = xasprintf("CREATE SCHEMA IF NOT EXISTS %s", n->schema);
		ok = pg_command(conn, schema, 0, NULL, PG_QUERY_MS, -1, err) &&
		     pg_command(conn, create, 0, NULL, PG_QUERY_MS, -1, err);
		free(schema);
	}
	free(create);
	n->table_exists = ok;
	return ok;
}

/* InsertMigration: the version alone (digits: safe as a literal). */
static void dbmate_record(struct native *n, PGconn *conn, const struct native_mig *m, char **record,
			  char **before, char **after)
{
	(void)conn;
	(void)before;
	if (m->no_tx)
		*after = xasprintf("INSERT INTO %s (version) SELECT '%s' WHERE $1::bigint IS NOT NULL",
				   n->table, m->version);
	else
		*record = xasprintf("INSERT INTO %s (version) VALUES ('%s')", n->table, m->version);
}

const struct native_ops native_dbmate = {
	.scan = dbmate_scan,
	.state = dbmate_state,
	.ensure = dbmate_ensure,
	.record = dbmate_record,
	.no_tx_marker = "-- migrate:up transaction:false",
};
