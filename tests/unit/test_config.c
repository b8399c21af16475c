/* Option parsing and validation, environment precedence, NAME_FILE secrets. */
#include "mtr/config.h"
#include "unit.h"

#include <stdlib.h>
#include <unistd.h>

static const char *const vars[] = {
	"MTR_DATABASE_URL", "MTR_DATABASE_URL_FILE", "DATABASE_URL", "DATABASE_URL_FILE",
	"PGPASSWORD", "PGPASSWORD_FILE", "MTR_WAIT_TIMEOUT", "MTR_MIGRATE_CMD", "MTR_ALEMBIC_INI",
	"MTR_MIGRATE_ONLY", "MTR_LOG_FORMAT", "MTR_LOG_LEVEL", "MTR_RETRIES", "MTR_PYTHON",
	"MTR_WAIT_MAX_INTERVAL", "MTR_MIGRATE_CWD"};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}

/* Parses a NULL-terminated argv list; returns the result, cfg filled, err set. */
static enum config_result parse(struct config *cfg, char *err, size_t len, char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	return config_parse(cfg, argc, argv, err, len);
}

#define ARGS(...) ((char *[]){"migrate-then-run", __VA_ARGS__, NULL})

static void test_values(void)
{
	static const struct {
		const char *in;
		bool ok;
		int64_t ms;
	} durations[] = {
		{"60", true, 60000}, {"30s", true, 30000}, {"500ms", true, 500}, {"2m", true, 120000},
		{"1h", true, 3600000}, {"0", true, 0},      {"abc", false, 0},    {"-5", false, 0},
		{"5x", false, 0},    {"", false, 0},        {"1.5s", false, 0},   {" 5", false, 0},
		{"99999999999999999999", false, 0},          {"9999999h", false, 0},
	};
	for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
		int64_t ms = -1;
		bool ok = config_parse_duration(durations[i].in, &ms);
		CHECK(ok == durations[i].ok, "duration '%s' ok=%d", durations[i].in, ok);
		if (ok && durations[i].ok)
			CHECK(ms == durations[i].ms, "duration '%s' = %lld", durations[i].in,
			      (long long)ms);
	}
	long n;
	CHECK(config_parse_count("3", &n) && n == 3, "count 3");
	CHECK(!config_parse_count("-1", &n), "count -1");
	CHECK(!config_parse_count("three", &n), "count three");
	CHECK(!config_parse_count("2000000", &n), "count too big");
	bool b;
	CHECK(config_parse_bool("TRUE", &b) && b, "bool TRUE");
	CHECK(config_parse_bool("0", &b) && !b, "bool 0");
	CHECK(!config_parse_bool("maybe", &b), "bool maybe");
}

