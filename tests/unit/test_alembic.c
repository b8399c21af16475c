/* Alembic projects read as text: revision files, alembic.ini, where the files are, and the graph. */
#include "mtr/alembic_ini.h"
#include "mtr/alembic_rev.h"
#include "mtr/alembic_where.h"
#include "mtr/chain.h"
#include "unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *joined_by(char *const *v, size_t n, const char *sep)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	char *s = calloc(1, len);
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(s, sep);
		strcat(s, v[i]);
	}
	return s;
}

/* "a,b" for a list (empty: none); for labels "?" is "labelled, names unknown". */
static char *joined(char *const *v, size_t n)
{
	return joined_by(v, n, ",");
}

/* Each case as ast.literal_eval and Alembic read it (tests/fuzz/alembic_oracle.py agrees). */
static const struct {
	const char *text;
	const char *id, *down, *labels, *deps; /* id NULL: refused, err holding down */
} PARSE[] = {
	{"revision = 'ae10'\ndown_revision = None\n", "ae10", "", "", ""},
	{"revision: str = \"ae10\"\ndown_revision: Union[str, Sequence[str], None] = \"9f\"\n"
	 "branch_labels: Union[str, Sequence[str], None] = None\n",
	 "ae10", "9f", "", ""},
	{"revision = 'm3'\ndown_revision = ('m2a', 'm2b')\n", "m3", "m2a,m2b", "", ""},
	{"revision = 'm3'\ndown_revision = [\n    'm2a',  # first\n    \"m2b\",\n]\n", "m3", "m2a,m2b", "", ""},
	/* item 8: a tuple without parentheses, implicit concatenation, two statements on a line,
	 * module-level constants */
	{"revision = 'm3'\ndown_revision = 'a', 'b'\n", "m3", "a,b", "", ""},
	{"revision = 'm3'\ndown_revision = 'a',\n", "m3", "a", "", ""},
	{"revision = '1a2b' \\\n    '3c4d'\ndown_revision = ('ab' 'cd')\n", "1a2b3c4d", "abcd", "", ""},
	{"revision = 'x'; down_revision = 'y'  # both\n", "x", "y", "", ""},
	{"REV_X = '1a2b'\nREV_Y: str = '0f0f'\nrevision = REV_X\ndown_revision = (REV_Y,)\n", "1a2b", "0f0f", "", ""},
	{"A = B = 'c'\nrevision = A\ndown_revision = B\n", "c", "c", "", ""},
	{"\"\"\"doc\n\nrevision = 'fake'\nRevises: x\n\"\"\"\nrevision = 'real'\ndown_revision = None\n", "real", "", "",
	 ""},
	{"revision = 'x1'\ndown_revision = 'b1'\nbranch_labels = ('feature',)\ndepends_on = 'b2'\n", "x1", "b1",
	 "feature", "b2"},
	{"# revision = 'commented'\nrevision = u'r1'  # trailing\ndown_revision = None\n", "r1", "", "", ""},
	{"def f():\n    revision = 'inner'\nrevision = 'top'\ndown_revision = None\n", "top", "", "", ""},
	{"class C:\n    revision = 'inner'\nrevision = \"\"\"top\"\"\"\ndown_revision = ()\n", "top", "", "", ""},
	{"revision = 'a'\ndown_revision = ''\ndepends_on = ('',)\n", "a", "", "", ""},
	{"revision = 'a\\x41\\u00e9'\r\ndown_revision = r'\\d'\r\n", "aA\xc3\xa9", "\\d", "", ""},
	{"revision = 'r'\rdown_revision = None\r", "r", "", "", ""},
	{"revision = 'first'\nrevision = 'second'\ndown_revision = None\n", "second", "", "", ""},
	/* item 3: a branch_labels that is not a literal is "labelled, names unknown" */
	{"from neutron.db.migration import cli\nrevision = 'e1'\ndown_revision = None\n"
	 "branch_labels = (cli.EXPAND_BRANCH,)\n",
	 "e1", "", "?", ""},
	{"revision = 'c1'\ndown_revision = None\nbranch_labels = migration.CONTRACT_BRANCH\n", "c1", "", "?", ""},
	/* refused: not literals, a block, the wrong type, no revision, not Python */
	{"import ids\nrevision = ids.REV\n", NULL, "x.py:2: revision is not a literal", NULL, NULL},
	{"revision = 'a'\ndown_revision = get()\n", NULL, "x.py:2: down_revision is not a literal", NULL, NULL},
	{"revision = 'a' + 'b'\ndown_revision = None\n", NULL, "revision is not a literal", NULL, NULL},
	{"REV = 'a'\nimport REV\nrevision = REV\ndown_revision = None\n", NULL, "x.py:3: revision is not", NULL,
	 NULL},
	{"if X:\n    revision = 'a'\nelse:\n    revision = 'b'\ndown_revision = None\n", NULL,
	 "inside a block (the one at line 3)", NULL, NULL},
	{"revision = None\ndown_revision = None\n", NULL, "x.py:1: revision must be one string id", NULL, NULL},
	{"revision = 'a'\ndown_revision = 5\n", NULL, "down_revision must be None, a string", NULL, NULL},
	{"revision = 'a'\ndepends_on = None\n", NULL, "no `down_revision", NULL, NULL},
	{"import os\n", NULL, "no `revision", NULL, NULL},
	{"revision = 'a\ndown_revision = None\n", NULL, "x.py:1: not Python that could run", NULL, NULL},
	{"revision = f'a'\ndown_revision = None\n", NULL, "revision is not a literal", NULL, NULL},
	{"revision = '\\N{DASH}'\ndown_revision = None\n", NULL, "an escape this reader does not decode", NULL, NULL},
};

