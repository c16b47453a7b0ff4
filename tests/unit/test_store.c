/* Unit tests for lib/store.c. */

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"

struct fix {
	char		 tmp[64];
	char		 dir[96];
	struct store	*s;
};

static int
fix_setup(void **state)
{
	struct fix *f = xcalloc(1, sizeof(*f));

	snprintf(f->tmp, sizeof(f->tmp), "/tmp/test_store.XXXXXX");
	if (mkdtemp(f->tmp) == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/state", f->tmp);
	*state = f;
	return 0;
}

static int
fix_teardown(void **state)
{
	struct fix *f = *state;
	char *cmd = xprintf("rm -rf '%s'", f->tmp);
	int rc;

	store_close(f->s);
	rc = system(cmd);
	free(cmd);
	free(f);
	return rc == 0 ? 0 : -1;
}

static struct store *
open_store(const char *dir, uint64_t map, int flags)
{
	struct store *s = NULL;
	char *cause = NULL;
	int rc = store_open(dir, map, flags, &s, &cause);

	if (rc != 0)
		fail_msg("store_open %s: %d %s", dir, rc, cause ? cause : "");
	assert_null(cause);
	return s;
}

static struct store_txn *
begin(struct store *s, int rdonly)
{
	struct store_txn *t = NULL;

	assert_int_equal(store_begin(s, rdonly, &t), 0);
	return t;
}

static void
put_ticket(struct store *s, const char *table, const char *sys_id, const char *number,
    const char *val)
{
	struct store_txn *t = begin(s, 0);

	assert_int_equal(store_ticket_put(t, table, sys_id, number, val, strlen(val)), 0);
	assert_int_equal(store_commit(t), 0);
}

/* The ticket's value, or NULL if absent. */
static char *
get_ticket(struct store *s, const char *table, const char *sys_id)
{
	struct store_txn *t = begin(s, 1);
	struct buf b;
	int rc;

	buf_init(&b);
	rc = store_ticket_get(t, table, sys_id, &b);
	store_abort(t);
	if (rc == -ENOENT)
		return NULL;
	assert_int_equal(rc, 0);
	return buf_detach(&b);
}

/* "table/sys_id" the number maps to, or NULL. */
static char *
by_number(struct store *s, const char *number)
{
	struct store_txn *t = begin(s, 1);
	char *table = NULL, *sys_id = NULL, *r;
	int rc = store_ticket_by_number(t, number, &table, &sys_id);

	store_abort(t);
	if (rc == -ENOENT)
		return NULL;
	assert_int_equal(rc, 0);
	r = xprintf("%s/%s", table, sys_id);
	free(table);
	free(sys_id);
	return r;
}

static void
assert_str_and_free(char *got, const char *want)
{
	if (want == NULL && got != NULL)
		fail_msg("expected nothing, got [%s]", got);
	if (want != NULL && (got == NULL || strcmp(got, want) != 0))
		fail_msg("expected [%s], got [%s]", want, got ? got : "(none)");
	free(got);
}

static void
test_open_creates_private_directory_and_state_persists(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;
	struct stat st;
	struct buf b;

	f->s = open_store(f->dir, 0, 0);
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_string_equal(store_path(f->s), f->dir);
	put_ticket(f->s, "incident", "abc123", "INC0010001", "{\"state\":\"link_ready\"}");
	t = begin(f->s, 0);
	assert_int_equal(store_meta_put(t, "snow.watermark.incident", "2024-05-01 10:00:00", 19), 0);
	assert_int_equal(store_commit(t), 0);
	store_close(f->s);
	f->s = open_store(f->dir, 0, 0);
	assert_str_and_free(get_ticket(f->s, "incident", "abc123"), "{\"state\":\"link_ready\"}");
	assert_str_and_free(by_number(f->s, "INC0010001"), "incident/abc123");
	t = begin(f->s, 1);
	buf_init(&b);
	assert_int_equal(store_meta_get(t, "snow.watermark.incident", &b), 0);
	assert_string_equal(b.data, "2024-05-01 10:00:00");
	assert_int_equal(store_meta_get(t, "schema_version", &b), 0);
	assert_string_equal(b.data, "1");
	store_abort(t);
	buf_free(&b);
}

static void
test_ticket_put_get_del_keeps_by_number_in_step(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "s1", "INC1", "v1");
	put_ticket(f->s, "sc_req_item", "s1", "RITM1", "v2");
	assert_str_and_free(get_ticket(f->s, "incident", "s1"), "v1");
	assert_str_and_free(get_ticket(f->s, "sc_req_item", "s1"), "v2");
	put_ticket(f->s, "incident", "s1", "INC1", "v1b");
	assert_str_and_free(get_ticket(f->s, "incident", "s1"), "v1b");
	assert_str_and_free(by_number(f->s, "INC1"), "incident/s1");
	t = begin(f->s, 0);
	assert_int_equal(store_ticket_del(t, "incident", "s1"), 0);
	assert_int_equal(store_ticket_del(t, "incident", "s1"), -ENOENT);
	assert_int_equal(store_txn_error(t), 0);
	assert_int_equal(store_commit(t), 0);
	assert_null(get_ticket(f->s, "incident", "s1"));
	assert_null(by_number(f->s, "INC1"));
	assert_str_and_free(by_number(f->s, "RITM1"), "sc_req_item/s1");
	assert_null(by_number(f->s, "INC404"));
}

