/* Tests of lib/query.c: ServiceNow encoded queries compiled and evaluated
 * locally on records. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "query.h"
#include "record.h"
#include "testrec.h"
#include "util.h"

/* Compiles q and evaluates it on r (which it frees). */
static int
ev(const char *q, struct snow_record *r)
{
	struct query *c = NULL;
	char *cause = NULL;
	int m;

	if (query_compile(q, &c, &cause) != 0)
		fail_msg("%s: %s", q, cause);
	m = query_eval(c, r);
	query_free(c);
	rec_free(r);
	return m;
}

static void
test_query_caret_or_binds_to_the_previous_term(void **state)
{
	const char *q = "active=true^priority=1^ORpriority=2";

	(void)state;
	/* A^B^ORC = A AND (B OR C) */
	assert_true(ev(q, rec("active", "true", "priority", "2", NULL)));
	assert_true(ev(q, rec("active", "true", "priority", "1", NULL)));
	assert_false(ev(q, rec("active", "false", "priority", "1", NULL)));
	assert_false(ev(q, rec("active", "true", "priority", "3", NULL)));
	assert_true(ev("a=1^ORb=1^c=1", rec("a", "0", "b", "1", "c", "1", NULL)));
	assert_false(ev("a=1^ORb=1^c=1", rec("a", "1", "b", "1", "c", "0", NULL)));
}

static void
test_query_nq_is_a_top_level_or_of_groups(void **state)
{
	const char *q = "active=true^priority=1^NQactive=false^category=hardware";

	(void)state;
	assert_true(ev(q, rec("active", "true", "priority", "1", NULL)));
	assert_true(ev(q, rec("active", "false", "category", "hardware", NULL)));
	assert_false(ev(q, rec("active", "true", "category", "hardware", NULL)));
	assert_false(ev(q, rec("active", "false", "priority", "1", NULL)));
}

static void
test_query_every_operator(void **state)
{
	(void)state;
	assert_true(ev("s=abc", rec("s", "abc", NULL)));
	assert_false(ev("s=abc", rec("s", "ABC", NULL)));
	assert_true(ev("s!=abc", rec("s", "abd", NULL)));
	assert_false(ev("s!=abc", rec("s", "abc", NULL)));
	assert_true(ev("p<10", rec("p", "9", NULL)));
	assert_false(ev("p<10", rec("p", "10", NULL)));
	assert_true(ev("p<=10", rec("p", "10", NULL)));
	assert_false(ev("p<=10", rec("p", "11", NULL)));
	assert_true(ev("p>10", rec("p", "11", NULL)));
	assert_false(ev("p>10", rec("p", "10", NULL)));
	assert_true(ev("p>=-3", rec("p", "-3", NULL)));
	assert_false(ev("p>=-3", rec("p", "-4", NULL)));
	assert_true(ev("categoryINnetwork,password_reset", rec("category", "password_reset", NULL)));
	assert_false(ev("categoryINnetwork,password_reset", rec("category", "password", NULL)));
	assert_true(ev("categoryNOT INnetwork,hardware", rec("category", "software", NULL)));
	assert_false(ev("categoryNOT INnetwork,hardware", rec("category", "hardware", NULL)));
	assert_true(ev("short_descriptionLIKEpass", rec("short_description", "my password", NULL)));
	assert_false(ev("short_descriptionLIKEPass", rec("short_description", "my password", NULL)));
	assert_true(ev("short_descriptionNOT LIKEvpn", rec("short_description", "wifi", NULL)));
	assert_false(ev("short_descriptionNOTLIKEvpn", rec("short_description", "vpn down", NULL)));
	assert_true(ev("numberSTARTSWITHINC", rec("number", "INC0010001", NULL)));
	assert_false(ev("numberSTARTSWITHRITM", rec("number", "INC0010001", NULL)));
	assert_true(ev("numberENDSWITH001", rec("number", "INC0010001", NULL)));
	assert_false(ev("numberENDSWITH002", rec("number", "INC0010001", NULL)));
	assert_false(ev("numberENDSWITHINC0010001x", rec("number", "INC0010001", NULL)));
	assert_true(ev("assigned_toISEMPTY", rec("assigned_to", "", NULL)));
	assert_true(ev("assigned_toISEMPTY", rec("other", "x", NULL)));
	assert_false(ev("assigned_toISEMPTY", rec("assigned_to", "abc", NULL)));
	assert_true(ev("assigned_toISNOTEMPTY", rec("assigned_to", "abc", NULL)));
	assert_false(ev("assigned_toISNOTEMPTY", rec("assigned_to", "", NULL)));
	assert_true(ev("priorityBETWEEN1@3", rec("priority", "3", NULL)));
	assert_true(ev("priorityBETWEEN1@3", rec("priority", "1", NULL)));
	assert_false(ev("priorityBETWEEN1@3", rec("priority", "4", NULL)));
	assert_false(ev("priorityBETWEEN2@3", rec("priority", "10", NULL)));
}

