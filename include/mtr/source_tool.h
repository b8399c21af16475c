/* Another migration tool by its preset (--tool NAME): its command with the fast path, and its
 * native reader where the tool's format is plain. */
#ifndef MTR_SOURCE_TOOL_H
#define MTR_SOURCE_TOOL_H

#include "mtr/config.h"

#include <stdbool.h>

struct source;

/* Opens the preset cfg->tool names; false with err (naming --tool and the known names). */
bool source_tool_open(const struct config *cfg, struct source *src, char *err, size_t errlen) MTR_MUST_CHECK;

#endif
