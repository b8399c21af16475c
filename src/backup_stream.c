/* The streamed backup upload: one thread between pg_dump's pipe, the local file and the PUT. */
#include "mtr/backup_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* The main thread owns the struct and the pipe's write end; the thread reads the pipe (and may
 * close its read end, see gave_up). What both touch is under mu, or atomic. */
struct backup_stream {
	int in;                 /* the pipe's read end, -1 once closed */
	int in_w;               /* the pipe's write end (pg_dump's stdout), -1 once closed */
	int out;                /* the local file, the verification's pipe, or -1 */
	bool local;             /* out is a local copy of the dump (kept whatever the upload does) */
	const char *url;
	int abort;              /* pg_dump failed, or a stop signal: abandon the request (atomic) */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int verdict;            /* 0: not yet; 1: complete and verified; -1: abandon */
	bool at_end;            /* everything pg_dump wrote has been read */
	bool done;              /* the thread is about to return */
	long long bytes;        /* atomic */
	int write_errno;        /* the thread's until at_end, then the main thread's to read */
	struct backup_stream_result res; /* the thread's until done */
};

static bool write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		buf += w;
		n -= (size_t)w;
	}
	return true;
}

/* Reads the next piece from the pipe and keeps it locally; 0 at the end, -1 on error. */
static ssize_t stream_take(struct backup_stream *s, char *buf, size_t size)
{
	ssize_t n;
	do
		n = read(s->in, buf, size);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		if (s->out >= 0 && !s->write_errno && !write_all(s->out, buf, (size_t)n))
			s->write_errno = errno ? errno : EIO;
		__atomic_add_fetch(&s->bytes, (long long)n, __ATOMIC_RELAXED);
		return n;
	}
	pthread_mutex_lock(&s->mu);
	s->at_end = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return n;
}

static size_t stream_read(char *buf, size_t size, void *ctx)
{
	struct backup_stream *s = ctx;
	if (__atomic_load_n(&s->abort, __ATOMIC_ACQUIRE))
		return HTTP_READ_ABORT;
	ssize_t n = stream_take(s, buf, size);
	if (n > 0)
		return s->write_errno ? HTTP_READ_ABORT : (size_t)n;
	if (n < 0)
		return HTTP_READ_ABORT;
	/* The end of the dump: the request completes only if the dump is good. */
	pthread_mutex_lock(&s->mu);
	while (s->verdict == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	int v = s->verdict;
	pthread_mutex_unlock(&s->mu);
	return v > 0 ? 0 : HTTP_READ_ABORT;
}

static void *stream_main(void *arg)
{
	struct backup_stream *s = arg;
	s->res.uploaded = http_put(s->url, stream_read, s, -1, &s->abort, -1, &s->res.http);
	/* Only for an upload that failed by itself: not when the stream gave it up because its
	 * output failed (the verification ended early: a damaged dump) or it was told to. */
	bool by_itself = !s->write_errno && !__atomic_load_n(&s->abort, __ATOMIC_ACQUIRE);
	if (!s->res.uploaded && !s->local && by_itself) {
		/* Nothing is kept locally: end pg_dump (SIGPIPE) rather than dump into nothing. */
		pthread_mutex_lock(&s->mu);
		if (!s->at_end) {
			close(s->in);
			s->in = -1;
			s->res.gave_up = s->at_end = true;
			pthread_cond_broadcast(&s->cv);
		}
		pthread_mutex_unlock(&s->mu);
	}
	/* The request ended early: the local copy still gets the whole dump (and pg_dump is not
	 * left blocked on a full pipe). */
	char buf[65536];
	while (!s->at_end && stream_take(s, buf, sizeof buf) > 0) {
	}
	pthread_mutex_lock(&s->mu);
	s->done = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

struct backup_stream *backup_stream_start(const char *url, int out, bool local, char *err, size_t errlen)
{
	struct backup_stream *s = xcalloc(1, sizeof *s);
	int pipefd[2] = {-1, -1};
	s->out = out;
	s->local = local;
	s->url = url;
	if (pipe2(pipefd, O_CLOEXEC) != 0) {
		set_err(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	s->in = pipefd[0];
	s->in_w = pipefd[1];
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int rc = pthread_create(&s->thread, NULL, stream_main, s);
	if (rc != 0) {
		set_err(err, errlen, "cannot start the upload: %s", strerror(rc));
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		close(pipefd[0]);
		close(pipefd[1]);
		goto fail;
	}
	return s;
fail:
	free(s);
	return NULL;
}

int backup_stream_input(const struct backup_stream *s)
{
	return s->in_w;
}

long long backup_stream_bytes(const struct backup_stream *s)
{
	return __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
}

bool backup_stream_backed_up(struct backup_stream *s)
{
	int n = 0;
	pthread_mutex_lock(&s->mu); /* the thread may close in when the upload gives up */
	bool waiting = s->in >= 0 && ioctl(s->in, FIONREAD, &n) == 0 && n > 0;
	pthread_mutex_unlock(&s->mu);
	return waiting;
}

/* Waits until *flag (at_end or done), or the deadline (< 0: none; *late then). A stop signal
 * (left pending for the caller) abandons the request; true if that happened. */
static bool stream_wait(struct backup_stream *s, const bool *flag, int64_t deadline, int stop_fd,
			bool *late)
{
	bool stopped = false;
	*late = false;
	pthread_mutex_lock(&s->mu);
	while (!*flag && !*late) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		struct pollfd pfd = {stop_fd, POLLIN, 0};
		if (stop_fd >= 0 && poll(&pfd, 1, 0) == 1) {
			__atomic_store_n(&s->abort, 1, __ATOMIC_RELEASE);
			stopped = true;
		}
		*late = !*flag && !stopped && deadline >= 0 && now_ms() >= deadline;
	}
	pthread_mutex_unlock(&s->mu);
	return stopped;
}

enum stream_drain backup_stream_drain(struct backup_stream *s, bool dumped, int64_t timeout_ms,
				      int stop_fd, int *write_errno)
{
	if (s->in_w >= 0)
		close(s->in_w);
	s->in_w = -1;
	if (!dumped)
		__atomic_store_n(&s->abort, 1, __ATOMIC_RELEASE);
	bool late;
	bool stopped = stream_wait(s, &s->at_end, timeout_ms < 0 ? -1 : now_ms() + timeout_ms, stop_fd, &late);
	*write_errno = s->write_errno;
	return stopped ? DRAIN_STOPPED : late ? DRAIN_LATE : DRAIN_DONE;
}

bool backup_stream_finish(struct backup_stream *s, bool good, int stop_fd,
			  struct backup_stream_result *res)
{
	if (s->in_w >= 0) { /* not drained: pg_dump is not known to be done, so the dump is not good */
		close(s->in_w);
		s->in_w = -1;
		good = false;
	}
	pthread_mutex_lock(&s->mu);
	s->verdict = good ? 1 : -1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	/* the server's answer to the last chunk may be slow in coming */
	bool late;
	bool stopped = stream_wait(s, &s->done, -1, stop_fd, &late);
	pthread_join(s->thread, NULL);
	if (s->in >= 0)
		close(s->in);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	*res = s->res;
	free(s);
	return stopped;
}