static void
test_ticket_number_change_replaces_stale_mapping(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "a", "INC1", "x");
	put_ticket(f->s, "incident", "a", "INC2", "x");
	assert_null(by_number(f->s, "INC1"));
	assert_str_and_free(by_number(f->s, "INC2"), "incident/a");
	/* The number moves to another ticket: deleting the old one keeps it. */
	put_ticket(f->s, "incident", "b", "INC2", "y");
	assert_str_and_free(by_number(f->s, "INC2"), "incident/b");
	t = begin(f->s, 0);
	assert_int_equal(store_ticket_del(t, "incident", "a"), 0);
	assert_int_equal(store_commit(t), 0);
	assert_str_and_free(by_number(f->s, "INC2"), "incident/b");
	/* A ticket stored without a number drops its old mapping. */
	put_ticket(f->s, "incident", "b", NULL, "y");
	assert_null(by_number(f->s, "INC2"));
	assert_str_and_free(get_ticket(f->s, "incident", "b"), "y");
}

struct collect {
	struct buf	 b;
	int		 stop_after;
	int		 n;
};

static int
collect_ticket(const char *table, const char *sys_id, const void *val, size_t len, void *arg)
{
	struct collect *c = arg;

	buf_addf(&c->b, "%s/%s=%.*s;", table, sys_id, (int)len, (const char *)val);
	return ++c->n == c->stop_after ? 42 : 0;
}

static void
test_ticket_each_walks_in_key_order_and_stops_on_request(void **state)
{
	struct fix *f = *state;
	struct collect c = { .stop_after = 0 };
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "c", "INC3", "3");
	put_ticket(f->s, "incident", "a", "INC1", "1");
	put_ticket(f->s, "change", "z", "CHG1", "");
	put_ticket(f->s, "incident", "b", "INC2", "2");
	buf_init(&c.b);
	t = begin(f->s, 1);
	assert_int_equal(store_ticket_each(t, collect_ticket, &c), 0);
	assert_string_equal(c.b.data, "change/z=;incident/a=1;incident/b=2;incident/c=3;");
	buf_reset(&c.b);
	c.n = 0;
	c.stop_after = 2;
	assert_int_equal(store_ticket_each(t, collect_ticket, &c), 42);
	assert_string_equal(c.b.data, "change/z=;incident/a=1;");
	store_abort(t);
	buf_free(&c.b);
}

static void
test_aborted_write_leaves_previous_state(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "a", "INC1", "old");
	t = begin(f->s, 0);
	assert_int_equal(store_ticket_put(t, "incident", "a", "INC9", "new", 3), 0);
	assert_int_equal(store_ticket_put(t, "incident", "b", "INC2", "b", 1), 0);
	assert_int_equal(store_outbox_add(t, "e", 1, NULL), 0);
	store_abort(t);
	assert_str_and_free(get_ticket(f->s, "incident", "a"), "old");
	assert_null(get_ticket(f->s, "incident", "b"));
	assert_str_and_free(by_number(f->s, "INC1"), "incident/a");
	assert_null(by_number(f->s, "INC9"));
}

static int
write_then_fail(struct store_txn *t, void *arg)
{
	int *calls = arg;

	(*calls)++;
	assert_int_equal(store_ticket_put(t, "incident", "a", "INC1", "v", 1), 0);
	assert_int_equal(store_outbox_add(t, "e", 1, NULL), 0);
	return -ECANCELED;
}

