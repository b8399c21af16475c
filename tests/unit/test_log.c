/* The JSON log line: fixed keys first, fields typed, passwords hidden, always valid UTF-8. */
#include "mtr/log.h"
#include "unit.h"

#include <cJSON.h>
#include <stdlib.h>

/* Each --log-schema: the fixed keys and level values the shipper reads, our fields moved out
 * of the shipper's own names, everything else as it was (tests/e2e/test_observe.py cites the
 * shippers' documentation). */
static void schemas(long long ts)
{
	static const struct {
		enum log_schema schema;
		const char *ts, *level, *warn, *msg, *event, *moved, *moved_to;
	} cases[] = {
		{LOG_SCHEMA_DEFAULT, "ts", "level", "warn", "msg", "event", "status", "status"},
		{LOG_SCHEMA_ECS, "@timestamp", "log.level", "warn", "message", "event.action", "error",
		 "error.message"},
		{LOG_SCHEMA_GCP, "time", "severity", "WARNING", "message", "event", "severity",
		 "mtr.severity"},
		{LOG_SCHEMA_DATADOG, "timestamp", "status", "warning", "message", "event", "status",
		 "mtr.status"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *lines[] = {"a", "b t0ps3cret", NULL};
		char *line = log_format_line_as(
			LOG_FORMAT_JSON, cases[i].schema, ts, LOG_WARN, "migrate.output",
			LOG_FIELDS(LF_S(cases[i].moved, "x"), LF_I("attempt", 2), LF_L("lines", lines)),
			"hello");
		cJSON *o = cJSON_Parse(line);
		CHECK(o != NULL, "not JSON: %s", line);
		cJSON *t = cJSON_GetObjectItemCaseSensitive(o, cases[i].ts);
		cJSON *l = cJSON_GetObjectItemCaseSensitive(o, cases[i].level);
		cJSON *m = cJSON_GetObjectItemCaseSensitive(o, cases[i].msg);
		cJSON *e = cJSON_GetObjectItemCaseSensitive(o, cases[i].event);
		cJSON *mv = cJSON_GetObjectItemCaseSensitive(o, cases[i].moved_to);
		cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "lines");
		CHECK(cJSON_IsString(t) && strcmp(t->valuestring, "2026-11-21T10:00:00.123Z") == 0, "time: %s", line);
		CHECK(cJSON_IsString(l) && strcmp(l->valuestring, cases[i].warn) == 0, "level: %s", line);
		CHECK(cJSON_IsString(m) && strcmp(m->valuestring, "hello") == 0, "message: %s", line);
		CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "migrate.output") == 0, "event: %s", line);
		CHECK(cJSON_IsString(mv) && strcmp(mv->valuestring, "x") == 0, "moved field: %s", line);
		CHECK(cJSON_GetObjectItemCaseSensitive(o, "attempt")->valuedouble == 2, "kept: %s", line);
		CHECK(cJSON_GetArraySize(a) == 2 && strcmp(cJSON_GetArrayItem(a, 1)->valuestring, "b ***") == 0,
		      "a list, redacted: %s", line);
		CHECK(cases[i].schema != LOG_SCHEMA_ECS ||
			      cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "ecs.version")),
		      "ECS requires ecs.version: %s", line);
		cJSON_Delete(o);
		free(line);
	}
	const char *lines[] = {"x \"y\"", NULL};
	char *line = log_format_line_as(LOG_FORMAT_TEXT, LOG_SCHEMA_GCP, ts, LOG_ERROR, "migrate.output",
					LOG_FIELDS(LF_L("lines", lines)), "m");
	CHECK_STR(line, "2026-11-21T10:00:00.123Z error migrate.output: m lines=[\"x \\\"y\\\"\"]",
		  "text: no schema, a list as JSON");
	free(line);
}

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
	schemas(ts);
}
