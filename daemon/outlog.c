/* outlog: what an operator reads about an outage, and how often. */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "outlog.h"

void
outlog_failed(struct outlog *w, int64_t now_ms, int64_t wall, const char *error,
    const char *key, const char *val)
{
	enum outage_event ev = outage_failed(&w->o, now_ms, OUTAGE_REMIND_MS);
	char since[21], count[24], msg[96];

	util_format_rfc3339(wall - (now_ms - w->o.since_ms) / 1000, since);
	snprintf(count, sizeof(count), "%" PRIu64, w->o.failures);
	if (ev == OUTAGE_DOWN) {
		snprintf(msg, sizeof(msg), "%s failing: retrying quietly until it works again", w->what);
		log_kv(LOG_LVL_WARN, msg, "since", since, "error", error, "check", w->check,
		    key, val, NULL);
	} else if (ev == OUTAGE_STILL_DOWN) {
		snprintf(msg, sizeof(msg), "%s still failing", w->what);
		log_kv(LOG_LVL_WARN, msg, "since", since, "failures", count, "error", error,
		    key, val, NULL);
	}
}

void
outlog_ok(struct outlog *w, int64_t now_ms)
{
	int64_t down_ms;
	uint64_t n;
	char down[24], count[24], msg[96];

	if (outage_ok(&w->o, now_ms, &down_ms, &n) != OUTAGE_BACK)
		return;
	snprintf(down, sizeof(down), "%" PRId64 "s", (down_ms + 999) / 1000);
	snprintf(count, sizeof(count), "%" PRIu64, n);
	snprintf(msg, sizeof(msg), "%s working again", w->what);
	log_kv(LOG_LVL_NOTICE, msg, "down_for", down, "failures", count, NULL);
}
