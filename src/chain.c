/* The revision graph of a migration set (Alembic's down_revision links) and its checks. */
#include "mtr/chain.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void chain_add(struct chain *c, const struct rev *r)
{
	c->revs = xrealloc(c->revs, (c->n + 1) * sizeof *c->revs);
	c->revs[c->n++] = *r;
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
	for (size_t i = 0; i < c->n; i++)
		rev_free(&c->revs[i]);
	free(c->revs);
	c->revs = NULL;
	c->n = 0;
}

long chain_find(const struct chain *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->revs[i].id, id) == 0)
			return (long)i;
	return -1;
}

/* How many revisions name i as a parent. */
static size_t children(const struct chain *c, size_t i, size_t *only)
{
	size_t n = 0;
	for (size_t k = 0; k < c->n; k++)
		for (size_t d = 0; d < c->revs[k].ndown; d++)
			if (strcmp(c->revs[k].down[d], c->revs[i].id) == 0) {
				if (only)
					*only = k;
				n++;
			}
	return n;
}

size_t chain_heads(const struct chain *c, size_t *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n && n < max; i++)
		if (children(c, i, NULL) == 0 && chain_find(c, c->revs[i].id) == (long)i)
			out[n++] = i;
	return n;
}

size_t chain_roots(const struct chain *c, size_t *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n && n < max; i++)
		if (c->revs[i].ndown == 0 && chain_find(c, c->revs[i].id) == (long)i)
			out[n++] = i;
	return n;
}

/* A head whose own line of revisions (back to where it branched off) declares a label. */
static bool head_labeled(const struct chain *c, size_t head)
{
	size_t cur = head;
	for (size_t steps = 0; steps <= c->n; steps++) {
		const struct rev *r = &c->revs[cur];
		if (r->nlabels)
			return true;
		if (r->ndown != 1)
			return false;
		long parent = chain_find(c, r->down[0]);
		if (parent < 0 || children(c, (size_t)parent, NULL) > 1)
			return false;
		cur = (size_t)parent;
	}
	return false;
}

/* A root whose line (forward while it does not branch) declares a label. */
static bool root_labeled(const struct chain *c, size_t root)
{
	size_t cur = root;
	for (size_t steps = 0; steps <= c->n; steps++) {
		if (c->revs[cur].nlabels)
			return true;
		size_t next;
		if (children(c, cur, &next) != 1)
			return false;
		cur = next;
	}
	return false;
}

bool chain_is_ancestor(const struct chain *c, size_t a, size_t b)
{
	if (a == b)
		return true;
	bool *seen = xcalloc(c->n, sizeof *seen);
	size_t *stack = xmalloc((c->n + 1) * sizeof *stack), top = 0;
	bool found = false;
	stack[top++] = b;
	seen[b] = true;
	while (top && !found) {
		const struct rev *r = &c->revs[stack[--top]];
		for (size_t k = 0; k < r->ndown + r->ndepends && !found; k++) {
			const char *pid = k < r->ndown ? r->down[k] : r->depends[k - r->ndown];
			long p = chain_find(c, pid);
			if (p < 0 || seen[p])
				continue;
			if ((size_t)p == a)
				found = true;
			seen[p] = true;
			stack[top++] = (size_t)p;
		}
	}
	free(seen);
	free(stack);
	return found;
}

size_t chain_pending(const struct chain *c, const size_t *at, size_t nat, size_t *out)
{
	bool *done = xcalloc(c->n + 1, sizeof *done);
	for (size_t i = 0; i < c->n; i++)
		for (size_t k = 0; k < nat && !done[i]; k++)
			done[i] = chain_is_ancestor(c, i, at[k]);
	/* Kahn's order over what is left: a revision once all of its parents are done. */
	size_t n = 0;
	for (bool progress = true; progress;) {
		progress = false;
		for (size_t i = 0; i < c->n; i++) {
			if (done[i] || chain_find(c, c->revs[i].id) != (long)i)
				continue;
			const struct rev *r = &c->revs[i];
			bool ready = true;
			for (size_t k = 0; k < r->ndown + r->ndepends && ready; k++) {
				long p = chain_find(c, k < r->ndown ? r->down[k] : r->depends[k - r->ndown]);
				ready = p < 0 || done[p];
			}
			if (ready) {
				done[i] = true;
				out[n++] = i;
				progress = true;
			}
		}
	}
	free(done);
	return n;
}

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

