/* The floor of a no-op start: one libpq connection (PG* variables) and one query. bench/noop.sh
 * builds it against the same libpq as the tool, dynamic and static, and runs it beside us. */
#include <libpq-fe.h>

int main(void)
{
	PGconn *conn = PQconnectdb("");
	PGresult *res = PQexec(conn, "select pg_is_in_recovery()");
	int ok = PQstatus(conn) == CONNECTION_OK && PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	PQfinish(conn);
	return !ok;
}
