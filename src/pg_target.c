/* A database target read as libpq reads it, before connecting: the hosts to try one by one
 * and the settings that can only be configuration errors. */
#include "mtr/pg_target.h"
#include "mtr/resolve.h"

#include <errno.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The settings in force: the URL or conninfo string over libpq's defaults (service file named
 * by PGSERVICE, PG* variables, built-in values), the same order libpq applies. */
struct settings {
	PQconninfoOption *given, *defaults;
};

static const char *opt_val(PQconninfoOption *opts, const char *kw)
{
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, kw) == 0)
			return o->val && *o->val ? o->val : NULL;
	return NULL;
}

static const char *setting(const struct settings *s, const char *kw)
{
	const char *v = opt_val(s->given, kw);
	return v ? v : opt_val(s->defaults, kw);
}

/* Where the URL's user-info was cut by an unencoded character: '@' when the authority holds
 * two of them (libpq splits at the first, the rest becomes the host name), '/' when it holds
 * none but one follows the first '/' (libpq ended the authority there, and the password went
 * into the database name). 0 for a well-formed URL. */
static char userinfo_cut(const char *url)
{
	const char *sep = strstr(url, "://");
	if (!sep || (strncmp(url, "postgresql://", 13) != 0 && strncmp(url, "postgres://", 11) != 0))
		return 0;
	const char *auth = sep + 3;
	size_t end = strcspn(auth, "?");
	size_t auth_end = strcspn(auth, "/?");
	const char *first = memchr(auth, '@', auth_end);
	if (first && memchr(first + 1, '@', auth_end - (size_t)(first + 1 - auth)))
		return '@';
	if (!first && auth_end < end && memchr(auth + auth_end, '@', end - auth_end))
		return '/';
	return 0;
}

/* libpq's integer rule (parse_int_param): optional blanks around a decimal integer. */
static bool libpq_int(const char *v, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (end == v || errno)
		return false;
	while (*end == ' ' || *end == '\t')
		end++;
	*out = n;
	return *end == '\0';
}

static bool valid_session_attrs(const char *v)
{
	static const char *const ok[] = {"any", "read-write", "read-only", "primary", "standby",
					 "prefer-standby"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strcmp(v, ok[i]) == 0)
			return true;
	return false;
}

/* Splits a comma-separated list as libpq does (no escapes); an unset list is one NULL entry. */
static size_t split(const char *s, char ***out)
{
	size_t n = 1;
	for (const char *p = s; p && *p; p++)
		n += *p == ',';
	char **v = xcalloc(n, sizeof *v);
	for (size_t i = 0; s && i < n; i++) {
		size_t len = strcspn(s, ",");
		v[i] = len ? xstrndup(s, len) : NULL;
		s += len + (s[len] == ',');
	}
	*out = v;
	return n;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static bool config_error(struct pg_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static bool config_error(struct pg_error *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	err->sqlstate[0] = '\0';
	return false;
}

/* libpq's client key rule (fe-secure-openssl.c): no access for group or others when the key
 * is ours, at most group read when it belongs to root. */
static bool key_mode_ok(const struct stat *st)
{
	if (st->st_uid == geteuid() && (st->st_mode & (S_IRWXG | S_IRWXO)))
		return false;
	return !(st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)));
}

/* The TLS client files libpq would use: a certificate named but missing (libpq goes on
 * without it, and the server's refusal then says nothing of the file) and a key file others
 * may read (libpq refuses it, but only once the server has agreed to TLS). */
static bool check_tls_files(const struct settings *s, struct pg_error *err)
{
	const char *mode = setting(s, "sslmode");
	if (mode && strcmp(mode, "disable") == 0)
		return true;
	const char *cert = setting(s, "sslcert"), *key = setting(s, "sslkey");
	struct passwd pwbuf, *pw = NULL;
	char pwtext[4096];
	char dcert[4096] = "", dkey[4096] = "";
	/* libpq looks in the home directory of the effective user, as getpwuid says it. */
	if (getpwuid_r(geteuid(), &pwbuf, pwtext, sizeof pwtext, &pw) == 0 && pw && pw->pw_dir) {
		snprintf(dcert, sizeof dcert, "%s/.postgresql/postgresql.crt", pw->pw_dir);
		snprintf(dkey, sizeof dkey, "%s/.postgresql/postgresql.key", pw->pw_dir);
	}
	struct stat st;
	if (cert && stat(cert, &st) != 0 && (errno == ENOENT || errno == ENOTDIR))
		return config_error(err, "sslcert: the client certificate file \"%s\" does not exist; "
				    "give its path, or leave sslcert unset", cert);
	bool have_cert = cert ? true : dcert[0] && stat(dcert, &st) == 0;
	if (!have_cert || (key && strchr(key, ':'))) /* engine:keyname: no file of ours to check */
		return true;
	const char *k = key ? key : dkey;
	if (!*k || stat(k, &st) != 0)
		return true; /* libpq names a missing key itself ("certificate present, but not private key") */
	if (!S_ISREG(st.st_mode))
		return config_error(err, "sslkey: the client key \"%s\" is not a regular file", k);
	if (!key_mode_ok(&st))
		return config_error(err, "sslkey: the client key file \"%s\" may be read by others, so "
				    "libpq refuses it; make it private: chmod 0600 \"%s\"", k, k);
	return true;
}

