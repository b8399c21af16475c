/* The libcurl functions http.c calls (curl_api.h): linked, or loaded when first needed. */
#include "mtr/curl_api.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#ifdef MTR_CURL_DLOPEN
#include <dlfcn.h>

static struct curl_api api;
static const struct curl_api *loaded;
static char why[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Each name of the table with its field, so that one loop resolves them all; a field whose
 * type is not the function's (as curl.h declares it) does not compile. */
/* NOLINTNEXTLINE(bugprone-macro-parentheses): field is a member name */
#define SAME_TYPE(field, name)                                                                    \
	(sizeof(char[__builtin_types_compatible_p(__typeof__(&(name)),                            \
						  __typeof__(((struct curl_api *)0)->field)) ? 1 : -1]) - 1)
#define FN(field, name) {#name, offsetof(struct curl_api, field) + SAME_TYPE(field, name)}
static const struct {
	const char *name;
	size_t offset;
} names[] = {
	FN(global_init, curl_global_init), FN(url, curl_url), FN(url_set, curl_url_set),
	FN(url_get, curl_url_get), FN(url_strerror, curl_url_strerror), FN(url_cleanup, curl_url_cleanup),
	FN(free, curl_free), FN(easy_unescape, curl_easy_unescape), FN(easy_init, curl_easy_init),
	FN(easy_setopt, curl_easy_setopt), FN(easy_getinfo, curl_easy_getinfo),
	FN(easy_strerror, curl_easy_strerror), FN(easy_perform, curl_easy_perform),
	FN(easy_cleanup, curl_easy_cleanup), FN(multi_init, curl_multi_init),
	FN(multi_add_handle, curl_multi_add_handle), FN(multi_remove_handle, curl_multi_remove_handle),
	FN(multi_perform, curl_multi_perform), FN(multi_poll, curl_multi_poll),
	FN(multi_info_read, curl_multi_info_read), FN(multi_cleanup, curl_multi_cleanup),
	FN(slist_append, curl_slist_append), FN(slist_free_all, curl_slist_free_all),
};

static void load(void)
{
	/* Never closed: libcurl stays for the process, as a linked one would. */
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(why, sizeof why, "libcurl could not be loaded (%s): install it (Debian and Ubuntu: "
			 "apt-get install libcurl4), or use the static binary", dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		void *fn = dlsym(h, names[i].name);
		if (!fn) {
			snprintf(why, sizeof why, "libcurl.so.4 has no %s: it is older than 7.85; "
				 "install a newer libcurl4, or use the static binary", names[i].name);
			return;
		}
		/* POSIX dlsym: a function's address converts to and from void * */
		memcpy((char *)&api + names[i].offset, &fn, sizeof fn);
	}
	loaded = &api;
}

const struct curl_api *curl_api(void)
{
	pthread_once(&once, load);
	return loaded;
}

const char *curl_api_error(void)
{
	return why;
}

#else

static const struct curl_api linked = {
	curl_global_init, curl_url, curl_url_set, curl_url_get, curl_url_strerror, curl_url_cleanup,
	curl_free, curl_easy_unescape, curl_easy_init, curl_easy_setopt, curl_easy_getinfo,
	curl_easy_strerror, curl_easy_perform, curl_easy_cleanup, curl_multi_init,
	curl_multi_add_handle, curl_multi_remove_handle, curl_multi_perform, curl_multi_poll,
	curl_multi_info_read, curl_multi_cleanup, curl_slist_append, curl_slist_free_all,
};

const struct curl_api *curl_api(void)
{
	return &linked;
}

const char *curl_api_error(void)
{
	return "";
}

#endif
