/* Signals are blocked for the whole run and waited for synchronously; children get them back. */
#ifndef MTR_SIGNALS_H
#define MTR_SIGNALS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* What the process had before we changed it, restored in every child before exec. */
struct sigstate {
	sigset_t orig_mask;
	struct sigaction orig_pipe;
	sigset_t blocked;  /* the set we block and wait for */
};

/* Blocks every asynchronous signal (not the faults: SIGSEGV, SIGBUS …) and ignores SIGPIPE. */
void signals_block(struct sigstate *st);

/* In a child (after fork) or before exec: the original mask and SIGPIPE disposition.
 * Signals left pending for us (SIGCHLD, SIGHUP) are discarded first, not passed on. */
void signals_restore(const struct sigstate *st);

/* True for the signals that stop the tool before the app runs. */
bool signals_is_stop(int signo);

/* "SIGTERM", "SIGINT" … for logs; "signal N" for the rest (static storage). */
const char *signals_name(int signo);

/* A descriptor that turns readable while a stop signal is pending (for poll() beside a
 * socket), without consuming it; -1 if none can be made. signals_stop_read() takes the
 * signal and returns its number (SIGTERM if it cannot tell). */
int signals_stop_fd(void);
int signals_stop_read(int fd);
void signals_stop_close(int fd);

/* Takes a pending stop signal without waiting: its number, or 0 if none is pending. */
int signals_take_stop(void);

/* Sleeps up to ms milliseconds, returning early with the number of a stop signal if one
 * arrives (0 when the time ran out). Other blocked signals are consumed and ignored. */
int signals_sleep(const struct sigstate *st, int64_t ms);

#endif
