/* HTTP through libcurl: --wait-http probes, the backup upload and --notify-url webhooks. */
#include "mtr/http.h"
#include "mtr/curl_api.h"
#include "mtr/log.h"
#include "mtr/redact.h"
#include "mtr/retry.h"
#include "mtr/signals.h"
#include "mtr/util.h"

#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libcurl's functions (curl_api.h): every public function below checks that they are there
 * before anything else uses C. */
#define C (curl_api())

/* Set once by http_setup, before any transfer or thread: read-only afterwards. */
static const char *ca_bundle;

void http_setup(const char *ca_file)
{
	if (C) /* without libcurl every transfer says why (curl_api_error) */
		C->global_init(CURL_GLOBAL_DEFAULT);
	const char *env_ca = getenv("CURL_CA_BUNDLE");
	if (!env_ca || !*env_ca)
		env_ca = getenv("SSL_CERT_FILE");
	ca_bundle = ca_file && *ca_file ? ca_file : env_ca && *env_ca ? env_ca : NULL;
}

bool http_check_url(const char *url, char *err, size_t errlen)
{
	if (!C) {
		set_err(err, errlen, "%s", curl_api_error());
		return false;
	}
	CURLU *u = C->url();
	char *scheme = NULL, *host = NULL;
	CURLUcode rc = C->url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	bool ok = false;
	if (rc != CURLUE_OK) {
		set_err(err, errlen, "not a URL (%s)", C->url_strerror(rc));
	} else if (C->url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		   (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		set_err(err, errlen, "expected an http:// or https:// URL, got the scheme '%s'",
			scheme ? scheme : "");
	} else if (C->url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		set_err(err, errlen, "expected a host name in the URL");
	} else {
		ok = true;
	}
	C->free(scheme);
	C->free(host);
	C->url_cleanup(u);
	return ok;
}

/* Where the authority starts: after "scheme://" at the very start, else at the start. */
static const char *authority(const char *url)
{
	size_t n = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	return n > 0 && strncmp(url + n, "://", 3) == 0 ? url + n + 3 : url;
}

char *http_url_public(const char *url, bool hide_path)
{
	/* What libcurl will connect to, as it parses it: a hand-made split could leave part of a
	 * password with an unencoded '/', '?' or '#' in the "host". */
	CURLU *u = C ? C->url() : NULL;
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL;
	char *out;
	if (!u || C->url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
	    C->url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    C->url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		/* not a URL: nothing of it past a scheme is safe to show */
		const char *auth = authority(url);
		out = xasprintf("%.*s" REDACTED, (int)(auth - url), url);
	} else {
		C->url_get(u, CURLUPART_PORT, &port, 0);
		C->url_get(u, CURLUPART_PATH, &path, 0);
		C->url_get(u, CURLUPART_QUERY, &query, 0);
		bool userinfo = C->url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK;
		if (!userinfo) {
			char *pw = NULL;
			userinfo = C->url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK;
			C->free(pw);
		}
		bool path_hidden = hide_path && path && strlen(path) > 1;
		out = xasprintf("%s://%s%s%s%s%s%s", scheme, userinfo ? REDACTED "@" : "", host, port ? ":" : "",
				port ? port : "", path_hidden ? "/" REDACTED : path ? path : "/",
				query ? "?" REDACTED : "");
	}
	if (u) {
		C->free(scheme);
		C->free(host);
		C->free(port);
		C->free(path);
		C->free(user);
		C->free(query);
		C->url_cleanup(u);
	}
	return out;
}

/* A query parameter's value: a server may quote one back (S3 does its access key id), so it is
 * a secret as written, decoded, and the part of it before a '/' (X-Amz-Credential's key id). */
static void register_query_value(const char *value, size_t len)
{
	char *v = xstrndup(value, len);
	log_add_secret(v);
	int n = 0;
	char *d = C ? C->easy_unescape(NULL, v, 0, &n) : NULL;
	if (d) {
		log_add_secret(d);
		char *slash = strchr(d, '/');
		if (slash && slash - d >= 8) {
			*slash = '\0';
			log_add_secret(d);
		}
		C->free(d);
	}
	free(v);
}

void http_register_secrets(const char *url, bool hide_path)
{
	char *pw = redact_url_password(url);
	log_add_secret(pw);
	free(pw);
	const char *auth = authority(url);
	const char *path = auth + strcspn(auth, "/?#");
	const char *query = strchr(path, '?');
	if (query && query[1]) {
		log_add_secret(query + 1);
		for (const char *p = query + 1; *p; p += *p != '\0') {
			size_t len = strcspn(p, "&#");
			const char *eq = memchr(p, '=', len);
			if (eq && (size_t)(p + len - eq - 1) >= 8)
				register_query_value(eq + 1, (size_t)(p + len - eq - 1));
			p += len;
			if (*p == '#')
				break;
		}
	}
	if (hide_path && *path == '/' && path[1]) {
		char *p = xstrndup(path + 1, strcspn(path + 1, "?#"));
		/* a short path such as "hook" is no token, and hiding it would hide the word */
		if (strlen(p) >= 8)
			log_add_secret(p);
		free(p);
	}
}

bool http_needs_length(const char *url)
{
	const char *q = strchr(url, '?');
	return q && (strstr(q, "X-Amz-Signature=") || strstr(q, "X-Goog-Signature=") ||
		     strstr(q, "Signature="));
}

bool http_retryable(const struct http_result *r)
{
	if (r->signo)
		return false;
	if (r->status == 0)
		return r->curl_code != CURLE_URL_MALFORMAT && r->curl_code != CURLE_UNSUPPORTED_PROTOCOL &&
		       r->curl_code != CURLE_ABORTED_BY_CALLBACK && r->curl_code != CURLE_PEER_FAILED_VERIFICATION &&
		       r->curl_code != CURLE_SSL_CACERT_BADFILE && r->curl_code != CURLE_READ_ERROR &&
		       r->curl_code != CURLE_FAILED_INIT;
	/* 501 Not Implemented will not be implemented by the next try */
	return (r->status >= 500 && r->status != 501) || r->status == 408 || r->status == 429;
}

/* One transfer's context: the stop conditions and the start of the response body (an S3 or
 * WebDAV server explains a refusal there). */
struct xfer {
	const int *abort_flag;
	int stop_fd;
	int signo;
	http_read_fn read_fn;
	void *read_ctx;
	char body[256];
	size_t body_len;
	char errbuf[CURL_ERROR_SIZE];
};

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = p;
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	if (x->abort_flag && __atomic_load_n(x->abort_flag, __ATOMIC_ACQUIRE))
		return 1;
	if (x->stop_fd >= 0) {
		struct pollfd pfd = {x->stop_fd, POLLIN, 0};
		if (poll(&pfd, 1, 0) == 1) {
			x->signo = signals_stop_read(x->stop_fd);
			return 1;
		}
	}
	return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct xfer *x = p;
	size_t len = size * n;
	for (size_t i = 0; i < len && x->body_len + 1 < sizeof x->body; i++) {
		unsigned char c = (unsigned char)data[i];
		if (isspace(c) && (x->body_len == 0 || x->body[x->body_len - 1] == ' '))
			continue; /* one line: runs of white space become one space */
		x->body[x->body_len++] = isspace(c) ? ' ' : (isprint(c) ? (char)c : '?');
	}
	x->body[x->body_len] = '\0';
	return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *p)
{
	struct xfer *x = p;
	size_t got = x->read_fn(buf, size * n, x->read_ctx);
	return got == HTTP_READ_ABORT ? CURL_READFUNC_ABORT : got;
}

