/* Structured events on stderr: one JSON object (or one text line) per event, passwords redacted. */
#ifndef MTR_LOG_H
#define MTR_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };
/* The key names of a JSON line: ours, or what a log shipper reads by default (--log-schema). */
enum log_schema { LOG_SCHEMA_DEFAULT, LOG_SCHEMA_ECS, LOG_SCHEMA_GCP, LOG_SCHEMA_DATADOG };

enum log_field_type { LF_NONE, LF_STR, LF_INT, LF_BOOL, LF_LIST };

struct log_field {
	const char *key;
	enum log_field_type type;
	const char *s;
	long long i;
	const char *const *list; /* LF_LIST: strings, NULL-terminated */
};

#define LF_S(k, v) {(k), LF_STR, (v), 0, NULL}
#define LF_I(k, v) {(k), LF_INT, NULL, (long long)(v), NULL}
#define LF_B(k, v) {(k), LF_BOOL, NULL, (long long)!!(v), NULL}
/* An array of strings (each redacted); v is NULL-terminated. */
#define LF_L(k, v) {(k), LF_LIST, NULL, 0, (v)}
#define LF_END {NULL, LF_NONE, NULL, 0, NULL}
/* A field list: LOG_FIELDS(LF_S("phase", "wait"), LF_I("attempt", n)) */
#define LOG_FIELDS(...) ((const struct log_field[]){__VA_ARGS__, LF_END})

void log_init(enum log_format format, enum log_level min_level);
enum log_format log_get_format(void);
/* The JSON key names from now on (the text format has none to rename). */
void log_set_schema(enum log_schema schema);
enum log_schema log_get_schema(void);

/* Every later line hides this string (and URL/key=value passwords always). Copied. */
void log_add_secret(const char *secret);

/* Emits one event; fields may be NULL. Never fails: a logging error is not a reason to stop. */
void log_event(enum log_level level, const char *event, const struct log_field *fields,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The line log_event would write, without the newline (caller frees); ts_ms is the
 * wall-clock time in milliseconds since the epoch. For tests and for log_event itself. */
char *log_format_line(enum log_format format, long long ts_ms, enum log_level level,
		      const char *event, const struct log_field *fields, const char *msg);
/* The same with the key names of a schema (log_format_line uses LOG_SCHEMA_DEFAULT). */
char *log_format_line_as(enum log_format format, enum log_schema schema, long long ts_ms,
			 enum log_level level, const char *event, const struct log_field *fields,
			 const char *msg);

/* The last LOG_RECENT_ERRORS error events, oldest first, each as one line "event: msg
 * key=value …" (redacted, control characters shown); returns how many were put in out. The
 * strings are the logger's: valid until the next log_event(). For the termination message. */
#define LOG_RECENT_ERRORS 8
size_t log_recent_errors(const char **out, size_t max);

/* A copy of text with every known secret and password pattern hidden (caller frees). */
char *log_redact(const char *text);

/* Names and parsing of levels ("debug", "info", "warn", "error"). */
const char *log_level_name(enum log_level level);

#endif
