/* Backoff policy: exponential growth with jitter, capped, for every retry loop. */
#include "mtr/retry.h"

void backoff_init(struct backoff *b, int64_t base_ms, int64_t cap_ms, uint64_t seed)
{
	b->base_ms = base_ms > 0 ? base_ms : 1;
	b->cap_ms = cap_ms > 0 ? cap_ms : 1;
	b->attempt = 0;
	b->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

int64_t backoff_ceiling(int64_t base_ms, int64_t cap_ms, unsigned attempt)
{
	int64_t d = base_ms;
	for (unsigned i = 0; i < attempt && d < cap_ms; i++)
		d *= 2;
	return d < cap_ms ? d : cap_ms;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int64_t backoff_next(struct backoff *b)
{
	int64_t ceil = backoff_ceiling(b->base_ms, b->cap_ms, b->attempt);
	if (b->attempt < 64)
		b->attempt++;
	int64_t half = ceil / 2;
	/* Jitter spreads N replicas that started together. */
	return ceil - half + (int64_t)(xorshift64(&b->rng) % (uint64_t)(half + 1));
}
