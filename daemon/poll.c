/* poll: what comes in.  ServiceNow tables are read page by page from a
 * watermark, the imper.ai change feed from its cursor; each record and
 * each feed item becomes an observation decided through commit_decide().
 * The positions are committed with the decisions they led to. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "flows.h"
#include "imperai.h"
#include "log.h"
#include "loopd.h"
#include "store.h"
#include "util.h"

#define POLL_MAX_HIDDEN_PAGES	1000	/* empty pages in a row a poll reads past */

/* --- observations -------------------------------------------------------------------- */

struct poll_seen {
	const char			*table;
	const struct snow_record	*r;
};

static int
poll_observe_fn(struct loop *l, struct ticket *t, const void *arg, int64_t now,
    struct engine_result *out)
{
	const struct poll_seen *s = arg;

	return engine_observe(&l->pol, t, s->table, s->r, now, out);
}

int
poll_observe_ticket(struct loop *l, struct lticket *lt, const char *table,
    const struct snow_record *r)
{
	struct poll_seen s = { table, r };

	return commit_decide(l, lt, poll_observe_fn, &s);
}

static int
poll_record_seen(const struct lticket *lt, const struct snow_record *r)
{
	/* a ticket waiting for a readable requester is read again as it is */
	return lt->existed && lt->t.state != TS_UNTRACKED && r->mod_count <= lt->t.seen_mod_count &&
	    !lt->t.requester_unreadable;
}

void
poll_observe(struct loop *l, const char *table, const struct snow_record *r)
{
	struct lticket *lt = commit_ticket(l, table, r->sys_id);

	if (!poll_record_seen(lt, r))
		poll_observe_ticket(l, lt, table, r);
}

/* The sweep's observation: 1 for a ticket needing verification that
 * nothing had seen before. */
static int
poll_sweep_observe(void *arg, const char *table, const struct snow_record *r)
{
	struct loop *l = arg;
	struct lticket *lt = commit_ticket(l, table, r->sys_id);
	int known = lt->existed || lt->t.generation > 0;

	poll_observe(l, table, r);
	return !known && lt->t.generation > 0;
}

/* --- ServiceNow polling ---------------------------------------------------------------- */

struct pollctx {
	struct loop	*l;
	struct tpoll	*p;
	uint64_t	 epoch;
};

static void poll_submit(struct loop *l, struct tpoll *p);

/* Cycles start every interval seconds (not interval after the last one
 * ended, which adds the cycle's own length to the wait for a new ticket);
 * a cycle longer than half the interval is followed by half an interval's
 * rest, so a long backlog is not re-read back to back. */
static int64_t
poll_next_cycle(int64_t started_ms, int interval)
{
	int64_t now = loop_now_ms(), next = started_ms + (int64_t)interval * 1000;

	return next > now + (int64_t)interval * 500 ? next : now + (int64_t)interval * 500;
}

static void
poll_end(struct loop *l, struct tpoll *p)
{
	p->last_ok = loop_wall();
	free(p->last_error);
	p->last_error = NULL;
	outlog_ok(&l->out_snow, loop_now_ms());
	p->next_ms = poll_next_cycle(p->started_ms, l->cfg->snow.poll_interval);
	log_kv(LOG_LVL_DEBUG, "poll cycle done", "table", p->table, NULL);
}

/* A cycle stops behind too many pages of rows it may not read. */
static int
poll_hidden_stop(struct tpoll *p, int rows)
{
	char n[24];

	snprintf(n, sizeof(n), "%d", rows);
	log_kv(LOG_LVL_WARN, "poll stopped behind rows the integration user may not "
	    "read: give it read access to the table's rows that match the flows, or "
	    "narrow the flows' match", "table", p->table, "hidden_rows", n, NULL);
	p->offset = 0;
	p->hidden_pages = 0;
	return 0;
}

/* Whether the cycle reads on after this page, and from where.
 *
 * ServiceNow applies sysparm_limit before row ACLs: a page can come back
 * short, or empty, while more rows follow.  The count (X-Total-Count,
 * hidden rows included) tells which: rows beyond this page's window mean
 * more.  A page with rows moves the cursor past its last one; an empty
 * page cannot, so the next one skips it by offset (three quarters of a
 * page, so a few hidden rows changing meanwhile, which shifts the window,
 * skip nothing).  Without a count only a full page means more.
 *
 * Otherwise a short page ends the cycle: the next starts again from the
 * watermark minus the overlap, which is what catches a record changed in
 * the same second as the cursor but sorting before it (or stamped a
 * little in the past).  An idle cycle is one request. */
