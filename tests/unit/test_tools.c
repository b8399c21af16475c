/* The presets' table, their placeholders, and the files' fingerprint. */
#include "mtr/fastpath.h"
#include "mtr/tool_native.h"
#include "mtr/tools.h"
#include "unit.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_table(void)
{
	static const char *const names[] = {"dbmate", "golang-migrate", "goose", "flyway", "prisma",
					    "django", "knex", "node-pg-migrate", "typeorm",
					    "sequelize", "sqitch", "yoyo", "liquibase"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const struct tool_def *t = tool_find(names[i]);
		CHECK(t != NULL, "preset %s", names[i]);
		if (!t)
			continue;
		CHECK(t->files[0] && t->history[0] && t->argv[0], "%s: files, history, argv", names[i]);
		/* a password never goes into a child's argv */
		for (size_t k = 0; t->argv[k]; k++)
			CHECK(!strstr(t->argv[k], "{url}") && !strstr(t->argv[k], "{password}"),
			      "%s: argv '%s' names a password", names[i], t->argv[k]);
		struct tool_vars v = {0};
		for (size_t k = 0; t->env[k]; k++) {
			char *e = tool_expand(t->env[k], &v);
			CHECK(e != NULL, "%s: env '%s' expands", names[i], t->env[k]);
			free(e);
		}
	}
	CHECK(tool_find("rails") == NULL, "unknown preset");
	char *all = tool_names();
	CHECK(strstr(all, "dbmate, ") == all && strstr(all, " or liquibase"), "names: %s", all);
	free(all);
}

static void test_expand(void)
{
	struct tool_vars v = {.url = "postgresql://u:p@h/d", .host = "h", .port = "5432", .dbname = "d"};
	char *s = tool_expand("jdbc:postgresql://{host}:{port}/{dbname}", &v);
	CHECK_STR(s, "jdbc:postgresql://h:5432/d", "expand");
	free(s);
	s = tool_expand("X={password}", &v);
	CHECK_STR(s, "X=", "an unset value is empty");
	free(s);
	CHECK(tool_expand("{nosuch}", &v) == NULL, "unknown placeholder");
	s = tool_expand("{ not a placeholder", &v);
	CHECK_STR(s, "{ not a placeholder", "a lone brace");
	free(s);
	static const struct {
		const char *in, *want;
	} urls[] = {
		{"postgresql://app:s%40cret@db:5432/app?sslmode=disable", "postgresql://app@db:5432/app?sslmode=disable"},
		{"postgres://app@db/app", "postgres://app@db/app"},
		{"postgresql://db/app", "postgresql://db/app"},
		{"postgresql://app:pw@[::1]:5432/app", "postgresql://app@[::1]:5432/app"},
		{"host=db", "host=db"},
	};
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		s = tool_url_without_password(urls[i].in);
		CHECK_STR(s, urls[i].want, urls[i].in);
		free(s);
	}
	s = tool_url_for_drivers("postgresql://h/d?keepalives=1&sslmode=require&keepalives_idle=5&tcp_user_timeout=1");
	CHECK_STR(s, "postgresql://h/d?sslmode=require", "libpq-only settings dropped");
	free(s);
	s = tool_url_for_drivers("postgresql://h/d?keepalives=1");
	CHECK_STR(s, "postgresql://h/d", "nothing left");
	free(s);
	s = tool_url_param("postgresql://h/d?a=1&sslmode=verify-full", "sslmode");
	CHECK_STR(s, "verify-full", "sslmode");
	free(s);
	CHECK(tool_url_param("postgresql://h/d?sslmodex=1", "sslmode") == NULL, "no sslmode");
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Names and contents count; order of listing does not; caches do not. */
static void test_files(void)
{
	char dir[] = "/tmp/mtr-unit-fp-XXXXXX";
	if (!mkdtemp(dir))
		return;
	char path[256];
	snprintf(path, sizeof path, "%s/app", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/app/migrations", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/app/migrations/0001_initial.py", dir);
	write_file(path, "x = 1\n");
	char *files[] = {"*/migrations/*.py"};
	struct fastpath_spec s = {.cwd = dir, .command = "cmd", .files = files, .nfiles = 1};
	char a[65], b[65], err[256];
	size_t n = 0;
	CHECK(fastpath_files(&s, a, &n, err, sizeof err) && n == 1, "one file: %zu %s", n, err);
	snprintf(path, sizeof path, "%s/app/migrations/__pycache__", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/app/migrations/notes.txt", dir);
	write_file(path, "not a migration");
	CHECK(fastpath_files(&s, b, &n, err, sizeof err) && strcmp(a, b) == 0, "other files do not count");
	snprintf(path, sizeof path, "%s/app/migrations/0001_initial.py", dir);
	write_file(path, "x = 2\n");
	CHECK(fastpath_files(&s, b, &n, err, sizeof err) && strcmp(a, b) != 0, "an edit counts");
	s.command = "other";
	char c[65];
	CHECK(fastpath_files(&s, c, &n, err, sizeof err) && strcmp(b, c) != 0, "the command counts");
	char *dirs[] = {"app"};
	s.files = dirs;
	CHECK(fastpath_files(&s, c, &n, err, sizeof err) && n == 2, "a directory: every file (%zu)", n);
	CHECK(nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS) == 0, "cleanup");
}

/* Flyway's checksums, as ChecksumCalculator computes them (values from zlib's CRC-32 over the
 * lines without their terminators, as java.util.zip.CRC32 updates, signed). */
static void test_checksums(void)
{
	CHECK(native_crc32(0, "123456789", 9) == 0xCBF43926u, "CRC-32 check value");
	static const struct {
		const char *text;
		int32_t want;
	} cases[] = {
		{"CREATE TABLE users (id int);\n", 336540139},
		{"a\r\nb\rc\n\nd", -310194927},
		{"\xEF\xBB\xBFSELECT 1;\r\n", 78787420},
		{"", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		CHECK(native_flyway_checksum(cases[i].text, strlen(cases[i].text)) == cases[i].want,
		      "flyway checksum %zu: %d", i, (int)native_flyway_checksum(cases[i].text, strlen(cases[i].text)));
}

void test_tools(void)
{
	test_checksums();
	test_table();
	test_expand();
	test_files();
}
