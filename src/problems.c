/* Findings of a check before migrating: each a kind and the whole message with its fix. */
#include "mtr/problems.h"
#include "mtr/log.h"
#include "mtr/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void problems_add(struct problems *p, const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = xstrdup(fmt);
	va_end(ap);
	p->items = xrealloc(p->items, (p->n + 1) * sizeof *p->items);
	p->items[p->n].kind = kind;
	p->items[p->n++].msg = msg;
}

void problems_log(const struct problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		log_event(LOG_ERROR, "check.failed", LOG_FIELDS(LF_S("problem", p->items[i].kind)), "%s",
			  p->items[i].msg);
}

void problems_free(struct problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->items[i].msg);
	free(p->items);
	p->items = NULL;
	p->n = 0;
}
