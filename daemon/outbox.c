/* outbox: the crash rule (ARCHITECTURE.md section 6), and only here.
 *
 * An effect is only ever sent after the state change that caused it is
 * committed, as an outbox entry.  An entry is queued, sent -- it may have
 * landed -- or parked.  Before a ServiceNow PATCH goes out, its entry is
 * committed as sent; a sent PATCH is sent again only after reading the
 * ticket back and finding that its revision did not land, and that read
 * waits until the request it looks for can no longer land.  A merge never
 * takes in an entry that may have landed.  imper.ai creates carry an
 * Idempotency-Key; cancels are idempotent.
 *
 * The outbox itself lives in the store; the index here only says which
 * entry to start next, so the loop never rescans and decodes the whole
 * outbox.  Per ticket, entries run one at a time in seq order; across
 * tickets, the due head with the lowest seq goes first in each lane.
 * Entries whose not_before (UNIX seconds) is in the future wait in a heap
 * by time.  Every index operation is O(log n) in the number of tickets
 * with entries, except done/set_due, which also walk one ticket's. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "hmap.h"
#include "http.h"
#include "log.h"
#include "loopd.h"
#include "store.h"
#include "util.h"

struct oq_entry {
	struct oq_entry	*next;		/* the ticket's next entry, by seq */
	uint64_t	 seq;
	int64_t		 not_before;
	enum outbox_lane lane;
};

enum oq_where { OQ_NOWHERE, OQ_READY, OQ_WAIT };

struct oq_ticket {
	char		*key;
	struct oq_entry	*head;
	struct oq_entry	*tail;
	struct oq_entry	*front;		/* the entry it waits on while placed */
	uint64_t	 running;	/* seq of the running entry, 0 if none */
	enum oq_where	 where;		/* the heap holding it (never while running) */
	size_t		 pos;		/* its index there */
};

struct oq_heap {
	struct oq_ticket **v;
	size_t		  n;
	size_t		  cap;
	int		  by_time;	/* wait heap: by the head's not_before, else by seq */
};

struct outbox_index {
	struct hmap	 *tickets;	/* key -> struct oq_ticket */
	size_t		  nentries;
	struct oq_heap	  ready[OUTBOX__LANES];
	struct oq_heap	  wait;
};

enum outbox_lane
outbox_lane(enum effect_kind k)
{
	return k == EFFECT_PATCH ? OUTBOX_SNOW : OUTBOX_IMPERAI;
}

struct outbox_index *
outbox_index_new(void)
{
	struct outbox_index *q = xcalloc(1, sizeof(*q));

	q->tickets = hmap_new();
	q->wait.by_time = 1;
	return q;
}

static void
oq_ticket_free(void *p)
{
	struct oq_ticket *t = p;

	for (struct oq_entry *e = t->head, *ne; e; e = ne) {
		ne = e->next;
		free(e);
	}
	free(t->key);
	free(t);
}

void
outbox_index_free(struct outbox_index *q)
{
	if (q == NULL)
		return;
	hmap_free(q->tickets, oq_ticket_free);
	for (int i = 0; i < OUTBOX__LANES; i++)
		free(q->ready[i].v);
	free(q->wait.v);
	free(q);
}

/* --- heaps of tickets ------------------------------------------------------- */

static int
oq_less(const struct oq_heap *h, const struct oq_ticket *a, const struct oq_ticket *b)
{
	if (h->by_time && a->front->not_before != b->front->not_before)
		return a->front->not_before < b->front->not_before;
	return a->front->seq < b->front->seq;
}

static void
oq_heap_set(struct oq_heap *h, size_t i, struct oq_ticket *t)
{
	h->v[i] = t;
	t->pos = i;
}

static void
oq_heap_up(struct oq_heap *h, size_t i)
{
	struct oq_ticket *t = h->v[i];

	while (i > 0 && oq_less(h, t, h->v[(i - 1) / 2])) {
		oq_heap_set(h, i, h->v[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	oq_heap_set(h, i, t);
}

static void
oq_heap_down(struct oq_heap *h, size_t i)
{
	struct oq_ticket *t = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && oq_less(h, h->v[c + 1], h->v[c]))
			c++;
		if (!oq_less(h, h->v[c], t))
			break;
		oq_heap_set(h, i, h->v[c]);
		i = c;
	}
	oq_heap_set(h, i, t);
}

static void
oq_heap_push(struct oq_heap *h, struct oq_ticket *t)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xreallocarray(h->v, h->cap, sizeof(*h->v));
	}
	oq_heap_set(h, h->n++, t);
	oq_heap_up(h, h->n - 1);
}

