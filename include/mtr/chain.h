/* The revision graph of a migration set (Alembic's down_revision links) and its checks. */
#ifndef MTR_CHAIN_H
#define MTR_CHAIN_H

#include "mtr/problems.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rev {
	char *id;
	char **down;     /* parents: none for a root, two or more for a merge */
	size_t ndown;
	char **depends;  /* depends_on: must be applied first, but not parents (ids or branch labels) */
	size_t ndepends;
	char **labels;   /* branch_labels */
	size_t nlabels;
	bool labels_unknown; /* branch_labels is not a literal: labelled, names unknown */
	char *file;      /* as the user should see it: versions/0004_x.py */
	int line;        /* of `revision = ...` */
	int down_line;   /* of `down_revision = ...` */
	int depends_line;  /* of `depends_on = ...` (0: none) */
	int labels_line;   /* of `branch_labels = ...` (0: none) */
};

struct chain_ids;   /* id → index, kept by chain_add */
struct chain_graph; /* the links resolved to indexes, built on first use after chain_add */

struct chain {
	struct rev *revs; /* in the order Alembic loads the files: its order for ties */
	size_t n;
	struct chain_ids *ids;
	struct chain_graph *g;
};

/* Takes ownership of the strings of r (copies the struct). */
void chain_add(struct chain *c, const struct rev *r);
void chain_free(struct chain *c);
void rev_free(struct rev *r); /* its strings; not r itself */

/* Checks the graph as Alembic would build it: duplicate ids, ids Alembic refuses, branch
 * labels used twice, dangling down_revision/depends_on (with close matches; depends_on also
 * through branch labels), cycles, independent histories that no down_revision joins, and more
 * than one unlabeled head. Appends to p; returns p->n. */
size_t chain_check(struct chain *c, struct problems *p);

/* Whether the graph can be planned: no dangling link, no cycle (chain_check says why not). */
bool chain_plannable(struct chain *c);

/* Index of id, or -1. The first revision that declares it, for a duplicate. */
long chain_find(const struct chain *c, const char *id);

/* The heads (revisions no down_revision names), as indexes in load order; returns how many
 * (at most max). The roots: revisions without down_revision. */
size_t chain_heads(struct chain *c, size_t *out, size_t max);
size_t chain_roots(struct chain *c, size_t *out, size_t max);

/* Whether a is b or one of b's ancestors (through down_revision and depends_on). */
bool chain_is_ancestor(struct chain *c, size_t a, size_t b);

/* The revisions `alembic upgrade heads` applies when the database is at `at` (indexes, may be
 * empty): everything that is not an ancestor-or-self of one of them, in the order Alembic
 * applies them (its topological walk down from the heads, reversed). Writes up to c->n
 * indexes to out; returns how many. Linear in the revisions and links for the usual shapes. */
size_t chain_pending(struct chain *c, const size_t *at, size_t nat, size_t *out);

#endif
