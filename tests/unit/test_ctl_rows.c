/* Tests for imperai-snowctl's pure parts (daemon/ctl/fmt.c, rows.c):
 * terminal-safe text, the aligned table, RFC 4180 CSV, JSON rows, time
 * filters, status/risk names, filtering and sorting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "ctl.h"
#include "util.h"

#define T0 1700000000	/* 2023-11-14 22:13:20 UTC */

/* Runs fn(f, arg) against a memory stream and returns what it printed. */
static char *
capture(void (*fn)(FILE *f, void *arg), void *arg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	fn(f, arg);
	fclose(f);
	return text;
}

static struct ctl_row
row(const char *ticket, int status, enum imperai_risk risk, int score, int64_t time)
{
	struct ctl_row r = { 0 };

	r.ticket = xstrdup(ticket);
	r.table = xstrdup("incident");
	r.sys_id = xstrdup("0123456789abcdef0123456789abcdef");
	r.requester = xstrdup("Abel Tuter");
	r.email = xstrdup("a***r@e***.com");
	r.category = xstrdup("password_reset");
	r.initiated_by = xstrdup("Ivy Agent");
	r.verification_id = xprintf("vr_%s", ticket);
	r.state = xstrdup("passed");
	r.status = status;
	r.risk = risk;
	r.risk_score = score;
	r.time = time;
	return r;
}

/* --- text ---------------------------------------------------------------- */

static void
test_csv_field_with_comma_quote_or_newline_is_quoted_and_quotes_doubled(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	ctl_csv_field(&b, "a,b");
	buf_addc(&b, '|');
	ctl_csv_field(&b, "say \"hi\"");
	buf_addc(&b, '|');
	ctl_csv_field(&b, "two\r\nlines");
	buf_addc(&b, '|');
	ctl_csv_field(&b, "plain");
	buf_addc(&b, '|');
	ctl_csv_field(&b, NULL);
	assert_string_equal(b.data, "\"a,b\"|\"say \"\"hi\"\"\"|\"two\r\nlines\"|plain|");
	buf_free(&b);
}

static void
test_csv_record_separates_with_commas_and_ends_with_crlf(void **state)
{
	const char *f[] = { "x", "", "y,z" };
	struct buf b;

	(void)state;
	buf_init(&b);
	ctl_csv_record(&b, f, 3);
	assert_string_equal(b.data, "x,,\"y,z\"\r\n");
	buf_free(&b);
}

static void
test_fit_cuts_past_the_width_with_an_ellipsis_counting_utf8_as_one_column(void **state)
{
	char *s;

	(void)state;
	s = ctl_fit("Zoë Åström-Lindqvist", 8);
	assert_string_equal(s, "Zoë Åst\xe2\x80\xa6");
	assert_int_equal(ctl_width(s), 8);
	free(s);
	s = ctl_fit("short", 8);
	assert_string_equal(s, "short");
	free(s);
	s = ctl_fit("no cap at all", 0);
	assert_string_equal(s, "no cap at all");
	free(s);
}

static void
test_printable_defuses_terminal_escapes_and_invalid_utf8(void **state)
{
	char *s;

	(void)state;
	s = ctl_printable("evil\033]0;title\007 \xc2\x9b" "2J tab\there \xff ok é");
	assert_string_equal(s, "evil?]0;title? ?2J tab here ? ok é");
	free(s);
	s = ctl_printable(NULL);
	assert_string_equal(s, "");
	free(s);
}

static void
test_format_minute_and_age(void **state)
{
	char m[17], a[24];

	(void)state;
	ctl_format_minute(T0, m);
	assert_string_equal(m, "2023-11-14 22:13");
	ctl_format_minute(0, m);
	assert_string_equal(m, "-");
	ctl_format_age(T0 + 45, T0, a);
	assert_string_equal(a, "45s");
	ctl_format_age(T0 + 600, T0, a);
	assert_string_equal(a, "10m");
	ctl_format_age(T0 + 5 * 3600, T0, a);
	assert_string_equal(a, "5h");
	ctl_format_age(T0 + 3 * 86400, T0, a);
	assert_string_equal(a, "3d");
	ctl_format_age(T0 - 10, T0, a);
	assert_string_equal(a, "0s");
}

