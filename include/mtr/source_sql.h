/* Native SQL migrations: DIR/<version>_<name>.sql, one transaction each, a history table. */
#ifndef MTR_SOURCE_SQL_H
#define MTR_SOURCE_SQL_H

#include "mtr/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct source;

/* Validates the SQL options (--history-table, --baseline, --repair-failed); files are read
 * at plan time. False with err naming the option. */
bool source_sql_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

/* Parses a migration file name: "<digits>_<name>.sql". Returns 1 and fills *version and
 * name (up to namelen) when it matches, 0 when it does not, -1 when the digits do not fit
 * 64 bits. For unit tests and the loader. */
int source_sql_parse_name(const char *file, uint64_t *version, char *name, size_t namelen);

/* Whether the file asks to run outside a transaction (its first line is the directive). */
bool source_sql_no_transaction(const char *text);

#endif
