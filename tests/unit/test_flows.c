/* Tests of lib/flows.c: the policy file, matching and templates (the
 * encoded queries themselves: test_query.c). */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "flows.h"
#include "record.h"
#include "refs.h"
#include "snow.h"
#include "testrec.h"
#include "util.h"

static void
dump(const struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  | %s\n", e->msg[i]);
}

static const char *
find_msg(const struct errlist *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], needle) != NULL)
			return e->msg[i];
	return NULL;
}

static void
assert_msg(const struct errlist *e, const char *needle)
{
	if (find_msg(e, needle) == NULL) {
		fprintf(stderr, "no message contains \"%s\"; got:\n", needle);
		dump(e);
		fail();
	}
}

static struct flows *
parse_ok(const char *text)
{
	struct flows *f = NULL;
	struct errlist errs = { NULL, 0 };

	if (flows_parse(text, strlen(text), "flows.yaml", &f, &errs) != 0) {
		dump(&errs);
		fail();
	}
	assert_int_equal(errs.n, 0);
	assert_non_null(f);
	return f;
}

/* Parses text that must fail; returns the messages. */
static struct errlist
parse_bad(const char *text)
{
	struct flows *f = NULL;
	struct errlist errs = { NULL, 0 };

	assert_int_equal(flows_parse(text, strlen(text), "flows.yaml", &f, &errs), -EINVAL);
	assert_null(f);
	assert_true(errs.n > 0);
	return errs;
}

/* Asserts that text fails with exactly this one message. */
static void
assert_one_error(const char *text, const char *want)
{
	struct errlist errs = parse_bad(text);

	if (errs.n != 1 || strcmp(errs.msg[0], want) != 0) {
		fprintf(stderr, "want: %s\ngot:\n", want);
		dump(&errs);
		fail();
	}
	errlist_free(&errs);
}

static char *
read_all(const char *path)
{
	FILE *fp = fopen(path, "r");
	struct buf b;
	char chunk[4096];
	size_t n;

	assert_non_null(fp);
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_add(&b, chunk, n);
	fclose(fp);
	return buf_detach(&b);
}

/* The "# expect: TEXT" lines of a data file; NULL-terminated. */
static char **
data_expects(const char *text, size_t *n)
{
	char **v = NULL;
	const char *p = text;

	*n = 0;
	while ((p = strstr(p, "# expect: ")) != NULL) {
		const char *e = strchr(p, '\n');
		p += strlen("# expect: ");
		v = xreallocarray(v, *n + 2, sizeof(*v));
		v[(*n)++] = xstrndup(p, e ? (size_t)(e - p) : strlen(p));
		v[*n] = NULL;
	}
	return v;
}

/* Each expectation is met by one message, and no message is left over. */
static void
data_check(const char *file, char **expects, size_t nexp, const struct errlist *errs)
{
	for (size_t i = 0; i < nexp; i++)
		if (find_msg(errs, expects[i]) == NULL) {
			dump(errs);
			fail_msg("%s: no message contains \"%s\"", file, expects[i]);
		}
	if (errs->n != nexp) {
		dump(errs);
		fail_msg("%s: %zu messages for %zu expectations", file, errs->n, nexp);
	}
	for (size_t i = 0; i < nexp; i++)
		free(expects[i]);
	free(expects);
}

static const char good[] =
    "flows:\n"
    "  - name: password-reset\n"
    "    match:\n"
    "      table: incident\n"
    "      categories: [password_reset]\n"
    "    action: password_reset\n"
    "    automated: true\n"
    "    close: true\n"
    "    close_code: \"Solution provided\"\n"
    "    close_notes: \"Reset for {requester} ({number}), {verification_id}, {action}.\"\n"
    "    max_age: 2d\n"
    "    on_fail:\n"
    "      assignment_group: \"Service Desk Security\"\n"
    "      priority: 2\n"
    "      work_note: \"High risk detected - Reject this request\"\n"
    "    retry: { on: [timed_out], max: 3 }\n"
    "  - name: access\n"
    "    match: { table: incident, subcategories: [vpn, email], query: \"priority<=2\" }\n";

