/* Where an Alembic project's revision files are, decided from alembic.ini as Alembic decides it
 * (Config.get_version_locations_list, ScriptDirectory.from_config, coerce_resource_to_filename),
 * without Python: what Alembic would refuse is refused here with its reason. */
#include "mtr/alembic_where.h"
#include "mtr/alembic_ini.h"
#include "mtr/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *alembic_path_join(const char *base, const char *path)
{
	struct strbuf b = STRBUF_INIT;
	const char *p = path;
	if (path[0] != '/')
		sb_adds(&b, base);
	while (*p) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n && !(n == 1 && p[0] == '.')) {
			if (!b.len || b.s[b.len - 1] != '/')
				sb_addc(&b, '/');
			sb_add(&b, p, n);
		}
		p += n;
	}
	if (!b.len)
		sb_addc(&b, '/');
	return sb_take(&b);
}

/* Python's str.strip() white space, for ASCII. */
#define PY_SPACE " \t\n\r\v\f\x1c\x1d\x1e\x1f"

static void add_string(char ***v, size_t *n, const char *s, size_t len)
{
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = xstrndup(s, len);
}

/* value split as Alembic does: on sep, each piece stripped, empty pieces dropped; or, without
 * a separator setting (sep 0), the legacy rule: at ", *" or " +" (empty pieces kept, as its
 * regular expression keeps them). legacy_colon adds ':' (prepend_sys_path's legacy rule). */
static void split(const char *value, char sep, bool legacy_colon, char ***out, size_t *n)
{
	const char *p = value;
	for (;;) {
		const char *end = p;
		if (sep) {
			while (*end && *end != sep)
				end++;
			const char *s = p, *e = end;
			if (e > s) {
				while (s < e && strchr(PY_SPACE, *s))
					s++;
				while (e > s && strchr(PY_SPACE, e[-1]))
					e--;
				add_string(out, n, s, (size_t)(e - s));
			}
		} else {
			while (*end && *end != ',' && *end != ' ' && !(legacy_colon && *end == ':'))
				end++;
			add_string(out, n, p, (size_t)(end - p));
		}
		if (!*end)
			return;
		p = end + 1;
		if (!sep && (*end == ',' || *end == ' ')) /* ", *" and " +": the spaces after go too */
			while (*p == ' ')
				p++;
	}
}

/* The settings as read: the values of the keys from_config asks for. */
struct settings {
	const struct ini *ini;
	const struct alembic_paths *p;
	char *err;
	size_t errlen;
};

/* key's value in the section (or [DEFAULT]): 1 with *v, 0 absent, -1 with err. */
static int get(const struct settings *s, const char *key, char **v)
{
	char why[512];
	int r = ini_get(s->ini, s->p->section, key, v, why, sizeof why);
	if (r < 0)
		set_err(s->err, s->errlen, "--alembic-ini: %s: [%s] %s; Alembic refuses this value too", s->p->ini,
			s->p->section, why);
	return r;
}

/* The separator character of the first of keys that is set (Alembic's _get_file_separator_char);
 * 0 when none is (the legacy rule). False with err when its value is not one Alembic knows. */
static bool separator(const struct settings *s, const char *const *keys, size_t nkeys, char *sep,
		      const char **which)
{
	static const char *const names[] = {"space", "newline", "os", ":", ";"};
	static const char chars[] = {' ', '\n', ':', ':', ';'};
	*sep = 0;
	*which = NULL;
	for (size_t k = 0; k < nkeys; k++) {
		char *v;
		int r = get(s, keys[k], &v);
		if (r < 0)
			return false;
		if (r == 0)
			continue;
		*which = keys[k];
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
			if (strcmp(v, names[i]) == 0)
				*sep = chars[i];
		if (!*sep)
			set_err(s->err, s->errlen,
				"--alembic-ini: %s: %s = %s is not a valid value; expected 'space', 'newline', "
				"'os', ':' or ';'",
				s->p->ini, keys[k], v);
		free(v);
		return *sep != 0;
	}
	return true;
}

/* Whether dir/name is a directory with an __init__.py (a plain package's directory). */
static bool plain_package(const char *dir, const char *name, size_t len, char **out)
{
	char *d = xasprintf("%s/%.*s", dir, (int)len, name);
	char *init = xasprintf("%s/__init__.py", d);
	struct stat st;
	bool ok = stat(init, &st) == 0 && S_ISREG(st.st_mode);
	free(init);
	if (ok)
		*out = d;
	else
		free(d);
	return ok;
}

/* Where Python would find the plain package pkg (dotted): the first of path that holds its
 * first part as a directory with __init__.py, then each further part inside. NULL if none. */
static char *find_package(const char *pkg, char *const *path, size_t npath)
{
	size_t first = strcspn(pkg, ".");
	char *dir = NULL;
	for (size_t i = 0; i < npath && !dir; i++)
		if (!plain_package(path[i], pkg, first, &dir))
			dir = NULL;
	for (const char *p = pkg + first; dir && *p == '.';) {
		size_t n = strcspn(p + 1, ".");
		char *sub = NULL;
		if (!plain_package(dir, p + 1, n, &sub))
			sub = NULL;
		free(dir);
		dir = sub;
		p += 1 + n;
	}
	return dir;
}