static CURL *easy_new(const char *url, struct xfer *x)
{
	CURL *c = C ? C->easy_init() : NULL;
	if (!c)
		return NULL;
	C->easy_setopt(c, CURLOPT_URL, url);
	C->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	C->easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	C->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	C->easy_setopt(c, CURLOPT_USERAGENT, "migrate-then-run/" MTR_VERSION);
	C->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	C->easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
	C->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	C->easy_setopt(c, CURLOPT_WRITEDATA, x);
	C->easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	C->easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	C->easy_setopt(c, CURLOPT_XFERINFODATA, x);
	if (ca_bundle)
		C->easy_setopt(c, CURLOPT_CAINFO, ca_bundle);
	return c;
}

/* Fills r from a finished transfer; true for a 2xx answer. */
static bool finish(CURL *c, CURLcode rc, const char *url, bool hide_path, struct xfer *x,
		   struct http_result *r)
{
	memset(r, 0, sizeof *r);
	r->curl_code = (int)rc;
	r->signo = x->signo;
	if (rc == CURLE_OK)
		C->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	char *pub = http_url_public(url, hide_path);
	if (rc == CURLE_OK && r->status >= 200 && r->status < 300) {
		free(pub);
		return true;
	}
	if (rc == CURLE_OK)
		snprintf(r->err, sizeof r->err, "%s answered HTTP %ld%s%s", pub, r->status,
			 x->body_len ? ": " : "", x->body);
	else if (x->signo)
		snprintf(r->err, sizeof r->err, "%s: stopped by %s", pub, signals_name(x->signo));
	else
		snprintf(r->err, sizeof r->err, "%s: %s", pub, x->errbuf[0] ? x->errbuf : C->easy_strerror(rc));
	free(pub);
	/* the server's words may quote the URL back, query string and all */
	char *safe = log_redact(r->err);
	snprintf(r->err, sizeof r->err, "%s", safe);
	free(safe);
	return false;
}

