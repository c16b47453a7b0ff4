/* loopd: what the daemon's rooms share, private to daemon/ (as smtpd.h is
 * to OpenSMTPD's processes).  The step itself is told in loop.c; each of
 * its jobs is a room with a prefix:
 *   poll.c    ServiceNow pages and the imper.ai feed in, observations out
 *   commit.c  the step's ticket cache and its one decide-and-commit path
 *   outbox.c  the outbox's index and the crash rule, and only there
 *   send.c    an outbox entry on the wire, its answer back to the engine
 *   budget.c  the hourly request budget, kept across restarts
 *   report.c  the status and metrics files, and what they count
 *   ops.c     resync and retry requests from imperai-snowctl */
#ifndef IMPERAI_LOOPD_H
#define IMPERAI_LOOPD_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "engine.h"
#include "loop.h"
#include "metrics.h"
#include "outlog.h"
#include "sweep.h"

#include "snow.h"

struct config;
struct flows;
struct hmap;
struct http_client;
struct http_pool;
struct imperai_client;
struct outbox_index;
struct snow_client;
struct store;
struct store_txn;

#define LOOP_STATUS_EVERY_MS	5000

/* One ticket loaded for this step: stored at commit when dirty. */
struct lticket {
	char		*key;		/* table/sys_id */
	struct ticket	 t;
	int		 dirty;
	int		 forget;
	int		 existed;
	int		 new_effects;	/* effects of this step seen by the outbox's pick */
	int		 loaded_state;	/* state in the store, -1 if none (metrics) */
};

/* One outbox entry being executed. */
struct job {
	struct loop		*l;
	uint64_t		 seq;
	struct outbox_entry	 en;
	int			 checking;	/* PATCH: reading the ticket back first */
	uint64_t		*gone;		/* later PATCHes of the ticket merged into this one */
	uint32_t		*revs;		/* and the revisions before en.e.revision it writes */
	size_t			 ngone;
};

/* One ServiceNow table's poll. */
struct tpoll {
	char			*table;
	struct snow_watermark	 wm;		/* committed position */
	struct snow_watermark	 cur;		/* position within this cycle */
	int			 inflight;
	int64_t			 next_ms;
	int64_t			 started_ms;	/* this cycle's start */
	char			**fields;
	size_t			 nfields;
	int64_t			 last_ok;	/* wall clock */
	uint64_t		 seen;
	char			*last_error;
	int			 offset;	/* rows past cur hidden by ACLs, skipped */
	int			 hidden_pages;	/* pages in a row that came back empty */
};

/* The outbox's share of one commit: stored entries picked to start, and
 * the new effects that start in the transaction that stores them. */
struct outbox_batch {
	struct job	**picked;
	size_t		  npicked;
	int		  marks;	/* PATCHes among them: a write is needed */
	struct job	**fresh;	/* per new effect: started at once, or NULL */
	uint64_t	 *seqs;		/* per new effect: its outbox seq */
	size_t		  nnew;
};

struct loop {
	struct config		*cfg;
	struct flows		*flows;
	struct engine_policy	 pol;
	struct store		*st;
	struct http_client	*http;
	struct snow_client	*snow;
	struct imperai_client	*imp;

	struct tpoll		*polls;
	size_t			 npolls;
	struct sweep		*sweep;		/* the reconciliation sweep (sweep.c) */
	int64_t			 unpark_ms;	/* parked writes are released again then */
	int64_t			 refs_ms;	/* references not looked up: next try */

	char			*cursor;	/* imper.ai change feed */
	uint64_t		 feed_epoch;
	uint64_t		 epoch;		/* bumps when a commit fails: positions reload */
	int			 feed_inflight;
	int64_t			 feed_next_ms;
	int64_t			 feed_started_ms;
	int64_t			 feed_last_ok;
	char			*feed_last_error;

	/* this step's pending writes */
	struct engine_result	*results;	/* decisions whose effects join the outbox */
	size_t			 nresults;
	struct hmap		*cache;		/* key -> struct lticket */
	uint64_t		*done_seqs;	/* outbox entries finished */
	size_t			 ndone;
	struct job		**updated;	/* outbox entries to rewrite (bookkeeping) */
	size_t			 nupdated;
	char			**audit;	/* events to append */
	size_t			 naudit;
	char			**vindex;	/* "id\tjson" verification index updates */
	size_t			 nvindex;
	int			 meta_dirty;
	int			 budget_final;	/* shutdown: store budget use without a reserve */
	int			 outbox_dirty;	/* entries added or finished: start more */
	int64_t			 outbox_reload_ms;	/* after a failed commit: rebuild the index then */

