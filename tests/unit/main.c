/* Runs every unit test group and prints a one-line summary. */
#include "unit.h"

int unit_checks, unit_failures;

int main(void)
{
	struct {
		const char *name;
		void (*fn)(void);
	} groups[] = {{"argv", test_argv},   {"config", test_config}, {"redact", test_redact},
		      {"retry", test_retry}, {"log", test_log},       {"pg", test_pg},
		      {"sql", test_sql},     {"alembic", test_alembic},
		      {"breaker", test_breaker}, {"http", test_http},
		      {"chores", test_chores}, {"fold", test_fold}, {"user", test_user},
		      {"tools", test_tools}};
	for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
		int before = unit_failures;
		groups[i].fn();
		printf("unit %-8s %s\n", groups[i].name, unit_failures == before ? "ok" : "FAILED");
	}
	printf("unit tests: %d checks, %d failed\n", unit_checks, unit_failures);
	return unit_failures ? 1 : 0;
}
