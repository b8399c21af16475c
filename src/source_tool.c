/* Another migration tool by its preset: the table row's command, files and history tables,
 * each replaced by its option (--migrate-cmd, --migrate-files, --migrate-history-table). */
#include "mtr/source_tool.h"
#include "mtr/argv.h"
#include "mtr/source.h"
#include "mtr/source_cmd.h"
#include "mtr/tool_native.h"
#include "mtr/tools.h"

#include <stdlib.h>

static size_t count(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* The preset's command, or --migrate-cmd's (argv_free). */
static bool tool_argv(const struct config *cfg, const struct tool_def *t, char ***argv,
		      char *err, size_t errlen)
{
	if (cfg->migrate_cmd)
		return source_cmd_argv(cfg, argv, err, errlen);
	size_t n = count(t->argv);
	char **v = xcalloc(n + 1, sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = xstrdup(t->argv[i]);
	*argv = v;
	return true;
}

/* A tool with a native reader: it plans; the pending migrations are applied by our runner
 * (--apply native, or auto without the CLI on PATH) or by the CLI. */
static bool open_native(const struct config *cfg, const struct tool_def *t, char **argv,
			struct source *src, char *err, size_t errlen)
{
	bool can_apply = t->native->ensure != NULL;
	bool native = cfg->apply == APPLY_NATIVE ||
		      (cfg->apply == APPLY_AUTO && can_apply && !cfg->migrate_cmd &&
		       !(t->cli && native_cli_found(t->cli)));
	if (native && !can_apply) {
		set_err(err, errlen, "--apply native: %s is read natively but applied by its own CLI "
			"(expected --apply cli or auto)", t->name);
		argv_free(argv);
		return false;
	}
	if (!tool_native_open(cfg, t, t->native, native, argv, src, err, errlen)) {
		argv_free(argv);
		return false;
	}
	return true;
}

bool source_tool_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	const struct tool_def *t = tool_find(cfg->tool);
	if (!t) {
		char *names = tool_names();
		set_err(err, errlen, "--tool: expected %s, got '%s'", names, cfg->tool);
		free(names);
		return false;
	}
	char **argv;
	if (!tool_argv(cfg, t, &argv, err, errlen))
		return false;
	if (t->native)
		return open_native(cfg, t, argv, src, err, errlen);
	/* The table's lists are read-only; the command source copies what it keeps. */
	struct cmd_spec spec = {
		.tool = t->name,
		.env = t->env,
		.expand_argv = cfg->migrate_cmd == NULL,
		.files = cfg->migrate_files.n ? cfg->migrate_files.v : (char *const *)t->files,
		.nfiles = cfg->migrate_files.n ? cfg->migrate_files.n : count(t->files),
		.history = cfg->migrate_history_table.n ? cfg->migrate_history_table.v
							 : (char *const *)t->history,
		.nhistory = cfg->migrate_history_table.n ? cfg->migrate_history_table.n : count(t->history),
	};
	if (!source_cmd_open_spec(cfg, argv, &spec, src, err, errlen)) {
		argv_free(argv);
		return false;
	}
	return true;
}
