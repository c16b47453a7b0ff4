/* ops: the operator's requests that imperai-snowctl leaves in the store.
 * resync reads a ticket again and decides it as if never seen; retry
 * releases parked outbox entries (the outbox says how: outbox_unpark). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "refs.h"
#include "loopd.h"
#include "requests.h"
#include "store.h"
#include "util.h"

struct resync {
	struct loop	*l;
	char		*table;
	char		*number;
};

static void
ops_resync_free(struct resync *rs)
{
	free(rs->table);
	free(rs->number);
	free(rs);
}

static void
ops_resync_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct resync *rs = arg;
	struct lticket *lt;

	(void)status;
	if (err < 0) {
		if (err != -ECANCELED)
			log_kv(LOG_LVL_WARN, "resync failed", "ticket", rs->number, "error", cause, NULL);
		ops_resync_free(rs);
		return;
	}
	lt = commit_ticket(rs->l, rs->table, rec->sys_id);
	/* A resync looks again even at a record already seen. */
	lt->t.seen_mod_count = -1;
	if (poll_observe_ticket(rs->l, lt, rs->table, rec) == 0)
		lt->dirty = 1;
	log_kv(LOG_LVL_NOTICE, "resync done", "ticket", rs->number, NULL);
	ops_resync_free(rs);
}

static void
ops_resync(struct loop *l, const struct req *r)
{
	struct resync *rs;
	const char *const *fields;
	char *cause = NULL;
	size_t n;

	if (r->table == NULL || r->sys_id == NULL) {
		log_kv(LOG_LVL_WARN, "resync request without table and sys_id ignored",
		    "ticket", r->ticket, NULL);
		return;
	}
	rs = xcalloc(1, sizeof(*rs));
	rs->l = l;
	rs->table = xstrdup(r->table);
	rs->number = xstrdup(r->ticket ? r->ticket : r->sys_id);
	fields = poll_fields(l, r->table, &n);
	if (snow_get(l->snow, r->table, r->sys_id, fields, n, ops_resync_done, rs, &cause) < 0) {
		log_kv(LOG_LVL_WARN, "resync refused", "ticket", rs->number, "error", cause, NULL);
		free(cause);
		ops_resync_free(rs);
	}
}

struct unpark {
	uint64_t	  seq;		/* 0: every parked entry */
	uint64_t	 *seqs;
	char		**encs;
	char		**keys;		/* their tickets, for the outbox index */
	size_t		  n;
};

static void
ops_unpark_clear(struct unpark *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->encs[i]);
		free(u->keys[i]);
	}
	free(u->seqs);
	free(u->encs);
	free(u->keys);
	u->seqs = NULL;
	u->encs = NULL;
	u->keys = NULL;
	u->n = 0;
}

static int
ops_unpark_scan(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct unpark *u = arg;
	struct outbox_entry en;

	if (u->seq != 0 && seq != u->seq)
		return 0;
	if (codec_entry_decode(val, len, &en, NULL) < 0)
		return 0;
	if (en.phase == OUTBOX_PARKED || u->seq != 0) {
		outbox_unpark(&en);
		u->seqs = xreallocarray(u->seqs, u->n + 1, sizeof(*u->seqs));
		u->encs = xreallocarray(u->encs, u->n + 1, sizeof(*u->encs));
		u->keys = xreallocarray(u->keys, u->n + 1, sizeof(*u->keys));
		u->seqs[u->n] = seq;
		u->keys[u->n] = loop_key(en.e.table, en.e.sys_id);
		u->encs[u->n++] = codec_entry_encode(&en);
	}
	outbox_entry_free(&en);
	return 0;
}

/* May run twice (store_write): starts over each time. */
static int
ops_unpark_fn(struct store_txn *txn, void *arg)
{
	struct unpark *u = arg;

	ops_unpark_clear(u);
	store_outbox_each(txn, ops_unpark_scan, u);
	for (size_t i = 0; i < u->n; i++)
		store_outbox_put(txn, u->seqs[i], u->encs[i], strlen(u->encs[i]));
	return store_txn_error(txn);
}

static void
ops_retry(struct loop *l, const struct req *r)
{
	struct unpark u = { .seq = r->seq };
	char count[24];
	int rc;

	rc = store_write(l->st, ops_unpark_fn, &u);
	snprintf(count, sizeof(count), "%zu", u.n);
	if (rc < 0)
		log_kv(LOG_LVL_ERR, "retry failed", "error", store_strerror(rc), NULL);
	else
		log_kv(u.n || r->seq ? LOG_LVL_NOTICE : LOG_LVL_DEBUG, "parked writes released",
		    "count", count, NULL);
	for (size_t i = 0; rc == 0 && i < u.n; i++)
		outbox_index_set_due(l->oq, u.keys[i], u.seqs[i], 0);
	ops_unpark_clear(&u);
	l->outbox_dirty = 1;
}

void
ops_unpark_due(struct loop *l, int64_t now_ms)
{
	if (l->cfg->snow.parked_retry <= 0 || now_ms < l->unpark_ms)
		return;
	if (l->unpark_ms != 0 && l->snow != NULL)
		ops_retry(l, &(struct req){ .seq = 0 });
	l->unpark_ms = now_ms + (int64_t)l->cfg->snow.parked_retry * 1000;
}

/* Whether a poll of ServiceNow succeeded within its last two intervals. */
static int
ops_snow_answers(const struct loop *l)
{
	int64_t now = loop_wall();

	for (size_t i = 0; i < l->npolls; i++)
		if (l->polls[i].last_ok > 0 &&
		    now - l->polls[i].last_ok <= 2 * (int64_t)l->cfg->snow.poll_interval)
			return 1;
	return 0;
}

void
ops_refs_due(struct loop *l, int64_t now_ms)
{
	struct errlist errs = { 0 };
	int rc;

	if (now_ms < l->refs_ms || !refs_pending(l->flows) || !ops_snow_answers(l))
		return;
	rc = refs_resolve_some(l->cfg, l->flows, 1, &errs);
	for (size_t i = 0; i < errs.n; i++)
		log_kv(rc == -EINVAL ? LOG_LVL_ERR : LOG_LVL_WARN, "reference not looked up",
		    "error", errs.msg[i], NULL);
	if (rc == 0)
		log_kv(LOG_LVL_NOTICE, "references looked up: on_fail reassigns again", NULL);
	errlist_free(&errs);
	/* a name that matches nothing is the admin's to fix (and reload) */
	l->refs_ms = now_ms + (rc == -EINVAL ? 3600000 : 60000);
}

int64_t
ops_next_ms(const struct loop *l, int64_t until)
{
	if (l->cfg->snow.parked_retry > 0 && l->unpark_ms != 0 && l->unpark_ms < until)
		return l->unpark_ms;
	return until;
}

void
ops_requests(struct loop *l)
{
	struct req *v = NULL;
	size_t n = 0;

	if (l->snow == NULL || requests_take(l->st, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i].op == REQ_RESYNC)
			ops_resync(l, &v[i]);
		else
			ops_retry(l, &v[i]);
	}
	requests_free(v, n);
}