static void test_errors(void)
{
	static struct {
		char *argv[6];
		const char *must_name; /* the error must contain this */
	} bad[] = {
		{{"mtr", "--migrate-cmd", "true", "--wait-timeout=abc", "app", NULL}, "--wait-timeout"},
		{{"mtr", "--migrate-cmd", "true", "--wait-timeout", "-5", NULL}, "--wait-timeout"},
		{{"mtr", "--migrate-cmd", "true", "--retries=-1", "app", NULL}, "--retries"},
		{{"mtr", "--migrate-cmd", "true", "--frob", "app", NULL}, "--frob"},
		{{"mtr", "--migrate-cmd", "true", "-x", "app", NULL}, "-x"},
		{{"mtr", "--migrate-cmd", "true", NULL}, "missing app command"},
		{{"mtr", "--migrate-cmd", "true", "--migrate-only", "app", NULL}, "--migrate-only"},
		{{"mtr", "--migrate-only", NULL}, "--alembic-ini"},
		{{"mtr", "--migrate-cmd", "true", "--log-format", "xml", NULL}, "--log-format"},
		{{"mtr", "--migrate-cmd", "true", "--log-level=loud", "app", NULL}, "debug|info|warn|error"},
		{{"mtr", "--migrate-cmd", NULL}, "--migrate-cmd"},
		{{"mtr", "--migrate-cmd=", "app", NULL}, "--migrate-cmd"},
		{{"mtr", "--migrate-cmd", "true", "--wait-max-interval=0", "app", NULL},
		 "--wait-max-interval"},
		{{"mtr", "--migrate-cmd", "true", "--migrate-only=perhaps", NULL}, "--migrate-only"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		clear_env();
		struct config cfg;
		char err[512] = "";
		enum config_result r = parse(&cfg, err, sizeof err, bad[i].argv);
		CHECK(r == CONFIG_ERROR, "case %zu should fail", i);
		CHECK(strstr(err, bad[i].must_name) != NULL, "case %zu: '%s' does not name '%s'", i,
		      err, bad[i].must_name);
		CHECK(strchr(err, '\n') == NULL, "case %zu: error is not one line", i);
		config_free(&cfg);
	}
}

static void test_precedence(void)
{
	struct config cfg;
	char err[512] = "";
	clear_env();
	/* cfg.app_argv points into the vector: it must outlive the checks below. */
	char **with_app = ARGS("--migrate-cmd", "true", "app", "--wait-timeout=abc");
	CHECK(parse(&cfg, err, sizeof err, with_app) == CONFIG_OK, "defaults: %s", err);
	CHECK(cfg.wait_timeout_ms == 60000 && cfg.wait_max_interval_ms == 2000 && cfg.retries == 3,
	      "defaults");
	CHECK_STR(cfg.python, "python3", "default python");
	CHECK(cfg.app_argc == 2 && strcmp(cfg.app_argv[1], "--wait-timeout=abc") == 0,
	      "the app's own options are not ours");
	CHECK(cfg.database_url == NULL, "no URL");
	config_free(&cfg);

	setenv("MTR_WAIT_TIMEOUT", "5s", 1);
	setenv("MTR_MIGRATE_CMD", "alembic upgrade head", 1);
	setenv("MTR_MIGRATE_ONLY", "yes", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--log-level", "debug")) == CONFIG_OK, "env: %s", err);
	CHECK(cfg.wait_timeout_ms == 5000 && cfg.migrate_only && cfg.log_level == LOG_DEBUG, "env");
	config_free(&cfg);
	char **flags = ARGS("--wait-timeout", "7", "--migrate-only=false", "--", "app");
	CHECK(parse(&cfg, err, sizeof err, flags) == CONFIG_OK, "flag over env: %s", err);
	CHECK(cfg.wait_timeout_ms == 7000 && !cfg.migrate_only && cfg.app_argc == 1, "flag wins");
	config_free(&cfg);

	setenv("MTR_WAIT_TIMEOUT", "soon", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("app")) == CONFIG_ERROR, "bad env");
	CHECK(strstr(err, "MTR_WAIT_TIMEOUT") != NULL, "env error names the variable: %s", err);
	config_free(&cfg);

	clear_env();
	CHECK(parse(&cfg, err, sizeof err, ARGS("--help")) == CONFIG_HELP, "help");
	config_free(&cfg);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--version")) == CONFIG_VERSION, "version");
	config_free(&cfg);
}

static char *write_temp(const char *content)
{
	char *path = strdup("/tmp/mtr-unit-XXXXXX");
	int fd = mkstemp(path);
	if (fd >= 0) {
		if (write(fd, content, strlen(content)) < 0)
			unit_failures++;
		close(fd);
	}
	return path;
}

static void test_secrets(void)
{
	struct config cfg;
	char err[512] = "";
	char *f = write_temp("postgresql://u:from-file@db/app\n");

	clear_env();
	setenv("MTR_DATABASE_URL_FILE", f, 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_OK,
	      "_FILE: %s", err);
	CHECK_STR(cfg.database_url, "postgresql://u:from-file@db/app", "URL from file, newline cut");
	CHECK_STR(cfg.database_url_from, "MTR_DATABASE_URL_FILE", "source named");
	config_free(&cfg);

	setenv("MTR_DATABASE_URL", "postgresql://x@y/z", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_ERROR,
	      "both set");
	CHECK(strstr(err, "MTR_DATABASE_URL_FILE") && strstr(err, "only one"), "both: %s", err);
	config_free(&cfg);

	clear_env();
	setenv("DATABASE_URL_FILE", "/nonexistent/secret", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_ERROR,
	      "missing file");
	CHECK(strstr(err, "DATABASE_URL_FILE") && strstr(err, "/nonexistent/secret"),
	      "missing file: %s", err);
	config_free(&cfg);

	clear_env();
	setenv("DATABASE_URL", "postgresql://fallback@h/d", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_OK, "fb");
	CHECK_STR(cfg.database_url, "postgresql://fallback@h/d", "DATABASE_URL fallback");
	config_free(&cfg);
	setenv("MTR_DATABASE_URL", "postgresql://mtr@h/d", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_OK, "mtr");
	CHECK_STR(cfg.database_url, "postgresql://mtr@h/d", "MTR_ over plain");
	config_free(&cfg);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--database-url", "postgresql://flag@h/d", "--migrate-cmd", "true", "app")) == CONFIG_OK, "flag");
	CHECK_STR(cfg.database_url, "postgresql://flag@h/d", "flag over env");
	CHECK_STR(cfg.database_url_from, "--database-url", "flag source");
	config_free(&cfg);

	clear_env();
	char *pw = write_temp("pa ss\n");
	setenv("PGPASSWORD_FILE", pw, 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_OK, "pw");
	CHECK_STR(cfg.pgpassword, "pa ss", "PGPASSWORD_FILE");
	CHECK_STR(cfg.database_url_from, "PG* environment", "libpq variables");
	config_free(&cfg);
	setenv("PGPASSWORD", "direct", 1);
	CHECK(parse(&cfg, err, sizeof err, ARGS("--migrate-cmd", "true", "app")) == CONFIG_ERROR,
	      "PGPASSWORD and _FILE");
	config_free(&cfg);

	clear_env();
	unlink(f);
	unlink(pw);
	free(f);
	free(pw);
}

void test_config(void)
{
	test_values();
	test_errors();
	test_precedence();
	test_secrets();
}
