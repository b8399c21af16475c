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

/* The app could not replace us: logged with the fix, and 126 or 127 returned. */
static int exec_failed(const char *cmd, const char *argv0, int e)
{
	int code = (e == ENOENT || e == ENOTDIR) ? MTR_EXIT_NOTFOUND : MTR_EXIT_NOEXEC;
	const char *hint = code == MTR_EXIT_NOTFOUND
				   ? "check the command's name and PATH inside the image"
				   : e == ENOEXEC ? "it is not a binary and has no #! line; no shell is used"
				   : "check the file's execute permission and its #! line";
	log_event(LOG_ERROR, "run.failed",
		  LOG_FIELDS(LF_S("command", cmd), LF_S("error", strerror(e)), LF_I("exit_code", code)),
		  "cannot start the app '%s': %s; %s", argv0, strerror(e), hint);
	return code;
}

int run_exec(char *const *argv, const struct user_ids *user, const struct sigstate *sigs)
{
	char *cmd = argv_join(argv);
	log_event(LOG_INFO, "run.exec", LOG_FIELDS(LF_S("command", cmd)), "starting the app");
	if (user && (setenv("HOME", user->home, 1) != 0 || !user_become(user))) {
		int e = errno;
		log_event(LOG_ERROR, "run.failed",
			  LOG_FIELDS(LF_S("command", cmd), LF_S("error", strerror(e)),
				     LF_I("exit_code", MTR_EXIT_NOEXEC)),
			  "cannot switch to --user for the app '%s': %s", argv[0], strerror(e));
		free(cmd);
		return MTR_EXIT_NOEXEC;
	}
	signals_restore(sigs);
	proc_execvpe(argv[0], argv, environ);
	int e = errno;
	/* Back to our own signal handling for the rest of the exit path. */
	struct sigstate again;
	signals_block(&again);
	int code = exec_failed(cmd, argv[0], e);
	free(cmd);
	return code;
}
