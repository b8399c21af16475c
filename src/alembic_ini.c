/* alembic.ini as ConfigParser reads it (Python 3's configparser with Alembic's arguments:
 * strict, '=' and ':' delimiters, '#' and ';' whole-line comments, empty lines kept inside
 * values, BasicInterpolation), so that we see the values Alembic will see. */
#include "mtr/alembic_ini.h"
#include "mtr/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's str.strip() and re's \s, for ASCII (other characters are never white space here). */
static bool py_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
	       (c >= '\x1c' && c <= '\x1f');
}

static void strip(const char **s, size_t *n)
{
	while (*n && py_space(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && py_space((*s)[*n - 1]))
		(*n)--;
}

static void section_free(struct ini_section *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->opts[i].key);
		free(s->opts[i].value);
	}
	free(s->opts);
	free(s->name);
	memset(s, 0, sizeof *s);
}

void ini_free(struct ini *ini)
{
	section_free(&ini->defaults);
	for (size_t i = 0; i < ini->n; i++)
		section_free(&ini->sections[i]);
	free(ini->sections);
	memset(ini, 0, sizeof *ini);
}

static struct ini_opt *opt_find(const struct ini_section *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->opts[i].key, key) == 0)
			return &s->opts[i];
	return NULL;
}

static struct ini_section *section_find(const struct ini *ini, const char *name)
{
	for (size_t i = 0; i < ini->n; i++)
		if (strcmp(ini->sections[i].name, name) == 0)
			return &ini->sections[i];
	return NULL;
}

bool ini_has_section(const struct ini *ini, const char *section)
{
	return section_find(ini, section) != NULL;
}

/* Where the reading of the file is (ConfigParser._read's variables). Sections and options
 * are named by index: their vectors grow while the file is read. */
struct reader {
	struct ini *ini;
	long sec;          /* the current section: -1 before the first header, -2 for [DEFAULT] */
	long opt;          /* the option a continuation line extends, or -1 */
	struct strbuf val; /* its value so far, lines joined by \n */
	size_t indent;     /* of the line that started the option or section */
	int line;
	char *err;
	size_t errlen;
	int parse_error_line; /* a line that is neither header nor option: an error at the end */
	bool failed;          /* an error that ends the reading at once */
};

static struct ini_section *cur_section(const struct reader *r)
{
	return r->sec == -2 ? &r->ini->defaults : r->sec >= 0 ? &r->ini->sections[r->sec] : NULL;
}

/* The value being gathered becomes the option's: lines joined, trailing white space gone. */
static void finish_option(struct reader *r)
{
	if (r->opt < 0)
		return;
	while (r->val.len && py_space(r->val.s[r->val.len - 1]))
		sb_truncate(&r->val, r->val.len - 1);
	struct ini_opt *o = &cur_section(r)->opts[r->opt];
	free(o->value);
	o->value = sb_take(&r->val);
	r->opt = -1;
}

/* [name]: ConfigParser's header pattern takes everything up to the line's last ']'. A section
 * seen twice is an error (strict); [DEFAULT] may come back. */
static bool header(struct reader *r, const char *v, size_t n)
{
	const char *close = NULL;
	for (const char *p = v + 2; p < v + n; p++)
		if (*p == ']')
			close = p;
	if (n < 3 || v[0] != '[' || !close)
		return false;
	finish_option(r);
	char *name = xstrndup(v + 1, (size_t)(close - v - 1));
	struct ini_section *s = section_find(r->ini, name);
	if (s) {
		set_err(r->err, r->errlen, "line %d: section [%s] appears twice (Alembic's ConfigParser is strict)",
			r->line, name);
		free(name);
		r->failed = true;
		return true;
	}
	if (strcmp(name, "DEFAULT") == 0) {
		free(name);
		r->sec = -2;
		return true;
	}
	r->ini->sections = xrealloc(r->ini->sections, (r->ini->n + 1) * sizeof *r->ini->sections);
	r->ini->sections[r->ini->n] = (struct ini_section){name, NULL, 0};
	r->sec = (long)r->ini->n++;
	return true;
}

/* key = value or key: value (the first '=' or ':'). A key seen twice in a section is an error
 * (strict), [DEFAULT]'s own here excepted. */
static void option(struct reader *r, const char *v, size_t n)
{
	size_t d = 0;
	while (d < n && v[d] != '=' && v[d] != ':')
		d++;
	size_t kn = d;
	while (kn && py_space(v[kn - 1]))
		kn--;
	if (d == n || kn == 0) {
		if (!r->parse_error_line)
			r->parse_error_line = r->line;
		return;
	}
	finish_option(r);
	char *key = xstrndup(v, kn);
	for (char *k = key; *k; k++)
		*k = (char)(*k >= 'A' && *k <= 'Z' ? *k + 32 : *k);
	struct ini_section *s = cur_section(r);
	struct ini_opt *o = opt_find(s, key);
	if (o && o->line > 0) {
		set_err(r->err, r->errlen,
			"line %d: option '%s' is set twice in [%s] (line %d first; Alembic's ConfigParser is strict)",
			r->line, key, s == &r->ini->defaults ? "DEFAULT" : s->name, o->line);
		free(key);
		r->failed = true;
		return;
	}
	if (!o) {
		s->opts = xrealloc(s->opts, (s->n + 1) * sizeof *s->opts);
		o = &s->opts[s->n++];
		o->value = NULL;
		o->key = key;
	} else {
		free(key);
	}
	o->line = r->line;
	r->opt = o - s->opts;
	const char *val = v + d + 1;
	size_t vn = n - d - 1;
	strip(&val, &vn);
	sb_add(&r->val, val, vn);
}

