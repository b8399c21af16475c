/* Running a helper process (migration tool, pg_dump, pg_restore) with its output read line by line. */
#ifndef MTR_PROC_H
#define MTR_PROC_H

#include "mtr/signals.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"

#include <stdbool.h>
#include <stdint.h>

struct proc_spec {
	char *const *argv;       /* argv[0] is looked up on PATH */
	const char *cwd;         /* NULL: ours */
	char *const *envp;       /* the child's whole environment */
	const struct sigstate *sigs;
	int64_t stop_grace_ms;   /* after forwarding a stop signal, SIGKILL after this long */
	bool stdout_to_fd;       /* the child's stdout goes to stdout_fd instead of on_line */
	int stdout_fd;
	void (*on_tick)(void *ctx); /* called every tick_ms while the child runs, if set */
	int64_t tick_ms;
	/* Asked every watch_ms while the child runs, if set: false means the child must not go
	 * on (its migration lock is gone), and its whole group gets SIGKILL at once. */
	bool (*watch)(void *ctx);
	int64_t watch_ms;
	/* A child that runs beside another one, from another thread (pg_restore reading what
	 * pg_dump writes): its stdin is stdin_fd instead of an empty pipe, the stop signals are
	 * left to the other proc_run (this one neither takes nor forwards them), and cancel_fd
	 * turning readable kills its group at once. */
	bool beside;
	int stdin_fd, cancel_fd;
};

/* Adds a line of a tool's output to b, kept for error messages: lines joined by " | ", b held
 * to at most max bytes (a chatty tool cannot grow it without bound). */
void proc_keep_line(struct strbuf *b, size_t max, const char *line);

/* Called for each line (without the newline) the child writes; stream is "stdout"/"stderr". */
typedef void (*proc_line_fn)(void *ctx, const char *stream, const char *line);

enum proc_outcome {
	PROC_EXITED,    /* exit_code is set */
	PROC_SIGNALED,  /* term_signal is set */
	PROC_NOT_FOUND, /* could not be started: err says why (errno in start_errno) */
	PROC_NOT_EXEC
};

struct proc_result {
	enum proc_outcome outcome;
	int exit_code;
	int term_signal;
	int stop_signal;  /* a stop signal we received and forwarded, else 0 */
	bool cut_short;   /* the watch said no: the group was killed */
	int start_errno;
	int64_t duration_ms;
	char err[256];
};

/* execve() of file, searched on PATH like execvp() when it has no '/', but never handing a
 * file without #! to /bin/sh (ENOEXEC is returned instead). Returns only on failure, with
 * errno set as execvp() would (EACCES if a candidate was found but not executable). */
int proc_execvpe(const char *file, char *const *argv, char *const *envp);

/* Runs the child with stdin from /dev/null and stdout/stderr captured, until it ends.
 * Stop signals (SIGTERM, SIGINT, SIGQUIT) are forwarded to it and recorded in stop_signal.
 * Returns false only when the child could not be started (r->outcome and r->err say why). */
bool proc_run(const struct proc_spec *spec, proc_line_fn on_line, void *ctx,
	      struct proc_result *r) MTR_MUST_CHECK;

#endif