static void check_dangling(const struct chain *c, struct problems *p)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct rev *r = &c->revs[i];
		for (size_t k = 0; k < r->ndown + r->ndepends; k++) {
			bool is_down = k < r->ndown;
			const char *name = is_down ? r->down[k] : r->depends[k - r->ndown];
			if (chain_find(c, name) >= 0)
				continue;
			const char *what = is_down ? "down_revision" : "depends_on";
			char hint[512] = "";
			for (size_t m = 0; m < c->n && !hint[0]; m++) {
				char *st = stem(c->revs[m].file);
				if (strcmp(st, name) == 0)
					snprintf(hint, sizeof hint,
						 "; '%s' is the file name of %s, whose revision id is '%s': "
						 "set %s = '%s' in %s",
						 name, c->revs[m].file, c->revs[m].id, what, c->revs[m].id, r->file);
				free(st);
			}
			for (size_t m = 0; m < c->n && !hint[0]; m++) {
				const char *id = c->revs[m].id;
				if (edit_distance(id, name) <= 2 ||
				    (strlen(name) >= 4 && strncmp(id, name, strlen(name)) == 0))
					snprintf(hint, sizeof hint, "; did you mean '%s' (%s)?", id,
						 c->revs[m].file);
			}
			problems_add(p, "dangling",
				    "%s:%d: %s names revision '%s', which no migration file declares%s%s",
				    r->file, is_down ? r->down_line : r->line, what, name,
				    hint[0] ? "" : "; restore the missing file or correct the id", hint);
		}
	}
}

enum { DFS_WHITE, DFS_GREY, DFS_BLACK };

/* The depth-first walk of check_cycles; each array has room for every revision. */
struct dfs {
	int *color;   /* DFS_GREY: on the current path; DFS_BLACK: all its parents followed */
	size_t *path; /* the current path, from where the walk started */
	size_t *next; /* per revision: the index of the next down_revision to follow */
};

/* The loop that the back edge to v closes, for messages: the path from v to its end, then v
 * again, "c2 (versions/c2.py) -> c3 (versions/c3.py) -> c2 (versions/c2.py)". Caller frees. */
static char *cycle_text(const struct chain *c, const size_t *path, size_t depth, size_t v)
{
	size_t from = 0;
	while (path[from] != v)
		from++;
	struct strbuf b = STRBUF_INIT;
	for (size_t k = from; k <= depth; k++) {
		const struct rev *x = &c->revs[k < depth ? path[k] : v];
		sb_addf(&b, "%s%s (%s)", k == from ? "" : " -> ", x->id, x->file);
	}
	return sb_take(&b);
}

/* Walks down_revision links from s; each back edge (to a revision on the path) is a cycle. */
static void cycles_from(const struct chain *c, struct dfs *d, size_t s, struct problems *p)
{
	size_t depth = 0;
	d->path[depth++] = s;
	d->color[s] = DFS_GREY;
	d->next[s] = 0;
	while (depth) {
		size_t u = d->path[depth - 1];
		const struct rev *r = &c->revs[u];
		if (d->next[u] >= r->ndown) {
			d->color[u] = DFS_BLACK;
			depth--;
			continue;
		}
		long v = chain_find(c, r->down[d->next[u]++]);
		if (v < 0)
			continue;
		if (d->color[v] == DFS_GREY) {
			char *loop = cycle_text(c, d->path, depth, (size_t)v);
			problems_add(p, "cycle",
				    "the down_revision links form a cycle: %s (each names the next "
				    "as its parent); break it by pointing one of them at its real "
				    "predecessor",
				    loop);
			free(loop);
		} else if (d->color[v] == DFS_WHITE) {
			d->color[v] = DFS_GREY;
			d->next[v] = 0;
			d->path[depth++] = (size_t)v;
		}
	}
}

/* Cycles through down_revision: depth-first with colors; each back edge prints its loop. */
static void check_cycles(const struct chain *c, struct problems *p)
{
	struct dfs d = {xcalloc(c->n + 1, sizeof *d.color), xmalloc((c->n + 1) * sizeof *d.path),
			xcalloc(c->n + 1, sizeof *d.next)};
	for (size_t s = 0; s < c->n; s++)
		if (d.color[s] == DFS_WHITE)
			cycles_from(c, &d, s, p);
	free(d.color);
	free(d.path);
	free(d.next);
}

/* The ids of the line a root starts, for messages: "0004 -> 0005 -> 0006"; past six ids,
 * "… -> ... -> last". *head is where the line ends. Caller frees. */
static char *describe_line(const struct chain *c, size_t root, size_t *head)
{
	struct strbuf b = STRBUF_INIT;
	size_t cur = root, count = 0;
	for (;;) {
		if (count < 6)
			sb_addf(&b, "%s%s", count ? " -> " : "", c->revs[cur].id);
		count++;
		size_t nx;
		if (children(c, cur, &nx) != 1 || count > c->n)
			break;
		cur = nx;
	}
	if (count > 6)
		sb_addf(&b, " -> ... -> %s", c->revs[cur].id);
	*head = cur;
	return sb_take(&b);
}

static int by_file(const void *a, const void *b, void *arg)
{
	const struct chain *c = arg;
	return strcmp(c->revs[*(const size_t *)a].file, c->revs[*(const size_t *)b].file);
}

