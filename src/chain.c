/* The revision graph of a migration set (Alembic's down_revision links) and its checks.
 *
 * Ids are mapped to indexes once (a hash table kept by chain_add); the first query after the
 * last chain_add resolves every link to an index and builds the parent and child lists
 * (struct chain_graph). Every check and the plan are then walks over those lists. */
#include "mtr/chain.h"
#include "mtr/strbuf.h"
#include "mtr/strmap.h"
#include "mtr/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the revisions ----------------------------------------------------------------------------- */

struct chain_ids {
	struct strmap m;
	bool *again; /* per revision: its id was declared by an earlier one (room for a power of two) */
};

/* The links of every revision resolved to indexes. Edge e of revision i is at
 * [eoff[i], eoff[i+1]): its down_revision entries first, then its depends_on. */
struct chain_graph {
	struct strmap labels;   /* branch label → the revision that declares it */
	uint32_t *eoff;
	int32_t *eto;           /* the revision edge e names, or -1 when nothing does */
	uint32_t *coff, *cto;   /* who names revision i: cto[coff[i] .. coff[i+1]) */
	uint32_t *down_children; /* how many name i as a down_revision */
	uint32_t *noff, *nto;   /* Alembic's _normalized_down_revisions, in its order */
	uint32_t *topo;         /* position in an order where parents come first (when acyclic) */
	bool acyclic, dangling, duplicates;
};

static void graph_free(struct chain_graph *g)
{
	if (!g)
		return;
	strmap_free(&g->labels);
	free(g->eoff);
	free(g->eto);
	free(g->coff);
	free(g->cto);
	free(g->down_children);
	free(g->noff);
	free(g->nto);
	free(g->topo);
	free(g);
}

void chain_add(struct chain *c, const struct rev *r)
{
	if (!c->ids)
		c->ids = xcalloc(1, sizeof *c->ids);
	graph_free(c->g);
	c->g = NULL;
	if ((c->n & (c->n - 1)) == 0) { /* grown by doubling: at 0, 1, 2, 4 … */
		c->revs = xrealloc(c->revs, (c->n ? c->n * 2 : 1) * sizeof *c->revs);
		c->ids->again = xrealloc(c->ids->again, (c->n ? c->n * 2 : 1) * sizeof *c->ids->again);
	}
	c->revs[c->n] = *r;
	/* a duplicate: the first stays */
	c->ids->again[c->n] = !strmap_put(&c->ids->m, r->id, (uint32_t)c->n);
	c->n++;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void rev_free(struct rev *r)
{
	free(r->id);
	free(r->file);
	free_list(r->down, r->ndown);
	free_list(r->depends, r->ndepends);
	free_list(r->labels, r->nlabels);
	memset(r, 0, sizeof *r);
}

void chain_free(struct chain *c)
{
	graph_free(c->g);
	if (c->ids) {
		strmap_free(&c->ids->m);
		free(c->ids->again);
	}
	free(c->ids);
	for (size_t i = 0; i < c->n; i++)
		rev_free(&c->revs[i]);
	free(c->revs);
	memset(c, 0, sizeof *c);
}

long chain_find(const struct chain *c, const char *id)
{
	return c->ids ? strmap_get(&c->ids->m, id) : -1;
}

/* Whether revision i is the first to declare its id (chain_find finds it), without a look-up. */
static bool first_of_id(const struct chain *c, size_t i)
{
	return c->ids && !c->ids->again[i];
}

/* ---- resolving the links ----------------------------------------------------------------------- */

/* What depends_on entry name resolves to: an id, else a branch label (Alembic's map holds
 * both, and refuses a label that is also an id). -1 when neither. */
static long resolve_dep(const struct chain *c, const struct chain_graph *g, const char *name)
{
	long k = chain_find(c, name);
	return k >= 0 ? k : strmap_get(&g->labels, name);
}

static void link_edges(const struct chain *c, struct chain_graph *g)
{
	size_t e = 0;
	g->eoff = xmalloc((c->n + 1) * sizeof *g->eoff);
	for (size_t i = 0; i < c->n; i++)
		e += c->revs[i].ndown + c->revs[i].ndepends;
	g->eto = xmalloc((e + 1) * sizeof *g->eto);
	e = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct rev *r = &c->revs[i];
		g->eoff[i] = (uint32_t)e;
		for (size_t k = 0; k < r->ndown; k++)
			g->eto[e++] = (int32_t)chain_find(c, r->down[k]);
		for (size_t k = 0; k < r->ndepends; k++)
			g->eto[e++] = (int32_t)resolve_dep(c, g, r->depends[k]);
		g->duplicates = g->duplicates || !first_of_id(c, i);
	}
	g->eoff[c->n] = (uint32_t)e;
	for (size_t k = 0; k < e; k++)
		g->dangling = g->dangling || g->eto[k] < 0;
}

