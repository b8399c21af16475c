/* Backoff policy: exponential growth with jitter, capped, for every retry loop. */
#ifndef MTR_RETRY_H
#define MTR_RETRY_H

#include <stdint.h>

struct backoff {
	int64_t base_ms;  /* the first delay is at most this */
	int64_t cap_ms;   /* no delay is longer than this */
	unsigned attempt; /* delays handed out so far */
	uint64_t rng;     /* xorshift state; never 0 */
};

void backoff_init(struct backoff *b, int64_t base_ms, int64_t cap_ms, uint64_t seed);

/* The ceiling for delay number `attempt` (0-based): min(cap, base * 2^attempt). */
int64_t backoff_ceiling(int64_t base_ms, int64_t cap_ms, unsigned attempt);

/* The next delay: "equal jitter", uniformly in [ceiling/2, ceiling]. */
int64_t backoff_next(struct backoff *b);

#endif
