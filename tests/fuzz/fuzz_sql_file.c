/* Fuzz target: SQL migration file names, the no-transaction directive and error positions.
 * The input is a file name, a newline, then the file's text. */
#include "fuzz.h"
#include "mtr/source_sql.h"
#include "mtr/sql_runner.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_str(data, size);
	char *nl = strchr(in, '\n');
	const char *text = nl ? nl + 1 : "";
	if (nl)
		*nl = '\0';
	const char *file = in;

	uint64_t version = 0;
	char name[256];
	int m = source_sql_parse_name(file, &version, name, sizeof name);
	if (m == 1) {
		/* The version is the leading digits; the name what lies between '_' and ".sql". */
		char digits[32];
		snprintf(digits, sizeof digits, "%" PRIu64, version);
		size_t nd = strspn(file, "0123456789");
		const char *lead = file;
		while (*lead == '0' && lead + 1 < file + nd)
			lead++;
		size_t want = strlen(file) - nd - 5; /* <digits>_<name>.sql */
		if (want > sizeof name - 1)
			want = sizeof name - 1;
		if (strncmp(lead, digits, strlen(digits)) != 0 ||
		    (size_t)(file + nd - lead) != strlen(digits) || file[nd] != '_' ||
		    strlen(name) != want || strncmp(file + nd + 1, name, want) != 0)
			abort();
		char small[4];
		if (source_sql_parse_name(file, &version, small, sizeof small) != 1 || strlen(small) > 3)
			abort();
	} else if (m != 0 && m != -1) {
		abort();
	}

	(void)source_sql_no_transaction(text);
	long len = (long)strlen(text);
	const long positions[] = {-1, 0, 1, 2, len / 2, len, len + 1, len + 100};
	for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
		long line = 0, col = 0;
		sqlr_position(text, positions[i], &line, &col);
		if (line < 1 || col < 1 || line > len + 1 || col > len + 1)
			abort();
	}
	free(in);
	return 0;
}
