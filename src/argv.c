/* Shell-like splitting of a command string into argv, without a shell. */
#include "mtr/argv.h"
#include "mtr/strbuf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_operator(const char *w)
{
	static const char *const ops[] = {"&&", "||", "|", ";", "<", ">", ">>", "&", "2>", "2>&1"};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(w, ops[i]) == 0)
			return true;
	return false;
}

bool argv_split(const char *s, char ***out, int *argc, char *err, size_t errlen)
{
	char **v = NULL;
	int n = 0;
	const char *p = s;
	*out = NULL;
	*argc = 0;
	for (;;) {
		while (is_blank(*p))
			p++;
		if (!*p)
			break;
		struct strbuf w = STRBUF_INIT;
		bool quoted = false;
		const char *start = p, *op = NULL; /* op: the first unquoted operator character */
		sb_add(&w, "", 0); /* a word may be empty ('') */
		while (*p && !is_blank(*p)) {
			if (*p == '\'') {
				const char *q = strchr(p + 1, '\'');
				if (!q) {
					set_err(err, errlen, "unterminated ' starting at character %d",
						(int)(p - s) + 1);
					goto fail_word;
				}
				for (p++; p < q; p++)
					sb_addc(&w, *p);
				p++;
				quoted = true;
			} else if (*p == '"') {
				const char *open = p++;
				while (*p && *p != '"') {
					if (*p == '\\' && p[1] && strchr("\"\\$`\n", p[1]))
						p++;
					sb_addc(&w, *p++);
				}
				if (!*p) {
					set_err(err, errlen, "unterminated \" starting at character %d",
						(int)(open - s) + 1);
					goto fail_word;
				}
				p++;
				quoted = true;
			} else if (*p == '\\') {
				if (!p[1]) {
					set_err(err, errlen, "trailing backslash at character %d",
						(int)(p - s) + 1);
					goto fail_word;
				}
				sb_addc(&w, p[1]);
				p += 2;
				quoted = true;
			} else {
				if (!op && strchr(";&|<>", *p))
					op = p;
				sb_addc(&w, *p++);
			}
		}
		if (!quoted && is_operator(w.s)) {
			set_err(err, errlen,
				"'%s' at character %d is a shell operator, but no shell runs this "
				"command; quote it to pass it as an argument, or run sh -c explicitly",
				w.s, (int)(start - s) + 1);
			goto fail_word;
		}
		/* A shell would split "head;" or "a&&b" at the operator: refused the same way. */
		if (op) {
			set_err(err, errlen,
				"'%s' at character %d has the shell operator '%c' in it, but no shell runs "
				"this command; quote the word to pass it as it is, or run sh -c explicitly",
				w.s, (int)(op - s) + 1, *op);
			goto fail_word;
		}
		v = xrealloc(v, (size_t)(n + 2) * sizeof *v);
		v[n++] = sb_take(&w);
		v[n] = NULL;
		continue;
	fail_word:
		sb_free(&w);
		goto fail;
	}
	if (n == 0) {
		set_err(err, errlen, "expected a command, got an empty string");
		goto fail;
	}
	*out = v;
	*argc = n;
	return true;
fail:
	argv_free(v);
	return false;
}

void argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

static bool plain_word(const char *w)
{
	if (!*w)
		return false;
	for (; *w; w++)
		if (!(strchr("-_./=:,+@%", *w) || (*w >= '0' && *w <= '9') ||
		      (*w >= 'a' && *w <= 'z') || (*w >= 'A' && *w <= 'Z')))
			return false;
	return true;
}

char *argv_join(char *const *argv)
{
	size_t cap = 1;
	for (char *const *a = argv; *a; a++)
		cap += strlen(*a) * 4 + 3;
	char *out = xmalloc(cap);
	size_t o = 0;
	for (char *const *a = argv; *a; a++) {
		if (a != argv)
			out[o++] = ' ';
		if (plain_word(*a)) {
			size_t n = strlen(*a);
			memcpy(out + o, *a, n);
			o += n;
			continue;
		}
		/* '…' with each ' written as '\'' — the form a user can paste into a shell. */
		out[o++] = '\'';
		for (const char *c = *a; *c; c++) {
			if (*c == '\'') {
				memcpy(out + o, "'\\''", 4);
				o += 4;
			} else {
				out[o++] = *c;
			}
		}
		out[o++] = '\'';
	}
	out[o] = '\0';
	return out;
}