	/* outbox execution */
	struct outbox_index	*oq;		/* which entry to start next */
	int			 snow_jobs;
	int			 imp_jobs;

	int64_t			 store_failing;	/* wall clock of the first failed write, 0: none */
	int64_t			 store_nagged;
	uint64_t		 store_failures;
	int64_t			 progress_ms;
	int64_t			 status_ms;
	int64_t			 requests_ms;
	int64_t			 started;
	uint64_t		 stat_effects_done;
	uint64_t		 stat_effects_failed;
	struct outlog		 out_snow, out_imp, out_write;	/* quiet outages (outlog.c) */

	/* metrics (report.c) */
	struct metrics_counts	 m_total;
	struct metrics_counts	 m_step;	/* this step's, added once committed */
	uint64_t		 m_tickets[TS__COUNT];
	int			 m_counted;	/* m_tickets holds the store's counts */
	uint64_t		 m_write_failures[3];
	struct metrics_service	 m_base[2];	/* pools of clients replaced by a reload */
	int64_t			 metrics_ms;
	int			 metrics_failing;
};

/* loop.c */
int64_t loop_wall(void);				/* wall clock, UNIX seconds */
char *loop_key(const char *table, const char *sys_id);	/* "table/sys_id", allocated */

/* poll.c */
/* Starts each poll cycle and feed page that is due. */
void poll_schedule(struct loop *l, int64_t now_ms);
/* A record observed (poll, read-back): decided unless already seen. */
void poll_observe(struct loop *l, const char *table, const struct snow_record *r);
/* A record observed of lt, decided even if seen (resync); fn's code. */
int poll_observe_ticket(struct loop *l, struct lticket *lt, const char *table,
    const struct snow_record *r);
/* An imper.ai verification reported (feed, cancel answer): decided. */
void poll_verification(struct loop *l, const struct imperai_verification *v);
/* The fields asked for of table (what the engine and the flows read). */
const char *const *poll_fields(struct loop *l, const char *table, size_t *n);
/* The earliest time a poll or the feed is due, at most until. */
int64_t poll_next_ms(const struct loop *l, int64_t until);
/* Sets up a poll per configured table, and frees them. */
void poll_init(struct loop *l);
void poll_free(struct loop *l);
/* Keeps what outlives a reload (counts, last success) of the polls;
 * poll_restore gives it to the new polls of the same tables. */
struct tpoll *poll_save(const struct loop *l, size_t *n);
void poll_restore(struct loop *l, struct tpoll *saved, size_t n);
/* Reads the committed watermarks and feed cursor back from the store. */
void poll_load_positions(struct loop *l);
/* Writes the watermarks and the cursor into the step's transaction. */
void poll_store_positions(struct store_txn *txn, struct loop *l);

/* commit.c */
/* One engine call on t for the input arg. */
typedef int (*commit_engine_fn)(struct loop *l, struct ticket *t, const void *arg,
    int64_t now, struct engine_result *out);
/* The ticket as this step sees it: pending changes first, then the store. */
struct lticket *commit_ticket(struct loop *l, const char *table, const char *sys_id);
/* The ticket of key if this step loaded it, else NULL. */
struct lticket *commit_find(struct loop *l, const char *key);
/* The one decide-and-commit path: runs fn on lt, counts what it changed,
 * queues its state, effects and events for the step's commit.  fn's code. */
int commit_decide(struct loop *l, struct lticket *lt, commit_engine_fn fn, const void *arg);
/* An audit event for the step's commit. */
void commit_audit(struct loop *l, const char *kind, const char *msg, const char *kv);
/* Indexes a created request under its ticket (stale generations too). */
void commit_index_verification(struct loop *l, const char *id, const struct ticket *t,
    uint32_t generation);
