/* Findings of a check before migrating: each a kind and the whole message with its fix. */
#ifndef MTR_PROBLEMS_H
#define MTR_PROBLEMS_H

#include <stddef.h>

struct problem {
	const char *kind; /* "roots", "checksum", "stale_row" … (static storage) */
	char *msg;
};

struct problems {
	struct problem *items;
	size_t n;
};

void problems_add(struct problems *p, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logs each finding as a check.failed event. */
void problems_log(const struct problems *p);

void problems_free(struct problems *p);

#endif
