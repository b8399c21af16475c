/* The streamed backup upload: a thread copies pg_dump's output from a pipe to the local file and
 * into an HTTP PUT, whose last chunk waits for the verdict on the dump. */
#ifndef MTR_BACKUP_STREAM_H
#define MTR_BACKUP_STREAM_H

#include "mtr/http.h"
#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>

struct backup_stream;

/* What became of the request, once backup_stream_finish returned. */
struct backup_stream_result {
	bool uploaded;           /* the server answered 2xx to the complete dump */
	bool gave_up;            /* the upload failed with no local copy: the pipe was closed, which
				  * ends pg_dump (SIGPIPE) rather than let it dump into nothing */
	struct http_result http; /* the request's outcome */
};

/* Starts the thread that PUTs to url what is written to backup_stream_input(s), copying it to
 * out too (the local file, the verification's pipe, or -1; out stays the caller's). local: out
 * is a local copy, which gets the whole dump whatever the upload does; without one, an upload
 * that fails ends pg_dump (gave_up). Returns the stream, which backup_stream_finish ends and
 * frees, or NULL with err saying why. */
struct backup_stream *backup_stream_start(const char *url, int out, bool local, char *err,
					  size_t errlen) MTR_MUST_CHECK;

/* The pipe's write end, for pg_dump's stdout; the stream's, closed by backup_stream_drain. */
int backup_stream_input(const struct backup_stream *s);

/* The bytes read from the pipe so far; safe from any thread. */
long long backup_stream_bytes(const struct backup_stream *s);

/* Whether pg_dump's output waits in the pipe, unread: what holds the dump up is then the
 * stream (the upload, or the copy it writes), not pg_dump. Safe from any thread. */
bool backup_stream_backed_up(struct backup_stream *s);

enum stream_drain { DRAIN_DONE, DRAIN_STOPPED, DRAIN_LATE };

/* After pg_dump ended (dumped: successfully; if not, the request is abandoned): closes the pipe's
 * write end and waits until the thread has read everything pg_dump wrote: DRAIN_DONE. *write_errno
 * says why the local copy could not be written, or 0. A stop signal (left pending on stop_fd)
 * abandons the request, which also ends a transfer stuck on a stalled server within a second:
 * DRAIN_STOPPED. DRAIN_LATE when timeout_ms (< 0: none) passed first: the caller unblocks what
 * the thread writes to (abandoning the verification) and drains again, not dumped. */
enum stream_drain backup_stream_drain(struct backup_stream *s, bool dumped, int64_t timeout_ms,
				      int stop_fd, int *write_errno) MTR_MUST_CHECK;

/* The verdict: good (complete and verified) lets the request's last chunk go, else the server
 * never sees a complete body. Waits for the server's answer (a stop signal abandons it: true),
 * ends the thread, frees s and says in *res what happened. Without backup_stream_drain first,
 * the request is abandoned. */
bool backup_stream_finish(struct backup_stream *s, bool good, int stop_fd,
			  struct backup_stream_result *res) MTR_MUST_CHECK;

#endif
