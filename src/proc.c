/* Running a helper process (migration tool, pg_dump, pg_restore) with its output read line by line. */
#include "mtr/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A child beside another without a pidfd (Linux < 5.3): how often we look whether it exited. */
#define BESIDE_POLL_MS 10

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

void proc_keep_line(struct strbuf *b, size_t max, const char *line)
{
	if (b->len >= max)
		return;
	if (b->len)
		sb_adds(b, " | ");
	sb_adds(b, line);
	sb_truncate(b, b->len < max ? b->len : max);
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
static void child_exec(const struct proc_spec *spec, pid_t parent, int in, int out, int err,
		       int errfd)
{
	/* Its own process group: a stop signal reaches whatever it started, too (sh -c …). */
	setpgid(0, 0);
	/* It dies with us: a migration command must not outlive the tool (SIGKILL, the OOM
	 * killer) and its lock, while another replica takes the lock and runs it again. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
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

/* One run of a child: proc_run owns it, and closes every descriptor still open in it. */
struct child {
	const struct proc_spec *spec;
	proc_line_fn on_line;
	void *ctx;
	struct proc_result *r;
	pid_t pid;
	int outp[2], errp[2], execp[2], inp[2];
	int sfd;          /* our blocked signals, read without waiting */
	struct stream out, err;
	bool exited;      /* reaped; status holds how it ended */
	int status;
	int64_t kill_at;  /* SIGKILL to the group after a stop signal, -1: not scheduled */
	bool cancelled;   /* a child beside another: killed when its cancel_fd turned readable */
	int pidfd;        /* beside another: readable once the child exited (our signalfd would
			   * take the other's SIGCHLD), -1: looked at every BESIDE_POLL_MS */
	int64_t drain_until; /* after the exit: how long its pipes may stay open, -1: running */
	int64_t next_tick;   /* the next on_tick call, -1: none */
	int64_t next_watch;  /* the next watch call, -1: none */
};

/* The pipes and the signalfd; false, with r's outcome and err set, if one cannot be made. */
static MTR_MUST_CHECK bool open_channels(struct child *c)
{
	struct proc_result *r = c->r;
	/* stdin: a pipe already at end of file, which needs no /dev/null (an empty root has none). */
	if (pipe2(c->outp, O_CLOEXEC) < 0 || pipe2(c->errp, O_CLOEXEC) < 0 ||
	    pipe2(c->execp, O_CLOEXEC) < 0 || pipe2(c->inp, O_CLOEXEC) < 0) {
		set_err(r->err, sizeof r->err, "pipe: %s", strerror(errno));
		r->outcome = PROC_NOT_EXEC;
		return false;
	}
	if (c->spec->beside) /* another proc_run takes the stop signals */
		return true;
	c->sfd = signalfd(-1, &c->spec->sigs->blocked, SFD_CLOEXEC | SFD_NONBLOCK);
	if (c->sfd < 0) {
		set_err(r->err, sizeof r->err, "signalfd: %s", strerror(errno));
		r->outcome = PROC_NOT_EXEC;
		return false;
	}
	return true;
}

/* Forks and execs the child with its output on our pipes. False, with r's outcome and err set,
 * if it could not be started (the child, if any, is reaped). */
static MTR_MUST_CHECK bool spawn(struct child *c)
{
	const struct proc_spec *spec = c->spec;
	struct proc_result *r = c->r;
	if (!open_channels(c))
		return false;
	pid_t parent = getpid();
	c->pid = fork();
	if (c->pid < 0) {
		set_err(r->err, sizeof r->err, "fork: %s", strerror(errno));
		r->outcome = PROC_NOT_EXEC;
		return false;
	}
	close(c->inp[1]);
	c->inp[1] = -1;
	if (c->pid == 0)
		child_exec(spec, parent, spec->beside ? spec->stdin_fd : c->inp[0],
			   spec->stdout_to_fd ? spec->stdout_fd : c->outp[1], c->errp[1], c->execp[1]);
	setpgid(c->pid, c->pid); /* on both sides, so that kill(-pid) cannot race the child */
	close(c->outp[1]);
	close(c->errp[1]);
	close(c->execp[1]);
	c->outp[1] = c->errp[1] = c->execp[1] = -1;

	int child_errno = 0;
	ssize_t got;
	do
		got = read(c->execp[0], &child_errno, sizeof child_errno);
	while (got < 0 && errno == EINTR);
	if (got == (ssize_t)sizeof child_errno) {
		waitpid(c->pid, NULL, 0);
		r->start_errno = child_errno;
		r->outcome = (child_errno == ENOENT || child_errno == ENOTDIR) ? PROC_NOT_FOUND
									      : PROC_NOT_EXEC;
		set_err(r->err, sizeof r->err, "cannot run '%s'%s%s: %s", spec->argv[0],
			spec->cwd ? " in " : "", spec->cwd ? spec->cwd : "", strerror(child_errno));
		return false;
	}
	return true;
}

/* The started child's output pipes become the streams we read lines from. */
static void open_streams(struct child *c)
{
	c->out.fd = c->outp[0];
	c->out.name = "stdout";
	c->err.fd = c->errp[0];
	c->err.name = "stderr";
	c->outp[0] = c->errp[0] = -1;
	c->next_tick = c->spec->on_tick ? now_ms() + c->spec->tick_ms : -1;
	c->next_watch = c->spec->watch ? now_ms() + c->spec->watch_ms : -1;
#ifdef SYS_pidfd_open
	if (c->spec->beside)
		c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
#endif
	if (c->spec->stdout_to_fd) { /* nothing of it comes through us */
		close(c->out.fd);
		c->out.fd = -1;
	}
}

/* Calls on_tick and the watch when due and sets *timeout for the next poll; false once the
 * drain time after the child's exit is over. */
static bool poll_timeout(struct child *c, int *timeout)
{
	*timeout = c->spec->beside && c->pidfd < 0 ? BESIDE_POLL_MS : 1000;
	if (c->next_tick >= 0) {
		int64_t now = now_ms();
		if (now >= c->next_tick) {
			c->spec->on_tick(c->ctx);
			c->next_tick = now + c->spec->tick_ms;
		}
		if (c->next_tick - now < *timeout)
			*timeout = (int)(c->next_tick - now);
	}
	if (c->next_watch >= 0) {
		int64_t now = now_ms();
		if (now >= c->next_watch) {
			if (!c->exited && !c->r->cut_short && !c->spec->watch(c->ctx)) {
				c->r->cut_short = true;
				kill(-c->pid, SIGKILL); /* not one more statement: another replica may start */
			}
			c->next_watch = now + c->spec->watch_ms;
		}
		if (c->next_watch - now < *timeout)
			*timeout = (int)(c->next_watch - now);
	}
	if (c->drain_until >= 0) {
		/* The child is gone; a grandchild may still hold the pipes. Do not wait forever. */
		int64_t left = c->drain_until - now_ms();
		if (left <= 0)
			return false;
		*timeout = (int)left;
	}
	return true;
}

/* Forwards each stop signal waiting on the signalfd to the child's group; the first one starts
 * the grace period before SIGKILL. */
static void forward_stops(struct child *c)
{
	struct signalfd_siginfo si;
	while (read(c->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
		int sig = (int)si.ssi_signo;
		if (!signals_is_stop(sig))
			continue;
		if (!c->r->stop_signal)
			c->kill_at = now_ms() + c->spec->stop_grace_ms;
		c->r->stop_signal = sig;
		kill(-c->pid, sig); /* the group outlives a reaped leader */
	}
}

/* Reaps the child if it has exited (its pipes then get a little time to drain), and kills its
 * group when the grace period after a stop signal is over. */
static void check_child(struct child *c)
{
	if (!c->exited && waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
		c->exited = true;
		c->drain_until = now_ms() + 2000;
	}
	if (c->kill_at >= 0 && now_ms() >= c->kill_at) {
		kill(-c->pid, SIGKILL);
		c->kill_at = -1;
	}
}

/* A child beside another, cancelled by its caller: its group is killed, once. */
static void cancel(struct child *c)
{
	kill(-c->pid, SIGKILL);
	c->cancelled = true;
}

/* Reads the child's output into lines and handles signals and deadlines, until it has exited
 * and its pipes are closed (or the drain time is over, or poll fails). */
static void pump_output(struct child *c)
{
	while (!c->exited || c->out.fd >= 0 || c->err.fd >= 0) {
		int cancel_fd = c->spec->beside && !c->cancelled ? c->spec->cancel_fd : -1;
		struct pollfd fds[5] = {{c->sfd, POLLIN, 0}, {c->out.fd, POLLIN, 0},
					{c->err.fd, POLLIN, 0}, {cancel_fd, POLLIN, 0},
					{c->exited ? -1 : c->pidfd, POLLIN, 0}};
		int timeout;
		if (!poll_timeout(c, &timeout))
			break;
		if (poll(fds, 5, timeout) < 0 && errno != EINTR)
			break;
		if (fds[3].revents)
			cancel(c);
		if (fds[1].revents)
			read_stream(&c->out, c->on_line, c->ctx);
		if (fds[2].revents)
			read_stream(&c->err, c->on_line, c->ctx);
		if (fds[0].revents & POLLIN)
			forward_stops(c);
		check_child(c);
	}
}

/* Ends what is left of the run: the group if it was stopped, the last partial lines, and the
 * child's status into r. */
static void collect_status(struct child *c)
{
	struct proc_result *r = c->r;
	/* Stopped, cut short or cancelled: nothing it started may go on working on its own. */
	if (r->stop_signal || r->cut_short || c->cancelled)
		kill(-c->pid, SIGKILL);
	if (!c->exited)
		waitpid(c->pid, &c->status, 0);
	struct stream *streams[] = {&c->out, &c->err};
	for (size_t i = 0; i < 2; i++) {
		if (streams[i]->fd < 0)
			continue;
		emit_lines(streams[i], c->on_line, c->ctx, true);
		close(streams[i]->fd);
		streams[i]->fd = -1;
	}
	if (WIFSIGNALED(c->status)) {
		r->outcome = PROC_SIGNALED;
		r->term_signal = WTERMSIG(c->status);
	} else {
		r->outcome = PROC_EXITED;
		r->exit_code = WEXITSTATUS(c->status);
	}
}

bool proc_run(const struct proc_spec *spec, proc_line_fn on_line, void *ctx, struct proc_result *r)
{
	memset(r, 0, sizeof *r);
	struct child c = {.spec = spec, .on_line = on_line, .ctx = ctx, .r = r,
			  .outp = {-1, -1}, .errp = {-1, -1}, .execp = {-1, -1}, .inp = {-1, -1},
			  .sfd = -1, .out.fd = -1, .err.fd = -1, .kill_at = -1, .drain_until = -1,
			  .next_tick = -1, .next_watch = -1, .pidfd = -1};
	int64_t start = now_ms();
	bool started = spawn(&c);
	if (started) {
		open_streams(&c);
		pump_output(&c);
		collect_status(&c);
	}
	r->duration_ms = now_ms() - start;
	int fds[] = {c.outp[0], c.outp[1], c.errp[0], c.errp[1], c.execp[0], c.execp[1],
		     c.inp[0],  c.inp[1],  c.sfd,     c.pidfd};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return started;
}
