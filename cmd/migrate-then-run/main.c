/* argv → config → pipeline → exit code; nothing else. */
#include "mtr/config.h"
#include "mtr/exitcode.h"
#include "mtr/init.h"
#include "mtr/log.h"
#include "mtr/pipeline.h"
#include "mtr/signals.h"
#include "mtr/status.h"
#include "mtr/termlog.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* A closed stdin, stdout or stderr would be taken by the next descriptor we open (a database
 * socket could then receive our logs): park /dev/null there first. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			_exit(MTR_EXIT_USAGE);
}

int main(int argc, char **argv)
{
	ensure_std_fds();
	int code;
	if (init_resume(argc, argv, &code))
		return code;
	struct sigstate sigs;
	signals_block(&sigs);
	log_init(isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON, LOG_INFO);

	struct config cfg;
	char err[512];
	switch (config_parse(&cfg, argc, argv, err, sizeof err)) {
	case CONFIG_HELP:
		config_print_help(stdout);
		code = MTR_EXIT_OK;
		break;
	case CONFIG_VERSION:
		printf("migrate-then-run %s\n", MTR_VERSION);
		code = MTR_EXIT_OK;
		break;
	case CONFIG_HEALTH:
		code = status_health(cfg.status_file);
		break;
	case CONFIG_ERROR:
		if (cfg.log_format >= 0)
			log_init((enum log_format)cfg.log_format, LOG_INFO);
		log_set_schema((enum log_schema)cfg.log_schema);
		log_event(LOG_ERROR, "config.invalid", LOG_FIELDS(LF_I("exit_code", MTR_EXIT_USAGE)),
			  "%s", err);
		code = MTR_EXIT_USAGE;
		termlog_write(cfg.termination_log, code);
		break;
	case CONFIG_OK:
	default:
		log_init((enum log_format)cfg.log_format, (enum log_level)cfg.log_level);
		log_set_schema((enum log_schema)cfg.log_schema);
		code = pipeline_run(&cfg, &sigs);
		termlog_write(cfg.termination_log, code); /* only a failure of ours writes it */
		break;
	}
	config_free(&cfg);
	return code;
}
