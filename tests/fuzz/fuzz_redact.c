/* Fuzz target: hiding passwords. The input is a text (a database URL, a conninfo string, a
 * line of a tool's output), then NUL-separated known secrets. No known secret may survive
 * redaction; the URL's password and a malformed URL's masked error are taken apart; a JSON
 * log line must stay valid JSON and a text one must carry no control character. An HTTP URL as
 * logs show it never carries its query string (a presigned URL's credential). */
#include "fuzz.h"
#include "mtr/http.h"
#include "mtr/log.h"
#include "mtr/pg.h"
#include "mtr/redact.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_SECRETS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *parts[1 + MAX_SECRETS];
	size_t n = fuzz_parts(data, size, parts, 1 + MAX_SECRETS);
	const char *text = parts[0];
	const char *const *secrets = (const char *const *)parts + 1;
	size_t nsecrets = n - 1;

	char *out = redact(text, secrets, nsecrets);
	for (size_t i = 0; i < nsecrets; i++) {
		/* A secret made of asterisks may meet the mask itself; anything else must be gone. */
		if (secrets[i][0] && !strchr(secrets[i], '*') && strstr(out, secrets[i])) {
			fprintf(stderr, "secret '%s' survives in '%s'\n", secrets[i], out);
			abort();
		}
	}
	free(out);

	char *pw = redact_url_password(text);
	free(pw);

	char why[256];
	(void)http_check_url(text, why, sizeof why);
	const char *q = strchr(text, '?');
	for (int hide = 0; hide < 2; hide++) {
		char *pub = http_url_public(text, hide);
		size_t qlen = q ? strcspn(q, "#") : 0;
		if (q && qlen > 1 && !memchr(q, '*', qlen) && memmem(pub, strlen(pub), q, qlen)) {
			fprintf(stderr, "the query string survives in '%s'\n", pub);
			abort();
		}
		free(pub);
	}

	struct pg_target t = {.url = text, .password = NULL};
	struct pg_error err;
	if (pg_check_target(&t, &err) != PG_OK && !err.msg[0])
		abort();

	struct log_field fields[] = {LF_S("line", text), LF_S("stream", nsecrets ? secrets[0] : NULL),
				     LF_I("attempt", size), LF_END};
	char *json = log_format_line(LOG_FORMAT_JSON, 1700000000123LL, LOG_INFO, "migrate.output", fields,
				     text);
	cJSON *o = cJSON_Parse(json);
	if (!o || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "line"))) {
		fprintf(stderr, "not a JSON object: %s\n", json);
		abort();
	}
	cJSON_Delete(o);
	free(json);
	char *line = log_format_line(LOG_FORMAT_TEXT, 1700000000123LL, LOG_WARN, "migrate.output", fields,
				     text);
	for (const unsigned char *c = (const unsigned char *)line; *c; c++)
		if (*c < 0x20 || *c == 0x7f || (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f)) {
			fprintf(stderr, "a control character reaches the terminal: %s\n", line);
			abort();
		}
	free(line);
	fuzz_parts_free(parts, n);
	return 0;
}
