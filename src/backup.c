/* Phase 6: pg_dump before migrating, to a private file that is verified, then kept or rotated. */
#include "mtr/backup.h"
#include "mtr/backup_stream.h"
#include "mtr/backup_verify.h"
#include "mtr/exitcode.h"
#include "mtr/fileio.h"
#include "mtr/http.h"
#include "mtr/log.h"
#include "mtr/pg.h"
#include "mtr/proc.h"
#include "mtr/retry.h"
#include "mtr/strbuf.h"
#include "mtr/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define BACKUP_SYSTEM_DIR "/var/backups/migrate-then-run"

const char *backup_default_dir(void)
{
	/* A non-root image that prepared the directory (Dockerfile.example does) uses it too. */
	if (geteuid() == 0 || access(BACKUP_SYSTEM_DIR, W_OK | X_OK) == 0)
		return BACKUP_SYSTEM_DIR;
	return "./backups";
}

/* What to do when the backup directory is not ours to write (read-only root filesystem,
 * non-root user): "" for other errors. */
static const char *dir_fix(int e)
{
	if (e != EACCES && e != EPERM && e != EROFS)
		return "";
	return "; the backups need a writable directory: mount a volume and set MTR_BACKUP_DIR "
	       "(--backup-dir) to it";
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

/* A tool's output, kept for error messages: its lines joined by " | ", at most this long (a
 * chatty tool cannot grow it without bound, and r->err is shorter anyway). */
#define LINES_MAX 4096

static void keep_line(void *ctx, const char *stream, const char *line)
{
	(void)stream;
	proc_keep_line(ctx, LINES_MAX, line);
}

/* The kept output, or `none` when the tool said nothing. */
static const char *lines_or(const struct strbuf *b, const char *none)
{
	return b->len ? b->s : none;
}

/* The connection's settings as libpq environment variables (PGHOST, PGPASSWORD …): how a
 * child reaches the same database without a password in its argv. Caller frees (free_env). */
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

/* How pg_dump is getting on: the bytes its dump has so far, read by the progress ticks and by
 * the stall watch. */
struct progress {
	struct strbuf lines; /* first, so that the line callback and the tick share one ctx */
	int fd;                             /* the file pg_dump writes, or -1 */
	struct backup_stream *stream; /* else the stream that counts the bytes */
	int64_t start;
	int64_t stall_ms;   /* 0: no stall watch */
	long long seen;     /* the size when the watch last saw it grow */
	int64_t grew_at;
	bool stalled;       /* the watch ended pg_dump, which was getting nothing to write */
	bool held_up;       /* the watch ended pg_dump, whose output was not being taken */
};

/* The dump's size so far; false when there is nothing to ask. */
static bool dumped_bytes(const struct progress *p, long long *bytes)
{
	struct stat st;
	if (p->fd >= 0 && fstat(p->fd, &st) == 0)
		*bytes = (long long)st.st_size;
	else if (p->stream)
		*bytes = backup_stream_bytes(p->stream);
	else
		return false;
	return true;
}

/* The stall watch: false (pg_dump's group is killed) once the dump has not grown for
 * stall_ms. A server that stopped answering leaves pg_dump waiting with no deadline of its
 * own (it has no keepalives, and a frozen peer answers them anyway). */
static bool not_stalled(void *ctx)
{
	struct progress *p = ctx;
	long long bytes = 0;
	int64_t now = now_ms();
	if (!dumped_bytes(p, &bytes) || bytes != p->seen) {
		p->seen = bytes;
		p->grew_at = now;
		return true;
	}
	if (now - p->grew_at < p->stall_ms)
		return true;
	/* pg_dump's output waiting in the stream's pipe: the upload or the copy the stream writes
	 * (the verification, without a local file) stopped taking it, not the server */
	if (p->stream && backup_stream_backed_up(p->stream))
		p->held_up = true;
	else
		p->stalled = true;
	return false;
}

static void on_tick(void *ctx)
{
	struct progress *p = ctx;
	long long bytes;
	if (!dumped_bytes(p, &bytes))
		return;
	int64_t ms = now_ms() - p->start;
	log_event(LOG_INFO, "backup.progress",
		  LOG_FIELDS(LF_I("bytes", bytes), LF_I("elapsed_ms", ms),
			     LF_I("bytes_per_s", ms > 0 ? bytes * 1000 / ms : 0)),
		  "backing up: %lld bytes so far", bytes);
}

/* Runs argv to completion with its output kept in *out (for error messages). With prog (whose
 * first member is out), backup.progress every 5 s and, with prog->stall_ms, the stall watch. */
static bool run_tool(char *const *argv, char **env, const struct sigstate *sigs, int out_fd,
		     struct progress *prog, struct proc_result *r, struct strbuf *out)
{
	struct proc_spec spec = {.argv = argv, .envp = env, .sigs = sigs, .stop_grace_ms = 5000};
	if (out_fd >= 0) {
		spec.stdout_to_fd = true;
		spec.stdout_fd = out_fd;
	}
	if (prog) {
		spec.on_tick = on_tick;
		spec.tick_ms = 5000;
	}
	if (prog && prog->stall_ms > 0) {
		prog->grew_at = now_ms();
		spec.watch = not_stalled;
		spec.watch_ms = prog->stall_ms < 4000 ? (prog->stall_ms + 3) / 4 : 1000;
	}
	return proc_run(&spec, keep_line, out, r);
}

struct file_reader {
	int fd;
};

static size_t file_reader_read(char *buf, size_t size, void *ctx)
{
	struct file_reader *f = ctx;
	ssize_t n;
	do
		n = read(f->fd, buf, size);
	while (n < 0 && errno == EINTR);
	return n < 0 ? HTTP_READ_ABORT : (size_t)n;
}

/* The upload's URL: one ending in '/' (before any query) names a directory: add the name. */
static char *upload_target(const char *url, const char *name)
{
	size_t q = strcspn(url, "?#");
	if (q == 0 || url[q - 1] != '/')
		return xstrdup(url);
	return xasprintf("%.*s%s%s", (int)q, url, name, url + q);
}

static void safe_part(char *out, size_t len, const char *in)
{
	size_t o = 0;
	for (; *in && o + 1 < len; in++)
		out[o++] = (char)((isalnum((unsigned char)*in) || *in == '_' || *in == '.') ? *in : '_');
	out[o] = '\0';
}

/* A partial file of this database from a run that was killed: only the lock holder backs up a
 * database, so it is nobody's now. Its name: .<prefix><stamp>.partial.<random> (job_partial). */
static bool remove_if_stale(const char *dir, const char *prefix, const char *name, long keep)
{
	if (name[0] != '.' || strncmp(name + 1, prefix, strlen(prefix)) != 0 || !strstr(name, ".partial."))
		return false;
	char *stale = xasprintf("%s/%s", dir, name);
	if (unlink(stale) == 0)
		log_event(LOG_INFO, "backup.rotated", LOG_FIELDS(LF_S("path", stale), LF_I("keep", keep)),
			  "removed %s, left by an interrupted backup", stale);
	free(stale);
	return true;
}

/* Deletes our oldest backups of this database beyond keep, and partial files of this database
 * left by an interrupted run; never touches other files. */
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
		if (remove_if_stale(dir, prefix, e->d_name, keep))
			continue;
		/* <prefix><YYYYmmddTHHMMSS.mmmZ>-….dump, or …SSZ as earlier versions named them */
		if (strncmp(e->d_name, prefix, plen) != 0 || len < plen + 21 || strcmp(e->d_name + len - 5, ".dump") != 0 ||
		    e->d_name[plen + 8] != 'T' ||
		    (e->d_name[plen + 15] != 'Z' && (e->d_name[plen + 15] != '.' || e->d_name[plen + 19] != 'Z')))
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

/* Records why the backup failed (exit code 73); returns false, for `return failed(…)`. */
static bool failed(struct backup_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool failed(struct backup_result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof r->err, fmt, ap);
	va_end(ap);
	r->code = MTR_EXIT_BACKUP;
	return false;
}

/* Records that a stop signal ended the backup (exit code 128+n); returns false. */
static bool stopped_by(struct backup_result *r, int signo)
{
	r->signo = signo;
	r->code = MTR_EXIT_SIGNAL_BASE + signo;
	return false;
}

/* 411 Length Required, 501 Not Implemented: the server refused a chunked body. */
static bool wants_length_first(const struct http_result *h)
{
	return h->status == 411 || h->status == 501;
}

#define LENGTH_HINT \
	" (the server wants the length first: set --backup-dir so that the file is uploaded after the dump)"

/* One backup, as backup_run's steps share it. The job owns env, stop_fd, name, url, tmp, final
 * and fd (job_end frees them, and removes tmp if the backup failed); o, conn, sigs and r are the
 * caller's. */
struct job {
	const struct backup_opts *o;
	PGconn *conn;
	const struct sigstate *sigs;
	struct backup_result *r;
	char **env;             /* pg_dump's and pg_restore's environment (child_env) */
	int stop_fd;            /* readable while a stop signal is pending: ends an upload */
	int64_t start;
	char prefix[96];        /* "mtr-<db>-": what rotation takes for ours */
	char stamp[UTC_LEN];
	char *name;             /* <prefix><stamp>-<from>-to-<to>.dump */
	char *url;              /* where the backup is uploaded, or NULL */
	bool stream;            /* uploaded while pg_dump writes, else from the file afterwards */
	char *tmp, *final;      /* with a local copy: the partial file and the backup's name */
	int fd;                 /* the partial file, or -1 */
	unsigned max_attempts;  /* of the upload: the first and 3 retries */
	struct backoff backoff;
	struct backup_stream_result sr; /* the last streamed attempt's, zero if none */
};

/* One run of pg_dump and what became of it. */
struct dump {
	struct progress prog;  /* pg_dump's messages, and what its progress ticks read */
	struct proc_result pr; /* pg_dump's; stop_signal also a stop during the checks after it */
	bool ran;              /* pg_dump could be started */
	bool dumped;           /* and it exited 0, with no stop signal */
	bool good;             /* and the dump is complete: written, not empty, verified */
	int write_errno;       /* why the stream could not write the local file, or 0 */
};

static void job_begin(struct job *j, const struct backup_opts *o, PGconn *conn,
		      const struct sigstate *sigs, struct backup_result *r)
{
	memset(r, 0, sizeof *r);
	*j = (struct job){.o = o, .conn = conn, .sigs = sigs, .r = r, .fd = -1, .max_attempts = 4};
	j->start = now_ms();
	j->stop_fd = signals_stop_fd();
	j->env = child_env(conn);
}

static void job_end(struct job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	if (j->tmp && j->r->code)
		unlink(j->tmp); /* nothing partial is left behind */
	free(j->tmp);
	free(j->final);
	free(j->name);
	free(j->url);
	signals_stop_close(j->stop_fd);
	free_env(j->env);
}

/* pg_dump refuses a newer server: say so before dumping anything. */
static bool check_pg_dump(struct job *j)
{
	const char *pg_dump = j->o->pg_dump;
	char *argv[] = {(char *)pg_dump, "--version", NULL};
	struct strbuf out = STRBUF_INIT;
	struct proc_result pr;
	int server_major = PQserverVersion(j->conn) / 10000;
	bool ok = false;
	if (!run_tool(argv, j->env, j->sigs, -1, NULL, &pr, &out)) {
		failed(j->r, "%s not found: install PostgreSQL's client tools (Debian: postgresql-client-%d) "
		       "or pass --backup=off", pg_dump, server_major);
		goto fail;
	}
	if (pr.stop_signal) {
		stopped_by(j->r, pr.stop_signal);
		goto fail;
	}
	int dump_major = backup_parse_version(lines_or(&out, ""));
	if (pr.outcome != PROC_EXITED || pr.exit_code != 0 || dump_major < 0) {
		failed(j->r, "%s --version did not answer as pg_dump does (%s); check the PostgreSQL "
		       "client installation", pg_dump, lines_or(&out, "no output"));
		goto fail;
	}
	if (dump_major < server_major) {
		failed(j->r, "pg_dump is version %d but the server is version %d: pg_dump cannot dump a "
		       "newer server; install postgresql-client-%d in the image",
		       dump_major, server_major, server_major);
		goto fail;
	}
	ok = true;
fail:
	sb_free(&out);
	return ok;
}

/* The name's FROM when the source could not say where the database is: "empty" only when it
 * holds no table, view or sequence of its own (our failure memory aside), else "current" (the
 * state it is in, whatever made it). */
static const char *unnamed_from(struct job *j)
{
	char n[32] = "";
	struct pg_error err;
	bool ok = pg_query_value(j->conn,
				 "SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c JOIN "
				 "pg_catalog.pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind IN "
				 "('r', 'p', 'v', 'm', 'S', 'f') AND s.nspname NOT IN ('pg_catalog', "
				 "'information_schema') AND s.nspname NOT LIKE 'pg\\_%' AND NOT "
				 "(s.nspname = 'public' AND c.relname = 'mtr_failure_state')",
				 PG_QUERY_MS, j->stop_fd, n, sizeof n, &err);
	return ok && strcmp(n, "0") == 0 ? "empty" : "current";
}

/* <prefix><stamp>-<from>-to-<to>[-N].dump that no file in the directory has yet: two backups
 * in the same millisecond get a sequence number rather than one replacing the other. */
static char *free_name(const char *dir, const char *prefix, const char *stamp, const char *f,
		       const char *t)
{
	for (int seq = 1;; seq++) {
		char *name = seq == 1 ? xasprintf("%s%s-%s-to-%s.dump", prefix, stamp, f, t)
				      : xasprintf("%s%s-%s-to-%s-%d.dump", prefix, stamp, f, t, seq);
		struct stat st;
		char *path = dir ? xasprintf("%s/%s", dir, name) : NULL;
		bool taken = path && lstat(path, &st) == 0;
		free(path);
		if (!taken)
			return name;
		free(name);
	}
}

/* The backup directory, the backup's name and the upload's URL (as r->uploaded shows it). */
static bool job_name(struct job *j, const char *from, const char *to)
{
	const struct backup_opts *o = j->o;
	if (o->dir && mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;
		return failed(j->r, "cannot create the backup directory %s as uid %u: %s%s", o->dir,
			      (unsigned)geteuid(), strerror(e), dir_fix(e));
	}
	char db[64], f[64], t[64];
	safe_part(db, sizeof db, PQdb(j->conn));
	safe_part(f, sizeof f, from && *from ? from : unnamed_from(j));
	safe_part(t, sizeof t, to && *to ? to : "head");
	utc_format(wall_ms(), UTC_COMPACT_MS, j->stamp, sizeof j->stamp);
	snprintf(j->prefix, sizeof j->prefix, "mtr-%s-", db);
	j->name = free_name(o->dir, j->prefix, j->stamp, f, t);
	if (o->upload_url) {
		j->url = upload_target(o->upload_url, j->name);
		char *pub = http_url_public(j->url, false);
		snprintf(j->r->uploaded, sizeof j->r->uploaded, "%s", pub);
		free(pub);
	}
	/* Streams while pg_dump writes, unless the server must know the length first. */
	j->stream = j->url && !(o->dir && http_needs_length(j->url));
	backoff_init(&j->backoff, 500, 8000, random_u64());
	return true;
}

/* The partial file, private (0600) and under a name nobody could plant a link at; rotation
 * knows it by ".<prefix>" and ".partial." as one an interrupted run left. */
static bool job_partial(struct job *j)
{
	const char *dir = j->o->dir;
	char *prefix = xasprintf(".%s%s.partial.", j->prefix, j->stamp);
	j->final = xasprintf("%s/%s", dir, j->name);
	j->fd = file_create_temp(dir, prefix, 0600, &j->tmp);
	if (j->fd < 0) {
		int e = errno;
		failed(j->r, "cannot create a file in the backup directory %s as uid %u: %s%s", dir,
		       (unsigned)geteuid(), strerror(e), dir_fix(e));
	}
	free(prefix);
	return j->fd >= 0;
}

/* Logs a failed upload attempt and sleeps the next backoff delay; false if a stop signal
 * ended the sleep (r says which). */
static bool upload_pause(struct job *j, const char *err, const char *next)
{
	int64_t delay = backoff_next(&j->backoff);
	log_event(LOG_WARN, "backup.upload.retry",
		  LOG_FIELDS(LF_I("attempt", j->r->upload_attempts), LF_S("error", err), LF_I("delay_ms", delay)),
		  "the upload failed (%s); %s in %lldms", err, next, (long long)delay);
	int sig = signals_sleep(j->sigs, delay);
	return sig ? stopped_by(j->r, sig) : true;
}

/* pg_dump into out_fd. A table lock it cannot get within half the stall timeout fails it with
 * its own words, naming the table, before the stall watch would end it for its silence. */
static void run_pg_dump(struct job *j, struct dump *d, int out_fd)
{
	char lock_wait[48];
	snprintf(lock_wait, sizeof lock_wait, "--lock-wait-timeout=%lld", (long long)(j->o->stall_ms / 2));
	char *argv[] = {(char *)j->o->pg_dump, "--format=custom", "--no-password",
			j->o->stall_ms > 1 ? lock_wait : NULL, NULL};
	d->prog.stall_ms = j->o->stall_ms;
	d->ran = run_tool(argv, j->env, j->sigs, out_fd, &d->prog, &d->pr, &d->prog.lines);
	d->dumped = d->ran && !d->pr.stop_signal && d->pr.outcome == PROC_EXITED && d->pr.exit_code == 0;
	d->good = d->dumped;
}

/* The local file as pg_dump left it: on disk (fsync now, before the stream's verdict, so that
 * a write error never completes the upload) and not empty. */
static void check_written(struct job *j, struct dump *d)
{
	if (!d->dumped || j->fd < 0)
		return;
	/* not good here: the stream could not write the file */
	int e = !d->good ? d->write_errno : fsync(j->fd) != 0 ? errno : 0;
	if (e) {
		d->good = false;
		failed(j->r, "cannot write the backup %s: %s", j->tmp, strerror(e));
		return;
	}
	struct stat st;
	if (fstat(j->fd, &st) != 0 || st.st_size == 0) {
		d->good = false;
		failed(j->r, "pg_dump wrote nothing to %s", j->tmp);
		return;
	}
	j->r->bytes = (long long)st.st_size;
}

/* The partial file once more, for reading: by its name (rotation and our temporary names keep
 * others off it), checked to be the file pg_dump writes. -1 with errno. */
static int reopen_partial(const struct job *j)
{
	int fd = open(j->tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat a, b;
	if (fd >= 0 && (fstat(fd, &a) != 0 || fstat(j->fd, &b) != 0 || a.st_dev != b.st_dev ||
			a.st_ino != b.st_ino)) {
		close(fd);
		errno = ESTALE;
		fd = -1;
	}
	return fd;
}

/* A dump that was cut off looks like a file until one tries to restore it, so pg_restore reads
 * it all, beside pg_dump: it follows the partial file if there is one (which pg_dump or the
 * stream writes), else the stream writes into it. NULL, with r->err set, if it cannot start. */
static struct backup_verify *verify_start(struct job *j)
{
	char err[256];
	int fd = -1;
	if (j->fd >= 0 && (fd = reopen_partial(j)) < 0) {
		failed(j->r, "cannot read %s to verify it: %s", j->tmp, strerror(errno));
		return NULL;
	}
	struct backup_verify *v = backup_verify_start(j->o->pg_restore, j->env, j->sigs, fd, err,
						      sizeof err);
	if (!v)
		failed(j->r, "%s", err);
	return v;
}

/* The verification's verdict once the dump is over (d->good: complete so far), in d->good. */
static void verify_end(struct job *j, struct dump *d, struct backup_verify *v)
{
	struct backup_verify_result vr;
	if (backup_verify_finish(v, d->good, j->o->stall_ms > 0 ? j->o->stall_ms : -1, j->stop_fd, &vr) &&
	    !d->pr.stop_signal)
		d->pr.stop_signal = signals_stop_read(j->stop_fd);
	j->r->verify_ms = vr.wait_ms;
	if (vr.verdict == VERIFY_GOOD)
		return;
	d->good = false;
	/* A failed write said why already; with no local copy, a verification that failed is why
	 * the stream could not write. A dump that did not finish (pg_dump failed, or the upload
	 * gave up and ended it) is judged by that, not by its verification: an attempt that is
	 * tried again must not leave a failure behind. */
	if (vr.verdict == VERIFY_BAD && !j->r->err[0] && d->dumped)
		failed(j->r, "the dump does not read back with %s: %s", j->o->pg_restore, vr.err);
}

/* pg_dump into the partial file, verified as it is written; false if the verification could
 * not start. */
static bool dump_to_file(struct job *j, struct dump *d)
{
	struct backup_verify *v = verify_start(j);
	if (!v)
		return false;
	d->prog.fd = j->fd;
	run_pg_dump(j, d, j->fd);
	check_written(j, d);
	verify_end(j, d, v);
	return true;
}

/* pg_dump into the stream (which also writes the partial file, if any, or else feeds the
 * verification), the checks, then the verdict that completes or abandons the request. False if
 * the stream or the verification could not start. */
static bool dump_streamed(struct job *j, struct dump *d)
{
	char err[256];
	struct backup_verify *v = verify_start(j);
	if (!v)
		return false;
	bool local = j->fd >= 0;
	struct backup_stream *s = backup_stream_start(j->url, local ? j->fd : backup_verify_input(v), local,
						      err, sizeof err);
	if (!s) {
		struct backup_verify_result ignored;
		if (backup_verify_finish(v, false, -1, -1, &ignored)) {
			/* no stop descriptor: cannot say it was stopped */
		}
		return failed(j->r, "%s", err);
	}
	j->r->streamed = true;
	j->r->upload_attempts++;
	d->prog.stream = s;
	run_pg_dump(j, d, backup_stream_input(s));
	d->prog.stream = NULL; /* the ticks are over; s goes with backup_stream_finish */
	if (!d->dumped) /* a stream that feeds pg_restore must not wait on it to drain */
		backup_verify_abandon(v);
	enum stream_drain dr = backup_stream_drain(s, d->dumped, j->o->stall_ms > 0 ? j->o->stall_ms : -1,
						   j->stop_fd, &d->write_errno);
	if (dr == DRAIN_LATE) { /* what the stream writes to stopped reading: let it go, and fail */
		backup_verify_abandon(v);
		dr = backup_stream_drain(s, false, -1, j->stop_fd, &d->write_errno);
		d->good = false;
		failed(j->r, "pg_dump's output was not taken for %lldms after pg_dump ended: the upload "
		       "or the verification stopped reading it", (long long)j->o->stall_ms);
	}
	if (dr == DRAIN_STOPPED && !d->pr.stop_signal) {
		/* a stop signal arrived after pg_dump ended: take it now */
		d->pr.stop_signal = signals_stop_read(j->stop_fd);
		d->dumped = d->good = false;
	}
	if (d->write_errno)
		d->good = false;
	check_written(j, d);
	if (d->good && j->fd < 0)
		j->r->bytes = backup_stream_bytes(s);
	verify_end(j, d, v);
	if (backup_stream_finish(s, d->good, j->stop_fd, &j->sr) && !d->pr.stop_signal)
		d->pr.stop_signal = signals_stop_read(j->stop_fd);
	return true;
}

enum attempt { ATTEMPT_DONE, ATTEMPT_FAILED, ATTEMPT_AGAIN };

/* What one attempt comes to: the backup is ready to publish, it failed (r says why), or (no local
 * copy) the streamed upload failed in a way worth dumping again for. */
static enum attempt judge(struct job *j, const struct dump *d)
{
	struct backup_result *r = j->r;
	const struct http_result *h = &j->sr.http;
	bool again = false;
	if (d->pr.stop_signal) {
		stopped_by(r, d->pr.stop_signal);
	} else if (!d->ran) {
		failed(r, "cannot run %s: %s", j->o->pg_dump, d->pr.err);
	} else if (j->sr.gave_up) { /* the upload failed first, and pg_dump was ended */
		if (r->upload_attempts < j->max_attempts && http_retryable(h))
			again = true;
		else
			failed(r, "the upload failed after %u attempt%s: %s%s", r->upload_attempts,
			       r->upload_attempts == 1 ? "" : "s", h->err, wants_length_first(h) ? LENGTH_HINT : "");
	} else if (d->prog.held_up && !d->dumped) {
		failed(r, "pg_dump's output was not taken for %lldms (%lld bytes so far): the upload or "
		       "the verification stopped reading it, so pg_dump was ended", (long long)j->o->stall_ms,
		       d->prog.seen);
	} else if (d->prog.stalled && !d->dumped) {
		r->stalled = true;
		failed(r, "pg_dump's dump did not grow for %lldms (%lld bytes written): the server stopped "
		       "answering it (a network partition, a frozen server), or what it writes to stopped "
		       "taking its output, so it was ended; nothing was migrated (raise "
		       "--backup-stall-timeout if pg_dump can rightly be silent that long)",
		       (long long)j->o->stall_ms, d->prog.seen);
	} else if (!d->dumped) {
		failed(r, "pg_dump failed (%s %d): %s", d->pr.outcome == PROC_EXITED ? "exit status" : "signal",
		       d->pr.outcome == PROC_EXITED ? d->pr.exit_code : d->pr.term_signal,
		       lines_or(&d->prog.lines, "no message"));
	} else if (!d->good) {
		if (!r->err[0])
			failed(r, "cannot write the backup: %s", strerror(d->write_errno ? d->write_errno : EIO));
	} else if (!j->stream || j->sr.uploaded || j->o->dir || r->upload_attempts >= j->max_attempts ||
		   !http_retryable(h)) {
		return ATTEMPT_DONE;
	} else {
		again = true; /* no local copy to send again: dump again */
	}
	if (again && upload_pause(j, h->err, "dumping and uploading again"))
		return ATTEMPT_AGAIN;
	return ATTEMPT_FAILED;
}

/* The dump, verified: once, or (no local copy) once per upload attempt. With a local copy there
 * is one attempt, and so one partial file. */
static bool dump(struct job *j)
{
	enum attempt a;
	do {
		struct dump d = {.prog = {.fd = -1, .start = j->start}};
		if (j->o->dir && !job_partial(j))
			return false;
		bool started = j->stream ? dump_streamed(j, &d) : dump_to_file(j, &d);
		a = started ? judge(j, &d) : ATTEMPT_FAILED;
		sb_free(&d.prog.lines);
	} while (a == ATTEMPT_AGAIN);
	return a == ATTEMPT_DONE;
}

/* The verified partial file becomes the backup (fsync, rename, directory fsync), then older
 * ones beyond --backup-keep go. */
static bool publish(struct job *j)
{
	if (!j->tmp)
		return true;
	int fd = j->fd;
	j->fd = -1; /* file_publish closes it either way, and removes tmp on failure */
	if (!file_publish(fd, j->tmp, j->final))
		return failed(j->r, "cannot save the backup %s as %s: %s", j->tmp, j->final, strerror(errno));
	free(j->tmp);
	j->tmp = NULL; /* renamed: nothing partial to remove any more */
	snprintf(j->r->path, sizeof j->r->path, "%s", j->final);
	rotate(j->o->dir, j->prefix, j->o->keep);
	return true;
}

/* One PUT of the backup file, with its length. False if the file could not be read or a stop
 * signal ended the request (r says which); else *ok says whether the server took it. */
static bool upload_file(struct job *j, struct http_result *h, bool *ok)
{
	struct file_reader fr = {open(j->final, O_RDONLY | O_CLOEXEC)};
	struct stat st;
	if (fr.fd < 0 || fstat(fr.fd, &st) != 0) {
		failed(j->r, "cannot read %s to upload it: %s", j->final, strerror(errno));
		if (fr.fd >= 0)
			close(fr.fd);
		return false;
	}
	j->r->upload_attempts++;
	*ok = http_put(j->url, file_reader_read, &fr, (long long)st.st_size, NULL, j->stop_fd, h);
	close(fr.fd);
	return h->signo ? stopped_by(j->r, h->signo) : true;
}

/* The upload from the file, unless the stream already delivered: retried while worth it. */
static bool upload(struct job *j)
{
	struct backup_result *r = j->r;
	if (!j->url || (j->stream && j->sr.uploaded))
		return true;
	struct http_result h = j->sr.http;
	bool ok = false;
	/* A server that refused the chunked stream for want of a length gets the file, once. */
	bool wants_length = j->stream && j->final && wants_length_first(&h);
	if (wants_length && r->upload_attempts >= j->max_attempts)
		j->max_attempts = r->upload_attempts + 1;
	while (!ok && j->final && r->upload_attempts < j->max_attempts) {
		if (wants_length) {
			wants_length = false;
			log_event(LOG_WARN, "backup.upload.retry",
				  LOG_FIELDS(LF_I("attempt", r->upload_attempts), LF_S("error", h.err), LF_I("delay_ms", 0)),
				  "the server refused the streamed upload (%s); sending %s with its length",
				  h.err, j->final);
		} else if (r->upload_attempts > 0) {
			if (!http_retryable(&h))
				break;
			if (!upload_pause(j, h.err, "sending the file again"))
				return false;
		}
		if (!upload_file(j, &h, &ok))
			return false;
	}
	if (ok)
		return true;
	bool chunked = j->stream && !j->final && wants_length_first(&h);
	return failed(r, "the upload failed after %u attempt%s: %s%s%s", r->upload_attempts,
		      r->upload_attempts == 1 ? "" : "s", h.err, chunked ? LENGTH_HINT : "",
		      r->path[0] ? "; the local backup is kept" : "");
}

int backup_run(const struct backup_opts *o, PGconn *conn, const char *from, const char *to,
	       const struct sigstate *sigs, struct backup_result *r)
{
	struct job j;
	job_begin(&j, o, conn, sigs, r);
	if (check_pg_dump(&j) && job_name(&j, from, to) && dump(&j) && publish(&j) && upload(&j))
		r->ms = now_ms() - j.start;
	job_end(&j);
	return r->code;
}
