/* Tests for lib/requests.c: the operator requests' wire form, and
 * requests_take() against a real store in a temporary directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "requests.h"
#include "store.h"
#include "util.h"

static int
parse(const char *json, struct req *r)
{
	char *cause = NULL;
	int rc = requests_parse(json, strlen(json), r, &cause);

	if (rc != 0) {
		assert_non_null(cause);
		free(cause);
	}
	return rc;
}

static void
test_resync_parses_number_and_optional_table_with_sys_id(void **state)
{
	struct req r;

	(void)state;
	assert_int_equal(parse("{\"op\":\"resync\",\"ticket\":\"INC0010001\"}", &r), 0);
	assert_int_equal(r.op, REQ_RESYNC);
	assert_string_equal(r.ticket, "INC0010001");
	assert_null(r.table);
	free(r.ticket);
	assert_int_equal(parse("{\"op\":\"resync\",\"ticket\":\"INC1\",\"table\":\"incident\","
	    "\"sys_id\":\"abc\"}", &r), 0);
	assert_string_equal(r.table, "incident");
	assert_string_equal(r.sys_id, "abc");
	free(r.ticket);
	free(r.table);
	free(r.sys_id);
}

static void
test_retry_without_seq_means_every_parked_entry(void **state)
{
	struct req r;

	(void)state;
	assert_int_equal(parse("{\"op\":\"retry\"}", &r), 0);
	assert_int_equal(r.op, REQ_RETRY);
	assert_int_equal(r.seq, 0);
	assert_int_equal(parse("{\"op\":\"retry\",\"seq\":42}", &r), 0);
	assert_int_equal(r.seq, 42);
}

static void
test_malformed_requests_are_refused_with_a_cause(void **state)
{
	static const char *bad[] = {
		"", "[]", "{\"op\":\"reboot\"}", "{\"ticket\":\"INC1\"}",
		"{\"op\":\"resync\"}", "{\"op\":\"resync\",\"ticket\":\"\"}",
		"{\"op\":\"resync\",\"ticket\":\"INC1\",\"table\":\"incident\"}",
		"{\"op\":\"retry\",\"seq\":0}", "{\"op\":\"retry\",\"seq\":\"5\"}",
		"{\"op\":\"retry\",\"seq\":-3}", "{\"op\":\"retry\"} trailing",
	};
	struct req r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(parse(bad[i], &r), -EBADMSG);
		assert_null(r.ticket);
		assert_null(r.table);
	}
}

static void
test_encode_then_parse_gives_the_same_request(void **state)
{
	struct req in = { .op = REQ_RESYNC, .ticket = "RITM0010002", .table = "sc_req_item",
	    .sys_id = "0123456789abcdef0123456789abcdef" }, out;
	struct req retry = { .op = REQ_RETRY, .seq = 7 };
	char *json = requests_encode(&in);

	(void)state;
	assert_int_equal(parse(json, &out), 0);
	assert_string_equal(out.ticket, in.ticket);
	assert_string_equal(out.table, in.table);
	assert_string_equal(out.sys_id, in.sys_id);
	free(out.ticket);
	free(out.table);
	free(out.sys_id);
	free(json);
	json = requests_encode(&retry);
	assert_string_equal(json, "{\"op\":\"retry\",\"seq\":7}");
	free(json);
}

/* --- requests_take against a store ------------------------------------------- */

struct fixture {
	char		 dir[64];
	struct store	*st;
};

static int
setup_store(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char *cause = NULL;

	strcpy(f->dir, "/tmp/test_requests.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(store_open(f->dir, 1 << 20, 0, &f->st, &cause), 0);
	*state = f;
	return 0;
}

static int
teardown_store(void **state)
{
	struct fixture *f = *state;
	char *cmd;

	store_close(f->st);
	cmd = xprintf("rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(f);
	return 0;
}

static int
add_fn(struct store_txn *t, void *arg)
{
	uint64_t seq;

	store_request_add(t, arg, &seq);
	return store_txn_error(t);
}

static void
queue(struct store *st, const char *json)
{
	assert_int_equal(store_write(st, add_fn, (void *)json), 0);
}

static void
silent(enum log_level lvl, const char *line, void *arg)
{
	(void)lvl;
	(*(int *)arg)++;
	assert_non_null(strstr(line, "unreadable"));
}

static void
test_take_returns_the_queue_in_order_and_empties_it(void **state)
{
	struct fixture *f = *state;
	struct req *v;
	size_t n;

	queue(f->st, "{\"op\":\"resync\",\"ticket\":\"INC0010001\"}");
	queue(f->st, "{\"op\":\"retry\",\"seq\":3}");
	queue(f->st, "{\"op\":\"retry\"}");
	assert_int_equal(requests_take(f->st, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].op, REQ_RESYNC);
	assert_string_equal(v[0].ticket, "INC0010001");
	assert_int_equal(v[1].seq, 3);
	assert_int_equal(v[2].seq, 0);
	assert_true(v[0].id < v[1].id && v[1].id < v[2].id);
	requests_free(v, n);
	assert_int_equal(requests_take(f->st, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
}

static void
test_take_drops_an_unreadable_request_and_logs_it(void **state)
{
	struct fixture *f = *state;
	struct req *v;
	size_t n;
	int logged = 0;

	queue(f->st, "{\"op\":\"explode\"}");
	queue(f->st, "{\"op\":\"retry\"}");
	log_set_sink(silent, &logged);
	assert_int_equal(requests_take(f->st, &v, &n), 0);
	log_set_sink(NULL, NULL);
	assert_int_equal(logged, 1);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].op, REQ_RETRY);
	requests_free(v, n);
	assert_int_equal(requests_take(f->st, &v, &n), 0);
	assert_int_equal(n, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resync_parses_number_and_optional_table_with_sys_id),
		cmocka_unit_test(test_retry_without_seq_means_every_parked_entry),
		cmocka_unit_test(test_malformed_requests_are_refused_with_a_cause),
		cmocka_unit_test(test_encode_then_parse_gives_the_same_request),
		cmocka_unit_test_setup_teardown(test_take_returns_the_queue_in_order_and_empties_it,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_take_drops_an_unreadable_request_and_logs_it,
		    setup_store, teardown_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
