/* --notify-url: a JSON report of a failure (or a success) POSTed to webhooks. */
#ifndef MTR_NOTIFY_H
#define MTR_NOTIFY_H

#include "mtr/config.h"

#include <stdint.h>

/* What happened, as the phases saw it. Strings may be NULL or empty (then left out). */
struct notify_report {
	const char *event;       /* "failure" or "success" */
	const char *phase;       /* where a failure happened */
	int exit_code;
	const char *message;     /* the error, one line */
	const char *sqlstate;
	const char *file;        /* the migration file (with :line:column when known) */
	const char *revision;
	const char *from, *to;   /* revisions or versions */
	const char *backup_path;
	const char *database;
	int64_t wait_ms, backup_ms, migrate_ms, total_ms;
};

/* The JSON document (caller frees): every string redacted, plus host, time and version. */
char *notify_payload(const struct notify_report *r);

/* Sends r to every --notify-url when --notify-on selects its event, within --notify-timeout;
 * logs notify.sent / notify.failed. Never changes the outcome. Returns the number of a stop
 * signal that cut it short, else 0. */
int notify_send(const struct config *cfg, const struct notify_report *r);

#endif
