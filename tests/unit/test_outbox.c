/* Tests of daemon/outbox.c: the in-memory index of the outbox, and the
 * crash rule -- an entry sent and unanswered is never sent again before
 * its read-back, a read-back that shows the revision drops it, a merge
 * never takes an entry that may have landed, a restart keeps the order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "loopd.h"
#include "store.h"
#include "util.h"

#define NOW 1764000000
#define MAX 12			/* servicenow.write_attempts */
#define FIELD "u_imperai_verification"

static uint64_t
take(struct outbox_index *q, enum outbox_lane lane, int64_t now)
{
	const char *key;
	uint64_t seq;

	if (outbox_index_take(q, lane, now, &seq, &key) != 0)
		return 0;
	return seq;
}

static void
test_entries_of_one_ticket_run_one_at_a_time_in_seq_order(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_IMPERAI, 0, 0);
	outbox_index_add(q, "incident/a", 2, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 3, OUTBOX_SNOW, 0, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	assert_int_equal(take(q, OUTBOX_IMPERAI, NOW), 1);
	assert_int_equal(take(q, OUTBOX_IMPERAI, NOW), 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	outbox_index_done(q, "incident/a", 1);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 2);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	outbox_index_done(q, "incident/a", 2);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 3);
	outbox_index_done(q, "incident/a", 3);
	assert_false(outbox_index_has(q, "incident/a"));
	assert_int_equal(outbox_index_count(q), 0);
	outbox_index_free(q);
}

static void
test_oldest_due_head_goes_first_across_tickets(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/c", 7, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 5, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/b", 9, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 6, OUTBOX_SNOW, 0, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 5);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 7);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 9);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	assert_int_equal(outbox_index_count(q), 4);
	outbox_index_free(q);
}

static void
test_an_entry_not_yet_due_waits_for_its_time(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_SNOW, NOW + 30, 0);
	outbox_index_add(q, "incident/b", 2, OUTBOX_SNOW, NOW + 10, 0);
	assert_int_equal(outbox_index_next_due(q), NOW + 10);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW + 10), 2);
	assert_int_equal(outbox_index_next_due(q), NOW + 30);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW + 29), 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW + 31), 1);
	assert_int_equal(outbox_index_next_due(q), INT64_MAX);
	outbox_index_free(q);
}

static void
test_a_released_entry_retries_at_its_new_time_and_blocks_its_ticket(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 2, OUTBOX_SNOW, 0, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 1);
	outbox_index_release(q, "incident/a", 1, NOW + 60);
	/* the later entry of the same ticket waits behind the retry */
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW + 60), 1);
	outbox_index_release(q, "incident/a", 1, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 1);
	outbox_index_free(q);
}

/* A parked PATCH was read back and did not land (outbox_park_unlanded):
 * the ticket's later writes, which carry the complete field, go on
 * without it; a parked imper.ai write still holds its ticket. */
static void
test_a_parked_patch_steps_aside_and_goes_first_once_released(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_SNOW, OUTBOX_PARKED_AT, 0);
	outbox_index_add(q, "incident/a", 2, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 3, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/b", 4, OUTBOX_IMPERAI, OUTBOX_PARKED_AT, 0);
	outbox_index_add(q, "incident/b", 5, OUTBOX_SNOW, 0, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 2);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);	/* a runs 2; b waits on 4 */
	outbox_index_done(q, "incident/a", 2);
	/* released (parked_retry or retry): it goes before the rest again */
	outbox_index_set_due(q, "incident/a", 1, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 1);
	outbox_index_done(q, "incident/a", 1);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 3);
	assert_int_equal(outbox_index_next_due(q), OUTBOX_PARKED_AT);
	assert_int_equal(outbox_index_count(q), 3);
	outbox_index_free(q);
}

static void
test_set_due_releases_a_parked_entry(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 4, OUTBOX_IMPERAI, INT64_C(253402300799), 0);
	assert_int_equal(take(q, OUTBOX_IMPERAI, NOW), 0);
	outbox_index_set_due(q, "incident/a", 4, 0);
	assert_int_equal(take(q, OUTBOX_IMPERAI, NOW), 4);
	outbox_index_free(q);
}

static void
test_an_entry_added_running_blocks_its_ticket_until_done(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_IMPERAI, 0, 1);
	outbox_index_add(q, "incident/a", 2, OUTBOX_SNOW, 0, 0);
	assert_true(outbox_index_has(q, "incident/a"));
	assert_int_equal(take(q, OUTBOX_IMPERAI, NOW), 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 0);
	outbox_index_done(q, "incident/a", 1);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 2);
	outbox_index_free(q);
}