static void
test_valid_file_loads_every_key(void **state)
{
	struct flows *f = parse_ok(good);
	const struct flow *a, *b;

	(void)state;
	assert_int_equal(f->n, 2);
	a = &f->v[0];
	assert_string_equal(a->name, "password-reset");
	assert_int_equal(a->line, 2);
	assert_string_equal(a->table, "incident");
	assert_int_equal(a->ncategories, 1);
	assert_string_equal(a->categories[0], "password_reset");
	assert_null(a->query);
	assert_null(a->compiled);
	assert_string_equal(a->action, "password_reset");
	assert_true(a->automated);
	assert_true(a->close);
	assert_string_equal(a->close_code, "Solution provided");
	assert_int_equal(a->max_age, 2 * 86400);
	assert_string_equal(a->on_fail.assignment_group, "Service Desk Security");
	assert_int_equal(a->on_fail.priority, 2);
	assert_string_equal(a->on_fail.work_note, "High risk detected - Reject this request");
	assert_int_equal(a->retry.on, FLOW_RETRY_TIMED_OUT);
	assert_int_equal(a->retry.max, 3);
	b = &f->v[1];
	assert_int_equal(b->line, 17);
	/* the default: timed out and not enough questions, two more attempts */
	assert_int_equal(b->retry.on, FLOW_RETRY_TIMED_OUT | FLOW_RETRY_NOT_ENOUGH_QUESTIONS);
	assert_int_equal(b->retry.max, 2);
	assert_int_equal(b->nsubcategories, 2);
	assert_string_equal(b->subcategories[1], "email");
	assert_string_equal(b->query, "priority<=2");
	assert_non_null(b->compiled);
	assert_string_equal(b->action, "none");
	assert_false(b->automated);
	assert_false(b->close);
	assert_int_equal(b->max_age, 3600);
	assert_null(b->on_fail.assignment_group);
	assert_int_equal(b->on_fail.priority, 0);
	assert_ptr_equal(flows_find(f, "access"), b);
	assert_null(flows_find(f, "nope"));
	flows_free(f);
}

static void
test_shipped_flows_file_loads(void **state)
{
	const char *top = getenv("top_srcdir");
	struct flows *f = NULL;
	struct errlist errs = { NULL, 0 };
	const struct flow *pr, *aa, *ritm;
	char *path;

	(void)state;
	if (top == NULL)
		skip();
	path = xprintf("%s/etc/flows.yaml", top);
	if (flows_load(path, &f, &errs) != 0)
		dump(&errs);
	assert_non_null(f);
	assert_int_equal(f->n, 3);
	pr = flows_find(f, "password-reset");
	aa = flows_find(f, "account-access");
	ritm = flows_find(f, "ritm-password-reset");
	assert_ptr_equal(pr, &f->v[0]);
	assert_string_equal(pr->table, "incident");
	assert_string_equal(pr->categories[0], "password_reset");
	assert_string_equal(pr->action, "password_reset");
	assert_true(pr->automated && pr->close);
	assert_string_equal(pr->close_code, "Solution provided");
	assert_non_null(strstr(pr->close_notes, "{verification_id}"));
	assert_string_equal(pr->on_fail.assignment_group, "Service Desk Security");
	assert_int_equal(pr->on_fail.priority, 2);
	assert_string_equal(pr->on_fail.work_note, "High risk detected - Reject this request");
	assert_string_equal(aa->categories[0], "account_access");
	assert_string_equal(aa->action, "none");
	assert_false(aa->automated);
	assert_string_equal(ritm->table, "sc_req_item");
	assert_string_equal(ritm->query, "short_descriptionLIKEpassword");
	assert_true(ritm->automated);
	assert_false(ritm->close);
	flows_free(f);
	free(path);
}

static void
test_categories_not_a_list_names_line_and_column(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match:\n"
	    "      table: incident\n"
	    "      categories: password_reset\n",
	    "flows.yaml:5:19: flows[0].match.categories: expected a list of strings, like [a, b]");
}

