/* The first look: questions that ride on the readiness check's one round trip. The phases
 * that will need a fact about the catalog (is the history table there? the failure memory?)
 * add it as a column before the wait; the wait asks it with "is the server ready", and the
 * quiet plan before the lock reads the answer instead of asking again. A start with nothing
 * to do then makes two round trips: this one, and the history read. */
#ifndef MTR_LOOK_H
#define MTR_LOOK_H

#include "mtr/strbuf.h"

#include <libpq-fe.h>
#include <stdbool.h>

#define LOOK_MAX_PARAMS 8

struct look {
	struct strbuf cols; /* ", expr, expr …" after the readiness check's own column */
	char *params[LOOK_MAX_PARAMS]; /* copies, owned */
	int nparams;
	int ncols;          /* columns added, numbered from 1 (column 0 is the readiness check) */
	PGresult *res;      /* the answer of the last ready attempt, or NULL */
};

/* A parameter for the columns (copied): returns its number n (for "$n"), or 0 when all are
 * taken. */
int look_param(struct look *l, const char *value);

/* Adds the column "is the table schema.table there" (schema NULL: as the search path finds it)
 * and returns its number, or 0 when the parameters are all taken. The answer is "t" or "f";
 * NULL (not known: ask in the plan) when the role may not look into the schema, which for
 * to_regclass would be an error, and every readiness check would fail with it. */
int look_table(struct look *l, const char *schema, const char *table);

/* Adds a column (an SQL expression that cannot fail on any database: catalog lookups such as
 * to_regclass, never a table that may be missing) and returns its number. */
int look_column(struct look *l, const char *expr);

/* The whole query: the readiness check's column first (caller frees). */
char *look_query(const struct look *l, const char *first);

/* Keeps res as the answer (frees the previous one). */
void look_answer(struct look *l, PGresult *res);

/* Column col of the answer: NULL when nothing was asked or answered, or the value is NULL. */
const char *look_value(const struct look *l, int col);

/* Whether column col was answered "t" / answered at all. */
bool look_true(const struct look *l, int col);
bool look_known(const struct look *l, int col);

/* Frees everything; zero-initialised again. */
void look_free(struct look *l);

#endif