static void
test_write_callback_error_aborts_everything(void **state)
{
	struct fix *f = *state;
	struct store_stat st;
	int calls = 0;

	f->s = open_store(f->dir, 0, 0);
	assert_int_equal(store_write(f->s, write_then_fail, &calls), -ECANCELED);
	assert_int_equal(calls, 1);
	assert_null(get_ticket(f->s, "incident", "a"));
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_int_equal(st.tickets, 0);
	assert_int_equal(st.outbox, 0);
}

static void
test_failed_operation_is_sticky_and_commit_refuses(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;
	struct buf b;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "a", "INC1", "v");
	buf_init(&b);
	t = begin(f->s, 0);
	/* A missing key is an answer, not a failure. */
	assert_int_equal(store_meta_get(t, "nope", &b), -ENOENT);
	assert_int_equal(store_txn_error(t), 0);
	assert_int_equal(store_ticket_put(t, "incident", "a", "INC1", "changed", 7), 0);
	assert_int_equal(store_ticket_put(t, "bad/table", "x", "INC2", "v", 1), -EINVAL);
	assert_int_equal(store_txn_error(t), -EINVAL);
	assert_int_equal(store_ticket_get(t, "incident", "a", &b), -EINVAL);
	assert_int_equal(store_meta_put(t, "k", "v", 1), -EINVAL);
	assert_int_equal(store_outbox_add(t, "v", 1, NULL), -EINVAL);
	assert_int_equal(store_commit(t), -EINVAL);
	assert_str_and_free(get_ticket(f->s, "incident", "a"), "v");
	buf_free(&b);
}

static void
test_read_only_transaction_refuses_writes(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 1);
	assert_int_equal(store_meta_put(t, "k", "v", 1), -EROFS);
	assert_int_equal(store_txn_error(t), -EROFS);
	store_abort(t);
}

static int
write_chunk(struct store_txn *t, void *arg)
{
	int *i = arg;
	char id[32], val[2048];

	snprintf(id, sizeof(id), "s%04d", *i);
	memset(val, 'a' + *i % 26, sizeof(val));
	return store_ticket_put(t, "incident", id, id, val, sizeof(val));
}

static void
assert_chunks(struct store *s, int n)
{
	for (int i = 0; i < n; i++) {
		char id[32], *v;

		snprintf(id, sizeof(id), "s%04d", i);
		v = get_ticket(s, "incident", id);
		assert_non_null(v);
		assert_int_equal(strlen(v), 2048);
		assert_int_equal(v[0], 'a' + i % 26);
		assert_int_equal(v[2047], 'a' + i % 26);
		free(v);
	}
}

static void
test_full_map_grows_and_keeps_every_record(void **state)
{
	struct fix *f = *state;
	struct store_stat st;

	f->s = open_store(f->dir, 64 * 1024, 0);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_int_equal(st.map_size, 64 * 1024);
	for (int i = 0; i < 300; i++)
		assert_int_equal(store_write(f->s, write_chunk, &i), 0);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_true(st.map_size >= 300 * 2048);
	assert_true(st.used_bytes <= st.map_size);
	assert_int_equal(st.tickets, 300);
	assert_chunks(f->s, 300);
	store_close(f->s);
	/* The grown size is kept even though the configured one is smaller. */
	f->s = open_store(f->dir, 64 * 1024, 0);
	assert_chunks(f->s, 300);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_true(st.map_size >= 300 * 2048);
}

static int
write_too_much(struct store_txn *t, void *arg)
{
	int *calls = arg;
	char val[4096];

	(*calls)++;
	memset(val, 'x', sizeof(val));
	for (int i = 0; i < 64; i++) {
		char id[16];
		int rc;

		snprintf(id, sizeof(id), "big%02d", i);
		if ((rc = store_ticket_put(t, "incident", id, NULL, val, sizeof(val))) != 0)
			return rc;
	}
	return 0;
}

static void
test_transaction_larger_than_twice_the_map_fails_cleanly(void **state)
{
	struct fix *f = *state;
	struct store_stat st;
	int calls = 0, i = 0;

	f->s = open_store(f->dir, 64 * 1024, 0);
	assert_int_equal(store_write(f->s, write_too_much, &calls), -ENOSPC);
	assert_int_equal(calls, 2);
	assert_non_null(store_last_cause(f->s));
	assert_non_null(strstr(store_last_cause(f->s), f->dir));
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_int_equal(st.tickets, 0);
	/* The store is still usable afterwards. */
	assert_int_equal(store_write(f->s, write_chunk, &i), 0);
	assert_chunks(f->s, 1);
}

