/* Phase 8: replace ourselves with the app. */
#ifndef MTR_RUN_H
#define MTR_RUN_H

#include "mtr/signals.h"
#include "mtr/user.h"

/* Executes argv (searched on PATH, no shell) with the environment intact and the original
 * signal state, as user when it is not NULL (HOME set to its home). Returns only on failure:
 * 127 when the command was not found, 126 when it cannot be executed (as a shell) or the
 * user could not be taken on. */
int run_exec(char *const *argv, const struct user_ids *user, const struct sigstate *sigs);

#endif
