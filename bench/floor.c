/* The floor of a no-op start: one libpq connection (PG* variables) and one query. bench/noop.sh
 * builds it against the same libpq as the tool, dynamic and static, and runs it beside us.
 * Usage: floor [QUERY]; without one it asks select pg_is_in_recovery(). */
#include <libpq-fe.h>

int main(int argc, char **argv)
{
	PGconn *conn = PQconnectdb("");
	PGresult *res = PQexec(conn, argc > 1 ? argv[1] : "select pg_is_in_recovery()");
	int ok = PQstatus(conn) == CONNECTION_OK && PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	PQfinish(conn);
	return !ok;
}
