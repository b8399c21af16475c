/* Alembic revision files read as text: the module-level assignments that Python would execute,
 * evaluated as ast.literal_eval evaluates them, without running any Python. */
#ifndef MTR_ALEMBIC_REV_H
#define MTR_ALEMBIC_REV_H

#include "mtr/chain.h"
#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>

/* Reads revision, down_revision, branch_labels and depends_on from a revision file's text (len
 * bytes, NUL-terminated) as Alembic sees them once Python has run the file: the last top-level
 * assignment of each counts, in the plain and the annotated (revision: str = "…") forms;
 * values are literals (strings with implicit concatenation, None, tuples with or without
 * parentheses, lists), or module-level names bound to literals (REV = '1a2b'; revision = REV).
 * A branch_labels that is not a literal marks r as labelled with names unknown. Without a
 * revision, a file named like "1a2b3c.py" has that id (Alembic's legacy rule).
 * file (kept in r) names it in messages; its last component is the file name. False with err
 * (file:line) when a value is not a literal, is assigned in a block, has the wrong type, or the
 * text is not Python that could run. r's strings are owned by r either way (rev_free or
 * chain_add). */
bool alembic_rev_parse(const char *text, size_t len, const char *file, struct rev *r, char *err,
		       size_t errlen) MTR_MUST_CHECK;

#endif
