/* No restart storms: which failures are transient, the memory of the last failure across
 * restarts, and the --on-failure policy (exit with a growing pause, or hold). */
#ifndef MTR_BREAKER_H
#define MTR_BREAKER_H

#include "mtr/config.h"
#include "mtr/look.h"
#include "mtr/pg.h"
#include "mtr/signals.h"

#include <stdbool.h>
#include <stdint.h>

/* What a failed run was: enough to tell the same failure again after a restart. */
struct failure {
	int code;              /* the exit code */
	const char *phase;     /* "wait", "lock", "check", "migrate", … (static) */
	bool transient;        /* worth retrying as it is */
	char sqlstate[6];
	char revision[64];     /* revision, version or file, when one is to blame */
	char fingerprint[17];  /* of the migration set, when it was read */
	char error[1024];      /* one line for the status file and reminders */
	char message[512];     /* the underlying error (the database's, the command's) */
	char file[256];        /* the migration file to blame, when known */
};

enum failure_class { FAILURE_TRANSIENT, FAILURE_PERMANENT };

/* One function for the whole product: exit code plus SQLSTATE (may be NULL/empty) to class.
 * 69 and 75 are transient (not ready, a retry budget ran out), as are SQLSTATE classes 08
 * and 53, 57P01-57P03, 40001, 40P01 and 55P03; 64, 65, 70, 73, 77 and SQL errors are not. */
enum failure_class breaker_classify(int code, const char *sqlstate);

/* The failure's signature: code, phase, SQLSTATE, revision and migration-set fingerprint. */
void breaker_signature(const struct failure *f, char *out, size_t len);

/* The remembered last failure. */
struct failure_memory {
	char signature[200];
	long count;          /* consecutive runs that ended with it */
	long long first_ms;  /* wall clock, ms since the epoch */
	long long last_ms;
};

/* The pause before exiting after the n-th consecutive run that ended with one permanent
 * failure (n >= 1): min(cap, base * 2^n), so 2, 4, 8 … times the base. */
int64_t breaker_pause(long n, int64_t base_ms, int64_t cap_ms);

/* Records f (count grows when the signature is the one remembered) in --state-dir, else in a
 * one-row table of ours in the database when it is reachable; m receives what is now
 * remembered (count 1 when nothing was, or it could not be read). */
void breaker_record(const struct config *cfg, const struct pg_target *t, const struct failure *f,
		    struct failure_memory *m);

/* Adds "is there a failure memory table" to the first look (look.h); returns its column, or
 * 0 when the memory is a file (--state-dir). */
int breaker_look(const struct config *cfg, struct look *l);

/* Forgets the last failure after a success (conn: open connection, may be NULL). l and col:
 * the first look's answer (breaker_look), so that a database without the table costs no
 * round trip; when it was not answered the catalog is asked. */
void breaker_clear(const struct config *cfg, PGconn *conn, const struct look *l, int col);

/* Parses the state file's text; false when it is not a state record. For tests. */
bool breaker_parse_state(const char *text, struct failure_memory *m);

#endif
