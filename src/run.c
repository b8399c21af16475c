/* Phase 8: replace ourselves with the app. */
#include "mtr/run.h"
#include "mtr/argv.h"
#include "mtr/exitcode.h"
#include "mtr/log.h"
#include "mtr/proc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int run_exec(char *const *argv, const struct sigstate *sigs)
{
	char *cmd = argv_join(argv);
	log_event(LOG_INFO, "run.exec", LOG_FIELDS(LF_S("command", cmd)), "starting the app");
	signals_restore(sigs);
	proc_execvpe(argv[0], argv, environ);
	int e = errno;
	/* Back to our own signal handling for the rest of the exit path. */
	struct sigstate again;
	signals_block(&again);
	int code = (e == ENOENT || e == ENOTDIR) ? MTR_EXIT_NOTFOUND : MTR_EXIT_NOEXEC;
	const char *hint = code == MTR_EXIT_NOTFOUND
				   ? "check the command's name and PATH inside the image"
				   : e == ENOEXEC ? "it is not a binary and has no #! line; no shell is used"
				   : "check the file's execute permission and its #! line";
	log_event(LOG_ERROR, "run.failed",
		  LOG_FIELDS(LF_S("command", cmd), LF_S("error", strerror(e)), LF_I("exit_code", code)),
		  "cannot start the app '%s': %s; %s", argv[0], strerror(e), hint);
	free(cmd);
	return code;
}
