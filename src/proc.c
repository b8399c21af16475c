/* Running a helper process (migration tool, later pg_dump) with its output read line by line. */
#include "mtr/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Longer lines are cut; the last CUT_GUARD bytes before the cut are dropped too, so that a
 * password straddling the cut is never half-printed (redaction needs all of it). */
#define LINE_MAX_BYTES 65536
#define CUT_GUARD 1024

struct stream {
	int fd;
	const char *name;
	bool discarding; /* the rest of a cut line: dropped up to its newline */
	size_t len;
	char buf[LINE_MAX_BYTES + 1];
};

static void emit_lines(struct stream *s, proc_line_fn on_line, void *ctx, bool eof)
{
	size_t start = 0;
	for (size_t i = 0; i < s->len; i++) {
		if (s->buf[i] != '\n')
			continue;
		size_t end = i;
		if (end > start && s->buf[end - 1] == '\r')
			end--;
		s->buf[end] = '\0';
		if (!s->discarding)
			on_line(ctx, s->name, s->buf + start);
		s->discarding = false;
		start = i + 1;
	}
	if (start == 0 && s->len == LINE_MAX_BYTES && !s->discarding) {
		static const char mark[] = " [line cut at 63 KiB]";
		memcpy(s->buf + LINE_MAX_BYTES - CUT_GUARD, mark, sizeof mark);
		on_line(ctx, s->name, s->buf);
		s->discarding = true;
		start = s->len;
	} else if (start == 0 && s->len == LINE_MAX_BYTES) {
		start = s->len; /* still inside the cut line */
	} else if (eof && start < s->len) {
		s->buf[s->len] = '\0';
		if (!s->discarding)
			on_line(ctx, s->name, s->buf + start);
		start = s->len;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
}

/* Reads what is available; returns false at end of file. */
static bool read_stream(struct stream *s, proc_line_fn on_line, void *ctx)
{
	ssize_t n = read(s->fd, s->buf + s->len, LINE_MAX_BYTES - s->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		emit_lines(s, on_line, ctx, true);
		close(s->fd);
		s->fd = -1;
		return false;
	}
	s->len += (size_t)n;
	emit_lines(s, on_line, ctx, false);
	return true;
}

int proc_execvpe(const char *file, char *const *argv, char *const *envp)
{
	if (!*file) {
		errno = ENOENT;
		return -1;
	}
	if (strchr(file, '/'))
		return execve(file, argv, envp);
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	bool denied = false;
	int last = ENOENT;
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		char full[4096];
		size_t flen = strlen(file);
		/* An empty entry means the current directory, as in execvp(). memcpy, not snprintf:
		 * this runs between fork and exec, where only async-signal-safe calls belong. */
		if (dlen + 1 + flen < sizeof full) {
			memcpy(full, p, dlen);
			size_t k = dlen;
			if (dlen)
				full[k++] = '/';
			memcpy(full + k, file, flen + 1);
			execve(full, argv, envp);
			if (errno == EACCES)
				denied = true;
			else if (errno != ENOENT && errno != ENOTDIR)
				last = errno; /* ENOEXEC and the like: found, but not runnable */
		}
		if (!*end)
			break;
		p = end;
	}
	errno = denied ? EACCES : last;
	return -1;
}

/* In the child: wire up descriptors, restore signals, exec; report errno on errfd if it fails. */
static void child_exec(const struct proc_spec *spec, int in, int out, int err, int errfd)
{
	/* Its own process group: a stop signal reaches whatever it started, too (sh -c …). */
	setpgid(0, 0);
	if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
	    dup2(err, STDERR_FILENO) < 0)
		goto fail;
	/* Nothing else of ours is inherited: libcurl's sockets (an upload in progress in another
	 * thread) are not close-on-exec. Without close_range (Linux < 5.11) it stays as it was. */
	(void)syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
	if (spec->cwd && chdir(spec->cwd) < 0)
		goto fail;
	signals_restore(spec->sigs);
	proc_execvpe(spec->argv[0], spec->argv, spec->envp);
fail:;
	int e = errno;
	if (write(errfd, &e, sizeof e) < 0) {
		/* the parent will see an exit status of 127 instead */
	}
	_exit(127);
}

