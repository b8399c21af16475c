/* Host name lookups with a deadline: getaddrinfo on a thread (musl has no getaddrinfo_a). */
#include "mtr/resolve.h"
#include "mtr/bounded.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

bool resolve_is_numeric(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* One lookup: the name in, the addresses or the resolver's error out. */
struct lookup {
	char *host;
	int rc;
	struct resolve_result res;
};

static void lookup_run(void *p)
{
	struct lookup *l = p;
	struct addrinfo hint, *ai = NULL;
	memset(&hint, 0, sizeof hint);
	hint.ai_family = AF_UNSPEC;
	hint.ai_socktype = SOCK_STREAM;
	l->rc = getaddrinfo(l->host, NULL, &hint, &ai);
	for (struct addrinfo *a = ai; l->rc == 0 && a && l->res.n < RESOLVE_MAX; a = a->ai_next) {
		char *dst = l->res.addr[l->res.n];
		if (getnameinfo(a->ai_addr, a->ai_addrlen, dst, sizeof l->res.addr[0], NULL, 0,
				NI_NUMERICHOST) != 0)
			continue;
		bool seen = false; /* one entry per address, whatever the protocols listed */
		for (size_t i = 0; i < l->res.n && !seen; i++)
			seen = strcmp(l->res.addr[i], dst) == 0;
		if (!seen)
			l->res.n++;
	}
	if (ai)
		freeaddrinfo(ai);
}

static void lookup_free(void *p)
{
	struct lookup *l = p;
	free(l->host);
	free(l);
}

enum resolve_status resolve_host(const char *host, int64_t timeout_ms, int stop_fd,
				 struct resolve_result *out, char *err, size_t errlen)
{
	struct lookup *l = xcalloc(1, sizeof *l);
	l->host = xstrdup(host);
	enum bounded_result b = bounded_call(lookup_run, l, lookup_free, timeout_ms, stop_fd);
	if (b == BOUNDED_NO_THREAD) /* no thread to be had: the lookup blocks, but happens */
		lookup_run(l);
	if (b == BOUNDED_TIMEOUT) {
		set_err(err, errlen, "could not translate host name \"%s\" to address: no answer "
			"from the name server within %lldms", host, (long long)timeout_ms);
		return RESOLVE_TIMEOUT;
	}
	if (b == BOUNDED_INTERRUPTED) {
		set_err(err, errlen, "interrupted while looking up host name \"%s\"", host);
		return RESOLVE_INTERRUPTED;
	}
	enum resolve_status st = RESOLVE_OK;
	if (l->rc != 0 || l->res.n == 0) {
		set_err(err, errlen, "could not translate host name \"%s\" to address: %s", host,
			l->rc ? gai_strerror(l->rc) : "no address");
		st = RESOLVE_FAILED;
	} else {
		*out = l->res;
	}
	lookup_free(l);
	return st;
}