static void
test_unknown_keys_are_errors_at_every_level(void **state)
{
	struct errlist errs;

	(void)state;
	errs = parse_bad(
	    "flows:\n"
	    "  - name: a\n"
	    "    colour: red\n"
	    "    match: { table: incident, categories: [x], categroy: y }\n"
	    "    on_fail: { priority: 1, notes: x }\n"
	    "extra: 1\n");
	assert_int_equal(errs.n, 4);
	assert_msg(&errs, "flows.yaml:3:5: flows[0].colour: unknown key; known keys: name, match,");
	assert_msg(&errs, "flows.yaml:4:48: flows[0].match.categroy: unknown key");
	assert_msg(&errs, "flows.yaml:5:29: flows[0].on_fail.notes: unknown key");
	assert_msg(&errs, "flows.yaml:6:1: extra: unknown key; the top level has only flows:");
	errlist_free(&errs);
}

static void
test_missing_required_keys_are_errors_at_the_flow(void **state)
{
	struct errlist errs;

	(void)state;
	errs = parse_bad(
	    "flows:\n"
	    "  - action: none\n"
	    "  - name: b\n"
	    "    match: { categories: [x] }\n"
	    "  - name: c\n"
	    "    match: { table: incident }\n");
	assert_msg(&errs, "flows.yaml:2:5: flows[0]: name is required");
	assert_msg(&errs, "flows.yaml:2:5: flows[0]: match is required");
	assert_msg(&errs, "flows.yaml:4:12: flows[1].match: table is required");
	assert_msg(&errs, "flows.yaml:6:12: flows[2].match: give categories, subcategories or query");
	assert_int_equal(errs.n, 4);
	errlist_free(&errs);
}

static void
test_missing_flows_key_is_an_error(void **state)
{
	(void)state;
	assert_one_error("# nothing\n",
	    "flows.yaml:1:1: flows: required key missing; see imperai-snow-flows(5)");
	assert_one_error("- a\n", "flows.yaml:1:1: expected a mapping with the key flows:");
	assert_one_error("flows: {a: 1}\n", "flows.yaml:1:8: flows: expected a list of flows");
}

static void
test_empty_flows_list_loads(void **state)
{
	struct flows *f = parse_ok("flows: []\n");

	(void)state;
	assert_int_equal(f->n, 0);
	assert_null(flows_match(f, "incident", NULL));
	flows_free(f);
}

static void
test_duplicate_flow_name_is_an_error(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [y] }\n",
	    "flows.yaml:4:11: flows[1].name: flow \"a\" is defined twice (first at line 2); "
	    "names must be unique");
}

static void
test_duplicate_key_is_an_error(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    name: b\n",
	    "flows.yaml:4:5: flows[0].name: given twice (first at line 2)");
}

static void
test_invalid_names_and_tokens_are_errors(void **state)
{
	struct errlist errs;

	(void)state;
	errs = parse_bad(
	    "flows:\n"
	    "  - name: \"a b\"\n"
	    "    match: { table: Incident, categories: [x] }\n"
	    "    action: Reset-Password\n");
	assert_msg(&errs, "flows.yaml:2:11: flows[0].name: must be letters, digits");
	assert_msg(&errs, "flows.yaml:3:21: flows[0].match.table: must be a table name");
	assert_msg(&errs, "flows.yaml:4:13: flows[0].action: must be an action name");
	errlist_free(&errs);
}

static void
test_automated_needs_an_action(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    automated: true\n"
	    "    close_code: x\n"
	    "    close_notes: y\n",
	    "flows.yaml:4:16: flows[0].automated: needs an action: automated resolution happens "
	    "only when the action has completed");
}

static void
test_close_needs_automated(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    action: password_reset\n"
	    "    close: true\n",
	    "flows.yaml:5:12: flows[0].close: needs automated: true");
}

static void
test_automated_needs_close_code_and_notes(void **state)
{
	struct errlist errs;

	(void)state;
	errs = parse_bad(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    action: password_reset\n"
	    "    automated: yes\n"
	    "  - name: b\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    action: password_reset\n"
	    "    automated: true\n");
	assert_msg(&errs, "flows.yaml:5:16: flows[0].automated: expected true or false");
	assert_msg(&errs, "flows.yaml:6:5: flows[1]: close_code is required with automated: true");
	assert_msg(&errs, "flows.yaml:6:5: flows[1]: close_notes is required with automated: true");
	assert_int_equal(errs.n, 3);
	errlist_free(&errs);
}

