/* outlog: the log lines of an outage (lib/outage.c decides when): one
 * warning when a service goes down, a reminder while it stays down, one
 * notice when it is back.  The caller logs each failure at debug level. */
#ifndef IMPERAI_OUTLOG_H
#define IMPERAI_OUTLOG_H

#include <stdint.h>

#include "outage.h"

struct outlog {
	struct outage	 o;
	const char	*what;		/* "ServiceNow poll", "imper.ai change feed", "writes" */
	const char	*check;		/* what to check, said once when it goes down */
};

/* A failure at now_ms (monotonic) and wall (seconds); key/val add one pair
 * (e.g. "table", "incident"), key NULL for none. */
void outlog_failed(struct outlog *w, int64_t now_ms, int64_t wall, const char *error,
    const char *key, const char *val);
void outlog_ok(struct outlog *w, int64_t now_ms);

#endif