static void
test_parse_when_relative_durations_count_back_from_now(void **state)
{
	int64_t t;

	(void)state;
	assert_int_equal(ctl_parse_when("24h", T0, &t), 0);
	assert_int_equal(t, T0 - 86400);
	assert_int_equal(ctl_parse_when("7d", T0, &t), 0);
	assert_int_equal(t, T0 - 7 * 86400);
	assert_int_equal(ctl_parse_when("90m", T0, &t), 0);
	assert_int_equal(t, T0 - 5400);
}

static void
test_parse_when_dates_and_times_are_utc(void **state)
{
	int64_t t;

	(void)state;
	assert_int_equal(ctl_parse_when("2023-11-14", T0, &t), 0);
	assert_int_equal(t, 1699920000);
	assert_int_equal(ctl_parse_when("2023-11-14 22:13", T0, &t), 0);
	assert_int_equal(t, T0 - 20);
	assert_int_equal(ctl_parse_when("2023-11-14 22:13:20", T0, &t), 0);
	assert_int_equal(t, T0);
	assert_int_equal(ctl_parse_when("2023-11-14T22:13:20", T0, &t), 0);
	assert_int_equal(t, T0);
	assert_int_equal(ctl_parse_when("2023-11-14T23:13:20+01:00", T0, &t), 0);
	assert_int_equal(t, T0);
}

static void
test_parse_when_rejects_what_is_neither_duration_nor_date(void **state)
{
	int64_t t = 42;
	const char *bad[] = { "", "yesterday", "24x", "2023-13-01", "2023-11-14 25:00",
	    "2023/11/14", "-5h", "2023-11-14 22" };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(ctl_parse_when(bad[i], T0, &t), -EINVAL);
	assert_int_equal(t, 42);
}

/* --- names, filters, order -------------------------------------------------- */

static void
test_status_parse_accepts_wire_names_and_labels_in_any_case(void **state)
{
	int s;

	(void)state;
	assert_int_equal(ctl_status_parse("timed_out", &s), 0);
	assert_int_equal(s, IMPERAI_TIMED_OUT);
	assert_int_equal(ctl_status_parse("Timed out", &s), 0);
	assert_int_equal(s, IMPERAI_TIMED_OUT);
	assert_int_equal(ctl_status_parse("NOT-ENOUGH-QUESTIONS", &s), 0);
	assert_int_equal(s, IMPERAI_NOT_ENOUGH_QUESTIONS);
	assert_int_equal(ctl_status_parse("Passed", &s), 0);
	assert_int_equal(s, IMPERAI_PASSED);
	assert_int_equal(ctl_status_parse("passd", &s), -EINVAL);
	assert_string_equal(ctl_status_label(IMPERAI_LINK_SENT), "Link sent");
	assert_string_equal(ctl_status_label(CTL_STATUS_UNKNOWN), "-");
	assert_null(ctl_status_name(CTL_STATUS_UNKNOWN));
}

static void
test_filter_status_takes_comma_lists_and_names_the_valid_ones_on_error(void **state)
{
	struct ctl_filter f = { 0 };
	struct ctl_row p = row("INC1", IMPERAI_PASSED, IMPERAI_RISK_VERIFIED, 1, T0);
	struct ctl_row x = row("INC2", IMPERAI_FAILED, IMPERAI_RISK_HIGH, 9, T0);
	struct ctl_row o = row("INC3", IMPERAI_TIMED_OUT, IMPERAI_RISK_UNKNOWN, -1, T0);
	char *cause = NULL;

	(void)state;
	assert_int_equal(ctl_filter_status(&f, "passed, Timed out", &cause), 0);
	assert_true(ctl_row_matches(&f, &p));
	assert_false(ctl_row_matches(&f, &x));
	assert_true(ctl_row_matches(&f, &o));
	assert_int_equal(ctl_filter_status(&f, "passed,bogus", &cause), -EINVAL);
	assert_non_null(strstr(cause, "bogus"));
	assert_non_null(strstr(cause, "not_enough_questions"));
	free(cause);
	ctl_filter_free(&f);
	ctl_row_free(&p);
	ctl_row_free(&x);
	ctl_row_free(&o);
}