/* The ticket of request id: 0, or a negative error (-ENOENT: unknown). */
int commit_lookup_verification(struct loop *l, const char *id, char **table, char **sys_id);
/* Commits the step (one write transaction) and, with start, starts what the
 * outbox has room for.  0, or the store's negative error. */
int commit_step(struct loop *l, int start);
/* Whether the step has anything to commit. */
int commit_has_pending(const struct loop *l);
/* Drops the step's pending writes (committed, or void). */
void commit_pending_clear(struct loop *l);

/* outbox.c: the index */
enum outbox_lane {
	OUTBOX_SNOW,		/* ServiceNow PATCHes */
	OUTBOX_IMPERAI,		/* imper.ai creates and cancels */
	OUTBOX__LANES
};
/* The lane of an effect of kind k. */
enum outbox_lane outbox_lane(enum effect_kind k);
/* An empty index, and freeing one. */
struct outbox_index *outbox_index_new(void);
void outbox_index_free(struct outbox_index *q);
/* Appends entry seq of ticket key; running: started at once (only when
 * the ticket has no other entry: see outbox_index_has). */
void outbox_index_add(struct outbox_index *q, const char *key, uint64_t seq,
    enum outbox_lane lane, int64_t not_before, int running);
/* Marks entry seq of key running; 0, or -ENOENT. */
int outbox_index_mark_running(struct outbox_index *q, const char *key, uint64_t seq);
/* Starts the next due entry of lane: 0 with its seq and key (valid until
 * done/release of it), or -ENOENT when none is due. */
int outbox_index_take(struct outbox_index *q, enum outbox_lane lane, int64_t now,
    uint64_t *seq, const char **key);
/* The running entry seq of key is finished and leaves the index. */
void outbox_index_done(struct outbox_index *q, const char *key, uint64_t seq);
/* The running entry seq of key goes back to waiting, until not_before. */
void outbox_index_release(struct outbox_index *q, const char *key, uint64_t seq,
    int64_t not_before);
/* Entry seq of key (not running) is now due at not_before. */
void outbox_index_set_due(struct outbox_index *q, const char *key, uint64_t seq,
    int64_t not_before);
/* Whether key has any entry, waiting or running. */
int outbox_index_has(const struct outbox_index *q, const char *key);
/* The entry after seq of key when in the same lane and due by now, 0 if none. */
uint64_t outbox_index_next_same(const struct outbox_index *q, const char *key, uint64_t seq,
    int64_t now);
/* The earliest not_before of a waiting ticket, INT64_MAX if none. */
int64_t outbox_index_next_due(const struct outbox_index *q);
/* Entries in the index. */
size_t outbox_index_count(const struct outbox_index *q);
/* Seqs of the running entries (allocated; *n of them, keys too). */
uint64_t *outbox_index_running(const struct outbox_index *q, char ***keys, size_t *n);
/* Adds every readable entry of the stored outbox, in seq order. */
void outbox_index_scan(struct store *st, struct outbox_index *q);

/* outbox.c: the crash rule */
/* Whether e is the PATCH that resolves its ticket. */
int outbox_resolves(const struct effect *e);
/* Whether en must be read back before it is sent (it may have landed, or
 * it resolves: a change made since is decided first). */
int outbox_read_back_first(const struct outbox_entry *en);
/* 0 when en may start now; else the time (UNIX seconds) before which a
 * read-back could still be overtaken by the request it looks for. */
int64_t outbox_unsettled_until(const struct outbox_entry *en, int settle, int64_t now);
/* en goes out now: from here on it may have landed. */
void outbox_sending(struct outbox_entry *en, int64_t now);
/* The service refused en before doing anything (429, 401): that send cannot
 * have landed. */
void outbox_unsent(struct outbox_entry *en);
/* Whether next may be merged into first, which starts now unsent. */
int outbox_may_merge(const struct outbox_entry *first, const struct outbox_entry *next);
/* Whether the field read back shows en's revision: it landed. */
int outbox_shows(const struct outbox_entry *en, const char *field);
/* en is tried again later (backoff from rnd in [0,1)), or parked after
 * too many attempts.  1 if parked.  Nothing parks on one answer: a
 * read-back is a GET, safe to ask again whatever answered it. */
int outbox_again(struct outbox_entry *en, const char *why, int max, int64_t now, double rnd);
/* A read-back showed en, tried max times, had not landed: parked, known
 * unsent, out of the way of the ticket's later writes.  1 if parked. */
