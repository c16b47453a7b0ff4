/* outq: the daemon's in-memory index of the outbox.
 *
 * The outbox itself lives in the store (committed with the state change
 * that caused each entry); this index only says which entry to start
 * next, so the loop never rescans and decodes the whole outbox.  Per
 * ticket, entries run one at a time in seq order; across tickets, the
 * due head with the lowest seq goes first in each lane.  Entries whose
 * not_before (UNIX seconds) is in the future wait in a heap by time.
 * Every operation is O(log n) in the number of tickets with entries,
 * except outq_done/outq_set_due, which also walk one ticket's entries. */
#ifndef IMPERAI_OUTQ_H
#define IMPERAI_OUTQ_H

#include <stddef.h>
#include <stdint.h>

enum outq_lane {
	OUTQ_SNOW,		/* ServiceNow PATCHes */
	OUTQ_IMPERAI,		/* imper.ai creates and cancels */
	OUTQ__LANES
};

struct outq;

struct outq *outq_new(void);
void outq_free(struct outq *q);

/* Appends entry seq of ticket key.  running: it is started at once (only
 * when the ticket has no other entry: see outq_has). */
void outq_add(struct outq *q, const char *key, uint64_t seq, enum outq_lane lane,
    int64_t not_before, int running);
/* Marks entry seq of ticket key running (rebuilding the index while it
 * runs); 0, or -ENOENT. */
int outq_mark_running(struct outq *q, const char *key, uint64_t seq);
/* Starts the next due entry of lane: 0 with its seq and ticket key (valid
 * until outq_done/outq_release of it), or -ENOENT when none is due. */
int outq_take(struct outq *q, enum outq_lane lane, int64_t now, uint64_t *seq,
    const char **key);
/* The running entry seq of key is finished and leaves the index. */
void outq_done(struct outq *q, const char *key, uint64_t seq);
/* The running entry seq of key goes back to waiting, until not_before. */
void outq_release(struct outq *q, const char *key, uint64_t seq, int64_t not_before);
/* Entry seq of key (not running) is now due at not_before. */
void outq_set_due(struct outq *q, const char *key, uint64_t seq, int64_t not_before);
/* Whether key has any entry, waiting or running. */
int outq_has(const struct outq *q, const char *key);
/* The entry after seq of key when it is in the same lane and due by now
 * (a PATCH that can be merged into the one starting), 0 if none. */
uint64_t outq_next_same(const struct outq *q, const char *key, uint64_t seq, int64_t now);
/* The earliest not_before of a waiting ticket, INT64_MAX if none. */
int64_t outq_next_due(const struct outq *q);
/* Entries in the index. */
size_t outq_count(const struct outq *q);
/* Seqs of the running entries (allocated; *n of them), to rebuild the index. */
uint64_t *outq_running(const struct outq *q, char ***keys, size_t *n);

#endif
