/* Where an Alembic project's revision files are: alembic.ini's settings as Alembic's Config and
 * ScriptDirectory.from_config read them (path_separator, relative paths from the command's
 * working directory, package resources, the Flask-Migrate layout). */
#ifndef MTR_ALEMBIC_WHERE_H
#define MTR_ALEMBIC_WHERE_H

#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>

/* What the settings are read against. */
struct alembic_paths {
	const char *ini;        /* --alembic-ini as given, for messages */
	const char *here;       /* the ini's absolute directory: %(here)s */
	const char *cwd;        /* absolute: where the migration command runs, for relative paths */
	const char *section;    /* the ini section: alembic, or what alembic -n NAME names */
	const char *pythonpath; /* the command's PYTHONPATH, for package resources; NULL: none */
};

/* Where the revision files are. Strings are absolute and owned (alembic_where_free). */
struct alembic_where {
	char *script_dir;
	char **dirs;        /* the version locations in Alembic's order; missing ones are skipped later */
	size_t ndirs;
	bool recursive;     /* recursive_version_locations = true */
	bool sourceless;    /* sourceless = true */
	bool flask;         /* no script_location: the ini's own folder, as Flask-Migrate passes it */
};

/* From alembic.ini's text (len bytes): where the revision files are. False with err naming
 * --alembic-ini, the line or key, and the fix, when Alembic would refuse the settings too (a
 * file ConfigParser refuses, no such section, a value that does not interpolate, a separator
 * it does not know, a package resource not found as a plain package). Nothing to free then. */
bool alembic_locate(const char *text, size_t len, const struct alembic_paths *p, struct alembic_where *w,
		    char *err, size_t errlen) MTR_MUST_CHECK;
void alembic_where_free(struct alembic_where *w);

/* base joined with path as pathlib's Path(base, path) spells it (empty and '.' parts dropped,
 * '..' kept for the kernel to resolve); path itself when absolute. Caller frees. */
char *alembic_path_join(const char *base, const char *path);

#endif
