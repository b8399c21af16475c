/* Alembic projects: read the ini and every revision file as text, check the graph and the
 * database's alembic_version, and start Python only when something is pending. */
#ifndef MTR_SOURCE_ALEMBIC_H
#define MTR_SOURCE_ALEMBIC_H

#include "mtr/config.h"

#include <stdbool.h>
#include <stddef.h>

struct source;

/* Reads --alembic-ini (script_location, version_locations … as alembic_locate says, relative
 * paths from the migration command's directory); false with err naming the option when the
 * project cannot be located. Revision files are read at plan time. */
bool source_alembic_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

#endif
