/* Dropping root for the app (--user USER[:GROUP]), as gosu, su-exec and setpriv do. */
#include "mtr/user.h"
#include "mtr/strbuf.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A decimal id: digits only, below (id_t)-1, which means "no change" to setuid and setgid. */
static bool parse_id(const char *s, size_t len, unsigned long *id)
{
	if (len == 0 || len > 10)
		return false;
	unsigned long v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v >= 0xffffffffUL)
		return false;
	*id = v;
	return true;
}

/* A passwd or group entry's strings: grown until the entry fits (ERANGE). */
#define ENTRY_BUF_MIN ((size_t)4096)
#define ENTRY_BUF_MAX ((size_t)1 << 20)

/* The passwd entry of a name, or of a number (then *pw stays NULL when it has none). buf
 * holds its strings (caller frees). errno-style result: 0, or why the lookup failed. */
static int find_passwd(const char *name, bool numeric, unsigned long id, struct passwd *pwd,
		       struct passwd **pw, char **buf)
{
	int rc = ERANGE;
	for (size_t len = ENTRY_BUF_MIN; rc == ERANGE && len <= ENTRY_BUF_MAX; len *= 2) {
		*buf = xrealloc(*buf, len);
		rc = numeric ? getpwuid_r((uid_t)id, pwd, *buf, len, pw) : getpwnam_r(name, pwd, *buf, len, pw);
	}
	return rc;
}

/* The user part: its passwd entry, looked up by name or by number. */
static bool resolve_user(const char *name, struct user_ids *u, char *pw_name, size_t pw_len,
			 char *err, size_t errlen)
{
	unsigned long id = 0;
	bool numeric = parse_id(name, strlen(name), &id);
	struct passwd pwd, *pw = NULL;
	char *buf = NULL;
	int rc = find_passwd(name, numeric, id, &pwd, &pw, &buf);
	bool ok = false;
	if (!pw && !numeric) {
		set_err(err, errlen, "--user: no user '%s' in the passwd database (%s); give a name "
			"from the image's /etc/passwd or a numeric uid", name, rc ? strerror(rc) : "not found");
		goto fail;
	}
	u->uid = pw ? pw->pw_uid : (uid_t)id;
	u->gid = pw ? pw->pw_gid : 0;
	const char *home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/";
	if (strlen(home) >= sizeof u->home || (pw && strlen(pw->pw_name) >= pw_len)) {
		set_err(err, errlen, "--user: the name or home directory of '%s' is too long", name);
		goto fail;
	}
	snprintf(u->home, sizeof u->home, "%s", home);
	snprintf(pw_name, pw_len, "%s", pw ? pw->pw_name : "");
	ok = true;
fail:
	free(buf);
	return ok;
}

static bool resolve_group(const char *name, gid_t *gid, char *err, size_t errlen)
{
	unsigned long id;
	if (parse_id(name, strlen(name), &id)) {
		*gid = (gid_t)id;
		return true;
	}
	struct group grp, *gr = NULL;
	char *buf = NULL;
	int rc = ERANGE;
	for (size_t len = ENTRY_BUF_MIN; rc == ERANGE && len <= ENTRY_BUF_MAX; len *= 2) {
		buf = xrealloc(buf, len);
		rc = getgrnam_r(name, &grp, buf, len, &gr);
	}
	if (gr)
		*gid = gr->gr_gid;
	else
		set_err(err, errlen, "--user: no group '%s' in the group database (%s); give a name "
			"from the image's /etc/group or a numeric gid", name, rc ? strerror(rc) : "not found");
	free(buf);
	return gr != NULL;
}

bool user_resolve(const char *spec, struct user_ids *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	const char *colon = strchr(spec, ':');
	size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
	if (ulen == 0 || (colon && colon[1] == '\0')) {
		set_err(err, errlen, "--user: expected USER or USER:GROUP (names or numbers), got '%s'", spec);
		return false;
	}
	char *name = xstrndup(spec, ulen);
	char pw_name[256]; /* "" when the user has no passwd entry */
	bool ok = resolve_user(name, u, pw_name, sizeof pw_name, err, errlen);
	if (ok && colon) {
		ok = resolve_group(colon + 1, &u->gid, err, errlen);
		u->groups[0] = u->gid;
		u->ngroups = 1;
	} else if (ok && pw_name[0]) {
		int n = USER_MAX_GROUPS;
		if (getgrouplist(pw_name, u->gid, u->groups, &n) < 0) {
			set_err(err, errlen, "--user: '%s' is in more than %d groups", name, USER_MAX_GROUPS);
			ok = false;
		}
		u->ngroups = n > 0 ? (size_t)n : 0;
	} else if (ok) {
		u->groups[0] = u->gid;
		u->ngroups = 1;
	}
	free(name);
	return ok;
}

bool user_become(const struct user_ids *u)
{
	if (setgroups(u->ngroups, u->groups) != 0 || setgid(u->gid) != 0 || setuid(u->uid) != 0)
		return false;
	/* setuid from root drops every id at once; make sure of it before running anything. */
	if (u->uid != 0 && (setuid(0) == 0 || geteuid() != u->uid)) {
		errno = EPERM;
		return false;
	}
	return true;
}

char *user_encode(const struct user_ids *u)
{
	struct strbuf b = STRBUF_INIT;
	sb_addf(&b, "%u:%u:", (unsigned)u->uid, (unsigned)u->gid);
	for (size_t i = 0; i < u->ngroups; i++)
		sb_addf(&b, "%s%u", i ? "," : "", (unsigned)u->groups[i]);
	sb_addf(&b, ":%s", u->home);
	return sb_take(&b);
}

/* Reads one id ending at the separator sep; *p moves past it. */
static bool next_id(const char **p, char sep, unsigned long *id)
{
	const char *end = strchr(*p, sep);
	if (!end || !parse_id(*p, (size_t)(end - *p), id))
		return false;
	*p = end + 1;
	return true;
}

bool user_decode(const char *text, struct user_ids *u)
{
	memset(u, 0, sizeof *u);
	const char *p = text;
	unsigned long uid, gid, g;
	if (!next_id(&p, ':', &uid) || !next_id(&p, ':', &gid))
		return false;
	u->uid = (uid_t)uid;
	u->gid = (gid_t)gid;
	while (*p != ':') {
		size_t len = strcspn(p, ",:");
		if (u->ngroups == USER_MAX_GROUPS || !parse_id(p, len, &g))
			return false;
		u->groups[u->ngroups++] = (gid_t)g;
		p += len;
		if (*p == ',')
			p++;
	}
	p++;
	if (!*p || strlen(p) >= sizeof u->home)
		return false;
	snprintf(u->home, sizeof u->home, "%s", p);
	return true;
}
