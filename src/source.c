/* The table of sources: which options select a source, its lock, whether it can --check. */
#include "mtr/source.h"
#include "mtr/source_alembic.h"
#include "mtr/source_cmd.h"
#include "mtr/source_sql.h"
#include "mtr/source_tool.h"
#include "mtr/strbuf.h"

#include <stdlib.h>
#include <string.h>

static bool want_sql(const struct config *cfg)
{
	return cfg->sql_dir != NULL;
}

static bool want_alembic(const struct config *cfg)
{
	return cfg->alembic_ini != NULL;
}

/* --migrate-cmd beside --alembic-ini or --tool is how that tool is run, not a source of its
 * own. */
static bool want_command(const struct config *cfg)
{
	return cfg->migrate_cmd != NULL && cfg->alembic_ini == NULL && cfg->tool == NULL &&
	       !(cfg->migrate_files.n && cfg->migrate_history_table.n);
}

/* A command with its files and history named: the fast path can say whether it would run. */
static bool want_known_command(const struct config *cfg)
{
	return cfg->migrate_cmd != NULL && cfg->alembic_ini == NULL && cfg->tool == NULL &&
	       cfg->migrate_files.n && cfg->migrate_history_table.n;
}

static bool want_tool(const struct config *cfg)
{
	return cfg->tool != NULL;
}

/* The SQL source's history table names its lock: two directories with two tables are two
 * independent histories. */
static const char *sql_lock(const struct config *cfg)
{
	return cfg->history_table;
}

static const char *shared_lock(const struct config *cfg)
{
	(void)cfg;
	return "migrate-then-run";
}

static const struct source_def sources[] = {
	{"sql", "--sql-dir DIR", "MTR_SQL_DIR", "sql_dir", want_sql, sql_lock, NULL, source_sql_open},
	{"alembic", "--alembic-ini PATH", "MTR_ALEMBIC_INI", "migrate_command", want_alembic,
	 shared_lock, NULL, source_alembic_open},
	{"tool", "--tool NAME", "MTR_TOOL", "migrate_command", want_tool, shared_lock, NULL,
	 source_tool_open},
	{"command", "--migrate-cmd CMD --migrate-files PATH --migrate-history-table TABLE",
	 "MTR_MIGRATE_CMD", "migrate_command", want_known_command, shared_lock, NULL, source_cmd_open},
	{"command", "--migrate-cmd CMD", "MTR_MIGRATE_CMD", "migrate_command", want_command,
	 shared_lock, "a command cannot report a plan", source_cmd_open},
};
#define NSOURCES (sizeof sources / sizeof sources[0])

/* The option's name without its argument: "--sql-dir". */
static void add_flag(struct strbuf *b, const struct source_def *d)
{
	sb_add(b, d->option, strcspn(d->option, " "));
}

/* "A, B or C", from every row (all) or the rows that can --check. */
static char *list_options(bool all, bool with_arg)
{
	struct strbuf b = STRBUF_INIT;
	size_t n = 0, total = 0;
	for (size_t i = 0; i < NSOURCES; i++)
		total += all || !sources[i].no_check;
	for (size_t i = 0; i < NSOURCES; i++) {
		if (!all && sources[i].no_check)
			continue;
		if (n)
			sb_adds(&b, n + 1 == total ? " or " : ", ");
		if (with_arg)
			sb_adds(&b, sources[i].option);
		else
			add_flag(&b, &sources[i]);
		n++;
	}
	return sb_take(&b);
}

static void no_source(char *err, size_t errlen)
{
	struct strbuf envs = STRBUF_INIT;
	for (size_t i = 0; i < NSOURCES; i++)
		sb_addf(&envs, "%s%s", i ? " / " : "", sources[i].env);
	char *opts = list_options(true, true);
	set_err(err, errlen, "no migration source: expected %s (or %s)", opts, envs.s);
	free(opts);
	sb_free(&envs);
}

const struct source_def *source_choose(const struct config *cfg, char *err, size_t errlen)
{
	const struct source_def *first = NULL;
	for (size_t i = 0; i < NSOURCES; i++) {
		if (!sources[i].wanted(cfg))
			continue;
		if (first) {
			struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
			add_flag(&a, first);
			add_flag(&b, &sources[i]);
			set_err(err, errlen, "%s: expected one migration source, got %s and %s as well",
				a.s, a.s, b.s);
			sb_free(&a);
			sb_free(&b);
			return NULL;
		}
		first = &sources[i];
	}
	if (!first)
		no_source(err, errlen);
	return first;
}

bool source_check_options(const struct config *cfg, char *err, size_t errlen)
{
	const struct source_def *d = source_choose(cfg, err, errlen);
	if (!d)
		return false;
	if (cfg->check && d->no_check) {
		char *opts = list_options(false, false);
		set_err(err, errlen, "--check: expected %s (%s)", opts, d->no_check);
		free(opts);
		return false;
	}
	return true;
}

bool source_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	const struct source_def *d = source_choose(cfg, err, errlen);
	if (!d || !d->open(cfg, src, err, errlen))
		return false;
	src->def = d;
	src->kind = d->name;
	return true;
}
