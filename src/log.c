/* Structured events on stderr: JSON lines built with cJSON, or text; passwords redacted. */
#include "mtr/log.h"
#include "mtr/redact.h"
#include "mtr/util.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_format g_format = LOG_FORMAT_JSON;
static enum log_schema g_schema = LOG_SCHEMA_DEFAULT;
static enum log_level g_min_level = LOG_INFO;
static char **g_secrets;
static size_t g_nsecrets;

void log_init(enum log_format format, enum log_level min_level)
{
	g_format = format;
	g_min_level = min_level;
}

enum log_format log_get_format(void)
{
	return g_format;
}

void log_set_schema(enum log_schema schema)
{
	g_schema = schema;
}

enum log_schema log_get_schema(void)
{
	return g_schema;
}

/*
 * The key names each log shipper reads without any configuration (README shows a line of
 * each; tests/e2e/test_observe.py parses them as the shippers document):
 * - Elastic Common Schema: `@timestamp`, `log.level`, `message` and the required `ecs.version`
 *   (ECS field reference: base fields, log fields, ecs fields). ECS keeps `event`, `error`,
 *   `file`, `url`, `source` and `group` for objects: a plain string there would not be indexed,
 *   so ours move into those objects (event.action, error.message …) or under `mtr.`.
 * - Google Cloud Logging (structured logging, special JSON fields): `time` (RFC 3339),
 *   `severity` (its LogSeverity names) and `message`.
 * - Datadog (reserved attributes; log date and status remappers): `timestamp` among the
 *   default date attributes, `status` with the intake's values, `message`.
 * Every other field keeps its name.
 */
struct schema {
	const char *ts, *level, *msg, *event;
	const char *levels[4];      /* for debug, info, warn, error */
	const char *const (*moved)[2]; /* {our field, its name here}, ends with {NULL, NULL} */
	const char *extra_key, *extra_value; /* a field the schema requires on every line */
};

static const char *const ecs_moved[][2] = {
	{"error", "error.message"}, {"file", "file.name"}, {"url", "url.full"},
	{"source", "mtr.source"},   {"group", "mtr.group"}, {NULL, NULL}};
static const char *const gcp_moved[][2] = {{"severity", "mtr.severity"}, {NULL, NULL}};
static const char *const datadog_moved[][2] = {{"status", "mtr.status"}, {NULL, NULL}};

static const struct schema schemas[] = {
	[LOG_SCHEMA_DEFAULT] = {"ts", "level", "msg", "event", {"debug", "info", "warn", "error"},
				NULL, NULL, NULL},
	[LOG_SCHEMA_ECS] = {"@timestamp", "log.level", "message", "event.action",
			    {"debug", "info", "warn", "error"}, ecs_moved, "ecs.version", "8.11.0"},
	[LOG_SCHEMA_GCP] = {"time", "severity", "message", "event",
			    {"DEBUG", "INFO", "WARNING", "ERROR"}, gcp_moved, NULL, NULL},
	[LOG_SCHEMA_DATADOG] = {"timestamp", "status", "message", "event",
				{"debug", "info", "warning", "error"}, datadog_moved, NULL, NULL},
};

/* The name a field of ours has in schema s. */
static const char *field_key(const struct schema *s, const char *key)
{
	for (size_t i = 0; s->moved && s->moved[i][0]; i++)
		if (strcmp(s->moved[i][0], key) == 0)
			return s->moved[i][1];
	return key;
}

void log_add_secret(const char *secret)
{
	if (!secret || !*secret)
		return;
	for (size_t i = 0; i < g_nsecrets; i++)
		if (strcmp(g_secrets[i], secret) == 0)
			return;
	g_secrets = xrealloc(g_secrets, (g_nsecrets + 1) * sizeof *g_secrets);
	g_secrets[g_nsecrets++] = xstrdup(secret);
}

const char *log_level_name(enum log_level level)
{
	switch (level) {
	case LOG_DEBUG: return "debug";
	case LOG_INFO: return "info";
	case LOG_WARN: return "warn";
	case LOG_ERROR: return "error";
	}
	return "info";
}