static int
poll_more(struct loop *l, struct tpoll *p, const struct snow_list *page)
{
	int limit = l->cfg->snow.page_size > 0 ? l->cfg->snow.page_size : 100;
	int offset = p->offset;
	int more = page->n >= (size_t)limit ||
	    (page->total >= 0 && page->total > (int64_t)offset + limit);

	if (page->n > 0 || !more) {
		p->offset = 0;
		p->hidden_pages = 0;
		return more;
	}
	if (++p->hidden_pages > POLL_MAX_HIDDEN_PAGES)
		return poll_hidden_stop(p, offset + limit);
	p->offset = offset + limit - limit / 4;
	log_kv(LOG_LVL_DEBUG, "poll page hidden by ACLs: reading on past it", "table", p->table,
	    NULL);
	return 1;
}

/* A page that did not come: the next cycle starts at the usual interval. */
static void
poll_failed(struct loop *l, struct tpoll *p, int err, const char *cause)
{
	if (err != -ECANCELED) {
		str_replace(&p->last_error, cause ? cause : strerror(-err));
		log_kv(LOG_LVL_DEBUG, "ServiceNow poll failed: will retry at the next interval",
		    "table", p->table, "error", p->last_error, NULL);
		outlog_failed(&l->out_snow, loop_now_ms(), loop_wall(), p->last_error,
		    "table", p->table);
	}
	p->next_ms = loop_now_ms() + l->cfg->snow.poll_interval * 1000;
}

static void
poll_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pollctx *pc = arg;
	struct loop *l = pc->l;
	struct tpoll *p = pc->p;
	uint64_t epoch = pc->epoch;

	free(pc);
	p->inflight = 0;
	/* A commit failed since: this cycle's position is void.  The next one
	 * starts at the usual interval (at once, it would spin against a full
	 * disk). */
	if (epoch != l->epoch || err < 0) {
		poll_failed(l, p, epoch != l->epoch ? -ECANCELED : err, cause);
		return;
	}
	for (size_t i = 0; i < page->n; i++)
		poll_observe(l, p->table, &page->v[i]);
	p->seen += page->n;
	if (page->n > 0) {
		p->cur.updated_on = page->v[page->n - 1].updated_on;
		memcpy(p->cur.sys_id, page->v[page->n - 1].sys_id, sizeof(p->cur.sys_id));
		p->wm = p->cur;
		l->meta_dirty = 1;
	}
	if (poll_more(l, p, page))
		poll_submit(l, p);
	else
		poll_end(l, p);
}

static void
poll_submit(struct loop *l, struct tpoll *p)
{
	struct pollctx *pc = xcalloc(1, sizeof(*pc));
	char *cause = NULL;

	pc->l = l;
	pc->p = p;
	pc->epoch = l->epoch;
	p->inflight = 1;
	if (snow_list_page(l->snow, p->table, NULL, &p->cur, p->offset,
	    (const char *const *)p->fields, p->nfields, poll_done, pc, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "cannot poll table", "table", p->table, "error", cause, NULL);
		free(cause);
		free(pc);
		p->inflight = 0;
		p->next_ms = loop_now_ms() + l->cfg->snow.poll_interval * 1000;
	}
}

/* Starts a poll cycle: from the committed watermark minus the overlap. */
static void
poll_start(struct loop *l, struct tpoll *p)
{
	p->started_ms = loop_now_ms();
	p->offset = 0;
	p->hidden_pages = 0;
	snow_watermark_rewind(&p->wm, l->cfg->snow.poll_overlap, &p->cur);
	poll_submit(l, p);
}

/* --- imper.ai change feed --------------------------------------------------------------- */

/* The feed can name a request before our create's answer is committed (a
 * race, harmless: the create answer carries the same state); anything
 * else is a request this daemon never made. */
static void
poll_unknown_verification(struct loop *l, const struct imperai_verification *v)
{
	struct lticket *lt = NULL;

	if (v->ticket.table && v->ticket.sys_id && config_table(l->cfg, v->ticket.table) &&
	    strlen(v->ticket.sys_id) == 32)
		lt = commit_ticket(l, v->ticket.table, v->ticket.sys_id);
	/* Awaiting the answer -- or no longer, but the create is still in the
	 * outbox: the ticket left the flows, ended or changed requester while
	 * imper.ai held the answer; the answer will be indexed and canceled. */
	if (lt && lt->existed && (lt->t.state == TS_AWAITING_REQUEST ||
	    outbox_index_has(l->oq, lt->key))) {
		log_kv(LOG_LVL_DEBUG, "feed ahead of the create answer: item skipped",
		    "verification", v->id, "ticket", lt->t.number, NULL);
		return;
	}
	log_kv(LOG_LVL_WARN, "security: verification for a request this daemon did not make ignored",
	    "verification", v->id, "ticket", v->ticket.number, NULL);
	commit_audit(l, "security", "verification for an unknown request ignored", v->id);
}