/* The child lists: who names each revision, through which kind of link. */
static void link_children(const struct chain *c, struct chain_graph *g)
{
	size_t n = c->n, ne = g->eoff[n];
	g->coff = xcalloc(n + 1, sizeof *g->coff);
	g->cto = xmalloc((ne + 1) * sizeof *g->cto);
	g->down_children = xcalloc(n + 1, sizeof *g->down_children);
	for (size_t e = 0; e < ne; e++)
		if (g->eto[e] >= 0)
			g->coff[g->eto[e] + 1]++;
	for (size_t i = 0; i < n; i++)
		g->coff[i + 1] += g->coff[i];
	uint32_t *fill = xmalloc((n + 1) * sizeof *fill);
	memcpy(fill, g->coff, (n + 1) * sizeof *fill);
	for (size_t i = 0; i < n; i++) {
		for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++) {
			int32_t p = g->eto[e];
			if (p < 0)
				continue;
			g->cto[fill[p]++] = (uint32_t)i;
			if (e - g->eoff[i] < c->revs[i].ndown)
				g->down_children[p]++;
		}
	}
	free(fill);
}

/* Kahn's order over every resolved link; acyclic when it reaches every revision. */
static void link_order(const struct chain *c, struct chain_graph *g)
{
	size_t n = c->n, head = 0, tail = 0;
	uint32_t *indeg = xcalloc(n + 1, sizeof *indeg), *queue = xmalloc((n + 1) * sizeof *queue);
	g->topo = xmalloc((n + 1) * sizeof *g->topo);
	for (size_t i = 0; i < n; i++)
		for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++)
			indeg[i] += g->eto[e] >= 0;
	for (size_t i = 0; i < n; i++)
		if (indeg[i] == 0)
			queue[tail++] = (uint32_t)i;
	while (head < tail) {
		uint32_t u = queue[head];
		g->topo[u] = (uint32_t)head++;
		for (uint32_t k = g->coff[u]; k < g->coff[u + 1]; k++)
			if (--indeg[g->cto[k]] == 0)
				queue[tail++] = g->cto[k];
	}
	g->acyclic = tail == n;
	free(indeg);
	free(queue);
}

static bool is_dep_edge(const struct chain *c, const struct chain_graph *g, size_t i, uint32_t e)
{
	return e - g->eoff[i] >= c->revs[i].ndown;
}

/* Scratch for the walks: a visit mark per revision, valid for one stamp, and a stack. */
struct walk {
	uint32_t *mark, stamp;
	uint32_t *stack;
};

static void walk_init(struct walk *w, size_t n)
{
	w->mark = xcalloc(n + 1, sizeof *w->mark);
	w->stamp = 0;
	w->stack = xmalloc((n + 1) * sizeof *w->stack);
}

static void walk_free(struct walk *w)
{
	free(w->mark);
	free(w->stack);
}

/* Per depends_on target: how many revisions declare it, and the two earliest of them in the
 * order (their positions), for normalize's pruning. */
struct declarers {
	uint32_t *count, *first, *second; /* first/second: topo positions, UINT32_MAX: none */
	uint32_t *want;                   /* scratch for cover: the targets that matter */
};

static void count_declarers(const struct chain *c, const struct chain_graph *g, struct walk *w,
			    struct declarers *d)
{
	size_t n = c->n;
	d->count = xcalloc(n + 1, sizeof *d->count);
	d->want = xcalloc(n + 1, sizeof *d->want);
	d->first = xmalloc((n + 1) * sizeof *d->first);
	d->second = xmalloc((n + 1) * sizeof *d->second);
	memset(d->first, 0xff, (n + 1) * sizeof *d->first);
	memset(d->second, 0xff, (n + 1) * sizeof *d->second);
	for (size_t i = 0; i < n; i++) {
		w->stamp++;
		for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++) {
			int32_t p = g->eto[e];
			if (p < 0 || !is_dep_edge(c, g, i, e) || w->mark[p] == w->stamp)
				continue;
			w->mark[p] = w->stamp;
			d->count[p]++;
			uint32_t t = g->topo[i];
			if (t < d->first[p]) {
				d->second[p] = d->first[p];
				d->first[p] = t;
			} else if (t < d->second[p]) {
				d->second[p] = t;
			}
		}
	}
}

/* Marks in covered (with stamp) the depends_on targets of i's down_revision ancestors (not
 * i's own), as far as they matter: only targets that another revision declares too, and the
 * walk stops below the earliest such other declarer, or once every one of i's is covered. */
