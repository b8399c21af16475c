/* The status file: where the tool is now (waiting, migrating, holding, running), for probes. */
#include "mtr/status.h"
#include "mtr/fileio.h"
#include "mtr/log.h"
#include "mtr/util.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *g_path;
static char g_state[32];
static char g_since[40];

void status_init(const char *path)
{
	free(g_path);
	g_path = path ? xstrdup(path) : NULL;
	g_state[0] = '\0';
	if (g_path)
		unlink(g_path); /* a "running" left by an earlier start must not answer for this one */
}

void status_set(const char *state, const char *phase, long attempt, const char *last_error)
{
	if (!g_path)
		return;
	if (strcmp(g_state, state) != 0) {
		snprintf(g_state, sizeof g_state, "%s", state);
		utc_format(wall_ms(), UTC_ISO, g_since, sizeof g_since);
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "state", state);
	cJSON_AddStringToObject(o, "phase", phase);
	cJSON_AddStringToObject(o, "since", g_since);
	cJSON_AddNumberToObject(o, "attempt", (double)attempt);
	if (last_error) {
		char *clean = log_redact(last_error);
		cJSON_AddStringToObject(o, "last_error", clean);
		free(clean);
	}
	else
		cJSON_AddNullToObject(o, "last_error");
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		return;
	char *line = xasprintf("%s\n", text);
	cJSON_free(text);
	/* Best effort: a health probe that finds no file answers "not running", which is true. */
	if (!file_write_atomic(g_path, line, strlen(line), 0640)) {
	}
	free(line);
}

bool status_parse(const char *text, char *state, size_t statelen, long *pid)
{
	cJSON *o = cJSON_Parse(text);
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pid");
	bool ok = cJSON_IsString(st);
	snprintf(state, statelen, "%s", ok ? st->valuestring : "");
	/* A process id, or none: a corrupt file's 1e300 or 4294967297 must not become a pid. */
	bool is_pid = cJSON_IsNumber(p) && p->valuedouble >= 1 && p->valuedouble <= INT_MAX &&
		      p->valuedouble == (double)(long)p->valuedouble;
	*pid = is_pid ? (long)p->valuedouble : 0;
	cJSON_Delete(o);
	return ok;
}

int status_health(const char *path)
{
	char *text = read_secret_file(path);
	if (!text) {
		fprintf(stderr, "migrate-then-run --health: cannot read %s: %s\n", path, strerror(errno));
		return 1;
	}
	char state[256];
	long pid;
	bool has_state = status_parse(text, state, sizeof state, &pid);
	free(text);
	int code = 1;
	if (has_state && strcmp(state, STATUS_RUNNING) == 0 && pid >= 1 &&
	    (kill((pid_t)pid, 0) == 0 || errno == EPERM))
		code = 0;
	if (code)
		fprintf(stderr, "migrate-then-run --health: %s\n",
			has_state ? state : "no state in the status file");
	return code;
}
