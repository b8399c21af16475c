/* The processes an app leaves behind: kill(-1) as PID 1, our own /proc elsewhere. */
#include "mtr/leftover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACKED 4096

/* State and parent from /proc/PID/stat ("pid (comm) state ppid …"; comm may hold spaces and ')'). */
static bool read_stat(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *rp = strrchr(buf, ')');
	int pp;
	if (!rp || sscanf(rp + 1, " %c %d", state, &pp) != 2)
		return false;
	*ppid = (pid_t)pp;
	return true;
}

/* Whether /proc is this PID namespace's: its NSpid line lists the pids from the namespace of
 * the /proc mount down to ours, so it is one number, ours, exactly when the mount is ours (a
 * /proc of an outer namespace lists two or more; one of another namespace has no "self"). */
static bool proc_is_ours(pid_t self)
{
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return false;
	char line[256];
	bool ours = false, seen = false;
	while (!seen && fgets(line, sizeof line, f)) {
		if (strncmp(line, "NSpid:", 6) != 0)
			continue;
		seen = true;
		char *end;
		long first = strtol(line + 6, &end, 10);
		ours = end != line + 6 && first == (long)self && strspn(end, " \t\n") == strlen(end);
	}
	fclose(f);
	if (seen)
		return ours;
	/* kernels before 4.1 have no NSpid: /proc/self must at least name us */
	char buf[32];
	ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strtol(buf, NULL, 10) == (long)self;
}

void leftover_init(struct leftovers *l)
{
	l->self = getpid();
	l->pid1 = l->self == 1;
	l->own_proc = proc_is_ours(l->self);
}

/* Every live process in /proc but us and the app (as PID 1 all of them are leftovers). */
static long count_others(const struct leftovers *l, pid_t app)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -1;
	long n = 0;
	const struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		char state;
		pid_t ppid;
		if (*end || pid <= 0 || pid == l->self || pid == app)
			continue;
		if (read_stat((pid_t)pid, &state, &ppid) && state != 'Z')
			n++;
	}
	closedir(d);
	return n;
}

size_t leftover_descendants(const struct leftovers *l, pid_t *out, size_t max)
{
	static pid_t pids[MAX_TRACKED], ppids[MAX_TRACKED];
	size_t n = 0, found = 0;
	DIR *d = l->own_proc ? opendir("/proc") : NULL;
	if (!d)
		return 0;
	const struct dirent *e;
	while ((e = readdir(d)) != NULL && n < MAX_TRACKED) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		char state;
		pid_t pp;
		if (*end || pid <= 0 || pid == l->self || !read_stat((pid_t)pid, &state, &pp))
			continue;
		pids[n] = state == 'Z' ? -(pid_t)pid : (pid_t)pid; /* a zombie links, is not counted */
		ppids[n++] = pp;
	}
	closedir(d);
	/* Grow the set from us until nothing new joins: children, grandchildren … */
	static pid_t tree[MAX_TRACKED];
	size_t ntree = 0;
	bool grew = true;
	while (grew) {
		grew = false;
		for (size_t i = 0; i < n; i++) {
			if (pids[i] == 0)
				continue;
			bool parent_in = ppids[i] == l->self;
			for (size_t k = 0; k < ntree && !parent_in; k++)
				parent_in = ppids[i] == tree[k];
			if (!parent_in)
				continue;
			pid_t pid = pids[i] < 0 ? -pids[i] : pids[i];
			tree[ntree++] = pid;
			if (pids[i] > 0 && found < max)
				out[found++] = pid;
			pids[i] = 0;
			grew = true;
		}
	}
	return found;
}

long leftover_signal(const struct leftovers *l, pid_t app, pid_t pgid, int sig)
{
	if (l->pid1) {
		long n = l->own_proc ? count_others(l, app) : -1;
		kill(-1, sig); /* every process of the namespace but us: no /proc needed */
		return n;
	}
	if (!l->own_proc) {
		/* Without pids we can trust, the app's group is what can be reached; the caller's
		 * deadline bounds the wait for anything that left it. */
		if (pgid > 0)
			kill(-pgid, sig);
		if (app > 0)
			kill(app, sig);
		return -1;
	}
	static pid_t pids[MAX_TRACKED];
	size_t k = leftover_descendants(l, pids, MAX_TRACKED);
	long n = 0;
	for (size_t i = 0; i < k; i++) {
		kill(pids[i], sig);
		if (pids[i] != app)
			n++;
	}
	return n;
}
