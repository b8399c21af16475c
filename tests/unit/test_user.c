/* --user's ids across the re-exec, its parsing, and the termination message's summary. */
#include "mtr/exitcode.h"
#include "mtr/log.h"
#include "mtr/termlog.h"
#include "mtr/user.h"
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static void test_encoding(void)
{
	struct user_ids u = {.uid = 10001, .gid = 10002, .ngroups = 3, .groups = {10002, 27, 999}};
	snprintf(u.home, sizeof u.home, "/home/a:b,c");
	char *text = user_encode(&u);
	CHECK_STR(text, "10001:10002:10002,27,999:/home/a:b,c", "encode");
	struct user_ids back;
	CHECK(user_decode(text, &back), "decode %s", text);
	CHECK(back.uid == 10001 && back.gid == 10002 && back.ngroups == 3 && back.groups[2] == 999,
	      "ids back: %u %u %zu", (unsigned)back.uid, (unsigned)back.gid, back.ngroups);
	CHECK_STR(back.home, "/home/a:b,c", "home back");
	free(text);
	static const char *const bad[] = {"", "1", "1:2", "1:2:3", "x:2:3:/", "1:2:3:", "1:2:a:/",
					  "1:4294967295:3:/", "-1:2:3:/"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(!user_decode(bad[i], &back), "decoded '%s'", bad[i]);
}

static void test_resolve(void)
{
	char err[256];
	struct user_ids u;
	CHECK(user_resolve("4000000:55", &u, err, sizeof err) && u.uid == 4000000 && u.gid == 55 &&
		      u.ngroups == 1 && u.groups[0] == 55,
	      "numeric pair: %s", err);
	CHECK_STR(u.home, "/", "home of an id without an entry");
	CHECK(user_resolve("4000000", &u, err, sizeof err) && u.gid == 0, "uid alone: group 0 (%s)", err);
	CHECK(user_resolve("0", &u, err, sizeof err) && u.uid == 0 && u.ngroups >= 1, "root: %s", err);
	static const char *const bad[] = {"", ":", ":5", "5:", "no-such-user-xyz", "0:no-such-group-xyz",
					  "99999999999", "4294967295"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(!user_resolve(bad[i], &u, err, sizeof err) && strstr(err, "--user"),
		      "resolved '%s'", bad[i]);
}

static void test_summary(void)
{
	char out[TERMLOG_MAX + 1];
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	dup2(null, STDERR_FILENO);
	CHECK(termlog_summary(70, out, TERMLOG_MAX) == 0 && out[0] == '\0', "no error, no summary: %s", out);
	log_add_secret("s3cr3t-pw");
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", "2_b.sql"), LF_I("line", 2), LF_S("hint", ""), LF_I("exit_code", 70)),
		  "it failed near s3cr3t-pw; fix the file");
	log_event(LOG_ERROR, "migrate.failed",
		  LOG_FIELDS(LF_S("file", "2_b.sql"), LF_I("line", 2), LF_S("hint", ""), LF_I("exit_code", 70)),
		  "it failed near s3cr3t-pw; fix the file");
	size_t n = termlog_summary(70, out, TERMLOG_MAX);
	CHECK_STR(out, "migrate-then-run exited 70: a migration failed\n"
		       "migrate.failed: it failed near ***; fix the file file=2_b.sql line=2\n",
		  "summary, the repeat once");
	CHECK(n == strlen(out), "length %zu", n);
	/* Long messages: cut at the limit, never inside a UTF-8 sequence. */
	char big[1500];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (int i = 0; i < 6; i++)
		log_event(LOG_ERROR, "check.failed", NULL, "%d \xc3\xa9\xc3\xa9 %s", i, big);
	n = termlog_summary(MTR_EXIT_INCONSISTENT, out, TERMLOG_MAX);
	CHECK(n <= TERMLOG_MAX && n > TERMLOG_MAX - 4 && strlen(out) == n, "cut to %zu", n);
	CHECK(((unsigned char)out[n - 1] & 0xC0) != 0xC0, "cut inside a character");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
}

void test_user(void)
{
	test_encoding();
	test_resolve();
	test_summary();
}