static void
oq_heap_remove(struct oq_heap *h, size_t i)
{
	struct oq_ticket *last = h->v[--h->n];

	if (i == h->n)
		return;
	oq_heap_set(h, i, last);
	oq_heap_down(h, i);
	oq_heap_up(h, last->pos);
}

/* --- tickets ------------------------------------------------------------------ */

static struct oq_ticket *
oq_find(const struct outbox_index *q, const char *key)
{
	return hmap_get(q->tickets, key);
}

static struct oq_ticket *
oq_get(struct outbox_index *q, const char *key)
{
	struct oq_ticket *t = oq_find(q, key);

	if (t != NULL)
		return t;
	t = xcalloc(1, sizeof(*t));
	t->key = xstrdup(key);
	hmap_put(q->tickets, key, t);
	return t;
}

static void
oq_drop(struct outbox_index *q, struct oq_ticket *t)
{
	hmap_del(q->tickets, t->key);
	free(t->key);
	free(t);
}

static void
oq_unplace(struct outbox_index *q, struct oq_ticket *t)
{
	if (t->where == OQ_READY)
		oq_heap_remove(&q->ready[t->front->lane], t->pos);
	else if (t->where == OQ_WAIT)
		oq_heap_remove(&q->wait, t->pos);
	t->where = OQ_NOWHERE;
	t->front = NULL;
}

/* A parked PATCH steps aside: it is parked only once a read-back showed it
 * had not landed (outbox_park_unlanded), and the ticket's later PATCHes
 * carry the complete field, so they go on without it. */
static int
oq_aside(const struct oq_entry *e)
{
	return e->lane == OUTBOX_SNOW && e->not_before == OUTBOX_PARKED_AT;
}

/* A ticket that is not running waits for its first entry not stepped
 * aside: ready at once when it has no delay, else until its time
 * (outbox_index_take moves it). */
static void
oq_place(struct outbox_index *q, struct oq_ticket *t)
{
	if (t->running != 0 || t->where != OQ_NOWHERE)
		return;
	for (t->front = t->head; t->front && oq_aside(t->front); t->front = t->front->next)
		;
	if (t->front == NULL)
		return;
	if (t->front->not_before <= 0) {
		t->where = OQ_READY;
		oq_heap_push(&q->ready[t->front->lane], t);
	} else {
		t->where = OQ_WAIT;
		oq_heap_push(&q->wait, t);
	}
}

void
outbox_index_add(struct outbox_index *q, const char *key, uint64_t seq, enum outbox_lane lane,
    int64_t not_before, int running)
{
	struct oq_ticket *t = oq_get(q, key);
	struct oq_entry *e = xcalloc(1, sizeof(*e));

	e->seq = seq;
	e->lane = lane;
	e->not_before = not_before;
	if (t->tail)
		t->tail->next = e;
	else
		t->head = e;
	t->tail = e;
	q->nentries++;
	if (running && t->running == 0) {
		oq_unplace(q, t);
		t->running = seq;
	}
	oq_place(q, t);
}

int
outbox_index_mark_running(struct outbox_index *q, const char *key, uint64_t seq)
{
	struct oq_ticket *t = oq_find(q, key);

	if (t == NULL)
		return -ENOENT;
	for (struct oq_entry *e = t->head; e; e = e->next) {
		if (e->seq == seq) {
			oq_unplace(q, t);
			t->running = seq;
			return 0;
		}
	}
	return -ENOENT;
}

/* Moves the tickets whose time has come from the wait heap to ready. */
static void
oq_wake(struct outbox_index *q, int64_t now)
{
	while (q->wait.n > 0 && q->wait.v[0]->front->not_before <= now) {
		struct oq_ticket *t = q->wait.v[0];

		oq_heap_remove(&q->wait, 0);
		t->where = OQ_READY;
		oq_heap_push(&q->ready[t->front->lane], t);
	}
}