static void
test_newer_schema_is_refused_with_a_clear_cause(void **state)
{
	struct fix *f = *state;
	struct store *s = NULL;
	struct store_txn *t;
	char *cause = NULL;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	assert_int_equal(store_meta_put(t, "schema_version", "2", 1), 0);
	assert_int_equal(store_commit(t), 0);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(store_open(f->dir, 0, 0, &s, &cause), -EPROTO);
	assert_null(s);
	assert_non_null(strstr(cause, "has schema 2; this imperai-snowd understands 1"));
	assert_non_null(strstr(cause, f->dir));
	assert_non_null(strstr(cause, "upgrade imperai-snowd or restore a matching backup"));
	free(cause);
	cause = NULL;
	assert_int_equal(store_open(f->dir, 0, STORE_RDONLY, &s, &cause), -EPROTO);
	free(cause);
}

static void
test_second_writer_is_refused_naming_the_pid(void **state)
{
	struct fix *f = *state;
	struct store *s = NULL;
	char *cause = NULL, *pid = xprintf("pid %ld", (long)getpid());

	f->s = open_store(f->dir, 0, 0);
	assert_int_equal(store_open(f->dir, 0, 0, &s, &cause), -EBUSY);
	assert_null(s);
	assert_non_null(strstr(cause, f->dir));
	assert_non_null(strstr(cause, pid));
	free(cause);
	free(pid);
	/* Closing releases the lock. */
	store_close(f->s);
	f->s = open_store(f->dir, 0, 0);
}

static void
test_read_only_open_of_missing_state_says_so(void **state)
{
	struct fix *f = *state;
	struct store *s = NULL;
	char *cause = NULL;

	assert_int_equal(store_open(f->dir, 0, STORE_RDONLY, &s, &cause), -ENOENT);
	assert_null(s);
	assert_non_null(strstr(cause, f->dir));
	free(cause);
}

/* Runs in the child: 0 when a read-only open sees the committed state only. */
static int
child_reads_committed_only(const char *dir)
{
	struct store *s = NULL;
	struct store_txn *t = NULL;
	char *cause = NULL;
	struct buf b;
	int rc = 0;

	buf_init(&b);
	if (store_open(dir, 0, STORE_RDONLY, &s, &cause) != 0)
		return 10;
	if (store_begin(s, 1, &t) != 0)
		rc = 11;
	else if (store_ticket_get(t, "incident", "a", &b) != 0 || strcmp(b.data, "committed") != 0)
		rc = 12;
	else if (store_ticket_get(t, "incident", "b", &b) != -ENOENT)
		rc = 13;
	else if (store_begin(s, 0, &(struct store_txn *){ NULL }) != -EROFS)
		rc = 14;
	store_abort(t);
	store_close(s);
	buf_free(&b);
	return rc;
}

static void
test_read_only_open_works_while_writer_holds_a_write_txn(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;
	int status;
	pid_t pid;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "a", "INC1", "committed");
	t = begin(f->s, 0);
	assert_int_equal(store_ticket_put(t, "incident", "a", "INC1", "uncommitted", 11), 0);
	assert_int_equal(store_ticket_put(t, "incident", "b", "INC2", "new", 3), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_reads_committed_only(f->dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(store_commit(t), 0);
	assert_str_and_free(get_ticket(f->s, "incident", "b"), "new");
}

/* Runs in the child: grows the map well past its first size. */
static int
child_grows_map(const char *dir)
{
	struct store *s = NULL;
	char *cause = NULL;
	int rc = 0;

	if (store_open(dir, 64 * 1024, 0, &s, &cause) != 0)
		return 20;
	for (int i = 0; i < 200 && rc == 0; i++)
		rc = store_write(s, write_chunk, &i) != 0 ? 21 : 0;
	store_close(s);
	return rc;
}

static void
test_reader_follows_a_map_grown_by_another_process(void **state)
{
	struct fix *f = *state;
	struct store_stat st;
	int status;
	pid_t pid;

	f->s = open_store(f->dir, 64 * 1024, 0);
	store_close(f->s);
	f->s = open_store(f->dir, 0, STORE_RDONLY);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_int_equal(st.map_size, 64 * 1024);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_grows_map(f->dir));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_chunks(f->s, 200);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_true(st.map_size > 64 * 1024);
	assert_int_equal(st.tickets, 200);
}

