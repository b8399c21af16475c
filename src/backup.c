/* Phase 6: pg_dump before migrating, to a private file that is verified, then kept or rotated. */
#include "mtr/backup.h"
#include "mtr/exitcode.h"
#include "mtr/http.h"
#include "mtr/log.h"
#include "mtr/proc.h"
#include "mtr/retry.h"

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
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
	int fd;                   /* the file pg_dump writes, or -1 */
	const long long *counter; /* else the bytes streamed so far */
	int64_t start;
};

static void on_tick(void *ctx)
{
	struct progress *p = ctx;
	struct stat st;
	long long bytes;
	if (p->fd >= 0 && fstat(p->fd, &st) == 0)
		bytes = (long long)st.st_size;
	else if (p->counter)
		bytes = __atomic_load_n(p->counter, __ATOMIC_RELAXED);
	else
		return;
	int64_t ms = now_ms() - p->start;
	log_event(LOG_INFO, "backup.progress",
		  LOG_FIELDS(LF_I("bytes", bytes), LF_I("elapsed_ms", ms),
			     LF_I("bytes_per_s", ms > 0 ? bytes * 1000 / ms : 0)),
		  "backing up: %lld bytes so far", bytes);
}

/* Streaming: a thread takes pg_dump's output from a pipe, writes the local file and feeds
 * the PUT; the request's last chunk waits for the main thread's verdict on the dump. */
struct stream {
	int in;                 /* the pipe's read end */
	int out;                /* the local file, or -1 */
	const char *url;
	int abort;              /* pg_dump failed, or a stop signal: abandon the request (atomic) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int verdict;            /* 0: not yet; 1: complete and verified; -1: abandon */
	bool at_end;            /* everything pg_dump wrote has been read */
	bool done;              /* the thread is about to return */
	bool gave_up;           /* the upload failed with no local copy: the pipe was closed */
	long long bytes;
	int write_errno;
	bool uploaded;
	struct http_result http;
};

static bool write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		buf += w;
		n -= (size_t)w;
	}
	return true;
}

/* Reads the next piece from the pipe and keeps it locally; 0 at the end, -1 on error. */
static ssize_t stream_take(struct stream *s, char *buf, size_t size)
{
	ssize_t n;
	do
		n = read(s->in, buf, size);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		if (s->out >= 0 && !s->write_errno && !write_all(s->out, buf, (size_t)n))
			s->write_errno = errno ? errno : EIO;
		__atomic_add_fetch(&s->bytes, (long long)n, __ATOMIC_RELAXED);
		return n;
	}
	pthread_mutex_lock(&s->mu);
	s->at_end = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return n;
}

