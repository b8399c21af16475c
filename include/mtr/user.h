/* Dropping root for the app (--user USER[:GROUP]), as gosu, su-exec and setpriv do. */
#ifndef MTR_USER_H
#define MTR_USER_H

#include "mtr/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define USER_MAX_GROUPS 256
#define USER_HOME_MAX 1024

/* Who the app runs as: fixed-size, so that a forked child can use it without allocating. */
struct user_ids {
	uid_t uid;
	gid_t gid;                        /* the primary group */
	size_t ngroups;                   /* supplementary groups, the primary one included */
	gid_t groups[USER_MAX_GROUPS];
	char home[USER_HOME_MAX];         /* HOME for the app: the passwd entry's, else "/" */
};

/* Resolves "USER[:GROUP]", each a name or a number: a user found in the passwd database
 * gives its uid, primary group, home and supplementary groups (from the group database); a
 * number without an entry is that uid with group 0 and HOME=/ (as Docker's --user). With
 * GROUP the app has exactly that group, no supplementary ones (as su-exec). False with err
 * naming what is wrong (an unknown name, an empty part, a number out of range). */
bool user_resolve(const char *spec, struct user_ids *u, char *err, size_t errlen) MTR_MUST_CHECK;

/* In the app's process before exec: supplementary groups, group, user (in that order, and
 * checked: root cannot be regained afterwards). Only system calls, so it may run between
 * fork and exec; HOME=u->home is the caller's to set. False with errno. */
bool user_become(const struct user_ids *u) MTR_MUST_CHECK;

/* The ids as one line "uid:gid:g1,g2,...:home", for the re-executed supervisor (caller
 * frees), and back; user_decode is false on anything else. */
char *user_encode(const struct user_ids *u);
bool user_decode(const char *text, struct user_ids *u) MTR_MUST_CHECK;

#endif