static void
test_unknown_placeholder_in_close_notes_is_an_error(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    action: password_reset\n"
	    "    automated: true\n"
	    "    close_code: done\n"
	    "    close_notes: \"Reset for {caller} in {number}\"\n",
	    "flows.yaml:7:18: flows[0].close_notes: unknown placeholder {caller}; use {number}, "
	    "{requester}, {verification_id} or {action}");
}

static void
test_max_age_must_be_a_duration_from_1m_to_30d(void **state)
{
	struct errlist errs;
	struct flows *f;

	(void)state;
	errs = parse_bad(
	    "flows:\n"
	    "  - { name: a, match: { table: t, categories: [x] }, max_age: 59s }\n"
	    "  - { name: b, match: { table: t, categories: [x] }, max_age: 31d }\n"
	    "  - { name: c, match: { table: t, categories: [x] }, max_age: soon }\n"
	    "  - { name: d, match: { table: t, categories: [x] }, max_age: \"1h\" }\n");
	assert_int_equal(errs.n, 4);
	assert_msg(&errs, "flows.yaml:2:63: flows[0].max_age: expected a duration from 1m to 30d");
	assert_msg(&errs, "flows.yaml:3:63: flows[1].max_age:");
	assert_msg(&errs, "flows.yaml:4:63: flows[2].max_age:");
	assert_msg(&errs, "flows.yaml:5:63: flows[3].max_age:");
	errlist_free(&errs);
	f = parse_ok("flows:\n"
	    "  - { name: a, match: { table: t, categories: [x] }, max_age: 1m }\n"
	    "  - { name: b, match: { table: t, categories: [x] }, max_age: 30d }\n"
	    "  - { name: c, match: { table: t, categories: [x] }, max_age: 5400 }\n");
	assert_int_equal(f->v[0].max_age, 60);
	assert_int_equal(f->v[1].max_age, 30 * 86400);
	assert_int_equal(f->v[2].max_age, 5400);
	flows_free(f);
}

static void
test_on_fail_priority_must_be_1_to_5(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    on_fail:\n"
	    "      priority: 6\n",
	    "flows.yaml:5:17: flows[0].on_fail.priority: expected a priority from 1 to 5");
}

static void
test_retry_takes_only_unfinished_outcomes_and_0_to_5(void **state)
{
	struct flows *f;

	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    retry:\n"
	    "      on: [timed_out, failed]\n",
	    "flows.yaml:5:23: flows[0].retry.on: failed never starts a new attempt: a new link "
	    "after a failure is what an impersonator wants (see on_fail)");
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    retry: { on: [expired] }\n",
	    "flows.yaml:4:19: flows[0].retry.on: expected timed_out or not_enough_questions");
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    retry: { max: 6 }\n",
	    "flows.yaml:4:19: flows[0].retry.max: expected a number of new attempts from 0 to 5");
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    retry: { tries: 1 }\n",
	    "flows.yaml:4:14: flows[0].retry.tries: unknown key; known keys: on, max");
	f = parse_ok(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: [x] }\n"
	    "    retry: { on: [], max: 0 }\n");
	assert_int_equal(f->v[0].retry.on, 0);
	assert_int_equal(f->v[0].retry.max, 0);
	flows_free(f);
}

static void
test_bad_query_names_the_position_in_the_query(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, query: \"active=true^priorityFOO2\" }\n",
	    "flows.yaml:3:38: flows[0].match.query: position 21: unknown operator near \"FOO2\"");
}

static void
test_yaml_syntax_error_names_line_and_column(void **state)
{
	struct errlist errs;

	(void)state;
	errs = parse_bad("flows:\n  - name: a\n    match: [table: incident\n");
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msg[0], "flows.yaml:4:1: YAML: "));
	errlist_free(&errs);
}

