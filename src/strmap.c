/* The one string → index table (STYLE: one way for each chore): ids of revisions, branch labels,
 * the real paths of files already read. */
#include "mtr/strmap.h"
#include "mtr/util.h"

#include <stdlib.h>
#include <string.h>

static size_t home(const struct strmap *m, const char *key)
{
	return (size_t)fnv1a(key, strlen(key), FNV_OFFSET) & (m->cap - 1);
}

long strmap_get(const struct strmap *m, const char *key)
{
	if (!m->cap)
		return -1;
	for (size_t i = home(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (!m->s[i].key)
			return -1;
		if (strcmp(m->s[i].key, key) == 0)
			return m->s[i].val;
	}
}

static void grow(struct strmap *m)
{
	struct strmap old = *m;
	m->cap = old.cap ? old.cap * 2 : 64;
	m->s = xcalloc(m->cap, sizeof *m->s);
	m->n = 0;
	for (size_t i = 0; i < old.cap; i++) {
		if (!old.s[i].key)
			continue;
		size_t k = home(m, old.s[i].key);
		while (m->s[k].key)
			k = (k + 1) & (m->cap - 1);
		m->s[k] = old.s[i];
		m->n++;
	}
	free(old.s);
}

bool strmap_put(struct strmap *m, const char *key, uint32_t val)
{
	if ((m->n + 1) * 2 > m->cap)
		grow(m);
	size_t i = home(m, key);
	for (; m->s[i].key; i = (i + 1) & (m->cap - 1))
		if (strcmp(m->s[i].key, key) == 0)
			return false;
	m->s[i].key = key;
	m->s[i].val = val;
	m->n++;
	return true;
}

void strmap_free(struct strmap *m)
{
	free(m->s);
	memset(m, 0, sizeof *m);
}
