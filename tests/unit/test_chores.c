/* The shared chores: string builder, whole-file reader, atomic writer, UTC formatter. */
#include "mtr/fileio.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void strbuf_cases(void)
{
	struct strbuf b = STRBUF_INIT;
	char *empty = sb_take(&b);
	CHECK_STR(empty, "", "nothing added");
	free(empty);
	for (int i = 0; i < 1000; i++)
		sb_addc(&b, (char)('a' + i % 26));
	CHECK(b.len == 1000 && b.s[1000] == '\0', "1000 characters: len %zu", b.len);
	sb_truncate(&b, 3);
	sb_addf(&b, "-%d-%s", 42, "x");
	sb_add(&b, "yz\0w", 2);
	CHECK_STR(b.s, "abc-42-xyz", "truncate, addf, add");
	char *s = sb_take(&b);
	CHECK(b.s == NULL && b.len == 0, "take empties the builder");
	free(s);
	sb_free(&b);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/mtr-unit-XXXXXX";
	return xstrdup(mkdtemp(tmpl));
}

static void reader_cases(void)
{
	char *dir = tmpdir();
	char *path = xasprintf("%s/f", dir), *fifo = xasprintf("%s/fifo", dir);
	char *link = xasprintf("%s/loop", dir);
	size_t len = 0;
	CHECK(file_write_atomic(path, "hello\n", 6, 0600), "atomic write");
	char *text = file_read(path, 100, &len);
	CHECK(text && len == 6 && strcmp(text, "hello\n") == 0, "read back: %s", text ? text : "NULL");
	free(text);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");
	errno = 0;
	CHECK(!file_read(path, 5, &len) && errno == EFBIG, "over the cap: errno %d", errno);
	CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
	errno = 0; /* a FIFO without a writer: refused at once, never a blocking open */
	CHECK(!file_read(fifo, 100, &len) && errno == ENOTSUP, "FIFO: errno %d", errno);
	errno = 0;
	CHECK(!file_read("/dev/zero", 100, &len) && errno == ENOTSUP, "device: errno %d", errno);
	errno = 0;
	CHECK(!file_read(dir, 100, &len) && errno == ENOTSUP, "directory: errno %d", errno);
	CHECK(symlink(link, link) == 0, "symlink loop");
	errno = 0;
	CHECK(!file_read(link, 100, &len) && errno == ELOOP, "loop: errno %d", errno);
	text = file_read("/proc/self/stat", 1 << 20, &len); /* st_size 0: read to the end */
	CHECK(text && len > 10 && strlen(text) == len, "/proc file: %zu bytes", len);
	free(text);
	unlink(link);
	unlink(fifo);
	unlink(path);
	rmdir(dir);
	free(link);
	free(fifo);
	free(path);
	free(dir);
}

/* file_read_listed: one buffer for many files, three system calls each; what turned out not to
 * be a regular file is refused without a blocking read, as by file_read. */
