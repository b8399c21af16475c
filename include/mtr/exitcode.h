/* Exit codes: part of the command-line API, documented in README. */
#ifndef MTR_EXITCODE_H
#define MTR_EXITCODE_H

enum mtr_exit {
	MTR_EXIT_OK = 0,
	MTR_EXIT_USAGE = 64,        /* usage or configuration error */
	MTR_EXIT_INCONSISTENT = 65, /* migration chain or database state refused */
	MTR_EXIT_UNAVAILABLE = 69,  /* database not ready in time, or does not exist */
	MTR_EXIT_MIGRATION = 70,    /* a migration failed */
	MTR_EXIT_BACKUP = 73,       /* backup failed */
	MTR_EXIT_TEMPFAIL = 75,     /* a transient failure outlasted the retry budget */
	MTR_EXIT_AUTH = 77,         /* authentication failed */
	MTR_EXIT_NOEXEC = 126,      /* app found but not executable */
	MTR_EXIT_NOTFOUND = 127,    /* app not found */
	MTR_EXIT_SIGNAL_BASE = 128  /* 128+n: killed or stopped by signal n */
};

#endif