static void cover(const struct chain *c, const struct chain_graph *g, const struct declarers *d,
		  struct walk *w, size_t i, uint32_t *covered)
{
	uint32_t bound = UINT32_MAX, left = 0, top = 0;
	w->stamp++;
	for (uint32_t e = g->eoff[i] + (uint32_t)c->revs[i].ndown; e < g->eoff[i + 1]; e++) {
		int32_t p = g->eto[e];
		if (p < 0 || d->count[p] < 2 || d->want[p] == w->stamp)
			continue;
		d->want[p] = w->stamp;
		uint32_t other = d->first[p] == g->topo[i] ? d->second[p] : d->first[p];
		bound = other < bound ? other : bound;
		left++;
	}
	w->stack[top++] = (uint32_t)i;
	w->mark[i] = w->stamp;
	while (top && left) {
		uint32_t a = w->stack[--top];
		for (uint32_t e = g->eoff[a]; e < g->eoff[a + 1]; e++) {
			int32_t p = g->eto[e];
			if (p < 0)
				continue;
			if (is_dep_edge(c, g, a, e)) {
				if (a != i && d->want[p] == w->stamp && covered[p] != w->stamp) {
					covered[p] = w->stamp;
					left--;
				}
			} else if (w->mark[p] != w->stamp && g->topo[p] >= bound) {
				w->mark[p] = w->stamp;
				w->stack[top++] = (uint32_t)p;
			}
		}
	}
}

/* Alembic's _normalized_down_revisions for every revision: its down_revision entries, then
 * those of its depends_on that no down_revision ancestor declares as well, without repeats.
 * Their order decides the order of the plan. */
static void normalize(const struct chain *c, struct chain_graph *g)
{
	size_t n = c->n, out = 0;
	struct walk w, dedupe;
	struct declarers d = {NULL, NULL, NULL, NULL};
	walk_init(&w, n);
	walk_init(&dedupe, n);
	uint32_t *covered = xcalloc(n + 1, sizeof *covered);
	if (g->acyclic)
		count_declarers(c, g, &dedupe, &d);
	g->noff = xmalloc((n + 1) * sizeof *g->noff);
	g->nto = xmalloc((g->eoff[n] + 1) * sizeof *g->nto);
	for (size_t i = 0; i < n; i++) {
		g->noff[i] = (uint32_t)out;
		if (g->acyclic && c->revs[i].ndepends)
			cover(c, g, &d, &w, i, covered);
		dedupe.stamp++;
		for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++) {
			int32_t p = g->eto[e];
			if (p < 0 || dedupe.mark[p] == dedupe.stamp)
				continue;
			if (is_dep_edge(c, g, i, e) && c->revs[i].ndepends && g->acyclic && covered[p] == w.stamp)
				continue;
			dedupe.mark[p] = dedupe.stamp;
			g->nto[out++] = (uint32_t)p;
		}
	}
	g->noff[n] = (uint32_t)out;
	free(d.want);
	free(d.count);
	free(d.first);
	free(d.second);
	free(covered);
	walk_free(&w);
	walk_free(&dedupe);
}

/* The branch labels, each mapped to the first revision that declares it. */
static void link_labels(const struct chain *c, struct chain_graph *g)
{
	for (size_t i = 0; i < c->n; i++)
		for (size_t k = 0; k < c->revs[i].nlabels; k++)
			(void)strmap_put(&g->labels, c->revs[i].labels[k], (uint32_t)i);
}

static struct chain_graph *graph(struct chain *c)
{
	if (c->g)
		return c->g;
	struct chain_graph *g = xcalloc(1, sizeof *g);
	link_labels(c, g);
	link_edges(c, g);
	link_children(c, g);
	link_order(c, g);
	normalize(c, g);
	c->g = g;
	return g;
}

bool chain_plannable(struct chain *c)
{
	struct chain_graph *g = graph(c);
	return g->acyclic && !g->dangling && !g->duplicates;
}

size_t chain_heads(struct chain *c, size_t *out, size_t max)
{
	struct chain_graph *g = graph(c);
	size_t n = 0;
	for (size_t i = 0; i < c->n && n < max; i++)
		if (g->down_children[i] == 0 && first_of_id(c, i))
			out[n++] = i;
	return n;
}

size_t chain_roots(struct chain *c, size_t *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n && n < max; i++)
		if (c->revs[i].ndown == 0 && first_of_id(c, i))
			out[n++] = i;
	return n;
}

/* Marks (w->stamp) every ancestor-or-self of the revisions in from, through every link. */
static void mark_ancestors(const struct chain_graph *g, struct walk *w, const size_t *from, size_t nfrom)
{
	size_t top = 0;
	w->stamp++;
	for (size_t k = 0; k < nfrom; k++) {
		if (w->mark[from[k]] == w->stamp)
			continue;
		w->mark[from[k]] = w->stamp;
		w->stack[top++] = (uint32_t)from[k];
	}
	while (top) {
		uint32_t u = w->stack[--top];
		for (uint32_t e = g->eoff[u]; e < g->eoff[u + 1]; e++) {
			int32_t p = g->eto[e];
			if (p >= 0 && w->mark[p] != w->stamp) {
				w->mark[p] = w->stamp;
				w->stack[top++] = (uint32_t)p;
			}
		}
	}
}

bool chain_is_ancestor(struct chain *c, size_t a, size_t b)
{
	if (a == b)
		return true;
	struct chain_graph *g = graph(c);
	struct walk w;
	walk_init(&w, c->n);
	mark_ancestors(g, &w, &b, 1);
	bool found = w.mark[a] == w.stamp;
	walk_free(&w);
	return found;
}