int
outbox_index_take(struct outbox_index *q, enum outbox_lane lane, int64_t now, uint64_t *seq, const char **key)
{
	struct oq_heap *h = &q->ready[lane];
	struct oq_ticket *t;

	oq_wake(q, now);
	if (h->n == 0)
		return -ENOENT;
	t = h->v[0];
	oq_heap_remove(h, 0);
	t->where = OQ_NOWHERE;
	t->running = t->front->seq;
	t->front = NULL;
	*seq = t->running;
	*key = t->key;
	return 0;
}

void
outbox_index_done(struct outbox_index *q, const char *key, uint64_t seq)
{
	struct oq_ticket *t = oq_find(q, key);
	struct oq_entry **pp, *prev = NULL;

	if (t == NULL)
		return;
	oq_unplace(q, t);
	for (pp = &t->head; *pp && (*pp)->seq != seq; pp = &(*pp)->next)
		prev = *pp;
	if (*pp != NULL) {
		struct oq_entry *e = *pp;

		*pp = e->next;
		if (t->tail == e)
			t->tail = prev;
		free(e);
		q->nentries--;
	}
	if (t->running == seq)
		t->running = 0;
	if (t->head == NULL && t->running == 0)
		oq_drop(q, t);
	else
		oq_place(q, t);
}

void
outbox_index_release(struct outbox_index *q, const char *key, uint64_t seq, int64_t not_before)
{
	struct oq_ticket *t = oq_find(q, key);

	if (t != NULL && t->running == seq)
		t->running = 0;
	outbox_index_set_due(q, key, seq, not_before);
}

void
outbox_index_set_due(struct outbox_index *q, const char *key, uint64_t seq, int64_t not_before)
{
	struct oq_ticket *t = oq_find(q, key);

	if (t == NULL)
		return;
	oq_unplace(q, t);
	for (struct oq_entry *e = t->head; e; e = e->next)
		if (e->seq == seq)
			e->not_before = not_before;
	oq_place(q, t);
}

int
outbox_index_has(const struct outbox_index *q, const char *key)
{
	return oq_find(q, key) != NULL;
}

uint64_t
outbox_index_next_same(const struct outbox_index *q, const char *key, uint64_t seq, int64_t now)
{
	const struct oq_ticket *t = oq_find(q, key);

	if (t == NULL)
		return 0;
	for (const struct oq_entry *e = t->head; e; e = e->next) {
		if (e->seq != seq)
			continue;
		if (e->next && e->next->lane == e->lane && e->next->not_before <= now)
			return e->next->seq;
		return 0;
	}
	return 0;
}

int64_t
outbox_index_next_due(const struct outbox_index *q)
{
	return q->wait.n > 0 ? q->wait.v[0]->front->not_before : INT64_MAX;
}

size_t
outbox_index_count(const struct outbox_index *q)
{
	return q->nentries;
}

uint64_t *
outbox_index_running(const struct outbox_index *q, char ***keys, size_t *n)
{
	struct hmap_iter it = { 0 };
	uint64_t *v = NULL;
	void *p;

	*keys = NULL;
	*n = 0;
	while (hmap_next(q->tickets, &it, NULL, &p)) {
		struct oq_ticket *t = p;

		if (t->running == 0)
			continue;
		v = xreallocarray(v, *n + 1, sizeof(*v));
		*keys = xreallocarray(*keys, *n + 1, sizeof(**keys));
		v[*n] = t->running;
		(*keys)[(*n)++] = xstrdup(t->key);
	}
	return v;
}

/* --- the crash rule ---------------------------------------------------------------- */

int
outbox_resolves(const struct effect *e)
{
	return e->kind == EFFECT_PATCH && str_eq(e->tag, "resolved");
}

int
outbox_read_back_first(const struct outbox_entry *en)
{
	return en->e.kind == EFFECT_PATCH &&
	    (en->phase == OUTBOX_SENT || outbox_resolves(&en->e));
}

/* A PATCH sent before without an answer is read back only once it can no
 * longer land: a request still queued at ServiceNow when the daemon died
 * (or its answer was lost) may be applied after a read-back made too
 * soon, and the replay would then write it twice.  So it waits until
 * settle seconds after its last send (at most that long from now, should
 * the clock have gone back). */
int64_t
outbox_unsettled_until(const struct outbox_entry *en, int settle, int64_t now)
{
	int64_t due = en->sent_at + settle;

	if (en->e.kind != EFFECT_PATCH || en->phase != OUTBOX_SENT || due <= now)
		return 0;
	return due > now + settle ? now + settle : due;
}

