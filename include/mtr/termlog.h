/* Kubernetes termination messages: why the tool failed, in the file the kubelet shows. */
#ifndef MTR_TERMLOG_H
#define MTR_TERMLOG_H

#include <stddef.h>

#define TERMLOG_DEFAULT "/dev/termination-log"
#define TERMLOG_NONE "none"
#define TERMLOG_MAX 4096 /* what the kubelet reads of the file */

/* The summary of a run that ends with code: a line with the exit code and its meaning, then
 * the last error events (the diagnosis and its fix, file:line, SQLSTATE …), repeated ones
 * once, cut to at most max bytes on a character boundary. Returns its length in out (a
 * buffer of max + 1 bytes), 0 when no error was logged. For termlog_write and tests. */
size_t termlog_summary(int code, char *out, size_t max);

/* When the tool ends with a failure (code not 0) it has logged: writes the summary to path
 * (NULL: /dev/termination-log when it exists and is writable; "none": nowhere), replacing
 * what was there. The app's own failures are the app's to report: no error of ours, no
 * file. A path that cannot be written is logged as a warning; never changes the exit. */
void termlog_write(const char *path, int code);

#endif
