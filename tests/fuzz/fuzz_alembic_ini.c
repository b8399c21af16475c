/* Fuzz target: alembic.ini as Alembic's ConfigParser reads it, down to the revision directories.
 * Where Python is present (MTR_FUZZ_PYTHON), every input is also read by Python's configparser
 * with Alembic's arguments (tests/fuzz/alembic_oracle.py): the [alembic] values Alembic asks for
 * must be the same, and refused when Python refuses them. */
#include "fuzz.h"
#include "oracle.h"
#include "mtr/alembic_ini.h"
#include "mtr/alembic_where.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const KEYS[] = {"script_location", "version_locations", "path_separator",
				   "version_path_separator", "recursive_version_locations", "sourceless",
				   "prepend_sys_path"};

static void mismatch(const char *what, const char *key, const char *ours, const cJSON *py)
{
	char *p = cJSON_PrintUnformatted(py);
	fprintf(stderr, "differs from Python (%s, %s): ours %s, Python %s\n", what, key, ours, p);
	abort();
}

/* Each key against Python's answer (null: absent; {"error": …}: refused). */
static void same_values(const struct ini *ini, const cJSON *values)
{
	for (size_t k = 0; k < sizeof KEYS / sizeof KEYS[0]; k++) {
		const cJSON *py = cJSON_GetObjectItemCaseSensitive(values, KEYS[k]);
		char *v = NULL, err[512];
		int r = ini_get(ini, "alembic", KEYS[k], &v, err, sizeof err);
		bool same = r == 0   ? cJSON_IsNull(py)
			    : r < 0  ? cJSON_IsObject(py)
				     : cJSON_IsString(py) && strcmp(py->valuestring, v) == 0;
		if (!same)
			mismatch("value", KEYS[k], r < 0 ? err : r ? v : "(absent)", py);
		free(v);
	}
}

static void differ(const char *text, size_t len)
{
	cJSON *j = oracle_ask('I', text, len);
	if (!j || oracle_flag(j, "skip")) {
		cJSON_Delete(j);
		return;
	}
	struct ini ini;
	char err[512] = "";
	bool ok = ini_parse(text, len, "/p", &ini, err, sizeof err);
	if (ok != oracle_flag(j, "ok"))
		mismatch("parse", "-", ok ? "read" : err, j);
	if (ok && ini_has_section(&ini, "alembic") != oracle_flag(j, "section"))
		mismatch("section", "alembic", ini_has_section(&ini, "alembic") ? "present" : "absent", j);
	if (ok && ini_has_section(&ini, "alembic"))
		same_values(&ini, cJSON_GetObjectItemCaseSensitive(j, "values"));
	if (ok)
		ini_free(&ini);
	cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size);
	size_t len = strlen(text);
	differ(text, len);
	struct alembic_paths p = {"alembic.ini", "/nonexistent/project", "/nonexistent/cwd", "alembic", NULL};
	struct alembic_where w;
	char err[1024] = "";
	if (alembic_locate(text, len, &p, &w, err, sizeof err)) {
		if (w.ndirs == 0 || !w.script_dir)
			abort(); /* a located project has somewhere to look */
		for (size_t i = 0; i < w.ndirs; i++)
			if (w.dirs[i][0] != '/')
				abort(); /* relative locations are made absolute */
		alembic_where_free(&w);
	} else if (!err[0]) {
		abort();
	}
	free(text);
	return 0;
}