static void
test_filter_risk_category_agent_ticket_and_time_window(void **state)
{
	struct ctl_filter f = { 0 };
	struct ctl_row r = row("INC0010001", IMPERAI_FAILED, IMPERAI_RISK_HIGH, 9, T0);
	char *cause = NULL;

	(void)state;
	assert_int_equal(ctl_filter_risk(&f, "high", &cause), 0);
	assert_true(ctl_row_matches(&f, &r));
	f.risk_mask = 0;
	assert_int_equal(ctl_filter_risk(&f, "Verified,medium", &cause), 0);
	assert_false(ctl_row_matches(&f, &r));
	assert_int_equal(ctl_filter_risk(&f, "severe", &cause), -EINVAL);
	free(cause);
	f.risk_mask = 0;
	ctl_filter_category(&f, "software,PASSWORD_RESET");
	assert_true(ctl_row_matches(&f, &r));
	f.agent = xstrdup("ivy");
	assert_true(ctl_row_matches(&f, &r));
	str_replace(&f.agent, "beth");
	assert_false(ctl_row_matches(&f, &r));
	free(f.agent);
	f.agent = NULL;
	f.ticket = xstrdup("inc0010001");
	assert_true(ctl_row_matches(&f, &r));
	f.since = T0;
	f.until = T0;
	assert_true(ctl_row_matches(&f, &r));
	f.since = T0 + 1;
	assert_false(ctl_row_matches(&f, &r));
	f.since = 0;
	f.until = T0 - 1;
	assert_false(ctl_row_matches(&f, &r));
	ctl_filter_free(&f);
	ctl_row_free(&r);
}

static void
test_sort_time_is_newest_first_and_reverse_flips_it(void **state)
{
	struct ctl_row v[3];

	(void)state;
	v[0] = row("INC2", IMPERAI_PASSED, IMPERAI_RISK_VERIFIED, 1, T0);
	v[1] = row("INC1", IMPERAI_PASSED, IMPERAI_RISK_VERIFIED, 1, T0 + 100);
	v[2] = row("INC3", IMPERAI_PASSED, IMPERAI_RISK_VERIFIED, 1, T0 - 100);
	ctl_rows_sort(v, 3, CTL_SORT_TIME, 0);
	assert_string_equal(v[0].ticket, "INC1");
	assert_string_equal(v[2].ticket, "INC3");
	ctl_rows_sort(v, 3, CTL_SORT_TIME, 1);
	assert_string_equal(v[0].ticket, "INC3");
	ctl_rows_sort(v, 3, CTL_SORT_TICKET, 0);
	assert_string_equal(v[0].ticket, "INC1");
	assert_string_equal(v[1].ticket, "INC2");
	for (size_t i = 0; i < 3; i++)
		ctl_row_free(&v[i]);
}

static void
test_sort_risk_puts_highest_first_and_unknown_last(void **state)
{
	struct ctl_row v[4];
	enum ctl_sort k;

	(void)state;
	v[0] = row("INC1", IMPERAI_PENDING, IMPERAI_RISK_UNKNOWN, -1, T0);
	v[1] = row("INC2", IMPERAI_PASSED, IMPERAI_RISK_VERIFIED, 2, T0);
	v[2] = row("INC3", IMPERAI_FAILED, IMPERAI_RISK_HIGH, 9, T0);
	v[3] = row("INC4", IMPERAI_PASSED, IMPERAI_RISK_MEDIUM, 5, T0);
	assert_int_equal(ctl_sort_parse("RISK", &k), 0);
	assert_int_equal(k, CTL_SORT_RISK);
	assert_int_equal(ctl_sort_parse("priority", &k), -EINVAL);
	ctl_rows_sort(v, 4, k, 0);
	assert_string_equal(v[0].ticket, "INC3");
	assert_string_equal(v[1].ticket, "INC4");
	assert_string_equal(v[2].ticket, "INC2");
	assert_string_equal(v[3].ticket, "INC1");
	for (size_t i = 0; i < 4; i++)
		ctl_row_free(&v[i]);
}

