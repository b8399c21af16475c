/* Verification while dumping: pg_restore reads the dump from a pipe as it is written. */
#include "mtr/backup_verify.h"
#include "mtr/proc.h"
#include "mtr/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* How often the feeder looks whether the file grew. Not inotify: a wake-up for every 4 KiB
 * pg_dump writes, and pg_restore's with it, cost more CPU than the dump's pace needs; in 10 ms
 * pg_dump writes some hundreds of KiB, which then go in a few large writes. */
#define POLL_MS 10
#define CHUNK 65536
/* pg_restore's pipe: room for pg_dump to run ahead of its decompression (64 KiB otherwise). */
#define PIPE_BYTES (1 << 20)
/* Our threads' stacks: proc_run keeps two 64 KiB line buffers on its own (musl's default
 * thread stack is 128 KiB). */
#define THREAD_STACK (1u << 20)
/* pg_restore's messages kept for the verdict. */
#define LINES_MAX 1024

/* The main thread owns the struct. The runner thread owns pr, lines and pipe_r until it has
 * signalled ended; the feeder thread owns pipe_w (file mode), file, feed_errno and no_splice until
 * it is joined. The eventfds are written, never read: readable for every poller from then on. */
struct backup_verify {
	char *argv[3];
	struct proc_spec spec;
	int pipe_r, pipe_w; /* pg_restore's stdin */
	int file;           /* the growing file (file mode), or -1 */
	int finished;       /* the writer is done and the dump complete */
	int cancel;         /* abandoned: kills pg_restore, ends the feeder */
	int ended;          /* pg_restore was reaped (the runner's last act) */
	pthread_t runner, feeder;
	bool running, feeding;
	bool ran;           /* pg_restore could be started */
	struct proc_result pr;
	struct strbuf lines;
	int feed_errno;     /* the file could not be read */
	bool no_splice;     /* the file cannot be spliced: the feeder copies */
};

static void raise_fd(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof one) < 0) {
		/* an eventfd takes 2^64-2 writes: this one does not fail */
	}
}

static void keep_line(void *ctx, const char *stream, const char *line)
{
	(void)stream;
	proc_keep_line(ctx, LINES_MAX, line);
}

static void *run_main(void *arg)
{
	struct backup_verify *v = arg;
	v->ran = proc_run(&v->spec, keep_line, &v->lines, &v->pr);
	close(v->pipe_r); /* a feeder blocked on the full pipe gets EPIPE now */
	v->pipe_r = -1;
	raise_fd(v->ended);
	return NULL;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* At the end of what is written so far: waits a moment for the file to grow, or until its
 * writer is done. False when the dump was abandoned; *done once it is complete (then read it
 * to its end). */
static bool wait_for_more(struct backup_verify *v, bool *done)
{
	struct pollfd fds[2] = {{v->cancel, POLLIN, 0}, {v->finished, POLLIN, 0}};
	if (poll(fds, 2, POLL_MS) < 0 && errno != EINTR)
		return false;
	if (fds[0].revents)
		return false;
	if (fds[1].revents)
		*done = true;
	return true;
}

/* Moves what the file holds from *at on into the pipe, as much as fits: splice(2) hands over
 * the page cache's pages instead of copying them twice; pread and write where it cannot (a
 * file system without splice). The count (*at moved on), 0 at the end of what is written so
 * far, or -1 with errno (EPIPE: pg_restore ended). */
static ssize_t feed_some(struct backup_verify *v, char **buf, off_t *at)
{
	if (!v->no_splice) {
		ssize_t n = splice(v->file, at, v->pipe_w, NULL, PIPE_BYTES, SPLICE_F_MOVE);
		if (n >= 0 || errno != EINVAL)
			return n;
		v->no_splice = true;
	}
	if (!*buf)
		*buf = xmalloc(CHUNK);
	ssize_t n = pread(v->file, *buf, CHUNK, *at);
	if (n > 0 && !write_all(v->pipe_w, *buf, (size_t)n))
		return -1;
	if (n > 0)
		*at += n;
	return n;
}

/* File mode: the file, from its start, into pg_restore's stdin as it grows. */
static void *feed_main(void *arg)
{
	struct backup_verify *v = arg;
	char *buf = NULL;
	off_t at = 0;
	bool done = false, abandoned = false;
	for (;;) {
		ssize_t n = feed_some(v, &buf, &at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EPIPE)
			v->feed_errno = errno;
		if (n < 0)
			break; /* EPIPE: pg_restore ended, and its exit status says why */
		if (n > 0)
			continue;
		if (done)
			break; /* read to the end of the complete dump */
		/* Once done, read once more: the last bytes may have come since. */
		abandoned = !wait_for_more(v, &done);
		if (abandoned)
			break;
	}
	free(buf);
	if (!abandoned) { /* abandoned: no end of file that pg_restore could fail on (close_fds) */
		close(v->pipe_w); /* the end of the dump, for pg_restore */
		v->pipe_w = -1;
	}
	return NULL;
}

static void close_fds(struct backup_verify *v)
{
	int fds[] = {v->pipe_r, v->pipe_w, v->file, v->finished, v->cancel, v->ended};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static bool start_thread(pthread_t *t, void *(*fn)(void *), void *arg, int *rc)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	*rc = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return *rc == 0;
}

/* The pipe to pg_restore and the signals between the threads. */
static bool open_channels(struct backup_verify *v, char *err, size_t errlen)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		set_err(err, errlen, "cannot start the verification: pipe: %s", strerror(errno));
		return false;
	}
	v->pipe_r = p[0];
	v->pipe_w = p[1];
	(void)fcntl(v->pipe_w, F_SETPIPE_SZ, PIPE_BYTES); /* may be refused: 64 KiB will do */
	v->finished = eventfd(0, EFD_CLOEXEC);
	v->cancel = eventfd(0, EFD_CLOEXEC);
	v->ended = eventfd(0, EFD_CLOEXEC);
	if (v->finished < 0 || v->cancel < 0 || v->ended < 0) {
		set_err(err, errlen, "cannot start the verification: eventfd: %s", strerror(errno));
		return false;
	}
	return true;
}