void
outbox_sending(struct outbox_entry *en, int64_t now)
{
	en->attempts++;
	en->sent_at = now;
	en->phase = OUTBOX_SENT;
}

/* An earlier send that may have landed still gets its read-back. */
void
outbox_unsent(struct outbox_entry *en)
{
	if (en->attempts > 0)
		en->attempts--;
	if (en->attempts == 0)
		en->phase = OUTBOX_QUEUED;
}

/* Only PATCHes never sent, of one generation: nothing merged can have
 * landed, and the read-back after a crash looks for the last revision,
 * which covers the others.  A resolve goes alone: it is read back first,
 * and may be withdrawn. */
int
outbox_may_merge(const struct outbox_entry *first, const struct outbox_entry *next)
{
	return first->e.kind == EFFECT_PATCH && next->e.kind == EFFECT_PATCH &&
	    first->phase == OUTBOX_QUEUED && next->phase == OUTBOX_QUEUED &&
	    !outbox_resolves(&first->e) && !outbox_resolves(&next->e) &&
	    next->e.generation == first->e.generation;
}

int
outbox_shows(const struct outbox_entry *en, const char *field)
{
	return field != NULL &&
	    engine_field_has_revision(field, en->e.generation, en->e.revision);
}

/* Nothing parks on a transient answer until it has been tried max times;
 * backoff between 1 s and 5 min.  A PATCH that may have landed is not
 * parked here: it is read back first (outbox_park_unlanded). */
int
outbox_again(struct outbox_entry *en, const char *why, int max, int64_t now, double rnd)
{
	int64_t delay;

	str_replace(&en->last_error, why);
	if (en->attempts >= max && !(en->e.kind == EFFECT_PATCH && en->phase == OUTBOX_SENT)) {
		en->not_before = OUTBOX_PARKED_AT;
		en->phase = OUTBOX_PARKED;
		return 1;
	}
	delay = http_backoff_ms(en->attempts, 1000, 300000, rnd);
	en->not_before = now + (delay + 999) / 1000;
	return 0;
}

/* A read-back showed that en, sent max times, had not landed: it parks
 * known unsent (no attempt counted, so its release sends it without a
 * read-back), and steps aside for the ticket's later writes.  1 if parked;
 * 0: send it again.  The read-back is part of the try after the last send,
 * so that try's count is max + 1. */
int
outbox_park_unlanded(struct outbox_entry *en, int max)
{
	if (en->e.kind != EFFECT_PATCH || en->attempts <= max)
		return 0;
	en->attempts = 0;
	en->not_before = OUTBOX_PARKED_AT;
	en->phase = OUTBOX_PARKED;
	return 1;
}

/* A PATCH sent for the first time since it was parked, passed meanwhile
 * by a later one of its ticket that landed: the field it carries is older
 * than the one shown. */
int
outbox_superseded(const struct outbox_entry *en, uint32_t landed_revision)
{
	return en->e.kind == EFFECT_PATCH && landed_revision > en->e.revision;
}

/* Takes field out of a superseded PATCH; the rest (its work note, what an
 * on_fail set) still goes.  1 when nothing is left to send. */
int
outbox_strip_field(struct outbox_entry *en, const char *field)
{
	struct json_object *o = json_tokener_parse(en->e.patch_json);
	int empty;

	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return 0;
	}
	json_object_object_del(o, field);
	empty = json_object_object_length(o) == 0;
	str_replace(&en->e.patch_json, json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return empty;
}

/* A PATCH that may have landed keeps its read-back. */
void
outbox_unpark(struct outbox_entry *en)
{
	en->not_before = 0;
	en->attempts = en->e.kind == EFFECT_PATCH && en->attempts > 0 ? 1 : 0;
	en->phase = en->attempts > 0 ? OUTBOX_SENT : OUTBOX_QUEUED;
}

/* --- the daemon's outbox: entries in and out of jobs -------------------------------- */

void
outbox_job_free(struct job *j)
{
	outbox_entry_free(&j->en);
	free(j->gone);
	free(j->revs);
	free(j);
}

