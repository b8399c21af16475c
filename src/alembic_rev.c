/* Alembic revision files read as text: a tokenizer for the shape of Python source (strings,
 * brackets, comments, logical lines, indentation), the top-level statements that bind names,
 * and ast.literal_eval's rules for their values. Nothing here runs or guesses Python: a value
 * that is not a literal is said to be one. */
#include "mtr/alembic_rev.h"
#include "mtr/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokens ------------------------------------------------------------------------------------ */

enum tk { TK_NAME, TK_STR, TK_NUM, TK_OP };

struct tok {
	enum tk kind;
	uint32_t off, len; /* in the text */
	int line;
};

/* Tokens of a logical line, and bracket pairs, fit here in the usual case: no allocation. */
#define LOCAL_TOKS 128

/* Where the tokenizer is. A logical line's tokens are collected in toks (reused; local until a
 * line has more than LOCAL_TOKS). */
struct scan {
	const char *text;
	size_t len, pos;
	int line;       /* of pos */
	int depth;      /* open brackets */
	int indent;     /* of the current logical line (tabs to multiples of 8, as Python) */
	int first_line; /* of the current logical line */
	struct tok *toks;
	size_t ntoks, cap;
	const char *error; /* set once: the text is not Python that could run */
	int error_line;
	bool heap; /* toks was allocated (else it is the caller's local array) */
};

static void scan_fail(struct scan *s, const char *why)
{
	if (!s->error) {
		s->error = why;
		s->error_line = s->line;
	}
	s->pos = s->len; /* nothing more is read */
}

static char at(const struct scan *s, size_t k)
{
	if (s->pos + k >= s->len)
		return '\0';
	return s->text[s->pos + k];
}

/* The length of a line break at pos (\n, \r\n or a lone \r, as Python's universal newlines),
 * or 0. */
static size_t newline_at(const struct scan *s, size_t pos)
{
	if (pos >= s->len)
		return 0;
	if (s->text[pos] == '\n')
		return 1;
	if (s->text[pos] == '\r')
		return pos + 1 < s->len && s->text[pos + 1] == '\n' ? 2 : 1;
	return 0;
}

/* Per ASCII byte: 1 when a name may start with it (letters, '_'), 2 when it may only continue
 * one (digits). Every byte of a UTF-8 sequence (0x80 and up) may do both. */