/* The directories Python searches for `python -m alembic` run in cwd: prepend_sys_path (which
 * from_config puts first), the working directory, then PYTHONPATH. Installed packages are not
 * known without Python. */
static void search_path(const struct alembic_paths *p, char *const *prepend, size_t nprepend, char ***out,
			size_t *n)
{
	for (size_t i = 0; i < nprepend; i++) {
		char *d = alembic_path_join(p->cwd, prepend[i]);
		add_string(out, n, d, strlen(d));
		free(d);
	}
	add_string(out, n, p->cwd, strlen(p->cwd));
	for (const char *e = p->pythonpath; e && *e;) {
		size_t len = strcspn(e, ":");
		char *piece = xstrndup(e, len), *d = alembic_path_join(p->cwd, piece);
		add_string(out, n, d, strlen(d));
		free(d);
		free(piece);
		e += len + (e[len] == ':');
	}
}

/* A location: a directory (relative ones from the command's working directory), or a package
 * resource "pkg.sub:dir/x" (not absolute, with a colon) found as Python would find a plain
 * package. NULL with err when the package is not found. */
static char *location(const struct settings *s, const char *key, const char *value, char *const *prepend,
		      size_t nprepend)
{
	if (value[0] == '/' || !strchr(value, ':'))
		return alembic_path_join(s->p->cwd, value);
	char **path = NULL;
	size_t npath = 0;
	search_path(s->p, prepend, nprepend, &path, &npath);
	char *pkg = xstrndup(value, strcspn(value, ":"));
	char *dir = find_package(pkg, path, npath), *out = NULL;
	if (dir) {
		struct strbuf rest = STRBUF_INIT;
		for (const char *t = value + strlen(pkg); *t == ':'; t += 1 + strcspn(t + 1, ":"))
			sb_addf(&rest, "/%.*s", (int)strcspn(t + 1, ":"), t + 1);
		out = alembic_path_join(dir, rest.len ? rest.s + 1 : "");
		sb_free(&rest);
	} else {
		struct strbuf where = STRBUF_INIT;
		for (size_t i = 0; i < npath; i++)
			sb_addf(&where, "%s%s", i ? ", " : "", path[i]);
		set_err(s->err, s->errlen,
			"--alembic-ini: %s: %s = %s is a package resource, and '%s' is no plain package (a "
			"directory with __init__.py) in %s (prepend_sys_path, the migration command's working "
			"directory, PYTHONPATH); installed packages cannot be searched without Python: give "
			"the directory instead (e.g. %%(here)s/migrations)",
			s->p->ini, key, value, pkg, where.s);
		sb_free(&where);
	}
	free(dir);
	free(pkg);
	for (size_t i = 0; i < npath; i++)
		free(path[i]);
	free(path);
	return out;
}

void alembic_where_free(struct alembic_where *w)
{
	free(w->script_dir);
	for (size_t i = 0; i < w->ndirs; i++)
		free(w->dirs[i]);
	free(w->dirs);
	memset(w, 0, sizeof *w);
}

/* int(value) as Python accepts it: optional white space and sign, digits (with single _). */
static bool python_int(const char *v)
{
	v += strspn(v, PY_SPACE);
	v += *v == '+' || *v == '-';
	if (!(*v >= '0' && *v <= '9'))
		return false;
	for (; (*v >= '0' && *v <= '9') || (*v == '_' && v[1] >= '0' && v[1] <= '9'); v++)
		;
	return v[strspn(v, PY_SPACE)] == '\0';
}

/* The other settings from_config reads: Alembic stops on any of them that does not
 * interpolate, on a truncate_slug_length that is no integer, and on a [post_write_hooks]
 * value (or [DEFAULT] value beneath it) that does not interpolate. */
static bool other_settings(const struct settings *s)
{
	static const char *const keys[] = {"truncate_slug_length", "file_template", "output_encoding", "timezone"};
	for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		char *v;
		int r = get(s, keys[k], &v);
		if (r < 0)
			return false;
		bool bad = r > 0 && k == 0 && !python_int(v);
		if (bad)
			set_err(s->err, s->errlen, "--alembic-ini: %s: truncate_slug_length = %s is not an integer",
				s->p->ini, v);
		free(v);
		if (bad)
			return false;
	}
	if (!ini_has_section(s->ini, "post_write_hooks"))
		return true;
	struct settings hooks = *s;
	struct alembic_paths hp = *s->p;
	hp.section = "post_write_hooks";
	hooks.p = &hp;
	const struct ini_section *sections[] = {NULL, &s->ini->defaults};
	for (size_t i = 0; i < s->ini->n; i++)
		if (strcmp(s->ini->sections[i].name, "post_write_hooks") == 0)
			sections[0] = &s->ini->sections[i];
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; sections[k] && i < sections[k]->n; i++) {
			char *v;
			int r = get(&hooks, sections[k]->opts[i].key, &v);
			free(v);
			if (r < 0)
				return false;
		}
	}
	return true;
}

