/* ctl-rebuild: `imperai-snowctl rebuild`, the state directory rebuilt from
 * ServiceNow and imper.ai after it was lost (a dead disk), or on a
 * standby taking over.
 *
 * imper.ai's change feed is replayed from its beginning: the newest
 * snapshot of every verification, and the cursor.  Each watched table is
 * read for the tickets whose verification field is set; rebuild_ticket()
 * turns each field (its "imperai-snow ref G.R" and the picture it shows)
 * and the ticket's verification into the ticket the daemon had, and the
 * writes it had not done yet.  Active tickets a flow selects whose field
 * is still empty are observed as new (their create is replayed with the
 * same Idempotency-Key).  Everything is written to a new store beside the
 * old one, which replaces it only once complete, while this command holds
 * the state directory's lock: no daemon can run meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "ctl.h"
#include "codec.h"
#include "engine.h"
#include "flows.h"
#include "imperai.h"
#include "rebuild.h"
#include "render.h"
#include "snow.h"
#include "store.h"
#include "util.h"

#define REBUILD_EX_LOCKED	75	/* EX_TEMPFAIL, as imperai-snowd */
#define REBUILD_TMP		"rebuild.tmp"

/* One verification from the feed, where the feed left it. */
struct rb_verif {
	struct imperai_verification	 v;
	size_t				 order;		/* position in the feed */
	int				 used;		/* its ticket was rebuilt */
};

struct rb_table {
	const char	*name;
	const char	*field;
	char		**fields;	/* what the poll reads */
	size_t		 nfields;
	int64_t		 watermark;
	char		 wm_sys_id[33];
};

/* One page's worth of writes, committed together. */
struct rb_batch {
	struct ticket	*t;
	size_t		 nt;
	struct engine_result *res;
	size_t		 nres;
};

struct rb {
	struct config	*cfg;
	struct flows	*flows;
	struct engine_policy pol;
	struct ctl_net	 net;
	struct store	*old;		/* holds the lock */
	struct store	*st;		/* the new store */
	char		*tmpdir;
	int		 force;
	int64_t		 now;
	struct rb_verif	*v;
	size_t		 nv;
	char		*cursor;
	struct rb_table	*tables;
	size_t		 ntables;
	char		**done;		/* "table/sys_id" of the tickets rebuilt */
	size_t		 ndone;
	size_t		 nsorted;	/* done[0..nsorted) is sorted */
	size_t		 ntickets, nnew, neffects, nskipped;
	uint64_t	 by_state[TS__COUNT];
};

/* --- the feed ----------------------------------------------------------------- */

static int
rb_cmp_id(const void *a, const void *b)
{
	const struct rb_verif *x = a, *y = b;
	int c = strcmp(x->v.id, y->v.id);

	return c ? c : x->order < y->order ? -1 : x->order > y->order;
}

static int
rb_cmp_ticket(const void *a, const void *b)
{
	const struct rb_verif *x = a, *y = b;
	int c = strcmp(x->v.ticket.table ? x->v.ticket.table : "",
	    y->v.ticket.table ? y->v.ticket.table : "");

	if (c == 0)
		c = strcmp(x->v.ticket.sys_id ? x->v.ticket.sys_id : "",
		    y->v.ticket.sys_id ? y->v.ticket.sys_id : "");
	if (c == 0)
		c = x->v.created_at < y->v.created_at ? -1 : x->v.created_at > y->v.created_at;
	return c ? c : x->order < y->order ? -1 : x->order > y->order;
}

/* The newest snapshot of each id, sorted by ticket then creation. */
static void
rb_feed_index(struct rb *rb)
{
	size_t k = 0;

	qsort(rb->v, rb->nv, sizeof(*rb->v), rb_cmp_id);
	for (size_t i = 0; i < rb->nv; i++) {
		if (i + 1 < rb->nv && strcmp(rb->v[i].v.id, rb->v[i + 1].v.id) == 0) {
			imperai_verification_free(&rb->v[i].v);
			continue;
		}
		rb->v[k++] = rb->v[i];
	}
	rb->nv = k;
	qsort(rb->v, rb->nv, sizeof(*rb->v), rb_cmp_ticket);
}

