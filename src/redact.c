/* Removing passwords from text before it is logged: URL user-info, key=value, known secrets. */
#include "mtr/redact.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Where a URL's authority ends: the first character that cannot be part of it. */
static bool authority_end(char c)
{
	return c == '\0' || c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' ||
	       c == '<' || c == '>' || c == '`' || isspace((unsigned char)c);
}

/* Hides URL passwords: scheme://user:PASSWORD@host → scheme://user:***@host. */
static char *redact_urls(const char *in)
{
	struct strbuf b = STRBUF_INIT;
	const char *p = in;
	for (;;) {
		const char *sep = strstr(p, "://");
		if (!sep) {
			sb_adds(&b, p);
			break;
		}
		const char *auth = sep + 3;
		const char *end = auth;
		while (!authority_end(*end))
			end++;
		const char *at = NULL;
		for (const char *q = auth; q < end; q++)
			if (*q == '@')
				at = q;
		const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
		if (colon) {
			sb_add(&b, p, (size_t)(colon + 1 - p));
			sb_adds(&b, REDACTED);
			sb_add(&b, at, (size_t)(end - at));
		} else {
			sb_add(&b, p, (size_t)(end - p));
		}
		p = end;
	}
	return sb_take(&b);
}

static bool is_key_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Hides the value of password=... and PGPASSWORD=... (also quoted conninfo values). */
static char *redact_keyvalues(const char *in)
{
	static const char *const keys[] = {"password", "pgpassword", "passwd"};
	struct strbuf b = STRBUF_INIT;
	const char *p = in;
	while (*p) {
		size_t klen = 0;
		/* "password" alone or as the end of a name: DB_PASSWORD=, POSTGRES_PASSWORD= */
		if (p == in || !is_key_char(p[-1]) || p[-1] == '_') {
			for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
				size_t n = strlen(keys[k]);
				if (strncasecmp(p, keys[k], n) != 0)
					continue;
				const char *q = p + n;
				while (*q == ' ')
					q++;
				if (*q == '=') {
					klen = (size_t)(q + 1 - p);
					break;
				}
			}
		}
		if (!klen) {
			sb_add(&b, p, 1);
			p++;
			continue;
		}
		while (p[klen] == ' ')
			klen++;
		sb_add(&b, p, klen);
		p += klen;
		if (*p == '\'' || *p == '"') {
			char quote = *p++;
			while (*p && *p != quote)
				p += (*p == '\\' && p[1]) ? 2 : 1;
			if (*p)
				p++;
		} else {
			while (*p && !isspace((unsigned char)*p) && *p != '&' && *p != ',' && *p != '"')
				p++;
		}
		sb_adds(&b, REDACTED);
	}
	return sb_take(&b);
}

static char *redact_secret(char *in, const char *secret)
{
	size_t n = strlen(secret);
	if (n == 0 || !strstr(in, secret))
		return in;
	struct strbuf b = STRBUF_INIT;
	const char *p = in;
	for (const char *hit; (hit = strstr(p, secret)) != NULL; p = hit + n) {
		sb_add(&b, p, (size_t)(hit - p));
		sb_adds(&b, REDACTED);
	}
	sb_adds(&b, p);
	free(in);
	return sb_take(&b);
}

char *redact(const char *in, const char *const *secrets, size_t n)
{
	/* Known secrets first (the patterns below would otherwise split them), longest first, so
	 * that a secret containing another is hidden whole. */
	char *s = xstrdup(in);
	bool *done = xcalloc(n ? n : 1, sizeof *done);
	for (size_t round = 0; round < n; round++) {
		size_t best = n;
		for (size_t i = 0; i < n; i++)
			if (!done[i] && secrets[i] &&
			    (best == n || strlen(secrets[i]) > strlen(secrets[best])))
				best = i;
		if (best == n)
			break;
		done[best] = true;
		s = redact_secret(s, secrets[best]);
	}
	free(done);
	char *u = redact_urls(s);
	free(s);
	char *k = redact_keyvalues(u);
	free(u);
	return k;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *redact_url_password(const char *url)
{
	const char *sep = strstr(url, "://");
	if (!sep)
		return NULL;
	const char *auth = sep + 3, *end = auth, *at = NULL;
	while (!authority_end(*end))
		end++;
	for (const char *q = auth; q < end; q++)
		if (*q == '@')
			at = q;
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon || colon + 1 == at)
		return NULL;
	char *out = xmalloc((size_t)(at - colon));
	size_t o = 0;
	for (const char *q = colon + 1; q < at; q++) {
		if (*q == '%' && q + 2 < at && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
			out[o++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
			q += 2;
		} else {
			out[o++] = *q;
		}
	}
	out[o] = '\0';
	return out;
}
