/* The differential fuzz targets' oracle: tests/fuzz/alembic_oracle.py, started once in a
 * Python that MTR_FUZZ_PYTHON names (mk/fuzz.mk sets it where /usr/bin/python3 is), asked
 * about each input over a pipe. Without it, the targets check only what C can check alone. */
#ifndef MTR_FUZZ_ORACLE_H
#define MTR_FUZZ_ORACLE_H

#include <cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct oracle {
	FILE *in, *out; /* to it, from it */
	int started;    /* 1: running; -1: not wanted or not available */
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
	o->in = fdopen(to[1], "w");
	o->out = fdopen(from[0], "r");
	o->started = 1;
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
	if (fprintf(o->in, "%c %zu\n", kind, size) < 0 || fwrite(data, 1, size, o->in) != size ||
	    fflush(o->in) != 0 || !fgets(line, sizeof line, o->out)) {
		fprintf(stderr, "oracle: no answer from %s\n", getenv("MTR_FUZZ_ORACLE"));
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
