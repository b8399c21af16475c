/* The revision graph of a migration set (Alembic's down_revision links) and its checks. */
#ifndef MTR_CHAIN_H
#define MTR_CHAIN_H

#include "mtr/problems.h"

#include <stdbool.h>
#include <stddef.h>

struct rev {
	char *id;
	char **down;     /* parents: none for a root, two or more for a merge */
	size_t ndown;
	char **depends;  /* depends_on: must be applied first, but not parents */
	size_t ndepends;
	char **labels;   /* branch_labels */
	size_t nlabels;
	char *file;      /* as the user should see it: versions/0004_x.py */
	int line;        /* of `revision = ...` */
	int down_line;   /* of `down_revision = ...` */
};

struct chain {
	struct rev *revs;
	size_t n;
};

/* Takes ownership of the strings of r (copies the struct). */
void chain_add(struct chain *c, const struct rev *r);
void chain_free(struct chain *c);
void rev_free(struct rev *r); /* its strings; not r itself */

/* Checks the graph: duplicate ids, dangling down_revision/depends_on (with close matches),
 * cycles, more than one root, more than one unlabeled head. Appends to p; returns p->n. */
size_t chain_check(const struct chain *c, struct problems *p);

/* Index of id, or -1. */
long chain_find(const struct chain *c, const char *id);

/* The heads (revisions nothing descends from), as indexes; returns how many (at most max). */
size_t chain_heads(const struct chain *c, size_t *out, size_t max);
size_t chain_roots(const struct chain *c, size_t *out, size_t max);

/* Whether a is b or one of b's ancestors (through down_revision and depends_on). */
bool chain_is_ancestor(const struct chain *c, size_t a, size_t b);

/* The revisions not yet applied when the database is at `at` (indexes, may be empty):
 * everything that is not an ancestor-or-self of one of them, parents before children.
 * Writes up to c->n indexes to out; returns how many. */
size_t chain_pending(const struct chain *c, const size_t *at, size_t nat, size_t *out);

#endif