/* Moves the page's verifications to rb; 1 when more pages follow. */
static int
rb_feed_take(struct rb *rb, struct imperai_feed *f)
{
	int more = f->has_more && f->n > 0;

	rb->v = xreallocarray(rb->v, rb->nv + f->n + 1, sizeof(*rb->v));
	for (size_t i = 0; i < f->n; i++) {
		rb->v[rb->nv].v = f->v[i];
		rb->v[rb->nv].order = rb->nv;
		rb->v[rb->nv++].used = 0;
	}
	free(f->v);
	f->v = NULL;
	f->n = 0;
	if (f->next_cursor != NULL)
		str_replace(&rb->cursor, f->next_cursor);
	imperai_feed_free(f);
	return more;
}

/* The whole feed from its beginning: every request's newest snapshot. */
static int
rb_feed(struct rb *rb)
{
	struct imperai_feed f;
	char *cause = NULL;
	int rc;

	do {
		if ((rc = ctl_imperai_changes(&rb->net, rb->cursor, rb->cfg->imperai.feed_limit, &f,
		    &cause)) < 0) {
			fprintf(stderr, "imperai-snowctl rebuild: cannot read imper.ai's change feed: "
			    "%s\n", cause);
			free(cause);
			return rc;
		}
	} while (rb_feed_take(rb, &f));
	rb_feed_index(rb);
	return 0;
}

/* [first, end) of the ticket's verifications, oldest first. */
static size_t
rb_verifs_of(const struct rb *rb, const char *table, const char *sys_id, size_t *end)
{
	size_t lo = 0, hi = rb->nv;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct imperai_ticket_ref *t = &rb->v[mid].v.ticket;
		int c = strcmp(t->table ? t->table : "", table);

		if (c == 0)
			c = strcmp(t->sys_id ? t->sys_id : "", sys_id);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (*end = lo; *end < rb->nv && str_eq(rb->v[*end].v.ticket.table, table) &&
	    str_eq(rb->v[*end].v.ticket.sys_id, sys_id); (*end)++)
		;
	return lo;
}

/* The request the field names, else the ticket's newest. */
static struct rb_verif *
rb_pick(struct rb *rb, const char *table, const char *sys_id, const char *field)
{
	struct render_shown s;
	size_t end, first = rb_verifs_of(rb, table, sys_id, &end);
	struct rb_verif *pick = first < end ? &rb->v[end - 1] : NULL;

	if (render_parse_field(field, NULL, &s) == 0 && s.verification_id != NULL)
		for (size_t i = first; i < end; i++)
			if (str_eq(rb->v[i].v.id, s.verification_id))
				pick = &rb->v[i];
	render_shown_free(&s);
	return pick;
}

/* --- writing the new store ----------------------------------------------------- */

static void
rb_index_fn(struct store_txn *txn, const struct ticket *t, const struct imperai_verification *v)
{
	json_object *o = json_object_new_object();
	const char *s;

	json_object_object_add(o, "table", json_object_new_string(t->table));
	json_object_object_add(o, "sys_id", json_object_new_string(t->sys_id));
	json_object_object_add(o, "number", json_object_new_string(t->number ? t->number : ""));
	json_object_object_add(o, "generation", json_object_new_int64(
	    str_eq(v->id, t->request_id) ? t->generation : 0));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	store_verification_put(txn, v->id, s, strlen(s));
	json_object_put(o);
}

struct rb_commit {
	struct rb	*rb;
	struct rb_batch	*b;
};

static void
rb_put_ticket(struct store_txn *txn, struct rb *rb, const struct ticket *t,
    const struct engine_result *res)
{
	char *enc = codec_ticket_encode(t);
	size_t end, first = rb_verifs_of(rb, t->table, t->sys_id, &end);
	uint64_t seq;
	int indexed = 0;

	store_ticket_put(txn, t->table, t->sys_id, t->number ? t->number : "", enc, strlen(enc));
	free(enc);
	for (size_t k = 0; k < res->neffects; k++) {
		enc = codec_effect_encode(&res->effects[k]);
		store_outbox_add(txn, enc, strlen(enc), &seq);
		free(enc);
	}
	for (size_t i = first; i < end; i++) {
		rb->v[i].used = 1;
		rb_index_fn(txn, t, &rb->v[i].v);
		indexed |= str_eq(rb->v[i].v.id, t->request_id);
	}
	/* a request the feed no longer has, known from the field */
	if (t->request_id != NULL && !indexed) {
		struct imperai_verification only = { .id = t->request_id };

		rb_index_fn(txn, t, &only);
	}
}

static int
rb_commit_fn(struct store_txn *txn, void *arg)
{
	struct rb_commit *c = arg;

	for (size_t i = 0; i < c->b->nt; i++)
		rb_put_ticket(txn, c->rb, &c->b->t[i], &c->b->res[i]);
	return store_txn_error(txn);
}

