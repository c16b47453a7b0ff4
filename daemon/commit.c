/* commit: the step's ticket cache and its one decide-and-commit path.
 * Every input -- a polled record, a feed item, an answer to one of our
 * writes, a resync -- reaches the engine through commit_decide(); what it
 * decides waits in the step's pending writes, and commit_step() stores the
 * new states with the outbox entries they cause in one LMDB transaction.
 * Nothing is sent for a decision before that transaction commits. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "hmap.h"
#include "log.h"
#include "loopd.h"
#include "store.h"
#include "util.h"

#define COMMIT_STORE_NAG_S	600

/* --- the step's ticket cache ------------------------------------------------------ */

struct lticket *
commit_find(struct loop *l, const char *key)
{
	return hmap_get(l->cache, key);
}

static void
commit_lticket_free(void *p)
{
	struct lticket *lt = p;

	ticket_free(&lt->t);
	free(lt->key);
	free(lt);
}

/* The stored ticket into lt; a ticket not stored (or unreadable) starts
 * fresh, in TS_UNTRACKED. */
static void
commit_ticket_load(struct loop *l, struct lticket *lt, const char *table, const char *sys_id)
{
	struct store_txn *txn;
	char *cause = NULL;
	struct buf b;
	int rc;

	buf_init(&b);
	rc = store_begin(l->st, 1, &txn);
	if (rc == 0) {
		rc = store_ticket_get(txn, table, sys_id, &b);
		store_abort(txn);
	}
	/* decode initialises the ticket itself. */
	lt->loaded_state = -1;
	if (rc == 0 && codec_ticket_decode(b.data, b.len, &lt->t, &cause) == 0) {
		lt->existed = 1;
		lt->loaded_state = (int)lt->t.state;
	} else {
		if (rc == 0) {
			log_kv(LOG_LVL_ERR, "stored ticket unreadable: starting it afresh",
			    "key", lt->key, "error", cause, NULL);
			free(cause);
			ticket_free(&lt->t);
		}
		ticket_init(&lt->t, table, sys_id);
	}
	buf_free(&b);
}

struct lticket *
commit_ticket(struct loop *l, const char *table, const char *sys_id)
{
	char *key = loop_key(table, sys_id);
	struct lticket *lt = commit_find(l, key);

	if (lt != NULL) {
		free(key);
		return lt;
	}
	lt = xcalloc(1, sizeof(*lt));
	lt->key = key;
	commit_ticket_load(l, lt, table, sys_id);
	hmap_put(l->cache, key, lt);
	return lt;
}

/* --- deciding ---------------------------------------------------------------------- */

void
commit_audit(struct loop *l, const char *kind, const char *msg, const char *kv)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(o, "msg", json_object_new_string(msg));
	if (kv)
		json_object_object_add(o, "kv", json_object_new_string(kv));
	l->audit = xreallocarray(l->audit, l->naudit + 1, sizeof(*l->audit));
	l->audit[l->naudit++] = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

/* Folds an engine decision into the step's pending writes. */
static void
commit_apply(struct loop *l, struct lticket *lt, const struct engine_result *r)
{
	for (size_t i = 0; i < r->nevents; i++) {
		char *line = xprintf("%s %s", r->events[i].msg, r->events[i].kv ? r->events[i].kv : "");

		log_kv((enum log_level)r->events[i].level, line, NULL);
		free(line);
		commit_audit(l, "engine", r->events[i].msg, r->events[i].kv);
	}
	if (r->changed)
		lt->dirty = 1;
	lt->forget = r->forget;
	if (r->forget)
		lt->dirty = 1;
	if (r->neffects > 0) {
		/* Effects travel with the ticket's next commit. */
		lt->dirty = 1;
		l->outbox_dirty = 1;
	}
}

/* Queues r's effects for the next commit (the engine result is consumed). */
static void
commit_keep_result(struct loop *l, struct engine_result *r)
{
	if (r->neffects == 0) {
		engine_result_free(r);
		return;
	}
	l->results = xreallocarray(l->results, l->nresults + 1, sizeof(*l->results));
	l->results[l->nresults++] = *r;
	engine_result_init(r);
}

int
commit_decide(struct loop *l, struct lticket *lt, commit_engine_fn fn, const void *arg)
{
	struct report_before rb;
	struct engine_result res;
	int rc;

	report_before(&lt->t, &rb);
	engine_result_init(&res);
	if ((rc = fn(l, &lt->t, arg, loop_wall(), &res)) == 0)
		commit_apply(l, lt, &res);
	report_after(l, &rb, &lt->t);
	commit_keep_result(l, &res);
	return rc;
}