void
outbox_job_end(struct job *j, int done)
{
	struct loop *l = j->l;
	char *key = loop_key(j->en.e.table, j->en.e.sys_id);

	if (j->en.e.kind == EFFECT_PATCH)
		l->snow_jobs--;
	else
		l->imp_jobs--;
	if (done) {
		outbox_index_done(l->oq, key, j->seq);
		l->done_seqs = xreallocarray(l->done_seqs, l->ndone + 1, sizeof(*l->done_seqs));
		l->done_seqs[l->ndone++] = j->seq;
		l->stat_effects_done++;
		outlog_ok(&l->out_write, loop_now_ms());
	} else
		outbox_index_release(l->oq, key, j->seq, j->en.not_before);
	free(key);
	l->outbox_dirty = 1;
	outbox_job_free(j);
}

static void
outbox_job_log(const struct job *j, const char *why, int parked)
{
	const struct effect *e = &j->en.e;
	char att[16];

	if (parked)
		log_kv(LOG_LVL_ERR, "write parked after repeated failures: it is retried on its "
		    "own every servicenow.parked_retry, or at once with imperai-snowctl retry once "
		    "the cause is fixed", "ticket", e->number, "effect",
		    engine_effect_name(e->kind), "error", why, NULL);
	else {
		snprintf(att, sizeof(att), "%d", j->en.attempts);
		log_kv(LOG_LVL_DEBUG, "write failed: will retry", "ticket", e->number, "effect",
		    engine_effect_name(e->kind), "attempt", att, "error", why, NULL);
		outlog_failed(&j->l->out_write, loop_now_ms(), loop_wall(), why, "ticket",
		    e->number);
	}
}

/* j's entry as it is now goes back to the outbox; the rewritten entry is
 * committed with the step. */
static void
outbox_job_keep(struct job *j)
{
	struct loop *l = j->l;
	struct job *copy = xcalloc(1, sizeof(*copy));
	char *enc;

	copy->l = l;
	copy->seq = j->seq;
	enc = codec_entry_encode(&j->en);
	codec_entry_decode(enc, strlen(enc), &copy->en, NULL);
	free(enc);
	l->updated = xreallocarray(l->updated, l->nupdated + 1, sizeof(*l->updated));
	l->updated[l->nupdated++] = copy;
	outbox_job_end(j, 0);
}

void
outbox_job_again(struct job *j, const char *why)
{
	struct loop *l = j->l;
	int parked = outbox_again(&j->en, why, l->cfg->snow.write_attempts, loop_wall(),
	    (double)rand() / RAND_MAX);

	outbox_job_log(j, why, parked);
	l->stat_effects_failed++;
	l->m_write_failures[j->en.e.kind]++;
	outbox_job_keep(j);
}

int
outbox_job_park_unlanded(struct job *j)
{
	const struct effect *e = &j->en.e;
	char rev[24];

	if (!outbox_park_unlanded(&j->en, j->l->cfg->snow.write_attempts))
		return 0;
	snprintf(rev, sizeof(rev), "%" PRIu32 ".%" PRIu32, e->generation, e->revision);
	log_kv(LOG_LVL_ERR, "write parked after repeated failures: it did not land, and the "
	    "ticket's later writes go on without it; it is tried again every "
	    "servicenow.parked_retry, or at once with imperai-snowctl retry once the cause is "
	    "fixed", "ticket", e->number, "event", e->tag, "revision", rev, "error",
	    j->en.last_error, NULL);
	outbox_job_keep(j);
	return 1;
}

/* --- picking what starts with a commit -------------------------------------------- */

/* Reads a picked entry; an unreadable one is skipped (left in the store). */
static int
outbox_pick_read(struct loop *l, struct store_txn *txn, struct job *j, const char *key,
    struct buf *b)
{
	char *cause = NULL;
	int rc;

	/* A rewrite this step has not committed yet is the entry's truth
	 * (a 429 undoes its send: no read-back is due). */
	for (size_t i = l->nupdated; i-- > 0;) {
		if (l->updated[i]->seq == j->seq) {
			char *enc = codec_entry_encode(&l->updated[i]->en);

			rc = codec_entry_decode(enc, strlen(enc), &j->en, &cause);
			free(enc);
			if (rc == 0)
				return 0;
			break;
		}
	}
	if ((rc = store_outbox_get(txn, j->seq, b)) == 0 &&
	    (rc = codec_entry_decode(b->data, b->len, &j->en, &cause)) == 0)
		return 0;
	log_kv(LOG_LVL_ERR, "outbox entry unreadable: skipped", "ticket", key,
	    "error", cause ? cause : store_strerror(rc), NULL);
	free(cause);
	return rc;
}

