/* --notify-url: a JSON report of a failure (or a success) POSTed to webhooks. */
#include "mtr/notify.h"
#include "mtr/http.h"
#include "mtr/log.h"
#include "mtr/signals.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Each try gets this long at most; --notify-timeout bounds them all. */
#define NOTIFY_TRY_MS 5000
#define NOTIFY_RETRIES 3

static void add_string(cJSON *o, const char *key, const char *value)
{
	if (!value || !*value)
		return;
	char *safe = log_redact(value);
	cJSON_AddStringToObject(o, key, safe);
	free(safe);
}

char *notify_payload(const struct notify_report *r)
{
	cJSON *o = cJSON_CreateObject();
	add_string(o, "event", r->event);
	add_string(o, "phase", r->phase);
	cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
	if (strcmp(r->event, "failure") == 0) {
		cJSON *e = cJSON_AddObjectToObject(o, "error");
		add_string(e, "message", r->message);
		add_string(e, "sqlstate", r->sqlstate);
		add_string(e, "file", r->file);
		add_string(e, "revision", r->revision);
	}
	/* always present: null says "a new database" or "no backup" */
	const char *nullable[][2] = {{"from", r->from}, {"to", r->to}, {"backup_path", r->backup_path}};
	for (size_t i = 0; i < 3; i++) {
		if (nullable[i][1] && *nullable[i][1])
			add_string(o, nullable[i][0], nullable[i][1]);
		else
			cJSON_AddNullToObject(o, nullable[i][0]);
	}
	add_string(o, "database", r->database);
	char host[256] = "";
	if (gethostname(host, sizeof host - 1) == 0)
		add_string(o, "host", host);
	cJSON *d = cJSON_AddObjectToObject(o, "durations_ms");
	cJSON_AddNumberToObject(d, "wait", (double)r->wait_ms);
	cJSON_AddNumberToObject(d, "backup", (double)r->backup_ms);
	cJSON_AddNumberToObject(d, "migrate", (double)r->migrate_ms);
	cJSON_AddNumberToObject(d, "total", (double)r->total_ms);
	char stamp[UTC_LEN];
	utc_format(wall_ms(), UTC_ISO, stamp, sizeof stamp);
	add_string(o, "time", stamp);
	add_string(o, "version", MTR_VERSION);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		die_oom();
	return text;
}

int notify_send(const struct config *cfg, const struct notify_report *r)
{
	size_t n = cfg->notify_url.n;
	bool success = strcmp(r->event, "success") == 0;
	bool wanted = success ? cfg->notify_on != NOTIFY_FAILURE : cfg->notify_on != NOTIFY_SUCCESS;
	if (n == 0 || !wanted)
		return 0;
	char *body = notify_payload(r);
	bool *ok = xcalloc(n, sizeof *ok);
	struct http_result *res = xcalloc(n, sizeof *res);
	int stop_fd = signals_stop_fd();
	int64_t start = now_ms();
	http_post_json_all((const char *const *)cfg->notify_url.v, n, body, NOTIFY_TRY_MS, NOTIFY_RETRIES,
			   start + cfg->notify_timeout_ms, stop_fd, ok, res);
	int signo = 0;
	for (size_t i = 0; i < n; i++) {
		char *pub = http_url_public(cfg->notify_url.v[i], true);
		if (ok[i])
			log_event(LOG_INFO, "notify.sent",
				  LOG_FIELDS(LF_S("url", pub), LF_S("event", r->event), LF_I("status", res[i].status),
					     LF_I("elapsed_ms", now_ms() - start)),
				  "notified %s of the %s", pub, r->event);
		else
			log_event(LOG_WARN, "notify.failed",
				  LOG_FIELDS(LF_S("url", pub), LF_S("event", r->event), LF_S("error", res[i].err),
					     LF_I("timeout_ms", cfg->notify_timeout_ms)),
				  "could not notify %s of the %s: %s (the exit code is not affected)", pub,
				  r->event, res[i].err);
		if (res[i].signo)
			signo = res[i].signo;
		free(pub);
	}
	signals_stop_close(stop_fd);
	free(ok);
	free(res);
	free(body);
	return signo;
}
