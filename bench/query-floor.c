/* The floor of applying one SQL file with libpq: the file read whole into one buffer (exactly
 * its size, the one copy a client must hold) and sent with PQexec, nothing else. Its peak
 * resident set is what bench/sql-memory.sh holds the tool's against: libpq itself keeps the
 * query twice while it sends it (its output buffer, and the text it keeps for error reports).
 * Usage: query-floor CONNINFO FILE; exit 0 when the server accepted the text. */
#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: query-floor CONNINFO FILE\n");
		return 2;
	}
	FILE *f = fopen(argv[2], "rb");
	if (!f || fseek(f, 0, SEEK_END) != 0) {
		perror(argv[2]);
		return 1;
	}
	long size = ftell(f);
	char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
	if (!text || fseek(f, 0, SEEK_SET) != 0 || fread(text, 1, (size_t)size, f) != (size_t)size) {
		perror(argv[2]);
		return 1;
	}
	text[size] = '\0';
	fclose(f);
	PGconn *conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	PGresult *res = PQexec(conn, text);
	ExecStatusType st = PQresultStatus(res);
	int code = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : 1;
	if (code)
		fprintf(stderr, "%s", PQerrorMessage(conn));
	PQclear(res);
	PQfinish(conn);
	free(text);
	return code;
}
