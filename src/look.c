/* The first look (look.h): catalog questions asked with the readiness check. */
#include "mtr/look.h"
#include "mtr/util.h"

#include <stdlib.h>
#include <string.h>

int look_param(struct look *l, const char *value)
{
	if (l->nparams >= LOOK_MAX_PARAMS)
		return 0;
	l->params[l->nparams++] = xstrdup(value);
	return l->nparams;
}

static void add_ident(struct strbuf *b, const char *s)
{
	sb_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"')
			sb_addc(b, '"');
		sb_addc(b, *s);
	}
	sb_addc(b, '"');
}

int look_table(struct look *l, const char *schema, const char *table)
{
	struct strbuf b = STRBUF_INIT;
	if (schema) {
		add_ident(&b, schema);
		sb_addc(&b, '.');
	}
	add_ident(&b, table);
	int n = look_param(l, b.s);
	sb_free(&b);
	if (!n)
		return 0;
	int s = 0;
	if (schema) {
		add_ident(&b, schema);
		s = look_param(l, b.s);
		sb_free(&b);
		if (!s)
			return 0;
	}
	/* Quoted names, not quote_ident: each function named costs a fresh session a lookup.
	 * Without a schema the search path skips schemas the role may not use: no error. */
	char *expr = s ? xasprintf("CASE WHEN pg_catalog.to_regnamespace($%d) IS NULL THEN false "
				   "WHEN pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace($%d), "
				   "'USAGE') THEN pg_catalog.to_regclass($%d) IS NOT NULL END",
				   s, s, n)
		       : xasprintf("pg_catalog.to_regclass($%d) IS NOT NULL", n);
	int col = look_column(l, expr);
	free(expr);
	return col;
}

int look_column(struct look *l, const char *expr)
{
	sb_addf(&l->cols, ", %s", expr);
	return ++l->ncols;
}

char *look_query(const struct look *l, const char *first)
{
	return xasprintf("SELECT %s%s", first, l->cols.s ? l->cols.s : "");
}

void look_answer(struct look *l, PGresult *res)
{
	PQclear(l->res);
	l->res = res;
}

const char *look_value(const struct look *l, int col)
{
	if (!look_known(l, col) || PQgetisnull(l->res, 0, col))
		return NULL;
	return PQgetvalue(l->res, 0, col);
}

bool look_known(const struct look *l, int col)
{
	return l && l->res && col > 0 && col < PQnfields(l->res) && PQntuples(l->res) == 1;
}

bool look_true(const struct look *l, int col)
{
	const char *v = look_value(l, col);
	return v && strcmp(v, "t") == 0;
}

void look_free(struct look *l)
{
	sb_free(&l->cols);
	for (int i = 0; i < l->nparams; i++)
		free(l->params[i]);
	PQclear(l->res);
	memset(l, 0, sizeof *l);
}