static void
test_all_errors_are_collected(void **state)
{
	struct errlist errs;

	(void)state;
	errs = parse_bad(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: { table: incident, categories: x }\n"
	    "    on_fail: { priority: 0 }\n"
	    "    max_age: forever\n");
	assert_int_equal(errs.n, 3);
	errlist_free(&errs);
}

static void
test_anchors_and_aliases_are_refused(void **state)
{
	(void)state;
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: &m { table: incident, categories: [x] }\n",
	    "flows.yaml:3:12: YAML anchors (&name) are not supported; write each value out");
	assert_one_error(
	    "x: &a [1]\n",
	    "flows.yaml:1:4: YAML anchors (&name) are not supported; write each value out");
	assert_one_error(
	    "flows:\n"
	    "  - name: a\n"
	    "    match: *m\n",
	    "flows.yaml:3:12: YAML aliases (*name) are not supported; write the value out");
}

static void
test_tags_and_second_documents_are_refused(void **state)
{
	(void)state;
	assert_one_error("flows: !!seq []\n",
	    "flows.yaml:1:8: YAML tags (!tag) are not supported");
	assert_one_error("flows: []\n---\nflows: []\n",
	    "flows.yaml:2:1: only one YAML document is allowed");
}

static void
test_deep_nesting_is_refused(void **state)
{
	struct buf b;
	struct errlist errs;

	(void)state;
	buf_init(&b);
	buf_adds(&b, "flows: ");
	for (int i = 0; i < 10000; i++)
		buf_addc(&b, '[');
	errs = parse_bad(b.data);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msg[0], "nested too deeply"));
	errlist_free(&errs);
	buf_free(&b);
}

static void
test_file_over_1_mib_is_refused(void **state)
{
	char dir[] = "/tmp/test_flows.XXXXXX";
	struct flows *f = NULL;
	struct errlist errs = { NULL, 0 };
	char *path, *big = xmalloc(1024 * 1024 + 2);
	FILE *fp;

	(void)state;
	memset(big, '#', 1024 * 1024 + 1);
	big[1024 * 1024 + 1] = '\0';
	assert_int_equal(flows_parse(big, strlen(big), "flows.yaml", &f, &errs), -EINVAL);
	assert_msg(&errs, "flows.yaml:1:1: larger than 1 MiB");
	errlist_free(&errs);
	assert_non_null(mkdtemp(dir));
	path = xprintf("%s/flows.yaml", dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(big, fp);
	fclose(fp);
	assert_int_equal(flows_load(path, &f, &errs), -EFBIG);
	assert_null(f);
	assert_msg(&errs, "/flows.yaml:1:1: not a regular file of at most 1 MiB");
	errlist_free(&errs);
	unlink(path);
	rmdir(dir);
	free(path);
	free(big);
}

static void
test_missing_file_is_an_error_with_errno(void **state)
{
	struct flows *f = NULL;
	struct errlist errs = { NULL, 0 };

	(void)state;
	assert_int_equal(flows_load("/nonexistent/flows.yaml", &f, &errs), -ENOENT);
	assert_msg(&errs, "/nonexistent/flows.yaml: cannot read: No such file or directory");
	errlist_free(&errs);
}

static const char ordered[] =
    "flows:\n"
    "  - name: vip-password\n"
    "    match: { table: incident, categories: [password_reset], query: \"priority=1\" }\n"
    "  - name: password\n"
    "    match: { table: incident, categories: [password_reset, account_access] }\n"
    "  - name: mfa\n"
    "    match: { table: incident, subcategories: [mfa] }\n"
    "  - name: vpn-password\n"
    "    match: { table: incident, categories: [network], subcategories: [vpn] }\n"
    "  - name: ritm\n"
    "    match: { table: sc_req_item, query: \"short_descriptionLIKEpassword\" }\n";

static const char *
match_name(const struct flows *f, const char *table, struct snow_record *r)
{
	const struct flow *m = flows_match(f, table, r);

	rec_free(r);
	return m ? m->name : "(none)";
}

static void
test_first_matching_flow_in_file_order_wins(void **state)
{
	struct flows *f = parse_ok(ordered);

	(void)state;
	assert_string_equal(match_name(f, "incident",
	    rec("category", "password_reset", "priority", "1", NULL)), "vip-password");
	assert_string_equal(match_name(f, "incident",
	    rec("category", "password_reset", "priority", "3", NULL)), "password");
	/* both "password" and "mfa" match: the earlier one wins */
	assert_string_equal(match_name(f, "incident",
	    rec("category", "account_access", "subcategory", "mfa", NULL)), "password");
	flows_free(f);
}

static void
test_categories_subcategories_and_query_must_all_hold(void **state)
{
	struct flows *f = parse_ok(ordered);

	(void)state;
	assert_string_equal(match_name(f, "incident",
	    rec("category", "hardware", "subcategory", "mfa", NULL)), "mfa");
	assert_string_equal(match_name(f, "incident",
	    rec("category", "network", "subcategory", "vpn", NULL)), "vpn-password");
	assert_string_equal(match_name(f, "incident",
	    rec("category", "network", "subcategory", "wifi", NULL)), "(none)");
	assert_string_equal(match_name(f, "incident",
	    rec("category", "Password_Reset", NULL)), "(none)");
	assert_string_equal(match_name(f, "incident", rec("priority", "1", NULL)), "(none)");
	assert_string_equal(match_name(f, "sc_req_item",
	    rec("short_description", "forgot my password", NULL)), "ritm");
	assert_string_equal(match_name(f, "sc_req_item",
	    rec("short_description", "new laptop", "category", "password_reset", NULL)), "(none)");
	assert_string_equal(match_name(f, "problem",
	    rec("category", "password_reset", NULL)), "(none)");
	flows_free(f);
}

static void
test_fields_lists_what_the_flows_of_a_table_read(void **state)
{
	struct flows *f = parse_ok(ordered);
	char **names = NULL;
	size_t n = 0;

	(void)state;
	flows_fields(f, "incident", &names, &n);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "category");
	assert_string_equal(names[1], "priority");
	assert_string_equal(names[2], "subcategory");
	flows_fields(f, "sc_req_item", &names, &n);
	assert_int_equal(n, 4);
	assert_string_equal(names[3], "short_description");
	flows_fields(f, "incident", &names, &n);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	flows_free(f);
}

