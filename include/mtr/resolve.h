/* Host names to addresses with a deadline and a stop descriptor (libpq's own lookup has
 * neither). */
#ifndef MTR_RESOLVE_H
#define MTR_RESOLVE_H

#include "mtr/util.h"

#include <stddef.h>
#include <stdint.h>

#define RESOLVE_MAX 16 /* addresses kept per name, in the resolver's order */

enum resolve_status {
	RESOLVE_OK,
	RESOLVE_FAILED,      /* the name is unknown, or the lookup failed: err says why */
	RESOLVE_TIMEOUT,     /* no answer within the time given */
	RESOLVE_INTERRUPTED  /* stop_fd turned readable */
};

struct resolve_result {
	size_t n;
	char addr[RESOLVE_MAX][64]; /* numeric: "10.0.0.5", "fd00::5" */
};

/* Whether host is already an IPv4 or IPv6 address (nothing to look up). */
bool resolve_is_numeric(const char *host);

/* Looks host up (TCP, IPv4 and IPv6, as libpq does) on a thread of its own, waiting at most
 * timeout_ms and not past stop_fd (if >= 0) turning readable; a lookup given up on finishes
 * in the background and is then discarded. err gets the resolver's message. */
enum resolve_status resolve_host(const char *host, int64_t timeout_ms, int stop_fd,
				 struct resolve_result *out, char *err, size_t errlen) MTR_MUST_CHECK;

#endif