/* Adds to fixes the join for an unlabeled root whose file comes right after the head of
 * another line (order: every revision in file-name order). */
static void suggest_join(const struct chain *c, const size_t *order, size_t root, struct strbuf *fixes)
{
	size_t pos = 0;
	while (order[pos] != root)
		pos++;
	if (pos == 0)
		return;
	size_t prev = order[pos - 1];
	if (children(c, prev, NULL) == 0 && !chain_is_ancestor(c, root, prev))
		sb_addf(fixes, "%sset down_revision = '%s' in %s", fixes->len ? "; " : "",
			c->revs[prev].id, c->revs[root].file);
}

/* More than one unlabeled root: each line, and the down_revision that would join them. */
static void report_roots(const struct chain *c, const size_t *roots, size_t nroots, size_t unlabeled,
			 struct problems *p)
{
	/* Every revision in file-name order: a root right after another line's head is
	 * almost always the continuation of that line. */
	size_t *order = xmalloc(c->n * sizeof *order);
	for (size_t i = 0; i < c->n; i++)
		order[i] = i;
	qsort_r(order, c->n, sizeof *order, by_file, (void *)c);
	struct strbuf lines = STRBUF_INIT, fixes = STRBUF_INIT;
	for (size_t i = 0; i < nroots; i++) {
		if (root_labeled(c, roots[i]))
			continue;
		size_t head;
		char *line = describe_line(c, roots[i], &head);
		sb_addf(&lines, "%s%s (%s, starting %s)", lines.len ? "; " : "", line,
			c->revs[roots[i]].file, c->revs[roots[i]].id);
		free(line);
		suggest_join(c, order, roots[i], &fixes);
	}
	char *all = sb_take(&lines), *fix = sb_take(&fixes);
	problems_add(p, "roots",
		    "the migrations form %zu independent chains, each with its own first "
		    "revision (down_revision = None): %s. Alembic would apply them as unrelated "
		    "histories. %s%s",
		    unlabeled, all,
		    fix[0] ? "Join them: " : "Point each later chain's first revision at the "
					 "head of the chain it continues (down_revision), "
					 "or restore the missing migrations",
		    fix);
	free(all);
	free(fix);
	free(order);
}

/* More than one unlabeled head: each of them, and the merge that joins them. */
static void report_heads(const struct chain *c, const size_t *heads, size_t nheads, size_t unlabeled,
			 struct problems *p)
{
	struct strbuf list = STRBUF_INIT, ids = STRBUF_INIT;
	for (size_t i = 0; i < nheads; i++) {
		if (head_labeled(c, heads[i]))
			continue;
		const struct rev *r = &c->revs[heads[i]];
		sb_addf(&list, "%s%s (%s)", list.len ? ", " : "", r->id, r->file);
		sb_addf(&ids, " %s", r->id);
	}
	char *all = sb_take(&list), *merge = sb_take(&ids);
	problems_add(p, "heads",
		    "the migrations have %zu heads and none of the branches declares "
		    "branch_labels: %s. Merge them with: alembic merge -m \"merge heads\"%s",
		    unlabeled, all, merge);
	free(all);
	free(merge);
}

static void check_roots_and_heads(const struct chain *c, struct problems *p)
{
	size_t *roots = xmalloc((c->n + 1) * sizeof *roots);
	size_t *heads = xmalloc((c->n + 1) * sizeof *heads);
	size_t nroots = chain_roots(c, roots, c->n), nheads = chain_heads(c, heads, c->n);
	size_t unlabeled_roots = 0, unlabeled_heads = 0;
	for (size_t i = 0; i < nroots; i++)
		unlabeled_roots += !root_labeled(c, roots[i]);
	for (size_t i = 0; i < nheads; i++)
		unlabeled_heads += !head_labeled(c, heads[i]);
	if (unlabeled_roots > 1)
		report_roots(c, roots, nroots, unlabeled_roots, p);
	if (unlabeled_heads > 1 && unlabeled_heads > unlabeled_roots)
		report_heads(c, heads, nheads, unlabeled_heads, p);
	free(roots);
	free(heads);
}

size_t chain_check(const struct chain *c, struct problems *p)
{
	for (size_t i = 0; i < c->n; i++)
		for (size_t k = 0; k < i; k++)
			if (strcmp(c->revs[i].id, c->revs[k].id) == 0)
				problems_add(p, "duplicate",
					    "revision id '%s' is declared twice: %s:%d and %s:%d; give "
					    "one of them a new id (and fix the down_revision that points "
					    "at it)",
					    c->revs[i].id, c->revs[k].file, c->revs[k].line, c->revs[i].file,
					    c->revs[i].line);
	size_t before = p->n;
	check_dangling(c, p);
	bool dangling = p->n > before;
	check_cycles(c, p);
	/* A dangling link also makes an extra head or root: saying so twice would mislead. */
	if (!dangling)
		check_roots_and_heads(c, p);
	return p->n;
}
