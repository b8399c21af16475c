/* PID-1 supervision: run the app as our child, forward signals, reap everything, stop cleanly. */
#include "mtr/init.h"
#include "mtr/exitcode.h"
#include "mtr/leftover.h"
#include "mtr/log.h"
#include "mtr/proc.h"
#include "mtr/util.h"

#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* After SIGKILL, how long a process may take to go (one in uninterruptible sleep, or one out
 * of reach without a /proc of ours) before we exit without it. */
#define KILL_WAIT_MS 1000

/* What the child reports on its close-on-exec pipe when it cannot become the app. */
enum start_stage { START_EXEC, START_USER };
struct start_error {
	int stage; /* enum start_stage */
	int err;   /* errno */
};

/* The supervisor's state: init_run owns it and hands it to each step of its loop. */
struct supervisor {
	const struct init_opts *o;
	const struct sigstate *sigs;
	struct leftovers left;
	bool pid1;
	bool tty;        /* stdin is a terminal: job control applies */
	pid_t app;
	int64_t started; /* when the app was forked, for its runtime */
	bool app_done;   /* the app is reaped; code holds its status */
	bool killed;     /* SIGKILL has been sent */
	int code;
	/* The one stop budget: from the first stop signal (or the app's exit, if that comes
	 * first) the app and every leftover together have --stop-timeout; -1: not started. */
	int64_t kill_at;
	int64_t give_up_at; /* after SIGKILL: exit even if something lingers; -1: not yet */
};

/* In the child: own process group, the terminal's foreground only if ours was (started in
 * the background, we take over nothing), the user of --user, our signals undone, then exec.
 * Reports what failed on errfd. */
static void child_exec(const struct supervisor *s, bool foreground, char *const *argv, int errfd)
{
	struct start_error e = {START_EXEC, 0};
	setpgid(0, 0);
	/* Becoming the foreground group would stop us with SIGTTOU, which is still blocked here. */
	if (foreground)
		tcsetpgrp(STDIN_FILENO, getpid());
	if (s->o->user && !user_become(s->o->user)) {
		e.stage = START_USER;
	} else {
		signals_restore(s->sigs);
		proc_execvpe(argv[0], argv, environ);
	}
	e.err = errno;
	if (write(errfd, &e, sizeof e) < 0) {
		/* the parent then sees exit status 127 */
	}
	_exit(MTR_EXIT_NOTFOUND);
}

