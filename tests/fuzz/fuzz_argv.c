/* Fuzz target: the --migrate-cmd splitter, and the quoting that shows a command in logs: a
 * command split, joined and split again must give the same words. */
#include "fuzz.h"
#include "mtr/argv.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size);
	char **v, err[256] = "";
	int n;
	if (!argv_split(s, &v, &n, err, sizeof err)) {
		if (!err[0])
			abort();
		free(s);
		return 0;
	}
	if (n < 1 || v[n] != NULL)
		abort();
	char *joined = argv_join(v);
	char **again;
	int n2;
	if (!argv_split(joined, &again, &n2, err, sizeof err)) {
		fprintf(stderr, "argv_join gave '%s', which does not split: %s\n", joined, err);
		abort();
	}
	if (n2 != n)
		abort();
	for (int i = 0; i < n; i++)
		if (strcmp(v[i], again[i]) != 0) {
			fprintf(stderr, "word %d: '%s' came back as '%s' from '%s'\n", i, v[i], again[i],
				joined);
			abort();
		}
	argv_free(again);
	free(joined);
	argv_free(v);
	free(s);
	return 0;
}
