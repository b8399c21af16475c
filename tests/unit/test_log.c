/* The JSON log line: fixed keys first, fields typed, passwords hidden, always valid UTF-8. */
#include "mtr/log.h"
#include "unit.h"

#include <cJSON.h>
#include <stdlib.h>

void test_log(void)
{
	log_add_secret("t0ps3cret");
	/* 2026-11-21T10:00:00.123Z */
	long long ts = 1795255200123LL;
	char *line = log_format_line(
		LOG_FORMAT_JSON, ts, LOG_WARN, "migrate.output",
		LOG_FIELDS(LF_S("stream", "stderr"), LF_S("line", "url=postgresql://u:t0ps3cret@h/d"),
			   LF_I("attempt", 3), LF_B("transient", true), LF_S("msg", "ignored")),
		"bad byte \xff here, password t0ps3cret");
	CHECK(strncmp(line, "{\"ts\":\"2026-11-21T10:00:00.123Z\",\"level\":\"warn\",\"event\":"
			    "\"migrate.output\",\"msg\":",
		      74) == 0,
	      "fixed keys first: %s", line);
	CHECK(strstr(line, "t0ps3cret") == NULL, "secret leaked: %s", line);
	CHECK(strchr(line, '\n') == NULL, "one line: %s", line);
	cJSON *o = cJSON_Parse(line);
	CHECK(o != NULL, "not JSON: %s", line);
	if (o) {
		cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "msg");
		CHECK(cJSON_IsString(msg) && strstr(msg->valuestring, "\xEF\xBF\xBD") &&
			      strstr(msg->valuestring, "password ***"),
		      "msg: %s", line);
		cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "line");
		CHECK(cJSON_IsString(l) && strcmp(l->valuestring, "url=postgresql://u:***@h/d") == 0,
		      "line field: %s", line);
		CHECK(cJSON_GetObjectItemCaseSensitive(o, "attempt")->valuedouble == 3, "int field");
		CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "transient")), "bool field");
		CHECK(cJSON_GetArraySize(o) == 8, "8 keys (msg not duplicated): %s", line);
		cJSON_Delete(o);
	}
	free(line);

	line = log_format_line(LOG_FORMAT_JSON, ts, LOG_INFO, "wait.ready", NULL, "quote \" and \\");
	o = cJSON_Parse(line);
	CHECK(o && strcmp(cJSON_GetObjectItemCaseSensitive(o, "msg")->valuestring, "quote \" and \\") == 0,
	      "escaping: %s", line);
	cJSON_Delete(o);
	free(line);

	line = log_format_line(LOG_FORMAT_TEXT, ts, LOG_INFO, "wait.ready",
			       LOG_FIELDS(LF_I("attempts", 2), LF_S("db", "a b")), "database is ready");
	CHECK_STR(line, "2026-11-21T10:00:00.123Z info  wait.ready: database is ready attempts=2 db=\"a b\"",
		  "text format");
	free(line);

	/* DEL and C1 controls (U+009B is CSI to some terminals) are shown, in fields too. */
	line = log_format_line(LOG_FORMAT_TEXT, ts, LOG_INFO, "migrate.output",
			       LOG_FIELDS(LF_S("line", "a\x7f b\xc2\x9b[2J"), LF_S("w", "x\x7f")),
			       "m\x7f\xc2\x9b\xc2\xa0");
	CHECK_STR(line, "2026-11-21T10:00:00.123Z info  migrate.output: m\\x7f\\u009b\xc2\xa0 "
			"line=\"a\\x7f b\\u009b[2J\" w=x\\x7f",
		  "controls shown");
	free(line);
}
