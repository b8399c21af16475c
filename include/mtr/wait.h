/* Phase 2: wait until PostgreSQL accepts an authenticated connection and is not in recovery. */
#ifndef MTR_WAIT_H
#define MTR_WAIT_H

#include "mtr/look.h"
#include "mtr/pg.h"
#include "mtr/signals.h"

#include <stdint.h>

struct wait_opts {
	int64_t timeout_ms;      /* overall deadline */
	int64_t max_interval_ms; /* backoff cap */
	struct look *look;       /* columns asked with the readiness check (NULL: none); answered there */
};

enum wait_status {
	WAIT_READY,
	WAIT_TIMEOUT,     /* deadline passed: 69 */
	WAIT_AUTH,        /* 77 */
	WAIT_NO_DATABASE, /* 69 */
	WAIT_CONFIG,      /* 64 */
	WAIT_INTERRUPTED  /* a stop signal arrived: 128+signo */
};

struct wait_result {
	enum wait_status status;
	PGconn *conn;             /* WAIT_READY: the open connection, now the caller's */
	unsigned attempts;
	int64_t elapsed_ms;
	int signo;                /* WAIT_INTERRUPTED */
	char start_time[64];      /* pg_postmaster_start_time(), to notice a restart later */
	struct pg_error last;     /* the last failure seen */
};

/* Connects with backoff until ready, the deadline, a permanent refusal or a stop signal.
 * Logs wait.attempt (debug) and wait.waiting events; the caller logs the outcome. */
void wait_for_database(const struct pg_target *t, const struct wait_opts *o,
		       const struct sigstate *sigs, struct wait_result *r);

struct wait_http_result {
	enum wait_status status;  /* WAIT_READY, WAIT_TIMEOUT or WAIT_INTERRUPTED */
	const char *url;          /* the URL that did not answer 2xx in time */
	unsigned attempts;
	int signo;
	char last[512];           /* its last error, URL shown as http_url_public does */
};

/* --wait-http: GETs each URL with the same backoff until it answers 2xx, by deadline_ms (a
 * now_ms() time). Logs wait.http.waiting (once per URL) and wait.http.ready events. */
void wait_for_http(char *const *urls, size_t n, const struct wait_opts *o, int64_t deadline_ms,
		   const struct sigstate *sigs, struct wait_http_result *r);

#endif
