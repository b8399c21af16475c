/* Shell-like splitting of a command string into argv, without a shell. */
#ifndef MTR_ARGV_H
#define MTR_ARGV_H

#include "mtr/util.h"

#include <stddef.h>

/* Splits s as a POSIX shell would split words: blanks separate, '…' is literal, "…" allows
 * \" \\ \$ \`, a backslash outside quotes escapes the next character. No expansion of any
 * kind. An unquoted shell operator (&&, ||, |, ;, <, >) is refused, since no shell will run
 * it. On success *out is a new NULL-terminated vector (free with argv_free) and *argc its
 * length; on failure returns false with err naming the problem and its position. */
bool argv_split(const char *s, char ***out, int *argc, char *err, size_t errlen) MTR_MUST_CHECK;
void argv_free(char **argv);

/* One string for logs: words joined by spaces, quoted where needed (caller frees). */
char *argv_join(char *const *argv);

#endif
