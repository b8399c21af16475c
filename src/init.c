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

int init_run(char *const *argv, const struct init_opts *o, const struct sigstate *sigs)
{
	bool pid1 = getpid() == 1;
	if (!pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		log_event(LOG_WARN, "run.subreaper", LOG_FIELDS(LF_S("error", strerror(errno))),
			  "cannot become a child subreaper: orphans of the app will not be reaped here");

	int errp[2];
	if (pipe2(errp, O_CLOEXEC) < 0) {
		log_event(LOG_ERROR, "run.failed", LOG_FIELDS(LF_S("error", strerror(errno))),
			  "cannot start the app: pipe: %s", strerror(errno));
		return MTR_EXIT_NOEXEC;
	}
	int64_t started = now_ms();
	pid_t app = fork();
	if (app < 0) {
		log_event(LOG_ERROR, "run.failed", LOG_FIELDS(LF_S("error", strerror(errno))),
			  "cannot start the app: fork: %s", strerror(errno));
		close(errp[0]);
		close(errp[1]);
		return MTR_EXIT_NOEXEC;
	}
	if (app == 0)
		child_exec(argv, sigs, errp[1]);
	close(errp[1]);
	/* The app is in its own group from the start (set on both sides: no race with kill). */
	setpgid(app, app);
	int child_errno = 0;
	ssize_t got;
	do
		got = read(errp[0], &child_errno, sizeof child_errno);
	while (got < 0 && errno == EINTR);
	close(errp[0]);
	if (got == (ssize_t)sizeof child_errno) {
		waitpid(app, NULL, 0);
		int code = (child_errno == ENOENT || child_errno == ENOTDIR) ? MTR_EXIT_NOTFOUND
									    : MTR_EXIT_NOEXEC;
		log_event(LOG_ERROR, "run.failed",
			  LOG_FIELDS(LF_S("command", argv[0]), LF_S("error", strerror(child_errno)),
				     LF_I("exit_code", code)),
			  "cannot start the app '%s': %s", argv[0], strerror(child_errno));
		return code;
	}
	log_event(LOG_INFO, "run.start",
		  LOG_FIELDS(LF_I("pid", app), LF_S("command", argv[0]), LF_B("pid1", pid1),
			     LF_B("signal_group", o->signal_group)),
		  "app started; supervising it as its init");

	bool app_done = false, killed = false;
	int code = 0;
	int64_t kill_at = -1; /* when SIGKILL is due (app or leftovers), -1: not scheduled */
	for (;;) {
		/* Reap everything that has ended: the app, and any orphan handed to us. */
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid != app) {
				log_event(LOG_DEBUG, "run.reap",
					  LOG_FIELDS(LF_I("pid", pid), LF_I("status", status_code(status))),
					  "reaped an orphan");
				continue;
			}
			app_done = true;
			code = status_code(status);
			log_event(LOG_INFO, "run.exit",
				  LOG_FIELDS(LF_I("status", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
					     LF_S("signal", WIFSIGNALED(status)
								    ? signals_name(WTERMSIG(status))
								    : NULL),
					     LF_I("runtime_ms", now_ms() - started), LF_I("exit_code", code),
					     LF_B("killed", killed)),
				  "the app exited");
			size_t left = signal_leftovers(SIGTERM);
			if (left > 0) {
				log_event(LOG_INFO, "run.kill",
					  LOG_FIELDS(LF_I("processes", left), LF_S("signal", "SIGTERM"),
						     LF_I("grace_ms", o->stop_timeout_ms)),
					  "the app left %zu processes behind; asking them to stop",
					  left);
				kill_at = now_ms() + o->stop_timeout_ms;
			}
		}
		if (pid < 0 && errno == ECHILD && app_done)
			return code;

		int64_t now = now_ms();
		if (kill_at >= 0 && now >= kill_at) {
			kill_at = -1;
			killed = true;
			size_t n = signal_leftovers(SIGKILL);
			if (!app_done)
				kill(-app, SIGKILL);
			log_event(LOG_WARN, "run.kill",
				  LOG_FIELDS(LF_I("processes", n + (app_done ? 0 : 1)),
					     LF_S("signal", "SIGKILL"), LF_I("grace_ms", o->stop_timeout_ms)),
				  "the grace period of %lldms is over: killing what is left",
				  (long long)o->stop_timeout_ms);
			continue;
		}
		int64_t wait_ms = kill_at >= 0 ? kill_at - now : 60000;
		struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
		siginfo_t info;
		int sig = sigtimedwait(&sigs->blocked, &info, &ts);
		if (sig < 0 || sig == SIGCHLD)
			continue;
		if (app_done)
			continue; /* nobody left to forward to; leftovers are being stopped */
		pid_t target = o->signal_group ? -app : app;
		if (kill(target, sig) < 0 && errno == ESRCH && o->signal_group)
			kill(app, sig); /* the group may be gone while the app lingers */
		log_event(LOG_INFO, "run.signal",
			  LOG_FIELDS(LF_S("signal", signals_name(sig)), LF_I("pid", app),
				     LF_B("group", o->signal_group)),
			  "forwarded %s to the app", signals_name(sig));
		if ((sig == SIGTERM || sig == SIGINT) && kill_at < 0)
			kill_at = now_ms() + o->stop_timeout_ms;
		if (is_job_control(sig) && !pid1)
			raise(SIGSTOP); /* stop with the app, as a shell's job would */
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
	char *state = xasprintf("%lld,%d,%d,%d,%llx,%d", (long long)o->stop_timeout_ms,
				o->signal_group, log_format, log_level,
				(unsigned long long)set_bits(&sigs->orig_mask),
				sigs->orig_pipe.sa_handler == SIG_IGN);
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
	int group, fmt, lvl, pipe_ignored;
	unsigned long long mask;
	if (sscanf(state, "%lld,%d,%d,%d,%llx,%d", &stop_ms, &group, &fmt, &lvl, &mask,
		   &pipe_ignored) != 6)
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
	struct init_opts o = {stop_ms, group != 0};
	shed_text();
	*code = init_run(&argv[2], &o, &sigs);
	return true;
}