static void
test_reference_by_name_resolves_to_one_groups_sys_id_or_is_an_error(void **state)
{
	struct flows *f = parse_ok(
	    "flows:\n"
	    "  - name: reset\n"
	    "    match: { table: incident, categories: [password_reset] }\n"
	    "    on_fail:\n"
	    "      assignment_group: \"Service Desk Security\"\n");
	struct snow_list l = { 0 };
	struct errlist errs = { NULL, 0 };
	struct flow *fl = &f->v[0];

	(void)state;
	assert_int_equal(refs_apply(f, fl, &l, &errs), -EINVAL);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msg[0], "flows.yaml:5:25: flows[reset].on_fail.assignment_group: "
	    "\"Service Desk Security\" matches no group (by sys_id or name) in sys_user_group: "
	    "give the group's exact name or its sys_id");
	errlist_free(&errs);
	l.v = xcalloc(2, sizeof(*l.v));
	l.n = 2;
	assert_int_equal(refs_apply(f, fl, &l, &errs), -EINVAL);
	assert_non_null(strstr(errs.msg[0], "matches several groups"));
	errlist_free(&errs);
	l.n = 1;
	snprintf(l.v[0].sys_id, sizeof(l.v[0].sys_id), "%s", "0123456789abcdef0123456789abcdef");
	snow_record_set(&l.v[0], "name", "Service Desk Security");
	assert_int_equal(refs_apply(f, fl, &l, &errs), 0);
	assert_string_equal(fl->on_fail.assignment_group, "0123456789abcdef0123456789abcdef");
	assert_string_equal(fl->on_fail.assignment_group_name, "Service Desk Security");
	l.n = 2;
	snow_list_free(&l);
	flows_free(f);
}

