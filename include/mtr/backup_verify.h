/* Verification while dumping: pg_restore --file=/dev/null reads the dump as it is written, so
 * that the verdict comes moments after pg_dump ends instead of after a second read of the file. */
#ifndef MTR_BACKUP_VERIFY_H
#define MTR_BACKUP_VERIFY_H

#include "mtr/signals.h"
#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backup_verify;

enum backup_verdict {
	VERIFY_GOOD,      /* pg_restore read the whole dump */
	VERIFY_BAD,       /* it did not: err says why */
	VERIFY_ABANDONED, /* the dump was not complete, or a stop signal came: no verdict */
};

struct backup_verify_result {
	enum backup_verdict verdict;
	char err[1024];
	int64_t wait_ms; /* from the end of the dump to the verdict */
};

/* Starts pg_restore (looked up on PATH; env is its environment, the caller's until
 * backup_verify_finish) reading the dump from its stdin. With file >= 0, a thread of ours reads
 * that descriptor from its start as the file grows (looking every 10 ms), until
 * backup_verify_finish says it is complete; the verifier owns and closes file. With file < 0,
 * the caller writes the dump to backup_verify_input(). Returns the verifier, which
 * backup_verify_finish ends and frees, or NULL with err saying why (file is closed then too). */
struct backup_verify *backup_verify_start(const char *pg_restore, char **env,
					  const struct sigstate *sigs, int file, char *err,
					  size_t errlen) MTR_MUST_CHECK;

/* pg_restore's stdin, for a caller that writes the dump itself (file < 0); it stays the
 * verifier's, which closes it in backup_verify_finish: write nothing to it after that. */
int backup_verify_input(const struct backup_verify *v);

/* The dump will not be complete: pg_restore is killed now, so that a writer blocked on its
 * full pipe is let go (EPIPE). backup_verify_finish still ends it. */
void backup_verify_abandon(struct backup_verify *v);

/* The dump's writer is done: complete (all of the dump is written) lets pg_restore read it to
 * its end and waits for its verdict, at most timeout_ms (< 0: no limit; then pg_restore is
 * killed and the verdict is BAD); else pg_restore is killed, and the verdict is ABANDONED
 * unless it had already failed on its own. A stop signal (left pending on stop_fd) abandons
 * it too: true if that happened. Frees v; *res says what became of it. */
bool backup_verify_finish(struct backup_verify *v, bool complete, int64_t timeout_ms, int stop_fd,
			  struct backup_verify_result *res) MTR_MUST_CHECK;

#endif
