/* Signals are blocked for the whole run and waited for synchronously; children get them back. */
#include "mtr/signals.h"
#include "mtr/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <time.h>

void signals_block(struct sigstate *st)
{
	/* Everything asynchronous: a signal that arrives is queued for our one wait loop, even as
	 * PID 1 (where a signal left at SIG_DFL and unblocked would be dropped by the kernel).
	 * Faults stay unblocked, so a crash is still a crash. */
	static const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
	sigfillset(&st->blocked);
	for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++)
		sigdelset(&st->blocked, sync_sigs[i]);
	sigprocmask(SIG_BLOCK, &st->blocked, &st->orig_mask);
	struct sigaction ign;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &st->orig_pipe);
}

void signals_restore(const struct sigstate *st)
{
	static const struct timespec zero = {0, 0};
	sigset_t drop = st->blocked;
	sigdelset(&drop, SIGTERM);
	sigdelset(&drop, SIGINT);
	sigdelset(&drop, SIGQUIT);
	while (sigtimedwait(&drop, NULL, &zero) > 0)
		;
	sigaction(SIGPIPE, &st->orig_pipe, NULL);
	sigprocmask(SIG_SETMASK, &st->orig_mask, NULL);
}

bool signals_is_stop(int signo)
{
	return signo == SIGTERM || signo == SIGINT || signo == SIGQUIT;
}

int signals_sleep(const struct sigstate *st, int64_t ms)
{
	int64_t deadline = now_ms() + ms;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
		int sig = sigtimedwait(&st->blocked, NULL, &ts);
		if (sig < 0) {
			if (errno == EAGAIN)
				return 0;
			continue; /* EINTR */
		}
		if (signals_is_stop(sig))
			return sig;
	}
}

const char *signals_name(int signo)
{
	static const struct {
		int no;
		const char *name;
	} names[] = {{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
		     {SIGKILL, "SIGKILL"}, {SIGTERM, "SIGTERM"}, {SIGUSR1, "SIGUSR1"},
		     {SIGUSR2, "SIGUSR2"}, {SIGPIPE, "SIGPIPE"}, {SIGSEGV, "SIGSEGV"},
		     {SIGABRT, "SIGABRT"}, {SIGCHLD, "SIGCHLD"}, {SIGALRM, "SIGALRM"},
		     {SIGWINCH, "SIGWINCH"}, {SIGCONT, "SIGCONT"}, {SIGTSTP, "SIGTSTP"},
		     {SIGTTIN, "SIGTTIN"}, {SIGTTOU, "SIGTTOU"}, {SIGSTOP, "SIGSTOP"},
		     {SIGURG, "SIGURG"},   {SIGPWR, "SIGPWR"},   {SIGXCPU, "SIGXCPU"}};
	static char other[32];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].no == signo)
			return names[i].name;
	snprintf(other, sizeof other, "signal %d", signo);
	return other;
}

int signals_take_stop(void)
{
	static const struct timespec zero = {0, 0};
	sigset_t stops;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGQUIT);
	int sig = sigtimedwait(&stops, NULL, &zero);
	return sig > 0 ? sig : 0;
}

int signals_stop_fd(void)
{
	sigset_t stops;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGQUIT);
	return signalfd(-1, &stops, SFD_CLOEXEC | SFD_NONBLOCK);
}

int signals_stop_read(int fd)
{
	struct signalfd_siginfo si;
	if (fd >= 0 && read(fd, &si, sizeof si) == (ssize_t)sizeof si)
		return (int)si.ssi_signo;
	return SIGTERM;
}

void signals_stop_close(int fd)
{
	if (fd >= 0)
		close(fd);
}
