/* The differential fuzz targets' oracle: tests/fuzz/alembic_oracle.py, started once in a
 * Python that MTR_FUZZ_PYTHON names (mk/fuzz.mk sets it where /usr/bin/python3 is), asked
 * about each input over a pipe. Without it, the targets check only what C can check alone. */
#ifndef MTR_FUZZ_ORACLE_H
#define MTR_FUZZ_ORACLE_H

#include <cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct oracle {
	int in, out;    /* pipes to it, from it */
	int started;    /* 1: running; -1: not wanted or not available */
	pid_t pid;
};

static struct oracle oracle_state;

static inline int oracle_start(void)
{
	struct oracle *o = &oracle_state;
	const char *python = getenv("MTR_FUZZ_PYTHON");
	const char *script = getenv("MTR_FUZZ_ORACLE");
	if (o->started)
		return o->started > 0;
	o->started = -1;
	if (!python || !*python || !script || access(script, R_OK) != 0)
		return 0;
	int to[2], from[2];
	if (pipe(to) != 0 || pipe(from) != 0)
		abort();
	pid_t pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		execl(python, python, script, (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	signal(SIGPIPE, SIG_IGN);
	o->pid = pid;
	o->in = to[1];
	o->out = from[0];
	o->started = 1;
	return 1;
}

/* fd's writes and reads, again when libFuzzer's timer (SIGALRM, for -timeout) interrupts them. */
static inline int oracle_write(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return 0;
		p += w;
		n -= (size_t)w;
	}
	return 1;
}

/* One line of the answer into buf (up to cap - 1 bytes, NUL-terminated); 0 at EOF or error. */
static inline int oracle_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return 1;
}

/* Python's answer about data (kind 'R' or 'I'), parsed; NULL when there is no oracle. A
 * dead or garbled oracle is a failure of the run (abort), never a silent pass. */
static inline cJSON *oracle_ask(char kind, const char *data, size_t size)
{
	struct oracle *o = &oracle_state;
	if (!oracle_start())
		return NULL;
	static char line[1 << 20];
	char head[64];
	int hn = snprintf(head, sizeof head, "%c %zu\n", kind, size);
	if (!oracle_write(o->in, head, (size_t)hn) || !oracle_write(o->in, data, size) ||
	    !oracle_line(o->out, line, sizeof line)) {
		int status = 0;
		waitpid(o->pid, &status, 0);
		fprintf(stderr, "oracle: no answer from %s (%s %d)\n", getenv("MTR_FUZZ_ORACLE"),
			WIFSIGNALED(status) ? "killed by signal" : "exit status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		abort();
	}
	cJSON *j = cJSON_Parse(line);
	if (!j) {
		fprintf(stderr, "oracle: not JSON: %s\n", line);
		abort();
	}
	return j;
}

static inline int oracle_flag(const cJSON *j, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, name));
}

/* Whether the JSON array a holds exactly the n strings v. */
static inline int oracle_same_list(const cJSON *a, char *const *v, size_t n)
{
	if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const cJSON *s = cJSON_GetArrayItem(a, (int)i);
		if (!cJSON_IsString(s) || strcmp(s->valuestring, v[i]) != 0)
			return 0;
	}
	return 1;
}

#endif