static void
rb_batch_free(struct rb_batch *b)
{
	for (size_t i = 0; i < b->nt; i++) {
		ticket_free(&b->t[i]);
		engine_result_free(&b->res[i]);
	}
	free(b->t);
	free(b->res);
	memset(b, 0, sizeof(*b));
}

static int
rb_batch_commit(struct rb *rb, struct rb_batch *b)
{
	struct rb_commit c = { rb, b };
	int rc = b->nt ? store_write(rb->st, rb_commit_fn, &c) : 0;

	if (rc < 0)
		fprintf(stderr, "imperai-snowctl rebuild: cannot write the new store: %s\n",
		    store_last_cause(rb->st) ? store_last_cause(rb->st) : store_strerror(rc));
	for (size_t i = 0; rc == 0 && i < b->nt; i++) {
		rb->neffects += b->res[i].neffects;
		rb->by_state[b->t[i].state]++;
	}
	rb_batch_free(b);
	return rc;
}

static void
rb_batch_add(struct rb_batch *b, struct ticket *t, struct engine_result *res)
{
	b->t = xreallocarray(b->t, b->nt + 1, sizeof(*b->t));
	b->res = xreallocarray(b->res, b->nt + 1, sizeof(*b->res));
	b->t[b->nt] = *t;
	b->res[b->nt++] = *res;
}

/* --- reading ServiceNow -------------------------------------------------------- */

static void
rb_done_add(struct rb *rb, const char *table, const char *sys_id)
{
	rb->done = xreallocarray(rb->done, rb->ndone + 1, sizeof(*rb->done));
	rb->done[rb->ndone++] = xprintf("%s/%s", table, sys_id);
}

static void
rb_watermark(struct rb_table *tb, const struct snow_record *r)
{
	if (r->updated_on > tb->watermark) {
		tb->watermark = r->updated_on;
		memcpy(tb->wm_sys_id, r->sys_id, sizeof(tb->wm_sys_id));
	}
}

/* A ticket whose field the daemon wrote. */
static void
rb_fielded(struct rb *rb, struct rb_table *tb, const struct snow_record *r, struct rb_batch *b)
{
	const char *field = snow_record_get(r, tb->field);
	struct rb_verif *v = rb_pick(rb, tb->name, r->sys_id, field);
	struct ticket t;
	struct engine_result res;
	int rc;

	ticket_init(&t, tb->name, r->sys_id);
	engine_result_init(&res);
	rc = rebuild_ticket(&rb->pol, &t, tb->name, r, v ? &v->v : NULL, rb->now, &res);
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl rebuild: %s %s skipped: its %s was not written by "
		    "imperai-snowd (%s)\n", tb->name, snow_record_get(r, "number") ?
		    snow_record_get(r, "number") : r->sys_id, tb->field, rc == -ENOENT ?
		    "no revision tag" : "text not recognised");
		rb->nskipped++;
		ticket_free(&t);
		engine_result_free(&res);
		return;
	}
	rb_watermark(tb, r);
	rb_done_add(rb, tb->name, r->sys_id);
	rb->ntickets++;
	rb_batch_add(b, &t, &res);
}

/* An active ticket with an empty field: seen as new, as the daemon would. */
static void
rb_unfielded(struct rb *rb, struct rb_table *tb, const struct snow_record *r, struct rb_batch *b)
{
	struct ticket t;
	struct engine_result res;

	ticket_init(&t, tb->name, r->sys_id);
	engine_result_init(&res);
	if (engine_observe(&rb->pol, &t, tb->name, r, rb->now, &res) == 0 && !res.forget &&
	    t.state != TS_UNTRACKED) {
		rb_done_add(rb, tb->name, r->sys_id);
		rb->ntickets++;
		rb->nnew++;
		rb_batch_add(b, &t, &res);
		return;
	}
	ticket_free(&t);
	engine_result_free(&res);
}

/* category IN the flows' categories, when every flow of the table names
 * some (the rest of the match is evaluated here, as the daemon does). */
static char *
rb_category_filter(const struct rb *rb, const char *table)
{
	struct buf b;
	int any = 0;

	buf_init(&b);
	buf_adds(&b, "^categoryIN");
	for (size_t i = 0; i < rb->flows->n; i++) {
		const struct flow *f = &rb->flows->v[i];

		if (!str_eq(f->table, table))
			continue;
		if (f->ncategories == 0) {
			buf_free(&b);
			return xstrdup("");
		}
		for (size_t k = 0; k < f->ncategories; k++)
			buf_addf(&b, "%s%s", any++ ? "," : "", f->categories[k]);
	}
	if (!any) {
		buf_free(&b);
		return NULL;	/* no flow for the table: nothing to look for */
	}
	return buf_detach(&b);
}

