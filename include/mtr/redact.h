/* Removing passwords from text before it is logged. */
#ifndef MTR_REDACT_H
#define MTR_REDACT_H

#include <stddef.h>

#define REDACTED "***"

/* Returns a new string (caller frees) equal to in with every password hidden:
 * the password of any URL's user-info (scheme://user:PASSWORD@host), the value of
 * password=... / PGPASSWORD=... key-value pairs, and every occurrence of each of the
 * n known secrets. */
char *redact(const char *in, const char *const *secrets, size_t n);

/* Returns the password part of a URL's user-info, percent-decoded (caller frees),
 * or NULL when the URL carries none. */
char *redact_url_password(const char *url);

#endif
