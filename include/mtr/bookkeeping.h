/* The tool's own bookkeeping in the target database: one schema of ours (never one of the
 * app's), and its tables created only when missing. */
#ifndef MTR_BOOKKEEPING_H
#define MTR_BOOKKEEPING_H

#include "mtr/config.h"
#include "mtr/pg.h"

#include <stdbool.h>

/* The schema of the tool's own tables (--state-schema, default "migrate_then_run"), where the
 * failure memory (breaker.c) lives too. */
const char *bk_schema(const struct config *cfg);

/* "schema"."table", quoted for SQL (caller frees). */
char *bk_table(PGconn *conn, const char *schema, const char *table);

/* Whether schema.table exists (to_regnamespace and to_regclass: a catalog read, no
 * privilege needed). False with err when the query failed. */
bool bk_exists(PGconn *conn, const char *schema, const char *table, bool *schema_exists,
	       bool *table_exists, struct pg_error *err) MTR_MUST_CHECK;

/* Makes sure schema.table exists with these column definitions: no DDL at all when it does
 * (CREATE … IF NOT EXISTS would still need the privilege), else what is missing in one
 * transaction. False with err (SQLSTATE 42501 when the role may not create them). */
bool bk_ensure(PGconn *conn, const char *schema, const char *table, const char *columns,
	       struct pg_error *err) MTR_MUST_CHECK;

#endif
