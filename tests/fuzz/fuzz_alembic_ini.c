/* Fuzz target: alembic.ini as Alembic's ConfigParser reads it, down to the revision directories. */
#include "fuzz.h"
#include "mtr/source_alembic.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size);
	char **dirs, err[512] = "";
	size_t ndirs;
	bool recursive;
	if (alembic_ini_locate(text, "alembic.ini", "/nonexistent/project", &dirs, &ndirs, &recursive,
			       err, sizeof err)) {
		if (ndirs == 0)
			abort(); /* a located project has somewhere to look */
		for (size_t i = 0; i < ndirs; i++) {
			if (dirs[i][0] != '/')
				abort(); /* relative locations are made absolute */
			free(dirs[i]);
		}
		free(dirs);
	} else if (!err[0]) {
		abort();
	}
	free(text);
	return 0;
}
