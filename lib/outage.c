/* outage: one warning per outage, reminders, one notice when it ends. */
#include "outage.h"

enum outage_event
outage_failed(struct outage *o, int64_t now_ms, int64_t remind_ms)
{
	o->failures++;
	if (o->since_ms == 0) {
		/* 0 is "up": a failure at time 0 is taken as time 1. */
		o->since_ms = o->said_ms = now_ms ? now_ms : 1;
		return OUTAGE_DOWN;
	}
	if (now_ms - o->said_ms < remind_ms)
		return OUTAGE_QUIET;
	o->said_ms = now_ms;
	return OUTAGE_STILL_DOWN;
}

enum outage_event
outage_ok(struct outage *o, int64_t now_ms, int64_t *down_ms, uint64_t *failures)
{
	if (o->since_ms == 0)
		return OUTAGE_QUIET;
	*down_ms = now_ms - o->since_ms;
	*failures = o->failures;
	o->since_ms = o->said_ms = 0;
	o->failures = 0;
	return OUTAGE_BACK;
}
