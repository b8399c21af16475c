/* A tool's output lines grouped into log events: a Python traceback is one event, and each event
 * gets the level its text says it has. Pure: the caller's emit function logs. */
#include "mtr/fold.h"
#include "mtr/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACEBACK_HEADER "Traceback (most recent call last):"

/* A leading level word, as Python's logging ("ERROR [x] …"), Alembic's "%(levelname)-5.5s"
 * ("WARNI [alembic…]") and psql or Flyway ("ERROR:  …") print it. */
static bool leading_level(const char *line, enum log_level *level)
{
	static const struct {
		const char *word;
		enum log_level level;
	} words[] = {
		{"CRITICAL", LOG_ERROR}, {"FATAL", LOG_ERROR}, {"ERROR", LOG_ERROR},
		{"WARNING", LOG_WARN},   {"WARNI", LOG_WARN},  {"WARN", LOG_WARN},
		{"NOTICE", LOG_INFO},    {"INFO", LOG_INFO},   {"DEBUG", LOG_INFO},
	};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
		size_t n = strlen(words[i].word);
		if (strncmp(line, words[i].word, n) == 0 && !isalnum((unsigned char)line[n])) {
			*level = words[i].level;
			return true;
		}
	}
	return false;
}

enum log_level fold_line_level(const char *line)
{
	static const char *const errors[] = {"ERROR", "FAILED", "FATAL", "Exception", "Error", "error:"};
	static const char *const warnings[] = {"WARN", "Warning", "warning:"};
	enum log_level level;
	if (leading_level(line, &level))
		return level;
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (strstr(line, errors[i]))
			return LOG_ERROR;
	for (size_t i = 0; i < sizeof warnings / sizeof warnings[0]; i++)
		if (strstr(line, warnings[i]))
			return LOG_WARN;
	return LOG_INFO;
}

static void add(struct fold *f, const char *line)
{
	f->lines = xrealloc(f->lines, (f->n + 2) * sizeof *f->lines);
	f->lines[f->n++] = xstrdup(line);
	f->lines[f->n] = NULL;
	f->bytes += strlen(line);
}

/* Emits what was gathered with msg as its message, and forgets it (the traceback is over). */
static void emit_group(struct fold *f, const char *msg, fold_emit_fn emit, void *ctx)
{
	emit(ctx, f->stream, LOG_ERROR, msg, (const char *const *)f->lines);
	for (size_t i = 0; i < f->n; i++)
		free(f->lines[i]);
	free(f->lines);
	f->lines = NULL;
	f->n = f->bytes = 0;
}

void fold_line(struct fold *f, const char *stream, const char *line, fold_emit_fn emit, void *ctx)
{
	bool gathering = f->n > 0;
	if (gathering && strcmp(stream, f->stream) != 0) {
		emit(ctx, stream, fold_line_level(line), line, NULL); /* the other stream goes on */
		return;
	}
	if (!gathering && strcmp(line, TRACEBACK_HEADER) != 0) {
		emit(ctx, stream, fold_line_level(line), line, NULL);
		return;
	}
	if (!gathering)
		snprintf(f->stream, sizeof f->stream, "%s", stream);
	add(f, line);
	bool frame = line[0] == ' ' || line[0] == '\t' || line[0] == '\0';
	if (gathering && !frame) {
		emit_group(f, line, emit, ctx); /* the exception line ends it */
		return;
	}
	if (f->n >= FOLD_MAX_LINES || f->bytes >= FOLD_MAX_BYTES) {
		/* a part, and the rest of the same traceback is gathered on */
		emit_group(f, TRACEBACK_HEADER " (a long one: cut here, continued in the next event)",
			   emit, ctx);
		add(f, TRACEBACK_HEADER " (continued)");
	}
}

void fold_flush(struct fold *f, fold_emit_fn emit, void *ctx)
{
	if (f->n == 0)
		return;
	/* The output ended inside a traceback: its last line is the best message there is. */
	char *last = xstrdup(f->lines[f->n - 1]);
	emit_group(f, last, emit, ctx);
	free(last);
}
