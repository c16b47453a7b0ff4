/* requests: operator requests queued in the store by imperai-snowctl
 * (resync, retry) and taken by the daemon once per step.
 *
 * Wire form, one JSON object per entry of the store's requests table:
 *   {"op":"resync","ticket":"INC0010001","table":"incident","sys_id":"..."}
 *   {"op":"retry"}            un-park every parked outbox entry
 *   {"op":"retry","seq":42}   un-park outbox entry 42 */
#ifndef IMPERAI_REQUESTS_H
#define IMPERAI_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

struct store;

enum req_op {
	REQ_RESYNC,	/* read the ticket from ServiceNow again and run the engine */
	REQ_RETRY,	/* un-park outbox entries: attempts 0, not_before now */
};

struct req {
	uint64_t	 id;		/* the request's seq in the store */
	enum req_op	 op;
	char		*ticket;	/* RESYNC: number */
	char		*table;		/* RESYNC: NULL when the CLI did not know it */
	char		*sys_id;
	uint64_t	 seq;		/* RETRY: outbox seq, 0 = every parked entry */
};

/* Reads and deletes every queued request in one write transaction.  A
 * request that does not parse is logged and deleted.  *out is NULL when
 * none are queued.  Returns 0 or a store error. */
int requests_take(struct store *st, struct req **out, size_t *n);
void requests_free(struct req *v, size_t n);

/* Pure, shared with imperai-snowctl. */
int requests_parse(const char *json, size_t len, struct req *out, char **cause);
char *requests_encode(const struct req *r);
const char *requests_op_name(enum req_op op);

#endif
