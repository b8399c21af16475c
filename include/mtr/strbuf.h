/* The one growable string: append bytes, characters or formatted text; take the result. */
#ifndef MTR_STRBUF_H
#define MTR_STRBUF_H

#include <stddef.h>

/* Zero-initialised is empty ({0} or STRBUF_INIT). Once anything was added, s is
 * NUL-terminated; len never counts the NUL. The buffer is owned by the strbuf until taken. */
struct strbuf {
	char *s;
	size_t len, cap;
};
#define STRBUF_INIT {NULL, 0, 0}

void sb_add(struct strbuf *b, const void *data, size_t n);
void sb_adds(struct strbuf *b, const char *s);
void sb_addc(struct strbuf *b, char c);
void sb_addf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the text after the first n bytes (n <= len). */
void sb_truncate(struct strbuf *b, size_t n);
/* The text as a new string, never NULL ("" when nothing was added); the caller frees it and
 * the strbuf is empty again. */
char *sb_take(struct strbuf *b);
void sb_free(struct strbuf *b);

#endif