/* The settings libpq would refuse, or misread, later. */
static bool check_settings(const char *url, const struct settings *s, struct pg_error *err)
{
	char cut = '\0';
	if (url)
		cut = userinfo_cut(url);
	if (cut == '@')
		return config_error(err, "the URL's user name or password holds an unencoded '@': libpq "
				    "splits at the first '@' and takes the rest for the host name");
	if (cut == '/')
		return config_error(err, "the URL's user name or password holds an unencoded '/': libpq "
				    "ends the host part there and takes the rest for the database name");
	const char *ct = setting(s, "connect_timeout");
	long n;
	if (ct && !libpq_int(ct, &n))
		return config_error(err, "invalid integer value \"%s\" for connection option \"%s\"", ct,
				    "connect_timeout");
	const char *tsa = setting(s, "target_session_attrs");
	if (tsa && !valid_session_attrs(tsa))
		return config_error(err, "invalid target_session_attrs value: \"%s\" (expected any, "
				    "read-write, read-only, primary, standby or prefer-standby)", tsa);
	return check_tls_files(s, err);
}

static bool is_socket_path(const char *h)
{
	return h[0] == '/' || h[0] == '@';
}

/* The hosts, their ports and addresses, one entry each, paired as libpq pairs them. */
static bool list_hosts(const struct settings *s, struct pg_hosts *h, struct pg_error *err)
{
	char **hosts, **addrs, **ports;
	const char *hostaddr = setting(s, "hostaddr");
	size_t nhost = split(setting(s, "host"), &hosts);
	size_t naddr = split(hostaddr, &addrs);
	size_t nport = split(setting(s, "port"), &ports);
	bool only_addrs = nhost == 1 && !hosts[0] && hostaddr;
	size_t n = only_addrs ? naddr : nhost;
	bool ok = true;
	if (hostaddr && naddr != n)
		ok = config_error(err, "could not match %zu host names to %zu hostaddr values", n, naddr);
	else if (nport > 1 && nport != n)
		ok = config_error(err, "could not match %zu port numbers to %zu hosts", nport, n);
	h->v = ok ? xcalloc(n, sizeof *h->v) : NULL;
	for (size_t i = 0; ok && i < n; i++) {
		struct pg_host *e = &h->v[h->n++];
		const char *host = only_addrs ? NULL : hosts[i];
		const char *port = ports[nport > 1 ? i : 0];
		e->host = host ? xstrdup(host) : NULL;
		e->hostaddr = hostaddr && addrs[i] ? xstrdup(addrs[i]) : NULL;
		e->port = port ? xstrdup(port) : NULL;
		e->lookup = host && !e->hostaddr && !is_socket_path(host) && !resolve_is_numeric(host);
		/* An empty entry in a longer list means libpq's built-in default, which only libpq
		 * knows (its socket directory): then libpq gets the whole list as given. */
		if (!host && !e->hostaddr && n > 1)
			h->as_given = true;
	}
	free_list(hosts, nhost);
	free_list(addrs, naddr);
	free_list(ports, nport);
	return ok;
}

enum pg_status pg_hosts_plan(const struct pg_target *t, struct pg_hosts *h, struct pg_error *err)
{
	memset(h, 0, sizeof *h);
	memset(err, 0, sizeof *err);
	struct settings s = {PQconninfoParse(t->url ? t->url : "", NULL), PQconndefaults()};
	enum pg_status st = PG_CONFIG;
	if (!s.given) {
		config_error(err, "not a valid PostgreSQL URL or conninfo string");
		goto fail;
	}
	if (!check_settings(t->url, &s, err) || !list_hosts(&s, h, err))
		goto fail;
	const char *ct = setting(&s, "connect_timeout");
	long secs = 0;
	if (ct && libpq_int(ct, &secs) && secs > 0)
		h->per_host_ms = (secs < 2 ? 2 : secs) * 1000; /* libpq's minimum: 2 s */
	const char *tsa = setting(&s, "target_session_attrs");
	h->prefer_standby = tsa && strcmp(tsa, "prefer-standby") == 0;
	/* A service named in the URL may set the hosts itself; no defaults: a service file libpq
	 * could not read. Either way libpq decides alone. */
	if (opt_val(s.given, "service") || !s.defaults)
		h->as_given = true;
	st = PG_OK;
fail:
	PQconninfoFree(s.given);
	PQconninfoFree(s.defaults);
	return st;
}

void pg_hosts_free(struct pg_hosts *h)
{
	for (size_t i = 0; i < h->n; i++) {
		free(h->v[i].host);
		free(h->v[i].hostaddr);
		free(h->v[i].port);
	}
	free(h->v);
	memset(h, 0, sizeof *h);
}

/* Passes each piece of s between the characters in cut to add, if long enough to be more
 * than a coincidence in a log line. */
static void add_pieces(const char *s, size_t len, const char *cut, void (*add)(const char *))
{
	while (len > 0) {
		size_t n = strcspn(s, cut);
		if (n > len)
			n = len;
		if (n >= 3) {
			char *piece = xstrndup(s, n);
			add(piece);
			free(piece);
		}
		s += n + (n < len);
		len -= n + (n < len);
	}
}

void pg_target_secrets(const char *url, void (*add)(const char *secret))
{
	if (!url)
		return;
	PQconninfoOption *opts = PQconninfoParse(url, NULL);
	if (!userinfo_cut(url)) {
		add(opt_val(opts, "password"));
		PQconninfoFree(opts);
		return;
	}
	PQconninfoFree(opts);
	/* Meant: everything between "user:" and the last '@' before the query. */
	const char *auth = strstr(url, "://") + 3;
	size_t end = strcspn(auth, "?");
	const char *at = NULL;
	for (const char *p = auth; p < auth + end; p++)
		if (*p == '@')
			at = p;
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon)
		return;
	char *meant = xstrndup(colon + 1, (size_t)(at - colon - 1));
	add(meant);
	add_pieces(meant, strlen(meant), "@/", add);
	free(meant);
}