static void
test_running_entries_survive_a_rebuild(void **state)
{
	struct outbox_index *q = outbox_index_new(), *r = outbox_index_new();
	uint64_t *run;
	char **keys;
	size_t n;

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/b", 2, OUTBOX_SNOW, 0, 0);
	assert_int_equal(take(q, OUTBOX_SNOW, NOW), 1);
	run = outbox_index_running(q, &keys, &n);
	assert_int_equal(n, 1);
	assert_int_equal(run[0], 1);
	assert_string_equal(keys[0], "incident/a");
	outbox_index_add(r, "incident/a", 1, OUTBOX_SNOW, 0, 0);
	outbox_index_add(r, "incident/b", 2, OUTBOX_SNOW, 0, 0);
	assert_int_equal(outbox_index_mark_running(r, keys[0], run[0]), 0);
	assert_int_equal(outbox_index_mark_running(r, "incident/x", 9), -ENOENT);
	assert_int_equal(take(r, OUTBOX_SNOW, NOW), 2);
	assert_int_equal(take(r, OUTBOX_SNOW, NOW), 0);
	free(keys[0]);
	free(keys);
	free(run);
	outbox_index_free(q);
	outbox_index_free(r);
}

static void
test_next_same_finds_only_a_following_due_entry_of_the_same_lane(void **state)
{
	struct outbox_index *q = outbox_index_new();

	(void)state;
	outbox_index_add(q, "incident/a", 1, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 2, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/a", 3, OUTBOX_IMPERAI, 0, 0);
	outbox_index_add(q, "incident/b", 5, OUTBOX_SNOW, 0, 0);
	outbox_index_add(q, "incident/b", 6, OUTBOX_SNOW, NOW + 5, 0);
	assert_int_equal(outbox_index_next_same(q, "incident/a", 1, NOW), 2);
	assert_int_equal(outbox_index_next_same(q, "incident/a", 2, NOW), 0);
	assert_int_equal(outbox_index_next_same(q, "incident/b", 5, NOW), 0);
	assert_int_equal(outbox_index_next_same(q, "incident/b", 5, NOW + 5), 6);
	assert_int_equal(outbox_index_next_same(q, "incident/c", 1, NOW), 0);
	outbox_index_free(q);
}

/* Many tickets added in scrambled order come out by seq, every one once. */
static void
test_many_tickets_come_out_in_seq_order(void **state)
{
	enum { N = 5000 };
	struct outbox_index *q = outbox_index_new();
	char key[32];
	uint64_t last = 0, seq;
	const char *k;
	size_t got = 0;

	(void)state;
	for (uint64_t i = 0; i < N; i++) {
		uint64_t s = (i * 7919) % N + 1;	/* a permutation of 1..N */

		snprintf(key, sizeof(key), "incident/%llu", (unsigned long long)s);
		outbox_index_add(q, key, s, (s % 3) ? OUTBOX_SNOW : OUTBOX_IMPERAI, (s % 5) ? 0 : NOW - 1, 0);
	}
	for (int lane = 0; lane < OUTBOX__LANES; lane++) {
		last = 0;
		while (outbox_index_take(q, (enum outbox_lane)lane, NOW, &seq, &k) == 0) {
			assert_true(seq > last);
			last = seq;
			outbox_index_done(q, k, seq);
			got++;
		}
	}
	assert_int_equal(got, N);
	assert_int_equal(outbox_index_count(q), 0);
	outbox_index_free(q);
}

/* --- the crash rule ------------------------------------------------------------------ */

#define SYS_A	"0123456789abcdef0123456789abcdef"
#define SETTLE	60

/* A PATCH of generation 2, revision rev, as the engine decides it. */
static void
patch_entry(struct outbox_entry *en, uint32_t rev, const char *tag)
{
	memset(en, 0, sizeof(*en));
	en->e.kind = EFFECT_PATCH;
	en->e.table = xstrdup("incident");
	snprintf(en->e.sys_id, sizeof(en->e.sys_id), "%s", SYS_A);
	en->e.number = xstrdup("INC0010001");
	en->e.generation = 2;
	en->e.revision = rev;
	en->e.tag = xstrdup(tag);
	en->e.patch_json = xstrdup("{\"work_notes\":\"n\"}");
	en->phase = OUTBOX_QUEUED;
}

/* Parked as an earlier daemon stored it: its count of sends (which says
 * whether it may have landed) kept. */
static void
park(struct outbox_entry *en)
{
	en->not_before = OUTBOX_PARKED_AT;
	en->phase = OUTBOX_PARKED;
}

/* The entry as a restarted daemon reads it back from the store. */
static void
restart(struct outbox_entry *en)
{
	char *enc = codec_entry_encode(en), *cause = NULL;

	outbox_entry_free(en);
	assert_int_equal(codec_entry_decode(enc, strlen(enc), en, &cause), 0);
	assert_null(cause);
	free(enc);
}

static void
test_an_entry_sent_and_unanswered_is_never_sent_again_before_its_read_back(void **state)
{
	struct outbox_entry en;

	(void)state;
	patch_entry(&en, 5, "outcome");
	assert_false(outbox_read_back_first(&en));
	outbox_sending(&en, NOW);
	assert_int_equal(en.phase, OUTBOX_SENT);
	restart(&en);
	assert_int_equal(en.phase, OUTBOX_SENT);
	assert_true(outbox_read_back_first(&en));
	/* not even the read-back while the request could still land */
	assert_int_equal(outbox_unsettled_until(&en, SETTLE, NOW + 1), NOW + SETTLE);
	assert_int_equal(outbox_unsettled_until(&en, SETTLE, NOW + SETTLE), 0);
	/* a transient failure of the read-back (or the resend) keeps it so */
	outbox_sending(&en, NOW + SETTLE);
	assert_int_equal(outbox_again(&en, "HTTP status 503", MAX, NOW + SETTLE, 0.5), 0);
	assert_true(en.not_before > NOW + SETTLE);
	restart(&en);
	assert_true(outbox_read_back_first(&en));
	/* a 429 answer to a later send undoes that send only */
	outbox_unsent(&en);
	assert_true(outbox_read_back_first(&en));
	outbox_entry_free(&en);
}

static void
test_a_send_refused_before_anything_was_done_needs_no_read_back(void **state)
{
	struct outbox_entry en;

	(void)state;
	patch_entry(&en, 5, "outcome");
	outbox_sending(&en, NOW);
	outbox_unsent(&en);
	restart(&en);
	assert_int_equal(en.phase, OUTBOX_QUEUED);
	assert_false(outbox_read_back_first(&en));
	assert_int_equal(outbox_unsettled_until(&en, SETTLE, NOW), 0);
	outbox_entry_free(&en);
}

static void
test_a_resolve_is_always_read_back_first(void **state)
{
	struct outbox_entry en;

	(void)state;
	patch_entry(&en, 5, "resolved");
	assert_true(outbox_read_back_first(&en));
	outbox_entry_free(&en);
}

static void
test_a_read_back_that_shows_the_revision_drops_it(void **state)
{
	struct outbox_entry en;

	(void)state;
	patch_entry(&en, 5, "outcome");
	outbox_sending(&en, NOW);
	assert_true(outbox_shows(&en, "<p>Passed</p><p><span>imperai-snow ref 2.5</span></p>"));
	assert_true(outbox_shows(&en, "<p>later</p><p><span>imperai-snow ref 2.7</span></p>"));
	assert_false(outbox_shows(&en, "<p>Sent</p><p><span>imperai-snow ref 2.4</span></p>"));
	assert_false(outbox_shows(&en, "<p>older request</p><p><span>imperai-snow ref 1.9</span></p>"));
	assert_false(outbox_shows(&en, ""));
	assert_false(outbox_shows(&en, NULL));
	outbox_entry_free(&en);
}

static void
test_a_merge_never_merges_an_entry_that_may_have_landed(void **state)
{
	struct outbox_entry a, b;

	(void)state;
	patch_entry(&a, 5, "link");
	patch_entry(&b, 6, "outcome");
	assert_true(outbox_may_merge(&a, &b));
	outbox_sending(&b, NOW);
	assert_false(outbox_may_merge(&a, &b));
	outbox_unsent(&b);
	assert_true(outbox_may_merge(&a, &b));
	outbox_sending(&a, NOW);
	assert_false(outbox_may_merge(&a, &b));
	outbox_unsent(&a);
	/* parked, then released by retry: it may have landed still */
	outbox_sending(&b, NOW);
	park(&b);
	restart(&b);
	outbox_unpark(&b);
	assert_false(outbox_may_merge(&a, &b));
	outbox_entry_free(&b);
	/* a resolve, or another generation, goes alone */
	patch_entry(&b, 6, "resolved");
	assert_false(outbox_may_merge(&a, &b));
	free(b.e.tag);
	b.e.tag = xstrdup("outcome");
	b.e.generation = 3;
	assert_false(outbox_may_merge(&a, &b));
	outbox_entry_free(&a);
	outbox_entry_free(&b);
}

static void
test_an_imperai_write_parks_after_repeated_failures(void **state)
{
	struct outbox_entry en;
	int parked = 0, sends = 0;
	char *enc;

	(void)state;
	patch_entry(&en, 5, "outcome");
	en.e.kind = EFFECT_CANCEL;
	en.e.request_id = xstrdup("vr_1");
	while (!parked) {
		outbox_sending(&en, NOW);
		sends++;
		parked = outbox_again(&en, "HTTP status 503", MAX, NOW, 0.5);
	}
	assert_int_equal(sends, MAX);
	enc = codec_entry_encode(&en);
	assert_non_null(strstr(enc, "\"not_before\":253402300799"));
	free(enc);
	restart(&en);
	assert_int_equal(en.phase, OUTBOX_PARKED);
	assert_string_equal(en.last_error, "HTTP status 503");
	outbox_unpark(&en);
	assert_int_equal(en.phase, OUTBOX_QUEUED);
	assert_int_equal(en.not_before, 0);
	outbox_entry_free(&en);
}

/* A PATCH that may have landed is never parked blind: it is read back,
 * and parks only once the read-back shows it did not land; parked, it is
 * known unsent, so its release sends it without another read-back. */
static void
test_a_patch_parks_only_after_a_read_back_shows_it_did_not_land(void **state)
{
	struct outbox_entry en;

	(void)state;
	patch_entry(&en, 5, "outcome");
	for (int i = 0; i < MAX + 3; i++) {
		outbox_sending(&en, NOW);
		assert_int_equal(outbox_again(&en, "HTTP status 500", MAX, NOW, 0.5), 0);
		assert_int_equal(en.phase, OUTBOX_SENT);
		assert_true(outbox_read_back_first(&en));
		/* a read-back that shows nothing before the last send: send again */
		if (i + 1 <= MAX)
			assert_int_equal(outbox_park_unlanded(&en, MAX), 0);
	}
	assert_int_equal(outbox_park_unlanded(&en, MAX), 1);
	restart(&en);
	assert_int_equal(en.phase, OUTBOX_PARKED);
	assert_string_equal(en.last_error, "HTTP status 500");
	outbox_unpark(&en);
	assert_int_equal(en.phase, OUTBOX_QUEUED);
	assert_false(outbox_read_back_first(&en));
	outbox_entry_free(&en);
}

/* Parked and passed by a later write that landed: it goes without its
 * field, which would take the ticket back; the rest (its note) goes. */
static void
test_a_patch_passed_while_parked_goes_without_its_field(void **state)
{
	struct outbox_entry en;

	(void)state;
	patch_entry(&en, 5, "link");
	free(en.e.patch_json);
	en.e.patch_json = xstrdup("{\"" FIELD "\":\"<h3>old</h3>\",\"work_notes\":\"[imper.ai link 2.5]\"}");
	assert_false(outbox_superseded(&en, 4));
	assert_false(outbox_superseded(&en, 5));
	assert_true(outbox_superseded(&en, 6));
	assert_int_equal(outbox_strip_field(&en, FIELD), 0);
	assert_string_equal(en.e.patch_json, "{\"work_notes\":\"[imper.ai link 2.5]\"}");
	/* a field-only write has nothing left: it is done */
	assert_int_equal(outbox_strip_field(&en, "work_notes"), 1);
	outbox_entry_free(&en);
}

/* Entries an older daemon stored decode to the phase their fields say. */
static void
test_stored_entries_decode_to_their_phase(void **state)
{
	static const char *base = "{\"v\":1,\"kind\":\"patch\",\"table\":\"incident\","
	    "\"sys_id\":\"" SYS_A "\",\"generation\":2,\"revision\":5,\"patch_json\":\"{}\"";
	static const struct { const char *tail; enum outbox_phase phase; } cases[] = {
		{ ",\"attempts\":0,\"not_before\":0,\"sent_at\":0}", OUTBOX_QUEUED },
		{ "}", OUTBOX_QUEUED },
		{ ",\"attempts\":2,\"not_before\":1764000100,\"sent_at\":1764000000}", OUTBOX_SENT },
		{ ",\"attempts\":12,\"not_before\":253402300799,\"last_error\":\"x\"}", OUTBOX_PARKED },
	};
	struct outbox_entry en;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *json = xprintf("%s%s", base, cases[i].tail);

		assert_int_equal(codec_entry_decode(json, strlen(json), &en, NULL), 0);
		assert_int_equal(en.phase, cases[i].phase);
		outbox_entry_free(&en);
		free(json);
	}
}

