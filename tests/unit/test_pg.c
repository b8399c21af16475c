/* Classifying libpq's connection failures and SQLSTATEs: what is retried and what is not. */
#include "mtr/pg.h"
#include "mtr/pg_target.h"
#include "unit.h"

static char g_secrets[8][64];
static size_t g_nsecrets;

static void collect(const char *secret)
{
	if (secret && g_nsecrets < 8)
		snprintf(g_secrets[g_nsecrets++], sizeof g_secrets[0], "%s", secret);
}

/* Which parts of a URL are the password, by libpq's reading, and what was meant as one when
 * an unencoded '@' or '/' cut it. */
static void test_secrets(void)
{
	static const struct {
		const char *url;
		const char *want[4];
	} cases[] = {
		{"postgresql://u:p%40ss@h/d", {"p@ss"}},
		{"host=h password='a b' dbname=d", {"a b"}},
		{"postgresql://u:S3cr@tPw@h/d", {"S3cr@tPw", "S3cr", "tPw"}},
		{"postgresql://u:1234/5678@h/d", {"1234/5678", "1234", "5678"}},
		{"postgresql://u@h/d?application_name=x@y", {NULL}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		g_nsecrets = 0;
		pg_target_secrets(cases[i].url, collect);
		size_t n = 0;
		while (n < 4 && cases[i].want[n])
			n++;
		CHECK(g_nsecrets == n, "'%s': %zu secrets, want %zu", cases[i].url, g_nsecrets, n);
		for (size_t k = 0; k < n && k < g_nsecrets; k++)
			CHECK_STR(g_secrets[k], cases[i].want[k], cases[i].url);
	}
}

void test_pg(void)
{
	test_secrets();
	static const struct {
		const char *msg;
		enum pg_status want;
	} cases[] = {
		{"connection to server at \"127.0.0.1\", port 5432 failed: Connection refused", PG_TRANSIENT},
		{"connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory", PG_TRANSIENT},
		{"FATAL:  the database system is starting up", PG_TRANSIENT},
		{"FATAL:  the database system is shutting down", PG_TRANSIENT},
		{"FATAL:  sorry, too many clients already", PG_TRANSIENT},
		{"could not translate host name \"db\" to address: Name or service not known", PG_TRANSIENT},
		{"timeout expired", PG_TRANSIENT},
		{"FATAL:  password authentication failed for user \"app\"", PG_AUTH},
		{"fe_sendauth: no password supplied", PG_AUTH},
		{"FATAL:  role \"nobody\" does not exist", PG_AUTH},
		{"FATAL:  no pg_hba.conf entry for host \"10.0.0.1\", user \"app\", database \"app\"", PG_AUTH},
		{"FATAL:  permission denied for database \"app\"", PG_AUTH},
		{"FATAL:  database \"nope\" does not exist", PG_NO_DATABASE},
		{"invalid sslmode value: \"maybe\"", PG_CONFIG},
		{"invalid port number: \"abc\"", PG_CONFIG},
		{"SSL error: certificate verify failed", PG_CONFIG},
		{"server certificate for \"127.0.0.1\" does not match host name \"db\"", PG_CONFIG},
		{"something nobody has seen before", PG_TRANSIENT},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		enum pg_status got = pg_classify_connect_error(cases[i].msg, false);
		CHECK(got == cases[i].want, "'%s': %d, want %d", cases[i].msg, got, cases[i].want);
	}
	CHECK(pg_classify_connect_error("anything", true) == PG_AUTH, "needs password");

	static const struct {
		const char *state;
		bool transient;
	} states[] = {
		{"08006", true},  {"08001", true},  {"53300", true},  {"57P01", true}, {"57P03", true},
		{"40001", true},  {"40P01", true},  {"55P03", true},  {"", true},      {"42P01", false},
		{"42701", false}, {"23505", false}, {"22P02", false}, {"57014", false},
	};
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
		CHECK(pg_sqlstate_is_transient(states[i].state) == states[i].transient, "%s",
		      states[i].state);

	struct pg_target t = {"postgresql://u@h/d?nosuchoption=1", NULL};
	struct pg_error err;
	CHECK(pg_check_target(&t, &err) == PG_CONFIG, "bad URL");
	t.url = "postgresql://u:p@h:5432/d?sslmode=require";
	CHECK(pg_check_target(&t, &err) == PG_OK, "good URL");
	t.url = "host=h dbname=d";
	CHECK(pg_check_target(&t, &err) == PG_OK, "conninfo");

	/* What libpq would refuse only while connecting, or never: configuration errors at once,
	 * naming the setting but never the password. */
	static const struct {
		const char *url;
		enum pg_status want;
		const char *named;
	} targets[] = {
		{"postgresql://u:S3cr@tPw@h/d", PG_CONFIG, "unencoded '@'"},
		{"postgresql://u:1234/5678@h/d", PG_CONFIG, "unencoded '/'"},
		{"postgresql://u:p%40w@h/d?application_name=a@b", PG_OK, NULL},
		{"postgresql://u:pw@h/odd@name", PG_OK, NULL},
		{"postgresql://u@h/d?connect_timeout=abc", PG_CONFIG, "connect_timeout"},
		{"postgresql://u@h/d?connect_timeout=%2010%20", PG_OK, NULL},
		{"postgresql://u@h/d?target_session_attrs=writable", PG_CONFIG, "target_session_attrs"},
		{"postgresql://u@h/d?target_session_attrs=prefer-standby", PG_OK, NULL},
		{"postgresql://u@h1,h2/d?hostaddr=10.0.0.1", PG_CONFIG, "hostaddr"},
		{"postgresql://u@h1:1,h2:2,h3:3/d", PG_OK, NULL},
		{"host=h1,h2 port=1,2,3 dbname=d", PG_CONFIG, "port"},
		{"postgresql://u@h/d?sslcert=/nonexistent/c.crt", PG_CONFIG, "/nonexistent/c.crt"},
		{"postgresql://u@h/d?sslcert=/nonexistent/c.crt&sslmode=disable", PG_OK, NULL},
	};
	for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
		t.url = targets[i].url;
		enum pg_status got = pg_check_target(&t, &err);
		CHECK(got == targets[i].want, "'%s': %d, want %d (%s)", t.url, got, targets[i].want, err.msg);
		if (targets[i].named)
			CHECK(strstr(err.msg, targets[i].named) != NULL, "'%s': %s", t.url, err.msg);
		CHECK(!strstr(err.msg, "S3cr") && !strstr(err.msg, "tPw") && !strstr(err.msg, "5678"),
		      "'%s': a piece of the password in '%s'", t.url, err.msg);
	}
}
