/* Shell-like splitting of --migrate-cmd, table-driven. */
#include "mtr/argv.h"
#include "unit.h"

#include <stdlib.h>

void test_argv(void)
{
	static const struct {
		const char *in;
		const char *want[6]; /* NULL-terminated; want[0] == NULL means "error expected" */
	} cases[] = {
		{"python3 -m alembic upgrade head", {"python3", "-m", "alembic", "upgrade", "head"}},
		{"  flyway   migrate\t", {"flyway", "migrate"}},
		{"a 'b c' d", {"a", "b c", "d"}},
		{"a \"b \\\"c\\\" $d\"", {"a", "b \"c\" $d"}},
		{"a\\ b c", {"a b", "c"}},
		{"'it'\\''s'", {"it's"}},
		{"x '' y", {"x", "", "y"}},
		{"\"a\\nb\"", {"a\\nb"}},
		{"echo '&&'", {"echo", "&&"}},
		{"echo a&&b", {NULL}},
		{"head; rm x", {NULL}},
		{"sort x>f", {NULL}},
		{"a|b", {NULL}},
		{"tool 2>&1", {NULL}},
		{"curl http://h/?a=1&b=2", {NULL}},
		{"echo 'a&&b' \\;", {"echo", "a&&b", ";"}},
		{"echo \"x>f\" 'head;'", {"echo", "x>f", "head;"}},
		{"$HOME/bin/tool", {"$HOME/bin/tool"}},
		{"unterminated 'quote", {NULL}},
		{"unterminated \"quote", {NULL}},
		{"trailing\\", {NULL}},
		{"", {NULL}},
		{"   ", {NULL}},
		{"alembic upgrade head && uvicorn app", {NULL}},
		{"tool ; rm", {NULL}},
		{"tool > out", {NULL}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char **v = NULL;
		int n = -1;
		char err[256] = "";
		bool ok = argv_split(cases[i].in, &v, &n, err, sizeof err);
		if (!cases[i].want[0]) {
			CHECK(!ok && err[0], "'%s' should be refused", cases[i].in);
			continue;
		}
		CHECK(ok, "'%s' refused: %s", cases[i].in, err);
		if (!ok)
			continue;
		int want_n = 0;
		while (cases[i].want[want_n])
			want_n++;
		CHECK(n == want_n, "'%s': %d words, want %d", cases[i].in, n, want_n);
		for (int k = 0; k < n && k < want_n; k++)
			CHECK_STR(v[k], cases[i].want[k], cases[i].in);
		CHECK(v[n] == NULL, "'%s': vector not NULL-terminated", cases[i].in);
		argv_free(v);
	}

	/* The error names the position. */
	char **v = NULL;
	int n;
	char err[256];
	CHECK(!argv_split("ab 'cd", &v, &n, err, sizeof err), "should fail");
	CHECK(strstr(err, "character 4") != NULL, "position missing: %s", err);

	/* argv_join quotes what a shell would need quoted, and round-trips through argv_split. */
	char *words[] = {"python3", "-c", "print('hi there')", "", NULL};
	char *joined = argv_join(words);
	CHECK_STR(joined, "python3 -c 'print('\\''hi there'\\'')' ''", "join");
	CHECK(argv_split(joined, &v, &n, err, sizeof err), "re-split: %s", err);
	CHECK(n == 4 && strcmp(v[2], "print('hi there')") == 0 && v[3][0] == '\0', "round trip");
	argv_free(v);
	free(joined);
}
