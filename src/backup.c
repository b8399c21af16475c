/* Phase 6: pg_dump before migrating, to a private file that is verified, then kept or rotated. */
#include "mtr/backup.h"
#include "mtr/exitcode.h"
#include "mtr/log.h"
#include "mtr/proc.h"

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *backup_default_dir(void)
{
	return geteuid() == 0 ? "/var/backups/migrate-then-run" : "./backups";
}

/* pg_dump's major version from `pg_dump --version` ("pg_dump (PostgreSQL) 15.18 (Debian …)"). */
int backup_parse_version(const char *text)
{
	const char *p = strstr(text, ") ");
	if (!p)
		return -1;
	p += 2;
	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	long v = strtol(p, NULL, 10);
	return errno || v > INT_MAX ? -1 : (int)v; /* no version, rather than a wrapped one */
}

struct lines {
	char text[4096];
	size_t len;
};

static void keep_line(void *ctx, const char *stream, const char *line)
{
	struct lines *l = ctx;
	(void)stream;
	int n = snprintf(l->text + l->len, sizeof l->text - l->len, "%s%s", l->len ? " | " : "", line);
	if (n > 0 && l->len + (size_t)n < sizeof l->text)
		l->len += (size_t)n;
}

/* The connection's settings as libpq environment variables (PGHOST, PGPASSWORD …): how a
 * child reaches the same database without a password in its argv. Caller frees (argv_free). */
static char **child_env(PGconn *conn)
{
	size_t n = 0;
	while (environ[n])
		n++;
	PQconninfoOption *opts = PQconninfo(conn);
	size_t extra = 0;
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		extra++;
	char **env = xcalloc(n + extra + 1, sizeof *env);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "PG", 2) != 0)
			env[k++] = xstrdup(environ[i]);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (o->envvar && o->val && *o->val && strcmp(o->keyword, "application_name") != 0)
			env[k++] = xasprintf("%s=%s", o->envvar, o->val);
	env[k++] = xstrdup("PGAPPNAME=migrate-then-run/backup");
	env[k] = NULL;
	PQconninfoFree(opts);
	return env;
}

static void free_env(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}

/* Runs argv to completion with its output kept (for error messages). */
/* ctx (the line collector) is also what tick receives: struct progress begins with it. */
static bool run_tool(char *const *argv, char **env, const struct sigstate *sigs, int out_fd,
		     void (*tick)(void *), struct proc_result *r, struct lines *l)
{
	struct proc_spec spec = {.argv = argv, .envp = env, .sigs = sigs, .stop_grace_ms = 5000};
	if (out_fd >= 0) {
		spec.stdout_to_fd = true;
		spec.stdout_fd = out_fd;
	}
	if (tick) {
		spec.on_tick = tick;
		spec.tick_ms = 5000;
	}
	return proc_run(&spec, keep_line, l, r);
}

struct progress {
	struct lines lines; /* first, so that the line callback and the tick share one ctx */
	int fd;
	int64_t start;
};

static void on_tick(void *ctx)
{
	struct progress *p = ctx;
	struct stat st;
	if (fstat(p->fd, &st) != 0)
		return;
	int64_t ms = now_ms() - p->start;
	log_event(LOG_INFO, "backup.progress",
		  LOG_FIELDS(LF_I("bytes", st.st_size), LF_I("elapsed_ms", ms),
			     LF_I("bytes_per_s", ms > 0 ? (long long)st.st_size * 1000 / ms : 0)),
		  "backing up: %lld bytes so far", (long long)st.st_size);
}

static void safe_part(char *out, size_t len, const char *in)
{
	size_t o = 0;
	for (; *in && o + 1 < len; in++)
		out[o++] = (char)((isalnum((unsigned char)*in) || *in == '_' || *in == '.') ? *in : '_');
	out[o] = '\0';
}

/* Deletes our oldest backups of this database beyond keep; never touches other files. */
static void rotate(const char *dir, const char *prefix, long keep)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	size_t plen = strlen(prefix);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		/* A partial file of this database from a run that was killed: only the lock holder
		 * backs up a database, so it is nobody's now. */
		if (e->d_name[0] == '.' && strncmp(e->d_name + 1, prefix, plen) == 0 &&
		    strstr(e->d_name, ".partial.")) {
			char *stale = xasprintf("%s/%s", dir, e->d_name);
			if (unlink(stale) == 0)
				log_event(LOG_INFO, "backup.rotated", LOG_FIELDS(LF_S("path", stale), LF_I("keep", keep)),
					  "removed %s, left by an interrupted backup", stale);
			free(stale);
			continue;
		}
		/* <prefix><YYYYmmddTHHMMSSZ>-….dump */
		if (strncmp(e->d_name, prefix, plen) != 0 || len < plen + 17 || strcmp(e->d_name + len - 5, ".dump") != 0 ||
		    e->d_name[plen + 8] != 'T' || e->d_name[plen + 15] != 'Z')
			continue;
		names = xrealloc(names, (n + 1) * sizeof *names);
		names[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	/* The timestamp right after the prefix makes name order time order. */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *t = names[k];
			names[k] = names[k - 1];
			names[k - 1] = t;
		}
	for (size_t i = 0; i + (size_t)keep < n; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		if (unlink(path) == 0)
			log_event(LOG_INFO, "backup.rotated", LOG_FIELDS(LF_S("path", path), LF_I("keep", keep)),
				  "removed the old backup %s (--backup-keep %ld)", path, keep);
		free(path);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int fail(struct backup_result *r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct backup_result *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof r->err, fmt, ap);
	va_end(ap);
	r->code = code;
	return code;
}

