/* Failure classes, the pause schedule, signatures and the state record. */
#include "mtr/backup.h"
#include "mtr/breaker.h"
#include "mtr/exitcode.h"
#include "mtr/status.h"
#include "unit.h"

void test_breaker(void)
{
	static const struct {
		int code;
		const char *sqlstate;
		enum failure_class want;
	} classes[] = {
		{MTR_EXIT_UNAVAILABLE, NULL, FAILURE_TRANSIENT}, {MTR_EXIT_TEMPFAIL, "", FAILURE_TRANSIENT},
		{MTR_EXIT_USAGE, NULL, FAILURE_PERMANENT},       {MTR_EXIT_AUTH, NULL, FAILURE_PERMANENT},
		{MTR_EXIT_INCONSISTENT, NULL, FAILURE_PERMANENT}, {MTR_EXIT_BACKUP, NULL, FAILURE_PERMANENT},
		{MTR_EXIT_MIGRATION, "42601", FAILURE_PERMANENT}, {MTR_EXIT_MIGRATION, "42P01", FAILURE_PERMANENT},
		{MTR_EXIT_MIGRATION, "23505", FAILURE_PERMANENT}, {MTR_EXIT_MIGRATION, "22P02", FAILURE_PERMANENT},
		{MTR_EXIT_MIGRATION, "08006", FAILURE_TRANSIENT}, {MTR_EXIT_MIGRATION, "53300", FAILURE_TRANSIENT},
		{MTR_EXIT_MIGRATION, "57P01", FAILURE_TRANSIENT}, {MTR_EXIT_MIGRATION, "57P03", FAILURE_TRANSIENT},
		{MTR_EXIT_MIGRATION, "40001", FAILURE_TRANSIENT}, {MTR_EXIT_MIGRATION, "40P01", FAILURE_TRANSIENT},
		{MTR_EXIT_MIGRATION, "55P03", FAILURE_TRANSIENT}, {MTR_EXIT_MIGRATION, NULL, FAILURE_PERMANENT},
	};
	for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
		CHECK(breaker_classify(classes[i].code, classes[i].sqlstate) == classes[i].want,
		      "code %d sqlstate %s", classes[i].code, classes[i].sqlstate ? classes[i].sqlstate : "-");

	static const struct {
		long n;
		int64_t base, cap, want;
	} pauses[] = {
		{0, 1000, 300000, 0},     {1, 1000, 300000, 2000},  {2, 1000, 300000, 4000},
		{3, 1000, 300000, 8000},  {1, 5000, 300000, 10000}, {6, 5000, 300000, 300000},
		{100, 5000, 300000, 300000},
	};
	for (size_t i = 0; i < sizeof pauses / sizeof pauses[0]; i++) {
		int64_t got = breaker_pause(pauses[i].n, pauses[i].base, pauses[i].cap);
		CHECK(got == pauses[i].want, "pause(%ld) = %lld, want %lld", pauses[i].n, (long long)got,
		      (long long)pauses[i].want);
	}

	struct failure f = {.code = 70, .phase = "migrate", .sqlstate = "42601", .revision = "0002",
			    .fingerprint = "00ff"};
	char sig[200];
	breaker_signature(&f, sig, sizeof sig);
	CHECK_STR(sig, "70:migrate:42601:0002:00ff", "signature");

	struct failure_memory m;
	CHECK(breaker_parse_state("{\"signature\":\"x\",\"count\":3,\"first_ms\":1,\"last_ms\":2}", &m) &&
		      m.count == 3 && strcmp(m.signature, "x") == 0,
	      "state record");
	CHECK(!breaker_parse_state("{not json", &m), "corrupt");
	CHECK(!breaker_parse_state("{\"signature\":\"x\",\"count\":0,\"first_ms\":1,\"last_ms\":2}", &m), "count 0");
	CHECK(!breaker_parse_state("[]", &m), "not an object");
	/* Numbers no long long holds: converting them was undefined (found by fuzzing). */
	CHECK(!breaker_parse_state("{\"signature\":\"1\",\"count\":3,\"first_ms\":1.5e102,\"last_ms\":1}", &m),
	      "first_ms out of range");
	CHECK(!breaker_parse_state("{\"signature\":\"1\",\"count\":1e300,\"first_ms\":1,\"last_ms\":1}", &m),
	      "count out of range");
	CHECK(breaker_parse_state("{\"signature\":\"1\",\"count\":2,\"first_ms\":-1,\"last_ms\":1763712060456}",
				  &m) && m.last_ms == 1763712060456LL,
	      "wall-clock milliseconds");

	/* The status file read back by --health: a pid is a whole number a pid_t holds. */
	static const struct {
		const char *text;
		bool has_state;
		const char *state;
		long pid;
	} status[] = {
		{"{\"state\":\"running\",\"pid\":42}", true, "running", 42},
		{"{\"state\":\"running\",\"pid\":4294967297}", true, "running", 0},
		{"{\"state\":\"running\",\"pid\":1e300}", true, "running", 0},
		{"{\"state\":\"running\",\"pid\":1.5}", true, "running", 0},
		{"{\"state\":\"running\",\"pid\":0}", true, "running", 0},
		{"{\"state\":\"waiting\",\"pid\":\"42\"}", true, "waiting", 0},
		{"{\"pid\":42}", false, "", 42},
		{"{\"state\":", false, "", 0},
	};
	for (size_t i = 0; i < sizeof status / sizeof status[0]; i++) {
		char state[64];
		long pid = -1;
		bool has = status_parse(status[i].text, state, sizeof state, &pid);
		CHECK(has == status[i].has_state && strcmp(state, status[i].state) == 0 && pid == status[i].pid,
		      "status %s: %d '%s' %ld", status[i].text, has, state, pid);
	}

	/* pg_dump --version, as Debian and upstream print it */
	CHECK(backup_parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n") == 15, "15");
	CHECK(backup_parse_version("pg_dump (PostgreSQL) 9.6.24\n") == 9, "9.6");
	CHECK(backup_parse_version("pg_dump (PostgreSQL) 17beta1\n") == 17, "17beta1");
	CHECK(backup_parse_version("something else") == -1, "garbage");
	CHECK(backup_parse_version("pg_dump (PostgreSQL) 7777777777") == -1, "no int: not a wrapped one");
}