typedef void (*rb_record_fn)(struct rb *, struct rb_table *, const struct snow_record *,
    struct rb_batch *);

/* Every record of the query, page by page in sys_id order (a short page
 * is not the end: ACLs filter after the limit). */
static int
rb_scan(struct rb *rb, struct rb_table *tb, const char *filter, rb_record_fn fn)
{
	int limit = rb->cfg->snow.page_size > 0 ? rb->cfg->snow.page_size : 100;
	char last[33] = "", *q, *cause = NULL;
	struct snow_list l;
	struct rb_batch b = { 0 };
	int rc;

	for (;;) {
		q = xprintf("%s%s%s^ORDERBYsys_id", filter, *last ? "^sys_id>" : "", last);
		rc = ctl_snow_list(&rb->net, rb->net.snow, tb->name, q,
		    (const char *const *)tb->fields, tb->nfields, limit, &l, &cause);
		free(q);
		if (rc < 0) {
			fprintf(stderr, "imperai-snowctl rebuild: cannot read %s: %s\n", tb->name, cause);
			free(cause);
			return rc;
		}
		if (l.n == 0)
			break;
		for (size_t i = 0; i < l.n; i++)
			fn(rb, tb, &l.v[i], &b);
		memcpy(last, l.v[l.n - 1].sys_id, sizeof(last));
		snow_list_free(&l);
		if ((rc = rb_batch_commit(rb, &b)) < 0)
			return rc;
	}
	snow_list_free(&l);
	return 0;
}

static int
rb_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The unfielded scan skips tickets already rebuilt (a field written since). */
static void
rb_unfielded_once(struct rb *rb, struct rb_table *tb, const struct snow_record *r,
    struct rb_batch *b)
{
	char *key = xprintf("%s/%s", tb->name, r->sys_id);
	int seen = bsearch(&key, rb->done, rb->nsorted, sizeof(*rb->done), rb_cmp_str) != NULL;

	free(key);
	if (!seen)
		rb_unfielded(rb, tb, r, b);
}

static int
rb_table(struct rb *rb, struct rb_table *tb)
{
	char *filter = xprintf("%sISNOTEMPTY", tb->field), *cats;
	int rc = rb_scan(rb, tb, filter, rb_fielded);

	free(filter);
	if (rc < 0 || (cats = rb_category_filter(rb, tb->name)) == NULL)
		return rc;
	qsort(rb->done, rb->ndone, sizeof(*rb->done), rb_cmp_str);
	rb->nsorted = rb->ndone;
	filter = xprintf("%sISEMPTY^active=true%s", tb->field, cats);
	free(cats);
	rc = rb_scan(rb, tb, filter, rb_unfielded_once);
	free(filter);
	return rc;
}

/* --- the fields a poll reads (as the daemon asks for them) -------------------- */

static void
rb_tables_init(struct rb *rb)
{
	rb->ntables = rb->cfg->snow.ntables;
	rb->tables = xcalloc(rb->ntables ? rb->ntables : 1, sizeof(*rb->tables));
	for (size_t i = 0; i < rb->ntables; i++) {
		const struct config_table *ct = &rb->cfg->snow.tables[i];
		struct rb_table *tb = &rb->tables[i];

		tb->name = ct->name;
		tb->field = ct->field;
		snow_obs_fields(ct, &tb->fields, &tb->nfields);
		flows_fields(rb->flows, tb->name, &tb->fields, &tb->nfields);
	}
}

/* --- positions, audit, the swap ------------------------------------------------ */

static int
rb_meta_fn(struct store_txn *txn, void *arg)
{
	struct rb *rb = arg;
	char *v, *event;
	uint64_t seq;

	for (size_t i = 0; i < rb->ntables; i++) {
		char *k = xprintf("watermark/%s", rb->tables[i].name);

		v = xprintf("%" PRId64 " %s", rb->tables[i].watermark, rb->tables[i].wm_sys_id);
		store_meta_put(txn, k, v, strlen(v));
		free(k);
		free(v);
	}
	if (rb->cursor != NULL)
		store_meta_put(txn, "imperai/cursor", rb->cursor, strlen(rb->cursor));
	event = xprintf("{\"kind\":\"rebuild\",\"msg\":\"state rebuilt from ServiceNow and "
	    "imper.ai\",\"kv\":\"tickets=%zu new=%zu writes=%zu skipped=%zu\"}", rb->ntickets,
	    rb->nnew, rb->neffects, rb->nskipped);
	store_audit_append(txn, rb->now, event, &seq);
	free(event);
	return store_txn_error(txn);
}

