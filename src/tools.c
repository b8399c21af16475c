/* The presets of other migration tools: default files, history tables, command, environment. */
#include "mtr/tools.h"
#include "mtr/strbuf.h"
#include "mtr/tool_native.h"

#include <stdlib.h>
#include <string.h>

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

/* Each row as the tool's own documentation and source give its defaults:
 * - dbmate: ./db/migrations, schema_migrations(version); DATABASE_URL; `--no-dump-schema`
 *   because a container has no db/schema.sql to keep up to date.
 * - golang-migrate: no default directory (`-path`); schema_migrations(version, dirty); the
 *   URL is an argument, so it goes without its password, which lib/pq and pgx read from
 *   PGPASSWORD.
 * - goose: GOOSE_DRIVER, GOOSE_DBSTRING, GOOSE_MIGRATION_DIR (its own default is "."; the
 *   preset says migrations); goose_db_version.
 * - flyway: FLYWAY_URL (JDBC), FLYWAY_USER, FLYWAY_PASSWORD; locations filesystem:sql;
 *   flyway_schema_history.
 * - prisma: prisma/migrations/<ts>_<name>/migration.sql; _prisma_migrations; the schema's
 *   datasource reads env("DATABASE_URL").
 * - django: manage.py migrate; the migrations package of every app; django_migrations.
 * - knex: knex migrate:latest; ./migrations; knex_migrations (knex_migrations_lock only
 *   holds the lock flag).
 * - node-pg-migrate: up; ./migrations; pgmigrations; DATABASE_URL is its default.
 * - typeorm: migration:run with a data source file; the table migrations.
 * - sequelize: sequelize-cli db:migrate; ./migrations; "SequelizeMeta".
 * - sqitch: deploy; sqitch.plan and deploy/revert/verify; the registry schema sqitch; the
 *   target in SQITCH_TARGET and the password in SQITCH_PASSWORD.
 * - yoyo: apply --batch; ./migrations; _yoyo_migration; psycopg2 reads PGPASSWORD.
 * - liquibase: update; LIQUIBASE_COMMAND_URL/_USERNAME/_PASSWORD; databasechangelog. */
static const struct tool_def tools[] = {
	{"dbmate", LIST("db/migrations"), LIST("schema_migrations"),
	 LIST("dbmate", "--no-dump-schema", "migrate"), NONE, "dbmate", &native_dbmate},
	{"golang-migrate", LIST("migrations"), LIST("schema_migrations"),
	 LIST("migrate", "-path", "migrations", "-database", "{url_nopass}", "up"),
	 LIST("PGPASSWORD={password}"), "migrate", &native_golang_migrate},
	{"goose", LIST("migrations"), LIST("goose_db_version"), LIST("goose", "up"),
	 LIST("GOOSE_DRIVER=postgres", "GOOSE_DBSTRING={url}", "GOOSE_MIGRATION_DIR=migrations"),
	 "goose", &native_goose},
	{"flyway", LIST("sql"), LIST("flyway_schema_history"), LIST("flyway", "migrate"),
	 LIST("FLYWAY_URL={jdbc_url}", "FLYWAY_USER={user}", "FLYWAY_PASSWORD={password}",
	      "FLYWAY_LOCATIONS=filesystem:sql"),
	 "flyway", &native_flyway},
	{"prisma", LIST("prisma/migrations"), LIST("_prisma_migrations"),
	 LIST("prisma", "migrate", "deploy"), NONE, "prisma", &native_prisma},
	{"django", LIST("*/migrations/*.py"), LIST("django_migrations"),
	 LIST("{python}", "manage.py", "migrate", "--noinput"), NONE, NULL, &native_django},
	{"knex", LIST("migrations"), LIST("knex_migrations"), LIST("knex", "migrate:latest"), NONE,
	 "knex", NULL},
	{"node-pg-migrate", LIST("migrations"), LIST("pgmigrations"), LIST("node-pg-migrate", "up"),
	 NONE, "node-pg-migrate", NULL},
	{"typeorm", LIST("migrations", "data-source.js"), LIST("migrations"),
	 LIST("typeorm", "migration:run", "-d", "data-source.js"), NONE, "typeorm", NULL},
	{"sequelize", LIST("migrations"), LIST("\"SequelizeMeta\""),
	 LIST("sequelize-cli", "db:migrate"), NONE, "sequelize-cli", NULL},
	{"sqitch", LIST("sqitch.plan", "deploy"), LIST("sqitch.changes", "sqitch.tags"),
	 LIST("sqitch", "deploy"), LIST("SQITCH_TARGET={sqitch_target}", "SQITCH_PASSWORD={password}"),
	 "sqitch", NULL},
	{"yoyo", LIST("migrations"), LIST("_yoyo_migration"),
	 LIST("yoyo", "apply", "--batch", "--no-config-file", "--database", "{url_nopass}",
	      "migrations"),
	 LIST("PGPASSWORD={password}"), "yoyo", NULL},
	{"liquibase", LIST("changelog.xml", "changelog"), LIST("databasechangelog"),
	 LIST("liquibase", "update"),
	 LIST("LIQUIBASE_COMMAND_URL={jdbc_url}", "LIQUIBASE_COMMAND_USERNAME={user}",
	      "LIQUIBASE_COMMAND_PASSWORD={password}", "LIQUIBASE_COMMAND_CHANGELOG_FILE=changelog.xml"),
	 "liquibase", NULL},
};
#define NTOOLS (sizeof tools / sizeof tools[0])

