/* The libcurl functions http.c calls, through one table. The static build links libcurl and
 * fills the table with its functions. The dynamic build loads libcurl.so.4 with dlopen the
 * first time HTTP is needed: libcurl and the two dozen libraries it needs cost a start that
 * never speaks HTTP (the common one) about a tenth of its time, for nothing. */
#ifndef MTR_CURL_API_H
#define MTR_CURL_API_H

#include <curl/curl.h>
#include <stddef.h>

struct curl_api {
	CURLcode (*global_init)(long flags);
	CURLU *(*url)(void);
	CURLUcode (*url_set)(CURLU *u, CURLUPart what, const char *part, unsigned int flags);
	CURLUcode (*url_get)(CURLU *u, CURLUPart what, char **part, unsigned int flags);
	const char *(*url_strerror)(CURLUcode code);
	void (*url_cleanup)(CURLU *u);
	void (*free)(void *p);
	char *(*easy_unescape)(CURL *c, const char *s, int len, int *outlen);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *c, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	CURLcode (*easy_perform)(CURL *c);
	void (*easy_cleanup)(CURL *c);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *c);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *c);
	CURLMcode (*multi_perform)(CURLM *m, int *running);
	CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd extra[], unsigned int n, int timeout_ms, int *numfds);
	CURLMsg *(*multi_info_read)(CURLM *m, int *msgs_in_queue);
	CURLMcode (*multi_cleanup)(CURLM *m);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
};

/* The table, loaded on the first call (thread-safe); NULL when libcurl cannot be loaded, and
 * then curl_api_error() says why and what to install. */
const struct curl_api *curl_api(void);
const char *curl_api_error(void);

#endif