static int
collect_seq(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct collect *c = arg;

	buf_addf(&c->b, "%" PRIu64 ":%.*s;", seq, (int)len, (const char *)val);
	return 0;
}

static void
test_outbox_is_replayed_in_seq_order_and_seq_survives_restart(void **state)
{
	struct fix *f = *state;
	struct collect c = { .n = 0 };
	struct store_txn *t;
	uint64_t seq[12];
	struct buf b;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	for (int i = 0; i < 10; i++) {
		char v[8];

		snprintf(v, sizeof(v), "e%d", i);
		assert_int_equal(store_outbox_add(t, v, strlen(v), &seq[i]), 0);
		assert_int_equal(seq[i], (uint64_t)i + 1);
	}
	assert_int_equal(store_commit(t), 0);
	t = begin(f->s, 0);
	assert_int_equal(store_outbox_del(t, 3), 0);
	assert_int_equal(store_outbox_del(t, 3), -ENOENT);
	assert_int_equal(store_outbox_put(t, 5, "e4-retry", 8), 0);
	assert_int_equal(store_commit(t), 0);
	buf_init(&c.b);
	t = begin(f->s, 1);
	assert_int_equal(store_outbox_each(t, collect_seq, &c), 0);
	assert_string_equal(c.b.data, "1:e0;2:e1;4:e3;5:e4-retry;6:e5;7:e6;8:e7;9:e8;10:e9;");
	buf_init(&b);
	assert_int_equal(store_outbox_get(t, 5, &b), 0);
	assert_string_equal(b.data, "e4-retry");
	assert_int_equal(store_outbox_get(t, 3, &b), -ENOENT);
	store_abort(t);
	/* Drain everything, restart: numbers are never handed out twice. */
	t = begin(f->s, 0);
	for (uint64_t i = 1; i <= 10; i++)
		(void)store_outbox_del(t, i);
	assert_int_equal(store_commit(t), 0);
	store_close(f->s);
	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	assert_int_equal(store_outbox_add(t, "x", 1, &seq[10]), 0);
	assert_int_equal(seq[10], 11);
	assert_int_equal(store_commit(t), 0);
	buf_free(&b);
	buf_free(&c.b);
}

static void
test_seq_order_is_numeric_past_255(void **state)
{
	struct fix *f = *state;
	struct collect c = { .n = 0 };
	struct store_txn *t;
	uint64_t seq = 0;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(store_request_add(t, "{}", &seq), 0);
	for (uint64_t i = 1; i <= 297; i++)
		assert_int_equal(store_request_del(t, i), 0);
	assert_int_equal(store_commit(t), 0);
	buf_init(&c.b);
	t = begin(f->s, 1);
	assert_int_equal(store_request_each(t, collect_seq, &c), 0);
	store_abort(t);
	assert_string_equal(c.b.data, "298:{};299:{};300:{};");
	buf_free(&c.b);
}

static void
test_requests_queue_add_each_del(void **state)
{
	struct fix *f = *state;
	struct collect c = { .n = 0 };
	struct store_txn *t;
	uint64_t a, b;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	assert_int_equal(store_request_add(t, "{\"op\":\"resync\",\"ticket\":\"INC1\"}", &a), 0);
	assert_int_equal(store_request_add(t, "{\"op\":\"retry\"}", &b), 0);
	assert_int_equal(store_commit(t), 0);
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	t = begin(f->s, 0);
	assert_int_equal(store_request_del(t, a), 0);
	assert_int_equal(store_request_del(t, 99), -ENOENT);
	assert_int_equal(store_commit(t), 0);
	buf_init(&c.b);
	t = begin(f->s, 1);
	assert_int_equal(store_request_each(t, collect_seq, &c), 0);
	store_abort(t);
	assert_string_equal(c.b.data, "2:{\"op\":\"retry\"};");
	buf_free(&c.b);
}

