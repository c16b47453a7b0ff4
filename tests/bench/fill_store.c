/* fill_store: benchmark helper for tests/bench/bench.py.
 *
 *   fill_store DIR N [BATCH]
 *
 * Writes N tracked tickets (table incident, state link_sent, a realistic
 * verification snapshot and history) into the daemon's store in DIR,
 * through codec_ticket_encode() and store_ticket_put(), BATCH (default
 * 20000) per write transaction.  sys_ids are pseudo-random, as real ones
 * are, so the B-tree sees random inserts.  The daemon must be stopped.
 * Prints "tickets N used_bytes B" on success.  Exit 0 done, 1 error,
 * 64 usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "engine.h"
#include "store.h"
#include "util.h"

struct fill {
	uint64_t	 next;		/* next ticket index */
	uint64_t	 end;		/* one past the last index of this batch */
	uint64_t	 rng;
};

/* splitmix64: reproducible, well spread sys_ids. */
static uint64_t
fill_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
fill_ticket(struct ticket *t, uint64_t i, uint64_t *rng)
{
	char sid[33], num[16];
	int64_t now = 1764000000 + (int64_t)(i % 86400);
	uint64_t a = fill_rand(rng), b = fill_rand(rng);

	snprintf(sid, sizeof(sid), "%016" PRIx64 "%016" PRIx64, a, b);
	snprintf(num, sizeof(num), "INC%07" PRIu64, 10001 + i);
	ticket_init(t, "incident", sid);
	t->number = xstrdup(num);
	t->flow = xstrdup("password-reset");
	t->generation = 1;
	t->revision = 2;
	t->landed_revision = 2;
	t->request_id = xprintf("vr_%016" PRIx64, a ^ b);
	t->requester = xprintf("%032" PRIx64, b);
	t->requester_name = xstrdup("Abel Tuter");
	t->gen_reason = xstrdup("new");
	t->seen_mod_count = 2;
	t->own_mod_count = 2;
	t->seen_updated_on = now;
	t->category = xstrdup("password_reset");
	t->subcategory = xstrdup("forgotten_password");
	t->snow_state = xstrdup("1");
	t->short_description = xstrdup("Please reset my password");
	t->requester_email = xstrdup("abel.tuter@example.com");
	t->v.id = xstrdup(t->request_id);
	t->v.status = IMPERAI_LINK_SENT;
	t->v.channel = xstrdup("email");
	t->v.recipient_masked = xstrdup("a***@example.org");
	t->v.initiated_by = xstrdup("Ivy Agent");
	t->v.send_link_url = xprintf("http://127.0.0.1:18090/send/%016" PRIx64, a);
	t->v.details_url = xprintf("http://127.0.0.1:18090/verifications/%s", t->request_id);
	t->v.created_at = now;
	t->v.updated_at = now + 30;
	t->v.expires_at = now + 86400;
	t->sent_at = now + 30;
	t->created_at = now;
	t->state_since = now + 30;
	engine_enter_state(t, TS_AWAITING_REQUEST, "new", now, NULL);
	engine_enter_state(t, TS_LINK_READY, "created", now, NULL);
	engine_enter_state(t, TS_LINK_SENT, "link_sent", now + 30, NULL);
}

static int
fill_batch(struct store_txn *txn, void *arg)
{
	struct fill *f = arg;
	uint64_t rng = f->rng;

	for (uint64_t i = f->next; i < f->end; i++) {
		struct ticket t;
		char *enc;

		fill_ticket(&t, i, &rng);
		enc = codec_ticket_encode(&t);
		store_ticket_put(txn, t.table, t.sys_id, t.number, enc, strlen(enc));
		free(enc);
		ticket_free(&t);
	}
	return store_txn_error(txn);
}

int
main(int argc, char **argv)
{
	struct store *st = NULL;
	struct store_stat ss;
	struct fill f = { 0 };
	char *cause = NULL, *end;
	uint64_t n, batch = 20000;
	int rc;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: fill_store DIR N [BATCH]\n");
		return 64;
	}
	n = strtoull(argv[2], &end, 10);
	if (*end != '\0' || (argc == 4 && (batch = strtoull(argv[3], &end, 10)) == 0)) {
		fprintf(stderr, "fill_store: N and BATCH must be numbers\n");
		return 64;
	}
	/* room for all of it at once: store_write() grows the map only by doubling, once */
	if ((rc = store_open(argv[1], n * 4096 > (64u << 20) ? n * 4096 : 64u << 20, 0, &st,
	    &cause)) < 0) {
		fprintf(stderr, "fill_store: %s\n", cause ? cause : store_strerror(rc));
		free(cause);
		return 1;
	}
	f.rng = 42;
	for (f.next = 0; f.next < n; f.next = f.end) {
		f.end = f.next + batch < n ? f.next + batch : n;
		if ((rc = store_write(st, fill_batch, &f)) < 0) {
			fprintf(stderr, "fill_store: %s\n", store_last_cause(st) ?
			    store_last_cause(st) : store_strerror(rc));
			store_close(st);
			return 1;
		}
		/* the same sys_ids each run of a batch, even after a map regrowth */
		for (uint64_t i = f.next; i < f.end; i++) {
			fill_rand(&f.rng);
			fill_rand(&f.rng);
		}
	}
	rc = store_stat(st, &ss);
	if (rc == 0)
		printf("tickets %" PRIu64 " used_bytes %" PRIu64 "\n", ss.tickets, ss.used_bytes);
	store_close(st);
	return rc == 0 ? 0 : 1;
}