static void
test_query_reads_sys_id_from_the_record_header(void **state)
{
	struct snow_record *r = rec("number", "INC0010001", NULL);

	(void)state;
	strcpy(r->sys_id, "46d44a5d2f1e3010a3c1f37d2799b6a1");
	assert_true(ev("sys_id>46d44a5d2f1e3010a3c1f37d2799b6a0", r));
}

static void
test_query_compares_numbers_numerically_and_text_bytewise(void **state)
{
	(void)state;
	assert_true(ev("sys_mod_count>9", rec("sys_mod_count", "10", NULL)));
	assert_true(ev("v>9", rec("v", "9a", NULL)));	/* "9a" > "9" as text */
	assert_false(ev("v>a", rec("v", "10", NULL)));
	assert_true(ev("priority=1", rec("priority", "01", NULL)));
	assert_true(ev("opened_at<2024-06-01 00:00:00", rec("opened_at", "2024-05-31 23:59:59", NULL)));
	assert_true(ev("priorityIN1,2", rec("priority", "02", NULL)));
}

static void
test_query_ignores_orderby_and_the_end_marker(void **state)
{
	(void)state;
	assert_true(ev("active=true^ORDERBYnumber^ORDERBYDESCsys_updated_on^EQ",
	    rec("active", "true", NULL)));
	assert_false(ev("active=true^ORDERBYnumber", rec("active", "false", NULL)));
	assert_true(ev("ORDERBYnumber", rec("active", "false", NULL)));
	assert_true(ev("a=1^NQ^ORDERBYnumber", rec("a", "1", NULL)));
	assert_false(ev("a=1^NQ^ORDERBYnumber", rec("a", "2", NULL)));
}

static void
assert_compile_error(const char *q, const char *want)
{
	struct query *c = NULL;
	char *cause = NULL;

	assert_int_equal(query_compile(q, &c, &cause), -EINVAL);
	assert_null(c);
	assert_non_null(cause);
	if (strcmp(cause, want) != 0)
		fail_msg("%s: want \"%s\", got \"%s\"", q, want, cause);
	free(cause);
}

static void
test_query_compile_errors_say_where(void **state)
{
	(void)state;
	assert_compile_error("active=true^priorityFOO2",
	    "position 21: unknown operator near \"FOO2\"");
	assert_compile_error("active=true^Priority=1",
	    "position 13: expected a field name near \"Priority=1\"");
	assert_compile_error("active", "position 7: missing operator near \"active\"");
	assert_compile_error("^ORa=1", "position 2: ^OR without a condition before it near \"ORa=1\"");
	assert_compile_error("stateIN", "position 8: IN needs a list of values as a,b,c near \"\"");
	assert_compile_error("priorityBETWEEN1", "position 16: BETWEEN takes two values as "
	    "low@high near \"1\"");
	assert_compile_error("activeISEMPTYx", "position 14: ISEMPTY and ISNOTEMPTY take no value "
	    "near \"x\"");
	assert_compile_error("opened_at>javascript:gs.daysAgo(1)", "position 11: javascript: "
	    "values cannot be evaluated locally near \"javascript:gs.da...\"");
}

static void
test_query_fields_are_deduplicated(void **state)
{
	struct query *q = NULL;
	char *cause = NULL, **names = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(query_compile("a=1^b=2^ORa=3^NQc.d=4^ORDERBYe", &q, &cause), 0);
	query_fields(q, &names, &n);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "a");
	assert_string_equal(names[1], "b");
	assert_string_equal(names[2], "c.d");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	query_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_caret_or_binds_to_the_previous_term),
		cmocka_unit_test(test_query_nq_is_a_top_level_or_of_groups),
		cmocka_unit_test(test_query_every_operator),
		cmocka_unit_test(test_query_reads_sys_id_from_the_record_header),
		cmocka_unit_test(test_query_compares_numbers_numerically_and_text_bytewise),
		cmocka_unit_test(test_query_ignores_orderby_and_the_end_marker),
		cmocka_unit_test(test_query_compile_errors_say_where),
		cmocka_unit_test(test_query_fields_are_deduplicated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
