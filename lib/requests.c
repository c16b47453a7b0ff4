/* requests: the daemon's side of imperai-snowctl resync/retry, and the
 * wire form both sides share. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "log.h"
#include "requests.h"
#include "store.h"
#include "util.h"

const char *
requests_op_name(enum req_op op)
{
	return op == REQ_RESYNC ? "resync" : "retry";
}

static char *
requests_dup(json_object *o, const char *key)
{
	json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	return *s ? xstrdup(s) : NULL;
}

/* The optional outbox seq of a retry: absent is 0 (every parked entry). */
static int
requests_seq(json_object *o, uint64_t *seq)
{
	json_object *v;

	*seq = 0;
	if (!json_object_object_get_ex(o, "seq", &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0)
		return -EINVAL;
	*seq = (uint64_t)json_object_get_int64(v);
	return 0;
}

static void
requests_clear(struct req *r)
{
	free(r->ticket);
	free(r->table);
	free(r->sys_id);
	memset(r, 0, sizeof(*r));
}

static int
requests_fill(json_object *o, struct req *out, char **cause)
{
	char *op = requests_dup(o, "op");
	int rc = -EBADMSG;

	if (str_eq(op, "resync")) {
		out->op = REQ_RESYNC;
		out->ticket = requests_dup(o, "ticket");
		out->table = requests_dup(o, "table");
		out->sys_id = requests_dup(o, "sys_id");
		if (out->ticket != NULL && (out->table == NULL) == (out->sys_id == NULL))
			rc = 0;
		else
			*cause = xstrdup("resync needs a ticket number (and table with sys_id)");
	} else if (str_eq(op, "retry")) {
		out->op = REQ_RETRY;
		if (requests_seq(o, &out->seq) == 0)
			rc = 0;
		else
			*cause = xstrdup("retry: seq must be a positive integer");
	} else
		*cause = xprintf("unknown op \"%s\"", op ? op : "(none)");
	free(op);
	return rc;
}

int
requests_parse(const char *json, size_t len, struct req *out, char **cause)
{
	json_object *o = util_json_object(json, len);
	int rc;

	memset(out, 0, sizeof(*out));
	if (o == NULL) {
		*cause = xstrdup("not a JSON object");
		rc = -EBADMSG;
	} else if ((rc = requests_fill(o, out, cause)) != 0)
		requests_clear(out);
	json_object_put(o);
	return rc;
}

char *
requests_encode(const struct req *r)
{
	json_object *o = json_object_new_object();
	char *s;

	json_object_object_add(o, "op", json_object_new_string(requests_op_name(r->op)));
	if (r->op == REQ_RESYNC) {
		json_object_object_add(o, "ticket", json_object_new_string(r->ticket ? r->ticket : ""));
		if (r->table && r->sys_id) {
			json_object_object_add(o, "table", json_object_new_string(r->table));
			json_object_object_add(o, "sys_id", json_object_new_string(r->sys_id));
		}
	} else if (r->seq > 0)
		json_object_object_add(o, "seq", json_object_new_int64((int64_t)r->seq));
	s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

struct take_ctx {
	struct req	*v;
	size_t		 n;
	uint64_t	*seqs;		/* every entry seen, good or bad: all deleted */
	size_t		 nseqs;
	char		**bad;		/* "seq: cause", logged after the commit */
	size_t		 nbad;
};

static void
requests_ctx_clear(struct take_ctx *tc)
{
	requests_free(tc->v, tc->n);
	free(tc->seqs);
	for (size_t i = 0; i < tc->nbad; i++)
		free(tc->bad[i]);
	free(tc->bad);
	memset(tc, 0, sizeof(*tc));
}

static int
requests_take_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct take_ctx *tc = arg;
	struct req r;
	char *cause = NULL;

	tc->seqs = xreallocarray(tc->seqs, tc->nseqs + 1, sizeof(*tc->seqs));
	tc->seqs[tc->nseqs++] = seq;
	if (requests_parse(val, len, &r, &cause) != 0) {
		tc->bad = xreallocarray(tc->bad, tc->nbad + 1, sizeof(*tc->bad));
		tc->bad[tc->nbad++] = xprintf("%" PRIu64 ": %s", seq, cause);
		free(cause);
		return 0;
	}
	r.id = seq;
	tc->v = xreallocarray(tc->v, tc->n + 1, sizeof(*tc->v));
	tc->v[tc->n++] = r;
	return 0;
}

static int
requests_take_fn(struct store_txn *t, void *arg)
{
	struct take_ctx *tc = arg;
	int rc;

	/* store_write may run this twice (map grown): start clean. */
	requests_ctx_clear(tc);
	if ((rc = store_request_each(t, requests_take_one, tc)) != 0)
		return rc;
	for (size_t i = 0; i < tc->nseqs; i++)
		store_request_del(t, tc->seqs[i]);
	return store_txn_error(t);
}

static int
requests_any_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	(void)seq, (void)val, (void)len, (void)arg;
	return 1;
}

/* A read transaction first: most steps find nothing and need no writer. */
static int
requests_any(struct store *st)
{
	struct store_txn *t;
	int rc;

	if ((rc = store_begin(st, 1, &t)) != 0)
		return rc;
	rc = store_request_each(t, requests_any_one, NULL);
	store_abort(t);
	return rc;
}

int
requests_take(struct store *st, struct req **out, size_t *n)
{
	struct take_ctx tc = { 0 };
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = requests_any(st)) <= 0)
		return rc;
	rc = store_write(st, requests_take_fn, &tc);
	if (rc == 0) {
		for (size_t i = 0; i < tc.nbad; i++)
			log_kv(LOG_LVL_WARN, "operator request unreadable: dropped",
			    "request", tc.bad[i], NULL);
		*out = tc.v;
		*n = tc.n;
		tc.v = NULL;
		tc.n = 0;
	}
	requests_ctx_clear(&tc);
	return rc;
}

void
requests_free(struct req *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		requests_clear(&v[i]);
	free(v);
}