static void
rb_remove_tmp(const char *dir)
{
	static const char *const files[] = { "data.mdb", "lock.mdb", "lock" };

	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char *p = xprintf("%s/%s", dir, files[i]);

		unlink(p);
		free(p);
	}
	rmdir(dir);
}

/* Run as root (it reads the secrets), the files go to the state
 * directory's owner: the daemon's user must open them. */
static void
rb_chown(const char *dir)
{
	static const char *const files[] = { "data.mdb", "lock" };
	struct stat st;

	if (geteuid() != 0 || stat(dir, &st) < 0 || st.st_uid == 0)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char *p = xprintf("%s/%s", dir, files[i]);

		if (chown(p, st.st_uid, st.st_gid) < 0 && errno != ENOENT)
			fprintf(stderr, "imperai-snowctl rebuild: warning: cannot give %s to uid %u: "
			    "%s\n", p, (unsigned)st.st_uid, strerror(errno));
		free(p);
	}
}

/* The new data file replaces the old while the lock is still held; the
 * old lock table goes, so the daemon starts LMDB's afresh. */
static int
rb_swap(struct rb *rb)
{
	char *from = xprintf("%s/data.mdb", rb->tmpdir);
	char *to = xprintf("%s/data.mdb", rb->cfg->state_dir);
	char *lock = xprintf("%s/lock.mdb", rb->cfg->state_dir);
	int rc = 0, fd;

	store_close(rb->st);
	rb->st = NULL;
	if (rename(from, to) < 0) {
		rc = -errno;
		fprintf(stderr, "imperai-snowctl rebuild: cannot move %s to %s: %s\n", from, to,
		    strerror(errno));
	} else {
		unlink(lock);
		rb_chown(rb->cfg->state_dir);
		if ((fd = open(rb->cfg->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			fsync(fd);
			close(fd);
		}
	}
	rb_remove_tmp(rb->tmpdir);
	free(from);
	free(to);
	free(lock);
	return rc;
}

/* --- the command --------------------------------------------------------------- */

static int
rb_lock(struct rb *rb)
{
	struct store_stat st = { 0 };
	struct store_txn *txn;
	struct buf b;
	char *cause = NULL;
	int rc, used = 0;

	rc = store_open(rb->cfg->state_dir, rb->cfg->map_size, 0, &rb->old, &cause);
	if (rc == -EBUSY) {
		fprintf(stderr, "imperai-snowctl rebuild: %s: stop imperai-snowd first "
		    "(systemctl stop imperai-snowd)\n", cause);
		free(cause);
		return REBUILD_EX_LOCKED;
	}
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl rebuild: %s\n", cause ? cause : store_strerror(rc));
		free(cause);
		return CTL_EX_ERROR;
	}
	buf_init(&b);
	if (store_stat(rb->old, &st) == 0)
		used = st.tickets || st.verifications || st.outbox || st.audit;
	if (!used && store_begin(rb->old, 1, &txn) == 0) {
		used = store_meta_get(txn, "imperai/cursor", &b) == 0;
		store_abort(txn);
	}
	buf_free(&b);
	if (used && !rb->force) {
		fprintf(stderr, "imperai-snowctl rebuild: the state directory %s is not empty "
		    "(%" PRIu64 " tickets, %" PRIu64 " pending writes): rebuild replaces it only "
		    "with --force\n", rb->cfg->state_dir, st.tickets, st.outbox);
		return CTL_EX_ERROR;
	}
	return 0;
}

static int
rb_open_new(struct rb *rb)
{
	char *cause = NULL;
	int rc;

	rb->tmpdir = xprintf("%s/" REBUILD_TMP, rb->cfg->state_dir);
	rb_remove_tmp(rb->tmpdir);
	rc = store_open(rb->tmpdir, rb->cfg->map_size, STORE_NOLOCK, &rb->st, &cause);
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl rebuild: %s\n", cause ? cause : store_strerror(rc));
		free(cause);
		return CTL_EX_ERROR;
	}
	return 0;
}