static void listed_reader_cases(void)
{
	char *dir = tmpdir();
	char *path = xasprintf("%s/f", dir), *empty = xasprintf("%s/e", dir), *big = xasprintf("%s/big", dir);
	char *fifo = xasprintf("%s/fifo", dir), *buf = NULL;
	size_t cap = 0, len = 0, n = 100 << 10;
	char *large = xmalloc(n);
	memset(large, 'x', n);
	CHECK(file_write_atomic(path, "hello\n", 6, 0600) && file_write_atomic(empty, "", 0, 0600) &&
		      file_write_atomic(big, large, n, 0600) && mkfifo(fifo, 0600) == 0,
	      "the files");
	CHECK(file_read_listed(AT_FDCWD, path, 100, &buf, &cap, &len) && len == 6 && strcmp(buf, "hello\n") == 0,
	      "read: %zu bytes", len);
	char *first = buf;
	CHECK(file_read_listed(AT_FDCWD, empty, 100, &buf, &cap, &len) && len == 0 && buf == first && !buf[0],
	      "an empty file, in the same buffer");
	errno = 0;
	CHECK(!file_read_listed(AT_FDCWD, path, 5, &buf, &cap, &len) && errno == EFBIG, "over the cap: errno %d", errno);
	CHECK(file_read_listed(AT_FDCWD, big, n, &buf, &cap, &len) && len == n && cap > n && buf[n - 1] == 'x' &&
		      !buf[n],
	      "larger than the buffer: %zu bytes", len);
	errno = 0; /* a FIFO where the listing saw a file: without a writer, the empty read is checked */
	CHECK(!file_read_listed(AT_FDCWD, fifo, 100, &buf, &cap, &len) && errno == ENOTSUP, "FIFO: errno %d", errno);
	int writer = open(fifo, O_RDWR | O_NONBLOCK); /* with one: EAGAIN, never a wait */
	errno = 0;
	CHECK(writer >= 0 && !file_read_listed(AT_FDCWD, fifo, 100, &buf, &cap, &len) && errno == ENOTSUP,
	      "FIFO with a writer: errno %d", errno);
	if (writer >= 0)
		close(writer);
	errno = 0;
	CHECK(!file_read_listed(AT_FDCWD, "/dev/zero", 1 << 20, &buf, &cap, &len) && errno == ENOTSUP,
	      "device: errno %d", errno);
	errno = 0;
	CHECK(!file_read_listed(AT_FDCWD, dir, 100, &buf, &cap, &len) && errno == ENOTSUP, "directory: errno %d", errno);
	errno = 0;
	CHECK(!file_read_listed(AT_FDCWD, "/nonexistent/x", 100, &buf, &cap, &len) && errno == ENOENT,
	      "missing: errno %d", errno);
	free(buf);
	free(large);
	unlink(fifo);
	unlink(big);
	unlink(empty);
	unlink(path);
	rmdir(dir);
	free(fifo);
	free(big);
	free(empty);
	free(path);
	free(dir);
}

/* A planted symlink at any name the writer might pick is never followed: the writer's
 * temporary names are O_EXCL|O_NOFOLLOW and unpredictable. */
static void writer_cases(void)
{
	char *dir = tmpdir();
	char *path = xasprintf("%s/status.json", dir), *victim = xasprintf("%s/victim", dir);
	char *planted = xasprintf("%s/status.json.tmp.1", dir);
	CHECK(file_write_atomic(victim, "keep", 4, 0600), "victim");
	CHECK(symlink(victim, planted) == 0, "planted link");
	CHECK(file_write_atomic(path, "new", 3, 0640), "write beside a planted link");
	size_t len;
	char *v = file_read(victim, 100, &len);
	CHECK(v && strcmp(v, "keep") == 0, "victim untouched: %s", v ? v : "NULL");
	free(v);
	char *tmp = NULL;
	int fd = file_create_temp(dir, ".x.", 0600, &tmp);
	CHECK(fd >= 0 && tmp && strncmp(tmp, dir, strlen(dir)) == 0, "temp file");
	if (fd < 0 || !tmp) {
		CHECK(false, "no temp file: %s", strerror(errno));
		return;
	}
	CHECK(write(fd, "abc", 3) == 3, "write temp");
	CHECK(file_publish(fd, tmp, path), "publish");
	v = file_read(path, 100, &len);
	CHECK(v && strcmp(v, "abc") == 0, "published: %s", v ? v : "NULL");
	free(v);
	CHECK(access(tmp, F_OK) != 0, "temp name gone");
	free(tmp);
	unlink(planted);
	unlink(victim);
	unlink(path);
	rmdir(dir);
	free(planted);
	free(victim);
	free(path);
	free(dir);
}

static void time_cases(void)
{
	char buf[UTC_LEN];
	utc_format(1763719200123LL, UTC_ISO, buf, sizeof buf);
	CHECK_STR(buf, "2025-11-21T10:00:00Z", "iso");
	utc_format(1763719200123LL, UTC_ISO_MS, buf, sizeof buf);
	CHECK_STR(buf, "2025-11-21T10:00:00.123Z", "iso ms");
	utc_format(1763719200123LL, UTC_COMPACT, buf, sizeof buf);
	CHECK_STR(buf, "20251121T100000Z", "compact");
	CHECK(random_u64() != random_u64(), "two draws differ");
}

void test_chores(void)
{
	strbuf_cases();
	reader_cases();
	listed_reader_cases();
	writer_cases();
	time_cases();
}
