/* Tests of lib/hmap.c, the one hash table (ticket cache, outbox index). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hmap.h"
#include "util.h"

static void
test_a_value_put_is_found_replaced_and_deleted(void **state)
{
	struct hmap *m = hmap_new();
	int a = 1, b = 2;

	(void)state;
	assert_null(hmap_get(m, "incident/x"));
	assert_null(hmap_del(m, "incident/x"));
	assert_null(hmap_put(m, "incident/x", &a));
	assert_ptr_equal(hmap_get(m, "incident/x"), &a);
	assert_ptr_equal(hmap_put(m, "incident/x", &b), &a);
	assert_ptr_equal(hmap_get(m, "incident/x"), &b);
	assert_int_equal(hmap_count(m), 1);
	assert_ptr_equal(hmap_del(m, "incident/x"), &b);
	assert_null(hmap_get(m, "incident/x"));
	assert_int_equal(hmap_count(m), 0);
	hmap_free(m, NULL);
}

/* The key is copied: the caller's buffer may change after the put. */
static void
test_keys_are_copied(void **state)
{
	struct hmap *m = hmap_new();
	char key[16] = "incident/a";
	int a = 1;

	(void)state;
	hmap_put(m, key, &a);
	key[9] = 'b';
	assert_null(hmap_get(m, key));
	assert_ptr_equal(hmap_get(m, "incident/a"), &a);
	hmap_free(m, NULL);
}

/* Growing past many doublings loses nothing; a walk sees each entry once. */
static void
test_many_entries_survive_growth_and_a_walk_sees_each_once(void **state)
{
	enum { N = 20000 };
	struct hmap *m = hmap_new();
	struct hmap_iter it = { 0 };
	unsigned char *seen = xcalloc(N, 1);
	const char *k;
	void *v;
	char key[32];
	size_t walked = 0;

	(void)state;
	for (uintptr_t i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "incident/%lu", (unsigned long)i);
		hmap_put(m, key, (void *)(i + 1));
	}
	for (uintptr_t i = 0; i < N; i += 2) {
		snprintf(key, sizeof(key), "incident/%lu", (unsigned long)i);
		assert_ptr_equal(hmap_del(m, key), (void *)(i + 1));
	}
	assert_int_equal(hmap_count(m), N / 2);
	while (hmap_next(m, &it, &k, &v)) {
		uintptr_t i = (uintptr_t)v - 1;

		assert_true(i % 2 == 1);
		snprintf(key, sizeof(key), "incident/%lu", (unsigned long)i);
		assert_string_equal(k, key);
		assert_int_equal(seen[i]++, 0);
		walked++;
	}
	assert_int_equal(walked, N / 2);
	assert_int_equal(hmap_next(m, &it, &k, &v), 0);
	free(seen);
	hmap_free(m, NULL);
}

static int freed;

static void
count_free(void *p)
{
	freed++;
	free(p);
}

static void
test_clear_and_free_hand_each_value_to_free_val(void **state)
{
	struct hmap *m = hmap_new();

	(void)state;
	freed = 0;
	hmap_put(m, "a", xstrdup("1"));
	hmap_put(m, "b", xstrdup("2"));
	hmap_clear(m, count_free);
	assert_int_equal(freed, 2);
	assert_int_equal(hmap_count(m), 0);
	assert_null(hmap_get(m, "a"));
	hmap_put(m, "c", xstrdup("3"));
	hmap_free(m, count_free);
	assert_int_equal(freed, 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_value_put_is_found_replaced_and_deleted),
		cmocka_unit_test(test_keys_are_copied),
		cmocka_unit_test(test_many_entries_survive_growth_and_a_walk_sees_each_once),
		cmocka_unit_test(test_clear_and_free_hand_each_value_to_free_val),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
