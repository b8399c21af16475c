/* The floor under reading a versions directory: list it, sort the names, and open, read and
 * close every file on as many threads as the tool uses (the processors, at most 4), taking them
 * 32 at a time. Prints the milliseconds that took. Used by bench/alembic-scale.sh. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char **names;
static size_t n;
static int dfd;
static atomic_size_t next;

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void *reader(void *arg)
{
	static _Thread_local char buf[1 << 16];
	(void)arg;
	for (size_t k; (k = atomic_fetch_add(&next, 32)) < n;) {
		for (size_t i = k; i < n && i < k + 32; i++) {
			int fd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
			if (fd < 0 || read(fd, buf, sizeof buf) < 0)
				exit(1);
			close(fd);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	double t0 = now_ms();
	DIR *d = opendir(argv[1]);
	if (!d)
		return 1;
	dfd = dirfd(d);
	size_t cap = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_type != DT_REG)
			continue;
		if (n == cap && !(names = realloc(names, (cap = cap ? cap * 2 : 1024) * sizeof *names)))
			return 1;
		names[n++] = strdup(e->d_name);
	}
	qsort(names, n, sizeof *names, by_name);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int t = cpus > 4 ? 4 : cpus > 1 ? (int)cpus : 1;
	pthread_t th[4];
	for (int k = 1; k < t; k++)
		if (pthread_create(&th[k], NULL, reader, NULL) != 0)
			return 1;
	reader(NULL);
	for (int k = 1; k < t; k++)
		pthread_join(th[k], NULL);
	printf("%.3f\n", now_ms() - t0);
	return 0;
}
