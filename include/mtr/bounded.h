/* Blocking library calls that have no deadline of their own (getaddrinfo, PQcancel), run on a
 * thread so that the caller waits only as long as it wants to. */
#ifndef MTR_BOUNDED_H
#define MTR_BOUNDED_H

#include "mtr/util.h"

#include <stdint.h>

enum bounded_result {
	BOUNDED_DONE,        /* fn returned in time: arg is the caller's again */
	BOUNDED_TIMEOUT,     /* timeout_ms passed first */
	BOUNDED_INTERRUPTED, /* stop_fd turned readable first */
	BOUNDED_NO_THREAD    /* no thread could be started: fn did not run, arg is the caller's */
};

/* Runs fn(arg) on a detached thread with every signal blocked (signals stay with the thread
 * that waits for them), and waits until fn returns, timeout_ms passes or stop_fd (if >= 0)
 * turns readable. On BOUNDED_TIMEOUT and BOUNDED_INTERRUPTED the thread keeps arg and calls
 * drop(arg) once fn returns: the caller must not touch arg again. */
enum bounded_result bounded_call(void (*fn)(void *), void *arg, void (*drop)(void *),
				 int64_t timeout_ms, int stop_fd) MTR_MUST_CHECK;

#endif
