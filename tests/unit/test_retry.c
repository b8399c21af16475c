/* Backoff arithmetic: ceilings double from the base up to the cap; jitter stays in range. */
#include "mtr/retry.h"
#include "unit.h"

void test_retry(void)
{
	static const struct {
		int64_t base, cap;
		unsigned attempt;
		int64_t want;
	} ceilings[] = {
		{100, 2000, 0, 100},  {100, 2000, 1, 200},   {100, 2000, 2, 400},
		{100, 2000, 4, 1600}, {100, 2000, 5, 2000},  {100, 2000, 60, 2000},
		{100, 50, 0, 50},     {1000, 30000, 3, 8000}, {100, 2000, 1000, 2000},
	};
	for (size_t i = 0; i < sizeof ceilings / sizeof ceilings[0]; i++) {
		int64_t got = backoff_ceiling(ceilings[i].base, ceilings[i].cap, ceilings[i].attempt);
		CHECK(got == ceilings[i].want, "ceiling(%lld,%lld,%u) = %lld, want %lld",
		      (long long)ceilings[i].base, (long long)ceilings[i].cap, ceilings[i].attempt,
		      (long long)got, (long long)ceilings[i].want);
	}

	/* The first retry comes within 100 ms; every delay lies in [ceiling/2, ceiling]. */
	for (uint64_t seed = 1; seed < 200; seed++) {
		struct backoff b;
		backoff_init(&b, 100, 2000, seed);
		for (unsigned k = 0; k < 12; k++) {
			int64_t ceil = backoff_ceiling(100, 2000, k);
			int64_t d = backoff_next(&b);
			CHECK(d >= ceil / 2 && d <= ceil, "seed %llu delay %u = %lld outside [%lld, %lld]",
			      (unsigned long long)seed, k, (long long)d, (long long)ceil / 2,
			      (long long)ceil);
		}
	}

	/* Jitter actually varies between replicas (different seeds). */
	struct backoff a, b;
	backoff_init(&a, 100, 2000, 11);
	backoff_init(&b, 100, 2000, 12345);
	int differ = 0;
	for (int k = 0; k < 8; k++)
		differ += backoff_next(&a) != backoff_next(&b);
	CHECK(differ > 0, "two seeds gave identical delays");
}