/* Redacted copy with invalid UTF-8 replaced by U+FFFD, so that every line is valid JSON text. */
static char *clean(const char *in)
{
	char *r = redact(in, (const char *const *)g_secrets, g_nsecrets);
	size_t len = strlen(r);
	char *out = xmalloc(len * 3 + 1);
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)r; *p;) {
		size_t n = utf8_char_len((const char *)p);
		if (n == 0) {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			p++;
		} else {
			memcpy(out + o, p, n);
			o += n;
			p += n;
		}
	}
	out[o] = '\0';
	free(r);
	return out;
}

static void format_ts(char *buf, size_t len, long long ts_ms)
{
	utc_format((int64_t)ts_ms, UTC_ISO_MS, buf, len);
}

/* A JSON array of the redacted strings of a NULL-terminated list. */
static cJSON *json_list(const char *const *list)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; list && list[i]; i++) {
		char *v = clean(list[i]);
		cJSON_AddItemToArray(a, cJSON_CreateString(v));
		free(v);
	}
	return a;
}

static void json_add_field(cJSON *o, const char *key, const struct log_field *f)
{
	switch (f->type) {
	case LF_STR: {
		if (!f->s) {
			cJSON_AddNullToObject(o, key);
			break;
		}
		char *v = clean(f->s);
		cJSON_AddStringToObject(o, key, v);
		free(v);
		break;
	}
	case LF_INT:
		cJSON_AddNumberToObject(o, key, (double)f->i);
		break;
	case LF_BOOL:
		cJSON_AddBoolToObject(o, key, f->i != 0);
		break;
	case LF_LIST:
		cJSON_AddItemToObject(o, key, json_list(f->list));
		break;
	case LF_NONE:
		break;
	}
}

static char *format_json(const struct schema *s, const char *ts, enum log_level level,
			 const char *event, const struct log_field *fields, const char *msg)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, s->ts, ts);
	cJSON_AddStringToObject(o, s->level, s->levels[level]);
	cJSON_AddStringToObject(o, s->event, event);
	char *m = clean(msg);
	cJSON_AddStringToObject(o, s->msg, m);
	free(m);
	if (s->extra_key)
		cJSON_AddStringToObject(o, s->extra_key, s->extra_value);
	for (const struct log_field *f = fields; f && f->key; f++) {
		const char *key = field_key(s, f->key);
		if (!cJSON_GetObjectItemCaseSensitive(o, key)) /* the fixed keys win */
			json_add_field(o, key, f);
	}
	char *line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line)
		return xstrdup("{\"level\":\"error\",\"event\":\"log.failed\"}");
	char *copy = xstrdup(line); /* one allocator for callers: free() */
	cJSON_free(line);
	return copy;
}

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if (*s == ' ' || *s == '"' || *s == '=' || (unsigned char)*s < 0x20)
			return true;
	return false;
}

static void text_add(char **line, const char *s)
{
	char *n = xasprintf("%s%s", *line, s);
	free(*line);
	*line = n;
}

/* Text lines go to terminals: control characters (\r, ESC, DEL, and U+0080-U+009F, which
 * some terminals obey as ESC sequences) are shown, not obeyed. s is valid UTF-8; freed. */
static char *visible(char *s)
{
	char *out = xmalloc(strlen(s) * 4 + 1), *o = out; /* a byte becomes at most 4 */
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			o += sprintf(o, "\\x%02x", *p);
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			o += sprintf(o, "\\u%04x", *++p);
		else
			*o++ = (char)*p;
	}
	*o = '\0';
	free(s);
	return out;
}

/* "event: msg key=value …", redacted and with control characters shown (caller frees);
 * terse leaves out empty strings and exit_code (a summary's header has it). */