/* {"f": html, "work_notes": a} then {"f": html2, "work_notes": b} as one
 * PATCH: the later value of each field, both notes in one entry (each
 * keeps its tag).  NULL if either is not a JSON object. */
static char *
outbox_patch_merge(const char *first, const char *later)
{
	json_object *a = json_tokener_parse(first), *b = json_tokener_parse(later), *note;
	char *out = NULL;

	if (!json_object_is_type(a, json_type_object) || !json_object_is_type(b, json_type_object))
		goto out;
	json_object_object_foreach(b, k, v) {
		if (strcmp(k, "work_notes") == 0 && json_object_object_get_ex(a, k, &note) &&
		    json_object_is_type(note, json_type_string) &&
		    json_object_is_type(v, json_type_string)) {
			char *both = xprintf("%s\n\n%s", json_object_get_string(note),
			    json_object_get_string(v));

			json_object_object_add(a, k, json_object_new_string(both));
			free(both);
		} else
			json_object_object_add(a, k, json_object_get(v));
	}
	out = xstrdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
out:
	json_object_put(a);
	json_object_put(b);
	return out;
}

/* next joins j: its body, revision and tag; the revision j wrote before
 * is remembered, for the engine to hear that it landed too. */
static void
outbox_merge_into(struct job *j, uint64_t next, struct outbox_entry *en, char *merged)
{
	j->gone = xreallocarray(j->gone, j->ngone + 1, sizeof(*j->gone));
	j->revs = xreallocarray(j->revs, j->ngone + 1, sizeof(*j->revs));
	j->gone[j->ngone] = next;
	j->revs[j->ngone++] = j->en.e.revision;
	free(j->en.e.patch_json);
	j->en.e.patch_json = merged;
	j->en.e.revision = en->e.revision;
	str_replace(&j->en.e.tag, en->e.tag);
}

/* Folds the PATCHes queued right behind j (due, and mergeable by the
 * rule) into j: one request instead of several. */
static void
outbox_pick_merge(struct loop *l, struct store_txn *txn, struct job *j, const char *key,
    struct buf *b, int64_t now)
{
	uint64_t next = j->seq;
	struct outbox_entry en;
	char *merged;

	while ((next = outbox_index_next_same(l->oq, key, next, now)) != 0) {
		if (store_outbox_get(txn, next, b) != 0 ||
		    codec_entry_decode(b->data, b->len, &en, NULL) != 0)
			return;
		merged = outbox_may_merge(&j->en, &en) ?
		    outbox_patch_merge(j->en.e.patch_json, en.e.patch_json) : NULL;
		if (merged == NULL) {
			outbox_entry_free(&en);
			return;
		}
		outbox_merge_into(j, next, &en, merged);
		outbox_entry_free(&en);
	}
}

/* An entry whose read-back could still be overtaken goes back to wait. */
static int
outbox_pick_unsettled(struct loop *l, struct job *j, const char *key, int64_t now)
{
	int64_t due = outbox_unsettled_until(&j->en, l->cfg->snow.write_settle, now);

	if (due == 0)
		return 0;
	log_kv(LOG_LVL_DEBUG, "write unanswered: read back once it can no longer land",
	    "ticket", j->en.e.number, "event", j->en.e.tag, NULL);
	outbox_index_release(l->oq, key, j->seq, due);
	outbox_job_free(j);
	return 1;
}

static void
outbox_picked_add(struct outbox_batch *b, struct job *j)
{
	b->picked = xreallocarray(b->picked, b->npicked + 1, sizeof(*b->picked));
	b->picked[b->npicked++] = j;
}

/* Entry seq of key, read and readied to start: NULL when it is skipped
 * (unreadable) or put back (unsettled). */
static struct job *
outbox_pick_one(struct loop *l, struct store_txn **txn, uint64_t seq, const char *key,
    struct buf *b, int64_t now)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->l = l;
	j->seq = seq;
	if ((*txn == NULL && store_begin(l->st, 1, txn) < 0) ||
	    outbox_pick_read(l, *txn, j, key, b) < 0) {
		outbox_index_done(l->oq, key, seq);
		free(j);
		return NULL;
	}
	if (outbox_pick_unsettled(l, j, key, now))
		return NULL;
	j->checking = outbox_read_back_first(&j->en);
	if (j->en.e.kind == EFFECT_PATCH && !j->checking)
		outbox_pick_merge(l, *txn, j, key, b, now);
	outbox_sending(&j->en, now);
	return j;
}

