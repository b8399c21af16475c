/* Fuzz target: Alembic revision files read as text, then the graph checks over what they declare.
 * The input is one file, or several separated by NUL bytes (a versions directory). */
#include "fuzz.h"
#include "mtr/chain.h"
#include "mtr/problems.h"
#include "mtr/source_alembic.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_FILES 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *texts[MAX_FILES];
	size_t n = fuzz_parts(data, size, texts, MAX_FILES);
	struct chain c = {0};
	for (size_t i = 0; i < n; i++) {
		char file[64], err[512];
		snprintf(file, sizeof file, "versions/%04zu_x.py", i);
		struct rev r;
		if (alembic_parse_revision(texts[i], file, &r, err, sizeof err)) {
			if (!r.id || r.line < 1 || (r.ndown && !r.down) || strcmp(r.file, file) != 0)
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
	size_t left = chain_pending(&c, heads, nheads, pending);
	if (all > c.n || left > c.n || nheads > c.n || nroots > c.n)
		abort();
	for (size_t i = 0; i < nroots && nheads; i++)
		(void)chain_is_ancestor(&c, roots[i], heads[i % nheads]);
	free(heads);
	free(roots);
	free(pending);
	chain_free(&c);
	return 0;
}
