/* The phases in order: wait, migrate, run. Decides what is logged, retried, and the exit code. */
#ifndef MTR_PIPELINE_H
#define MTR_PIPELINE_H

#include "mtr/config.h"
#include "mtr/signals.h"

/* Runs the whole job. Returns the process's exit code (enum mtr_exit, or the app's 126/127);
 * on success with an app command it does not return: the app replaces us. */
int pipeline_run(const struct config *cfg, const struct sigstate *sigs);

#endif