/* Takes the due stored entries the lanes have room for, oldest first. */
static void
outbox_pick_stored(struct loop *l, struct outbox_batch *ob, int room[OUTBOX__LANES])
{
	int64_t now = loop_wall();
	struct store_txn *txn = NULL;
	struct buf b;
	uint64_t seq;
	const char *key;
	struct job *j;

	buf_init(&b);
	for (int lane = 0; lane < OUTBOX__LANES; lane++) {
		while (room[lane] > 0 &&
		    outbox_index_take(l->oq, (enum outbox_lane)lane, now, &seq, &key) == 0) {
			if ((j = outbox_pick_one(l, &txn, seq, key, &b, now)) == NULL)
				continue;
			ob->marks |= j->en.e.kind == EFFECT_PATCH;
			outbox_picked_add(ob, j);
			room[lane]--;
		}
	}
	if (txn != NULL)
		store_abort(txn);
	buf_free(&b);
}

/* The job of new effect e, started in the transaction that stores it. */
static struct job *
outbox_fresh_job(struct loop *l, struct effect *e, int64_t now)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->l = l;
	j->en.e = *e;
	memset(e, 0, sizeof(*e));
	j->en.phase = OUTBOX_QUEUED;
	j->checking = outbox_read_back_first(&j->en);
	outbox_sending(&j->en, now);
	return j;
}

/* A new effect starts in the same transaction that stores it when its
 * lane has room and its ticket has nothing before it in the outbox. */
static void
outbox_pick_fresh(struct loop *l, struct outbox_batch *b, int room[OUTBOX__LANES])
{
	int64_t now = loop_wall();
	size_t idx = 0;

	for (size_t i = 0; i < l->nresults; i++)
		b->nnew += l->results[i].neffects;
	b->fresh = xcalloc(b->nnew ? b->nnew : 1, sizeof(*b->fresh));
	b->seqs = xcalloc(b->nnew ? b->nnew : 1, sizeof(*b->seqs));
	for (size_t i = 0; i < l->nresults; i++) {
		for (size_t k = 0; k < l->results[i].neffects; k++, idx++) {
			struct effect *e = &l->results[i].effects[k];
			char *key = loop_key(e->table, e->sys_id);
			struct lticket *lt = commit_find(l, key);
			enum outbox_lane lane = outbox_lane(e->kind);
			int first = lt != NULL && lt->new_effects++ == 0;

			if (first && room[lane] > 0 && !outbox_index_has(l->oq, key)) {
				b->fresh[idx] = outbox_fresh_job(l, e, now);
				room[lane]--;
			}
			free(key);
		}
	}
}

void
outbox_pick(struct loop *l, struct outbox_batch *b, int start)
{
	int room[OUTBOX__LANES] = { 0, 0 };

	if (start && l->snow != NULL && l->imp != NULL) {
		room[OUTBOX_SNOW] = l->cfg->snow.http.concurrency * 2 - l->snow_jobs;
		room[OUTBOX_IMPERAI] = l->cfg->imperai.http.concurrency * 2 - l->imp_jobs;
	}
	outbox_pick_stored(l, b, room);
	outbox_pick_fresh(l, b, room);
}

/* --- the outbox in the step's transaction -------------------------------------------- */

/* The stored form of new entry idx: started at once (sent), or queued. */
static char *
outbox_new_encode(struct loop *l, struct outbox_batch *b, size_t i, size_t k, size_t idx)
{
	struct outbox_entry en;

	if (b->fresh[idx] != NULL)
		return codec_entry_encode(&b->fresh[idx]->en);
	memset(&en, 0, sizeof(en));
	en.e = l->results[i].effects[k];
	return codec_entry_encode(&en);
}

/* The new entries, the finished ones deleted, the rewritten ones, and the
 * picked PATCHes marked sent (crash rule: committed before they go out). */
