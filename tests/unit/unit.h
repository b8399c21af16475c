/* A minimal table-driven unit test harness: CHECK records failures and keeps going. */
#ifndef MTR_UNIT_H
#define MTR_UNIT_H

#include <stdio.h>
#include <string.h>

extern int unit_checks, unit_failures;

#define CHECK(cond, ...)                                                                    \
	do {                                                                                \
		unit_checks++;                                                              \
		if (!(cond)) {                                                              \
			unit_failures++;                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                       \
			fputc('\n', stderr);                                                \
		}                                                                           \
	} while (0)

#define CHECK_STR(got, want, ctx)                                                           \
	do {                                                                                \
		const char *got_ = (got);                                                   \
		CHECK(got_ && strcmp(got_, (want)) == 0, "%s: got '%s', want '%s'", (ctx),  \
		      got_ ? got_ : "(null)", (want));                                      \
	} while (0)

void test_argv(void);
void test_chores(void);
void test_config(void);
void test_redact(void);
void test_retry(void);
void test_log(void);
void test_pg(void);
void test_sql(void);
void test_alembic(void);
void test_breaker(void);
void test_http(void);
void test_user(void);
void test_fold(void);
void test_tools(void);

#endif