const struct tool_def *tool_find(const char *name)
{
	for (size_t i = 0; name && i < NTOOLS; i++)
		if (strcmp(tools[i].name, name) == 0)
			return &tools[i];
	return NULL;
}

char *tool_names(void)
{
	struct strbuf b = STRBUF_INIT;
	for (size_t i = 0; i < NTOOLS; i++)
		sb_addf(&b, "%s%s", i == 0 ? "" : i + 1 == NTOOLS ? " or " : ", ", tools[i].name);
	return sb_take(&b);
}

/* The value of the placeholder name[0..len), or NULL when there is none of that name. */
static const char *const *var_named(const struct tool_vars *v, const char *name, size_t len)
{
	static const struct {
		const char *name;
		size_t off;
	} names[] = {
		{"url", offsetof(struct tool_vars, url)},
		{"url_nopass", offsetof(struct tool_vars, url_nopass)},
		{"jdbc_url", offsetof(struct tool_vars, jdbc_url)},
		{"host", offsetof(struct tool_vars, host)},
		{"port", offsetof(struct tool_vars, port)},
		{"user", offsetof(struct tool_vars, user)},
		{"password", offsetof(struct tool_vars, password)},
		{"dbname", offsetof(struct tool_vars, dbname)},
		{"python", offsetof(struct tool_vars, python)},
		{"sqitch_target", offsetof(struct tool_vars, sqitch_target)},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i].name) == len && strncmp(names[i].name, name, len) == 0)
			return (const char *const *)(const void *)((const char *)v + names[i].off);
	return NULL;
}

char *tool_expand(const char *tmpl, const struct tool_vars *v)
{
	struct strbuf b = STRBUF_INIT;
	for (const char *p = tmpl; *p;) {
		const char *close = *p == '{' ? strchr(p, '}') : NULL;
		if (!close) {
			sb_addc(&b, *p++);
			continue;
		}
		const char *const *val = var_named(v, p + 1, (size_t)(close - p - 1));
		if (!val) {
			sb_free(&b);
			return NULL;
		}
		sb_adds(&b, *val ? *val : "");
		p = close + 1;
	}
	return sb_take(&b);
}

char *tool_url_without_password(const char *url)
{
	const char *scheme = strstr(url, "://");
	if (!scheme)
		return xstrdup(url);
	const char *auth = scheme + 3;
	size_t authlen = strcspn(auth, "/?#");
	const char *at = memrchr(auth, '@', authlen);
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon)
		return xstrdup(url);
	return xasprintf("%.*s%s", (int)(colon - url), url, at);
}

/* libpq's client-side settings that no other driver takes. */
static bool libpq_only(const char *param, size_t len)
{
	static const char *const names[] = {"keepalives", "keepalives_idle", "keepalives_interval",
					    "keepalives_count", "tcp_user_timeout"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i]) == len && strncmp(names[i], param, len) == 0)
			return true;
	return false;
}

char *tool_url_for_drivers(const char *url)
{
	const char *q = strchr(url, '?');
	if (!q)
		return xstrdup(url);
	struct strbuf b = STRBUF_INIT;
	sb_add(&b, url, (size_t)(q - url));
	char sep = '?';
	for (const char *p = q + 1; *p;) {
		size_t len = strcspn(p, "&"), key = strcspn(p, "=&");
		if (len && !libpq_only(p, key)) {
			sb_addc(&b, sep);
			sb_add(&b, p, len);
			sep = '&';
		}
		p += len + (p[len] == '&');
	}
	return sb_take(&b);
}

char *tool_url_param(const char *url, const char *name)
{
	const char *q = strchr(url, '?');
	size_t n = strlen(name);
	for (const char *p = q ? q + 1 : NULL; p && *p;) {
		size_t len = strcspn(p, "&");
		if (len > n && strncmp(p, name, n) == 0 && p[n] == '=')
			return xstrndup(p + n + 1, len - n - 1);
		p += len + (p[len] == '&');
	}
	return NULL;
}