static size_t stream_read(char *buf, size_t size, void *ctx)
{
	struct stream *s = ctx;
	if (__atomic_load_n(&s->abort, __ATOMIC_ACQUIRE))
		return HTTP_READ_ABORT;
	ssize_t n = stream_take(s, buf, size);
	if (n > 0)
		return s->write_errno ? HTTP_READ_ABORT : (size_t)n;
	if (n < 0)
		return HTTP_READ_ABORT;
	/* The end of the dump: the request completes only if the dump is good. */
	pthread_mutex_lock(&s->mu);
	while (s->verdict == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	int v = s->verdict;
	pthread_mutex_unlock(&s->mu);
	return v > 0 ? 0 : HTTP_READ_ABORT;
}

static void *stream_main(void *arg)
{
	struct stream *s = arg;
	s->uploaded = http_put(s->url, stream_read, s, -1, &s->abort, -1, &s->http);
	if (!s->uploaded && s->out < 0) {
		/* Nothing is kept locally: end pg_dump (SIGPIPE) rather than dump into nothing. */
		pthread_mutex_lock(&s->mu);
		if (!s->at_end) {
			close(s->in);
			s->in = -1;
			s->gave_up = s->at_end = true;
			pthread_cond_broadcast(&s->cv);
		}
		pthread_mutex_unlock(&s->mu);
	}
	/* The request ended early: the local copy still gets the whole dump (and pg_dump is not
	 * left blocked on a full pipe). */
	char buf[65536];
	while (!s->at_end && stream_take(s, buf, sizeof buf) > 0) {
	}
	pthread_mutex_lock(&s->mu);
	s->done = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void stream_decide(struct stream *s, int verdict)
{
	pthread_mutex_lock(&s->mu);
	s->verdict = verdict;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Waits until *flag (at_end: the thread has read everything pg_dump wrote; done: the request
 * is over). A stop signal (left pending for the caller) abandons the request, which also ends
 * a transfer stuck on a stalled server within a second. True if that happened. */
static bool stream_wait(struct stream *s, const bool *flag, int stop_fd)
{
	bool stopped = false;
	pthread_mutex_lock(&s->mu);
	while (!*flag) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		struct pollfd pfd = {stop_fd, POLLIN, 0};
		if (stop_fd >= 0 && poll(&pfd, 1, 0) == 1)
		{
			__atomic_store_n(&s->abort, 1, __ATOMIC_RELEASE);
			stopped = true;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return stopped;
}

struct file_reader {
	int fd;
};

static size_t file_read(char *buf, size_t size, void *ctx)
{
	struct file_reader *f = ctx;
	ssize_t n;
	do
		n = read(f->fd, buf, size);
	while (n < 0 && errno == EINTR);
	return n < 0 ? HTTP_READ_ABORT : (size_t)n;
}

/* Logs a failed upload attempt and sleeps the next backoff delay; false if a stop signal
 * ended the sleep (r says which). */
static bool upload_pause(struct backoff *b, const char *err, const char *next,
			 const struct sigstate *sigs, struct backup_result *r)
{
	int64_t delay = backoff_next(b);
	log_event(LOG_WARN, "backup.upload.retry",
		  LOG_FIELDS(LF_I("attempt", r->upload_attempts), LF_S("error", err), LF_I("delay_ms", delay)),
		  "the upload failed (%s); %s in %lldms", err, next, (long long)delay);
	int sig = signals_sleep(sigs, delay);
	if (sig) {
		r->signo = sig;
		r->code = MTR_EXIT_SIGNAL_BASE + sig;
	}
	return sig == 0;
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
	char *tmp = NULL, *final = NULL, *name = NULL, *url = NULL;
	int fd = -1;
	/* readable while a stop signal is pending: ends an upload from the file */
	int stop_fd = signals_stop_fd();
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

	if (o->dir && mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
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
	name = xasprintf("%s%s-%s-to-%s.dump", prefix, stamp, f, t);
	if (o->upload_url) {
		url = upload_target(o->upload_url, name);
		char *pub = http_url_public(url, false);
		snprintf(r->uploaded, sizeof r->uploaded, "%s", pub);
		free(pub);
	}
	/* Streams while pg_dump writes, unless the server must know the length first. */
	bool stream = url && !(o->dir && http_needs_length(url));
	unsigned max_attempts = 4; /* of the upload: the first and 3 retries */
	struct backoff b;
	backoff_init(&b, 500, 8000, random_u64());
	struct stream st_ = {.out = -1};
	for (;;) { /* once, or (no local file) once per upload attempt */
		if (o->dir) {
			final = xasprintf("%s/%s", o->dir, name);
			tmp = xasprintf("%s/.%s%s.partial.%d", o->dir, prefix, stamp, (int)getpid());
			fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0) {
				fail(r, MTR_EXIT_BACKUP, "cannot create a file in the backup directory %s: %s",
				     o->dir, strerror(errno));
				goto out;
			}
		}
		struct progress prog = {.fd = fd, .start = start};
		char *dump_argv[] = {(char *)o->pg_dump, "--format=custom", "--no-password", NULL};
		int pipefd[2] = {-1, -1};
		pthread_t thread;
		bool threaded = false;
		if (stream) {
			memset(&st_, 0, sizeof st_);
			st_.out = fd;
			st_.url = url;
			pthread_mutex_init(&st_.mu, NULL);
			pthread_cond_init(&st_.cv, NULL);
			prog.counter = &st_.bytes;
			prog.fd = -1;
			if (pipe2(pipefd, O_CLOEXEC) != 0) {
				fail(r, MTR_EXIT_BACKUP, "pipe: %s", strerror(errno));
				goto out;
			}
			st_.in = pipefd[0];
			if (pthread_create(&thread, NULL, stream_main, &st_) != 0) {
				fail(r, MTR_EXIT_BACKUP, "cannot start the upload: %s", strerror(errno));
				close(pipefd[0]);
				close(pipefd[1]);
				goto out;
			}
			threaded = true;
			r->streamed = true;
			r->upload_attempts++;
		}
		bool ran = run_tool(dump_argv, env, sigs, stream ? pipefd[1] : fd, on_tick, &pr, &prog.lines);
		bool dumped = ran && !pr.stop_signal && pr.outcome == PROC_EXITED && pr.exit_code == 0;
		int verdict = dumped ? 1 : -1;
		if (threaded) {
			close(pipefd[1]);
			if (!dumped)
				__atomic_store_n(&st_.abort, 1, __ATOMIC_RELEASE);
			if (stream_wait(&st_, &st_.at_end, stop_fd) && !pr.stop_signal) {
				/* a stop signal arrived after pg_dump ended: take it now */
				pr.stop_signal = signals_stop_read(stop_fd);
				dumped = false;
				verdict = -1;
			}
			if (st_.write_errno) {
				errno = st_.write_errno;
				verdict = -1;
			}
		}
		if (dumped && fd >= 0 && (verdict < 0 || fsync(fd) != 0)) {
			fail(r, MTR_EXIT_BACKUP, "cannot write the backup %s: %s", tmp, strerror(errno));
			verdict = -1;
		}
		struct stat st = {0};
		if (dumped && verdict > 0 && fd >= 0 && (fstat(fd, &st) != 0 || st.st_size == 0)) {
			fail(r, MTR_EXIT_BACKUP, "pg_dump wrote nothing to %s", tmp);
			verdict = -1;
		}
		if (dumped && verdict > 0)
			r->bytes = fd >= 0 ? (long long)st.st_size : st_.bytes;
		if (fd >= 0) {
			close(fd);
			fd = -1;
		}
		/* A dump that was cut off looks like a file until one tries to restore it: read it all. */
		if (dumped && verdict > 0 && tmp) {
			struct lines vl = {0};
			/* Not --list: that reads only the table of contents, and a dump cut off in
			 * its data passes it. Writing the whole script to /dev/null reads every byte. */
			char *verify_argv[] = {(char *)o->pg_restore, "--file=/dev/null", tmp, NULL};
			int64_t vstart = now_ms();
			bool ok = run_tool(verify_argv, env, sigs, -1, NULL, &pr, &vl) && !pr.stop_signal &&
				  pr.outcome == PROC_EXITED && pr.exit_code == 0;
			if (!ok && !pr.stop_signal)
				fail(r, MTR_EXIT_BACKUP, "the dump does not read back with %s: %s",
				     o->pg_restore, vl.len ? vl.text : pr.err);
			verdict = ok ? 1 : -1;
			r->verify_ms = now_ms() - vstart;
		}
		if (threaded) {
			stream_decide(&st_, verdict);
			/* the server's answer to the last chunk may be slow in coming */
			if (stream_wait(&st_, &st_.done, stop_fd) && !pr.stop_signal)
				pr.stop_signal = signals_stop_read(stop_fd);
			pthread_join(thread, NULL);
			if (st_.in >= 0)
				close(pipefd[0]);
			pthread_mutex_destroy(&st_.mu);
			pthread_cond_destroy(&st_.cv);
		}
		if (pr.stop_signal) {
			r->signo = pr.stop_signal;
			r->code = MTR_EXIT_SIGNAL_BASE + pr.stop_signal;
			goto out;
		}
		if (!ran) {
			fail(r, MTR_EXIT_BACKUP, "cannot run %s: %s", o->pg_dump, pr.err);
			goto out;
		}
		if (threaded && st_.gave_up) { /* the upload failed first, and pg_dump was ended */
			if (r->upload_attempts < max_attempts && http_retryable(&st_.http)) {
				if (!upload_pause(&b, st_.http.err, "dumping and uploading again", sigs, r))
					goto out;
				continue;
			}
			fail(r, MTR_EXIT_BACKUP, "the upload failed after %u attempt%s: %s%s", r->upload_attempts,
			     r->upload_attempts == 1 ? "" : "s", st_.http.err,
			     st_.http.status == 411 || st_.http.status == 501
				     ? " (the server wants the length first: set --backup-dir so that the file "
				       "is uploaded after the dump)" : "");
			goto out;
		}
		if (!dumped) {
			fail(r, MTR_EXIT_BACKUP, "pg_dump failed (%s %d): %s",
			     pr.outcome == PROC_EXITED ? "exit status" : "signal",
			     pr.outcome == PROC_EXITED ? pr.exit_code : pr.term_signal,
			     prog.lines.len ? prog.lines.text : "no message");
			goto out;
		}
		if (verdict < 0) {
			if (!r->err[0])
				fail(r, MTR_EXIT_BACKUP, "cannot write the backup: %s",
				     strerror(st_.write_errno ? st_.write_errno : EIO));
			goto out;
		}
		if (!stream || st_.uploaded || o->dir || r->upload_attempts >= max_attempts ||
		    !http_retryable(&st_.http))
			break;
		/* No local copy to send again: dump again. */
		if (!upload_pause(&b, st_.http.err, "dumping and uploading again", sigs, r))
			goto out;
	}
	if (tmp) {
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
		rotate(o->dir, prefix, o->keep);
	}
	if (url && !(stream && st_.uploaded)) {
		struct http_result hr = st_.http;
		bool ok = false;
		/* A server that refused the chunked stream for want of a length gets the file, once. */
		bool wants_length = stream && final && (hr.status == 411 || hr.status == 501);
		if (wants_length && r->upload_attempts >= max_attempts)
			max_attempts = r->upload_attempts + 1;
		while (!ok && final && r->upload_attempts < max_attempts) {
			if (wants_length) {
				wants_length = false;
				log_event(LOG_WARN, "backup.upload.retry",
					  LOG_FIELDS(LF_I("attempt", r->upload_attempts), LF_S("error", hr.err),
						     LF_I("delay_ms", 0)),
					  "the server refused the streamed upload (%s); sending %s with its length",
					  hr.err, final);
			} else if (r->upload_attempts > 0) {
				if (!http_retryable(&hr))
					break;
				if (!upload_pause(&b, hr.err, "sending the file again", sigs, r))
					goto out;
			}
			struct file_reader fr = {open(final, O_RDONLY | O_CLOEXEC)};
			if (fr.fd < 0) {
				fail(r, MTR_EXIT_BACKUP, "cannot read %s to upload it: %s", final, strerror(errno));
				goto out;
			}
			struct stat st;
			if (fstat(fr.fd, &st) != 0) {
				fail(r, MTR_EXIT_BACKUP, "cannot read %s to upload it: %s", final, strerror(errno));
				close(fr.fd);
				goto out;
			}
			r->upload_attempts++;
			ok = http_put(url, file_read, &fr, (long long)st.st_size, NULL, stop_fd, &hr);
			close(fr.fd);
			if (hr.signo) {
				r->signo = hr.signo;
				r->code = MTR_EXIT_SIGNAL_BASE + hr.signo;
				goto out;
			}
		}
		if (!ok) {
			bool chunked = stream && !final && (hr.status == 411 || hr.status == 501);
			fail(r, MTR_EXIT_BACKUP, "the upload failed after %u attempt%s: %s%s%s", r->upload_attempts,
			     r->upload_attempts == 1 ? "" : "s", hr.err,
			     chunked ? " (the server wants the length first: set --backup-dir so that the "
				       "file is uploaded after the dump)" : "",
			     r->path[0] ? "; the local backup is kept" : "");
			goto out;
		}
	}
	r->ms = now_ms() - start;
out:
	if (fd >= 0)
		close(fd);
	if (tmp && r->code)
		unlink(tmp); /* nothing partial is left behind */
	free(tmp);
	free(final);
	free(name);
	free(url);
	signals_stop_close(stop_fd);
	free_env(env);
	return r->code;
}
