/* Migrations by an external command (Alembic, Flyway, anything): argv, environment, outcome. */
#include "mtr/source_cmd.h"
#include "mtr/argv.h"
#include "mtr/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

bool source_cmd_argv(const struct config *cfg, char ***argv, char *err, size_t errlen)
{
	if (cfg->migrate_cmd) {
		char msg[256];
		int argc;
		if (argv_split(cfg->migrate_cmd, argv, &argc, msg, sizeof msg))
			return true;
		set_err(err, errlen, "--migrate-cmd: %s", msg);
		return false;
	}
	char **v = xcalloc(8, sizeof *v);
	int n = 0;
	v[n++] = xstrdup(cfg->python);
	v[n++] = xstrdup("-m");
	v[n++] = xstrdup("alembic");
	v[n++] = xstrdup("-c");
	v[n++] = xstrdup(cfg->alembic_ini);
	v[n++] = xstrdup("upgrade");
	v[n++] = xstrdup("head");
	*argv = v;
	return true;
}

static bool env_is(const char *entry, const char *name)
{
	size_t n = strlen(name);
	return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

char **source_cmd_env(const char *url, const char *pgpassword, const char *appname)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = xcalloc(n + 4, sizeof *env);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if ((url && env_is(environ[i], "DATABASE_URL")) ||
		    (pgpassword && env_is(environ[i], "PGPASSWORD")))
			continue;
		env[o++] = xstrdup(environ[i]);
	}
	if (url)
		env[o++] = xasprintf("DATABASE_URL=%s", url);
	if (pgpassword)
		env[o++] = xasprintf("PGPASSWORD=%s", pgpassword);
	if (appname && !getenv("PGAPPNAME"))
		env[o++] = xasprintf("PGAPPNAME=%s", appname);
	env[o] = NULL;
	return env;
}

bool source_cmd_line_lost_connection(const char *line)
{
	static const char *const lost[] = {
		"server closed the connection unexpectedly",
		"terminating connection due to administrator command",
		"the database system is shutting down",
		"the database system is starting up",
		"the database system is in recovery mode",
		"SSL SYSCALL error: EOF detected",
		"connection already closed",
		"no connection to the server"};
	for (size_t i = 0; i < sizeof lost / sizeof lost[0]; i++)
		if (strstr(line, lost[i]))
			return true;
	return false;
}

static bool looks_like_error(const char *line)
{
	return strstr(line, "Error") || strstr(line, "ERROR") || strstr(line, "error:") ||
	       strstr(line, "FAILED") || strstr(line, "FATAL");
}

static void on_line(void *ctx, const char *stream, const char *line)
{
	struct cmd_outcome *out = ctx;
	if (source_cmd_line_lost_connection(line))
		out->lost_connection = true;
	if (looks_like_error(line))
		snprintf(out->last_error, sizeof out->last_error, "%s", line);
	log_event(LOG_INFO, "migrate.output", LOG_FIELDS(LF_S("stream", stream), LF_S("line", line)),
		  "migration command output");
}

bool source_cmd_run(char *const *argv, const char *cwd, char *const *envp,
		    const struct sigstate *sigs, int64_t stop_grace_ms, struct cmd_outcome *out)
{
	memset(out, 0, sizeof *out);
	struct proc_spec spec = {
		.argv = argv, .cwd = cwd, .envp = envp, .sigs = sigs, .stop_grace_ms = stop_grace_ms};
	return proc_run(&spec, on_line, out, &out->proc);
}