static bool no_handle(struct http_result *r)
{
	memset(r, 0, sizeof *r);
	r->curl_code = C ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT;
	snprintf(r->err, sizeof r->err, "cannot start an HTTP request (%s)", C ? "out of memory" : curl_api_error());
	return false;
}

bool http_get(const char *url, int64_t timeout_ms, int stop_fd, struct http_result *r)
{
	struct xfer x = {.stop_fd = stop_fd};
	CURL *c = easy_new(url, &x);
	if (!c)
		return no_handle(r);
	C->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	C->easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	C->easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
	if (timeout_ms < 10000)
		C->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
	bool ok = finish(c, C->easy_perform(c), url, false, &x, r);
	C->easy_cleanup(c);
	return ok;
}

bool http_put(const char *url, http_read_fn read_fn, void *ctx, long long length,
	      const int *abort_flag, int stop_fd, struct http_result *r)
{
	struct xfer x = {.abort_flag = abort_flag, .stop_fd = stop_fd, .read_fn = read_fn, .read_ctx = ctx};
	CURL *c = easy_new(url, &x);
	if (!c)
		return no_handle(r);
	/* No Content-Type: an older presigned URL signs it, and the object needs none. */
	C->easy_setopt(c, CURLOPT_UPLOAD, 1L);
	C->easy_setopt(c, CURLOPT_READFUNCTION, on_read);
	C->easy_setopt(c, CURLOPT_READDATA, &x);
	if (length >= 0)
		C->easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
	/* no overall limit (a dump takes as long as it takes), but a server that stops taking
	 * data for a minute is gone */
	C->easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	C->easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	bool ok = finish(c, C->easy_perform(c), url, false, &x, r);
	C->easy_cleanup(c);
	return ok;
}

struct post {
	CURL *easy;
	struct xfer x;
	unsigned attempts;
	int64_t next_at;
	bool done;
};

/* The webhooks of one http_post_json_all: one request per URL, all on one multi handle. The
 * caller's urls, body, ok and results; the rest is freed by posts_end. */
struct posts {
	CURLM *multi;
	struct post *p;
	size_t n;
	const char *const *urls;
	const char *body;
	struct curl_slist *headers;
	int64_t per_try_ms, deadline_ms;
	unsigned retries;
	struct backoff b;
	bool *ok;
	struct http_result *results;
};

/* Starts request i, its timeout cut to what is left before the deadline. */
static void posts_start(struct posts *s, size_t i, int64_t left)
{
	struct post *q = &s->p[i];
	memset(&q->x, 0, sizeof q->x);
	q->x.stop_fd = -1;
	q->easy = easy_new(s->urls[i], &q->x);
	if (!q->easy) {
		q->done = true;
		return;
	}
	long t = (long)(left < s->per_try_ms ? left : s->per_try_ms);
	C->easy_setopt(q->easy, CURLOPT_TIMEOUT_MS, t);
	C->easy_setopt(q->easy, CURLOPT_CONNECTTIMEOUT_MS, t);
	C->easy_setopt(q->easy, CURLOPT_HTTPHEADER, s->headers);
	C->easy_setopt(q->easy, CURLOPT_POSTFIELDS, s->body);
	C->easy_setopt(q->easy, CURLOPT_PRIVATE, (void *)q);
	C->multi_add_handle(s->multi, q->easy);
	q->attempts++;
}

/* Starts the tries that are due. Counts the requests in flight and those waiting out a backoff;
 * *wake: the earliest retry, if before the deadline. */