bool proc_run(const struct proc_spec *spec, proc_line_fn on_line, void *ctx, struct proc_result *r)
{
	memset(r, 0, sizeof *r);
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1}, inp[2] = {-1, -1}, sfd = -1;
	int64_t start = now_ms();
	bool started = false;
	/* stdin: a pipe already at end of file, which needs no /dev/null (an empty root has none). */
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(execp, O_CLOEXEC) < 0 ||
	    pipe2(inp, O_CLOEXEC) < 0) {
		set_err(r->err, sizeof r->err, "pipe: %s", strerror(errno));
		r->outcome = PROC_NOT_EXEC;
		goto fail;
	}
	sfd = signalfd(-1, &spec->sigs->blocked, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		set_err(r->err, sizeof r->err, "signalfd: %s", strerror(errno));
		r->outcome = PROC_NOT_EXEC;
		goto fail;
	}
	pid_t pid = fork();
	if (pid < 0) {
		set_err(r->err, sizeof r->err, "fork: %s", strerror(errno));
		r->outcome = PROC_NOT_EXEC;
		goto fail;
	}
	close(inp[1]);
	inp[1] = -1;
	if (pid == 0)
		child_exec(spec, inp[0], spec->stdout_to_fd ? spec->stdout_fd : outp[1], errp[1], execp[1]);
	setpgid(pid, pid); /* on both sides, so that kill(-pid) cannot race the child */
	close(outp[1]);
	close(errp[1]);
	close(execp[1]);
	outp[1] = errp[1] = execp[1] = -1;

	int child_errno = 0;
	ssize_t got;
	do
		got = read(execp[0], &child_errno, sizeof child_errno);
	while (got < 0 && errno == EINTR);
	if (got == (ssize_t)sizeof child_errno) {
		waitpid(pid, NULL, 0);
		r->start_errno = child_errno;
		r->outcome = (child_errno == ENOENT || child_errno == ENOTDIR) ? PROC_NOT_FOUND
									      : PROC_NOT_EXEC;
		set_err(r->err, sizeof r->err, "cannot run '%s'%s%s: %s", spec->argv[0],
			spec->cwd ? " in " : "", spec->cwd ? spec->cwd : "", strerror(child_errno));
		goto fail;
	}
	started = true;

	struct stream out = {.fd = outp[0], .name = "stdout"}, err = {.fd = errp[0], .name = "stderr"};
	outp[0] = errp[0] = -1;
	bool exited = false;
	int status = 0;
	int64_t kill_at = -1, drain_until = -1;
	int64_t next_tick = spec->on_tick ? now_ms() + spec->tick_ms : -1;
	if (spec->stdout_to_fd) { /* nothing of it comes through us */
		close(out.fd);
		out.fd = -1;
	}
	while (!exited || out.fd >= 0 || err.fd >= 0) {
		struct pollfd fds[3] = {{sfd, POLLIN, 0}, {out.fd, POLLIN, 0}, {err.fd, POLLIN, 0}};
		int timeout = 1000;
		if (next_tick >= 0) {
			int64_t now = now_ms();
			if (now >= next_tick) {
				spec->on_tick(ctx);
				next_tick = now + spec->tick_ms;
			}
			if (next_tick - now < timeout)
				timeout = (int)(next_tick - now);
		}
		if (drain_until >= 0) {
			/* The child is gone; a grandchild may still hold the pipes. Do not wait forever. */
			int64_t left = drain_until - now_ms();
			if (left <= 0)
				break;
			timeout = (int)left;
		}
		if (poll(fds, 3, timeout) < 0 && errno != EINTR)
			break;
		if (fds[1].revents)
			read_stream(&out, on_line, ctx);
		if (fds[2].revents)
			read_stream(&err, on_line, ctx);
		if (fds[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				int sig = (int)si.ssi_signo;
				if (signals_is_stop(sig)) {
					if (!r->stop_signal)
						kill_at = now_ms() + spec->stop_grace_ms;
					r->stop_signal = sig;
					kill(-pid, sig); /* the group outlives a reaped leader */
				}
			}
		}
		if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
			exited = true;
			drain_until = now_ms() + 2000;
		}
		if (kill_at >= 0 && now_ms() >= kill_at) {
			kill(-pid, SIGKILL);
			kill_at = -1;
		}
	}
	/* Stopped: nothing it started may go on working on its own. */
	if (r->stop_signal)
		kill(-pid, SIGKILL);
	if (!exited)
		waitpid(pid, &status, 0);
	if (out.fd >= 0) {
		emit_lines(&out, on_line, ctx, true);
		close(out.fd);
	}
	if (err.fd >= 0) {
		emit_lines(&err, on_line, ctx, true);
		close(err.fd);
	}
	if (WIFSIGNALED(status)) {
		r->outcome = PROC_SIGNALED;
		r->term_signal = WTERMSIG(status);
	} else {
		r->outcome = PROC_EXITED;
		r->exit_code = WEXITSTATUS(status);
	}
fail:
	r->duration_ms = now_ms() - start;
	int fds_to_close[] = {outp[0], outp[1], errp[0], errp[1], execp[0], execp[1], inp[0], inp[1], sfd};
	for (size_t i = 0; i < sizeof fds_to_close / sizeof fds_to_close[0]; i++)
		if (fds_to_close[i] >= 0)
			close(fds_to_close[i]);
	return started;
}
