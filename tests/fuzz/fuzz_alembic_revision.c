/* Fuzz target: Alembic revision files read as text, then the graph checks over what they declare.
 * The input is one file, or several separated by NUL bytes (a versions directory). Where Python
 * is present (MTR_FUZZ_PYTHON), each file is also read by ast.literal_eval (tests/fuzz/
 * alembic_oracle.py): whenever Python can say what the file binds, we must read the same. */
#include "fuzz.h"
#include "oracle.h"
#include "mtr/alembic_rev.h"
#include "mtr/chain.h"
#include "mtr/problems.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_FILES 32

/* Our reading of one file against Python's; any difference aborts with both. */
static void differ(const char *text, bool ok, const struct rev *r, const char *err)
{
	cJSON *j = oracle_ask('R', text, strlen(text));
	if (!j || oracle_flag(j, "skip")) {
		cJSON_Delete(j);
		return;
	}
	bool same = ok == oracle_flag(j, "ok");
	if (same && ok) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
		const cJSON *labels = cJSON_GetObjectItemCaseSensitive(j, "labels");
		same = cJSON_IsString(id) && strcmp(id->valuestring, r->id) == 0 &&
		       oracle_same_list(cJSON_GetObjectItemCaseSensitive(j, "down"), r->down, r->ndown) &&
		       oracle_same_list(cJSON_GetObjectItemCaseSensitive(j, "depends"), r->depends, r->ndepends) &&
		       (r->labels_unknown ? cJSON_IsString(labels) && strcmp(labels->valuestring, "unknown") == 0
					  : oracle_same_list(labels, r->labels, r->nlabels));
	}
	if (!same) {
		char *py = cJSON_PrintUnformatted(j);
		fprintf(stderr, "differs from Python: ours ok=%d id=%s ndown=%zu nlabels=%zu unknown=%d ndepends=%zu "
			"(%s)\nPython: %s\n",
			ok, ok ? r->id : "-", ok ? r->ndown : 0, ok ? r->nlabels : 0, ok && r->labels_unknown,
			ok ? r->ndepends : 0, ok ? "" : err, py);
		abort();
	}
	cJSON_Delete(j);
}

/* The plan applies every revision after the ones it names. */
static void in_order(struct chain *c, const size_t *order, size_t n)
{
	size_t *pos = xmalloc((c->n + 1) * sizeof *pos);
	for (size_t i = 0; i < n; i++)
		pos[order[i]] = i;
	for (size_t i = 0; i < n; i++) {
		const struct rev *r = &c->revs[order[i]];
		for (size_t k = 0; k < r->ndown + r->ndepends; k++) {
			long p = chain_find(c, k < r->ndown ? r->down[k] : r->depends[k - r->ndown]);
			if (p >= 0 && pos[p] >= i)
				abort();
		}
	}
	free(pos);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *texts[MAX_FILES];
	size_t n = fuzz_parts(data, size, texts, MAX_FILES);
	struct chain c = {0};
	for (size_t i = 0; i < n; i++) {
		char file[64], err[512] = "";
		snprintf(file, sizeof file, "versions/%04zu_x.py", i);
		struct rev r;
		bool ok = alembic_rev_parse(texts[i], strlen(texts[i]), file, &r, err, sizeof err);
		differ(texts[i], ok, &r, err);
		if (ok) {
			if (!r.id || r.line < 0 || (r.ndown && !r.down) || strcmp(r.file, file) != 0)
				abort(); /* a parsed revision always has its id and where it came from */
			chain_add(&c, &r);
		} else {
			if (!err[0])
				abort(); /* a refusal always says why */
			rev_free(&r);
		}
	}
	fuzz_parts_free(texts, n);

	struct problems p = {0};
	chain_check(&c, &p);
	problems_free(&p);
	size_t *heads = xmalloc((c.n + 1) * sizeof *heads), *roots = xmalloc((c.n + 1) * sizeof *roots);
	size_t *pending = xmalloc((c.n + 1) * sizeof *pending);
	size_t nheads = chain_heads(&c, heads, c.n), nroots = chain_roots(&c, roots, c.n);
	/* From nothing applied, and from the heads (where nothing should be left). */
	size_t all = chain_pending(&c, NULL, 0, pending);
	if (chain_plannable(&c) && all != c.n)
		abort(); /* from nothing, everything is pending */
	if (chain_plannable(&c))
		in_order(&c, pending, all);
	size_t left = chain_pending(&c, heads, nheads, pending);
	if (all > c.n || left > c.n || nheads > c.n || nroots > c.n || (chain_plannable(&c) && left))
		abort(); /* at the heads, nothing is left */
	for (size_t i = 0; i < nroots && nheads; i++)
		(void)chain_is_ancestor(&c, roots[i], heads[i % nheads]);
	free(heads);
	free(roots);
	free(pending);
	chain_free(&c);
	return 0;
}
