/* Fuzz target: what other programs tell us: the migration tool's output lines (SQLSTATE, lost
 * connection, their level, tracebacks folded into events), pg_dump --version, and libpq's
 * connection failure messages. */
#include "fuzz.h"
#include "mtr/backup.h"
#include "mtr/fold.h"
#include "mtr/pg.h"
#include "mtr/source_cmd.h"

#include <stdlib.h>

/* Every event has a message and, for a group, at most FOLD_MAX_LINES lines ending the group. */
static void check_event(void *ctx, const char *stream, enum log_level level, const char *msg,
			const char *const *lines)
{
	(void)ctx;
	size_t n = 0;
	while (lines && lines[n])
		n++;
	if (!stream || !msg || level > LOG_ERROR || n > FOLD_MAX_LINES || (lines && n == 0))
		abort();
}

/* The input's lines, as one stream or alternating ones, through the folding. */
static void fold_all(const char *text)
{
	struct fold f = {0};
	char *copy = xstrdup(text), *save = NULL;
	int i = 0;
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), i++)
		fold_line(&f, i % 3 ? "stderr" : "stdout", l, check_event, NULL);
	fold_flush(&f, check_event, NULL);
	if (f.n || f.lines)
		abort();
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_str(data, size);
	if (fold_line_level(line) > LOG_ERROR)
		abort();
	fold_all(line);
	const char *state = source_cmd_line_sqlstate(line);
	if (state && strlen(state) != 5)
		abort();
	(void)source_cmd_line_lost_connection(line);
	if (backup_parse_version(line) < -1)
		abort();
	enum pg_status st = pg_classify_connect_error(line, false);
	if (st != PG_TRANSIENT && st != PG_AUTH && st != PG_NO_DATABASE && st != PG_CONFIG)
		abort();
	(void)pg_sqlstate_is_transient(line);
	free(line);
	return 0;
}