static void
test_meta_put_get_del(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;
	struct buf b;

	f->s = open_store(f->dir, 0, 0);
	buf_init(&b);
	t = begin(f->s, 0);
	assert_int_equal(store_meta_put(t, "imperai.cursor", "c_42", 4), 0);
	assert_int_equal(store_meta_put(t, "imperai.cursor", "c_43", 4), 0);
	assert_int_equal(store_meta_get(t, "imperai.cursor", &b), 0);
	assert_string_equal(b.data, "c_43");
	assert_int_equal(store_meta_put(t, "empty", "", 0), 0);
	assert_int_equal(store_meta_get(t, "empty", &b), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(store_meta_del(t, "imperai.cursor"), 0);
	assert_int_equal(store_meta_get(t, "imperai.cursor", &b), -ENOENT);
	assert_int_equal(store_meta_del(t, "imperai.cursor"), -ENOENT);
	assert_int_equal(store_commit(t), 0);
	buf_free(&b);
}

static int
collect_verification(const char *id, const void *val, size_t len, void *arg)
{
	struct collect *c = arg;

	buf_addf(&c->b, "%s=%.*s;", id, (int)len, (const char *)val);
	return 0;
}

static void
test_verifications_put_get_each(void **state)
{
	struct fix *f = *state;
	struct collect c = { .n = 0 };
	struct store_txn *t;
	struct store_stat st;
	struct buf b;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	assert_int_equal(store_verification_put(t, "vr_82", "incident/b", 10), 0);
	assert_int_equal(store_verification_put(t, "vr_81", "incident/a", 10), 0);
	assert_int_equal(store_commit(t), 0);
	buf_init(&b);
	buf_init(&c.b);
	t = begin(f->s, 1);
	assert_int_equal(store_verification_get(t, "vr_81", &b), 0);
	assert_string_equal(b.data, "incident/a");
	assert_int_equal(store_verification_get(t, "vr_00", &b), -ENOENT);
	assert_int_equal(store_verification_each(t, collect_verification, &c), 0);
	assert_string_equal(c.b.data, "vr_81=incident/a;vr_82=incident/b;");
	store_abort(t);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_int_equal(st.verifications, 2);
	buf_free(&b);
	buf_free(&c.b);
}

/* Appends n events; event i (from 0, over all calls) is at time T0 + i. */
static void
append_events(struct store *s, int n)
{
	struct store_txn *t = begin(s, 0);
	uint64_t last = 0;
	char hash[65];

	if (store_audit_last(t, &last, hash) != 0)
		last = 0;
	for (int i = (int)last; i < (int)last + n; i++) {
		char *ev = xprintf("{\"ticket\":\"INC%d\",\"event\":\"outcome\",\"result\":\"passed\"}", i);
		uint64_t seq;

		assert_int_equal(store_audit_append(t, 1714557600 + i, ev, &seq), 0);
		free(ev);
	}
	assert_int_equal(store_commit(t), 0);
}

struct chain {
	char		 prev[65];
	uint64_t	 n;
};

static int
check_link(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct chain *c = arg;
	char *head = xprintf("{\"seq\":%" PRIu64 ",\"time\":%" PRIu64 ",\"prev\":\"%s\",\"event\":",
	    seq, 1714557600 + seq - 1, c->prev);

	assert_int_equal(seq, ++c->n);
	assert_true(len > strlen(head));
	assert_memory_equal(val, head, strlen(head));
	free(head);
	store_sha256_hex(val, len, c->prev);
	return 0;
}

static void
test_audit_entries_chain_by_sha256_and_verify(void **state)
{
	struct fix *f = *state;
	struct chain c = { .n = 0 };
	struct store_txn *t;
	uint64_t checked = 0, bad = 0, last = 0;
	char *cause = NULL, hash[65];

	f->s = open_store(f->dir, 0, 0);
	assert_int_equal(store_audit_verify(f->s, &checked, &bad, &cause), 0);
	assert_int_equal(checked, 0);
	append_events(f->s, 5);
	append_events(f->s, 2);
	memset(c.prev, '0', 64);
	c.prev[64] = '\0';
	t = begin(f->s, 1);
	assert_int_equal(store_audit_each(t, 1, check_link, &c), 0);
	assert_int_equal(c.n, 7);
	assert_int_equal(store_audit_last(t, &last, hash), 0);
	assert_int_equal(last, 7);
	assert_string_equal(hash, c.prev);
	store_abort(t);
	assert_int_equal(store_audit_verify(f->s, &checked, &bad, &cause), 0);
	assert_null(cause);
	assert_int_equal(checked, 7);
}

/* The chain's digests are those earlier builds stored (the hand-written
 * SHA-256 before libcrypto's): an existing state directory still verifies. */
static void
test_audit_chain_head_is_the_one_earlier_builds_wrote(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;
	uint64_t last = 0;
	char hash[65];

	f->s = open_store(f->dir, 0, 0);
	append_events(f->s, 5);
	t = begin(f->s, 1);
	assert_int_equal(store_audit_last(t, &last, hash), 0);
	store_abort(t);
	assert_int_equal(last, 5);
	assert_string_equal(hash, "25b179c17b9c4d07f96c0881c0118184dacb2805e327cc56b605dde3526b43e3");
}

static void
test_audit_append_refuses_an_event_that_is_not_a_json_object(void **state)
{
	struct fix *f = *state;
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	t = begin(f->s, 0);
	assert_int_equal(store_audit_append(t, 1, "{\"a\":1} trailing", NULL), -EINVAL);
	assert_int_equal(store_commit(t), -EINVAL);
	t = begin(f->s, 0);
	assert_int_equal(store_audit_append(t, 1, "[1,2]", NULL), -EINVAL);
	store_abort(t);
}

/* Edits the audit database behind the store's back, as a tamperer would. */
static void
raw_audit_edit(const char *dir, uint64_t seq, const char *from, const char *to, int del)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t key[8];
	MDB_val k = { 8, key }, v;

	for (int i = 0; i < 8; i++)
		key[i] = (uint8_t)(seq >> (56 - 8 * i));
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "audit", 0, &dbi), 0);
	if (del)
		assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	else {
		char *old, *p, *new;

		assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
		old = xstrndup(v.mv_data, v.mv_size);
		assert_non_null(p = strstr(old, from));
		new = xprintf("%.*s%s%s", (int)(p - old), old, to, p + strlen(from));
		v.mv_data = new;
		v.mv_size = strlen(new);
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
		free(old);
		free(new);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
assert_audit_broken_at(struct fix *f, uint64_t want_bad, const char *cause_has)
{
	uint64_t checked = 99, bad = 0;
	char *cause = NULL;

	f->s = open_store(f->dir, 0, 0);
	assert_int_equal(store_audit_verify(f->s, &checked, &bad, &cause), -EBADMSG);
	assert_int_equal(bad, want_bad);
	assert_true(checked < want_bad);
	assert_non_null(cause);
	if (strstr(cause, cause_has) == NULL)
		fail_msg("cause [%s] lacks [%s]", cause, cause_has);
	free(cause);
}

static void
test_audit_altered_entry_breaks_the_next_link(void **state)
{
	struct fix *f = *state;

	f->s = open_store(f->dir, 0, 0);
	append_events(f->s, 5);
	store_close(f->s);
	f->s = NULL;
	raw_audit_edit(f->dir, 3, "passed", "failed", 0);
	/* Entry 3 still parses; entry 4's prev no longer matches its bytes. */
	assert_audit_broken_at(f, 4, "audit entry 4");
}

static void
test_audit_entry_not_matching_its_key_is_reported_itself(void **state)
{
	struct fix *f = *state;

	f->s = open_store(f->dir, 0, 0);
	append_events(f->s, 5);
	store_close(f->s);
	f->s = NULL;
	raw_audit_edit(f->dir, 2, "\"seq\":2", "\"seq\":7", 0);
	assert_audit_broken_at(f, 2, "audit entry 2");
}

static void
test_audit_altered_last_entry_is_caught_by_the_head(void **state)
{
	struct fix *f = *state;

	f->s = open_store(f->dir, 0, 0);
	append_events(f->s, 5);
	store_close(f->s);
	f->s = NULL;
	raw_audit_edit(f->dir, 5, "passed", "failed", 0);
	assert_audit_broken_at(f, 5, "audit entry 5");
}

static void
test_audit_deleted_entry_is_detected_as_a_gap(void **state)
{
	struct fix *f = *state;

	f->s = open_store(f->dir, 0, 0);
	append_events(f->s, 5);
	store_close(f->s);
	f->s = NULL;
	raw_audit_edit(f->dir, 2, NULL, NULL, 1);
	assert_audit_broken_at(f, 2, "audit entry 2");
}

static void
test_audit_deleted_first_and_last_entries_are_detected(void **state)
{
	struct fix *f = *state;

	f->s = open_store(f->dir, 0, 0);
	append_events(f->s, 5);
	store_close(f->s);
	f->s = NULL;
	raw_audit_edit(f->dir, 5, NULL, NULL, 1);
	assert_audit_broken_at(f, 5, "audit entries 5 to 5");
	store_close(f->s);
	f->s = NULL;
	raw_audit_edit(f->dir, 1, NULL, NULL, 1);
	assert_audit_broken_at(f, 1, "audit entry 1");
}

static void
test_stat_counts_entries(void **state)
{
	struct fix *f = *state;
	struct store_stat st;
	struct store_txn *t;

	f->s = open_store(f->dir, 0, 0);
	put_ticket(f->s, "incident", "a", "INC1", "x");
	put_ticket(f->s, "incident", "b", "INC2", "x");
	append_events(f->s, 3);
	t = begin(f->s, 0);
	assert_int_equal(store_outbox_add(t, "e", 1, NULL), 0);
	assert_int_equal(store_request_add(t, "{}", NULL), 0);
	assert_int_equal(store_commit(t), 0);
	assert_int_equal(store_stat(f->s, &st), 0);
	assert_int_equal(st.tickets, 2);
	assert_int_equal(st.audit, 3);
	assert_int_equal(st.outbox, 1);
	assert_int_equal(st.requests, 1);
	assert_int_equal(st.verifications, 0);
	assert_true(st.used_bytes > 0 && st.used_bytes <= st.map_size);
}

static void
test_strerror_explains_store_codes(void **state)
{
	assert_non_null(strstr(store_strerror(-ENOSPC), "full"));
	assert_non_null(strstr(store_strerror(-EPROTO), "schema"));
	assert_non_null(strstr(store_strerror(-EBUSY), "another writer"));
	assert_string_equal(store_strerror(-ENOENT), "no such entry");
	assert_string_equal(store_strerror(-EACCES), strerror(EACCES));
}

static void
assert_sha256(const void *data, size_t len, const char *want)
{
	char hex[65];

	store_sha256_hex(data, len, hex);
	assert_string_equal(hex, want);
}

static void
test_sha256_matches_fips_vectors(void **state)
{
	static const char *const m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	char *million = xmalloc(1000000);
	uint8_t raw[32];

	assert_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_sha256(m448, strlen(m448),
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	memset(million, 'a', 1000000);
	assert_sha256(million, 1000000,
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	/* Lengths around the padding boundary (55, 56, 64 bytes). */
	assert_sha256(million, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
	assert_sha256(million, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
	assert_sha256(million, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
	store_sha256("abc", 3, raw);
	assert_int_equal(raw[0], 0xba);
	assert_int_equal(raw[31], 0xad);
	free(million);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fix_setup, fix_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_creates_private_directory_and_state_persists),
		T(test_ticket_put_get_del_keeps_by_number_in_step),
		T(test_ticket_number_change_replaces_stale_mapping),
		T(test_ticket_each_walks_in_key_order_and_stops_on_request),
		T(test_aborted_write_leaves_previous_state),
		T(test_write_callback_error_aborts_everything),
		T(test_failed_operation_is_sticky_and_commit_refuses),
		T(test_read_only_transaction_refuses_writes),
		T(test_full_map_grows_and_keeps_every_record),
		T(test_transaction_larger_than_twice_the_map_fails_cleanly),
		T(test_newer_schema_is_refused_with_a_clear_cause),
		T(test_second_writer_is_refused_naming_the_pid),
		T(test_read_only_open_of_missing_state_says_so),
		T(test_read_only_open_works_while_writer_holds_a_write_txn),
		T(test_reader_follows_a_map_grown_by_another_process),
		T(test_outbox_is_replayed_in_seq_order_and_seq_survives_restart),
		T(test_seq_order_is_numeric_past_255),
		T(test_requests_queue_add_each_del),
		T(test_meta_put_get_del),
		T(test_verifications_put_get_each),
		T(test_audit_entries_chain_by_sha256_and_verify),
		T(test_audit_chain_head_is_the_one_earlier_builds_wrote),
		T(test_audit_append_refuses_an_event_that_is_not_a_json_object),
		T(test_audit_altered_entry_breaks_the_next_link),
		T(test_audit_entry_not_matching_its_key_is_reported_itself),
		T(test_audit_altered_last_entry_is_caught_by_the_head),
		T(test_audit_deleted_entry_is_detected_as_a_gap),
		T(test_audit_deleted_first_and_last_entries_are_detected),
		T(test_stat_counts_entries),
		T(test_strerror_explains_store_codes),
		T(test_sha256_matches_fips_vectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
