/* Fuzz target: the command line, MTR_* and libpq environment (NAME_FILE secrets included) and
 * option values, down to the migration source they configure. The input is NUL-separated
 * words: NAME=value words with an upper-case NAME are the environment (a NAME_FILE value is
 * written to a file that the variable then names), the others the arguments. */
#include "fuzz.h"
#include "mtr/config.h"
#include "mtr/source.h"
#include "mtr/source_cmd.h"
#include "mtr/source_sql.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_WORDS 48

static char g_dir[] = "/tmp/mtr-fuzz-config-XXXXXX";

int LLVMFuzzerInitialize(int *argc, char ***argv);

static void remove_dir(void)
{
	for (int i = 0; i < MAX_WORDS; i++) {
		char path[64];
		snprintf(path, sizeof path, "%s/%d", g_dir, i);
		unlink(path);
	}
	rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!mkdtemp(g_dir))
		abort();
	atexit(remove_dir);
	return 0;
}

static bool env_word(const char *w)
{
	if (!(*w >= 'A' && *w <= 'Z'))
		return false;
	while ((*w >= 'A' && *w <= 'Z') || (*w >= '0' && *w <= '9') || *w == '_')
		w++;
	return *w == '=';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *words[MAX_WORDS], *env[MAX_WORDS], *argv[MAX_WORDS + 2];
	size_t n = fuzz_parts(data, size, words, MAX_WORDS), nenv = 0;
	int argc = 0;
	argv[argc++] = "migrate-then-run";
	clearenv();
	for (size_t i = 0; i < n; i++) {
		int64_t ms;
		long count;
		bool b;
		(void)config_parse_duration(words[i], &ms);
		(void)config_parse_count(words[i], &count);
		(void)config_parse_bool(words[i], &b);
		if (!env_word(words[i])) {
			argv[argc++] = words[i];
			continue;
		}
		char *eq = strchr(words[i], '=');
		if (eq - words[i] > 5 && strncmp(eq - 5, "_FILE", 5) == 0) {
			char path[64];
			snprintf(path, sizeof path, "%s/%zu", g_dir, i);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0)
				abort();
			size_t len = strlen(eq + 1);
			if (write(fd, eq + 1, len) != (ssize_t)len)
				abort();
			close(fd);
			env[nenv] = xasprintf("%.*s=%s", (int)(eq - words[i]), words[i], path);
		} else {
			env[nenv] = xstrdup(words[i]);
		}
		putenv(env[nenv++]);
	}
	argv[argc] = NULL;

	struct config cfg;
	char err[1024] = "";
	enum config_result r = config_parse(&cfg, argc, argv, err, sizeof err);
	if (r == CONFIG_ERROR && !err[0])
		abort(); /* every refusal names what was wrong */
	if (r == CONFIG_OK) {
		if (cfg.app_argc < 0 || (!cfg.migrate_only && cfg.app_argc == 0) ||
		    (!cfg.sql_dir && !cfg.migrate_cmd && !cfg.alembic_ini && !cfg.tool))
			abort();
		/* The sources set up from options alone (the Alembic one reads its ini file). */
		struct source src = {0};
		bool opened = false;
		if (cfg.sql_dir) {
			opened = source_sql_open(&cfg, &src, err, sizeof err);
			/* --baseline and --repair-failed take a version: digits, nothing else. */
			const char *versions[] = {cfg.baseline, cfg.repair_failed};
			for (size_t i = 0; i < 2 && opened; i++)
				if (versions[i] && strspn(versions[i], "0123456789") != strlen(versions[i])) {
					fprintf(stderr, "version '%s' accepted\n", versions[i]);
					abort();
				}
		} else if (!cfg.tool || cfg.migrate_cmd) { /* a tool alone reads its project (fuzz_tool_files) */
			opened = source_cmd_open(&cfg, &src, err, sizeof err);
		}
		if (opened)
			src.destroy(src.self);
	}
	config_free(&cfg);

	clearenv(); /* before the strings it points to go */
	for (size_t i = 0; i < nenv; i++)
		free(env[i]);
	fuzz_parts_free(words, n);
	return 0;
}