/* --- output ------------------------------------------------------------------ */

struct print_arg {
	struct ctl_row	*v;
	size_t		 n;
	enum ctl_format	 fmt;
	int		 colour;
};

static void
print_rows(FILE *f, void *arg)
{
	struct print_arg *pa = arg;

	ctl_rows_print(f, pa->v, pa->n, pa->fmt, pa->colour);
}

static void
test_table_has_the_columns_aligned_and_long_cells_cut(void **state)
{
	struct ctl_row v[2];
	struct print_arg pa = { v, 2, CTL_FMT_TABLE, 0 };
	char *text;

	(void)state;
	v[0] = row("INC0010001", IMPERAI_PASSED, IMPERAI_RISK_VERIFIED, 1, T0);
	v[1] = row("INC2", IMPERAI_NOT_ENOUGH_QUESTIONS, IMPERAI_RISK_UNKNOWN, -1, 0);
	str_replace(&v[1].requester, "Bartholomew Featherstonehaugh-Smythe");
	text = capture(print_rows, &pa);
	assert_string_equal(text,
	    "TICKET      REQUESTER                 EMAIL           RISK      STATUS                "
	    "CATEGORY        INITIATED BY  TIME\n"
	    "INC0010001  Abel Tuter                a***r@e***.com  Verified  Passed                "
	    "password_reset  Ivy Agent     2023-11-14 22:13\n"
	    "INC2        Bartholomew Featherston\xe2\x80\xa6  a***r@e***.com  -         "
	    "Not enough questions  password_reset  Ivy Agent     -\n");
	assert_null(strchr(text, '\033'));
	free(text);
	pa.colour = 1;
	text = capture(print_rows, &pa);
	assert_non_null(strstr(text, CTL_GREEN "Passed" CTL_RESET "                "));
	assert_non_null(strstr(text, CTL_GREEN "Verified" CTL_RESET "  "));
	assert_non_null(strstr(text, CTL_YELLOW "Not enough questions" CTL_RESET));
	free(text);
	ctl_row_free(&v[0]);
	ctl_row_free(&v[1]);
}

static void
test_empty_table_is_just_the_header(void **state)
{
	struct print_arg pa = { NULL, 0, CTL_FMT_TABLE, 0 };
	char *text = capture(print_rows, &pa);

	(void)state;
	assert_string_equal(text, "TICKET  REQUESTER  EMAIL  RISK  STATUS  CATEGORY  INITIATED BY  "
	    "TIME\n");
	free(text);
	pa.fmt = CTL_FMT_JSON;
	text = capture(print_rows, &pa);
	assert_string_equal(text, "[\n]\n");
	free(text);
}

static void
test_csv_output_has_a_header_crlf_and_quoted_fields(void **state)
{
	struct ctl_row v[1];
	struct print_arg pa = { v, 1, CTL_FMT_CSV, 1 };
	char *text;

	(void)state;
	v[0] = row("INC1", IMPERAI_FAILED, IMPERAI_RISK_HIGH, 9, T0);
	str_replace(&v[0].requester, "Tuter, \"Abel\"");
	text = capture(print_rows, &pa);
	assert_string_equal(text, "TICKET,REQUESTER,EMAIL,RISK,STATUS,CATEGORY,INITIATED BY,TIME\r\n"
	    "INC1,\"Tuter, \"\"Abel\"\"\",a***r@e***.com,High,Failed,password_reset,Ivy Agent,"
	    "2023-11-14 22:13\r\n");
	free(text);
	ctl_row_free(&v[0]);
}