static void posts_start_due(struct posts *s, int64_t now, size_t *active, size_t *waiting, int64_t *wake)
{
	for (size_t i = 0; i < s->n; i++) {
		struct post *q = &s->p[i];
		if (q->done || q->easy) {
			*active += q->easy != NULL;
			continue;
		}
		if (q->next_at > now) {
			(*waiting)++;
			*wake = q->next_at < *wake ? q->next_at : *wake;
			continue;
		}
		int64_t left = s->deadline_ms - now;
		if (left <= 0)
			break;
		posts_start(s, i, left);
		*active += q->easy != NULL;
	}
}

/* Takes the finished transfers: records each outcome and schedules a retry where one is due. */
static void posts_collect(struct posts *s)
{
	CURLMsg *m;
	int left_msgs;
	while ((m = C->multi_info_read(s->multi, &left_msgs)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct post *q = NULL;
		C->easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
		size_t i = (size_t)(q - s->p);
		s->ok[i] = finish(q->easy, m->data.result, s->urls[i], true, &q->x, &s->results[i]);
		C->multi_remove_handle(s->multi, q->easy);
		C->easy_cleanup(q->easy);
		q->easy = NULL;
		if (s->ok[i] || !http_retryable(&s->results[i]) || q->attempts > s->retries)
			q->done = true;
		else
			q->next_at = now_ms() + backoff_next(&s->b);
	}
}

/* Waits for the transfers, until wake but at most a second; the stop signal that came, or 0. */
static int posts_wait(struct posts *s, int64_t wake, int stop_fd)
{
	int64_t wait = wake - now_ms();
	if (wait > 1000)
		wait = 1000;
	if (wait < 0)
		wait = 0;
	struct curl_waitfd extra = {stop_fd, CURL_WAIT_POLLIN, 0};
	int nfds = 0;
	C->multi_poll(s->multi, stop_fd >= 0 ? &extra : NULL, stop_fd >= 0 ? 1 : 0, (int)wait, &nfds);
	if (stop_fd >= 0 && (extra.revents & CURL_WAIT_POLLIN))
		return signals_stop_read(stop_fd);
	return 0;
}

/* Ends what is still in flight; with a stop signal, says so for each URL not delivered. */
static void posts_end(struct posts *s, int signo)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->p[i].easy) {
			C->multi_remove_handle(s->multi, s->p[i].easy);
			C->easy_cleanup(s->p[i].easy);
		}
		if (signo && !s->ok[i]) {
			s->results[i].signo = signo;
			snprintf(s->results[i].err, sizeof s->results[i].err, "not sent: stopped by %s",
				 signals_name(signo));
		}
	}
	C->slist_free_all(s->headers);
	C->multi_cleanup(s->multi);
	free(s->p);
}

void http_post_json_all(const char *const *urls, size_t n, const char *body, int64_t per_try_ms,
			unsigned retries, int64_t deadline_ms, int stop_fd, bool *ok,
			struct http_result *results)
{
	if (!C) {
		for (size_t i = 0; i < n; i++) {
			ok[i] = false;
			(void)no_handle(&results[i]);
		}
		return;
	}
	struct posts s = {.multi = C->multi_init(), .p = xcalloc(n ? n : 1, sizeof(struct post)), .n = n,
			  .urls = urls, .body = body, .per_try_ms = per_try_ms, .deadline_ms = deadline_ms,
			  .retries = retries, .ok = ok, .results = results};
	s.headers = C->slist_append(NULL, "Content-Type: application/json");
	backoff_init(&s.b, 500, 2000, random_u64());
	int signo = 0;
	for (size_t i = 0; i < n; i++) {
		ok[i] = false;
		memset(&results[i], 0, sizeof results[i]);
		snprintf(results[i].err, sizeof results[i].err, "not sent before the notify timeout");
		s.p[i].x.stop_fd = -1;
	}
	while (s.multi && !signo) {
		int64_t now = now_ms();
		size_t active = 0, waiting = 0;
		int64_t wake = deadline_ms;
		posts_start_due(&s, now, &active, &waiting, &wake);
		if ((active == 0 && waiting == 0) || now >= deadline_ms)
			break;
		int running = 0;
		C->multi_perform(s.multi, &running);
		posts_collect(&s);
		if (running == 0 && active > 0)
			continue; /* something finished: schedule the next tries at once */
		signo = posts_wait(&s, wake, stop_fd);
	}
	posts_end(&s, signo);
}