/* One physical line (without its line break). */
static void one_line(struct reader *r, const char *line, size_t len)
{
	const char *v = line;
	size_t n = len;
	strip(&v, &n);
	bool comment = n && (v[0] == '#' || v[0] == ';');
	if (!n || comment) {
		if (!comment && r->opt >= 0)
			sb_addc(&r->val, '\n'); /* an empty line inside a value */
		return;
	}
	size_t indent = (size_t)(v - line);
	if (r->opt >= 0 && indent > r->indent) {
		sb_addc(&r->val, '\n');
		sb_add(&r->val, v, n);
		return;
	}
	r->indent = indent;
	if (header(r, v, n))
		return;
	if (r->sec == -1) {
		set_err(r->err, r->errlen, "line %d: '%.*s' comes before any [section] header", r->line,
			(int)(n > 60 ? 60 : n), v);
		r->failed = true;
		return;
	}
	option(r, v, n);
}

bool ini_parse(const char *text, size_t len, const char *here, struct ini *ini, char *err, size_t errlen)
{
	memset(ini, 0, sizeof *ini);
	ini->defaults.opts = xmalloc(sizeof *ini->defaults.opts);
	ini->defaults.opts[0] = (struct ini_opt){xstrdup("here"), xstrdup(here), 0};
	ini->defaults.n = 1;
	struct reader r = {ini, -1, -1, STRBUF_INIT, 0, 0, err, errlen, 0, false};
	for (size_t pos = 0; pos < len && !r.failed;) {
		size_t end = pos;
		while (end < len && text[end] != '\n' && text[end] != '\r')
			end++;
		r.line++;
		one_line(&r, text + pos, end - pos);
		pos = end + (end < len && text[end] == '\r' && end + 1 < len && text[end + 1] == '\n' ? 2 : 1);
	}
	if (!r.failed)
		finish_option(&r);
	sb_free(&r.val);
	if (!r.failed && r.parse_error_line)
		set_err(err, errlen, "line %d: neither a [section] header nor a key = value line", r.parse_error_line);
	if (r.failed || r.parse_error_line) {
		ini_free(ini);
		return false;
	}
	return true;
}

/* The raw value of key in section (then [DEFAULT]), as ConfigParser's ChainMap finds it. */
static const char *raw(const struct ini *ini, const struct ini_section *s, const char *key)
{
	const struct ini_opt *o = s ? opt_find(s, key) : NULL;
	if (!o)
		o = opt_find(&ini->defaults, key);
	return o ? o->value : NULL;
}

struct expansion {
	const struct ini *ini;
	const struct ini_section *s;
	struct strbuf out;
	long refs;
	char *err;
	size_t errlen;
};

/* BasicInterpolation._interpolate_some: %% is %, %(name)s the value of name (itself expanded
 * when it holds a %), anything else after % an error. */
static bool expand(struct expansion *x, const char *key, const char *v, int depth)
{
	if (depth > INI_MAX_DEPTH) {
		set_err(x->err, x->errlen, "%s: its %%(name)s references nest deeper than %d (a loop?)", key,
			INI_MAX_DEPTH);
		return false;
	}
	for (const char *p = v; *p;) {
		const char *pct = strchr(p, '%');
		if (!pct) {
			sb_adds(&x->out, p);
			break;
		}
		sb_add(&x->out, p, (size_t)(pct - p));
		const char *close = pct[1] == '(' ? strchr(pct + 2, ')') : NULL;
		if (pct[1] == '%') {
			sb_addc(&x->out, '%');
			p = pct + 2;
		} else if (close && close > pct + 2 && close[1] == 's') {
			char *name = xstrndup(pct + 2, (size_t)(close - pct - 2));
			for (char *k = name; *k; k++)
				*k = (char)(*k >= 'A' && *k <= 'Z' ? *k + 32 : *k);
			const char *ref = raw(x->ini, x->s, name);
			bool ok = ref && ++x->refs <= INI_MAX_REFS;
			if (!ref)
				set_err(x->err, x->errlen, "%s: %%(%s)s names no option of the section or [DEFAULT]", key, name);
			else if (!ok)
				set_err(x->err, x->errlen, "%s: more than %d %%(name)s references to expand", key, INI_MAX_REFS);
			else if (strchr(ref, '%'))
				ok = expand(x, key, ref, depth + 1);
			else
				sb_adds(&x->out, ref);
			free(name);
			if (!ok)
				return false;
			p = close + 2;
		} else {
			set_err(x->err, x->errlen, "%s: '%%' must be followed by '%%' or '(name)s', found: %.40s", key, pct);
			return false;
		}
		if (x->out.len >= INI_MAX_VALUE)
			break;
	}
	if (x->out.len >= INI_MAX_VALUE) {
		set_err(x->err, x->errlen, "%s: its expansion grows past %d bytes", key, INI_MAX_VALUE);
		return false;
	}
	return true;
}

int ini_get(const struct ini *ini, const char *section, const char *key, char **out, char *err, size_t errlen)
{
	const struct ini_section *s = section_find(ini, section);
	const char *v = raw(ini, s, key);
	*out = NULL;
	if (!v)
		return 0;
	struct expansion x = {ini, s, STRBUF_INIT, 0, err, errlen};
	if (!expand(&x, key, v, 1)) {
		sb_free(&x.out);
		return -1;
	}
	*out = sb_take(&x.out);
	return 1;
}