static int
poll_verification_fn(struct loop *l, struct ticket *t, const void *arg, int64_t now,
    struct engine_result *out)
{
	return engine_verification(&l->pol, t, arg, now, out);
}

void
poll_verification(struct loop *l, const struct imperai_verification *v)
{
	char *table = NULL, *sys_id = NULL;

	if (commit_lookup_verification(l, v->id, &table, &sys_id) < 0) {
		poll_unknown_verification(l, v);
		return;
	}
	commit_decide(l, commit_ticket(l, table, sys_id), poll_verification_fn, v);
	free(table);
	free(sys_id);
}

static void poll_feed_submit(struct loop *l);

static void
poll_feed_failed(struct loop *l, int err, const char *cause)
{
	if (err != -ECANCELED) {
		str_replace(&l->feed_last_error, cause ? cause : strerror(-err));
		log_kv(LOG_LVL_DEBUG, "imper.ai change feed failed: will retry at the next interval",
		    "error", l->feed_last_error, NULL);
		outlog_failed(&l->out_imp, loop_now_ms(), loop_wall(), l->feed_last_error,
		    NULL, NULL);
	}
	l->feed_next_ms = loop_now_ms() + l->cfg->imperai.poll_interval * 1000;
}

static void
poll_feed_done(int err, const char *cause, struct imperai_feed *f, void *arg)
{
	struct loop *l = arg;

	l->feed_inflight = 0;
	if (l->feed_epoch != l->epoch || err < 0) {
		poll_feed_failed(l, l->feed_epoch != l->epoch ? -ECANCELED : err, cause);
		return;
	}
	for (size_t i = 0; i < f->n; i++)
		poll_verification(l, &f->v[i]);
	if (f->next_cursor && !str_eq(f->next_cursor, l->cursor)) {
		str_replace(&l->cursor, f->next_cursor);
		l->meta_dirty = 1;
	}
	l->feed_last_ok = loop_wall();
	free(l->feed_last_error);
	l->feed_last_error = NULL;
	outlog_ok(&l->out_imp, loop_now_ms());
	if (f->has_more && f->n > 0) {
		poll_feed_submit(l);
		return;
	}
	l->feed_next_ms = poll_next_cycle(l->feed_started_ms, l->cfg->imperai.poll_interval);
}

static void
poll_feed_submit(struct loop *l)
{
	l->feed_inflight = 1;
	l->feed_epoch = l->epoch;
	imperai_changes(l->imp, l->cursor, l->cfg->imperai.feed_limit, poll_feed_done, l);
}

void
poll_schedule(struct loop *l, int64_t now)
{
	if (l->snow == NULL || l->imp == NULL)
		return;
	for (size_t i = 0; i < l->npolls; i++)
		if (!l->polls[i].inflight && now >= l->polls[i].next_ms)
			poll_start(l, &l->polls[i]);
	if (!l->feed_inflight && now >= l->feed_next_ms) {
		l->feed_started_ms = now;
		poll_feed_submit(l);
	}
	for (size_t i = 0; i < l->npolls; i++)
		sweep_schedule(l->sweep, i, l->polls[i].table, (const char *const *)l->polls[i].fields,
		    l->polls[i].nfields, l->polls[i].wm.updated_on, &(struct sweep_env){ l->cfg,
		    l->flows, l->snow, poll_sweep_observe, l }, now);
}

int64_t
poll_next_ms(const struct loop *l, int64_t until)
{
	int64_t next = until;

	for (size_t i = 0; i < l->npolls; i++)
		if (!l->polls[i].inflight && l->polls[i].next_ms < next)
			next = l->polls[i].next_ms;
	if (!l->feed_inflight && l->feed_next_ms < next)
		next = l->feed_next_ms;
	if (sweep_next_ms(l->sweep) < next)
		next = sweep_next_ms(l->sweep);
	return next;
}

/* --- fields asked for ------------------------------------------------------------------ */

