/* outq: in-memory index of the outbox (see outq.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "outq.h"
#include "util.h"

struct oq_entry {
	struct oq_entry	*next;		/* the ticket's next entry, by seq */
	uint64_t	 seq;
	int64_t		 not_before;
	enum outq_lane	 lane;
};

enum oq_where { OQ_NOWHERE, OQ_READY, OQ_WAIT };

struct oq_ticket {
	struct oq_ticket *hnext;	/* hash chain */
	char		*key;
	struct oq_entry	*head;
	struct oq_entry	*tail;
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

struct outq {
	struct oq_ticket **tbl;
	size_t		  size;
	size_t		  ntickets;
	size_t		  nentries;
	struct oq_heap	  ready[OUTQ__LANES];
	struct oq_heap	  wait;
};

static size_t
oq_hash(const char *s)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

struct outq *
outq_new(void)
{
	struct outq *q = xcalloc(1, sizeof(*q));

	q->wait.by_time = 1;
	return q;
}

void
outq_free(struct outq *q)
{
	if (q == NULL)
		return;
	for (size_t i = 0; i < q->size; i++) {
		for (struct oq_ticket *t = q->tbl[i], *nt; t; t = nt) {
			nt = t->hnext;
			for (struct oq_entry *e = t->head, *ne; e; e = ne) {
				ne = e->next;
				free(e);
			}
			free(t->key);
			free(t);
		}
	}
	free(q->tbl);
	for (int i = 0; i < OUTQ__LANES; i++)
		free(q->ready[i].v);
	free(q->wait.v);
	free(q);
}

/* --- heaps of tickets ------------------------------------------------------- */

static int
oq_less(const struct oq_heap *h, const struct oq_ticket *a, const struct oq_ticket *b)
{
	if (h->by_time && a->head->not_before != b->head->not_before)
		return a->head->not_before < b->head->not_before;
	return a->head->seq < b->head->seq;
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
oq_find(const struct outq *q, const char *key)
{
	if (q->size == 0)
		return NULL;
	for (struct oq_ticket *t = q->tbl[oq_hash(key) % q->size]; t; t = t->hnext)
		if (strcmp(t->key, key) == 0)
			return t;
	return NULL;
}

static void
oq_rehash(struct outq *q)
{
	size_t nsize = q->size ? q->size * 2 : 256;
	struct oq_ticket **ntbl = xcalloc(nsize, sizeof(*ntbl));

	for (size_t i = 0; i < q->size; i++) {
		for (struct oq_ticket *t = q->tbl[i], *nt; t; t = nt) {
			size_t b = oq_hash(t->key) % nsize;

			nt = t->hnext;
			t->hnext = ntbl[b];
			ntbl[b] = t;
		}
	}
	free(q->tbl);
	q->tbl = ntbl;
	q->size = nsize;
}

static struct oq_ticket *
oq_get(struct outq *q, const char *key)
{
	struct oq_ticket *t = oq_find(q, key);
	size_t b;

	if (t != NULL)
		return t;
	if (q->ntickets >= q->size)
		oq_rehash(q);
	t = xcalloc(1, sizeof(*t));
	t->key = xstrdup(key);
	b = oq_hash(key) % q->size;
	t->hnext = q->tbl[b];
	q->tbl[b] = t;
	q->ntickets++;
	return t;
}

static void
oq_drop(struct outq *q, struct oq_ticket *t)
{
	struct oq_ticket **pp = &q->tbl[oq_hash(t->key) % q->size];

	while (*pp != t)
		pp = &(*pp)->hnext;
	*pp = t->hnext;
	q->ntickets--;
	free(t->key);
	free(t);
}

static void
oq_unplace(struct outq *q, struct oq_ticket *t)
{
	if (t->where == OQ_READY)
		oq_heap_remove(&q->ready[t->head->lane], t->pos);
	else if (t->where == OQ_WAIT)
		oq_heap_remove(&q->wait, t->pos);
	t->where = OQ_NOWHERE;
}

/* A ticket that is not running waits for its head: ready at once when the
 * head has no delay, else until its time (outq_take moves it). */
static void
oq_place(struct outq *q, struct oq_ticket *t)
{
	if (t->running != 0 || t->head == NULL || t->where != OQ_NOWHERE)
		return;
	if (t->head->not_before <= 0) {
		t->where = OQ_READY;
		oq_heap_push(&q->ready[t->head->lane], t);
	} else {
		t->where = OQ_WAIT;
		oq_heap_push(&q->wait, t);
	}
}

/* --- the interface --------------------------------------------------------------- */

void
outq_add(struct outq *q, const char *key, uint64_t seq, enum outq_lane lane,
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
outq_mark_running(struct outq *q, const char *key, uint64_t seq)
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
oq_wake(struct outq *q, int64_t now)
{
	while (q->wait.n > 0 && q->wait.v[0]->head->not_before <= now) {
		struct oq_ticket *t = q->wait.v[0];

		oq_heap_remove(&q->wait, 0);
		t->where = OQ_READY;
		oq_heap_push(&q->ready[t->head->lane], t);
	}
}

int
outq_take(struct outq *q, enum outq_lane lane, int64_t now, uint64_t *seq, const char **key)
{
	struct oq_heap *h = &q->ready[lane];
	struct oq_ticket *t;

	oq_wake(q, now);
	if (h->n == 0)
		return -ENOENT;
	t = h->v[0];
	oq_heap_remove(h, 0);
	t->where = OQ_NOWHERE;
	t->running = t->head->seq;
	*seq = t->running;
	*key = t->key;
	return 0;
}

void
outq_done(struct outq *q, const char *key, uint64_t seq)
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
outq_release(struct outq *q, const char *key, uint64_t seq, int64_t not_before)
{
	struct oq_ticket *t = oq_find(q, key);

	if (t != NULL && t->running == seq)
		t->running = 0;
	outq_set_due(q, key, seq, not_before);
}

void
outq_set_due(struct outq *q, const char *key, uint64_t seq, int64_t not_before)
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
outq_has(const struct outq *q, const char *key)
{
	return oq_find(q, key) != NULL;
}

uint64_t
outq_next_same(const struct outq *q, const char *key, uint64_t seq, int64_t now)
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
outq_next_due(const struct outq *q)
{
	return q->wait.n > 0 ? q->wait.v[0]->head->not_before : INT64_MAX;
}

size_t
outq_count(const struct outq *q)
{
	return q->nentries;
}

uint64_t *
outq_running(const struct outq *q, char ***keys, size_t *n)
{
	uint64_t *v = NULL;

	*keys = NULL;
	*n = 0;
	for (size_t i = 0; i < q->size; i++) {
		for (struct oq_ticket *t = q->tbl[i]; t; t = t->hnext) {
			if (t->running == 0)
				continue;
			v = xreallocarray(v, *n + 1, sizeof(*v));
			*keys = xreallocarray(*keys, *n + 1, sizeof(**keys));
			v[*n] = t->running;
			(*keys)[(*n)++] = xstrdup(t->key);
		}
	}
	return v;
}