static void test_parse(void)
{
	for (size_t i = 0; i < sizeof PARSE / sizeof PARSE[0]; i++) {
		struct rev r;
		char err[512] = "";
		bool ok = alembic_rev_parse(PARSE[i].text, strlen(PARSE[i].text), "x.py", &r, err, sizeof err);
		CHECK(ok == (PARSE[i].id != NULL), "case %zu: ok=%d (%s)", i, ok, err);
		if (ok && PARSE[i].id) {
			char *down = joined(r.down, r.ndown), *labels = joined(r.labels, r.nlabels);
			char *deps = joined(r.depends, r.ndepends);
			CHECK_STR(r.id, PARSE[i].id, "id");
			CHECK_STR(down, PARSE[i].down, "down_revision");
			CHECK_STR(r.labels_unknown ? "?" : labels, PARSE[i].labels, "branch_labels");
			CHECK_STR(deps, PARSE[i].deps, "depends_on");
			free(down);
			free(labels);
			free(deps);
		} else if (!ok && !PARSE[i].id) {
			CHECK(strstr(err, PARSE[i].down) != NULL, "case %zu: '%s' lacks '%s'", i, err, PARSE[i].down);
		}
		rev_free(&r);
	}
	/* Alembic's legacy rule: a file without revision named like an id has that id. */
	struct rev r;
	char err[256];
	CHECK(alembic_rev_parse("down_revision = None\n", 21, "versions/1a2b3c.py", &r, err, sizeof err) &&
		      strcmp(r.id, "1a2b3c") == 0,
	      "legacy id: %s", err);
	rev_free(&r);
	/* A NUL byte anywhere, in a string too (after a backslash here), is refused as Python
	 * refuses it, at its line. */
	static const char nul[] = "revision = 'a'\ndown_revision = 'b\0\\\0'\n";
	CHECK(!alembic_rev_parse(nul, sizeof nul - 1, "x.py", &r, err, sizeof err) &&
		      strstr(err, "x.py:2: not Python that could run (a NUL byte") != NULL,
	      "a NUL in a string: %s", err);
	rev_free(&r);
}

static char **split_list(const char *s, size_t *n)
{
	char **v = NULL, *copy = strdup(s), *save = NULL;
	*n = 0;
	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		v = xrealloc(v, (*n + 1) * sizeof *v);
		v[(*n)++] = xstrdup(p);
	}
	free(copy);
	return v;
}