static const unsigned char IDENT[128] = {
	['0'] = 2, ['1'] = 2, ['2'] = 2, ['3'] = 2, ['4'] = 2, ['5'] = 2, ['6'] = 2, ['7'] = 2, ['8'] = 2, ['9'] = 2,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
	['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['_'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
	['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool is_ident_start(unsigned char c)
{
	return c >= 0x80 || IDENT[c] == 1;
}

static bool is_ident(unsigned char c)
{
	return c >= 0x80 || IDENT[c] != 0;
}

static inline void push_tok(struct scan *s, enum tk kind, size_t off, size_t len, int line)
{
	if (s->ntoks == s->cap) {
		struct tok *grown = xmalloc(s->cap * 2 * sizeof *grown);
		memcpy(grown, s->toks, s->cap * sizeof *grown);
		if (s->heap)
			free(s->toks);
		s->heap = true;
		s->toks = grown;
		s->cap *= 2;
	}
	s->toks[s->ntoks++] = (struct tok){kind, (uint32_t)off, (uint32_t)len, line};
}

/* Past a string's quotes from pos (at the opening quote); counts the lines inside. */
static void skip_string_body(struct scan *s)
{
	char q = at(s, 0);
	bool triple = at(s, 1) == q && at(s, 2) == q;
	s->pos += triple ? 3 : 1;
	while (s->pos < s->len) {
		size_t pos = s->pos; /* the usual case: characters of the string (a local: no stores) */
		for (char ch; pos < s->len && (ch = s->text[pos]) != q && ch != '\\' && ch != '\n' && ch != '\r' && ch;)
			pos++;
		s->pos = pos;
		if (pos >= s->len)
			break;
		char ch = s->text[pos];
		size_t nl = newline_at(s, s->pos);
		if (ch == '\\' && s->pos + 1 < s->len) {
			size_t esc = newline_at(s, s->pos + 1);
			s->line += esc > 0;
			s->pos += 1 + (esc ? esc : 1);
		} else if (nl) {
			if (!triple)
				return scan_fail(s, "a string is not closed on its line");
			s->line++;
			s->pos += nl;
		} else if (ch == q && (!triple || (at(s, 1) == q && at(s, 2) == q))) {
			s->pos += triple ? 3 : 1;
			return;
		} else {
			s->pos++;
		}
	}
	scan_fail(s, "a string is not closed before the end of the file");
}

/* A string prefix Python accepts (r, u, b, f and the two-letter mixes of r with b or f). */
static bool string_prefix(const char *p, size_t n)
{
	if (n == 0)
		return true;
	char a = (char)(p[0] | 0x20), b = '\0';
	if (n == 2)
		b = (char)(p[1] | 0x20);
	if (n == 1)
		return a == 'r' || a == 'u' || a == 'b' || a == 'f';
	return n == 2 && ((a == 'r' && (b == 'b' || b == 'f')) || (b == 'r' && (a == 'b' || a == 'f')));
}

/* A name, or a string when the name is a prefix right before a quote. */
static void scan_word(struct scan *s)
{
	size_t start = s->pos, pos = s->pos;
	int line = s->line;
	while (pos < s->len && is_ident((unsigned char)s->text[pos]))
		pos++;
	s->pos = pos;
	char q = at(s, 0);
	if ((q == '\'' || q == '"') && string_prefix(s->text + start, s->pos - start)) {
		skip_string_body(s);
		push_tok(s, TK_STR, start, s->pos - start, line);
		return;
	}
	push_tok(s, TK_NAME, start, s->pos - start, line);
}

static void scan_number(struct scan *s)
{
	size_t start = s->pos;
	bool hex = at(s, 0) == '0' && (at(s, 1) == 'x' || at(s, 1) == 'X');
	while (s->pos < s->len) {
		char ch = s->text[s->pos];
		char prev = '\0';
		if (s->pos > start)
			prev = s->text[s->pos - 1];
		if (is_ident((unsigned char)ch) || ch == '.' ||
		    ((ch == '+' || ch == '-') && !hex && (prev == 'e' || prev == 'E')))
			s->pos++;
		else
			break;
	}
	push_tok(s, TK_NUM, start, s->pos - start, s->line);
}

/* The length of the operator at p (left bytes there): Python's two- and three-character ones
 * (**=, //=, >>=, <<=, ..., ->, :=, ==, !=, <=, >=, **, //, <<, >>, and the augmented
 * assignments), else 1. */
static size_t op_length(const char *p, size_t left)
{
	char a = p[0], b = '\0', c = '\0';
	if (left > 1)
		b = p[1];
	if (left > 2)
		c = p[2];
	bool doubled = b == a && (a == '*' || a == '/' || a == '<' || a == '>');
	if ((doubled && c == '=') || (a == '.' && b == '.' && c == '.'))
		return 3;
	if (doubled || (a == '-' && b == '>'))
		return 2;
	switch (a) {
	case '=': case '!': case '<': case '>': case '+': case '-': case '*': case '/': case '%':
	case '&': case '|': case '^': case '@': case ':':
		return b == '=' ? 2 : 1;
	default:
		return 1;
	}
}

/* An operator or bracket; the brackets move depth. */
static void scan_op(struct scan *s)
{
	char ch = s->text[s->pos];
	size_t n = op_length(s->text + s->pos, s->len - s->pos);
	switch (n == 1 ? ch : '\1') {
	case '\0':
		return scan_fail(s, "a NUL byte, which Python refuses in source");
	case '(': case '[': case '{':
		s->depth++;
		break;
	case ')': case ']': case '}':
		if (--s->depth < 0)
			return scan_fail(s, "a bracket is closed that was never opened");
		break;
	case '\1': case ':': case ';': case ',': case '.': case '=': case '+': case '-': case '*': case '/':
	case '%': case '@': case '&': case '|': case '^': case '~': case '<': case '>':
		break;
	default:
		return scan_fail(s, "a character that is not Python");
	}
	push_tok(s, TK_OP, s->pos, n, s->line);
	s->pos += n;
}

/* At the start of a physical line outside brackets: measures the indentation and skips lines
 * that hold only blanks or a comment. False at the end of the text. */
static bool begin_line(struct scan *s)
{
	while (s->pos < s->len) {
		int col = 0;
		for (char ch; s->pos < s->len && ((ch = s->text[s->pos]) == ' ' || ch == '\t' || ch == '\f'); s->pos++)
			col = ch == ' ' ? col + 1 : ch == '\t' ? (col / 8 + 1) * 8 : 0;
		if (at(s, 0) == '#')
			while (s->pos < s->len && !newline_at(s, s->pos))
				s->pos++;
		size_t nl = newline_at(s, s->pos);
		if (nl) {
			s->pos += nl;
			s->line++;
			continue;
		}
		if (s->pos >= s->len)
			return false;
		s->indent = col;
		s->first_line = s->line;
		s->ntoks = 0;
		return true;
	}
	return false;
}

/* One step of a logical line; false at its end (a line break outside brackets, or the end of
 * the text). With skim, tokens are only passed over (a function body: nothing there binds a
 * top-level name that a revision reads). */
static bool line_step(struct scan *s, bool skim)
{
	char ch = at(s, 0);
	size_t nl = newline_at(s, s->pos);
	if (s->pos >= s->len) {
		if (s->depth > 0)
			scan_fail(s, "a bracket is not closed before the end of the file");
		return false;
	}
	if (nl) {
		s->pos += nl;
		s->line++;
		return s->depth > 0;
	}
	if (ch == ' ' || ch == '\t' || ch == '\f') {
		size_t pos = s->pos + 1;
		while (pos < s->len && ((ch = s->text[pos]) == ' ' || ch == '\t' || ch == '\f'))
			pos++;
		s->pos = pos;
	} else if (ch == '#') {
		size_t pos = s->pos;
		while (pos < s->len && s->text[pos] != '\n' && s->text[pos] != '\r')
			pos++;
		s->pos = pos;
	} else if (ch == '\\') {
		size_t cont = newline_at(s, s->pos + 1);
		if (!cont)
			scan_fail(s, "a backslash that does not end its line");
		s->pos += 1 + cont;
		s->line++;
	} else {
		size_t before = s->ntoks;
		if (ch == '\'' || ch == '"' || is_ident_start((unsigned char)ch))
			scan_word(s);
		else if ((ch >= '0' && ch <= '9') || (ch == '.' && at(s, 1) >= '0' && at(s, 1) <= '9'))
			scan_number(s);
		else
			scan_op(s);
		if (skim)
			s->ntoks = before;
	}
	return true;
}

static void read_line(struct scan *s, bool skim)
{
	while (line_step(s, skim))
		;
}

/* ---- values -------------------------------------------------------------------------------------- */

/* What a value is, as far as a revision cares. */
enum pk {
	PK_NONE,   /* None */
	PK_STR,    /* a str */
	PK_SEQ,    /* a tuple or list of str (items) */
	PK_OTHER,  /* a literal of another kind (numbers, bytes, nested tuples, sets, dicts …) */
	PK_NONLIT, /* not a literal: ast.literal_eval would refuse it */
	PK_ESCAPE  /* a literal with an escape this reader does not decode (\N{…}, NUL, surrogates) */
};

struct pv {
	enum pk kind;
	bool hashable; /* a set member or dict key may be it */
	bool list;     /* a list (a tuple otherwise), for PK_SEQ and sequences inside */
	char *s;       /* PK_STR */
	char **items;  /* PK_SEQ */
	size_t n;
};

static void pv_free(struct pv *v)
{
	free(v->s);
	for (size_t i = 0; i < v->n; i++)
		free(v->items[i]);
	free(v->items);
	memset(v, 0, sizeof *v);
}

static struct pv pv_kind(enum pk kind, bool hashable)
{
	struct pv v = {kind, hashable, false, NULL, NULL, 0};
	return v;
}

static void pv_copy(struct pv *dst, const struct pv *src)
{
	*dst = *src;
	dst->s = src->s ? xstrdup(src->s) : NULL;
	dst->items = src->n ? xmalloc(src->n * sizeof *dst->items) : NULL;
	for (size_t i = 0; i < src->n; i++)
		dst->items[i] = xstrdup(src->items[i]);
}

static void utf8_put(struct strbuf *b, uint32_t cp)
{
	char u[4];
	size_t n = 0;
	if (cp < 0x80) {
		u[n++] = (char)cp;
	} else if (cp < 0x800) {
		u[n++] = (char)(0xc0 | (cp >> 6));
		u[n++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		u[n++] = (char)(0xe0 | (cp >> 12));
		u[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[n++] = (char)(0x80 | (cp & 0x3f));
	} else {
		u[n++] = (char)(0xf0 | (cp >> 18));
		u[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[n++] = (char)(0x80 | (cp & 0x3f));
	}
	sb_add(b, u, n);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The code point of \x, \u or \U with digits hex digits at p, or -1 when they are not hex. */
static long hex_escape(const char *p, const char *end, int digits)
{
	long v = 0;
	for (int k = 0; k < digits; k++) {
		if (p + k >= end || hexval(p[k]) < 0)
			return -1;
		v = v * 16 + hexval(p[k]);
	}
	return v;
}

/* One escape after a backslash at *pp (past it on return), as Python decodes it in a str (or
 * bytes). Returns false when this reader cannot represent it (PK_ESCAPE). */
static bool decode_escape(const char **pp, const char *end, bool bytes, struct strbuf *b)
{
	static const char simple[] = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
	const char *p = *pp;
	char ch = *p++;
	const char *m = strchr(simple, ch);
	long cp = -1;
	int width = ch == 'x' ? 2 : ch == 'u' && !bytes ? 4 : ch == 'U' && !bytes ? 8 : 0;
	if (m && ((m - simple) % 2) == 0) {
		sb_addc(b, m[1]);
	} else if (ch >= '0' && ch <= '7') {
		cp = ch - '0';
		for (int k = 0; k < 2 && p < end && *p >= '0' && *p <= '7'; k++)
			cp = cp * 8 + (*p++ - '0');
	} else if (width) {
		cp = hex_escape(p, end, width);
		if (cp < 0 || cp > 0x10ffff)
			return false; /* Python refuses it: the file would not run */
		p += width;
	} else if (ch == 'N' && !bytes) {
		return false;
	} else {
		sb_addc(b, '\\');
		sb_addc(b, ch);
	}
	*pp = p;
	if (cp < 0)
		return true;
	if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	if (bytes)
		sb_addc(b, (char)(cp & 0xff));
	else
		utf8_put(b, (uint32_t)cp);
	return true;
}

/* What a string token holds: its kind (PK_STR, or PK_OTHER for bytes, PK_NONLIT for an
 * f-string, PK_ESCAPE) and, for a str, its text appended to b. Python's source reading has
 * turned every line break inside it into \n. */
static enum pk decode_str(const char *tok, size_t len, struct strbuf *b)
{
	bool raw = false, bytes = false, fmt = false;
	size_t k = 0;
	for (; tok[k] != '\'' && tok[k] != '"'; k++) {
		char c = (char)(tok[k] | 0x20);
		raw = raw || c == 'r';
		bytes = bytes || c == 'b';
		fmt = fmt || c == 'f';
	}
	if (fmt)
		return PK_NONLIT; /* a JoinedStr: ast.literal_eval refuses it */
	if (bytes)
		return PK_OTHER;
	char q = tok[k];
	size_t quotes = len - k >= 6 && tok[k + 1] == q && tok[k + 2] == q ? 3 : 1;
	const char *p = tok + k + quotes, *end = tok + len - quotes;
	while (p < end) {
		if (*p == '\r') {
			sb_addc(b, '\n');
			p += p + 1 < end && p[1] == '\n' ? 2 : 1;
		} else if (*p == '\\' && !raw && p + 1 < end && (p[1] == '\n' || p[1] == '\r')) {
			p += p[1] == '\r' && p + 2 < end && p[2] == '\n' ? 3 : 2; /* a continued line */
		} else if (*p == '\\' && !raw && p + 1 < end) {
			p++;
			if (!decode_escape(&p, end, false, b))
				return PK_ESCAPE;
		} else if (*p == '\\' && raw && p + 1 < end) {
			sb_addc(b, *p++); /* kept, and the next character cannot end the string */
			if (*p != '\r')
				sb_addc(b, *p++);
		} else {
			const char *run = p++; /* this character, and those up to the next \r or \\ */
			while (p < end && *p != '\r' && *p != '\\')
				p++;
			sb_add(b, run, (size_t)(p - run));
		}
	}
	return PK_STR;
}

/* Consecutive string tokens [a, b): Python joins them into one. */
static struct pv eval_strings(const char *text, const struct tok *t, size_t a, size_t b)
{
	struct strbuf out = STRBUF_INIT;
	enum pk kind = PK_STR;
	bool first = true, bytes = false;
	for (size_t i = a; i < b; i++) {
		enum pk k = decode_str(text + t[i].off, t[i].len, &out);
		bool is_bytes = k == PK_OTHER;
		if (!first && is_bytes != bytes && k != PK_NONLIT && kind != PK_NONLIT)
			kind = PK_NONLIT; /* bytes beside str: Python refuses the file */
		else if (k == PK_NONLIT || (k == PK_ESCAPE && kind != PK_NONLIT) || (k == PK_OTHER && kind == PK_STR))
			kind = k;
		bytes = is_bytes;
		first = false;
	}
	struct pv v = pv_kind(kind, true);
	if (kind == PK_STR)
		v.s = sb_take(&out);
	sb_free(&out);
	return v;
}

/* ---- names bound at the top level ---------------------------------------------------------------- */

/* A name the module binds, as far as the text says: a literal value, or unknown (bound to
 * something that is not a literal, or only in a block that may not run). */
struct name {
	const char *name; /* in the text */
	size_t len;
	bool known;
	struct pv val;
	int line;       /* of the binding statement */
	int block_line; /* when bound inside an if/for/with/try …: that block's first line */
};

#define LOCAL_NAMES 16

struct names {
	struct name *v; /* local until more than LOCAL_NAMES are bound */
	size_t n, cap;
	struct name local[LOCAL_NAMES];
};

static struct name *name_find(struct names *ns, const char *s, size_t len)
{
	for (size_t i = 0; i < ns->n; i++)
		if (ns->v[i].len == len && memcmp(ns->v[i].name, s, len) == 0)
			return &ns->v[i];
	return NULL;
}

static struct name *name_slot(struct names *ns, const char *s, size_t len)
{
	struct name *e = name_find(ns, s, len);
	if (e) {
		pv_free(&e->val);
		return e;
	}
	if (ns->n == ns->cap) {
		struct name *grown = xmalloc(ns->cap * 2 * sizeof *grown);
		memcpy(grown, ns->v, ns->cap * sizeof *grown);
		if (ns->v != ns->local)
			free(ns->v);
		ns->v = grown;
		ns->cap *= 2;
	}
	e = &ns->v[ns->n++];
	memset(e, 0, sizeof *e);
	e->name = s;
	e->len = len;
	return e;
}

/* name = val at line (copied, or with take moved: *val is left empty); with block_line, only
 * maybe: its value is unknown. */
static void name_bind(struct names *ns, const char *s, size_t len, struct pv *val, bool take, int line,
		      int block_line)
{
	struct name *e = name_slot(ns, s, len);
	e->known = val && !block_line;
	if (e->known && take) {
		e->val = *val;
		*val = pv_kind(PK_NONE, true);
	} else if (e->known) {
		pv_copy(&e->val, val);
	}
	e->line = line;
	e->block_line = block_line;
}

static void name_delete(struct names *ns, const char *s, size_t len)
{
	struct name *e = name_find(ns, s, len);
	if (!e)
		return;
	pv_free(&e->val);
	*e = ns->v[--ns->n];
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		pv_free(&ns->v[i].val);
	if (ns->v != ns->local)
		free(ns->v);
}

/* ---- literal_eval ----------------------------------------------------------------------------------- */

/* One logical line being read: its tokens, the matching bracket of each bracket token, and the
 * names bound so far. */
struct line {
	const char *text;
	const struct tok *t;
	size_t n;
	uint32_t *match;
	struct names *ns;
	int nesting; /* how deep eval has gone: Python's parser stops at 200 */
};

/* Whether token i is of kind k and spells s (the first byte decides most cases; a token's text
 * holds no NUL, so the comparison stops at the end of s). */
static inline bool tok_is(const struct line *l, size_t i, enum tk k, const char *s)
{
	if (i >= l->n || l->t[i].kind != k)
		return false;
	const char *p = l->text + l->t[i].off;
	size_t n = l->t[i].len, j = 0;
	while (j < n && p[j] == s[j])
		j++;
	return j == n && s[j] == '\0';
}

/* Whether token i is the operator op or the name w. */
static inline bool is_op(const struct line *l, size_t i, const char *op)
{
	return tok_is(l, i, TK_OP, op);
}

static inline bool is_word(const struct line *l, size_t i, const char *w)
{
	return tok_is(l, i, TK_NAME, w);
}

static bool is_keyword(const char *s, size_t len)
{
	static const char *const kw[] = {"False", "None", "True", "and", "as", "assert", "async", "await",
					 "break", "class", "continue", "def", "del", "elif", "else", "except",
					 "finally", "for", "from", "global", "if", "import", "in", "is",
					 "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try",
					 "while", "with", "yield"}; /* in byte order */
	if (len < 2 || len > 8 || s[0] < 'F' || s[0] > 'y' || s[0] == 'h' || s[0] == 'j' || s[0] == 'k' ||
	    s[0] == 'm' || s[0] == 'q' || s[0] == 's' || s[0] == 'u' || s[0] == 'v' || s[0] == 'x')
		return false;
	for (size_t k = 0; k < sizeof kw / sizeof kw[0] && kw[k][0] <= s[0]; k++)
		if (kw[k][0] == s[0] && strlen(kw[k]) == len && memcmp(kw[k], s, len) == 0)
			return true;
	return false;
}

/* The next position after i at bracket depth 0 that holds op, or b. */
static size_t find_op(const struct line *l, size_t i, size_t b, const char *op)
{
	for (; i < b; i++) {
		if (is_op(l, i, op))
			return i;
		if (l->match[i]) /* an opening bracket: to its closing one */
			i = l->match[i];
	}
	return b;
}

static struct pv eval_expr(struct line *l, size_t a, size_t b);

/* The items of [a, b) split at top-level commas, each evaluated, as a tuple or list; *commas
 * says whether there was a comma (a parenthesized single value is no tuple). */
static struct pv eval_items(struct line *l, size_t a, size_t b, bool list, bool *commas)
{
	struct pv seq = pv_kind(PK_SEQ, !list);
	seq.list = list;
	*commas = false;
	bool nonlit = false, escape = false, other = false;
	for (size_t i = a; i < b;) {
		size_t end = find_op(l, i, b, ",");
		*commas = *commas || end < b;
		struct pv v = end > i ? eval_expr(l, i, end) : pv_kind(PK_NONLIT, false);
		nonlit = nonlit || v.kind == PK_NONLIT;
		escape = escape || v.kind == PK_ESCAPE;
		other = other || v.kind != PK_STR;
		seq.hashable = seq.hashable && v.hashable;
		if (v.kind == PK_STR) {
			seq.items = xrealloc(seq.items, (seq.n + 1) * sizeof *seq.items);
			seq.items[seq.n++] = v.s;
			v.s = NULL;
		}
		pv_free(&v);
		i = end + 1;
	}
	if (nonlit || escape || other) {
		bool hashable = seq.hashable;
		pv_free(&seq);
		seq = pv_kind(nonlit ? PK_NONLIT : escape ? PK_ESCAPE : PK_OTHER, hashable);
	}
	return seq;
}

/* A set or a dict display {…}: a literal (unhashable) when every element is; keys and members
 * must be hashable, as Python needs them to be. */
static struct pv eval_braces(struct line *l, size_t a, size_t b)
{
	enum pk kind = PK_OTHER;
	for (size_t i = a; i < b && kind == PK_OTHER;) {
		size_t end = find_op(l, i, b, ","), colon = find_op(l, i, end, ":");
		if (end == i || is_op(l, i, "**") || is_op(l, i, "*")) {
			kind = PK_NONLIT;
			break;
		}
		struct pv k = eval_expr(l, i, colon);
		struct pv v = colon < end ? eval_expr(l, colon + 1, end) : pv_kind(PK_NONE, true);
		if (k.kind == PK_NONLIT || v.kind == PK_NONLIT || !k.hashable || (colon < end && colon + 1 == end))
			kind = PK_NONLIT;
		else if (k.kind == PK_ESCAPE || v.kind == PK_ESCAPE)
			kind = PK_ESCAPE;
		pv_free(&k);
		pv_free(&v);
		i = end + 1;
	}
	return pv_kind(kind, false);
}

/* A number, or a complex literal written as real +/- imaginary (the only arithmetic
 * ast.literal_eval accepts): [a, b) with an optional sign. */
static bool is_number(const struct line *l, size_t a, size_t b)
{
	if (a < b && (is_op(l, a, "-") || is_op(l, a, "+")))
		a++;
	if (a + 1 == b)
		return l->t[a].kind == TK_NUM;
	if (a + 3 != b || l->t[a].kind != TK_NUM || l->t[a + 2].kind != TK_NUM || !(is_op(l, a + 1, "+") || is_op(l, a + 1, "-")))
		return false;
	const struct tok *re = &l->t[a], *im = &l->t[a + 2];
	char last_re = (char)(l->text[re->off + re->len - 1] | 0x20), last_im = (char)(l->text[im->off + im->len - 1] | 0x20);
	return last_re != 'j' && last_im == 'j';
}

/* A name: None, True, False, or a top-level name bound to a literal earlier in the file. */
static struct pv eval_name(struct line *l, size_t a)
{
	const char *s = l->text + l->t[a].off;
	size_t len = l->t[a].len;
	if (is_word(l, a, "None"))
		return pv_kind(PK_NONE, true);
	if (is_word(l, a, "True") || is_word(l, a, "False"))
		return pv_kind(PK_OTHER, true);
	struct name *e = is_keyword(s, len) ? NULL : name_find(l->ns, s, len);
	if (!e || !e->known)
		return pv_kind(PK_NONLIT, false);
	struct pv v;
	pv_copy(&v, &e->val);
	return v;
}

static struct pv eval_brackets(struct line *l, size_t a, size_t b)
{
	char open = l->text[l->t[a].off];
	bool commas;
	if (open == '{')
		return eval_braces(l, a + 1, b - 1);
	if (open == '[')
		return eval_items(l, a + 1, b - 1, true, &commas);
	if (find_op(l, a + 1, b - 1, ",") == b - 1 && b - 1 > a + 1)
		return eval_expr(l, a + 1, b - 1); /* (x): x itself */
	return eval_items(l, a + 1, b - 1, false, &commas);
}

/* The value of the expression [a, b) as ast.literal_eval sees it (with the file's literal
 * names put in): a tuple when there is a top-level comma. */
static struct pv eval_expr(struct line *l, size_t a, size_t b)
{
	if (a >= b || ++l->nesting > 200) {
		l->nesting--;
		return pv_kind(PK_NONLIT, false);
	}
	struct pv v;
	bool commas;
	if (find_op(l, a, b, ",") < b) {
		v = eval_items(l, a, b, false, &commas);
	} else if (l->t[a].kind == TK_STR) {
		size_t e = a;
		while (e < b && l->t[e].kind == TK_STR)
			e++;
		v = e == b ? eval_strings(l->text, l->t, a, b) : pv_kind(PK_NONLIT, false);
	} else if (is_number(l, a, b) || (a + 1 == b && is_op(l, a, "..."))) {
		v = pv_kind(PK_OTHER, true);
	} else if (a + 1 == b && l->t[a].kind == TK_NAME) {
		v = eval_name(l, a);
	} else if (a + 3 == b && is_word(l, a, "set") && is_op(l, a + 1, "(") && is_op(l, a + 2, ")")) {
		v = pv_kind(PK_OTHER, false); /* set(): the one call ast.literal_eval accepts */
	} else if (l->t[a].kind == TK_OP && l->t[a].len == 1 && strchr("([{", l->text[l->t[a].off]) &&
		   l->match[a] == b - 1) {
		v = eval_brackets(l, a, b);
	} else {
		v = pv_kind(PK_NONLIT, false);
	}
	l->nesting--;
	return v;
}

/* ---- top-level statements ------------------------------------------------------------------------- */

/* Scopes: the module's top level; a block that may or may not run (if, for, while, with, try,
 * match …), whose bindings are top-level but unknown; a def or class body, which binds
 * nothing at the top level. */
enum scope { SC_MODULE, SC_BLOCK, SC_LOCAL };

/* Unbinds (as unknown) every name written in targets [a, b) except attribute names after a dot:
 * a binding this reader does not evaluate (a tuple target, an import, a for variable …). */
static void unknown_names(struct line *l, size_t a, size_t b, int block_line)
{
	for (size_t i = a; i < b; i++) {
		const struct tok *t = &l->t[i];
		if (t->kind != TK_NAME || is_keyword(l->text + t->off, t->len) || (i > a && is_op(l, i - 1, ".")))
			continue;
		name_bind(l->ns, l->text + t->off, t->len, NULL, false, t->line, block_line);
	}
}

/* `import a.b as c, d` and `from m import x as y, (z)`: the names they bind are unknown; a
 * star import may rebind any of them. */
static void stmt_import(struct line *l, size_t a, size_t b, int block_line)
{
	size_t i = a + 1;
	if (is_word(l, a, "from")) {
		while (i < b && !is_word(l, i, "import"))
			i++;
		i++;
	}
	if (is_op(l, i, "(") && l->match[i] < b) {
		b = l->match[i];
		i++;
	}
	while (i < b) {
		size_t end = find_op(l, i, b, ","), name = i;
		for (size_t k = i; k + 1 < end; k++)
			if (is_word(l, k, "as"))
				name = k + 1;
		if (is_op(l, name, "*")) {
			for (size_t k = 0; k < l->ns->n; k++)
				name_bind(l->ns, l->ns->v[k].name, l->ns->v[k].len, NULL, false, l->t[a].line,
					  block_line);
		} else if (name < end) {
			unknown_names(l, name, name + 1, block_line);
		}
		i = end + 1;
	}
}

/* `del a, b.c`: plain names are unbound again (a revision without its name is no revision). */
static void stmt_del(struct line *l, size_t a, size_t b, int block_line)
{
	for (size_t i = a + 1; i < b;) {
		size_t end = find_op(l, i, b, ",");
		if (end == i + 1 && l->t[i].kind == TK_NAME && !block_line)
			name_delete(l->ns, l->text + l->t[i].off, l->t[i].len);
		else
			unknown_names(l, i, end, block_line);
		i = end + 1;
	}
}

/* NAME := … anywhere in [a, b) binds NAME in the enclosing (top-level) scope. */
static void walrus(struct line *l, size_t a, size_t b, int block_line)
{
	for (size_t i = a; i + 1 < b; i++)
		if (l->t[i].kind == TK_NAME && is_op(l, i + 1, ":="))
			unknown_names(l, i, i + 1, block_line ? block_line : l->t[i].line);
}

static bool is_augmented(const struct line *l, size_t i)
{
	static const char *const aug[] = {"+=", "-=", "*=", "/=", "//=", "%=", "**=", ">>=", "<<=", "&=", "^=", "|=", "@="};
	const struct tok *t = &l->t[i];
	if (t->kind != TK_OP || t->len < 2 || l->text[t->off + t->len - 1] != '=')
		return false; /* each of them ends in '=' */
	for (size_t k = 0; k < sizeof aug / sizeof aug[0]; k++)
		if (is_op(l, i, aug[k]))
			return true;
	return false;
}

/* Binds the target [a, end): a plain name to v (unknown when v is not a literal, or in a
 * block; take: v is moved, for the last target); in any other target (a tuple, an attribute,
 * a subscript) every name is unknown. */
static void bind_target(struct line *l, size_t a, size_t end, struct pv *v, bool take, int block_line)
{
	const struct tok *t = &l->t[a];
	if (end == a + 1 && t->kind == TK_NAME && !is_keyword(l->text + t->off, t->len))
		name_bind(l->ns, l->text + t->off, t->len, v && v->kind != PK_NONLIT ? v : NULL, take, t->line,
			  block_line);
	else
		unknown_names(l, a, end, block_line);
}

/* `t1 = t2 = value`, `name: annotation = value`, `name += …`. An annotation without a value
 * binds nothing. */
static void stmt_assign(struct line *l, size_t a, size_t b, int block_line)
{
	size_t limit = a; /* a lambda's default values are no assignments */
	while (limit < b && !is_word(l, limit, "lambda"))
		limit = l->t[limit].kind == TK_OP && l->match[limit] ? l->match[limit] + 1 : limit + 1;
	size_t eq = find_op(l, a, limit, "=");
	if (eq == limit) {
		for (size_t i = a; i < b; i++)
			if (is_augmented(l, i)) {
				bind_target(l, a, i, NULL, false, block_line);
				return;
			}
		return; /* an expression, or an annotation alone */
	}
	size_t last = eq;
	for (size_t k = eq; k < limit; k = find_op(l, k + 1, limit, "="))
		last = k;
	struct pv v = eval_expr(l, last + 1, b);
	size_t colon = find_op(l, a, eq, ":");
	if (colon < eq) {
		bind_target(l, a, colon, &v, true, block_line); /* one target, annotated */
	} else {
		for (size_t i = a; i <= last;) {
			size_t end = find_op(l, i, last + 1, "=");
			bind_target(l, i, end, &v, end == last, block_line);
			i = end + 1;
		}
	}
	pv_free(&v);
}

/* One simple statement [a, b) at the top level or in a block. */
static void statement(struct line *l, size_t a, size_t b, int block_line)
{
	if (a >= b)
		return;
	walrus(l, a, b, block_line);
	if (is_word(l, a, "import") || is_word(l, a, "from"))
		stmt_import(l, a, b, block_line);
	else if (is_word(l, a, "del"))
		stmt_del(l, a, b, block_line);
	else if (l->t[a].kind != TK_NAME || !is_keyword(l->text + l->t[a].off, l->t[a].len))
		stmt_assign(l, a, b, block_line);
}

/* The simple statements of [a, b), separated by top-level semicolons. */
static void statements(struct line *l, size_t a, size_t b, int block_line)
{
	while (a < b) {
		size_t end = find_op(l, a, b, ";");
		statement(l, a, end, block_line);
		a = end + 1;
	}
}

/* ---- blocks ------------------------------------------------------------------------------------------ */

#define MAX_BLOCKS 100 /* Python's own limit on nested blocks is lower */

struct blocks {
	struct block {
		int indent;
		enum scope scope;
		int line;
	} v[MAX_BLOCKS];
	size_t n;
};

static enum scope current_scope(const struct blocks *bs)
{
	return bs->n ? bs->v[bs->n - 1].scope : SC_MODULE;
}

/* The first line of the outermost block the statements are in (0 at the top level). */
static int block_line(const struct blocks *bs)
{
	return bs->n ? bs->v[0].line : 0;
}

/* Whether the line opens a block: its keyword, and where its header ends (the ':' that is not
 * a lambda's, a slice's or a dict's). The header itself is at [0, *colon). */
static bool block_header(const struct line *l, size_t *colon, bool *local)
{
	static const char *const kw[] = {"if", "elif", "else", "for", "while", "with", "try", "except",
					 "finally", "def", "class", "async", "match", "case"};
	if (l->n == 0 || l->t[0].kind != TK_NAME || !strchr("acdefimtw", l->text[l->t[0].off]))
		return false; /* the first letters of kw */
	bool found = false;
	for (size_t k = 0; k < sizeof kw / sizeof kw[0] && !found; k++)
		found = is_word(l, 0, kw[k]);
	if (!found)
		return false;
	size_t lambdas = 0, i = 0;
	for (; i < l->n; i++) {
		if (is_word(l, i, "lambda"))
			lambdas++;
		else if (is_op(l, i, ":") && lambdas-- == 0)
			break;
		else if (l->t[i].kind == TK_OP && l->match[i])
			i = l->match[i];
	}
	bool soft = is_word(l, 0, "match") || is_word(l, 0, "case");
	if (i >= l->n || (soft && i != l->n - 1))
		return false; /* `match = …` is a name; a real match statement ends its line with ':' */
	*colon = i;
	*local = is_word(l, 0, "def") || is_word(l, 0, "class") || is_word(l, 0, "async");
	return true;
}

/* One logical line at the top level or in a block: a block header (its bound names unknown,
 * statements after its ':' in its body), or simple statements. */
static void top_line(struct line *l, struct blocks *bs, int indent)
{
	size_t colon;
	bool local;
	enum scope sc = current_scope(bs);
	if (!block_header(l, &colon, &local)) {
		statements(l, 0, l->n, sc == SC_BLOCK ? block_line(bs) : 0);
		return;
	}
	int first = l->t[0].line;
	enum scope body = sc == SC_LOCAL || local ? SC_LOCAL : SC_BLOCK;
	size_t name = is_word(l, 0, "async") ? 2 : 1;
	if (local)
		walrus(l, 0, colon, sc == SC_BLOCK ? block_line(bs) : 0); /* in defaults, decorators */
	if (local && name < l->n)
		unknown_names(l, name, name + 1, sc == SC_BLOCK ? block_line(bs) : 0); /* the def or class */
	else if (!local)
		unknown_names(l, 1, colon, bs->n ? block_line(bs) : first);
	if (bs->n < MAX_BLOCKS)
		bs->v[bs->n++] = (struct block){indent, body, first};
	if (body == SC_BLOCK && colon + 1 < l->n)
		statements(l, colon + 1, l->n, block_line(bs));
}

/* The matching bracket of every opening bracket token (0 for other tokens). False when they
 * do not pair up (the file is no Python). */
static bool match_brackets(const char *text, const struct tok *t, size_t n, uint32_t *match, uint32_t *stack)
{
	size_t top = 0;
	for (size_t i = 0; i < n; i++) {
		match[i] = 0;
		char ch = '\0';
		if (t[i].kind == TK_OP && t[i].len == 1)
			ch = text[t[i].off];
		if (ch == '(' || ch == '[' || ch == '{') {
			stack[top++] = (uint32_t)i;
		} else if (ch == ')' || ch == ']' || ch == '}') {
			if (!top)
				return false;
			uint32_t o = stack[--top];
			if (text[t[o].off] != (ch == ')' ? '(' : ch == ']' ? '[' : '{'))
				return false;
			match[o] = (uint32_t)i;
		}
	}
	return top == 0;
}

/* The line (from 1) that pos is on, counting line breaks as Python does. */
static int line_at(const char *text, size_t pos)
{
	int line = 1;
	for (size_t i = 0; i < pos; i++)
		line += text[i] == '\n' || (text[i] == '\r' && (i + 1 >= pos || text[i + 1] != '\n'));
	return line;
}

/* Reads every top-level binding of the text into ns. False with *why and *line when the text
 * is not Python that could run. */
static bool read_module(const char *text, size_t len, struct names *ns, const char **why, int *line)
{
	/* Python refuses a NUL byte anywhere in source, in a string or a comment too (and the
	 * values read here are C strings). */
	const char *nul = memchr(text, '\0', len);
	if (nul) {
		*why = "a NUL byte, which Python refuses in source";
		*line = line_at(text, (size_t)(nul - text));
		return false;
	}
	struct tok local_toks[LOCAL_TOKS];
	struct scan s = {.text = text, .len = len, .line = 1, .toks = local_toks, .cap = LOCAL_TOKS};
	struct blocks bs;
	bs.n = 0; /* (no initializer: its array is only read up to n) */
	uint32_t local_match[LOCAL_TOKS], local_stack[LOCAL_TOKS];
	uint32_t *match = local_match, *stack = local_stack;
	size_t cap = LOCAL_TOKS;
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		s.pos = 3; /* a UTF-8 byte order mark */
	while (!s.error && begin_line(&s)) {
		while (bs.n && s.indent <= bs.v[bs.n - 1].indent)
			bs.n--;
		bool skim = current_scope(&bs) == SC_LOCAL;
		read_line(&s, skim);
		if (skim || s.error || !s.ntoks)
			continue;
		if (s.ntoks > cap) {
			if (match != local_match) {
				free(match);
				free(stack);
			}
			cap = s.ntoks;
			match = xmalloc(cap * sizeof *match);
			stack = xmalloc(cap * sizeof *stack);
		}
		if (!match_brackets(text, s.toks, s.ntoks, match, stack)) {
			s.error = "brackets that do not pair up";
			s.error_line = s.first_line;
			break;
		}
		struct line l = {text, s.toks, s.ntoks, match, ns, 0};
		top_line(&l, &bs, s.indent);
	}
	if (match != local_match) {
		free(match);
		free(stack);
	}
	if (s.heap)
		free(s.toks);
	*why = s.error;
	*line = s.error_line;
	return !s.error;
}

/* ---- the revision ------------------------------------------------------------------------------------ */

enum key { K_REVISION, K_DOWN, K_LABELS, K_DEPENDS, K_N };
static const char *const KEY_NAMES[K_N] = {"revision", "down_revision", "branch_labels", "depends_on"};

/* The strings of v, taken from it (v is left without them: the names are freed next). */
static char **strings_of(struct pv *v, size_t *n)
{
	char **out = NULL;
	*n = 0;
	if (v->kind == PK_STR) {
		out = xmalloc(sizeof *out);
		out[(*n)++] = v->s;
		v->s = NULL;
	} else if (v->kind == PK_SEQ && v->n) {
		out = v->items;
		*n = v->n;
		v->items = NULL;
		v->n = 0;
	} else if (v->kind == PK_SEQ) {
		out = xmalloc(sizeof *out); /* () : a list of none */
	}
	return out;
}

/* Why the value of a name cannot be used (file:line in err). */
static void value_error(const char *file, const struct name *e, const char *key, char *err, size_t errlen)
{
	if (e->block_line)
		set_err(err, errlen,
			"%s:%d: %s is assigned inside a block (the one at line %d) that Python may or may not "
			"run; revision files are read as text: assign it once at the top level",
			file, e->line, key, e->block_line);
	else if (e->known && e->val.kind == PK_ESCAPE)
		set_err(err, errlen,
			"%s:%d: %s holds an escape this reader does not decode (\\N{...}, a NUL or a lone "
			"surrogate); write the characters themselves",
			file, e->line, key);
	else if (e->known)
		set_err(err, errlen, "%s:%d: %s must be %s", file, e->line, key,
			strcmp(key, "revision") == 0 ? "one string id"
						      : "None, a string, or a tuple or list of strings");
	else
		set_err(err, errlen,
			"%s:%d: %s is not a literal (expected None, 'id', \"id\", a tuple or list of them, or "
			"a top-level name bound to one); revision files are read as text and their values "
			"are never guessed",
			file, e->line, key);
}

/* The legacy rule for a file without a revision: a name of hex digits is the id. */
static char *legacy_id(const char *file)
{
	const char *slash = strrchr(file, '/'), *base = slash ? slash + 1 : file;
	size_t n = strspn(base, "0123456789abcdef");
	return n && strcmp(base + n, ".py") == 0 ? xstrndup(base, n) : NULL;
}

static bool take_revision(struct rev *r, struct name *e, char *err, size_t errlen)
{
	if (!e) {
		r->id = legacy_id(r->file);
		if (!r->id)
			set_err(err, errlen,
				"%s: no `revision = '...'` line; every file in a versions directory must be an "
				"Alembic revision (move other files elsewhere)",
				r->file);
		return r->id != NULL;
	}
	if (!e->known || e->block_line || e->val.kind != PK_STR) {
		value_error(r->file, e, KEY_NAMES[K_REVISION], err, errlen);
		return false;
	}
	r->id = e->val.s; /* taken: the names are freed next */
	e->val.s = NULL;
	r->line = e->line;
	return true;
}

/* down_revision, branch_labels or depends_on as Alembic normalizes them: None, "" and () are
 * none (and a depends_on of ('',) too); a branch_labels that is not a literal is "labelled,
 * names unknown". */
static bool take_list(struct rev *r, enum key k, struct name *e, char *err, size_t errlen)
{
	char ***dst = k == K_DOWN ? &r->down : k == K_LABELS ? &r->labels : &r->depends;
	size_t *dn = k == K_DOWN ? &r->ndown : k == K_LABELS ? &r->nlabels : &r->ndepends;
	int *line = k == K_DOWN ? &r->down_line : k == K_LABELS ? &r->labels_line : &r->depends_line;
	if (!e && k == K_DOWN) {
		set_err(err, errlen,
			"%s: no `down_revision = ...` line; Alembic needs one in every revision (None for "
			"the first)",
			r->file);
		return false;
	}
	if (!e)
		return true;
	*line = e->line;
	if (k == K_LABELS && !e->block_line && (!e->known || e->val.kind == PK_NONLIT)) {
		r->labels_unknown = true;
		return true;
	}
	bool usable = e->known && !e->block_line &&
		      (e->val.kind == PK_NONE || e->val.kind == PK_STR || e->val.kind == PK_SEQ);
	if (!usable) {
		value_error(r->file, e, KEY_NAMES[k], err, errlen);
		return false;
	}
	bool empty = e->val.kind == PK_STR && !e->val.s[0] && k != K_LABELS;
	empty = empty || (k == K_DEPENDS && e->val.kind == PK_SEQ && e->val.n == 1 && !e->val.items[0][0]);
	if (!empty)
		*dst = strings_of(&e->val, dn);
	return true;
}

bool alembic_rev_parse(const char *text, size_t len, const char *file, struct rev *r, char *err,
		       size_t errlen)
{
	memset(r, 0, sizeof *r);
	r->file = xstrdup(file);
	struct names ns;
	ns.v = ns.local;
	ns.n = 0;
	ns.cap = LOCAL_NAMES;
	const char *why;
	int line;
	bool ok = read_module(text, len, &ns, &why, &line);
	if (!ok)
		set_err(err, errlen, "%s:%d: not Python that could run (%s); Alembic could not load it", file,
			line, why);
	struct name *e[K_N];
	for (size_t k = 0; k < K_N; k++)
		e[k] = name_find(&ns, KEY_NAMES[k], strlen(KEY_NAMES[k]));
	ok = ok && take_revision(r, e[K_REVISION], err, errlen);
	for (size_t k = K_DOWN; ok && k < K_N; k++)
		ok = take_list(r, (enum key)k, e[k], err, errlen);
	names_free(&ns);
	return ok;
}
