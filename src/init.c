/* PID-1 supervision: run the app as our child, forward signals, reap everything, stop cleanly. */
#include "mtr/init.h"
#include "mtr/exitcode.h"
#include "mtr/log.h"
#include "mtr/proc.h"
#include "mtr/util.h"

#include <dirent.h>
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

#define MAX_TRACKED 4096

/* Parent pid from /proc/PID/stat ("pid (comm) state ppid …"; comm may hold spaces and ')'). */
static pid_t read_ppid(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *rp = strrchr(buf, ')');
	int ppid;
	char state;
	if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
		return -1;
	return (pid_t)ppid;
}

size_t init_descendants(pid_t root, pid_t *out, size_t max)
{
	static pid_t pids[MAX_TRACKED], ppids[MAX_TRACKED];
	size_t n = 0, found = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < MAX_TRACKED) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == root)
			continue;
		pid_t pp = read_ppid((pid_t)pid);
		if (pp < 0)
			continue;
		pids[n] = (pid_t)pid;
		ppids[n++] = pp;
	}
	closedir(d);
	/* Grow the set from root until nothing new joins: children, grandchildren … */
	bool grew = true;
	while (grew && found < max) {
		grew = false;
		for (size_t i = 0; i < n && found < max; i++) {
			if (pids[i] == 0)
				continue;
			bool parent_in = ppids[i] == root;
			for (size_t k = 0; k < found && !parent_in; k++)
				parent_in = ppids[i] == out[k];
			if (parent_in) {
				out[found++] = pids[i];
				pids[i] = 0;
				grew = true;
			}
		}
	}
	return found;
}

/* Sends sig to every process left under us; returns how many there were. */
static size_t signal_leftovers(int sig)
{
	pid_t pids[MAX_TRACKED];
	size_t n = init_descendants(getpid(), pids, MAX_TRACKED);
	for (size_t i = 0; i < n; i++)
		kill(pids[i], sig);
	return n;
}

/* In the child: own process group (and the terminal's foreground, if any), our signals
 * undone, then exec. Reports errno on errfd if exec fails. */
static void child_exec(char *const *argv, const struct sigstate *sigs, int errfd)
{
	setpgid(0, 0);
	if (isatty(STDIN_FILENO)) {
		/* Becoming the foreground group from the background would stop us with SIGTTOU,
		 * which is still blocked here. */
		tcsetpgrp(STDIN_FILENO, getpid());
	}
	signals_restore(sigs);
	proc_execvpe(argv[0], argv, environ);
	int e = errno;
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

/* The supervisor's state: init_run owns it and hands it to each step of its loop. */
struct supervisor {
	const struct init_opts *o;
	const struct sigstate *sigs;
	bool pid1;
	pid_t app;
	int64_t started; /* when the app was forked, for its runtime */
	bool app_done;   /* the app is reaped; code holds its status */
	bool killed;     /* SIGKILL has been sent */
	int code;
	int64_t kill_at; /* when SIGKILL is due (app or leftovers), -1: not scheduled */
};

/* Waits on the child's close-on-exec pipe fd: true if exec failed, with its errno in *child_errno;
 * false once exec succeeded (the pipe closed empty). */
static MTR_MUST_CHECK bool exec_failed(int fd, int *child_errno)
{
	ssize_t got;
	*child_errno = 0;
	do
		got = read(fd, child_errno, sizeof *child_errno);
	while (got < 0 && errno == EINTR);
	return got == (ssize_t)sizeof *child_errno;
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
		child_exec(argv, s->sigs, errp[1]);
	close(errp[1]);
	/* The app is in its own group from the start (set on both sides: no race with kill). */
	setpgid(s->app, s->app);
	int child_errno;
	bool failed = exec_failed(errp[0], &child_errno);
	close(errp[0]);
	if (failed) {
		waitpid(s->app, NULL, 0);
		*code = (child_errno == ENOENT || child_errno == ENOTDIR) ? MTR_EXIT_NOTFOUND
									  : MTR_EXIT_NOEXEC;
		log_event(LOG_ERROR, "run.failed",
			  LOG_FIELDS(LF_S("command", argv[0]), LF_S("error", strerror(child_errno)),
				     LF_I("exit_code", *code)),
			  "cannot start the app '%s': %s", argv[0], strerror(child_errno));
		return false;
	}
	log_event(LOG_INFO, "run.start",
		  LOG_FIELDS(LF_I("pid", s->app), LF_S("command", argv[0]), LF_B("pid1", s->pid1),
			     LF_B("signal_group", s->o->signal_group)),
		  "app started; supervising it as its init");
	return true;
}

/* Starts the grace period: SIGKILL for whatever is left once it is over. */
static void schedule_kill(struct supervisor *s)
{
	s->kill_at = now_ms() + s->o->stop_timeout_ms;
}

/* The app has been reaped with status: log it, then ask its leftovers to stop. */
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
	size_t left = signal_leftovers(SIGTERM);
	if (left > 0) {
		log_event(LOG_INFO, "run.kill",
			  LOG_FIELDS(LF_I("processes", left), LF_S("signal", "SIGTERM"),
				     LF_I("grace_ms", s->o->stop_timeout_ms)),
			  "the app left %zu processes behind; asking them to stop", left);
		schedule_kill(s);
	}
}

