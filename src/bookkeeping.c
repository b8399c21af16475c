/* The tool's own schema in the target database: its name, and its tables made when missing. */
#include "mtr/bookkeeping.h"

#include <stdlib.h>
#include <string.h>

const char *bk_schema(const struct config *cfg)
{
	return cfg->state_schema;
}

char *bk_table(PGconn *conn, const char *schema, const char *table)
{
	char *s = PQescapeIdentifier(conn, schema, strlen(schema));
	char *t = PQescapeIdentifier(conn, table, strlen(table));
	char *q = xasprintf("%s.%s", s ? s : "\"?\"", t ? t : "\"?\"");
	PQfreemem(s);
	PQfreemem(t);
	return q;
}

bool bk_exists(PGconn *conn, const char *schema, const char *table, bool *schema_exists,
	       bool *table_exists, struct pg_error *err)
{
	const char *params[2] = {schema, table};
	PGresult *res = pg_run(conn,
			       "SELECT pg_catalog.to_regnamespace(pg_catalog.quote_ident($1)) IS NOT NULL, "
			       "pg_catalog.to_regclass(pg_catalog.quote_ident($1) OPERATOR(pg_catalog.||) "
			       "'.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2)) IS NOT NULL",
			       2, params, PG_QUERY_MS, -1, err);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	*schema_exists = ok && PQgetvalue(res, 0, 0)[0] == 't';
	*table_exists = ok && PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return ok;
}

bool bk_ensure(PGconn *conn, const char *schema, const char *table, const char *columns,
	       struct pg_error *err)
{
	bool has_schema, has_table;
	if (!bk_exists(conn, schema, table, &has_schema, &has_table, err))
		return false;
	if (has_table)
		return true;
	char *s = PQescapeIdentifier(conn, schema, strlen(schema));
	char *qt = bk_table(conn, schema, table);
	char *create_schema = has_schema || !s ? xstrdup("") : xasprintf("CREATE SCHEMA IF NOT EXISTS %s; ", s);
	char *sql = xasprintf("BEGIN; SET LOCAL client_min_messages = warning; %s"
			      "CREATE TABLE IF NOT EXISTS %s (%s); COMMIT",
			      create_schema, qt, columns);
	bool ok = pg_command(conn, sql, 0, NULL, PG_QUERY_MS, -1, err);
	struct pg_error ignored;
	if (!ok && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE &&
	    !pg_command(conn, "ROLLBACK", 0, NULL, PG_QUERY_MS, -1, &ignored)) {
		/* the caller sees the failure either way; a broken connection is its to handle */
	}
	PQfreemem(s);
	free(qt);
	free(create_schema);
	free(sql);
	return ok;
}