static void
test_json_rows_use_stable_snake_case_names_and_null_for_unknown(void **state)
{
	struct ctl_row v[2];
	struct print_arg pa = { v, 2, CTL_FMT_JSON, 0 };
	static const char *keys[] = { "ticket", "table", "sys_id", "requester", "email",
	    "risk_level", "risk_score", "status", "category", "initiated_by", "time",
	    "verification_id", "state" };
	json_object *a, *o, *x;
	char *text;

	(void)state;
	v[0] = row("INC1", IMPERAI_TIMED_OUT, IMPERAI_RISK_MEDIUM, 5, T0);
	v[1] = row("INC2", IMPERAI_PENDING, IMPERAI_RISK_UNKNOWN, -1, 0);
	text = capture(print_rows, &pa);
	a = json_tokener_parse(text);
	assert_non_null(a);
	assert_int_equal(json_object_array_length(a), 2);
	o = json_object_array_get_idx(a, 0);
	assert_int_equal(json_object_object_length(o), ARRAY_SIZE(keys));
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		assert_true(json_object_object_get_ex(o, keys[i], NULL));
	json_object_object_get_ex(o, "status", &x);
	assert_string_equal(json_object_get_string(x), "timed_out");
	json_object_object_get_ex(o, "risk_level", &x);
	assert_string_equal(json_object_get_string(x), "medium");
	json_object_object_get_ex(o, "risk_score", &x);
	assert_int_equal(json_object_get_int(x), 5);
	json_object_object_get_ex(o, "time", &x);
	assert_string_equal(json_object_get_string(x), "2023-11-14T22:13:20Z");
	o = json_object_array_get_idx(a, 1);
	json_object_object_get_ex(o, "risk_level", &x);
	assert_null(x);
	json_object_object_get_ex(o, "risk_score", &x);
	assert_null(x);
	json_object_object_get_ex(o, "time", &x);
	assert_null(x);
	json_object_put(a);
	free(text);
	ctl_row_free(&v[0]);
	ctl_row_free(&v[1]);
}

static void
test_colour_is_off_with_no_color_or_a_dumb_terminal(void **state)
{
	(void)state;
	setenv("TERM", "xterm", 1);
	setenv("NO_COLOR", "1", 1);
	assert_false(ctl_want_colour(1));
	unsetenv("NO_COLOR");
	setenv("TERM", "dumb", 1);
	assert_false(ctl_want_colour(1));
	unsetenv("TERM");
	assert_false(ctl_want_colour(1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_field_with_comma_quote_or_newline_is_quoted_and_quotes_doubled),
		cmocka_unit_test(test_csv_record_separates_with_commas_and_ends_with_crlf),
		cmocka_unit_test(test_fit_cuts_past_the_width_with_an_ellipsis_counting_utf8_as_one_column),
		cmocka_unit_test(test_printable_defuses_terminal_escapes_and_invalid_utf8),
		cmocka_unit_test(test_format_minute_and_age),
		cmocka_unit_test(test_parse_when_relative_durations_count_back_from_now),
		cmocka_unit_test(test_parse_when_dates_and_times_are_utc),
		cmocka_unit_test(test_parse_when_rejects_what_is_neither_duration_nor_date),
		cmocka_unit_test(test_status_parse_accepts_wire_names_and_labels_in_any_case),
		cmocka_unit_test(test_filter_status_takes_comma_lists_and_names_the_valid_ones_on_error),
		cmocka_unit_test(test_filter_risk_category_agent_ticket_and_time_window),
		cmocka_unit_test(test_sort_time_is_newest_first_and_reverse_flips_it),
		cmocka_unit_test(test_sort_risk_puts_highest_first_and_unknown_last),
		cmocka_unit_test(test_table_has_the_columns_aligned_and_long_cells_cut),
		cmocka_unit_test(test_empty_table_is_just_the_header),
		cmocka_unit_test(test_csv_output_has_a_header_crlf_and_quoted_fields),
		cmocka_unit_test(test_json_rows_use_stable_snake_case_names_and_null_for_unknown),
		cmocka_unit_test(test_colour_is_off_with_no_color_or_a_dumb_terminal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
