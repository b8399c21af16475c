/* Whole-file reads that never block on a FIFO, and atomic replacement of small files. */
#include "mtr/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads fd to its end into a buffer sized from st_size (0 for /proc files: grown). */
static char *read_all(int fd, size_t hint, size_t max, size_t *len)
{
	/* Room for the known size, one byte more (a short read then proves the end) and the NUL. */
	size_t cap = (hint ? hint + 1 : 4096) + 1, n = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (n + 1 == cap) {
			if (cap > max + 1) {
				free(buf);
				errno = EFBIG;
				return NULL;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t got = read(fd, buf + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int e = errno == EISDIR ? ENOTSUP : errno;
			free(buf);
			errno = e;
			return NULL;
		}
		n += (size_t)got;
		/* A short read of a file whose size we know is its end: no extra read(2). */
		if (got == 0 || (hint && n < cap - 1))
			break;
	}
	if (n > max) {
		free(buf);
		errno = EFBIG;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

int file_open_regular_at(int dirfd, const char *path, size_t max, size_t *size)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it. */
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		errno = ENOTSUP;
		goto fail;
	}
	if ((unsigned long long)st.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	*size = (size_t)st.st_size;
	return fd;
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

ssize_t file_read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

char *file_read_at(int dirfd, const char *path, size_t max, size_t *len)
{
	size_t size = 0;
	int fd = file_open_regular_at(dirfd, path, max, &size);
	if (fd < 0)
		return NULL;
	char *buf = read_all(fd, size, max, len);
	int e = errno;
	close(fd);
	errno = e;
	return buf;
}

/* The buffer file_read_listed starts with: larger than any usual revision file. */
#define LISTED_BUF_MIN ((size_t)64 << 10)

/* Refuses with ENOTSUP what fstat says is not a regular file. */
static bool is_regular_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return false;
	if (!S_ISREG(st.st_mode)) {
		errno = ENOTSUP;
		return false;
	}
	return true;
}

/* A file that fills the buffer is read again by file_read_at (fstat, the size, the limit); its
 * buffer then becomes the caller's. */
static bool read_listed_large(int dirfd, const char *path, size_t max, char **buf, size_t *cap, size_t *len)
{
	char *text = file_read_at(dirfd, path, max, len);
	if (!text)
		return false;
	free(*buf);
	*buf = text;
	*cap = *len + 1;
	return true;
}

bool file_read_listed(int dirfd, const char *path, size_t max, char **buf, size_t *cap, size_t *len)
{
	if (*cap < LISTED_BUF_MIN) {
		free(*buf);
		*buf = xmalloc(LISTED_BUF_MIN);
		*cap = LISTED_BUF_MIN;
	}
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return false;
	ssize_t got;
	do
		got = read(fd, *buf, *cap - 1);
	while (got < 0 && errno == EINTR);
	/* What no regular file does (EAGAIN: a FIFO with a writer; EISDIR), or an end at once (a
	 * FIFO without one, a device, or an empty file), is put to fstat. */
	bool ok = got > 0 || (got == 0 && is_regular_fd(fd));
	int e = got < 0 ? (errno == EAGAIN || errno == EISDIR ? ENOTSUP : errno) : errno;
	close(fd);
	if (ok && (size_t)got == *cap - 1)
		return read_listed_large(dirfd, path, max, buf, cap, len);
	if (!ok) {
		errno = e;
		return false;
	}
	if ((size_t)got > max) {
		errno = EFBIG;
		return false;
	}
	(*buf)[got] = '\0';
	*len = (size_t)got;
	return true;
}

char *file_read(const char *path, size_t max, size_t *len)
{
	return file_read_at(AT_FDCWD, path, max, len);
}

const char *file_strerror(int err)
{
	if (err == ENOTSUP)
		return "not a regular file (a FIFO, device, socket or directory)";
	if (err == EFBIG)
		return "larger than this file may be";
	if (err == ELOOP) /* glibc and musl word it differently */
		return "a loop of symbolic links";
	return strerror(err);
}

int file_create_temp(const char *dir, const char *prefix, mode_t mode, char **tmp)
{
	for (int tries = 0; tries < 16; tries++) {
		char *path = xasprintf("%s/%s%016llx", dir, prefix, (unsigned long long)random_u64());
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0) {
			*tmp = path;
			return fd;
		}
		int e = errno;
		free(path);
		errno = e;
		if (e != EEXIST)
			return -1;
	}
	return -1;
}

/* fsync of the directory that holds path: the rename itself survives a crash. */
static MTR_MUST_CHECK bool sync_dir_of(const char *path)
{
	char *copy = xstrdup(path);
	int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (dfd < 0)
		return false;
	bool ok = fsync(dfd) == 0 || errno == EINVAL; /* some file systems cannot: not an error */
	close(dfd);
	return ok;
}

bool file_publish(int fd, const char *tmp, const char *final)
{
	bool ok = fsync(fd) == 0;
	int e = errno;
	if (close(fd) != 0 && ok) {
		ok = false;
		e = errno;
	}
	if (ok && rename(tmp, final) != 0) {
		ok = false;
		e = errno;
	}
	if (!ok) {
		unlink(tmp);
		errno = e;
		return false;
	}
	/* The file is in place: a directory that cannot be synced costs durability across a
	 * crash, not the file, so it does not fail the write. */
	if (!sync_dir_of(final)) {
	}
	return true;
}

static bool write_full(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

bool file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char *copy = xstrdup(path), *dcopy = xstrdup(path);
	char *prefix = xasprintf(".%s.tmp.", basename(copy));
	char *tmp = NULL;
	int fd = file_create_temp(dirname(dcopy), prefix, mode, &tmp);
	bool ok = fd >= 0;
	if (ok && !write_full(fd, data, len)) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		ok = false;
	} else if (ok) {
		ok = file_publish(fd, tmp, path);
	}
	int e = errno;
	free(tmp);
	free(prefix);
	free(dcopy);
	free(copy);
	errno = e;
	return ok;
}
