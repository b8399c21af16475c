/* Files: the one whole-file reader (and its opening half, for chunked readers) and the one
 * atomic writer. */
#ifndef MTR_FILEIO_H
#define MTR_FILEIO_H

#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Reads a whole regular file, path relative to dirfd (AT_FDCWD: the working directory).
 * What is not a regular file (FIFO, device, socket, directory) is refused without a blocking
 * read: errno ENOTSUP. More than max bytes: EFBIG. A symlink loop (ELOOP) or a dangling link
 * (ENOENT) fail as open(2) does. Returns a new NUL-terminated buffer and its length in *len
 * (caller frees), or NULL with errno. Usually four system calls: open, fstat, read, close. */
char *file_read_at(int dirfd, const char *path, size_t max, size_t *len) MTR_MUST_CHECK;
char *file_read(const char *path, size_t max, size_t *len) MTR_MUST_CHECK;

/* The opening half of file_read_at, for a reader that goes through a file piece by piece:
 * the same refusals (ENOTSUP, EFBIG) without a blocking open. Returns the descriptor (caller
 * closes) and the file's size in *size, or -1 with errno. Two system calls: open, fstat. */
int file_open_regular_at(int dirfd, const char *path, size_t max, size_t *size) MTR_MUST_CHECK;

/* Reads n bytes from fd, fewer only at the end of the file: the count, or -1 with errno. */
ssize_t file_read_full(int fd, void *buf, size_t n) MTR_MUST_CHECK;

/* file_read_at for many files of a directory that its listing (d_type, or a stat) said are
 * regular: the text goes into *buf (*cap bytes, NUL-terminated; grown when too small, kept for
 * the next file, the caller frees it at the end), in three system calls: open, read, close.
 * The listing stands in for fstat, and a short read is the end (as in file_read_at). A file
 * that has since become something else never blocks the read (O_NONBLOCK): with nothing to
 * read it is refused (an empty read is checked with fstat: errno ENOTSUP); a FIFO swapped in
 * with data already in it is read as that data, as a file with that text would be (whoever
 * can swap files in the directory can write one). True with *len, or false with errno. */
bool file_read_listed(int dirfd, const char *path, size_t max, char **buf, size_t *cap, size_t *len) MTR_MUST_CHECK;

/* strerror(err), with words of our own for file_read's ENOTSUP and EFBIG, and for ELOOP (the
 * same in the glibc and the musl build). */
const char *file_strerror(int err);

/* Creates dir/<prefix><16 random hex digits> with O_EXCL|O_NOFOLLOW (never through a planted
 * symlink, never an existing file) and the given mode. Returns the descriptor and the path in
 * *tmp (caller frees), or -1 with errno. */
int file_create_temp(const char *dir, const char *prefix, mode_t mode, char **tmp) MTR_MUST_CHECK;

/* Makes a finished temporary file the real one: fsync, close (fd is closed either way),
 * rename over final, fsync of the directory. On failure the temporary file is removed and
 * errno says why. */
bool file_publish(int fd, const char *tmp, const char *final) MTR_MUST_CHECK;

/* Replaces path with data, atomically (file_create_temp + write + file_publish): a reader
 * sees the old file or the new one, never a part. False with errno. */
bool file_write_atomic(const char *path, const void *data, size_t len, mode_t mode) MTR_MUST_CHECK;

#endif
