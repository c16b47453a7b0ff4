/* outage: when a service that keeps failing is worth a log line.  One
 * line when it goes down, a reminder at most every remind_ms while it
 * stays down, one when it is back; every failure in between is counted but
 * not said.  Pure: the caller passes the (monotonic) time and logs. */
#ifndef IMPERAI_OUTAGE_H
#define IMPERAI_OUTAGE_H

#include <stdint.h>

#define OUTAGE_REMIND_MS	(5 * 60 * 1000)

struct outage {
	int64_t		 since_ms;	/* first failure of this outage; 0: up */
	int64_t		 said_ms;	/* last line said about it */
	uint64_t	 failures;	/* failures since since_ms */
};

enum outage_event {
	OUTAGE_QUIET,		/* nothing to say (a debug line at most) */
	OUTAGE_DOWN,		/* the first failure: warn */
	OUTAGE_STILL_DOWN,	/* a reminder is due: warn, with the count */
	OUTAGE_BACK,		/* a success after an outage: notice */
};

/* A failure at now_ms. */
enum outage_event outage_failed(struct outage *o, int64_t now_ms, int64_t remind_ms);
/* A success at now_ms; OUTAGE_BACK fills how long it was down and how
 * many failures it saw, and resets o. */
enum outage_event outage_ok(struct outage *o, int64_t now_ms, int64_t *down_ms,
    uint64_t *failures);

#endif
