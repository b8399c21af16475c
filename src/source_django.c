/* Django's migrations, read natively (applied by `manage.py migrate`): the migrations packages'
 * files of the project's apps against django_migrations(app, name), as Django's
 * MigrationRecorder keeps it (django/db/migrations/recorder.py). */
#include "mtr/tool_native.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* APP/migrations/NAME.py for every app directory below the project root; the app's label is
 * its directory's name, the migration's its file's without .py. */
static void scan_app(struct native *n, int rootfd, const char *root, const char *app)
{
	char *path = xasprintf("%s/migrations", app);
	int fd = openat(rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return;
	size_t count = 0;
	char **files = native_list(fd, false, &count);
	for (size_t i = 0; i < count; i++) {
		size_t len = strlen(files[i]);
		if (len < 4 || strcmp(files[i] + len - 3, ".py") != 0 || strcmp(files[i], "__init__.py") == 0)
			continue;
		char *key = xasprintf("%s.%.*s", app, (int)(len - 3), files[i]);
		char *file = root ? xasprintf("%s/%s/migrations/%s", root, app, files[i])
				  : xasprintf("%s/migrations/%s", app, files[i]);
		native_add(n, key, app, file, NULL, 0);
		free(key);
		free(file);
	}
	native_free_list(files, count);
	close(fd);
}

static void scan_root(struct native *n, int rootfd, const char *root)
{
	size_t count = 0;
	char **apps = native_list(rootfd, true, &count);
	for (size_t i = 0; i < count; i++)
		scan_app(n, rootfd, root, apps[i]);
	native_free_list(apps, count);
}

/* The project's root, then every further --migrate-files root (installed packages such as
 * django/contrib), so that their migrations count too. */
static bool django_scan(struct native *n, int dirfd, const char *dir, char *err, size_t errlen)
{
	(void)dir;
	scan_root(n, dirfd, NULL);
	const struct config *cfg = n->cfg;
	for (size_t i = 1; i < cfg->migrate_files.n; i++) {
		const char *root = cfg->migrate_files.v[i];
		char *path = root[0] == '/' || !cfg->migrate_cwd ? xstrdup(root)
								: xasprintf("%s/%s", cfg->migrate_cwd, root);
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		free(path);
		if (fd < 0) {
			set_err(err, errlen, "%s: cannot read this --migrate-files root of Django apps", root);
			return false;
		}
		scan_root(n, fd, root);
		close(fd);
	}
	return true;
}

static bool local_app(const struct native *n, const char *app)
{
	for (size_t i = 0; i < n->nmigs; i++)
		if (strcmp(n->migs[i].name, app) == 0)
			return true;
	return false;
}

/* Rows of the apps whose migrations are here; the others' (django.contrib, installed
 * packages) are Django's to check. */
static bool django_state(struct native *n, PGconn *conn, struct problems *pr, char *err, size_t errlen)
{
	const struct config *cfg = n->cfg;
	const char *table = cfg->migrate_history_table.n ? cfg->migrate_history_table.v[0] : "django_migrations";
	if (!native_resolve_table(n, conn, table, err, errlen))
		return false;
	if (n->table_exists) {
		char *sql = xasprintf("SELECT app, name FROM %s ORDER BY id", n->table);
		PGresult *res = native_query(conn, sql, err, errlen);
		free(sql);
		if (!res)
			return false;
		for (int i = 0; i < PQntuples(res); i++) {
			if (!local_app(n, PQgetvalue(res, i, 0)))
				continue;
			char *key = xasprintf("%s.%s", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
			native_add_row(n, key, NULL);
			free(key);
		}
		PQclear(res);
	}
	native_match_rows(n, pr, "restore it; if it was removed on purpose (squashed, or rolled back "
				 "by hand), delete its row from django_migrations", NULL);
	return true;
}

const struct native_ops native_django = {
	.scan = django_scan,
	.state = django_state,
	.unordered = true,
	.dir = ".",
};
