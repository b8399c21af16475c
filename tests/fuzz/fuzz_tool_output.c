/* Fuzz target: what other programs tell us: the migration tool's output lines (SQLSTATE, lost
 * connection), pg_dump --version, and libpq's connection failure messages. */
#include "fuzz.h"
#include "mtr/backup.h"
#include "mtr/pg.h"
#include "mtr/source_cmd.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_str(data, size);
	const char *state = source_cmd_line_sqlstate(line);
	if (state && strlen(state) != 5)
		abort();
	(void)source_cmd_line_lost_connection(line);
	if (backup_parse_version(line) < -1)
		abort();
	enum pg_status st = pg_classify_connect_error(line, false);
	if (st != PG_TRANSIENT && st != PG_AUTH && st != PG_NO_DATABASE && st != PG_CONFIG)
		abort();
	(void)pg_sqlstate_is_transient(line);
	free(line);
	return 0;
}