int outbox_park_unlanded(struct outbox_entry *en, int max);
/* Whether the ticket's field shows a later revision than en's (it was
 * passed while parked): en's field must not go out.  Asked only of an
 * entry that is not read back first (its earlier sends did not land). */
int outbox_superseded(const struct outbox_entry *en, uint32_t landed_revision);
/* Takes field out of en's PATCH; 1 when nothing is left to send. */
int outbox_strip_field(struct outbox_entry *en, const char *field);
/* Released by imperai-snowctl retry or servicenow.parked_retry: due now,
 * keeping its read-back. */
void outbox_unpark(struct outbox_entry *en);

/* outbox.c: the daemon's outbox */
/* Rebuilds the index from the store; entries in flight stay so. */
void outbox_load(struct loop *l);
/* Picks what starts with this commit (with start: lanes with room). */
void outbox_pick(struct loop *l, struct outbox_batch *b, int start);
/* The outbox's writes into the commit's transaction. */
void outbox_store(struct store_txn *txn, struct loop *l, struct outbox_batch *b);
/* Committed: the new entries join the index (before the step's pending
 * writes are cleared); outbox_start then starts the batch. */
void outbox_committed(struct loop *l, struct outbox_batch *b);
void outbox_start(struct loop *l, struct outbox_batch *b);
/* Frees a batch; with void_jobs (a failed commit) its jobs go back. */
void outbox_batch_free(struct loop *l, struct outbox_batch *b, int void_jobs);
/* j is over: done (the entry leaves the outbox) or not (it waits again). */
void outbox_job_end(struct job *j, int done);
/* j failed for now: tried again later, or parked; logged. */
void outbox_job_again(struct job *j, const char *why);
/* j's PATCH was read back and had not landed: parked if it was tried
 * servicenow.write_attempts times (1, logged), else 0: send it again. */
int outbox_job_park_unlanded(struct job *j);
void outbox_job_free(struct job *j);

/* send.c */
/* Sends j's request (or its read-back first); the answer is decided. */
void send_start(struct loop *l, struct job *j);

/* budget.c */
/* Counts what the previous run spent (before anything is sent). */
void budget_load(struct loop *l);
/* Whether the budget needs a commit (half a pool's reserve spent). */
int budget_due(const struct loop *l);
/* Stores each pool's use that changed, with the reserve it may spend. */
void budget_store(struct store_txn *txn, const struct loop *l);
/* Committed: each pool may spend its stored reserve. */
void budget_committed(struct loop *l);

/* report.c */
/* What a decision is compared with, to count what it changed. */
struct report_before {
	uint32_t			generation;
	enum imperai_status		status;
	enum imperai_action_status	action;
};
void report_before(const struct ticket *t, struct report_before *b);
/* Counts the verifications, outcomes and actions a decision made. */
void report_after(struct loop *l, const struct report_before *b, const struct ticket *t);
/* Counts a PATCH that landed (resolving: it resolved the ticket). */
void report_patched(struct loop *l, const struct effect *e, int resolving, const struct ticket *t);
/* The step committed: its counts join the totals, tickets by state follow. */
void report_committed(struct loop *l);
/* Adds pool's request counters to base, into out. */
void report_service(struct metrics_service *out, const struct metrics_service *base,
    struct http_pool *pool);
/* Writes the status (into the store) and the metrics file when due. */
void report_write(struct loop *l);
/* The earliest time the status or metrics are due, at most until. */
int64_t report_next_ms(const struct loop *l, int64_t until);

/* ops.c */
/* Takes the operator's requests (resync, retry) and starts them. */
void ops_requests(struct loop *l);
/* Every servicenow.parked_retry, parked writes are released on their own: a
 * misconfiguration fixed by an admin heals without imperai-snowctl retry. */
void ops_unpark_due(struct loop *l, int64_t now_ms);
/* References the start could not look up (ServiceNow unreachable) are
 * looked up once a poll has reached ServiceNow, at most every minute. */
void ops_refs_due(struct loop *l, int64_t now_ms);
/* When ops_unpark_due next has something to do, at most until. */
int64_t ops_next_ms(const struct loop *l, int64_t until);

#endif
