/* Shared by the fuzz targets: libFuzzer's entry point and the slicing of an input into strings. */
#ifndef MTR_FUZZ_H
#define MTR_FUZZ_H

#include "mtr/util.h"

#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as NUL-separated strings, each a new copy (the last one ends the input, so an input
 * without NUL is one string). At most max parts; returns how many. Free with fuzz_parts_free. */
static inline size_t fuzz_parts(const uint8_t *data, size_t size, char **parts, size_t max)
{
	size_t n = 0, start = 0;
	for (size_t i = 0; i <= size && n < max; i++) {
		if (i == size || data[i] == '\0') {
			parts[n++] = xstrndup((const char *)data + start, i - start);
			start = i + 1;
		}
	}
	return n;
}

static inline void fuzz_parts_free(char **parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(parts[i]);
}

/* The whole input as one string (up to its first NUL); caller frees. */
static inline char *fuzz_str(const uint8_t *data, size_t size)
{
	return xstrndup((const char *)data, size);
}

#endif
