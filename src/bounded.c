/* Blocking calls on a detached thread, so that the caller's wait has a deadline and a stop. */
#include "mtr/bounded.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* Shared by the caller and the thread; whoever lets go last frees it (and arg, through drop,
 * when the caller gave up). */
struct job {
	void (*fn)(void *);
	void (*drop)(void *);
	void *arg;
	int done[2]; /* the thread writes one byte when fn returned */
	atomic_int refs;
	atomic_bool abandoned;
};

static void job_put(struct job *j)
{
	if (atomic_fetch_sub(&j->refs, 1) != 1)
		return;
	if (atomic_load(&j->abandoned))
		j->drop(j->arg);
	close(j->done[0]);
	close(j->done[1]);
	free(j);
}

static void *job_thread(void *p)
{
	struct job *j = p;
	j->fn(j->arg);
	ssize_t n;
	do
		n = write(j->done[1], "x", 1);
	while (n < 0 && errno == EINTR);
	job_put(j);
	return NULL;
}

/* Starts the thread with every signal blocked: a stop signal must reach the waiting thread's
 * sigtimedwait or signalfd, never a helper whose default action would end the process. */
static bool job_start(struct job *j)
{
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0)
		return false;
	sigset_t all, old;
	sigfillset(&all);
	pthread_t t;
	bool ok = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
		  pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
	if (ok) {
		ok = pthread_create(&t, &attr, job_thread, j) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	pthread_attr_destroy(&attr);
	return ok;
}

enum bounded_result bounded_call(void (*fn)(void *), void *arg, void (*drop)(void *),
				 int64_t timeout_ms, int stop_fd)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->fn = fn;
	j->drop = drop;
	j->arg = arg;
	atomic_init(&j->refs, 2);
	atomic_init(&j->abandoned, false);
	if (pipe2(j->done, O_CLOEXEC) != 0) {
		free(j);
		return BOUNDED_NO_THREAD;
	}
	if (!job_start(j)) {
		close(j->done[0]);
		close(j->done[1]);
		free(j);
		return BOUNDED_NO_THREAD;
	}
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	enum bounded_result r = BOUNDED_TIMEOUT;
	for (;;) {
		int64_t left = deadline - now_ms();
		struct pollfd fds[2] = {{j->done[0], POLLIN, 0}, {stop_fd, POLLIN, 0}};
		int n = poll(fds, stop_fd >= 0 ? 2 : 1, left > 0 ? (int)left : 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0 && (fds[0].revents & POLLIN)) {
			r = BOUNDED_DONE;
			break;
		}
		if (n > 0 && stop_fd >= 0 && (fds[1].revents & POLLIN)) {
			r = BOUNDED_INTERRUPTED;
			break;
		}
		if (n <= 0 && left <= 0)
			break;
	}
	if (r != BOUNDED_DONE)
		atomic_store(&j->abandoned, true);
	job_put(j);
	return r;
}