/* A chain from "id:parents:file[:labels[:depends]]" specs ("-": none; labels "?": unknown). */
static void build(struct chain *c, const char *const *specs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *copy = xstrdup(specs[i]), *f[5] = {"?", "-", "?", NULL, NULL};
		size_t nf = 0;
		for (char *p = copy, *e; nf < 5 && p; p = e ? e + 1 : NULL) {
			e = strchr(p, ':');
			if (e)
				*e = '\0';
			f[nf++] = p;
		}
		struct rev r = {0};
		r.id = xstrdup(f[0]);
		r.file = xstrdup(f[2]);
		r.line = 3;
		r.down_line = 4;
		r.labels_line = 5;
		r.depends_line = 6;
		if (strcmp(f[1], "-") != 0)
			r.down = split_list(f[1], &r.ndown);
		if (f[3] && strcmp(f[3], "?") == 0)
			r.labels_unknown = true;
		else if (f[3] && strcmp(f[3], "-") != 0)
			r.labels = split_list(f[3], &r.nlabels);
		if (f[4])
			r.depends = split_list(f[4], &r.ndepends);
		chain_add(c, &r);
		free(copy);
	}
}

static void expect(const char *const *specs, size_t n, const char *kind, const char *words)
{
	struct chain c = {0};
	struct problems p = {0};
	build(&c, specs, n);
	chain_check(&c, &p);
	if (!kind) {
		CHECK(p.n == 0, "%s...: unexpected problem %s", specs[0], p.n ? p.items[0].msg : "");
	} else {
		CHECK(p.n == 1 && strcmp(p.items[0].kind, kind) == 0, "%s...: want one %s, got %zu (%s)",
		      specs[0], kind, p.n, p.n ? p.items[0].msg : "-");
		if (p.n)
			CHECK(strstr(p.items[0].msg, words) != NULL, "'%s' lacks '%s'", p.items[0].msg, words);
	}
	problems_free(&p);
	chain_free(&c);
}

static void test_graph(void)
{
	const char *linear[] = {"1:-:v/1_a.py", "2:1:v/2_b.py", "3:2:v/3_c.py"};
	expect(linear, 3, NULL, NULL);
	const char *merge[] = {"m1:-:v/m1.py", "a:m1:v/a.py", "b:m1:v/b.py", "m3:a,b:v/m3.py"};
	expect(merge, 4, NULL, NULL);
	const char *two[] = {"0001:-:v/0001_a.py", "0002:0001:v/0002_b.py", "0003:0002:v/0003_c.py",
			     "0004:-:v/0004_asyncpg.py", "0005:0004:v/0005_e.py"};
	expect(two, 5, "roots", "set down_revision = '0003' in v/0004_asyncpg.py");
	const char *heads[] = {"1:-:v/1.py", "2:1:v/2.py", "3:1:v/3.py"};
	expect(heads, 3, "heads", "alembic merge");
	const char *dangling[] = {"1:-:v/1_a.py", "2:1:v/2_add.py", "3:2_add:v/3_c.py"};
	expect(dangling, 3, "dangling", "set down_revision = '2' in v/3_c.py");
	const char *typo[] = {"1:-:v/1.py", "abc123:1:v/x.py", "3:abc124:v/3.py"};
	expect(typo, 3, "dangling", "did you mean 'abc123'");
	const char *dup[] = {"1:-:v/1.py", "2:1:v/2_a.py", "2:1:v/2_b.py"};
	expect(dup, 3, "duplicate", "v/2_a.py:3 and v/2_b.py:3");
	const char *cycle[] = {"c1:-:v/c1.py", "c2:c4:v/c2.py", "c3:c2:v/c3.py", "c4:c3:v/c4.py"};
	expect(cycle, 4, "cycle", "c3 (v/c3.py)");
	/* item 1: roots that merge into one head are one history */
	const char *merged_roots[] = {"4fc3:-:v/a.py", "a2:4fc3:v/b.py", "7abe:-:v/c.py", "b2:7abe:v/d.py",
				      "m:a2,b2:v/e.py", "n:m:v/f.py"};
	expect(merged_roots, 6, NULL, NULL);
	/* but a root that ends in its own head is still the incident's second chain */
	const char *stray[] = {"4fc3:-:v/a.py", "7abe:-:v/c.py", "m:4fc3,7abe:v/e.py", "x:-:v/x.py", "y:x:v/y.py"};
	expect(stray, 5, "roots", "2 independent chains");
	/* item 2: depends_on through a branch label; a missing one points at the depends_on line */
	const char *dep_label[] = {"a1:-:v/a1.py:lib1", "b1:a1:v/b1.py", "a2:-:v/a2.py:-", "b2:a2:v/b2.py:-:lib1"};
	expect(dep_label, 4, NULL, NULL);
	const char *dep_missing[] = {"1:-:v/1.py", "2:1:v/2.py:-:nolabel"};
	expect(dep_missing, 2, "dangling", "v/2.py:6: depends_on names 'nolabel'");
	/* item 3: labels that are not literals mean "labelled" and fail only a depends_on on them */
	const char *unknown[] = {"1:-:v/1.py", "e1:1:v/e1.py:?", "c1:1:v/c1.py:?", "e2:e1:v/e2.py"};
	expect(unknown, 4, NULL, NULL);
	const char *unknown_dep[] = {"1:-:v/1.py", "e1:1:v/e1.py:?", "e2:e1:v/e2.py:-:expand"};
	expect(unknown_dep, 3, "dangling", "branch_labels is not a literal (v/e1.py:5)");
	const char *down_label[] = {"1:-:v/1.py:lib", "2:lib:v/2.py"};
	expect(down_label, 2, "dangling", "a branch label of v/1.py, not a revision id");
	const char *label_twice[] = {"1:-:v/1.py:x", "2:1:v/2.py:x"};
	expect(label_twice, 2, "label", "branch label 'x' is already a label of 1");
	const char *bad_id[] = {"a-b:-:v/1.py"};
	expect(bad_id, 1, "invalid_id", "holds '-'");
	const char *dep_cycle[] = {"1:-:v/1.py", "2:1:v/2.py:-:3", "3:2:v/3.py"};
	expect(dep_cycle, 3, "cycle", "down_revision and depends_on links form a cycle");
}