static int status_code(int status)
{
	if (WIFSIGNALED(status))
		return MTR_EXIT_SIGNAL_BASE + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static bool is_job_control(int sig)
{
	return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* Waits on the child's close-on-exec pipe fd: true if it could not become the app, with what
 * failed in *e; false once exec succeeded (the pipe closed empty). */
static MTR_MUST_CHECK bool exec_failed(int fd, struct start_error *e)
{
	ssize_t got;
	memset(e, 0, sizeof *e);
	do
		got = read(fd, e, sizeof *e);
	while (got < 0 && errno == EINTR);
	return got == (ssize_t)sizeof *e;
}

/* The start failed as e says: logged, and the exit code (127 not found, else 126). */
static int start_failed(char *const *argv, const struct start_error *e)
{
	int code = e->stage == START_EXEC && (e->err == ENOENT || e->err == ENOTDIR)
			   ? MTR_EXIT_NOTFOUND : MTR_EXIT_NOEXEC;
	const char *what = e->stage == START_USER ? "cannot switch to --user for the app"
						  : "cannot start the app";
	log_event(LOG_ERROR, "run.failed",
		  LOG_FIELDS(LF_S("command", argv[0]), LF_S("error", strerror(e->err)),
			     LF_I("exit_code", code)),
		  "%s '%s': %s", what, argv[0], strerror(e->err));
	return code;
}

/* Forks and execs the app. False when it could not be started: logged, and *code holds 126
 * or 127 (the child, if any, is reaped). */
static MTR_MUST_CHECK bool spawn_app(struct supervisor *s, char *const *argv, int *code)
{
	int errp[2];
	if (pipe2(errp, O_CLOEXEC) < 0) {
		log_event(LOG_ERROR, "run.failed", LOG_FIELDS(LF_S("error", strerror(errno))),
			  "cannot start the app: pipe: %s", strerror(errno));
		*code = MTR_EXIT_NOEXEC;
		return false;
	}
	bool foreground = s->tty && tcgetpgrp(STDIN_FILENO) == getpgrp();
	if (s->o->user)
		setenv("HOME", s->o->user->home, 1); /* before fork: the child only makes system calls */
	s->started = now_ms();
	s->app = fork();
	if (s->app < 0) {
		log_event(LOG_ERROR, "run.failed", LOG_FIELDS(LF_S("error", strerror(errno))),
			  "cannot start the app: fork: %s", strerror(errno));
		close(errp[0]);
		close(errp[1]);
		*code = MTR_EXIT_NOEXEC;
		return false;
	}
	if (s->app == 0)
		child_exec(s, foreground, argv, errp[1]);
	close(errp[1]);
	/* The app is in its own group from the start (set on both sides: no race with kill). */
	setpgid(s->app, s->app);
	struct start_error e;
	bool failed = exec_failed(errp[0], &e);
	close(errp[0]);
	if (failed) {
		waitpid(s->app, NULL, 0);
		*code = start_failed(argv, &e);
		return false;
	}
	log_event(LOG_INFO, "run.start",
		  LOG_FIELDS(LF_I("pid", s->app), LF_S("command", argv[0]), LF_B("pid1", s->pid1),
			     LF_B("signal_group", s->o->signal_group)),
		  "app started; supervising it as its init");
	return true;
}

/* Starts the stop budget unless it runs already (or is spent): SIGKILL for whatever is left
 * once --stop-timeout has passed since the first stop. */
static void start_budget(struct supervisor *s)
{
	if (s->kill_at < 0 && !s->killed)
		s->kill_at = now_ms() + s->o->stop_timeout_ms;
}

/* "processes": a count, or null when no /proc of ours can tell. */
static struct log_field count_field(long n)
{
	struct log_field f = LF_I("processes", n);
	if (n < 0) {
		f.type = LF_STR;
		f.s = NULL;
	}
	return f;
}

/* The app is gone but children remain: SIGTERM to what it left behind, within the budget. */
static void stop_leftovers(struct supervisor *s)
{
	long n = leftover_signal(&s->left, 0, s->app, SIGTERM);
	start_budget(s);
	if (n == 0)
		return; /* only processes on their way out */
	int64_t left_ms = s->kill_at - now_ms();
	const struct log_field *fields =
		LOG_FIELDS(count_field(n), LF_B("app", false), LF_S("signal", "SIGTERM"),
			   LF_I("grace_ms", left_ms > 0 ? left_ms : 0));
	if (n > 0)
		log_event(LOG_INFO, "run.kill", fields,
			  "the app left %ld processes behind; asking them to stop", n);
	else
		log_event(LOG_INFO, "run.kill", fields,
			  "the app left processes behind (how many, no /proc of ours can tell); asking them to stop");
}

/* The app has been reaped with status: log it, and take the terminal back from its group. */
static void app_exited(struct supervisor *s, int status)
{
	s->app_done = true;
	s->code = status_code(status);
	log_event(LOG_INFO, "run.exit",
		  LOG_FIELDS(LF_I("status", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
			     LF_S("signal", WIFSIGNALED(status) ? signals_name(WTERMSIG(status)) : NULL),
			     LF_I("runtime_ms", now_ms() - s->started), LF_I("exit_code", s->code),
			     LF_B("killed", s->killed)),
		  "the app exited");
	if (s->tty && tcgetpgrp(STDIN_FILENO) == s->app)
		tcsetpgrp(STDIN_FILENO, getpgrp());
}

/* The app's job stopped (Ctrl-Z reached its group, it read the terminal from the background,
 * or a job-control signal came to us): stop with it, so that the shell takes its terminal
 * back as for any job; once continued, give the app the terminal again if we have it, and
 * continue its group (dumb-init does the same). Outside PID 1 only: nobody resumes an init. */
static void job_stop(struct supervisor *s, int sig)
{
	static const struct timespec zero = {0, 0};
	log_event(LOG_INFO, "run.suspend", LOG_FIELDS(LF_S("signal", signals_name(sig)), LF_I("pid", s->app)),
		  "the app stopped (%s); stopping with it until SIGCONT", signals_name(sig));
	sigset_t cont; /* the SIGCONT that wakes us is handled here, not forwarded again */
	sigemptyset(&cont);
	sigaddset(&cont, SIGCONT);
	sigset_t pending;
	/* Continued already (fg or bg came before we could stop): then only the app waits. */
	if (sigpending(&pending) != 0 || sigismember(&pending, SIGCONT) != 1)
		kill(getpid(), SIGSTOP);
	while (sigtimedwait(&cont, NULL, &zero) > 0)
		;
	bool foreground = s->tty && tcgetpgrp(STDIN_FILENO) == getpgrp();
	if (foreground)
		tcsetpgrp(STDIN_FILENO, s->app);
	kill(-s->app, SIGCONT);
	log_event(LOG_INFO, "run.resume", LOG_FIELDS(LF_I("pid", s->app), LF_B("foreground", foreground)),
		  "continued: the app continues too%s", foreground ? ", in the foreground" : "");
}

/* SIGKILL went out KILL_WAIT_MS ago and something is still there: we go without it. */
static void abandon(struct supervisor *s)
{
	if (!s->app_done)
		s->code = MTR_EXIT_SIGNAL_BASE + SIGKILL;
	log_event(LOG_WARN, "run.abandon", LOG_FIELDS(LF_B("app", !s->app_done), LF_I("wait_ms", KILL_WAIT_MS)),
		  "processes are still there %dms after SIGKILL (uninterruptible sleep, or out of our "
		  "reach); exiting without them", KILL_WAIT_MS);
}

/* Reaps everything that has ended: the app, and any orphan handed to us; a job-control stop
 * of the app stops us with it. True once supervision is over: the app is gone and no child
 * is left, or what is left outlived SIGKILL by KILL_WAIT_MS. */
static bool reap_zombies(struct supervisor *s)
{
	int status;
	pid_t pid;
	bool app_gone = false;
	while ((pid = waitpid(-1, &status, WNOHANG | WUNTRACED)) > 0) {
		if (WIFSTOPPED(status)) {
			int sig = WSTOPSIG(status);
			if (pid == s->app && !s->pid1 && (is_job_control(sig) || (sig == SIGSTOP && s->tty)))
				job_stop(s, sig);
			continue;
		}
		if (pid == s->app) {
			app_exited(s, status);
			app_gone = true;
			continue;
		}
		log_event(LOG_DEBUG, "run.reap",
			  LOG_FIELDS(LF_I("pid", pid), LF_I("status", status_code(status))),
			  "reaped an orphan");
	}
	bool none_left = pid < 0 && errno == ECHILD;
	if (app_gone && !none_left && !s->killed)
		stop_leftovers(s); /* after reaping: zombies are not leftovers */
	if (s->app_done && none_left)
		return true;
	if (s->give_up_at >= 0 && now_ms() >= s->give_up_at) {
		abandon(s);
		return true;
	}
	return false;
}

/* Sends SIGKILL to the app's group and every leftover once the stop budget is spent; true
 * if it did. */
static bool kill_if_due(struct supervisor *s, int64_t now)
{
	if (s->kill_at < 0 || now < s->kill_at)
		return false;
	s->kill_at = -1;
	s->killed = true;
	s->give_up_at = now + KILL_WAIT_MS;
	bool app_alive = !s->app_done;
	long n = leftover_signal(&s->left, app_alive ? s->app : 0, s->app, SIGKILL);
	if (app_alive)
		kill(-s->app, SIGKILL);
	log_event(LOG_WARN, "run.kill",
		  LOG_FIELDS(count_field(n), LF_B("app", app_alive), LF_S("signal", "SIGKILL"),
			     LF_I("grace_ms", s->o->stop_timeout_ms)),
		  "the stop budget of %lldms is over: killing %s", (long long)s->o->stop_timeout_ms,
		  app_alive ? "the app and what is left" : "what the app left behind");
	return true;
}

/* Passes sig on to the app (or its group); a stop signal starts the stop budget, a
 * job-control stop stops us with the app. */
static void forward_signal(struct supervisor *s, int sig)
{
	pid_t target = s->o->signal_group ? -s->app : s->app;
	if (kill(target, sig) < 0 && errno == ESRCH && s->o->signal_group)
		kill(s->app, sig); /* the group may be gone while the app lingers */
	log_event(LOG_INFO, "run.signal",
		  LOG_FIELDS(LF_S("signal", signals_name(sig)), LF_I("pid", s->app),
			     LF_B("group", s->o->signal_group)),
		  "forwarded %s to the app", signals_name(sig));
	if (signals_is_stop(sig))
		start_budget(s);
	if (is_job_control(sig) && !s->pid1)
		job_stop(s, sig);
}

/* Waits for one signal, until the next deadline or at most a minute from now, and forwards it
 * while the app runs. SIGCHLD only wakes us up: the caller reaps. */
static void wait_and_forward_signal(struct supervisor *s, int64_t now)
{
	int64_t due = s->kill_at >= 0 ? s->kill_at : s->give_up_at;
	int64_t wait_ms = due >= 0 ? due - now : 60000;
	if (wait_ms < 0)
		wait_ms = 0;
	struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
	siginfo_t info;
	int sig = sigtimedwait(&s->sigs->blocked, &info, &ts);
	if (sig < 0 || sig == SIGCHLD)
		return;
	if (s->app_done)
		return; /* nobody left to forward to; leftovers are being stopped */
	forward_signal(s, sig);
}

int init_run(char *const *argv, const struct init_opts *o, const struct sigstate *sigs)
{
	struct supervisor s = {.o = o, .sigs = sigs, .pid1 = getpid() == 1, .tty = isatty(STDIN_FILENO),
			       .kill_at = -1, .give_up_at = -1};
	leftover_init(&s.left);
	if (!s.pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		log_event(LOG_WARN, "run.subreaper", LOG_FIELDS(LF_S("error", strerror(errno))),
			  "cannot become a child subreaper: orphans of the app will not be reaped here");
	int code;
	if (!spawn_app(&s, argv, &code))
		return code;
	for (;;) {
		if (reap_zombies(&s))
			return s.code;
		int64_t now = now_ms();
		if (!kill_if_due(&s, now))
			wait_and_forward_signal(&s, now);
	}
}

#define SUPERVISE_ENV "MTR_INTERNAL_SUPERVISE"
#define SUPERVISE_USER_ENV "MTR_INTERNAL_SUPERVISE_USER" /* --user's ids (user_encode) */
/* What ps, pgrep and podman top show for the supervisor (the kernel keeps 15 bytes of it, as
 * of any process started as migrate-then-run), instead of "exe" from /proc/self/exe. */
#define SUPERVISOR_NAME "migrate-then-run"

static uint64_t set_bits(const sigset_t *set)
{
	uint64_t bits = 0;
	for (int sig = 1; sig <= 64; sig++)
		if (sigismember(set, sig) == 1)
			bits |= 1ULL << (sig - 1);
	return bits;
}

void init_reexec(char *const *argv, const struct init_opts *o, const struct sigstate *sigs,
		 int log_format, int log_level)
{
	size_t n = 0;
	while (argv[n])
		n++;
	char **v = xcalloc(n + 3, sizeof *v);
	v[0] = SUPERVISOR_NAME;
	v[1] = "--";
	for (size_t i = 0; i < n; i++)
		v[i + 2] = argv[i];
	char *state = xasprintf("%lld,%d,%d,%d,%llx,%d,%d", (long long)o->stop_timeout_ms,
				o->signal_group, log_format, log_level,
				(unsigned long long)set_bits(&sigs->orig_mask),
				sigs->orig_pipe.sa_handler == SIG_IGN, (int)log_get_schema());
	setenv(SUPERVISE_ENV, state, 1);
	free(state);
	if (o->user) {
		char *ids = user_encode(o->user);
		setenv(SUPERVISE_USER_ENV, ids, 1);
		free(ids);
	}
	/* Signals stay blocked across exec, so none is lost in between. */
	execv("/proc/self/exe", v);
	int e = errno;
	unsetenv(SUPERVISE_ENV);
	unsetenv(SUPERVISE_USER_ENV);
	free(v);
	log_event(LOG_DEBUG, "run.reexec", LOG_FIELDS(LF_S("error", strerror(e))),
		  "cannot re-exec a lean supervisor (%s); supervising in place", strerror(e));
}

/* The supervisor runs a few kilobytes of code for weeks. The kernel maps file pages around
 * each fault (fault-around) and the loader touches every shared library at start, so megabytes
 * of text show as resident. Drop the page-table entries of every executable mapping (ours and
 * the libraries') and ask for no read-around: only the pages actually used come back. Text is
 * never written, so nothing is lost; writable and relocated mappings are left alone. */
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the linker's name */
extern char __executable_start[], etext[];

static void shed_range(uintptr_t start, uintptr_t end)
{
	void *p = (void *)start; /* NOLINT(performance-no-int-to-ptr): an address from the maps */
	if (end > start && madvise(p, end - start, MADV_RANDOM) == 0)
		(void)madvise(p, end - start, MADV_DONTNEED);
}

static void shed_text(void)
{
	FILE *maps = fopen("/proc/self/maps", "re");
	if (!maps) {
		long page = sysconf(_SC_PAGESIZE);
		shed_range((uintptr_t)__executable_start & ~(uintptr_t)(page - 1),
			   ((uintptr_t)etext + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1));
		return;
	}
	char line[512];
	while (fgets(line, sizeof line, maps)) {
		unsigned long lo, hi;
		char perms[8], path[256] = "";
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3)
			continue;
		/* file-backed, executable, never written: r-xp with a path (not [vdso]) */
		if (strcmp(perms, "r-xp") == 0 && path[0] == '/')
			shed_range(lo, hi);
	}
	fclose(maps);
}

bool init_resume(int argc, char **argv, int *code)
{
	const char *state = getenv(SUPERVISE_ENV);
	if (!state || argc < 3 || strcmp(argv[1], "--") != 0)
		return false;
	long long stop_ms;
	int group, fmt, lvl, pipe_ignored, schema = LOG_SCHEMA_DEFAULT;
	unsigned long long mask;
	/* the log schema came last, and may be left out */
	int n = sscanf(state, "%lld,%d,%d,%d,%llx,%d,%d", &stop_ms, &group, &fmt, &lvl, &mask,
		       &pipe_ignored, &schema);
	if (n < 6 || schema < LOG_SCHEMA_DEFAULT || schema > LOG_SCHEMA_DATADOG)
		return false;
	static struct user_ids user;
	const char *ids = getenv(SUPERVISE_USER_ENV);
	bool have_user = ids != NULL;
	if (have_user && !user_decode(ids, &user))
		return false;
	unsetenv(SUPERVISE_ENV); /* the app must not see them */
	unsetenv(SUPERVISE_USER_ENV);
	(void)prctl(PR_SET_NAME, SUPERVISOR_NAME, 0, 0, 0);
	struct sigstate sigs;
	signals_block(&sigs);
	/* What the first image started with, not the blocked set it handed over. */
	sigemptyset(&sigs.orig_mask);
	for (int sig = 1; sig <= 64; sig++)
		if (mask & (1ULL << (sig - 1)))
			sigaddset(&sigs.orig_mask, sig);
	sigs.orig_pipe.sa_handler = pipe_ignored ? SIG_IGN : SIG_DFL;
	log_init((enum log_format)fmt, (enum log_level)lvl);
	log_set_schema((enum log_schema)schema);
	struct init_opts o = {stop_ms, group != 0, have_user ? &user : NULL};
	shed_text();
	*code = init_run(&argv[2], &o, &sigs);
	return true;
}
