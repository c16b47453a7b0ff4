/* Tests of daemon/outq.c, the in-memory index of the outbox. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "outq.h"

#define NOW 1764000000

static uint64_t
take(struct outq *q, enum outq_lane lane, int64_t now)
{
	const char *key;
	uint64_t seq;

	if (outq_take(q, lane, now, &seq, &key) != 0)
		return 0;
	return seq;
}

static void
test_entries_of_one_ticket_run_one_at_a_time_in_seq_order(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/a", 1, OUTQ_IMPERAI, 0, 0);
	outq_add(q, "incident/a", 2, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/a", 3, OUTQ_SNOW, 0, 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	assert_int_equal(take(q, OUTQ_IMPERAI, NOW), 1);
	assert_int_equal(take(q, OUTQ_IMPERAI, NOW), 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	outq_done(q, "incident/a", 1);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 2);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	outq_done(q, "incident/a", 2);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 3);
	outq_done(q, "incident/a", 3);
	assert_false(outq_has(q, "incident/a"));
	assert_int_equal(outq_count(q), 0);
	outq_free(q);
}

static void
test_oldest_due_head_goes_first_across_tickets(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/c", 7, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/a", 5, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/b", 9, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/a", 6, OUTQ_SNOW, 0, 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 5);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 7);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 9);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	assert_int_equal(outq_count(q), 4);
	outq_free(q);
}

static void
test_an_entry_not_yet_due_waits_for_its_time(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/a", 1, OUTQ_SNOW, NOW + 30, 0);
	outq_add(q, "incident/b", 2, OUTQ_SNOW, NOW + 10, 0);
	assert_int_equal(outq_next_due(q), NOW + 10);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW + 10), 2);
	assert_int_equal(outq_next_due(q), NOW + 30);
	assert_int_equal(take(q, OUTQ_SNOW, NOW + 29), 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW + 31), 1);
	assert_int_equal(outq_next_due(q), INT64_MAX);
	outq_free(q);
}

static void
test_a_released_entry_retries_at_its_new_time_and_blocks_its_ticket(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/a", 1, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/a", 2, OUTQ_SNOW, 0, 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 1);
	outq_release(q, "incident/a", 1, NOW + 60);
	/* the later entry of the same ticket waits behind the retry */
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW + 60), 1);
	outq_release(q, "incident/a", 1, 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 1);
	outq_free(q);
}

static void
test_set_due_releases_a_parked_entry(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/a", 4, OUTQ_IMPERAI, INT64_C(253402300799), 0);
	assert_int_equal(take(q, OUTQ_IMPERAI, NOW), 0);
	outq_set_due(q, "incident/a", 4, 0);
	assert_int_equal(take(q, OUTQ_IMPERAI, NOW), 4);
	outq_free(q);
}

static void
test_an_entry_added_running_blocks_its_ticket_until_done(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/a", 1, OUTQ_IMPERAI, 0, 1);
	outq_add(q, "incident/a", 2, OUTQ_SNOW, 0, 0);
	assert_true(outq_has(q, "incident/a"));
	assert_int_equal(take(q, OUTQ_IMPERAI, NOW), 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 0);
	outq_done(q, "incident/a", 1);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 2);
	outq_free(q);
}

static void
test_running_entries_survive_a_rebuild(void **state)
{
	struct outq *q = outq_new(), *r = outq_new();
	uint64_t *run;
	char **keys;
	size_t n;

	(void)state;
	outq_add(q, "incident/a", 1, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/b", 2, OUTQ_SNOW, 0, 0);
	assert_int_equal(take(q, OUTQ_SNOW, NOW), 1);
	run = outq_running(q, &keys, &n);
	assert_int_equal(n, 1);
	assert_int_equal(run[0], 1);
	assert_string_equal(keys[0], "incident/a");
	outq_add(r, "incident/a", 1, OUTQ_SNOW, 0, 0);
	outq_add(r, "incident/b", 2, OUTQ_SNOW, 0, 0);
	assert_int_equal(outq_mark_running(r, keys[0], run[0]), 0);
	assert_int_equal(outq_mark_running(r, "incident/x", 9), -ENOENT);
	assert_int_equal(take(r, OUTQ_SNOW, NOW), 2);
	assert_int_equal(take(r, OUTQ_SNOW, NOW), 0);
	free(keys[0]);
	free(keys);
	free(run);
	outq_free(q);
	outq_free(r);
}

static void
test_next_same_finds_only_a_following_due_entry_of_the_same_lane(void **state)
{
	struct outq *q = outq_new();

	(void)state;
	outq_add(q, "incident/a", 1, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/a", 2, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/a", 3, OUTQ_IMPERAI, 0, 0);
	outq_add(q, "incident/b", 5, OUTQ_SNOW, 0, 0);
	outq_add(q, "incident/b", 6, OUTQ_SNOW, NOW + 5, 0);
	assert_int_equal(outq_next_same(q, "incident/a", 1, NOW), 2);
	assert_int_equal(outq_next_same(q, "incident/a", 2, NOW), 0);
	assert_int_equal(outq_next_same(q, "incident/b", 5, NOW), 0);
	assert_int_equal(outq_next_same(q, "incident/b", 5, NOW + 5), 6);
	assert_int_equal(outq_next_same(q, "incident/c", 1, NOW), 0);
	outq_free(q);
}

/* Many tickets added in scrambled order come out by seq, every one once. */
static void
test_many_tickets_come_out_in_seq_order(void **state)
{
	enum { N = 5000 };
	struct outq *q = outq_new();
	char key[32];
	uint64_t last = 0, seq;
	const char *k;
	size_t got = 0;

	(void)state;
	for (uint64_t i = 0; i < N; i++) {
		uint64_t s = (i * 7919) % N + 1;	/* a permutation of 1..N */

		snprintf(key, sizeof(key), "incident/%llu", (unsigned long long)s);
		outq_add(q, key, s, (s % 3) ? OUTQ_SNOW : OUTQ_IMPERAI, (s % 5) ? 0 : NOW - 1, 0);
	}
	for (int lane = 0; lane < OUTQ__LANES; lane++) {
		last = 0;
		while (outq_take(q, (enum outq_lane)lane, NOW, &seq, &k) == 0) {
			assert_true(seq > last);
			last = seq;
			outq_done(q, k, seq);
			got++;
		}
	}
	assert_int_equal(got, N);
	assert_int_equal(outq_count(q), 0);
	outq_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entries_of_one_ticket_run_one_at_a_time_in_seq_order),
		cmocka_unit_test(test_oldest_due_head_goes_first_across_tickets),
		cmocka_unit_test(test_an_entry_not_yet_due_waits_for_its_time),
		cmocka_unit_test(test_a_released_entry_retries_at_its_new_time_and_blocks_its_ticket),
		cmocka_unit_test(test_set_due_releases_a_parked_entry),
		cmocka_unit_test(test_an_entry_added_running_blocks_its_ticket_until_done),
		cmocka_unit_test(test_running_entries_survive_a_rebuild),
		cmocka_unit_test(test_next_same_finds_only_a_following_due_entry_of_the_same_lane),
		cmocka_unit_test(test_many_tickets_come_out_in_seq_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
