/* SQL migration file names, directives, error positions and the lock key. */
#include "mtr/lock.h"
#include "mtr/source.h"
#include "mtr/source_sql.h"
#include "mtr/sql_runner.h"
#include "mtr/strbuf.h"
#include "unit.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARK "-- migrate-then-run: no-transaction"

/* sqlr_scan goes through a file in 64 KiB pieces: what it says must not depend on where the
 * pieces end (a marker line longer than one piece, a NUL or the only non-blank byte after the
 * first piece), and its checksum is that of the whole text. */
static void test_scan(void)
{
	static const struct {
		const char *head;
		size_t blanks; /* spaces after head */
		const char *tail;
		enum sqlr_load want;
		bool marked;
	} cases[] = {
		{MARK, 70000, "\nCREATE INDEX CONCURRENTLY i ON t (x);\n", SQLR_LOADED, true},
		{MARK, 70000, "x\nSELECT 1;\n", SQLR_LOADED, false},
		{MARK, 70000, "", SQLR_LOADED, true},
		{MARK, 0, "s\n", SQLR_LOADED, false},
		{"SELECT 1;", 0, "\n", SQLR_LOADED, false},
		{"", 140000, "x", SQLR_LOADED, false},
		{"", 140000, "\n", SQLR_BAD, false},        /* only white space */
		{"SELECT 1;", 70000, "\0", SQLR_BAD, false}, /* a NUL in the second piece */
	};
	const size_t nul_case = sizeof cases / sizeof cases[0] - 1;
	char dir[] = "/tmp/mtr-unit-scan-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	struct sqlr_hash h;
	sqlr_hash_init(&h);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t hl = strlen(cases[i].head), tl = strlen(cases[i].tail) + (i == nul_case);
		struct strbuf b = STRBUF_INIT;
		sb_add(&b, cases[i].head, hl);
		for (size_t k = 0; k < cases[i].blanks; k++)
			sb_addc(&b, ' ');
		sb_add(&b, cases[i].tail, tl);
		size_t len = b.len;
		char *text = sb_take(&b);
		int fd = openat(dfd, "1_x.sql", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len, "write case %zu", i);
		if (fd >= 0)
			close(fd);
		struct sqlr_file f;
		char err[256] = "", sum[65];
		enum sqlr_load got = sqlr_scan(dfd, dir, "1_x.sql", MARK, &h, &f, err, sizeof err);
		sqlr_sha256_hex(&h, text, len, sum);
		CHECK(got == cases[i].want, "case %zu: %d, want %d (%s)", i, got, cases[i].want, err);
		CHECK(got != SQLR_LOADED || (f.marked == cases[i].marked && f.size == len &&
					     strcmp(f.checksum, sum) == 0),
		      "case %zu: marked %d size %zu", i, f.marked, f.size);
		free(text);
	}
	CHECK(mkfifoat(dfd, "2_fifo.sql", 0600) == 0, "mkfifo");
	struct sqlr_file f;
	char err[256];
	CHECK(sqlr_scan(dfd, dir, "2_fifo.sql", MARK, &h, &f, err, sizeof err) == SQLR_NOT_REGULAR,
	      "a FIFO is refused without waiting for a writer");
	sqlr_hash_free(&h);
	unlinkat(dfd, "1_x.sql", 0);
	unlinkat(dfd, "2_fifo.sql", 0);
	close(dfd);
	rmdir(dir);
}

