/* Alembic projects: read the ini and every revision file as text, check the graph and the
 * database's alembic_version, and start Python only when something is pending. */
#ifndef MTR_SOURCE_ALEMBIC_H
#define MTR_SOURCE_ALEMBIC_H

#include "mtr/chain.h"
#include "mtr/config.h"

#include <stdbool.h>
#include <stddef.h>

struct source;

/* Reads --alembic-ini (script_location, version_locations …); false with err naming the
 * option when the project cannot be located. Revision files are read at plan time. */
bool source_alembic_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

/* From alembic.ini's text (ini: its path as given, for messages; here: its directory, for
 * %(here)s and relative paths): the directories holding revision files (*dirs, *ndirs; the
 * caller frees each and the vector) and whether to search them recursively. False with err
 * naming the option, and nothing to free, when the file does not say where they are. */
bool alembic_ini_locate(const char *text, const char *ini, const char *here, char ***dirs,
			size_t *ndirs, bool *recursive, char *err, size_t errlen) MTR_MUST_CHECK;

/* Reads revision, down_revision, branch_labels and depends_on from a revision file's text,
 * in the plain and the annotated (revision: str = "…") forms. file is used in messages and
 * kept in r. False with err (file:line) when a value is not a literal or there is no
 * revision. r's strings are owned by r either way (rev_free, or chain_add). */
bool alembic_parse_revision(const char *text, const char *file, struct rev *r, char *err,
			    size_t errlen) MTR_MUST_CHECK;

#endif