/* Reaps everything that has ended: the app, and any orphan handed to us. True once the app is
 * gone and no child is left, i.e. supervision is over. */
static bool reap_zombies(struct supervisor *s)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == s->app) {
			app_exited(s, status);
			continue;
		}
		log_event(LOG_DEBUG, "run.reap",
			  LOG_FIELDS(LF_I("pid", pid), LF_I("status", status_code(status))),
			  "reaped an orphan");
	}
	return pid < 0 && errno == ECHILD && s->app_done;
}

/* Sends SIGKILL to the app's group and the leftovers if the grace period is over at now;
 * true if it did. */
static bool kill_if_due(struct supervisor *s, int64_t now)
{
	if (s->kill_at < 0 || now < s->kill_at)
		return false;
	s->kill_at = -1;
	s->killed = true;
	size_t n = signal_leftovers(SIGKILL);
	if (!s->app_done)
		kill(-s->app, SIGKILL);
	log_event(LOG_WARN, "run.kill",
		  LOG_FIELDS(LF_I("processes", n + (s->app_done ? 0 : 1)), LF_S("signal", "SIGKILL"),
			     LF_I("grace_ms", s->o->stop_timeout_ms)),
		  "the grace period of %lldms is over: killing what is left",
		  (long long)s->o->stop_timeout_ms);
	return true;
}

/* Passes sig on to the app (or its group); a stop signal starts the grace period, a job-control
 * stop stops us with the app. */
static void forward_signal(struct supervisor *s, int sig)
{
	pid_t target = s->o->signal_group ? -s->app : s->app;
	if (kill(target, sig) < 0 && errno == ESRCH && s->o->signal_group)
		kill(s->app, sig); /* the group may be gone while the app lingers */
	log_event(LOG_INFO, "run.signal",
		  LOG_FIELDS(LF_S("signal", signals_name(sig)), LF_I("pid", s->app),
			     LF_B("group", s->o->signal_group)),
		  "forwarded %s to the app", signals_name(sig));
	if ((sig == SIGTERM || sig == SIGINT) && s->kill_at < 0)
		schedule_kill(s);
	if (is_job_control(sig) && !s->pid1)
		raise(SIGSTOP); /* stop with the app, as a shell's job would */
}

/* Waits for one signal, until the kill deadline or at most a minute from now, and forwards it
 * while the app runs. SIGCHLD only wakes us up: the caller reaps. */
static void wait_and_forward_signal(struct supervisor *s, int64_t now)
{
	int64_t wait_ms = s->kill_at >= 0 ? s->kill_at - now : 60000;
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
	struct supervisor s = {.o = o, .sigs = sigs, .pid1 = getpid() == 1, .kill_at = -1};
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
	v[0] = "migrate-then-run";
	v[1] = "--";
	for (size_t i = 0; i < n; i++)
		v[i + 2] = argv[i];
	char *state = xasprintf("%lld,%d,%d,%d,%llx,%d,%d", (long long)o->stop_timeout_ms,
				o->signal_group, log_format, log_level,
				(unsigned long long)set_bits(&sigs->orig_mask),
				sigs->orig_pipe.sa_handler == SIG_IGN, (int)log_get_schema());
	setenv(SUPERVISE_ENV, state, 1);
	free(state);
	/* Signals stay blocked across exec, so none is lost in between. */
	execv("/proc/self/exe", v);
	int e = errno;
	unsetenv(SUPERVISE_ENV);
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
	unsetenv(SUPERVISE_ENV); /* the app must not see it */
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
	struct init_opts o = {stop_ms, group != 0};
	shed_text();
	*code = init_run(&argv[2], &o, &sigs);
	return true;
}