static void
rb_report(const struct rb *rb)
{
	printf("rebuilt %zu ticket%s from ServiceNow and %zu verification%s from imper.ai; "
	    "%zu write%s to carry out\n", rb->ntickets, rb->ntickets == 1 ? "" : "s", rb->nv,
	    rb->nv == 1 ? "" : "s", rb->neffects, rb->neffects == 1 ? "" : "s");
	for (int s = 0; s < TS__COUNT; s++)
		if (rb->by_state[s] > 0)
			printf("  %-22s %" PRIu64 "\n", engine_state_name((enum tstate)s),
			    rb->by_state[s]);
	if (rb->nskipped > 0)
		printf("%zu ticket%s skipped (field not written by imperai-snowd)\n", rb->nskipped,
		    rb->nskipped == 1 ? "" : "s");
	for (size_t i = 0; i < rb->nv; i++) {
		const struct imperai_verification *v = &rb->v[i].v;
		char *id, *num;

		if (rb->v[i].used || imperai_status_is_final(v->status) ||
		    config_table(rb->cfg, v->ticket.table) == NULL)
			continue;
		id = ctl_printable(v->id);
		num = ctl_printable(v->ticket.number);
		printf("note: verification %s of %s is still open at imper.ai but its ticket is "
		    "not tracked (ended, or no longer selected by a flow)\n", id, num);
		free(id);
		free(num);
	}
	printf("now start imperai-snowd (systemctl start imperai-snowd)\n");
}

static int
rb_run(struct rb *rb)
{
	char *cause = NULL;
	int rc;

	if ((rc = rb_lock(rb)) != 0 || (rc = rb_open_new(rb)) != 0)
		return rc;
	if (ctl_net_open(&rb->net, rb->cfg, 1, &cause) < 0) {
		fprintf(stderr, "imperai-snowctl rebuild: %s\n", cause);
		free(cause);
		return CTL_EX_CONFIG;
	}
	if (rb_feed(rb) < 0)
		return CTL_EX_UNAVAILABLE;
	rb_tables_init(rb);
	for (size_t i = 0; i < rb->ntables; i++)
		if (rb_table(rb, &rb->tables[i]) < 0)
			return CTL_EX_UNAVAILABLE;
	if ((rc = store_write(rb->st, rb_meta_fn, rb)) < 0 || rb_swap(rb) < 0) {
		if (rc < 0)
			fprintf(stderr, "imperai-snowctl rebuild: cannot write the new store: %s\n",
			    store_strerror(rc));
		return CTL_EX_ERROR;
	}
	rb_report(rb);
	return CTL_EX_OK;
}

static int
rb_load(struct rb *rb, const char *path)
{
	struct errlist errs = { 0 };
	int rc;

	rc = config_load(path, 0, &rb->cfg, &errs, NULL);
	if (rc == 0 && (rc = flows_load(rb->cfg->flows_file, &rb->flows, &errs)) == 0)
		engine_policy_init(&rb->pol, rb->cfg, rb->flows);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	if (rc < 0 && errs.n == 0)
		fprintf(stderr, "%s: %s\n", path, strerror(-rc));
	errlist_free(&errs);
	return rc;
}

static void
rb_free(struct rb *rb)
{
	ctl_net_close(&rb->net);
	if (rb->st != NULL) {
		store_close(rb->st);
		rb_remove_tmp(rb->tmpdir);
	}
	if (rb->old != NULL)
		store_close(rb->old);
	for (size_t i = 0; i < rb->nv; i++)
		imperai_verification_free(&rb->v[i].v);
	free(rb->v);
	for (size_t i = 0; i < rb->ndone; i++)
		free(rb->done[i]);
	free(rb->done);
	for (size_t i = 0; i < rb->ntables; i++) {
		for (size_t k = 0; k < rb->tables[i].nfields; k++)
			free(rb->tables[i].fields[k]);
		free(rb->tables[i].fields);
	}
	free(rb->tables);
	free(rb->tmpdir);
	free(rb->cursor);
	flows_free(rb->flows);
	config_free(rb->cfg);
}

int
ctl_cmd_rebuild(struct ctl *c, int argc, char **argv)
{
	struct rb rb = { .now = c->now };
	int rc;

	if ((rc = ctl_flag_opts(c, argc, argv, "rebuild", "force", 'f', &rb.force, 0)) >= 0)
		return rc;
	if (rb_load(&rb, c->config_path) < 0)
		return CTL_EX_CONFIG;
	if (c->state_dir != NULL)
		str_replace(&rb.cfg->state_dir, c->state_dir);
	rc = rb_run(&rb);
	rb_free(&rb);
	return rc;
}