/* ---- the plan ------------------------------------------------------------------------------------ */

/* The state of Alembic's topological walk (RevisionMap._topological_sort) from the heads down:
 * the current heads in their list order, and per revision whether it is done (applied, or
 * already emitted) and how many of its children are not done yet. */
struct topo_walk {
	struct chain_graph *g;
	bool *done, *in_heads;
	uint32_t *heads, nheads;
	uint32_t *waiting; /* children (through any link) that are not done */
	struct walk w;     /* marks for the descendant search */
};

/* The first head (other than at idx) that descends from revision v: where Alembic's walk
 * turns when v is an ancestor of another head. Marks v's descendants that are not done. */
static uint32_t descendant_head(struct topo_walk *t, uint32_t v, uint32_t idx)
{
	struct walk *w = &t->w;
	size_t top = 0;
	w->stamp++;
	w->mark[v] = w->stamp;
	w->stack[top++] = v;
	while (top) {
		uint32_t u = w->stack[--top];
		for (uint32_t k = t->g->coff[u]; k < t->g->coff[u + 1]; k++) {
			uint32_t ch = t->g->cto[k];
			if (!t->done[ch] && w->mark[ch] != w->stamp) {
				w->mark[ch] = w->stamp;
				w->stack[top++] = ch;
			}
		}
	}
	for (uint32_t j = 0; j < t->nheads; j++)
		if (j != idx && w->mark[t->heads[j]] == w->stamp)
			return j;
	return idx; /* cannot happen in an acyclic graph; emitting ends the walk regardless */
}

/* Emits the head at idx and puts its parents in its place (the first) and at the end (the
 * others), as Alembic does. Returns the index the walk goes on from. */
static uint32_t emit(struct topo_walk *t, uint32_t idx)
{
	struct chain_graph *g = t->g;
	uint32_t v = t->heads[idx];
	bool replaced = false;
	t->done[v] = true;
	t->in_heads[v] = false;
	for (uint32_t e = g->eoff[v]; e < g->eoff[v + 1]; e++)
		if (g->eto[e] >= 0 && !t->done[g->eto[e]])
			t->waiting[g->eto[e]]--;
	for (uint32_t k = g->noff[v]; k < g->noff[v + 1]; k++) {
		uint32_t p = g->nto[k];
		if (t->done[p] || t->in_heads[p])
			continue;
		t->in_heads[p] = true;
		if (!replaced)
			t->heads[idx] = p;
		else
			t->heads[t->nheads++] = p;
		replaced = true;
	}
	if (replaced)
		return idx;
	memmove(&t->heads[idx], &t->heads[idx + 1], (t->nheads - idx - 1) * sizeof *t->heads);
	t->nheads--;
	return idx ? idx - 1 : 0;
}

/* Alembic's order, walked down from the heads that nothing depends on (in load order); out
 * gets the reverse: parents first. t->done holds what is applied. */
static size_t topo_plan(struct chain *c, struct topo_walk *t, size_t *out)
{
	struct chain_graph *g = t->g;
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++) {
		if (t->done[i])
			continue;
		for (uint32_t k = g->coff[i]; k < g->coff[i + 1]; k++)
			t->waiting[i] += !t->done[g->cto[k]];
		if (g->coff[i] == g->coff[i + 1]) {
			t->in_heads[i] = true;
			t->heads[t->nheads++] = (uint32_t)i;
		}
	}
	for (uint32_t idx = 0; t->nheads;) {
		uint32_t v = t->heads[idx];
		if (t->waiting[v]) {
			uint32_t j = descendant_head(t, v, idx);
			if (j != idx) {
				idx = j;
				continue;
			}
		}
		out[n++] = v;
		idx = emit(t, idx);
	}
	for (size_t i = 0; i < n / 2; i++) {
		size_t s = out[i];
		out[i] = out[n - 1 - i];
		out[n - 1 - i] = s;
	}
	return n;
}

/* A graph with a cycle has no plan Alembic would run; for the callers that ask anyway, parents
 * before children as far as the loops allow (Kahn's order over what is left). */
static size_t kahn_plan(const struct chain *c, struct chain_graph *g, bool *done, size_t *out)
{
	size_t n = 0;
	for (bool progress = true; progress;) {
		progress = false;
		for (size_t i = 0; i < c->n; i++) {
			if (done[i])
				continue;
			bool ready = true;
			for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1] && ready; e++)
				ready = g->eto[e] < 0 || done[g->eto[e]];
			if (ready) {
				done[i] = progress = true;
				out[n++] = i;
			}
		}
	}
	return n;
}

