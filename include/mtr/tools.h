/* Presets for other migration tools (--tool NAME): the table of what each tool reads, keeps
 * and runs, and the placeholders its command and environment are written with. */
#ifndef MTR_TOOLS_H
#define MTR_TOOLS_H

#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>

struct native_ops;

/* One row of the table (tools.c). Paths are relative to --migrate-cwd. Templates may name
 * {url} {url_nopass} {jdbc_url} {host} {port} {user} {password} {dbname} {python}
 * {sqitch_target}; the argv never names {url} or {password} (a password never goes into a
 * child's argv: the tools that need it read it from their environment). */
struct tool_def {
	const char *name;                /* --tool NAME */
	const char *const *files;        /* default --migrate-files: paths, directories, globs */
	const char *const *history;      /* default --migrate-history-table: [schema.]table */
	const char *const *argv;         /* the CLI command (--migrate-cmd replaces it) */
	const char *const *env;          /* NAME=template, set for the CLI; empty values unset */
	const char *cli;                 /* the program the command starts, for "is it on PATH" */
	const struct native_ops *native; /* a native reader (and applier: ensure), or NULL */
};

/* The preset called name, or NULL. */
const struct tool_def *tool_find(const char *name);

/* "dbmate, golang-migrate, … or liquibase" (caller frees). */
char *tool_names(void);

/* The values the placeholders stand for; NULL members expand to "". */
struct tool_vars {
	const char *url, *url_nopass, *jdbc_url, *host, *port, *user, *password, *dbname;
	const char *python, *sqitch_target;
};

/* tmpl with every {placeholder} replaced (caller frees); NULL when it names an unknown one. */
char *tool_expand(const char *tmpl, const struct tool_vars *v) MTR_MUST_CHECK;

/* The URL without its password ("postgresql://app@db:5432/app?sslmode=disable"), from a
 * postgresql:// or postgres:// URL whose user-info is percent-encoded (caller frees). */
char *tool_url_without_password(const char *url);

/* The URL without the settings only libpq understands (keepalives…, tcp_user_timeout), which
 * the Go drivers would send to the server as run-time parameters it refuses (caller frees). */
char *tool_url_for_drivers(const char *url);

/* The value of a query parameter of the URL ("disable" for sslmode), or NULL (caller frees). */
char *tool_url_param(const char *url, const char *name);

#endif
