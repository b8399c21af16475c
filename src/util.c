/* Allocation that cannot fail, monotonic time, small string helpers. */
#include "mtr/util.h"
#include "mtr/fileio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static void out_of_memory(size_t n)
{
	/* Not through the logger: it allocates. */
	static const char msg[] = "{\"level\":\"fatal\",\"event\":\"oom\",\"msg\":\"out of memory\"}\n";
	(void)n;
	if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
		/* nothing left to try */
	}
	_exit(70);
}

void die_oom(void)
{
	out_of_memory(0);
	_exit(70); /* not reached */
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		out_of_memory(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		out_of_memory(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		out_of_memory(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory(0);
	char *p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int poll_ms_until(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ms();
	return left > 0 ? (int)(left < INT32_MAX ? left : INT32_MAX) : 0;
}

void set_err(char *err, size_t len, const char *fmt, ...)
{
	if (!err || len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

char *read_secret_file(const char *path)
{
	size_t len;
	char *buf = file_read(path, 1u << 20, &len); /* a secret is not a megabyte */
	if (!buf)
		return NULL;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
			   buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	return buf;
}

int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void utc_format(int64_t epoch_ms, enum utc_style style, char *buf, size_t len)
{
	time_t secs = (time_t)(epoch_ms / 1000);
	struct tm tm;
	if (!gmtime_r(&secs, &tm)) {
		snprintf(buf, len, "?");
		return;
	}
	size_t n = style == UTC_COMPACT	   ? strftime(buf, len, "%Y%m%dT%H%M%SZ", &tm)
		   : style == UTC_COMPACT_MS ? strftime(buf, len, "%Y%m%dT%H%M%S", &tm)
					     : strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (style == UTC_ISO_MS || style == UTC_COMPACT_MS)
		snprintf(buf + n, len - n, ".%03dZ", (int)(epoch_ms % 1000));
	else if (style == UTC_ISO)
		snprintf(buf + n, len - n, "Z");
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
size_t utf8_char_len(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	if (s[0] < 0x80)
		return 1;
	size_t n;
	unsigned min;
	unsigned cp;
	if ((s[0] & 0xE0) == 0xC0) { n = 2; cp = s[0] & 0x1F; min = 0x80; }
	else if ((s[0] & 0xF0) == 0xE0) { n = 3; cp = s[0] & 0x0F; min = 0x800; }
	else if ((s[0] & 0xF8) == 0xF0) { n = 4; cp = s[0] & 0x07; min = 0x10000; }
	else return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

uint64_t random_u64(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v)
		return v;
	/* Before the kernel's pool is ready (early boot only): mix what differs between
	 * processes, and a counter so that two calls never agree. */
	static uint64_t counter;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	v = (uint64_t)getpid() << 32 ^ (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^ ++counter;
	return fnv1a(&v, sizeof v, FNV_OFFSET);
}

uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
	for (const unsigned char *p = data; len--; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h;
}