size_t chain_pending(struct chain *c, const size_t *at, size_t nat, size_t *out)
{
	struct chain_graph *g = graph(c);
	struct topo_walk t = {g, xcalloc(c->n + 1, sizeof *t.done), xcalloc(c->n + 1, sizeof *t.in_heads),
			      xmalloc((c->n + 1) * sizeof *t.heads), 0, xcalloc(c->n + 1, sizeof *t.waiting),
			      {0}};
	walk_init(&t.w, c->n);
	mark_ancestors(g, &t.w, at, nat);
	for (size_t i = 0; i < c->n; i++)
		t.done[i] = t.w.mark[i] == t.w.stamp;
	size_t n = g->acyclic ? topo_plan(c, &t, out) : kahn_plan(c, g, t.done, out);
	walk_free(&t.w);
	free(t.done);
	free(t.in_heads);
	free(t.heads);
	free(t.waiting);
	return n;
}

/* ---- the checks ---------------------------------------------------------------------------------- */

/* The last path component of a file, without ".py". Caller frees. */
static char *stem(const char *file)
{
	const char *slash = strrchr(file, '/');
	const char *base = slash ? slash + 1 : file;
	size_t n = strlen(base);
	if (n > 3 && strcmp(base + n - 3, ".py") == 0)
		n -= 3;
	return xstrndup(base, n);
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

/* Hints are searched for this many dangling names; past them the message alone (a project
 * whose every link dangles needs no n-squared search to say so). */
#define HINTED_MAX 32

/* A close match for a name no revision declares: the file it is the name of, or an id a typo
 * away. Appends "; ..." to hint (which holds nothing on entry). */
static void dangling_hint(const struct chain *c, const struct rev *r, const char *what, const char *name,
			  struct strbuf *hint)
{
	for (size_t m = 0; m < c->n && !hint->len; m++) {
		char *st = stem(c->revs[m].file);
		if (strcmp(st, name) == 0)
			sb_addf(hint, "; '%s' is the file name of %s, whose revision id is '%s': set %s = '%s' in %s",
				name, c->revs[m].file, c->revs[m].id, what, c->revs[m].id, r->file);
		free(st);
	}
	for (size_t m = 0; m < c->n && !hint->len; m++) {
		const char *id = c->revs[m].id;
		if (edit_distance(id, name) <= 2 || (strlen(name) >= 4 && strncmp(id, name, strlen(name)) == 0))
			sb_addf(hint, "; did you mean '%s' (%s)?", id, c->revs[m].file);
	}
}

/* The revisions whose branch_labels are not literals, for a depends_on that may name one of
 * their labels: "versions/x.py:12, versions/y.py:9". Empty when there are none. */
static char *unknown_labels(const struct chain *c)
{
	struct strbuf b = STRBUF_INIT;
	for (size_t i = 0; i < c->n; i++)
		if (c->revs[i].labels_unknown)
			sb_addf(&b, "%s%s:%d", b.len ? ", " : "", c->revs[i].file, c->revs[i].labels_line);
	return sb_take(&b);
}

static void report_dangling_dep(const struct chain *c, const struct rev *r, const char *name,
				const char *unknown, bool hinted, struct problems *p)
{
	int line = r->depends_line ? r->depends_line : r->line;
	if (unknown[0]) {
		problems_add(p, "dangling",
			     "%s:%d: depends_on names '%s', which is no revision id and no branch label "
			     "written as a literal; it may be a label of a revision whose branch_labels is "
			     "not a literal (%s), which is read as text and never evaluated: write those "
			     "branch_labels as literals (a string or a tuple of strings), or name the "
			     "revision id in depends_on",
			     r->file, line, name, unknown);
		return;
	}
	struct strbuf hint = STRBUF_INIT;
	if (hinted)
		dangling_hint(c, r, "depends_on", name, &hint);
	problems_add(p, "dangling",
		     "%s:%d: depends_on names '%s', which is neither a revision id nor a branch label "
		     "of any migration file%s%s",
		     r->file, line, name, hint.len ? "" : "; restore the missing file or correct the name",
		     hint.len ? hint.s : "");
	sb_free(&hint);
}

static void report_dangling_down(const struct chain *c, const struct chain_graph *g, const struct rev *r,
				 const char *name, bool hinted, struct problems *p)
{
	long owner = strmap_get(&g->labels, name);
	if (owner >= 0) {
		const struct rev *o = &c->revs[owner];
		problems_add(p, "dangling",
			     "%s:%d: down_revision names '%s', which is a branch label of %s, not a "
			     "revision id; Alembic follows only ids there: set down_revision = '%s' in %s",
			     r->file, r->down_line, name, o->file, o->id, r->file);
		return;
	}
	struct strbuf hint = STRBUF_INIT;
	if (hinted)
		dangling_hint(c, r, "down_revision", name, &hint);
	problems_add(p, "dangling",
		     "%s:%d: down_revision names revision '%s', which no migration file declares%s%s",
		     r->file, r->down_line, name, hint.len ? "" : "; restore the missing file or correct the id",
		     hint.len ? hint.s : "");
	sb_free(&hint);
}

static void check_dangling(const struct chain *c, const struct chain_graph *g, struct problems *p)
{
	char *unknown = unknown_labels(c);
	size_t hinted = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct rev *r = &c->revs[i];
		for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++) {
			if (g->eto[e] >= 0)
				continue;
			size_t k = e - g->eoff[i];
			bool hint = hinted++ < HINTED_MAX;
			if (k < r->ndown)
				report_dangling_down(c, g, r, r->down[k], hint, p);
			else
				report_dangling_dep(c, r, r->depends[k - r->ndown], unknown, hint, p);
		}
	}
	free(unknown);
}

