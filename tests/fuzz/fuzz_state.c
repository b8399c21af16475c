/* Fuzz target: files read back from an earlier start: the failure state (--state-dir) and the
 * status file (--health). */
#include "fuzz.h"
#include "mtr/breaker.h"
#include "mtr/status.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size);
	struct failure_memory m;
	memset(&m, 0xa5, sizeof m);
	if (breaker_parse_state(text, &m) && (m.count < 1 || strlen(m.signature) >= sizeof m.signature))
		abort();
	char state[64];
	long pid = -1;
	bool has = status_parse(text, state, sizeof state, &pid);
	if (pid < 0 || strlen(state) >= sizeof state || (!has && state[0]))
		abort();
	free(text);
	return 0;
}
