/* HTTP helpers without a network: URLs as logs show them, URL checks, retry classes, the
 * webhook payload, and the repeatable URL options. */
#include "mtr/config.h"
#include "mtr/http.h"
#include "mtr/log.h"
#include "mtr/notify.h"
#include "unit.h"

#include <cJSON.h>
#include <stdlib.h>

static void test_public(void)
{
	static const struct {
		const char *in;
		bool hide_path;
		const char *want;
	} cases[] = {
		{"https://b.s3.amazonaws.com/k/x.dump?X-Amz-Signature=abc&X-Amz-Credential=d", false,
		 "https://b.s3.amazonaws.com/k/x.dump?***"},
		{"http://user:pw@dav.local:8080/backups/", false, "http://***@dav.local:8080/backups/"},
		{"http://u:p@w@h/x", false, "http://***"}, /* curl refuses it: shown as nothing */
		{"https://hooks.slack.com/services/T0/B0/XYZ", true, "https://hooks.slack.com/***"},
		{"https://h.example/", true, "https://h.example/"},
		{"https://h.example", true, "https://h.example/"},
		/* a password with an unencoded '/' or '#': nothing of it shows */
		{"https://user:se/cretpw@host/x", false, "https://***"},
		{"https://user:se#cretpw@host/x", false, "https://***"},
		{"not a url at all", false, "***"},
		{"https://h.example/hook?token=1", true, "https://h.example/***?***"},
		{"http://127.0.0.1:9/healthz", false, "http://127.0.0.1:9/healthz"},
		{"http://h/a#frag", false, "http://h/a"}, /* a fragment is never sent */
		/* "scheme://" only counts at the start (found by fuzzing) */
		{"?password=abc postgresql://x", false, "***"},
		{"h/p?q=1 then http://x", false, "***"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = http_url_public(cases[i].in, cases[i].hide_path);
		CHECK_STR(got, cases[i].want, cases[i].in);
		free(got);
	}
}

static void test_check_url(void)
{
	static const struct {
		const char *url;
		bool ok;
		const char *why;
	} cases[] = {
		{"http://127.0.0.1:8080/x", true, ""},
		{"https://h.example/a?b=c", true, ""},
		{"ftp://h/x", false, "http:// or https://"},
		{"file:///etc/passwd", false, "http:// or https://"},
		{"not a url", false, "not a URL"},
		{"", false, "not a URL"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[256] = "";
		bool ok = http_check_url(cases[i].url, err, sizeof err);
		CHECK(ok == cases[i].ok, "%s: got %d (%s)", cases[i].url, ok, err);
		CHECK(strstr(err, cases[i].why) != NULL, "%s: error '%s' lacks '%s'", cases[i].url, err,
		      cases[i].why);
	}
}

static void test_retryable(void)
{
	struct http_result r = {0};
	static const struct {
		long status;
		int curl;
		bool retry;
	} cases[] = {
		{500, 0, true}, {502, 0, true}, {503, 0, true}, {408, 0, true}, {429, 0, true},
		{403, 0, false}, {404, 0, false}, {411, 0, false}, {200, 0, false},
		{0, 7 /* CURLE_COULDNT_CONNECT */, true}, {0, 28 /* CURLE_OPERATION_TIMEDOUT */, true},
		{0, 52 /* CURLE_GOT_NOTHING */, true}, {0, 60 /* CURLE_PEER_FAILED_VERIFICATION */, false},
		{0, 42 /* CURLE_ABORTED_BY_CALLBACK */, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		r.status = cases[i].status;
		r.curl_code = cases[i].curl;
		CHECK(http_retryable(&r) == cases[i].retry, "status %ld curl %d", cases[i].status,
		      cases[i].curl);
	}
	r.status = 503;
	r.signo = 15;
	CHECK(!http_retryable(&r), "a stop signal is never retried");
}

static void test_payload(void)
{
	log_add_secret("Sup3r-Secret-pw");
	struct notify_report n = {
		.event = "failure", .phase = "migrate", .exit_code = 70,
		.message = "password authentication failed: Sup3r-Secret-pw", .sqlstate = "42P01",
		.file = "2_bad.sql:2:13", .revision = "2", .from = "", .to = "2", .backup_path = NULL,
		.database = "app", .wait_ms = 1, .backup_ms = 2, .migrate_ms = 3, .total_ms = 6,
	};
	char *text = notify_payload(&n);
	CHECK(strstr(text, "Sup3r-Secret-pw") == NULL, "payload leaks the password: %s", text);
	cJSON *o = cJSON_Parse(text);
	CHECK(o != NULL, "not JSON: %s", text);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "file")), "2_bad.sql:2:13", "file");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "sqlstate")), "42P01", "sqlstate");
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "from")), "from: null for a new database");
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "backup_path")), "backup_path: null");
	CHECK(cJSON_GetObjectItemCaseSensitive(o, "exit_code")->valuedouble == 70, "exit_code");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "durations_ms");
	CHECK(cJSON_GetObjectItemCaseSensitive(d, "total")->valuedouble == 6, "durations");
	cJSON_Delete(o);
	free(text);
	n.event = "success";
	text = notify_payload(&n);
	CHECK(strstr(text, "\"error\"") == NULL, "a success has no error: %s", text);
	free(text);
}

static void test_list_options(void)
{
	struct config cfg;
	char err[512];
	setenv("MTR_NOTIFY_URL", "  http://a/1\thttp://b/2\n", 1);
	char *argv1[] = {"mtr", "--sql-dir", "m", "--migrate-only", NULL};
	CHECK(config_parse(&cfg, 4, argv1, err, sizeof err) == CONFIG_OK, "%s", err);
	CHECK(cfg.notify_url.n == 2, "env list: %zu", cfg.notify_url.n);
	if (cfg.notify_url.n == 2)
		CHECK_STR(cfg.notify_url.v[1], "http://b/2", "second from env");
	config_free(&cfg);
	/* flags replace the variable's list, then add up */
	char *argv2[] = {"mtr", "--notify-url", "http://c/3", "--notify-url=http://d/4", "--sql-dir", "m",
			 "--migrate-only", NULL};
	CHECK(config_parse(&cfg, 7, argv2, err, sizeof err) == CONFIG_OK, "%s", err);
	CHECK(cfg.notify_url.n == 2 && strcmp(cfg.notify_url.v[0], "http://c/3") == 0, "flags win");
	config_free(&cfg);
	unsetenv("MTR_NOTIFY_URL");
	char *argv3[] = {"mtr", "--wait-http", "gopher://x", "--sql-dir", "m", "--migrate-only", NULL};
	CHECK(config_parse(&cfg, 6, argv3, err, sizeof err) == CONFIG_ERROR, "gopher accepted");
	CHECK(strstr(err, "--wait-http") != NULL, "error names the option: %s", err);
	config_free(&cfg);
	char *argv4[] = {"mtr", "--notify-url", "https://h/tok3n-very-secret?k=v", "--notify-url", "ftp://h/x",
			 "--sql-dir", "m", "--migrate-only", NULL};
	CHECK(config_parse(&cfg, 8, argv4, err, sizeof err) == CONFIG_ERROR, "ftp accepted");
	CHECK(strstr(err, "tok3n") == NULL, "%s", err);
	config_free(&cfg);
}

void test_http(void)
{
	test_public();
	test_check_url();
	test_retryable();
	test_payload();
	test_list_options();
}