/* Alembic's own order for `upgrade heads` (what its _upgrade_revs returned for these graphs of
 * its tests/test_version_traversal.py, files in name order): the plan names it as it will run. */
static void test_order(void)
{
	static const struct {
		const char *specs[10];
		size_t n;
		const char *at;   /* the version table's rows, "," separated ("" : none) */
		const char *want; /* the plan */
	} cases[] = {
		{{"a:-:v/a.py", "b1:a:v/b1.py", "b2:a:v/b2.py", "b3:a:v/b3.py", "c1:b1,b2,b3:v/c1.py",
		  "c2:b1,b2,b3:v/c2.py", "d1:c1:v/d1.py", "d2:c2:v/d2.py"},
		 8, "", "a,b3,b2,b1,c2,d2,c1,d1"},
		{{"a:-:v/a.py", "b1:a:v/b1.py", "b2:a:v/b2.py", "b3:a:v/b3.py", "c1:b1,b2:v/c1.py", "c2:b2,b3:v/c2.py",
		  "d1:c1:v/d1.py", "d2:c2:v/d2.py"},
		 8, "b1", "b2,b3,c2,d2,c1,d1"},
		{{"a1:-:v/a1.py", "a2:a1:v/a2.py", "a3:a2:v/a3.py:-:b1", "b1:-:v/b1.py", "b2:b1:v/b2.py:-:a2",
		  "b3:b2:v/b3.py"},
		 6, "", "b1,a1,a2,b2,b3,a3"},
		{{"a:-:v/a.py", "b:a:v/b.py", "c1:b:v/c1.py", "c2:b:v/c2.py:c2branch", "d1:c1:v/d1.py",
		  "d2:c2:v/d2.py", "e:d1,d2:v/e.py", "f:e:v/f.py"},
		 8, "c1", "c2,d2,d1,e,f"},
		{{"a1:-:v/a1.py", "a2:a1:v/a2.py", "a3:a2:v/a3.py", "b1:-:v/b1.py", "b2:b1:v/b2.py:-:a3",
		  "b3:b2:v/b3.py", "b4:b3:v/b4.py:-:a3"},
		 7, "a2", "a3,b1,b2,b3,b4"},
		{{"a:-:v/a.py", "b:a:v/b.py", "c1:b:v/c1.py:c1branch", "c2:b:v/c2.py:c2branch", "d1:c1:v/d1.py",
		  "d2:c2:v/d2.py:-:c1"},
		 6, "", "a,b,c1,c2,d2,d1"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct chain c = {0};
		build(&c, cases[i].specs, cases[i].n);
		size_t nrows = 0, at[10], out[10];
		char **rows = split_list(cases[i].at, &nrows);
		for (size_t k = 0; k < nrows; k++) {
			at[k] = (size_t)chain_find(&c, rows[k]);
			free(rows[k]);
		}
		free(rows);
		size_t n = chain_pending(&c, at, nrows, out);
		char *ids[10];
		for (size_t k = 0; k < n; k++)
			ids[k] = c.revs[out[k]].id;
		char *got = joined(ids, n);
		CHECK_STR(got, cases[i].want, "order");
		free(got);
		chain_free(&c);
	}
}

/* alembic.ini as ConfigParser reads it (each case checked against Python's configparser with
 * Alembic's arguments). */
static void test_ini(void)
{
	static const struct {
		const char *text, *key;
		const char *want; /* the value, or "ERR:" and part of the error */
	} cases[] = {
		/* item 9: a later [DEFAULT] does not override the section; strict duplicates */
		{"[alembic]\nscript_location = a\n[DEFAULT]\nscript_location = b\n", "script_location", "a"},
		{"[DEFAULT]\nx = d\n[alembic]\ny = %(x)s/v\n", "y", "d/v"},
		{"[alembic]\na = 1\nA = 2\n", "a", "ERR:line 3: option 'a' is set twice in [alembic]"},
		{"[alembic]\n[x]\n[alembic]\n", "a", "ERR:line 3: section [alembic] appears twice"},
		{"[DEFAULT]\na = 1\n[DEFAULT]\na = 2\n", "a", "ERR:option 'a' is set twice in [DEFAULT]"},
		{"[DEFAULT]\na = 1\n[DEFAULT]\nb = 2\n[alembic]\nv = %(a)s%(b)s\n", "v", "12"},
		{"[alembic]\nv =\n    one\n    two\n", "v", "\none\ntwo"},
		{"[alembic]\nv = a\n\n  b\n", "v", "a\n\nb"},
		{"[alembic]\nv = a\n  # c\n  b\n", "v", "a\nb"},
		{"[alembic]\nv = a # b\n", "v", "a # b"},
		{"[alembic]\nv: x=y\n", "v", "x=y"},
		{"[alembic]\nv = %(missing)s\n", "v", "ERR:%(missing)s names no option"},
		{"[alembic]\nv = 50%\n", "v", "ERR:'%' must be followed by"},
		{"[alembic]\nv = 50%%\n", "v", "50%"},
		{"[alembic]\nScript_Location = a\n", "script_location", "a"},
		{"x = 1\n", "x", "ERR:line 1: 'x = 1' comes before any [section] header"},
		{"[alembic]\nnot an option\n", "v", "ERR:line 2: neither a [section] header nor a key = value line"},
		{"[alembic] ; c\nv = 1\n", "v", "1"},
		{"[alembic]\r\nv = 1\r\n", "v", "1"},
		{"[alembic]\na = 1\n  b = 2\n", "a", "1\nb = 2"},
		{"[DEFAULT]\nhere = /x\n[alembic]\nv = %(here)s\n", "v", "/x"},
		{"[alembic]\nv = %(here)s/m\n", "v", "/p/m"},
		{"[alembic]\nv = %(w)s\nw = %(v)s\n", "v", "ERR:nest deeper than 10"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct ini ini;
		char err[512] = "", *v = NULL;
		bool want_err = strncmp(cases[i].want, "ERR:", 4) == 0;
		int r = ini_parse(cases[i].text, strlen(cases[i].text), "/p", &ini, err, sizeof err) ? 1 : -1;
		if (r > 0) {
			r = ini_get(&ini, "alembic", cases[i].key, &v, err, sizeof err);
			ini_free(&ini);
		}
		if (want_err)
			CHECK(r < 0 && strstr(err, cases[i].want + 4), "ini case %zu: r=%d err '%s'", i, r, err);
		else
			CHECK(r == 1 && v && strcmp(v, cases[i].want) == 0, "ini case %zu: r=%d '%s' (%s)", i, r,
			      v ? v : "(none)", err);
		free(v);
	}
}

static bool locate(const char *text, const char *here, const char *cwd, const char *section,
		   const char *pythonpath, struct alembic_where *w, char *err, size_t errlen)
{
	struct alembic_paths p = {"a.ini", here, cwd, section ? section : "alembic", pythonpath};
	return alembic_locate(text, strlen(text), &p, w, err, errlen);
}

/* Where the revision files are, as Alembic decides it (here /p, the command's directory /c). */
static void test_locate(void)
{
	static const struct {
		const char *text, *section;
		const char *dirs; /* "|"-separated; or "ERR:" and part of the error */
		bool recursive;
	} cases[] = {
		{"[alembic]\nscript_location = %(here)s/migrations\n", NULL, "/p/migrations/versions", false},
		/* item 7: relative paths start in the migration command's directory */
		{"[alembic]\nscript_location = migrations\n", NULL, "/c/migrations/versions", false},
		{"[alembic]\nscript_location = m\nversion_locations = %(here)s/a b\n", NULL, "/p/a|/c/b", false},
		/* item 5: path_separator, then version_path_separator, then the legacy rule */
		{"[alembic]\nscript_location = m\npath_separator = os\nversion_locations = a:/abs/two\n", NULL,
		 "/c/a|/abs/two", false},
		{"[alembic]\nscript_location = m\npath_separator = ;\nversion_path_separator = os\n"
		 "version_locations = a;b c\n",
		 NULL, "/c/a|/c/b c", false},
		{"[alembic]\nscript_location = m\nversion_path_separator = newline\nversion_locations =\n    one\n"
		 "    two\n",
		 NULL, "/c/one|/c/two", false},
		{"[alembic]\nscript_location = m\npath_separator = space\nversion_locations = a,b  c\n", NULL,
		 "/c/a,b|/c/c", false},
		{"[alembic]\nscript_location = m\nversion_locations = a, b\n", NULL, "/c/a|/c/b", false},
		{"[alembic]\nscript_location = m\nversion_locations = a ,b\n", NULL, "/c/a|/c|/c/b", false},
		{"[alembic]\nscript_location = m\nversion_locations =\n", NULL, "/c/m/versions", false},
		/* a split that leaves no piece is Alembic's empty list, which counts as none; a piece of
		 * Python white space only is kept, stripped to "" (the command's directory) */
		{"[alembic]\nscript_location = m\nversion_path_separator = ;\nversion_locations = ;;\n", NULL,
		 "/c/m/versions", false},
		{"[alembic]\nscript_location = m\npath_separator = os\nversion_locations = \x1d\x1d:\x1d:a\n", NULL,
		 "/c|/c/a", false},
		{"[DEFAULT]\nbase = db\n[alembic]\nscript_location: %(base)s\nversion_path_separator = os\n"
		 "version_locations = %(base)s/one:/abs/two\nrecursive_version_locations = true\n",
		 NULL, "/c/db/one|/abs/two", true},
		{"[alembic]\nscript_location = m\nrecursive_version_locations = True\n", NULL, "/c/m/versions", false},
		/* item 9: the section alembic -n NAME reads */
		{"[core]\nscript_location = core\n[tenant]\nscript_location = tenant\n", "tenant", "/c/tenant/versions",
		 false},
		{"[core]\nscript_location = core\n", NULL, "ERR:has no [alembic] section", false},
		{"[alembic]\nscript_location = m\nversion_locations = a\nversion_path_separator = tab\n", NULL,
		 "ERR:version_path_separator = tab is not a valid value", false},
		{"[alembic]\nscript_location = m\nprepend_sys_path = .\npath_separator = colon\n", NULL,
		 "ERR:path_separator = colon is not a valid value", false},
		{"[loggers]\nkeys = root\n", NULL, "ERR:has no [alembic] section", false},
		{"[alembic]\nsqlalchemy.url = x\n", NULL, "ERR:has no script_location", false},
		/* an empty script_location is Alembic 1.16's Path(""), the command's directory (1.8
		 * refused it; the tool reads as the newer Alembic does) */
		{"[alembic]\nscript_location =\n", NULL, "/c/versions", false},
		{"script_location = m\n", NULL, "ERR:comes before any [section]", false},
		{"[alembic]\nscript_location = m\ntruncate_slug_length = forty\n", NULL,
		 "ERR:truncate_slug_length = forty is not an integer", false},
		{"[alembic]\nscript_location = m\n[post_write_hooks]\nhooks = black\nblack.options = -l 79 %(x)s\n",
		 NULL, "ERR:[post_write_hooks] black.options: %(x)s names no option", false},
		{"[alembic]\nscript_location = %(script_location)s/x\n", NULL, "ERR:nest deeper than 10", false},
		{"[alembic]\nscript_location = nowhere:migrations\n", NULL,
		 "ERR:'nowhere' is no plain package (a directory with __init__.py) in /c", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct alembic_where w;
		char err[1024] = "";
		bool ok = locate(cases[i].text, "/p", "/c", cases[i].section, NULL, &w, err, sizeof err);
		bool want_err = strncmp(cases[i].dirs, "ERR:", 4) == 0;
		CHECK(ok == !want_err, "locate case %zu: ok=%d (%s)", i, ok, err);
		if (ok && !want_err) {
			char *got = joined_by(w.dirs, w.ndirs, "|");
			CHECK_STR(got, cases[i].dirs, "locations");
			CHECK(w.recursive == cases[i].recursive, "locate case %zu: recursive", i);
			free(got);
			alembic_where_free(&w);
		} else if (!ok && want_err) {
			CHECK(strstr(err, cases[i].dirs + 4) != NULL, "locate case %zu: '%s' lacks '%s'", i, err,
			      cases[i].dirs + 4);
		}
	}
}

static void touch(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f)
		fclose(f);
}

/* item 10: package resources (as Python finds a plain package from the command's directory,
 * prepend_sys_path and PYTHONPATH) and the Flask-Migrate layout, on a real directory tree. */
static void test_locate_files(void)
{
	char root[] = "/tmp/mtr-unit-alembic-XXXXXX", sub[600], want[700], err[1024] = "";
	if (!mkdtemp(root)) {
		CHECK(false, "mkdtemp");
		return;
	}
	snprintf(sub, sizeof sub, "%s/app", root);
	mkdir(sub, 0700);
	touch(sub, "__init__.py");
	snprintf(sub, sizeof sub, "%s/app/db", root);
	mkdir(sub, 0700);
	touch(sub, "__init__.py");
	struct alembic_where w;
	bool ok = locate("[alembic]\nscript_location = app.db:migrations\n", "/p", root, NULL, NULL, &w, err, sizeof err);
	snprintf(want, sizeof want, "%s/app/db/migrations", root);
	CHECK(ok && strcmp(w.script_dir, want) == 0, "package resource: %s (%s)", ok ? w.script_dir : "-", err);
	if (ok)
		alembic_where_free(&w);
	ok = locate("[alembic]\nscript_location = app:m\nprepend_sys_path = x\n", "/p", "/", NULL, root, &w, err,
		    sizeof err);
	snprintf(want, sizeof want, "%s/app/m", root);
	CHECK(ok && strcmp(w.script_dir, want) == 0, "through PYTHONPATH: %s (%s)", ok ? w.script_dir : "-", err);
	if (ok)
		alembic_where_free(&w);
	/* Flask-Migrate: no script_location, env.py and versions/ beside the ini */
	touch(root, "env.py");
	snprintf(sub, sizeof sub, "%s/versions", root);
	mkdir(sub, 0700);
	ok = locate("[alembic]\n# template used to generate migration files\n", root, "/c", NULL, NULL, &w, err,
		    sizeof err);
	CHECK(ok && w.flask && strcmp(w.dirs[0], sub) == 0, "flask layout: %s", err);
	if (ok)
		alembic_where_free(&w);
	static const char *const made[] = {"app/db/__init__.py", "app/db", "app/__init__.py", "app", "env.py",
					   "versions", ""};
	for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", root, made[i]);
		CHECK(remove(path) == 0, "cleanup %s", path);
	}
}

void test_alembic(void)
{
	test_parse();
	test_graph();
	test_order();
	test_ini();
	test_locate();
	test_locate_files();
}
