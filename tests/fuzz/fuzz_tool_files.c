/* Fuzz target: other tools' migration files as the native readers read them (dbmate sections,
 * golang-migrate and goose names and annotations, Flyway names and checksums, Prisma
 * directories), and the presets' placeholders. The input is a tool's index byte, a file name,
 * a newline, then the file's text. */
#include "fuzz.h"
#include "mtr/tool_native.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const tools[] = {"dbmate", "golang-migrate", "goose", "flyway", "prisma"};
#define NTOOLS (sizeof tools / sizeof tools[0])

/* A fresh directory per input: the file and nothing else in it. */
static int fresh_dir(char *path, size_t len)
{
	snprintf(path, len, "/tmp/mtr-fuzz-tools-%d", (int)getpid());
	mkdir(path, 0700);
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	size_t n = 0;
	char **names = fd >= 0 ? native_list(fd, false, &n) : NULL;
	for (size_t i = 0; i < n; i++)
		unlinkat(fd, names[i], 0);
	native_free_list(names, n);
	if (fd >= 0) {
		unlinkat(fd, "m/migration.sql", 0);
		unlinkat(fd, "m", AT_REMOVEDIR);
	}
	return fd;
}

/* What every reader promises of what it read. */
static void check(const struct native *n, const char *tool)
{
	for (size_t i = 0; i < n->nmigs; i++) {
		const struct native_mig *m = &n->migs[i];
		if (!m->file || !m->name || !m->sql || (strcmp(tool, "flyway") != 0 && !m->version))
			abort();
		if ((strcmp(tool, "flyway") == 0 || strcmp(tool, "prisma") == 0) && !m->checksum)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const char *tool = tools[data[0] % NTOOLS];
	char *in = fuzz_str(data + 1, size - 1);
	char *nl = strchr(in, '\n');
	const char *text = nl ? nl + 1 : "";
	if (nl)
		*nl = '\0';
	for (char *p = in; *p; p++) /* one name in the directory, nothing above it */
		if (*p == '/')
			*p = '_';
	(void)native_flyway_checksum(text, strlen(text));
	struct tool_vars v = {.url = text, .host = "h", .password = "p"};
	free(tool_expand(text, &v));
	free(tool_url_without_password(text));

	char dir[64];
	int fd = fresh_dir(dir, sizeof dir);
	if (fd >= 0 && *in && strcmp(in, ".") != 0 && strcmp(in, "..") != 0) {
		bool prisma = strcmp(tool, "prisma") == 0; /* a migration is a directory of its own */
		if (prisma)
			mkdirat(fd, "m", 0700);
		int f = openat(fd, prisma ? "m/migration.sql" : in, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (f >= 0) {
			if (write(f, text, strlen(text)) < 0) {
			}
			close(f);
		}
		struct config cfg = {0};
		struct native n = {.ops = tool_find(tool)->native, .def = tool_find(tool), .cfg = &cfg,
				   .dir = dir, .native_apply = true};
		char err[512];
		if (n.ops->scan(&n, fd, dir, err, sizeof err))
			check(&n, tool);
		native_clear(&n);
		if (n.ops->destroy)
			n.ops->destroy(&n);
	}
	if (fd >= 0)
		close(fd);
	free(in);
	return 0;
}