static void
test_templates_expand_every_placeholder(void **state)
{
	char *s;

	(void)state;
	s = flows_expand("{number}: {requester} verified ({verification_id}), {action} done.",
	    "INC0010001", "Jane Doe", "vr_81", "password_reset");
	assert_string_equal(s, "INC0010001: Jane Doe verified (vr_81), password_reset done.");
	free(s);
	s = flows_expand("{number}{number} {other} {} {num", "X", NULL, NULL, NULL);
	assert_string_equal(s, "XX {other} {} {num");
	free(s);
	s = flows_expand("by {requester}.", "X", NULL, "v", "a");
	assert_string_equal(s, "by (unknown requester).");
	free(s);
	s = flows_expand("by {requester} after {verification_id}", "X", "", "", "a");
	assert_string_equal(s, "by (unknown requester) after (no verification ID)");
	free(s);
}

static void
test_data_files_give_exactly_the_expected_errors(void **state)
{
	const char *top = getenv("top_srcdir");
	char *dir, *cmd;
	char line[4096];
	FILE *ls;
	int files = 0;

	(void)state;
	if (top == NULL)
		skip();
	dir = xprintf("%s/tests/data/flows", top);
	cmd = xprintf("ls '%s' | grep '\\.yaml$'", dir);
	ls = popen(cmd, "r");
	assert_non_null(ls);
	while (fgets(line, sizeof(line), ls) != NULL) {
		char *path, *text, **exp;
		size_t nexp;
		struct flows *f = NULL;
		struct errlist errs = { NULL, 0 };

		line[strcspn(line, "\n")] = '\0';
		path = xprintf("%s/%s", dir, line);
		text = read_all(path);
		exp = data_expects(text, &nexp);
		flows_parse(text, strlen(text), "flows.yaml", &f, &errs);
		assert_true(nexp == 0 ? f != NULL : f == NULL);
		data_check(line, exp, nexp, &errs);
		flows_free(f);
		errlist_free(&errs);
		free(text);
		free(path);
		files++;
	}
	pclose(ls);
	assert_true(files >= 4);
	free(cmd);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_file_loads_every_key),
		cmocka_unit_test(test_shipped_flows_file_loads),
		cmocka_unit_test(test_categories_not_a_list_names_line_and_column),
		cmocka_unit_test(test_unknown_keys_are_errors_at_every_level),
		cmocka_unit_test(test_missing_required_keys_are_errors_at_the_flow),
		cmocka_unit_test(test_missing_flows_key_is_an_error),
		cmocka_unit_test(test_empty_flows_list_loads),
		cmocka_unit_test(test_duplicate_flow_name_is_an_error),
		cmocka_unit_test(test_duplicate_key_is_an_error),
		cmocka_unit_test(test_invalid_names_and_tokens_are_errors),
		cmocka_unit_test(test_automated_needs_an_action),
		cmocka_unit_test(test_close_needs_automated),
		cmocka_unit_test(test_retry_takes_only_unfinished_outcomes_and_0_to_5),
		cmocka_unit_test(test_automated_needs_close_code_and_notes),
		cmocka_unit_test(test_unknown_placeholder_in_close_notes_is_an_error),
		cmocka_unit_test(test_max_age_must_be_a_duration_from_1m_to_30d),
		cmocka_unit_test(test_on_fail_priority_must_be_1_to_5),
		cmocka_unit_test(test_bad_query_names_the_position_in_the_query),
		cmocka_unit_test(test_yaml_syntax_error_names_line_and_column),
		cmocka_unit_test(test_all_errors_are_collected),
		cmocka_unit_test(test_anchors_and_aliases_are_refused),
		cmocka_unit_test(test_tags_and_second_documents_are_refused),
		cmocka_unit_test(test_deep_nesting_is_refused),
		cmocka_unit_test(test_file_over_1_mib_is_refused),
		cmocka_unit_test(test_missing_file_is_an_error_with_errno),
		cmocka_unit_test(test_first_matching_flow_in_file_order_wins),
		cmocka_unit_test(test_categories_subcategories_and_query_must_all_hold),
		cmocka_unit_test(test_fields_lists_what_the_flows_of_a_table_read),
		cmocka_unit_test(test_templates_expand_every_placeholder),
		cmocka_unit_test(test_reference_by_name_resolves_to_one_groups_sys_id_or_is_an_error),
		cmocka_unit_test(test_data_files_give_exactly_the_expected_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
