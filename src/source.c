/* Choosing the migration source the configuration names. */
#include "mtr/source.h"
#include "mtr/source_alembic.h"
#include "mtr/source_cmd.h"
#include "mtr/source_sql.h"

bool source_open(const struct config *cfg, struct source *src, char *err, size_t errlen)
{
	if (cfg->sql_dir)
		return source_sql_open(cfg, src, err, errlen);
	if (cfg->alembic_ini)
		return source_alembic_open(cfg, src, err, errlen);
	return source_cmd_open(cfg, src, err, errlen);
}