/* Duplicate ids (both files named), ids Alembic refuses, and branch labels used twice. */
static void check_names(const struct chain *c, struct problems *p)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct rev *r = &c->revs[i];
		long k = first_of_id(c, i) ? (long)i : chain_find(c, r->id);
		if (k != (long)i)
			problems_add(p, "duplicate",
				     "revision id '%s' is declared twice: %s:%d and %s:%d; give one of them a "
				     "new id (and fix the down_revision that points at it)",
				     r->id, c->revs[k].file, c->revs[k].line, r->file, r->line);
		const char *bad = strpbrk(r->id, "@-+");
		if (bad)
			problems_add(p, "invalid_id",
				     "%s:%d: revision id '%s' holds '%c', which Alembic does not allow in an id "
				     "(@, - and + are reserved for its revision syntax); give it another id",
				     r->file, r->line, r->id, *bad);
	}
	struct strmap seen = {0};
	for (size_t i = 0; i < c->n; i++) {
		const struct rev *r = &c->revs[i];
		for (size_t k = 0; k < r->nlabels; k++) {
			long id = chain_find(c, r->labels[k]), first = strmap_get(&seen, r->labels[k]);
			long other = id >= 0 ? id : first;
			if (other >= 0)
				problems_add(p, "label",
					     "%s:%d: branch label '%s' is already %s %s (%s); Alembic refuses a "
					     "label used twice: rename one of them",
					     r->file, r->labels_line ? r->labels_line : r->line, r->labels[k],
					     id >= 0 ? "the id of" : "a label of", c->revs[other].id, c->revs[other].file);
			else
				(void)strmap_put(&seen, r->labels[k], (uint32_t)i);
		}
	}
	strmap_free(&seen);
}

enum { DFS_WHITE, DFS_GREY, DFS_BLACK };

/* The depth-first walk of check_cycles; each array has room for every revision. */
struct dfs {
	uint8_t *color; /* DFS_GREY: on the current path; DFS_BLACK: all its parents followed */
	uint32_t *path; /* the current path, from where the walk started */
	uint8_t *dep;   /* per path entry: reached through a depends_on link */
	uint32_t *next; /* per revision: the next of its links to follow */
};

/* The loop that the back edge to v closes, for messages: the path from v to its end, then v
 * again, "c2 (versions/c2.py) -> c3 (versions/c3.py) -> c2 (versions/c2.py)". *dep says
 * whether a depends_on link is part of it. Caller frees. */
static char *cycle_text(const struct chain *c, const struct dfs *d, size_t depth, uint32_t v, bool last_dep,
			bool *dep)
{
	size_t from = 0;
	while (d->path[from] != v)
		from++;
	struct strbuf b = STRBUF_INIT;
	*dep = last_dep;
	for (size_t k = from; k <= depth; k++) {
		const struct rev *x = &c->revs[k < depth ? d->path[k] : v];
		sb_addf(&b, "%s%s (%s)", k == from ? "" : " -> ", x->id, x->file);
		if (k > from && k < depth)
			*dep = *dep || d->dep[k];
	}
	return sb_take(&b);
}

static void report_cycle(const struct chain *c, const struct dfs *d, size_t depth, uint32_t v, bool via_dep,
			 struct problems *p)
{
	bool dep;
	char *loop = cycle_text(c, d, depth, v, via_dep, &dep);
	problems_add(p, "cycle",
		     "the %s links form a cycle: %s (each names the next as its %s); break it by "
		     "pointing one of them at its real predecessor",
		     dep ? "down_revision and depends_on" : "down_revision", loop,
		     dep ? "parent or dependency" : "parent");
	free(loop);
}

/* Walks the links from s; each back edge (to a revision on the path) is a cycle. */
static void cycles_from(const struct chain *c, const struct chain_graph *g, struct dfs *d, uint32_t s,
			struct problems *p)
{
	size_t depth = 0;
	d->dep[depth] = 0;
	d->path[depth++] = s;
	d->color[s] = DFS_GREY;
	d->next[s] = g->eoff[s];
	while (depth) {
		uint32_t u = d->path[depth - 1];
		if (d->next[u] >= g->eoff[u + 1]) {
			d->color[u] = DFS_BLACK;
			depth--;
			continue;
		}
		uint32_t e = d->next[u]++;
		int32_t v = g->eto[e];
		if (v < 0)
			continue;
		bool via_dep = is_dep_edge(c, g, u, e);
		if (d->color[v] == DFS_GREY) {
			report_cycle(c, d, depth, (uint32_t)v, via_dep, p);
		} else if (d->color[v] == DFS_WHITE) {
			d->color[v] = DFS_GREY;
			d->next[v] = g->eoff[v];
			d->dep[depth] = via_dep;
			d->path[depth++] = (uint32_t)v;
		}
	}
}

