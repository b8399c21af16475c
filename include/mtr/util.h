/* Allocation that cannot fail, monotonic time, small string helpers. */
#ifndef MTR_UTIL_H
#define MTR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTR_MUST_CHECK __attribute__((warn_unused_result))

/* Allocation failure is fatal here, and only here: callers never test for NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* What the x* functions do when memory runs out, for a library's allocation that failed. */
void die_oom(void) __attribute__((noreturn));
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* FNV-1a 64 of len bytes, continuing from h (start with FNV_OFFSET). */
#define FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t fnv1a(const void *data, size_t len, uint64_t h);

/* Milliseconds on the monotonic clock. */
int64_t now_ms(void);
/* Milliseconds to a deadline (now_ms() time) for poll(): -1 for none (deadline < 0), 0 once it
 * passed. */
int poll_ms_until(int64_t deadline);
/* Milliseconds since the epoch (the real-time clock). */
int64_t wall_ms(void);

/* The one time formatter, UTC: UTC_ISO "2026-11-21T10:00:00Z", UTC_ISO_MS
 * "2026-11-21T10:00:00.123Z", UTC_COMPACT "20261121T100000Z" and UTC_COMPACT_MS
 * "20261121T100000.123Z" (file names). */
enum utc_style { UTC_ISO, UTC_ISO_MS, UTC_COMPACT, UTC_COMPACT_MS };
#define UTC_LEN 32 /* enough for every style */
void utc_format(int64_t epoch_ms, enum utc_style style, char *buf, size_t len);

/* Length of the valid UTF-8 sequence at text (1-4), or 0 if it is not one (also an overlong
 * form, a surrogate, or a NUL-terminated string cut short). */
size_t utf8_char_len(const char *text);

/* 64 random bits from the kernel (getrandom): replicas that are all PID 1 and start in the
 * same millisecond still draw different jitter and temporary names. */
uint64_t random_u64(void);

/* Copies at most len-1 bytes of a formatted message into err (for the err/len error style). */
void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads a whole small file into a new NUL-terminated string (caller frees) with trailing
 * whitespace (newlines) removed. Returns NULL and sets errno on failure. */
char *read_secret_file(const char *path) MTR_MUST_CHECK;

#endif