static char *format_text_body(const char *event, const struct log_field *fields, const char *msg,
			      bool terse)
{
	char *m = visible(clean(msg));
	char *line = xasprintf("%s: %s", event, m);
	free(m);
	for (const struct log_field *f = fields; f && f->key; f++) {
		char *v;
		if (terse && ((f->type == LF_STR && (!f->s || !*f->s)) || strcmp(f->key, "exit_code") == 0))
			continue;
		switch (f->type) {
		case LF_STR: {
			char *c = clean(f->s ? f->s : "");
			if (needs_quotes(c)) {
				/* cJSON quotes and escapes the value for us. */
				cJSON *j = cJSON_CreateString(c);
				char *q = cJSON_PrintUnformatted(j);
				v = visible(xstrdup(q ? q : "\"\"")); /* cJSON leaves DEL and C1 */
				cJSON_free(q);
				cJSON_Delete(j);
			} else {
				v = visible(xstrdup(c));
			}
			free(c);
			break;
		}
		case LF_INT: v = xasprintf("%lld", f->i); break;
		case LF_BOOL: v = xstrdup(f->i ? "true" : "false"); break;
		case LF_LIST: {
			cJSON *a = json_list(f->list);
			char *q = cJSON_PrintUnformatted(a);
			v = visible(xstrdup(q ? q : "[]"));
			cJSON_free(q);
			cJSON_Delete(a);
			break;
		}
		default: continue;
		}
		char *kv = xasprintf(" %s=%s", f->key, v);
		text_add(&line, kv);
		free(kv);
		free(v);
	}
	return line;
}

static char *format_text(const char *ts, enum log_level level, const char *event,
			 const struct log_field *fields, const char *msg)
{
	char *body = format_text_body(event, fields, msg, false);
	char *line = xasprintf("%s %-5s %s", ts, log_level_name(level), body);
	free(body);
	return line;
}

char *log_format_line_as(enum log_format format, enum log_schema schema, long long ts_ms,
			 enum log_level level, const char *event, const struct log_field *fields,
			 const char *msg)
{
	char ts[40];
	format_ts(ts, sizeof ts, ts_ms);
	if (format == LOG_FORMAT_TEXT)
		return format_text(ts, level, event, fields, msg);
	return format_json(&schemas[schema], ts, level, event, fields, msg);
}

char *log_format_line(enum log_format format, long long ts_ms, enum log_level level,
		      const char *event, const struct log_field *fields, const char *msg)
{
	return log_format_line_as(format, LOG_SCHEMA_DEFAULT, ts_ms, level, event, fields, msg);
}

/* The last error events, oldest first from g_first, for log_recent_errors(). */
static char *g_errors[LOG_RECENT_ERRORS];
static size_t g_nerrors, g_first;

static void remember_error(const char *event, const struct log_field *fields, const char *msg)
{
	char *body = format_text_body(event, fields, msg, true);
	if (g_nerrors < LOG_RECENT_ERRORS) {
		g_errors[g_nerrors++] = body;
		return;
	}
	free(g_errors[g_first]);
	g_errors[g_first] = body;
	g_first = (g_first + 1) % LOG_RECENT_ERRORS;
}

size_t log_recent_errors(const char **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < g_nerrors && n < max; i++)
		out[n++] = g_errors[(g_first + i) % LOG_RECENT_ERRORS];
	return n;
}

void log_event(enum log_level level, const char *event, const struct log_field *fields,
	       const char *fmt, ...)
{
	if (level < g_min_level)
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	char *line = log_format_line_as(g_format, g_schema, ms, level, event, fields, msg ? msg : fmt);
	if (level == LOG_ERROR)
		remember_error(event, fields, msg ? msg : fmt);
	free(msg);
	size_t len = strlen(line);
	line = xrealloc(line, len + 2);
	line[len++] = '\n';
	/* One write per line, so lines from concurrent writers do not interleave. */
	for (size_t off = 0; off < len;) {
		ssize_t n = write(STDERR_FILENO, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
	errno = saved;
}

char *log_redact(const char *text)
{
	return redact(text, (const char *const *)g_secrets, g_nsecrets);
}
