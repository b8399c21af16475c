/* A tool's output as events: a Python traceback folded into one, levels read from the lines. */
#include "mtr/fold.h"
#include "unit.h"

#include <stdlib.h>

struct got {
	int n;
	char msg[8][128];
	char stream[8][8];
	enum log_level level[8];
	int nlines[8];
	char first[8][64];
};

static void collect(void *ctx, const char *stream, enum log_level level, const char *msg,
		    const char *const *lines)
{
	struct got *g = ctx;
	if (g->n >= 8)
		return;
	snprintf(g->msg[g->n], sizeof g->msg[0], "%s", msg);
	snprintf(g->stream[g->n], sizeof g->stream[0], "%s", stream);
	g->level[g->n] = level;
	g->nlines[g->n] = 0;
	for (; lines && lines[g->nlines[g->n]]; g->nlines[g->n]++) {
	}
	snprintf(g->first[g->n], sizeof g->first[0], "%s", lines ? lines[0] : "");
	g->n++;
}

static void levels(void)
{
	static const struct {
		const char *line;
		enum log_level want;
	} cases[] = {
		{"INFO  [alembic.runtime.migration] Running upgrade 0001 -> 0002, ErrorLog table", LOG_INFO},
		{"WARNI [alembic.env] no version table", LOG_WARN},
		{"WARNING:  there is no transaction in progress", LOG_WARN},
		{"ERROR:  relation \"x\" does not exist", LOG_ERROR},
		{"CRITICAL [app] down", LOG_ERROR},
		{"sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) ...", LOG_ERROR},
		{"Migration 3 FAILED", LOG_ERROR},
		{"java.lang.Exception: bad", LOG_ERROR},
		{"error: cannot open file", LOG_ERROR},
		{"/x.py:3: SAWarning: something", LOG_WARN},
		{"applied 3 migrations", LOG_INFO},
		{"INFOrmation", LOG_INFO},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK(fold_line_level(cases[i].line) == cases[i].want, "%s: got %d", cases[i].line,
		      (int)fold_line_level(cases[i].line));
}

void test_fold(void)
{
	levels();
	static const char *const out[][2] = {
		{"stderr", "INFO  [alembic] Running upgrade  -> 0001"},
		{"stderr", "Traceback (most recent call last):"},
		{"stderr", "  File \"env.py\", line 3, in <module>"},
		{"stdout", "a line of the other stream"},
		{"stderr", "    run()"},
		{"stderr", ""},
		{"stderr", "psycopg2.errors.DuplicateColumn: column \"x\" already exists"},
		{"stderr", "after"},
		{"stderr", "Traceback (most recent call last):"},
		{"stderr", "  File \"b.py\", line 1"},
	};
	struct got g = {0};
	struct fold f = {0};
	for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
		fold_line(&f, out[i][0], out[i][1], collect, &g);
	fold_flush(&f, collect, &g);
	CHECK(g.n == 5, "5 events, got %d", g.n);
	CHECK(g.level[0] == LOG_INFO && g.nlines[0] == 0, "a plain line");
	CHECK_STR(g.stream[1], "stdout", "the other stream passes through a traceback");
	CHECK_STR(g.msg[2], "psycopg2.errors.DuplicateColumn: column \"x\" already exists",
		  "the exception line is the message");
	CHECK(g.level[2] == LOG_ERROR && g.nlines[2] == 5, "one error event of 5 lines, got %d",
	      g.nlines[2]);
	CHECK_STR(g.first[2], "Traceback (most recent call last):", "from the header");
	CHECK_STR(g.msg[3], "after", "then lines again");
	CHECK(g.nlines[4] == 2 && g.level[4] == LOG_ERROR, "a traceback cut by the end is flushed");
	CHECK_STR(g.msg[4], "  File \"b.py\", line 1", "its last line as the message");

	/* A runaway traceback comes in parts, none over the limit. */
	struct got h = {0};
	fold_line(&f, "stderr", "Traceback (most recent call last):", collect, &h);
	for (int i = 0; i < FOLD_MAX_LINES + 10; i++)
		fold_line(&f, "stderr", "  File \"r.py\", line 1, in f", collect, &h);
	fold_line(&f, "stderr", "RecursionError: maximum recursion depth exceeded", collect, &h);
	fold_flush(&f, collect, &h);
	CHECK(h.n == 2 && h.nlines[0] == FOLD_MAX_LINES, "two parts, got %d (%d lines)", h.n, h.nlines[0]);
	CHECK_STR(h.msg[1], "RecursionError: maximum recursion depth exceeded", "the end");
}