/* --- the verification index -------------------------------------------------------- */

/* Every request we created is indexed, stale generations included: their
 * feed items then reach the engine (which ignores them) instead of
 * looking like requests nobody made. */
void
commit_index_verification(struct loop *l, const char *id, const struct ticket *t,
    uint32_t generation)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "table", json_object_new_string(t->table));
	json_object_object_add(o, "sys_id", json_object_new_string(t->sys_id));
	json_object_object_add(o, "number", json_object_new_string(t->number ? t->number : ""));
	json_object_object_add(o, "generation", json_object_new_int64(generation));
	l->vindex = xreallocarray(l->vindex, l->nvindex + 1, sizeof(*l->vindex));
	l->vindex[l->nvindex++] = xprintf("%s\t%s", id,
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

/* The index entry of id: this step's first, then the store's. */
static int
commit_vindex_get(struct loop *l, const char *id, struct buf *b)
{
	struct store_txn *txn;
	size_t n = strlen(id);
	int rc;

	for (size_t i = l->nvindex; i-- > 0;) {
		if (strncmp(l->vindex[i], id, n) == 0 && l->vindex[i][n] == '\t') {
			buf_adds(b, l->vindex[i] + n + 1);
			return 0;
		}
	}
	if ((rc = store_begin(l->st, 1, &txn)) < 0)
		return rc;
	rc = store_verification_get(txn, id, b);
	store_abort(txn);
	return rc;
}

int
commit_lookup_verification(struct loop *l, const char *id, char **table, char **sys_id)
{
	json_object *o = NULL, *jt, *js;
	struct buf b;
	int rc;

	buf_init(&b);
	if ((rc = commit_vindex_get(l, id, &b)) == 0) {
		o = json_tokener_parse(b.data);
		if (o && json_object_object_get_ex(o, "table", &jt) &&
		    json_object_object_get_ex(o, "sys_id", &js)) {
			*table = xstrdup(json_object_get_string(jt));
			*sys_id = xstrdup(json_object_get_string(js));
		} else
			rc = -EBADMSG;
		json_object_put(o);
	}
	buf_free(&b);
	return rc;
}

/* --- the pending writes ------------------------------------------------------------ */

static void
commit_strv_clear(char ***v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free((*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

void
commit_pending_clear(struct loop *l)
{
	hmap_clear(l->cache, commit_lticket_free);
	for (size_t i = 0; i < l->nresults; i++)
		engine_result_free(&l->results[i]);
	free(l->results);
	l->results = NULL;
	l->nresults = 0;
	free(l->done_seqs);
	l->done_seqs = NULL;
	l->ndone = 0;
	for (size_t i = 0; i < l->nupdated; i++)
		outbox_job_free(l->updated[i]);
	free(l->updated);
	l->updated = NULL;
	l->nupdated = 0;
	commit_strv_clear(&l->audit, &l->naudit);
	commit_strv_clear(&l->vindex, &l->nvindex);
	l->meta_dirty = 0;
}

static int
commit_any_dirty(const struct loop *l)
{
	struct hmap_iter it = { 0 };
	void *p;

	while (hmap_next(l->cache, &it, NULL, &p))
		if (((struct lticket *)p)->dirty)
			return 1;
	return 0;
}

int
commit_has_pending(const struct loop *l)
{
	return commit_any_dirty(l) || l->nresults || l->ndone || l->nupdated || l->naudit ||
	    l->nvindex || l->meta_dirty || budget_due(l);
}

/* --- the transaction ---------------------------------------------------------------- */

struct commit_ctx {
	struct loop		*l;
	struct outbox_batch	*b;
};

static void
commit_tickets(struct store_txn *txn, struct loop *l)
{
	struct hmap_iter it = { 0 };
	void *p;
	char *enc;

	while (hmap_next(l->cache, &it, NULL, &p)) {
		struct lticket *x = p;

		if (!x->dirty)
			continue;
		if (x->forget) {
			if (x->existed)
				store_ticket_del(txn, x->t.table, x->t.sys_id);
			continue;
		}
		enc = codec_ticket_encode(&x->t);
		store_ticket_put(txn, x->t.table, x->t.sys_id,
		    x->t.number ? x->t.number : "", enc, strlen(enc));
		free(enc);
	}
}

static void
commit_vindex(struct store_txn *txn, struct loop *l)
{
	for (size_t i = 0; i < l->nvindex; i++) {
		char *tab = strchr(l->vindex[i], '\t');

		*tab = '\0';
		store_verification_put(txn, l->vindex[i], tab + 1, strlen(tab + 1));
		*tab = '\t';
	}
}

/* Writes only (store_write may run it twice): what to start is decided before. */
static int
commit_fn(struct store_txn *txn, void *arg)
{
	struct commit_ctx *cc = arg;
	struct loop *l = cc->l;
	uint64_t seq;

	outbox_store(txn, l, cc->b);
	commit_vindex(txn, l);
	commit_tickets(txn, l);
	if (l->meta_dirty)
		poll_store_positions(txn, l);
	budget_store(txn, l);
	for (size_t i = 0; i < l->naudit; i++)
		store_audit_append(txn, loop_wall(), l->audit[i], &seq);
	return store_txn_error(txn);
}

/* --- a store that cannot be written ------------------------------------------------ */

/* A write to the store failed (disk full, map cannot grow, I/O error).
 * Said once at err with what to do, then every COMMIT_STORE_NAG_S: the
 * daemon keeps running and sends nothing for what it could not commit,
 * and resumes by itself once a write succeeds. */
static void
commit_store_failed(struct loop *l, int rc)
{
	const char *cause = store_last_cause(l->st);
	int64_t now = loop_wall();
	char n[24], since[24];

	if (cause == NULL)
		cause = store_strerror(rc);
	l->store_failures++;
	snprintf(n, sizeof(n), "%" PRIu64, l->store_failures);
	if (l->store_failing == 0) {
		l->store_failing = l->store_nagged = now;
		log_kv(LOG_LVL_ERR, "cannot write the state store: nothing is sent until it can; "
		    "free space (or fix the cause below) and work resumes by itself",
		    "dir", l->cfg->state_dir, "error", cause, NULL);
	} else if (now - l->store_nagged >= COMMIT_STORE_NAG_S) {
		l->store_nagged = now;
		snprintf(since, sizeof(since), "%" PRId64 "s", now - l->store_failing);
		log_kv(LOG_LVL_WARN, "state store still cannot be written: nothing is sent",
		    "dir", l->cfg->state_dir, "for", since, "failures", n, "error", cause, NULL);
	} else
		log_kv(LOG_LVL_DEBUG, "state store write failed", "failures", n,
		    "error", cause, NULL);
}

static void
commit_store_ok(struct loop *l)
{
	char since[24], n[24];

	if (l->store_failing == 0)
		return;
	snprintf(since, sizeof(since), "%" PRId64 "s", loop_wall() - l->store_failing);
	snprintf(n, sizeof(n), "%" PRIu64, l->store_failures);
	log_kv(LOG_LVL_NOTICE, "state store writable again: pending work resumes",
	    "dir", l->cfg->state_dir, "after", since, "failures", n, NULL);
	l->store_failing = 0;
	l->store_failures = 0;
}

/* Forget this step's decisions and go back to the committed positions:
 * the inputs are seen again by the next polls. */
static void
commit_void(struct loop *l, struct outbox_batch *b, int rc)
{
	commit_store_failed(l, rc);
	memset(&l->m_step, 0, sizeof(l->m_step));
	outbox_batch_free(l, b, 1);
	commit_pending_clear(l);
	l->outbox_reload_ms = loop_now_ms() + 1000;
	l->epoch++;
	poll_load_positions(l);
}

/* One write transaction (none when there is nothing to write). */
int
commit_step(struct loop *l, int start)
{
	struct outbox_batch b;
	struct commit_ctx cc = { l, &b };
	int rc, wrote = 0;

	/* what a failed commit did not delete runs again, as a replay */
	if (l->outbox_reload_ms != 0 && loop_now_ms() >= l->outbox_reload_ms) {
		l->outbox_reload_ms = 0;
		outbox_load(l);
	}
	memset(&b, 0, sizeof(b));
	l->outbox_dirty = 0;
	/* After a failed commit nothing starts until the outbox is reloaded:
	 * marking writes against a full disk would only fail again, at once. */
	outbox_pick(l, &b, start && l->outbox_reload_ms == 0);
	if (commit_has_pending(l) || b.marks) {
		if ((rc = store_write(l->st, commit_fn, &cc)) < 0) {
			commit_void(l, &b, rc);
			return rc;
		}
		budget_committed(l);
		wrote = 1;
	}
	report_committed(l);
	outbox_committed(l, &b);
	commit_pending_clear(l);
	outbox_start(l, &b);
	outbox_batch_free(l, &b, 0);
	if (wrote)
		commit_store_ok(l);
	return 0;
}
