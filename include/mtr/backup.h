/* Phase 6: pg_dump before migrating, to a private file that is verified, then kept or rotated. */
#ifndef MTR_BACKUP_H
#define MTR_BACKUP_H

#include "mtr/signals.h"

#include <libpq-fe.h>
#include <stdint.h>

struct backup_opts {
	const char *dir;        /* created 0700 when missing; NULL: no local copy (upload only) */
	long keep;              /* our backups of this database kept after a new one */
	const char *pg_dump;    /* looked up on PATH */
	const char *pg_restore;
	const char *upload_url; /* also PUT the dump here (NULL: no upload) */
	int64_t stall_ms;       /* pg_dump ended when its dump has not grown for this long, and
				 * pg_restore's verdict given up this long after the dump ended;
				 * pg_dump's --lock-wait-timeout is half of it (0: none of these) */
};

struct backup_result {
	int code;           /* 0, 73, or 128+n when a stop signal ended it */
	int signo;
	char path[4096];    /* the verified backup */
	long long bytes;
	int64_t ms;         /* dump and verification */
	int64_t verify_ms;  /* how long the verdict took after the dump ended */
	char err[2048];     /* what failed and what to do */
	char uploaded[1024]; /* where the upload went (http_url_public), "" if none */
	unsigned upload_attempts;
	bool streamed;      /* the upload ran while pg_dump wrote */
	bool stalled;       /* pg_dump was ended: its dump had not grown for stall_ms */
};

/* The default --backup-dir: /var/backups/migrate-then-run as root, or when it is there and
 * writable for us; else ./backups. */
const char *backup_default_dir(void);

/* Dumps conn's database with pg_dump -Fc (connection settings and password through the
 * environment, never argv) to dir/mtr-DB-YYYYmmddTHHMMSSZ-FROM-to-TO.dump: written 0600 under
 * a temporary name by pg_dump itself (with the data offsets pg_restore -j uses), read
 * completely by pg_restore (to /dev/null) as it is written, fsynced, renamed, then older ones
 * beyond keep removed. Logs backup.progress every 5 s. Returns r->code; on failure nothing
 * partial is left.
 * With upload_url, the dump is also streamed to it by an HTTP PUT as pg_dump writes it (a
 * presigned S3/GCS URL needs the length first: the verified file is sent after the dump);
 * the verification reads the same stream, and the server sees a complete body only once the
 * dump is complete and verified. 5xx answers
 * and connection failures are retried from the local file (without one, by dumping again). */
int backup_run(const struct backup_opts *o, PGconn *conn, const char *from, const char *to,
	       const struct sigstate *sigs, struct backup_result *r);

/* The major version in `pg_dump --version` output, or -1. */
int backup_parse_version(const char *text);

#endif