struct backup_verify *backup_verify_start(const char *pg_restore, char **env,
					  const struct sigstate *sigs, int file, char *err, size_t errlen)
{
	struct backup_verify *v = xcalloc(1, sizeof *v);
	*v = (struct backup_verify){.pipe_r = -1, .pipe_w = -1, .file = file, .finished = -1,
				    .cancel = -1, .ended = -1};
	if (!open_channels(v, err, errlen))
		goto fail;
	v->argv[0] = (char *)pg_restore;
	v->argv[1] = "--file=/dev/null"; /* every byte read and decompressed: not --list */
	v->spec = (struct proc_spec){.argv = v->argv, .envp = env, .sigs = sigs, .stop_grace_ms = 5000,
				     .beside = true, .stdin_fd = v->pipe_r, .cancel_fd = v->cancel};
	int rc;
	if (!start_thread(&v->runner, run_main, v, &rc)) {
		set_err(err, errlen, "cannot start the verification: %s", strerror(rc));
		goto fail;
	}
	v->running = true;
	if (file >= 0 && !start_thread(&v->feeder, feed_main, v, &rc)) {
		set_err(err, errlen, "cannot start the verification: %s", strerror(rc));
		goto fail;
	}
	v->feeding = file >= 0;
	return v;
fail:
	if (v->running) {
		raise_fd(v->cancel);
		pthread_join(v->runner, NULL);
	}
	sb_free(&v->lines);
	close_fds(v);
	free(v);
	return NULL;
}

int backup_verify_input(const struct backup_verify *v)
{
	return v->pipe_w;
}

void backup_verify_abandon(struct backup_verify *v)
{
	raise_fd(v->cancel);
}

/* Waits until pg_restore was reaped; a stop signal first abandons it (true), and so does the
 * deadline (< 0: none; *late then). */
static bool wait_ended(struct backup_verify *v, int64_t deadline, int stop_fd, bool *late)
{
	bool stopped = false;
	*late = false;
	for (;;) {
		struct pollfd fds[2] = {{v->ended, POLLIN, 0}, {stopped ? -1 : stop_fd, POLLIN, 0}};
		int left = *late ? -1 : poll_ms_until(deadline);
		int n = poll(fds, 2, left);
		if (n < 0 && errno != EINTR)
			return stopped; /* cannot happen with valid descriptors */
		if (fds[0].revents)
			return stopped;
		if (n == 0 && !*late) { /* pg_restore's group is killed: ended soon */
			raise_fd(v->cancel);
			*late = true;
		}
		if (fds[1].revents) {
			raise_fd(v->cancel);
			stopped = true;
		}
	}
}

/* What pg_restore's end says. An abandoned pg_restore gets no end of file, only SIGKILL: if it
 * exited with an error, it failed on its own. */
static void verdict(const struct backup_verify *v, bool complete, struct backup_verify_result *res)
{
	const struct proc_result *pr = &v->pr;
	const char *said = v->lines.len ? v->lines.s : NULL;
	res->verdict = VERIFY_BAD;
	if (!v->ran)
		snprintf(res->err, sizeof res->err, "%s", pr->err);
	else if (pr->outcome == PROC_EXITED && pr->exit_code != 0)
		snprintf(res->err, sizeof res->err, "%s", said ? said : "it failed without a message");
	else if (!complete)
		res->verdict = VERIFY_ABANDONED;
	else if (pr->outcome == PROC_SIGNALED)
		snprintf(res->err, sizeof res->err, "it was killed by %s", signals_name(pr->term_signal));
	else if (v->feed_errno)
		snprintf(res->err, sizeof res->err, "cannot read the dump back: %s", strerror(v->feed_errno));
	else
		res->verdict = VERIFY_GOOD;
}

bool backup_verify_finish(struct backup_verify *v, bool complete, int64_t timeout_ms, int stop_fd,
			  struct backup_verify_result *res)
{
	memset(res, 0, sizeof *res);
	int64_t start = now_ms();
	raise_fd(complete ? v->finished : v->cancel);
	if (!v->feeding && complete) {
		close(v->pipe_w); /* the caller's writes are over: the end of the dump */
		v->pipe_w = -1;
	}
	bool late;
	bool stopped = wait_ended(v, timeout_ms < 0 ? -1 : start + timeout_ms, stop_fd, &late);
	pthread_join(v->runner, NULL);
	if (v->feeding)
		pthread_join(v->feeder, NULL);
	verdict(v, complete && !stopped && !late, res);
	if (late && !stopped && complete) {
		res->verdict = VERIFY_BAD;
		snprintf(res->err, sizeof res->err, "it had not read the dump to its end %lldms after "
			 "pg_dump ended, and was ended", (long long)timeout_ms);
	}
	res->wait_ms = now_ms() - start;
	sb_free(&v->lines);
	close_fds(v);
	free(v);
	return stopped;
}
