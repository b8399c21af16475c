/* Kubernetes termination messages: on a failure, a summary of at most 4 KiB in --termination-log. */
#include "mtr/termlog.h"
#include "mtr/exitcode.h"
#include "mtr/log.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The README's exit-code table, in a few words each. */
static const char *meaning(int code)
{
	switch (code) {
	case MTR_EXIT_USAGE: return "usage or configuration error";
	case MTR_EXIT_INCONSISTENT: return "the migrations and the database state are inconsistent";
	case MTR_EXIT_UNAVAILABLE: return "the database was not ready in time, or does not exist";
	case MTR_EXIT_MIGRATION: return "a migration failed";
	case MTR_EXIT_BACKUP: return "the backup before migrating failed";
	case MTR_EXIT_TEMPFAIL: return "a transient failure outlasted the retry budget";
	case MTR_EXIT_AUTH: return "the database refused the credentials";
	case MTR_EXIT_NOEXEC: return "the app cannot be executed";
	case MTR_EXIT_NOTFOUND: return "the app was not found";
	default: return code > MTR_EXIT_SIGNAL_BASE ? "stopped by a signal" : "failed";
	}
}

/* Cuts b to at most max bytes, not inside a UTF-8 sequence. */
static void cut(struct strbuf *b, size_t max)
{
	if (b->len <= max)
		return;
	size_t n = max;
	while (n > 0 && ((unsigned char)b->s[n] & 0xC0) == 0x80)
		n--;
	sb_truncate(b, n);
}

size_t termlog_summary(int code, char *out, size_t max)
{
	const char *errors[LOG_RECENT_ERRORS];
	size_t n = log_recent_errors(errors, LOG_RECENT_ERRORS);
	out[0] = '\0';
	if (n == 0)
		return 0;
	struct strbuf b = STRBUF_INIT;
	sb_addf(&b, "migrate-then-run exited %d: %s\n", code, meaning(code));
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(errors[k], errors[i]) == 0;
		if (!seen)
			sb_addf(&b, "%s\n", errors[i]);
	}
	cut(&b, max);
	size_t len = b.len;
	memcpy(out, b.s, len + 1);
	sb_free(&b);
	return len;
}

/* Opens the file to replace: never through a symlink, never a FIFO or device (O_NONBLOCK: a
 * FIFO without a reader fails at once instead of blocking the exit). */
static int open_target(const char *path, bool create)
{
	int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = ENOTSUP;
		return -1;
	}
	return fd;
}

void termlog_write(const char *path, int code)
{
	char text[TERMLOG_MAX + 1];
	if (code == MTR_EXIT_OK || (path && strcmp(path, TERMLOG_NONE) == 0))
		return;
	size_t len = termlog_summary(code, text, TERMLOG_MAX);
	if (len == 0)
		return;
	bool given = path != NULL;
	int fd = open_target(given ? path : TERMLOG_DEFAULT, given);
	if (fd < 0) {
		if (given)
			log_event(LOG_WARN, "termination.unwritable",
				  LOG_FIELDS(LF_S("path", path), LF_S("error", strerror(errno))),
				  "cannot write the termination message to %s: %s", path, strerror(errno));
		return;
	}
	/* The kubelet reads the file once the container is gone: replace it whole, in one write. */
	bool ok = ftruncate(fd, 0) == 0 && write(fd, text, len) == (ssize_t)len;
	int e = errno;
	close(fd);
	if (!ok && given)
		log_event(LOG_WARN, "termination.unwritable",
			  LOG_FIELDS(LF_S("path", path), LF_S("error", strerror(e))),
			  "cannot write the termination message to %s: %s", path, strerror(e));
}
