/* Redaction: URL user-info, key=value passwords, and registered secrets. */
#include "mtr/redact.h"
#include "unit.h"

#include <stdlib.h>

void test_redact(void)
{
	static const char *const secrets[] = {"hunter2", "p@ss word"};
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"postgresql://app:hunter2@db:5432/app", "postgresql://app:***@db:5432/app"},
		{"connecting to postgres://u:xyz@h/d now", "connecting to postgres://u:***@h/d now"},
		{"postgresql://u:p%40ss@h/d", "postgresql://u:***@h/d"},
		{"postgresql://u:a@b@h/d", "postgresql://u:***@h/d"},
		{"postgresql://u@h/d", "postgresql://u@h/d"},
		{"https://example.com/a:b@c", "https://example.com/a:b@c"},
		{"host=db password=s3cret user=app", "host=db password=*** user=app"},
		{"host=db password = 'a b\\'c' user=app", "host=db password = *** user=app"},
		{"PGPASSWORD=abc sh", "PGPASSWORD=*** sh"},
		{"?password=abc&sslmode=require", "?password=***&sslmode=require"},
		{"the password is hunter2!", "the password is ***!"},
		{"p@ss word appears", "*** appears"},
		{"no secret here", "no secret here"},
		{"sqlalchemy.url = postgresql+psycopg2://me:pw@localhost/x",
		 "sqlalchemy.url = postgresql+psycopg2://me:***@localhost/x"},
		{"{\"url\": \"postgresql://a:b@c/d\"}", "{\"url\": \"postgresql://a:***@c/d\"}"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = redact(cases[i].in, secrets, 2);
		CHECK_STR(got, cases[i].want, cases[i].in);
		free(got);
	}

	static const struct {
		const char *url, *want;
	} pw[] = {
		{"postgresql://u:p%40ss%20x@h/d", "p@ss x"},
		{"postgresql://u:plain@h/d", "plain"},
		{"postgresql://u@h/d", NULL},
		{"postgresql://u:@h/d", NULL},
		{"host=x", NULL},
	};
	for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
		char *got = redact_url_password(pw[i].url);
		if (pw[i].want)
			CHECK_STR(got, pw[i].want, pw[i].url);
		else
			CHECK(got == NULL, "%s: got '%s'", pw[i].url, got);
		free(got);
	}
}