/* --- a restart ------------------------------------------------------------------------ */

struct stored {
	const char	*sys_id;
	enum effect_kind kind;
	int		 sent;
	int		 parked;
};

static int
store_entries(struct store_txn *txn, void *arg)
{
	const struct stored *v = arg;
	uint64_t seq;

	for (; v->sys_id != NULL; v++) {
		struct outbox_entry en;
		char *enc;

		patch_entry(&en, 5, "outcome");
		snprintf(en.e.sys_id, sizeof(en.e.sys_id), "%s", v->sys_id);
		en.e.kind = v->kind;
		if (v->kind == EFFECT_CANCEL)
			en.e.request_id = xstrdup("vr_1");
		if (v->sent)
			outbox_sending(&en, NOW);
		if (v->parked)
			park(&en);
		enc = codec_entry_encode(&en);
		store_outbox_add(txn, enc, strlen(enc), &seq);
		free(enc);
		outbox_entry_free(&en);
	}
	return store_txn_error(txn);
}

static void
test_a_restart_keeps_the_order_and_the_phase_of_each_entry(void **state)
{
	static const struct stored v[] = {
		{ "b0000000000000000000000000000000", EFFECT_PATCH, 1, 0 },	/* seq 1 */
		{ "a0000000000000000000000000000000", EFFECT_PATCH, 0, 0 },	/* 2 */
		{ "b0000000000000000000000000000000", EFFECT_PATCH, 0, 0 },	/* 3 */
		{ "c0000000000000000000000000000000", EFFECT_PATCH, 1, 1 },	/* 4: parked */
		{ "a0000000000000000000000000000000", EFFECT_CANCEL, 0, 0 },	/* 5 */
		{ NULL, EFFECT_PATCH, 0, 0 },
	};
	char tmp[] = "/tmp/test_outbox.XXXXXX", *cause = NULL, *cmd;
	struct outbox_index *q = outbox_index_new();
	struct store *st = NULL;
	const uint64_t want[] = { 1, 2, 3 };
	uint64_t seq;
	const char *key;

	(void)state;
	assert_non_null(mkdtemp(tmp));
	assert_int_equal(store_open(tmp, 0, 0, &st, &cause), 0);
	assert_int_equal(store_write(st, store_entries, (void *)v), 0);
	outbox_index_scan(st, q);
	assert_int_equal(outbox_index_count(q), 5);
	/* per ticket one at a time, across tickets by seq; the parked never */
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(outbox_index_take(q, OUTBOX_SNOW, NOW, &seq, &key), 0);
		assert_int_equal(seq, want[i]);
		outbox_index_done(q, key, seq);
	}
	assert_int_equal(outbox_index_take(q, OUTBOX_SNOW, NOW, &seq, &key), -ENOENT);
	assert_int_equal(outbox_index_take(q, OUTBOX_IMPERAI, NOW, &seq, &key), 0);
	assert_int_equal(seq, 5);
	outbox_index_free(q);
	store_close(st);
	cmd = xprintf("rm -rf '%s'", tmp);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entries_of_one_ticket_run_one_at_a_time_in_seq_order),
		cmocka_unit_test(test_oldest_due_head_goes_first_across_tickets),
		cmocka_unit_test(test_an_entry_not_yet_due_waits_for_its_time),
		cmocka_unit_test(test_a_released_entry_retries_at_its_new_time_and_blocks_its_ticket),
		cmocka_unit_test(test_a_parked_patch_steps_aside_and_goes_first_once_released),
		cmocka_unit_test(test_set_due_releases_a_parked_entry),
		cmocka_unit_test(test_an_entry_added_running_blocks_its_ticket_until_done),
		cmocka_unit_test(test_running_entries_survive_a_rebuild),
		cmocka_unit_test(test_next_same_finds_only_a_following_due_entry_of_the_same_lane),
		cmocka_unit_test(test_many_tickets_come_out_in_seq_order),
		cmocka_unit_test(test_an_entry_sent_and_unanswered_is_never_sent_again_before_its_read_back),
		cmocka_unit_test(test_a_send_refused_before_anything_was_done_needs_no_read_back),
		cmocka_unit_test(test_a_resolve_is_always_read_back_first),
		cmocka_unit_test(test_a_read_back_that_shows_the_revision_drops_it),
		cmocka_unit_test(test_a_merge_never_merges_an_entry_that_may_have_landed),
		cmocka_unit_test(test_an_imperai_write_parks_after_repeated_failures),
		cmocka_unit_test(test_a_patch_parks_only_after_a_read_back_shows_it_did_not_land),
		cmocka_unit_test(test_a_patch_passed_while_parked_goes_without_its_field),
		cmocka_unit_test(test_stored_entries_decode_to_their_phase),
		cmocka_unit_test(test_a_restart_keeps_the_order_and_the_phase_of_each_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
