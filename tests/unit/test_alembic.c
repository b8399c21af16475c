/* Reading Alembic revision files as text, and the revision graph's checks. */
#include "mtr/chain.h"
#include "mtr/source_alembic.h"
#include "unit.h"

#include <stdlib.h>

static void test_parse(void)
{
	static const struct {
		const char *text;
		bool ok;
		const char *id;
		size_t ndown;
		const char *down0, *down1;
		size_t nlabels;
		const char *err; /* part of the error when !ok */
	} cases[] = {
		{"revision = 'ae10'\ndown_revision = None\n", true, "ae10", 0, NULL, NULL, 0, NULL},
		{"revision: str = \"ae10\"\ndown_revision: Union[str, Sequence[str], None] = \"9f\"\n"
		 "branch_labels: Union[str, Sequence[str], None] = None\n",
		 true, "ae10", 1, "9f", NULL, 0, NULL},
		{"revision = 'm3'\ndown_revision = ('m2a', 'm2b')\n", true, "m3", 2, "m2a", "m2b", 0, NULL},
		{"revision = 'm3'\ndown_revision = [\n    'm2a',  # first\n    \"m2b\",\n]\n", true, "m3", 2,
		 "m2a", "m2b", 0, NULL},
		{"\"\"\"doc\n\nrevision = 'fake'\nRevises: x\n\"\"\"\nrevision = 'real'\ndown_revision = None\n",
		 true, "real", 0, NULL, NULL, 0, NULL},
		{"revision = 'x1'\ndown_revision = 'b1'\nbranch_labels = ('feature',)\ndepends_on = 'b2'\n", true,
		 "x1", 1, "b1", NULL, 1, NULL},
		{"# revision = 'commented'\nrevision = u'r1'  # trailing\ndown_revision = None\n", true, "r1", 0,
		 NULL, NULL, 0, NULL},
		{"def f():\n    revision = 'inner'\nrevision = 'top'\n", true, "top", 0, NULL, NULL, 0, NULL},
		{"REV = '1'\nrevision = REV\n", false, NULL, 0, NULL, NULL, 0, "x.py:2: revision is not a literal"},
		{"revision = 'a'\ndown_revision = get()\n", false, NULL, 0, NULL, NULL, 0, "x.py:2: down_revision"},
		{"revision = None\n", false, NULL, 0, NULL, NULL, 0, "revision must be one string"},
		{"import os\n", false, NULL, 0, NULL, NULL, 0, "no `revision"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rev r;
		char err[512] = "";
		bool ok = alembic_parse_revision(cases[i].text, "x.py", &r, err, sizeof err);
		CHECK(ok == cases[i].ok, "case %zu: ok=%d (%s)", i, ok, err);
		if (ok && cases[i].ok) {
			CHECK_STR(r.id, cases[i].id, "id");
			CHECK(r.ndown == cases[i].ndown, "case %zu: %zu parents", i, r.ndown);
			if (cases[i].down0 && r.ndown > 0)
				CHECK_STR(r.down[0], cases[i].down0, "down[0]");
			if (cases[i].down1 && r.ndown > 1)
				CHECK_STR(r.down[1], cases[i].down1, "down[1]");
			CHECK(r.nlabels == cases[i].nlabels, "case %zu: labels", i);
		} else if (!ok && cases[i].err) {
			CHECK(strstr(err, cases[i].err) != NULL, "case %zu: '%s' lacks '%s'", i, err, cases[i].err);
		}
		rev_free(&r);
	}
}

/* A chain from "id:parent,parent:file" specs. */
static void build(struct chain *c, const char *const *specs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *copy = strdup(specs[i]), *save = NULL;
		char *id = strtok_r(copy, ":", &save), *parents = strtok_r(NULL, ":", &save);
		char *file = strtok_r(NULL, ":", &save);
		struct rev r = {0};
		r.id = strdup(id);
		r.file = strdup(file);
		r.line = 3;
		r.down_line = 4;
		if (strcmp(parents, "-") != 0) {
			for (char *p = strtok_r(parents, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
				r.down = realloc(r.down, (r.ndown + 1) * sizeof *r.down);
				r.down[r.ndown++] = strdup(p);
			}
		}
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
		      specs[0], kind, p.n, p.n ? p.items[0].kind : "-");
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

	/* Pending: what is not an ancestor of the database's revision, parents first. */
	struct chain c = {0};
	build(&c, merge, 4);
	size_t at[1] = {1}, out[4];
	size_t n = chain_pending(&c, at, 1, out);
	CHECK(n == 2 && strcmp(c.revs[out[0]].id, "b") == 0 && strcmp(c.revs[out[1]].id, "m3") == 0,
	      "pending from a: %zu", n);
	chain_free(&c);
}

/* The whole text of each graph message, as users read it (lines of more than six ids are
 * shortened; the join names the file-order predecessor). */
static void test_graph_messages(void)
{
	static const struct {
		const char *specs[12];
		size_t n;
		const char *kind, *msg;
	} cases[] = {
		{{"1:-:v/01.py", "2:1:v/02.py", "3:2:v/03.py", "4:3:v/04.py", "5:4:v/05.py", "6:5:v/06.py",
		  "7:6:v/07.py", "8:7:v/08.py", "a:-:v/09.py", "b:a:v/10.py"},
		 10,
		 "roots",
		 "the migrations form 2 independent chains, each with its own first revision (down_revision = "
		 "None): 1 -> 2 -> 3 -> 4 -> 5 -> 6 -> ... -> 8 (v/01.py, starting 1); a -> b (v/09.py, "
		 "starting a). Alembic would apply them as unrelated histories. Join them: set down_revision "
		 "= '8' in v/09.py"},
		{{"a:-:v/a.py", "b:-:v/b.py"},
		 2,
		 "roots",
		 "the migrations form 2 independent chains, each with its own first revision (down_revision = "
		 "None): a (v/a.py, starting a); b (v/b.py, starting b). Alembic would apply them as unrelated "
		 "histories. Join them: set down_revision = 'a' in v/b.py"},
		{{"1:-:v/1.py", "2:1:v/2.py", "3:1:v/3.py", "4:1:v/4.py"},
		 4,
		 "heads",
		 "the migrations have 3 heads and none of the branches declares branch_labels: 2 (v/2.py), 3 "
		 "(v/3.py), 4 (v/4.py). Merge them with: alembic merge -m \"merge heads\" 2 3 4"},
		{{"c1:-:v/c1.py", "c2:c3:v/c2.py", "c3:c2:v/c3.py"},
		 3,
		 "cycle",
		 "the down_revision links form a cycle: c2 (v/c2.py) -> c3 (v/c3.py) -> c2 (v/c2.py) (each "
		 "names the next as its parent); break it by pointing one of them at its real predecessor"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct chain c = {0};
		struct problems p = {0};
		build(&c, cases[i].specs, cases[i].n);
		chain_check(&c, &p);
		CHECK(p.n == 1 && strcmp(p.items[0].kind, cases[i].kind) == 0, "message case %zu: %zu problems", i,
		      p.n);
		if (p.n)
			CHECK_STR(p.items[0].msg, cases[i].msg, "message");
		problems_free(&p);
		chain_free(&c);
	}
}

/* alembic.ini: where the revision files are, and values that never finish expanding. */
static void test_ini(void)
{
	static const struct {
		const char *text;
		const char *dir0, *dir1; /* NULL dir0: refused, err holding dir1 */
		bool recursive;
	} cases[] = {
		{"[alembic]\nscript_location = %(here)s/migrations\n", "/p/migrations/versions", NULL, false},
		{"[alembic]\nscript_location = m\nversion_locations = %(here)s/a b\n", "/p/a", "/p/b", false},
		{"[DEFAULT]\nbase = db\n[alembic]\nscript_location: %(base)s\nversion_path_separator = os\n"
		 "version_locations = %(base)s/one:/abs/two\nrecursive_version_locations = true\n",
		 "/p/db/one", "/abs/two", true},
		{"[alembic]\nscript_location = m\nversion_path_separator = newline\nversion_locations =\n"
		 "    one\n    two\n",
		 "/p/one", "/p/two", false},
		{"[loggers]\nkeys = root\n", NULL, "has no script_location", false},
		{"[alembic]\nscript_location = m\nversion_locations = a\nversion_path_separator = tab\n", NULL,
		 "version_path_separator = tab", false},
		{"script_location = m\n", NULL, "inside a [section]", false},
		/* A reference loop: ConfigParser refuses it; it once expanded ten times over. */
		{"[alembic]\nscript_location = %(script_location)s/x\n", NULL, "script_location does not expand",
		 false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char **dirs = NULL, err[512] = "";
		size_t n = 0;
		bool rec = false;
		bool ok = alembic_ini_locate(cases[i].text, "a.ini", "/p", &dirs, &n, &rec, err, sizeof err);
		CHECK(ok == (cases[i].dir0 != NULL), "ini case %zu: ok=%d (%s)", i, ok, err);
		if (ok && cases[i].dir0) {
			CHECK(n == (cases[i].dir1 ? 2u : 1u), "ini case %zu: %zu dirs", i, n);
			CHECK_STR(dirs[0], cases[i].dir0, "dir 0");
			if (cases[i].dir1 && n > 1)
				CHECK_STR(dirs[1], cases[i].dir1, "dir 1");
			CHECK(rec == cases[i].recursive, "ini case %zu: recursive", i);
		} else if (!ok && !cases[i].dir0) {
			CHECK(strstr(err, cases[i].dir1) != NULL, "ini case %zu: '%s' lacks '%s'", i, err,
			      cases[i].dir1);
			CHECK(dirs == NULL && n == 0, "ini case %zu: nothing to free on failure", i);
		}
		for (size_t k = 0; k < n; k++)
			free(dirs[k]);
		free(dirs);
	}

	/* Each level names the next eight times: 8^10 copies if expanded, refused at once. */
	char text[2048] = "[DEFAULT]\n";
	for (int level = 0; level < 10; level++) {
		size_t len = strlen(text);
		len += (size_t)snprintf(text + len, sizeof text - len, "k%d = ", level);
		for (int r = 0; r < 8; r++)
			len += (size_t)snprintf(text + len, sizeof text - len, "%%(k%d)s", level + 1);
		snprintf(text + len, sizeof text - len, "\n");
	}
	strcat(text, "k10 = x\n[alembic]\nscript_location = %(k0)s\n");
	char **dirs = NULL, err[512] = "";
	size_t n = 0;
	bool rec;
	CHECK(!alembic_ini_locate(text, "a.ini", "/p", &dirs, &n, &rec, err, sizeof err) &&
		      strstr(err, "grow past 65536 bytes"),
	      "exponential expansion: %s", err);
}

void test_alembic(void)
{
	test_parse();
	test_graph();
	test_graph_messages();
	test_ini();
}
