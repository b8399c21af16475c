/* HTTP through libcurl: --wait-http probes, the backup upload and --notify-url webhooks. */
#ifndef MTR_HTTP_H
#define MTR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_result {
	long status;       /* the HTTP status, 0 when no response came */
	int curl_code;     /* CURLE_OK (0) when a response came */
	int signo;         /* a stop signal ended the transfer */
	char err[512];     /* what failed, with the URL as http_url_public shows it */
};

/* Once, before anything else runs threads: libcurl's global state and the CA bundle for
 * HTTPS (ca_file, else CURL_CA_BUNDLE, else SSL_CERT_FILE, else the build's default). */
void http_setup(const char *ca_file);

/* Whether url is an http:// or https:// URL libcurl can use; else err says why. */
bool http_check_url(const char *url, char *err, size_t errlen);

/* The URL as logs show it: no user-info and no query string (a presigned URL's query is its
 * credential): https://bucket.s3.amazonaws.com/key?*** (caller frees). With hide_path, the
 * path too (a webhook URL's path is often its token): https://hooks.example.com/(hidden) */
char *http_url_public(const char *url, bool hide_path);

/* Tells the logger the URL's secrets (its password, its query string, with hide_path its path). */
void http_register_secrets(const char *url, bool hide_path);

/* A presigned S3 or GCS URL: its PUT must state the length up front (no chunked body). */
bool http_needs_length(const char *url);

/* Worth trying again: no response (connection refused, reset, timed out), 5xx but 501, 408
 * or 429. */
bool http_retryable(const struct http_result *r);

/* GET url; true when it answered 2xx. timeout_ms bounds the whole request; stop_fd (see
 * signals_stop_fd, or -1) ends it early with r->signo set. */
bool http_get(const char *url, int64_t timeout_ms, int stop_fd, struct http_result *r);

/* Supplies the body of a PUT: up to size bytes into buf; returns the count, 0 at the end, or
 * HTTP_READ_ABORT to abandon the request so that the server never sees a complete body. */
typedef size_t (*http_read_fn)(char *buf, size_t size, void *ctx);
#define HTTP_READ_ABORT ((size_t)-1)

/* PUT a body of `length` bytes (-1: unknown, sent chunked) read through read_fn. The transfer
 * ends when the server stalls for 60 s; `abort_flag` (may be NULL; read atomically), checked at
 * least once a second, abandons it when it turns non-zero; so does stop_fd. True when it answered 2xx. */
bool http_put(const char *url, http_read_fn read_fn, void *ctx, long long length,
	      const int *abort_flag, int stop_fd, struct http_result *r);

/* POSTs one JSON body to each of n URLs at once: each request times out after per_try_ms and
 * is retried (up to `retries` times, with backoff) when http_retryable; everything ends by
 * deadline_ms (a now_ms() time) or a stop signal on stop_fd. ok[i] says which were delivered,
 * results[i] the last outcome of each. */
void http_post_json_all(const char *const *urls, size_t n, const char *body, int64_t per_try_ms,
			unsigned retries, int64_t deadline_ms, int stop_fd, bool *ok,
			struct http_result *results);

#endif