int backup_run(const struct backup_opts *o, PGconn *conn, const char *from, const char *to,
	       const struct sigstate *sigs, struct backup_result *r)
{
	memset(r, 0, sizeof *r);
	char **env = NULL;
	char *tmp = NULL, *final = NULL;
	int fd = -1;
	struct lines l = {0};
	struct proc_result pr;
	int64_t start = now_ms();

	/* pg_dump refuses a newer server: say so before dumping anything. */
	char *version_argv[] = {(char *)o->pg_dump, "--version", NULL};
	env = child_env(conn);
	if (!run_tool(version_argv, env, sigs, -1, NULL, &pr, &l)) {
		fail(r, MTR_EXIT_BACKUP,
		     "%s not found: install PostgreSQL's client tools (Debian: postgresql-client-%d) "
		     "or pass --backup=off",
		     o->pg_dump, PQserverVersion(conn) / 10000);
		goto out;
	}
	if (pr.stop_signal) {
		r->signo = pr.stop_signal;
		r->code = MTR_EXIT_SIGNAL_BASE + pr.stop_signal;
		goto out;
	}
	int dump_major = backup_parse_version(l.text), server_major = PQserverVersion(conn) / 10000;
	if (pr.outcome != PROC_EXITED || pr.exit_code != 0 || dump_major < 0) {
		fail(r, MTR_EXIT_BACKUP, "%s --version did not answer as pg_dump does (%s); check the "
		     "PostgreSQL client installation", o->pg_dump, l.len ? l.text : "no output");
		goto out;
	}
	if (dump_major < server_major) {
		fail(r, MTR_EXIT_BACKUP,
		     "pg_dump is version %d but the server is version %d: pg_dump cannot dump a newer "
		     "server; install postgresql-client-%d in the image",
		     dump_major, server_major, server_major);
		goto out;
	}

	if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
		fail(r, MTR_EXIT_BACKUP, "cannot create the backup directory %s: %s", o->dir, strerror(errno));
		goto out;
	}
	char db[64], f[64], t[64], stamp[32];
	safe_part(db, sizeof db, PQdb(conn));
	safe_part(f, sizeof f, from && *from ? from : "empty");
	safe_part(t, sizeof t, to && *to ? to : "head");
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
	char prefix[96];
	snprintf(prefix, sizeof prefix, "mtr-%s-", db);
	final = xasprintf("%s/%s%s-%s-to-%s.dump", o->dir, prefix, stamp, f, t);
	tmp = xasprintf("%s/.%s%s.partial.%d", o->dir, prefix, stamp, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fail(r, MTR_EXIT_BACKUP, "cannot create a file in the backup directory %s: %s", o->dir,
		     strerror(errno));
		goto out;
	}
	struct progress prog = {.fd = fd, .start = start};
	char *dump_argv[] = {(char *)o->pg_dump, "--format=custom", "--no-password", NULL};
	if (!run_tool(dump_argv, env, sigs, fd, on_tick, &pr, &prog.lines)) {
		fail(r, MTR_EXIT_BACKUP, "cannot run %s: %s", o->pg_dump, pr.err);
		goto out;
	}
	if (pr.stop_signal) {
		r->signo = pr.stop_signal;
		r->code = MTR_EXIT_SIGNAL_BASE + pr.stop_signal;
		goto out;
	}
	if (pr.outcome != PROC_EXITED || pr.exit_code != 0) {
		fail(r, MTR_EXIT_BACKUP, "pg_dump failed (%s %d): %s",
		     pr.outcome == PROC_EXITED ? "exit status" : "signal",
		     pr.outcome == PROC_EXITED ? pr.exit_code : pr.term_signal,
		     prog.lines.len ? prog.lines.text : "no message");
		goto out;
	}
	if (fsync(fd) != 0) {
		fail(r, MTR_EXIT_BACKUP, "cannot write the backup %s: %s", tmp, strerror(errno));
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size == 0) {
		fail(r, MTR_EXIT_BACKUP, "pg_dump wrote nothing to %s", tmp);
		goto out;
	}
	r->bytes = (long long)st.st_size;
	close(fd);
	fd = -1;

	/* A dump that was cut off looks like a file until one tries to restore it. */
	struct lines vl = {0};
	char *verify_argv[] = {(char *)o->pg_restore, "--list", tmp, NULL};
	int64_t vstart = now_ms();
	if (!run_tool(verify_argv, env, sigs, -1, NULL, &pr, &vl) || pr.stop_signal ||
	    pr.outcome != PROC_EXITED || pr.exit_code != 0) {
		if (pr.stop_signal) {
			r->signo = pr.stop_signal;
			r->code = MTR_EXIT_SIGNAL_BASE + pr.stop_signal;
		} else {
			fail(r, MTR_EXIT_BACKUP, "the dump does not read back with %s --list: %s",
			     o->pg_restore, vl.len ? vl.text : pr.err);
		}
		goto out;
	}
	r->verify_ms = now_ms() - vstart;
	if (rename(tmp, final) != 0) {
		fail(r, MTR_EXIT_BACKUP, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
		goto out;
	}
	int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	snprintf(r->path, sizeof r->path, "%s", final);
	r->ms = now_ms() - start;
	rotate(o->dir, prefix, o->keep);
out:
	if (fd >= 0)
		close(fd);
	if (tmp && r->code)
		unlink(tmp); /* nothing partial is left behind */
	free(tmp);
	free(final);
	free_env(env);
	return r->code;
}