/* Cycles through down_revision and depends_on (Alembic refuses both): depth-first with
 * colors, only when the order found none; each back edge prints its loop. */
static void check_cycles(const struct chain *c, const struct chain_graph *g, struct problems *p)
{
	if (g->acyclic)
		return;
	struct dfs d = {xcalloc(c->n + 1, 1), xmalloc((c->n + 1) * sizeof *d.path), xcalloc(c->n + 1, 1),
			xcalloc(c->n + 1, sizeof *d.next)};
	for (size_t s = 0; s < c->n; s++)
		if (d.color[s] == DFS_WHITE)
			cycles_from(c, g, &d, (uint32_t)s, p);
	free(d.color);
	free(d.path);
	free(d.dep);
	free(d.next);
}

/* ---- roots and heads ----------------------------------------------------------------------------- */

static bool labelled(const struct rev *r)
{
	return r->nlabels || r->labels_unknown;
}

/* The only revision that names i as its down_revision, or -1 when none or several do. */
static long only_down_child(const struct chain *c, const struct chain_graph *g, size_t i)
{
	if (g->down_children[i] != 1)
		return -1;
	for (uint32_t k = g->coff[i]; k < g->coff[i + 1]; k++) {
		uint32_t ch = g->cto[k];
		for (size_t d = 0; d < c->revs[ch].ndown; d++)
			if (g->eto[g->eoff[ch] + d] == (int32_t)i)
				return ch;
	}
	return -1;
}

/* A head whose own line of revisions (back to where it branched off) declares a label. */
static bool head_labeled(const struct chain *c, const struct chain_graph *g, size_t head)
{
	size_t cur = head;
	for (size_t steps = 0; steps <= c->n; steps++) {
		const struct rev *r = &c->revs[cur];
		if (labelled(r))
			return true;
		if (r->ndown != 1)
			return false;
		int32_t parent = g->eto[g->eoff[cur]];
		if (parent < 0 || g->down_children[parent] > 1)
			return false;
		cur = (size_t)parent;
	}
	return false;
}

/* A root whose line (forward while it does not branch) declares a label. */
static bool root_labeled(const struct chain *c, const struct chain_graph *g, size_t root)
{
	long cur = (long)root;
	for (size_t steps = 0; cur >= 0 && steps <= c->n; steps++) {
		if (labelled(&c->revs[cur]))
			return true;
		cur = only_down_child(c, g, (size_t)cur);
	}
	return false;
}

/* The ids of the line a root starts, for messages: "0004 -> 0005 -> 0006"; past six ids,
 * "… -> ... -> last". Caller frees. */
static char *describe_line(const struct chain *c, const struct chain_graph *g, size_t root)
{
	struct strbuf b = STRBUF_INIT;
	size_t cur = root, count = 0;
	for (;;) {
		if (count < 6)
			sb_addf(&b, "%s%s", count ? " -> " : "", c->revs[cur].id);
		count++;
		long nx = only_down_child(c, g, cur);
		if (nx < 0 || count > c->n)
			break;
		cur = (size_t)nx;
	}
	if (count > 6)
		sb_addf(&b, " -> ... -> %s", c->revs[cur].id);
	return sb_take(&b);
}

static uint32_t uf_find(uint32_t *parent, uint32_t x)
{
	while (parent[x] != x) {
		parent[x] = parent[parent[x]];
		x = parent[x];
	}
	return x;
}

/* Per revision, the history it belongs to: revisions that down_revision links join (in either
 * direction) share one. Returns a vector the caller frees: comp[i] is a representative. */
static uint32_t *histories(const struct chain *c, const struct chain_graph *g)
{
	uint32_t *comp = xmalloc((c->n + 1) * sizeof *comp);
	for (size_t i = 0; i < c->n; i++)
		comp[i] = (uint32_t)i;
	for (size_t i = 0; i < c->n; i++) {
		for (size_t d = 0; d < c->revs[i].ndown; d++) {
			int32_t p = g->eto[g->eoff[i] + d];
			if (p < 0)
				continue;
			uint32_t a = uf_find(comp, (uint32_t)i), b = uf_find(comp, (uint32_t)p);
			comp[a < b ? b : a] = a < b ? a : b;
		}
	}
	for (size_t i = 0; i < c->n; i++)
		comp[i] = uf_find(comp, (uint32_t)i);
	return comp;
}

static int by_file(const void *a, const void *b, void *arg)
{
	const struct chain *c = arg;
	return strcmp(c->revs[*(const size_t *)a].file, c->revs[*(const size_t *)b].file);
}

/* Adds to fixes the join for an unlabeled root whose file comes right after the head of
 * another history (order: every revision in file-name order; pos: of the root). */
