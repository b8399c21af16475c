/* Phase 8: replace ourselves with the app. */
#ifndef MTR_RUN_H
#define MTR_RUN_H

#include "mtr/signals.h"

/* Executes argv (searched on PATH, no shell) with the environment intact and the original signal state. Returns only on
 * failure: 127 when the command was not found, 126 when it cannot be executed (as a shell). */
int run_exec(char *const *argv, const struct sigstate *sigs);

#endif
