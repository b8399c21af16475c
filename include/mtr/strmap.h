/* The one string → index table: open addressing over keys that the caller owns. */
#ifndef MTR_STRMAP_H
#define MTR_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Zero-initialised is empty. Keys are not copied: they must outlive the map. */
struct strmap {
	struct strmap_slot {
		const char *key;
		uint32_t val;
	} *s;
	size_t cap, n; /* cap: a power of two, or 0 */
};

/* The value stored for key, or -1. */
long strmap_get(const struct strmap *m, const char *key);
/* Stores key → val unless key is there already (then false: the first one stays). */
bool strmap_put(struct strmap *m, const char *key, uint32_t val);
void strmap_free(struct strmap *m);

#endif