/* Only the fields the engine and the policy look at. */
static void
poll_table_fields(struct loop *l, struct tpoll *p)
{
	snow_obs_fields(config_table(l->cfg, p->table), &p->fields, &p->nfields);
	flows_fields(l->flows, p->table, &p->fields, &p->nfields);
}

const char *const *
poll_fields(struct loop *l, const char *table, size_t *n)
{
	for (size_t i = 0; i < l->npolls; i++) {
		if (strcmp(l->polls[i].table, table) == 0) {
			*n = l->polls[i].nfields;
			return (const char *const *)l->polls[i].fields;
		}
	}
	*n = 0;
	return NULL;
}

/* --- the polls' life --------------------------------------------------------------------- */

void
poll_init(struct loop *l)
{
	l->npolls = l->cfg->snow.ntables;
	l->polls = xcalloc(l->npolls, sizeof(*l->polls));
	for (size_t i = 0; i < l->npolls; i++) {
		l->polls[i].table = xstrdup(l->cfg->snow.tables[i].name);
		poll_table_fields(l, &l->polls[i]);
	}
	l->sweep = sweep_new(l->npolls, loop_now_ms(), l->cfg->snow.sweep_interval);
}

void
poll_free(struct loop *l)
{
	for (size_t i = 0; i < l->npolls; i++) {
		free(l->polls[i].table);
		for (size_t k = 0; k < l->polls[i].nfields; k++)
			free(l->polls[i].fields[k]);
		free(l->polls[i].fields);
		free(l->polls[i].last_error);
	}
	free(l->polls);
	l->polls = NULL;
	l->npolls = 0;
	sweep_free(l->sweep);
	l->sweep = NULL;
}

struct tpoll *
poll_save(const struct loop *l, size_t *n)
{
	struct tpoll *saved = xcalloc(l->npolls ? l->npolls : 1, sizeof(*saved));

	for (size_t i = 0; i < l->npolls; i++) {
		saved[i].table = xstrdup(l->polls[i].table);
		saved[i].wm = l->polls[i].wm;
		saved[i].seen = l->polls[i].seen;
		saved[i].last_ok = l->polls[i].last_ok;
	}
	*n = l->npolls;
	return saved;
}

void
poll_restore(struct loop *l, struct tpoll *saved, size_t n)
{
	for (size_t i = 0; i < l->npolls; i++)
		for (size_t k = 0; k < n; k++)
			if (strcmp(l->polls[i].table, saved[k].table) == 0) {
				l->polls[i].wm = saved[k].wm;
				l->polls[i].seen = saved[k].seen;
				l->polls[i].last_ok = saved[k].last_ok;
			}
	for (size_t k = 0; k < n; k++)
		free(saved[k].table);
	free(saved);
}

/* --- positions in the store ------------------------------------------------------------- */

static void
poll_load_watermark(struct store_txn *txn, struct tpoll *p, struct buf *b)
{
	char *k = xprintf("watermark/%s", p->table);
	long long t;
	char sid[33];

	memset(&p->wm, 0, sizeof(p->wm));
	buf_reset(b);
	if (store_meta_get(txn, k, b) == 0 && sscanf(b->data, "%lld %32s", &t, sid) >= 1) {
		p->wm.updated_on = t;
		if (sscanf(b->data, "%*s %32s", sid) == 1)
			memcpy(p->wm.sys_id, sid, sizeof(sid));
	}
	free(k);
}

void
poll_load_positions(struct loop *l)
{
	struct store_txn *txn;
	struct buf b;

	buf_init(&b);
	if (store_begin(l->st, 1, &txn) < 0)
		return;
	for (size_t i = 0; i < l->npolls; i++)
		poll_load_watermark(txn, &l->polls[i], &b);
	buf_reset(&b);
	free(l->cursor);
	l->cursor = NULL;
	if (store_meta_get(txn, "imperai/cursor", &b) == 0 && b.len > 0)
		l->cursor = xstrdup(b.data);
	store_abort(txn);
	buf_free(&b);
}

void
poll_store_positions(struct store_txn *txn, struct loop *l)
{
	for (size_t i = 0; i < l->npolls; i++) {
		struct tpoll *p = &l->polls[i];
		char *k = xprintf("watermark/%s", p->table);
		char *v = xprintf("%" PRId64 " %s", p->wm.updated_on, p->wm.sys_id);

		store_meta_put(txn, k, v, strlen(v));
		free(k);
		free(v);
	}
	if (l->cursor)
		store_meta_put(txn, "imperai/cursor", l->cursor, strlen(l->cursor));
}
