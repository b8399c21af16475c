/* What a database target means before any connection: the settings in force (URL or
 * conninfo over libpq's environment), the hosts to try one by one, and the settings that are
 * configuration errors. libpq itself only finds most of those while connecting, some never
 * in its non-blocking mode (connect_timeout=abc). */
#ifndef MTR_PG_TARGET_H
#define MTR_PG_TARGET_H

#include "mtr/pg.h"

#include <stdbool.h>
#include <stddef.h>

/* One host of a multi-host list, with its port. */
struct pg_host {
	char *host;     /* as given (kept for TLS, SNI, the password file and messages); NULL: libpq's default */
	char *hostaddr; /* as given, else NULL */
	char *port;     /* NULL: libpq's default */
	bool lookup;    /* host is a name that we look up (with a deadline) before connecting */
};

struct pg_hosts {
	struct pg_host *v;
	size_t n;
	int64_t per_host_ms;  /* connect_timeout, in force for each host (0: none) */
	bool prefer_standby;  /* target_session_attrs=prefer-standby: a pass for standbys first */
	bool as_given;        /* a service file is in play: libpq gets the settings untouched */
};

/* Reads t's settings as libpq would and lists the hosts to try. PG_CONFIG with err (no
 * password in it) for a setting libpq would refuse or misread: connect_timeout or
 * target_session_attrs not valid, host/port/hostaddr counts that do not match, an unencoded
 * '@' or '/' in a URL's user-info, a TLS client certificate or key that is missing or whose
 * key file others may read. Caller frees with pg_hosts_free (also after an error). */
enum pg_status pg_hosts_plan(const struct pg_target *t, struct pg_hosts *h,
			     struct pg_error *err) MTR_MUST_CHECK;
void pg_hosts_free(struct pg_hosts *h);

/* The password t carries, by libpq's reading (NULL if none; caller frees), and, when the URL
 * is malformed because of an unencoded '@' or '/' in it, the password the user meant and its
 * pieces as libpq would split them: each is passed to add (for the logger's secret list). */
void pg_target_secrets(const char *url, void (*add)(const char *secret));

#endif