/* True when the value of key is "true" (Alembic's boolean test: nothing else counts). */
static bool flag(const struct settings *s, const char *key, bool *out)
{
	char *v;
	int r = get(s, key, &v);
	*out = r > 0 && strcmp(v, "true") == 0;
	free(v);
	return r >= 0;
}

/* No script_location: Flask-Migrate passes the ini's own folder; that is it when the folder
 * holds env.py and versions/. */
static bool flask_layout(const struct alembic_paths *p)
{
	char *env = xasprintf("%s/env.py", p->here), *ver = xasprintf("%s/versions", p->here);
	struct stat a, b;
	bool ok = stat(env, &a) == 0 && S_ISREG(a.st_mode) && stat(ver, &b) == 0 && S_ISDIR(b.st_mode);
	free(env);
	free(ver);
	return ok;
}

/* prepend_sys_path, split by path_separator only (else its legacy rule with ':'). */
static bool prepend_path(const struct settings *s, char ***v, size_t *n)
{
	static const char *const keys[] = {"path_separator"};
	char *value, sep;
	const char *which;
	int r = get(s, "prepend_sys_path", &value);
	if (r <= 0 || !value[0]) {
		free(value);
		return r >= 0;
	}
	bool ok = separator(s, keys, 1, &sep, &which);
	if (ok)
		split(value, sep, true, v, n);
	free(value);
	return ok;
}

/* script_location: a directory or a package resource; absent, the Flask-Migrate layout. */
static bool script_location(const struct settings *s, char *const *prepend, size_t nprepend, struct alembic_where *w)
{
	char *v;
	int r = get(s, "script_location", &v);
	if (r < 0)
		return false;
	if (r == 0 && flask_layout(s->p)) {
		w->flask = true;
		w->script_dir = xstrdup(s->p->here);
		return true;
	}
	if (r == 0) {
		set_err(s->err, s->errlen,
			"--alembic-ini: %s has no script_location in its [%s] section (and no env.py and "
			"versions/ beside it, as a Flask-Migrate project has)",
			s->p->ini, s->p->section);
		return false;
	}
	w->script_dir = location(s, "script_location", v, prepend, nprepend);
	free(v);
	return w->script_dir != NULL;
}

/* No version_locations: script_location/versions. */
static bool default_versions(struct alembic_where *w)
{
	w->dirs = xmalloc(sizeof *w->dirs);
	w->dirs[w->ndirs++] = alembic_path_join(w->script_dir, "versions");
	return true;
}

/* version_locations split by path_separator, else version_path_separator, else the legacy
 * rule; each a directory or a package resource. Without it, or when the split leaves nothing
 * (";;", which Alembic's "if self.version_locations" treats as absent), script_location/versions. */
static bool version_locations(const struct settings *s, char *const *prepend, size_t nprepend,
			      struct alembic_where *w)
{
	static const char *const keys[] = {"path_separator", "version_path_separator"};
	char *v, sep;
	const char *which;
	int r = get(s, "version_locations", &v);
	if (r < 0)
		return false;
	if (r == 0 || !v[0]) {
		free(v);
		return default_versions(w);
	}
	bool ok = separator(s, keys, 2, &sep, &which);
	char **parts = NULL;
	size_t n = 0;
	if (ok)
		split(v, sep, false, &parts, &n);
	for (size_t i = 0; i < n; i++) {
		char *dir = ok ? location(s, "version_locations", parts[i], prepend, nprepend) : NULL;
		ok = dir != NULL;
		if (ok) {
			w->dirs = xrealloc(w->dirs, (w->ndirs + 1) * sizeof *w->dirs);
			w->dirs[w->ndirs++] = dir;
		}
		free(parts[i]);
	}
	free(parts);
	free(v);
	return ok && (w->ndirs > 0 || default_versions(w));
}

bool alembic_locate(const char *text, size_t len, const struct alembic_paths *p, struct alembic_where *w,
		    char *err, size_t errlen)
{
	struct ini ini;
	char why[512];
	memset(w, 0, sizeof *w);
	if (!ini_parse(text, len, p->here, &ini, why, sizeof why)) {
		set_err(err, errlen, "--alembic-ini: %s: %s", p->ini, why);
		return false;
	}
	struct settings s = {&ini, p, err, errlen};
	char **prepend = NULL;
	size_t nprepend = 0;
	bool ok = ini_has_section(&ini, p->section);
	if (!ok)
		set_err(err, errlen,
			"--alembic-ini: %s has no [%s] section, which Alembic reads%s", p->ini, p->section,
			strcmp(p->section, "alembic") == 0 ? "" : " (--alembic-section)");
	ok = ok && prepend_path(&s, &prepend, &nprepend) && script_location(&s, prepend, nprepend, w) &&
	     flag(&s, "recursive_version_locations", &w->recursive) && flag(&s, "sourceless", &w->sourceless) &&
	     other_settings(&s) && version_locations(&s, prepend, nprepend, w);
	for (size_t i = 0; i < nprepend; i++)
		free(prepend[i]);
	free(prepend);
	ini_free(&ini);
	if (!ok)
		alembic_where_free(w);
	return ok;
}