static void suggest_join(struct chain *c, const uint32_t *comp, const size_t *order, size_t pos,
			 struct strbuf *fixes)
{
	if (pos == 0)
		return;
	size_t root = order[pos], prev = order[pos - 1];
	if (c->g->down_children[prev] == 0 && comp[prev] != comp[root] && !chain_is_ancestor(c, root, prev))
		sb_addf(fixes, "%sset down_revision = '%s' in %s", fixes->len ? "; " : "", c->revs[prev].id,
			c->revs[root].file);
}

/* The first unlabeled root of every history that has one, in file-name order: the histories
 * that look like the incident's (a chain whose first revision forgot its parent). */
static size_t unlabeled_histories(struct chain *c, const uint32_t *comp, const size_t *order, size_t *first)
{
	bool *seen = xcalloc(c->n + 1, sizeof *seen);
	size_t n = 0;
	for (size_t k = 0; k < c->n; k++) {
		size_t i = order[k];
		if (c->revs[i].ndown || !first_of_id(c, i) || seen[comp[i]])
			continue;
		if (root_labeled(c, c->g, i))
			continue;
		seen[comp[i]] = true;
		first[n++] = k;
	}
	free(seen);
	return n;
}

/* How many histories have an unlabeled root (unlabeled_histories without the order: a count
 * does not depend on it). */
static size_t count_unlabeled_histories(struct chain *c, const uint32_t *comp)
{
	bool *seen = xcalloc(c->n + 1, sizeof *seen);
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++) {
		if (c->revs[i].ndown || !first_of_id(c, i) || seen[comp[i]] ||
		    root_labeled(c, c->g, i))
			continue;
		seen[comp[i]] = true;
		n++;
	}
	free(seen);
	return n;
}

/* More than one history with an unlabeled root: each line, and the down_revision that would
 * join them. Returns how many such histories there are. The revisions are sorted by file name
 * only then: the usual project has one. */
static size_t check_roots(struct chain *c, const uint32_t *comp, struct problems *p)
{
	size_t histories = count_unlabeled_histories(c, comp);
	if (histories <= 1)
		return histories;
	size_t *order = xmalloc((c->n + 1) * sizeof *order), *first = xmalloc((c->n + 1) * sizeof *first);
	for (size_t i = 0; i < c->n; i++)
		order[i] = i;
	qsort_r(order, c->n, sizeof *order, by_file, c);
	size_t n = unlabeled_histories(c, comp, order, first);
	if (n > 1) {
		struct strbuf lines = STRBUF_INIT, fixes = STRBUF_INIT;
		for (size_t k = 0; k < n; k++) {
			size_t root = order[first[k]];
			char *line = describe_line(c, c->g, root);
			sb_addf(&lines, "%s%s (%s, starting %s)", lines.len ? "; " : "", line, c->revs[root].file,
				c->revs[root].id);
			free(line);
			suggest_join(c, comp, order, first[k], &fixes);
		}
		problems_add(p, "roots",
			     "the migrations form %zu independent chains, each with its own first revision "
			     "(down_revision = None) and no down_revision joining them: %s. Alembic would "
			     "apply them as unrelated histories. %s%s",
			     n, lines.s,
			     fixes.len ? "Join them: " : "Point each later chain's first revision at the head "
							 "of the chain it continues (down_revision), or restore "
							 "the missing migrations",
			     fixes.len ? fixes.s : "");
		sb_free(&lines);
		sb_free(&fixes);
	}
	free(order);
	free(first);
	return n;
}

/* More unlabeled heads than the independent histories explain: each of them, and the merge. */
static void check_heads(struct chain *c, size_t histories_reported, struct problems *p)
{
	size_t *heads = xmalloc((c->n + 1) * sizeof *heads);
	size_t nheads = chain_heads(c, heads, c->n), unlabeled = 0;
	struct strbuf list = STRBUF_INIT, ids = STRBUF_INIT;
	for (size_t i = 0; i < nheads; i++) {
		if (head_labeled(c, c->g, heads[i]))
			continue;
		const struct rev *r = &c->revs[heads[i]];
		sb_addf(&list, "%s%s (%s)", list.len ? ", " : "", r->id, r->file);
		sb_addf(&ids, " %s", r->id);
		unlabeled++;
	}
	size_t explained = histories_reported > 1 ? histories_reported : 1;
	if (unlabeled > explained)
		problems_add(p, "heads",
			     "the migrations have %zu heads and none of the branches declares "
			     "branch_labels: %s. Merge them with: alembic merge -m \"merge heads\"%s",
			     unlabeled, list.s, ids.s);
	sb_free(&list);
	sb_free(&ids);
	free(heads);
}

size_t chain_check(struct chain *c, struct problems *p)
{
	struct chain_graph *g = graph(c);
	check_names(c, p);
	size_t before = p->n;
	check_dangling(c, g, p);
	bool dangling = p->n > before;
	check_cycles(c, g, p);
	/* A dangling link also makes an extra head or root: saying so twice would mislead. */
	if (!dangling) {
		uint32_t *comp = histories(c, g);
		check_heads(c, check_roots(c, comp, p), p);
		free(comp);
	}
	return p->n;
}