/* --baseline and --repair-failed: a version in digits, nothing else. */
static void test_versions(void)
{
	static const struct {
		const char *value;
		bool ok;
	} cases[] = {
		{"0", true}, {"0003", true}, {"20250121093000", true}, {"18446744073709551615", true},
		{"18446744073709551616", false}, {"", false}, {"1_2", false}, {"1_add.sql", false},
		{"00_MIGRATE_CMD=x", false}, {"12abc", false}, {"-1", false}, {" 1", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config cfg = {.history_table = "public.h", .baseline = (char *)cases[i].value};
		struct source src;
		char err[256] = "";
		bool ok = source_sql_open(&cfg, &src, err, sizeof err);
		CHECK(ok == cases[i].ok, "--baseline '%s': ok=%d (%s)", cases[i].value, ok, err);
		if (ok)
			src.destroy(src.self);
		cfg.baseline = NULL;
		cfg.repair_failed = (char *)cases[i].value;
		ok = source_sql_open(&cfg, &src, err, sizeof err);
		CHECK(ok == cases[i].ok, "--repair-failed '%s': ok=%d (%s)", cases[i].value, ok, err);
		if (ok)
			src.destroy(src.self);
	}
}


/* Transaction control inside a file, found by the lexer before anything is sent. */
static void test_transaction_control(void)
{
	static const struct {
		const char *sql;
		const char *want; /* NULL: none */
		long line;
	} cases[] = {
		{"CREATE TABLE a (x int);\nCOMMIT;\n", "COMMIT", 2},
		{"begin;\nCREATE TABLE a (x int);\ncommit;", "BEGIN", 1},
		{"SELECT 1;\n\n  END;", "END", 3},
		{"SELECT 1; ROLLBACK", "ROLLBACK", 1},
		{"SAVEPOINT s; ROLLBACK TO SAVEPOINT s; ROLLBACK TO s;", NULL, 0},
		{"SELECT 1;\nSTART TRANSACTION;", "START TRANSACTION", 2},
		{"SELECT 1;\nPREPARE TRANSACTION 'x';", "PREPARE TRANSACTION", 2},
		{"PREPARE q AS SELECT 1; EXECUTE q;", NULL, 0},
		{"ABORT;", "ABORT", 1},
		{"SELECT 'COMMIT; BEGIN';", NULL, 0},
		{"SELECT E'it\\'s; COMMIT';", NULL, 0},
		{"SELECT 'it''s; COMMIT';", NULL, 0},
		{"SELECT \"COMMIT\"; SELECT \"a\"\"b;COMMIT\";", NULL, 0},
		{"-- COMMIT;\nSELECT 1; /* ROLLBACK; /* nested */ COMMIT; */ SELECT 2;", NULL, 0},
		{"DO $$ BEGIN COMMIT; END $$;", NULL, 0},
		{"DO $body$ BEGIN PERFORM '$$'; END $body$; COMMIT;", "COMMIT", 1},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n SELECT 1;\n SELECT 2;\nEND;\nSELECT f();",
		 NULL, 0},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;\nCOMMIT;",
		 "COMMIT", 2},
		{"SELECT CASE WHEN x THEN 1 ELSE 2 END FROM t; end;", "END", 1},
		{"SELECT $1; COMMIT", "COMMIT", 1},
		{"SELECT a$b$ FROM t; COMMIT", "COMMIT", 1},
		{"(SELECT 1); COMMIT;", "COMMIT", 1},
		{"CREATE TABLE commit_log (x int); INSERT INTO commit_log VALUES (1);", NULL, 0},
		{"", NULL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		long line = 0;
		const char *got = sqlr_transaction_control(cases[i].sql, &line);
		if (!cases[i].want) {
			CHECK(!got, "'%s': found %s", cases[i].sql, got);
			continue;
		}
		CHECK_STR(got, cases[i].want, cases[i].sql);
		CHECK(line == cases[i].line, "'%s': line %ld, want %ld", cases[i].sql, line, cases[i].line);
	}
	char *name = sqlr_text_name("caf\xe9_\xc3\xa9\\x");
	CHECK_STR(name, "caf\\xe9_\xc3\xa9\\x5cx", "escaped name");
	free(name);
}

void test_sql(void)
{
	static const struct {
		const char *file;
		int want;
		uint64_t version;
		const char *name;
	} names[] = {
		{"0001_init.sql", 1, 1, "init"},
		{"20250121093000_add_users.sql", 1, 20250121093000ULL, "add_users"},
		{"10_x_y.sql", 1, 10, "x_y"},
		{"18446744073709551615_max.sql", 1, UINT64_MAX, "max"},
		{"18446744073709551616_over.sql", -1, 0, NULL},
		{"init.sql", 0, 0, NULL},
		{"V1__flyway.sql", 0, 0, NULL},
		{"1_.sql", 0, 0, NULL},
		{"1_a.SQL", 0, 0, NULL},
		{"1-a.sql", 0, 0, NULL},
		{"1_a.sql.bak", 0, 0, NULL},
		{"_1_a.sql", 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		uint64_t v = 0;
		char name[64] = "";
		int got = source_sql_parse_name(names[i].file, &v, name, sizeof name);
		CHECK(got == names[i].want, "%s: %d, want %d", names[i].file, got, names[i].want);
		if (got == 1 && names[i].want == 1) {
			CHECK(v == names[i].version, "%s: version %" PRIu64, names[i].file, v);
			const char *got_name = name;
			CHECK_STR(got_name, names[i].name, names[i].file);
		}
	}

	static const struct {
		const char *text;
		long pos, line, col;
	} pos[] = {
		{"SELECT x;", 8, 1, 8},
		{"a\nbc\ndef", 7, 3, 2},
		{"é\nxyz", 4, 2, 2},      /* é is one character, two bytes */
		{"ab", 1, 1, 1},
		{"ab", 99, 1, 3},
	};
	for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
		long line, col;
		sqlr_position(pos[i].text, pos[i].pos, &line, &col);
		CHECK(line == pos[i].line && col == pos[i].col, "pos %ld in '%s': %ld:%ld, want %ld:%ld",
		      pos[i].pos, pos[i].text, line, col, pos[i].line, pos[i].col);
	}

	CHECK(source_sql_no_transaction("-- migrate-then-run: no-transaction\nCREATE INDEX"), "directive");
	CHECK(source_sql_no_transaction("-- migrate-then-run: no-transaction  \r\nX"), "trailing blanks");
	CHECK(!source_sql_no_transaction("\n-- migrate-then-run: no-transaction\n"), "not first line");
	CHECK(!source_sql_no_transaction("-- migrate-then-run: no-transactions\n"), "other word");

	/* The key is part of the documented interface: it must never change. */
	CHECK(lock_key("public.mtr_schema_history") == lock_key("public.mtr_schema_history"), "stable");
	CHECK(lock_key("public.mtr_schema_history") != lock_key("app.mtr_schema_history"), "distinct");
	CHECK(lock_key("") == (int64_t)0xcbf29ce484222325ULL, "FNV-1a offset basis");
	CHECK(lock_key("a") == (int64_t)0xaf63dc4c8601ec8cULL, "FNV-1a of 'a'");
	test_versions();
	test_scan();
	test_transaction_control();
}
