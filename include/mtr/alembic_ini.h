/* alembic.ini read as Python's ConfigParser reads it for Alembic: strict (a duplicate section
 * or option is an error), [DEFAULT] beneath every section, keys case-insensitive, values over
 * indented continuation lines, %(name)s interpolation with %(here)s. */
#ifndef MTR_ALEMBIC_INI_H
#define MTR_ALEMBIC_INI_H

#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>

struct ini_opt {
	char *key; /* lowercased, as ConfigParser's optionxform */
	char *value;
	int line;
};

struct ini_section {
	char *name; /* as written between the brackets */
	struct ini_opt *opts;
	size_t n;
};

struct ini {
	struct ini_section defaults; /* [DEFAULT], with here */
	struct ini_section *sections;
	size_t n;
};

/* Bounds on expanding one value, beyond which it is refused: ConfigParser's own depth limit,
 * and budgets of bytes and of references (a value may name others that name others …). */
#define INI_MAX_DEPTH 10
#define INI_MAX_VALUE 65536
#define INI_MAX_REFS 100000

/* Parses text (len bytes) with here (the ini's directory) as [DEFAULT]'s here. False with err
 * ("line N: …", ConfigParser's reason) and nothing to free when ConfigParser would refuse it. */
bool ini_parse(const char *text, size_t len, const char *here, struct ini *ini, char *err,
	       size_t errlen) MTR_MUST_CHECK;
void ini_free(struct ini *ini);

bool ini_has_section(const struct ini *ini, const char *section);

/* The value of key in section (or [DEFAULT]), interpolated as ConfigParser.get does. Returns
 * 1 with *out (caller frees), 0 when the key is absent, -1 with err when the interpolation
 * fails (a missing reference, a bad %, a loop, or past the bounds above). */
int ini_get(const struct ini *ini, const char *section, const char *key, char **out, char *err,
	    size_t errlen) MTR_MUST_CHECK;

#endif
