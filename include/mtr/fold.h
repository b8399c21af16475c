/* A tool's output lines grouped into log events: a Python traceback is one event, not one per
 * line; each line or group gets the level it says it has. */
#ifndef MTR_FOLD_H
#define MTR_FOLD_H

#include "mtr/log.h"

#include <stddef.h>

/* A traceback longer than this many lines (or FOLD_MAX_BYTES) is sent in parts. */
#define FOLD_MAX_LINES 200
#define FOLD_MAX_BYTES ((size_t)64 * 1024)

/* What becomes one event: msg is the line, or a traceback's exception line; lines is NULL for
 * a single line, else the traceback's lines (NULL-terminated), valid during the call. */
typedef void (*fold_emit_fn)(void *ctx, const char *stream, enum log_level level, const char *msg,
			     const char *const *lines);

/* The traceback being gathered, if any. Zero-initialized; fold_flush frees what it holds. */
struct fold {
	char stream[8];
	char **lines;
	size_t n;
	size_t bytes;
};

/* Takes the next line of a stream ("stdout", "stderr"): emits it at once, or keeps it as part
 * of a traceback until its exception line (the first line after the header that is neither
 * indented nor empty), which emits the whole at level error. */
void fold_line(struct fold *f, const char *stream, const char *line, fold_emit_fn emit, void *ctx);

/* At the end of the output: emits a traceback still being gathered, and frees it. */
void fold_flush(struct fold *f, fold_emit_fn emit, void *ctx);

/* The level a line of output says it has: its leading level word (Python logging, Alembic,
 * Flyway: "ERROR", "WARNING", "WARNI", "INFO" …), else error for a line naming an error or
 * exception (ERROR, FAILED, FATAL, Exception, …Error, "error:"), warn for a warning, else info. */
enum log_level fold_line_level(const char *line);

#endif