void
outbox_store(struct store_txn *txn, struct loop *l, struct outbox_batch *b)
{
	size_t idx = 0;
	char *enc;

	for (size_t i = 0; i < l->nresults; i++) {
		for (size_t k = 0; k < l->results[i].neffects; k++, idx++) {
			enc = outbox_new_encode(l, b, i, k, idx);
			store_outbox_add(txn, enc, strlen(enc), &b->seqs[idx]);
			free(enc);
		}
	}
	for (size_t i = 0; i < l->ndone; i++)
		store_outbox_del(txn, l->done_seqs[i]);
	for (size_t i = 0; i < l->nupdated; i++) {
		enc = codec_entry_encode(&l->updated[i]->en);
		store_outbox_put(txn, l->updated[i]->seq, enc, strlen(enc));
		free(enc);
	}
	for (size_t i = 0; i < b->npicked; i++) {
		struct job *j = b->picked[i];

		if (j->en.e.kind != EFFECT_PATCH)
			continue;
		enc = codec_entry_encode(&j->en);
		store_outbox_put(txn, j->seq, enc, strlen(enc));
		free(enc);
		for (size_t k = 0; k < j->ngone; k++)
			store_outbox_del(txn, j->gone[k]);
	}
}

void
outbox_committed(struct loop *l, struct outbox_batch *b)
{
	size_t idx = 0;

	for (size_t i = 0; i < l->nresults; i++) {
		for (size_t k = 0; k < l->results[i].neffects; k++, idx++) {
			struct job *j = b->fresh[idx];
			const struct effect *e = j ? &j->en.e : &l->results[i].effects[k];
			char *key = loop_key(e->table, e->sys_id);

			outbox_index_add(l->oq, key, b->seqs[idx], outbox_lane(e->kind), 0, j != NULL);
			if (j != NULL)
				j->seq = b->seqs[idx];
			free(key);
		}
	}
}

void
outbox_start(struct loop *l, struct outbox_batch *b)
{
	for (size_t i = 0; i < b->npicked; i++) {
		struct job *j = b->picked[i];

		if (j->ngone > 0) {
			char *key = loop_key(j->en.e.table, j->en.e.sys_id);

			for (size_t k = 0; k < j->ngone; k++)
				outbox_index_done(l->oq, key, j->gone[k]);
			free(key);
		}
		send_start(l, j);
	}
	for (size_t i = 0; i < b->nnew; i++)
		if (b->fresh[i] != NULL)
			send_start(l, b->fresh[i]);
}

void
outbox_batch_free(struct loop *l, struct outbox_batch *b, int void_jobs)
{
	for (size_t i = 0; void_jobs && i < b->npicked; i++) {
		struct job *j = b->picked[i];
		char *key = loop_key(j->en.e.table, j->en.e.sys_id);

		outbox_index_release(l->oq, key, j->seq, j->en.not_before);
		free(key);
		outbox_job_free(j);
	}
	for (size_t i = 0; void_jobs && i < b->nnew; i++)
		if (b->fresh[i] != NULL)
			outbox_job_free(b->fresh[i]);
	free(b->picked);
	free(b->fresh);
	free(b->seqs);
}

/* --- the index from the store ----------------------------------------------------- */

static int
outbox_scan_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct outbox_index *q = arg;
	struct outbox_entry en;
	char *key, *cause = NULL;

	if (codec_entry_decode(val, len, &en, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "outbox entry unreadable: skipped", "error", cause, NULL);
		free(cause);
		return 0;
	}
	key = loop_key(en.e.table, en.e.sys_id);
	outbox_index_add(q, key, seq, outbox_lane(en.e.kind), en.not_before, 0);
	free(key);
	outbox_entry_free(&en);
	return 0;
}

void
outbox_index_scan(struct store *st, struct outbox_index *q)
{
	struct store_txn *txn;

	if (store_begin(st, 1, &txn) == 0) {
		store_outbox_each(txn, outbox_scan_one, q);
		store_abort(txn);
	}
}

void
outbox_load(struct loop *l)
{
	struct outbox_index *q = outbox_index_new();
	uint64_t *run = NULL;
	char **keys = NULL;
	size_t n = 0;

	if (l->oq != NULL)
		run = outbox_index_running(l->oq, &keys, &n);
	outbox_index_scan(l->st, q);
	for (size_t i = 0; i < n; i++) {
		outbox_index_mark_running(q, keys[i], run[i]);
		free(keys[i]);
	}
	free(keys);
	free(run);
	outbox_index_free(l->oq);
	l->oq = q;
	l->outbox_dirty = 1;
}
