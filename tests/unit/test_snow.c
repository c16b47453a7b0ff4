/* Tests for lib/snow.c: parsing real-shaped and broken bodies, the poll
 * query, URLs and OAuth bodies; then the client against testserver.c. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "config.h"
#include "http.h"
#include "snow.h"
#include "testserver.h"
#include "util.h"

#define SYS_ID "9d385017c611228701d22104cc95c371"

static char *
data_path(const char *name)
{
	const char *top = getenv("top_srcdir");
	char *dir, *p;

	if (top != NULL)
		return xprintf("%s/tests/data/snow/%s", top, name);
	/* run by hand from the build directory: next to this source file */
	dir = xstrdup(__FILE__);
	p = strrchr(dir, '/');
	if (p != NULL)
		*p = '\0';
	p = xprintf("%s/../data/snow/%s", p ? dir : ".", name);
	free(dir);
	return p;
}

static char *
slurp(const char *name, size_t *len)
{
	char *path = data_path(name);
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[4096];
	size_t n;

	if (f == NULL)
		fail_msg("cannot open %s", path);
	buf_init(&b);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_add(&b, tmp, n);
	fclose(f);
	free(path);
	*len = b.len;
	return buf_detach(&b);
}

static int
parse_list_file(const char *name, struct snow_list *l, char **cause)
{
	size_t len;
	char *body = slurp(name, &len);
	int rc = snow_parse_list(body, len, l, cause);

	free(body);
	return rc;
}

/* Parses a list that must fail; returns the cause. */
static char *
list_cause(const char *body)
{
	struct snow_list l = { 0 };
	char *cause = NULL;

	assert_int_equal(snow_parse_list(body, strlen(body), &l, &cause), -EBADMSG);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
	assert_non_null(cause);
	return cause;
}

static void
assert_cause(char *cause, const char *needle)
{
	if (strstr(cause, needle) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, needle);
	free(cause);
}

static const char *
display_of(const struct snow_record *r, const char *name)
{
	for (size_t i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return r->fields[i].display;
	return NULL;
}

static void
test_list_with_references_flattens_them_to_sys_ids(void **state)
{
	struct snow_list l;
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("list_references.json", &l, &cause), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].sys_id, SYS_ID);
	assert_string_equal(snow_record_get(&l.v[0], "sys_id"), SYS_ID);
	assert_string_equal(snow_record_get(&l.v[0], "caller_id"), "5137153cc611227c000bbd1bd8cd2007");
	assert_string_equal(snow_record_get(&l.v[0], "assigned_to"), "");
	assert_string_equal(snow_record_get(&l.v[0], "number"), "INC0010001");
	assert_int_equal(l.v[0].mod_count, 0);
	assert_int_equal(l.v[1].mod_count, 4);
	assert_int_equal(l.v[0].updated_on, 1795514400);	/* 2026-11-24 10:00:00 UTC */
	assert_string_equal(snow_record_get(&l.v[1], "sys_mod_count"), "4");
	assert_string_equal(snow_record_get(&l.v[1], "short_description"),
	    "MFA reset for new phone \xe2\x80\x94 urgent");
	assert_null(display_of(&l.v[0], "caller_id"));
	assert_null(snow_record_get(&l.v[0], "no_such_field"));
	snow_list_free(&l);
}

static void
test_display_value_all_keeps_value_and_display(void **state)
{
	struct snow_list l;
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("list_display_all.json", &l, &cause), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].sys_id, SYS_ID);
	assert_string_equal(snow_record_get(&l.v[0], "state"), "1");
	assert_string_equal(display_of(&l.v[0], "state"), "New");
	assert_string_equal(snow_record_get(&l.v[0], "caller_id"), "5137153cc611227c000bbd1bd8cd2007");
	assert_string_equal(display_of(&l.v[0], "caller_id"), "Abel Tuter");
	assert_string_equal(display_of(&l.v[0], "assigned_to"), "");
	/* the value is UTC; the display is the user's time zone */
	assert_int_equal(l.v[0].updated_on, 1795514400);
	snow_list_free(&l);
}

static void
test_dot_walked_field_names_are_kept(void **state)
{
	struct snow_list l;
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("list_dotwalk.json", &l, &cause), 0);
	assert_string_equal(snow_record_get(&l.v[0], "caller_id.email"), "abel.tuter@example.com");
	assert_string_equal(snow_record_get(&l.v[0], "caller_id.user_name"), "abel.tuter");
	assert_string_equal(snow_record_get(&l.v[0], "assignment_group.name"), "Service Desk");
	snow_list_free(&l);
}

static void
test_empty_result_is_an_empty_list(void **state)
{
	struct snow_list l;
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("list_empty.json", &l, &cause), 0);
	assert_int_equal(l.n, 0);
	assert_null(cause);
	snow_list_free(&l);
}

static void
test_patch_answer_parses_as_one_record(void **state)
{
	size_t len;
	char *body = slurp("record_patch.json", &len), *cause = NULL;
	struct snow_record r;

	(void)state;
	assert_int_equal(snow_parse_record(body, len, &r, &cause), 0);
	assert_string_equal(r.sys_id, SYS_ID);
	assert_int_equal(r.mod_count, 5);
	assert_int_equal(r.updated_on, 1795514407);
	assert_non_null(strstr(snow_record_get(&r, "u_imperai_verification"), "rev 1"));
	snow_record_free(&r);
	/* a list is not a record and a record is not a list */
	assert_int_equal(snow_parse_record("{\"result\":[]}", 13, &r, &cause), -EBADMSG);
	assert_cause(cause, "\"result\" is array, expected object");
	free(body);
}

static void
test_null_reads_as_empty_and_missing_system_fields_have_defaults(void **state)
{
	const char *body = "{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"close_code\":null,"
	    "\"caller_id\":{\"link\":null,\"value\":null}}]}";
	struct snow_list l;
	char *cause = NULL;

	(void)state;
	assert_int_equal(snow_parse_list(body, strlen(body), &l, &cause), 0);
	assert_string_equal(snow_record_get(&l.v[0], "close_code"), "");
	assert_string_equal(snow_record_get(&l.v[0], "caller_id"), "");
	assert_int_equal(l.v[0].mod_count, -1);
	assert_int_equal(l.v[0].updated_on, 0);
	snow_list_free(&l);
}

static void
test_number_where_a_string_is_expected_names_the_field(void **state)
{
	struct snow_list l = { 0 };
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("broken_wrong_type.json", &l, &cause), -EBADMSG);
	assert_null(l.v);
	assert_cause(cause, "result[3].priority: expected a string, got int");
}

static void
test_bool_array_and_bare_objects_are_refused(void **state)
{
	(void)state;
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"active\":true}]}"),
	    "result[0].active: expected a string, got boolean");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"x\":[\"a\"]}]}"),
	    "result[0].x: expected a string, got array");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"x\":{\"link\":\"l\"}}]}"),
	    "result[0].x: an object without \"value\"");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"x\":{\"value\":1}}]}"),
	    "result[0].x: expected a string, got int");
	assert_cause(list_cause("{\"result\":[\"" SYS_ID "\"]}"),
	    "result[0]: expected an object, got string");
}

static void
test_record_without_sys_id_is_an_error_naming_its_index(void **state)
{
	struct snow_list l = { 0 };
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("broken_missing_sys_id.json", &l, &cause), -EBADMSG);
	assert_cause(cause, "result[1]: no sys_id");
}

static void
test_bad_sys_id_mod_count_or_date_is_refused(void **state)
{
	struct snow_list l = { 0 };
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("broken_bad_date.json", &l, &cause), -EBADMSG);
	assert_cause(cause, "result[0].sys_updated_on: \"2026-11-24T10:00:00Z\" is not a ServiceNow time");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"9d385017c611\"}]}"),
	    "result[0].sys_id: \"9d385017c611\" is not 32 hex digits");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"9d385017c611228701d22104cc95c37g\"}]}"),
	    "is not 32 hex digits");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"sys_mod_count\":\"4x\"}]}"),
	    "result[0].sys_mod_count: \"4x\" is not a count");
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"sys_mod_count\":\"-1\"}]}"),
	    "is not a count");
}

static void
test_invalid_utf8_or_nul_is_refused(void **state)
{
	struct snow_list l = { 0 };
	char *cause = NULL;
	const char nul[] = "{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"x\":\"a\0b\"}]}";

	(void)state;
	assert_int_equal(parse_list_file("broken_invalid_utf8.json", &l, &cause), -EBADMSG);
	assert_cause(cause, "not valid UTF-8");
	assert_int_equal(snow_parse_list(nul, sizeof(nul) - 1, &l, &cause), -EBADMSG);
	assert_cause(cause, "NUL");
	/* escapes produce a NUL or a lone surrogate only after decoding */
	assert_cause(list_cause("{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"x\":\"a\\u0000b\"}]}"),
	    "result[0].x: value is not valid UTF-8 or contains a NUL byte");
}

static void
test_deep_nesting_is_refused(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	buf_adds(&b, "{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"x\":");
	for (int i = 0; i < 40; i++)
		buf_adds(&b, "{\"value\":");
	buf_adds(&b, "\"v\"");
	for (int i = 0; i < 40; i++)
		buf_addc(&b, '}');
	buf_adds(&b, "}]}");
	assert_cause(list_cause(b.data), "nests deeper than 16 levels");
	buf_free(&b);
}

static void
test_huge_field_is_refused(void **state)
{
	struct buf b;
	char *big = xmalloc(2 * 1024 * 1024 + 1);

	(void)state;
	memset(big, 'a', 2 * 1024 * 1024);
	big[2 * 1024 * 1024] = '\0';
	buf_init(&b);
	buf_addf(&b, "{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"description\":\"%s\"}]}", big);
	assert_cause(list_cause(b.data), "result[0].description: value of 2097152 bytes is over");
	buf_free(&b);
	free(big);
}

static void
test_duplicate_key_last_wins(void **state)
{
	const char *body = "{\"result\":[{\"sys_id\":\"" SYS_ID "\",\"state\":\"1\",\"state\":\"2\"}]}";
	struct snow_list l;
	char *cause = NULL;

	(void)state;
	assert_int_equal(snow_parse_list(body, strlen(body), &l, &cause), 0);
	assert_string_equal(snow_record_get(&l.v[0], "state"), "2");
	assert_int_equal(l.v[0].nfields, 1);
	snow_list_free(&l);
}

static void
test_truncated_trailing_or_foreign_json_is_refused(void **state)
{
	(void)state;
	assert_cause(list_cause("{\"result\":[{\"sys_id\""), "truncated");
	assert_cause(list_cause("{\"result\":[]} x"), "trailing data");
	assert_cause(list_cause("{\"result\":[nul]}"), "not JSON");
	assert_cause(list_cause("{\"result\":'x'}"), "not JSON");
	assert_cause(list_cause("{\"records\":[]}"), "no \"result\"");
	assert_cause(list_cause("[]"), "no \"result\"");
	assert_cause(list_cause(""), "empty answer");
}

static void
test_error_body_instead_of_a_result_is_explained(void **state)
{
	struct snow_list l = { 0 };
	char *cause = NULL;

	(void)state;
	assert_int_equal(parse_list_file("error_404.json", &l, &cause), -EBADMSG);
	assert_cause(cause, "ServiceNow answered an error: No Record found: Record doesn't exist");
}

static char *
error_text(const char *file)
{
	size_t len;
	char *body = slurp(file, &len), *t = snow_parse_error(body, len);

	free(body);
	return t;
}

static void
test_error_bodies_read_as_message_and_detail(void **state)
{
	static const struct {
		const char *file, *text;
	} cases[] = {
		{ "error_401.json", "User Not Authenticated: Required to provide Auth information" },
		{ "error_403_acl.json", "User Not Authorized: Failed API level ACL Validation" },
		{ "error_403_data_policy.json", "Operation Failed: Data Policy Exception: \n\tThe "
		    "following fields are mandatory: Resolution code, Resolution notes\n" },
		{ "error_404.json", "No Record found: Record doesn't exist or ACL restricts the "
		    "record retrieval" },
		{ "error_429.json", "Rate limit exceeded: Rate limit of 100 requests per hour for "
		    "Table API exceeded" },
		{ "error_400_table.json", "Invalid table incidnet" },
		{ "oauth_error.json", "server_error: access_denied" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *t = error_text(cases[i].file);

		assert_non_null(t);
		assert_string_equal(t, cases[i].text);
		free(t);
	}
	assert_null(error_text("list_empty.json"));
	assert_null(error_text("hibernating.html"));
	assert_null(snow_parse_error(NULL, 0));
}

static char *
poll_query(const char *filter, const struct snow_watermark *w)
{
	char *q = NULL, *cause = NULL;

	if (snow_poll_query(filter, w, &q, &cause) != 0)
		fail_msg("refused: %s", cause);
	return q;
}

static void
test_poll_query_without_watermark_orders_by_time_and_sys_id(void **state)
{
	char *q;

	(void)state;
	q = poll_query(NULL, NULL);
	assert_string_equal(q, "ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
	q = poll_query("active=true", &(struct snow_watermark){ 0, "" });
	assert_string_equal(q, "active=true^ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
}

static void
test_poll_query_first_page_is_inclusive_from_the_rewound_watermark(void **state)
{
	struct snow_watermark stored = { 1795514400, SYS_ID }, w;
	char *q;

	(void)state;
	snow_watermark_rewind(&stored, 30, &w);
	assert_int_equal(w.updated_on, 1795514370);
	assert_string_equal(w.sys_id, "");
	q = poll_query("category=inquiry", &w);
	assert_string_equal(q, "category=inquiry^sys_updated_on>=2026-11-24 09:59:30"
	    "^ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
	snow_watermark_rewind(NULL, 30, &w);
	assert_int_equal(w.updated_on, 0);
}

static void
test_poll_query_keyset_page_repeats_the_filter_in_each_group(void **state)
{
	struct snow_watermark w = { 1795514400, SYS_ID };
	char *q;

	(void)state;
	q = poll_query("category=inquiry^subcategory=password", &w);
	assert_string_equal(q,
	    "category=inquiry^subcategory=password^sys_updated_on>2026-11-24 10:00:00"
	    "^NQcategory=inquiry^subcategory=password^sys_updated_on=2026-11-24 10:00:00"
	    "^sys_id>" SYS_ID "^ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
	q = poll_query(NULL, &w);
	assert_string_equal(q, "sys_updated_on>2026-11-24 10:00:00^NQsys_updated_on=2026-11-24 "
	    "10:00:00^sys_id>" SYS_ID "^ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
}

/* ^OR binds to the term before it: A^ORB^T means (A or B) and T, so the
 * time terms appended after the filter keep its meaning in both groups. */
static void
test_poll_query_with_an_or_filter_keeps_its_meaning(void **state)
{
	struct snow_watermark w = { 1795514400, SYS_ID };
	char *q;

	(void)state;
	q = poll_query("active=true^category=password^ORsubcategory=password", &w);
	assert_string_equal(q,
	    "active=true^category=password^ORsubcategory=password"
	    "^sys_updated_on>2026-11-24 10:00:00"
	    "^NQactive=true^category=password^ORsubcategory=password"
	    "^sys_updated_on=2026-11-24 10:00:00^sys_id>" SYS_ID
	    "^ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
}

static void
test_poll_query_drops_a_trailing_eq(void **state)
{
	char *q;

	(void)state;
	q = poll_query("category=password^EQ", &(struct snow_watermark){ 1795514400, "" });
	assert_string_equal(q, "category=password^sys_updated_on>=2026-11-24 10:00:00"
	    "^ORDERBYsys_updated_on^ORDERBYsys_id");
	free(q);
}

static char *
poll_refused(const char *filter, const struct snow_watermark *w)
{
	char *q = (char *)"untouched", *cause = NULL;

	assert_int_equal(snow_poll_query(filter, w, &q, &cause), -EINVAL);
	assert_null(q);
	assert_non_null(cause);
	return cause;
}

static void
test_poll_query_refuses_nq_orderby_eq_and_empty_terms(void **state)
{
	(void)state;
	assert_cause(poll_refused("category=a^NQcategory=b", NULL), "uses ^NQ");
	assert_cause(poll_refused("active=true^ORDERBYDESCnumber", NULL), "sorts (ORDERBY)");
	assert_cause(poll_refused("ORDERBYnumber", NULL), "sorts (ORDERBY)");
	assert_cause(poll_refused("a=1^EQ^b=2", NULL), "^EQ before its end");
	assert_cause(poll_refused("^a=1", NULL), "empty term");
	assert_cause(poll_refused("a=1^", NULL), "empty term");
	assert_cause(poll_refused("a=1^^b=2", NULL), "empty term");
	assert_cause(poll_refused(NULL, &(struct snow_watermark){ 1795514400, "../x" }),
	    "is not 32 hex digits");
}

static void
test_list_url_encodes_every_parameter(void **state)
{
	const char *fields[] = { "sys_id", "number", "caller_id.email" };
	char *u;

	(void)state;
	u = snow_list_url("https://dev1.service-now.com/", "incident",
	    "active=true^sys_updated_on>=2026-11-24 10:00:00", fields, 3, 50);
	assert_string_equal(u, "https://dev1.service-now.com/api/now/table/incident"
	    "?sysparm_query=active%3Dtrue%5Esys_updated_on%3E%3D2026-11-24%2010%3A00%3A00"
	    "&sysparm_fields=sys_id%2Cnumber%2Ccaller_id.email&sysparm_limit=50"
	    "&sysparm_display_value=false&sysparm_exclude_reference_link=true"
	    "&sysparm_no_count=true&sysparm_suppress_pagination_header=true");
	free(u);
	u = snow_list_url("https://dev1.service-now.com", "sys_choice", NULL, NULL, 0, 0);
	assert_string_equal(u, "https://dev1.service-now.com/api/now/table/sys_choice"
	    "?sysparm_display_value=false&sysparm_exclude_reference_link=true"
	    "&sysparm_no_count=true&sysparm_suppress_pagination_header=true");
	free(u);
}

static void
test_record_url_names_the_record_and_fields(void **state)
{
	const char *fields[] = { "sys_mod_count", "u_imperai_verification" };
	char *u;

	(void)state;
	u = snow_record_url("https://dev1.service-now.com", "incident", SYS_ID, fields, 2);
	assert_string_equal(u, "https://dev1.service-now.com/api/now/table/incident/" SYS_ID
	    "?sysparm_fields=sys_mod_count%2Cu_imperai_verification"
	    "&sysparm_display_value=false&sysparm_exclude_reference_link=true");
	free(u);
}

static void
free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void
test_obs_fields_list_what_every_read_of_a_ticket_asks_for(void **state)
{
	struct config_table tc = { .name = "sc_task", .field = "u_check" };
	static const char *const want[] = { "sys_id", "number", "sys_mod_count",
	    "sys_updated_on", "state", "active", "category", "subcategory",
	    "short_description", "description", "assigned_to.name", "u_check",
	    "request_item.requested_for", "request_item.requested_for.name",
	    "request_item.requested_for.email", "request_item.requested_for.user_name" };
	char **names = NULL;
	size_t n = 0;

	(void)state;
	snow_obs_fields(&tc, &names, &n);
	snow_obs_fields(&tc, &names, &n);	/* each name once */
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(names[i], want[i]);
	free_names(names, n);
	names = NULL;
	n = 0;
	snow_obs_fields(NULL, &names, &n);
	assert_int_equal(n, 11);
	free_names(names, n);
}

static void
test_obs_parse_reads_the_requester_walks_and_whether_it_ended(void **state)
{
	struct config_table tc = { .name = "incident", .requester_field = "caller_id" };
	struct snow_record r = { .mod_count = 3 };
	struct snow_obs o;

	(void)state;
	snow_record_set(&r, "number", "INC0010001");
	snow_record_set(&r, "state", "6");
	snow_record_set(&r, "caller_id", "c0ffee");
	snow_record_set(&r, "caller_id.name", "");
	snow_record_set(&r, "caller_id.user_name", "abel.tuter");
	snow_record_set(&r, "u_imperai_verification", "<p>x</p>");
	snow_obs_parse(&tc, &r, &o);
	assert_true(o.complete);
	assert_string_equal(o.requester, "c0ffee");
	assert_string_equal(o.requester_name, "abel.tuter");
	assert_null(o.requester_email);
	assert_string_equal(o.field, "<p>x</p>");
	assert_true(o.ended);
	assert_false(o.closed);
	snow_record_set(&r, "state", "2");
	snow_record_set(&r, "active", "false");
	snow_obs_parse(&tc, &r, &o);
	assert_true(o.ended && o.closed);
	tc.requester_field = "opened_by";
	snow_obs_parse(&tc, &r, &o);
	assert_false(o.complete);
	assert_null(o.requester);
	snow_record_free(&r);
}

static struct config *
oauth_config(enum config_grant grant)
{
	struct config *c = xcalloc(1, sizeof(*c));

	c->snow.auth = CONFIG_AUTH_OAUTH;
	c->snow.grant = grant;
	c->snow.user = xstrdup("integration");
	c->snow.password = xstrdup("p@ss w&rd=1+");
	c->snow.client_id = xstrdup("ac0dd3408c1031006907010c2cc6ef6d");
	c->snow.client_secret = xstrdup("s3cr%t");
	return c;
}

static void
config_release(struct config *c)
{
	free(c->snow.instance);
	free(c->snow.user);
	free(c->snow.password);
	free(c->snow.client_id);
	free(c->snow.client_secret);
	free(c);
}

static void
test_oauth_bodies_for_each_grant_are_form_encoded(void **state)
{
	struct config *c = oauth_config(CONFIG_GRANT_PASSWORD);
	char *b;

	(void)state;
	b = snow_oauth_body(c, NULL);
	assert_string_equal(b, "grant_type=password&client_id=ac0dd3408c1031006907010c2cc6ef6d"
	    "&client_secret=s3cr%25t&username=integration&password=p%40ss%20w%26rd%3D1%2B");
	free(b);
	b = snow_oauth_body(c, "r/t+1");
	assert_string_equal(b, "grant_type=refresh_token&client_id=ac0dd3408c1031006907010c2cc6ef6d"
	    "&client_secret=s3cr%25t&refresh_token=r%2Ft%2B1");
	free(b);
	c->snow.grant = CONFIG_GRANT_CLIENT_CREDENTIALS;
	b = snow_oauth_body(c, NULL);
	assert_string_equal(b, "grant_type=client_credentials"
	    "&client_id=ac0dd3408c1031006907010c2cc6ef6d&client_secret=s3cr%25t");
	free(b);
	config_release(c);
}

static void
test_oauth_token_answer_is_parsed(void **state)
{
	size_t len;
	char *body = slurp("oauth_token.json", &len), *a, *r, *cause = NULL;
	int64_t exp;

	(void)state;
	assert_int_equal(snow_parse_oauth(body, len, &a, &r, &exp, &cause), 0);
	assert_string_equal(a, "q1Wf9sO2mVdXgQjPk8_Lw4nB0sH3yT5eR7uI6oP9aS2dF1gH4jK");
	assert_string_equal(r, "zX8cV7bN6mQ5wE4rT3yU2iO1pA0sD9fG8hJ7kL6zX5cV4bN3mQ");
	assert_int_equal(exp, 1799);
	secret_free(a);
	secret_free(r);
	free(body);
	/* client_credentials: no refresh token; expires_in as a string or absent */
	assert_int_equal(snow_parse_oauth("{\"access_token\":\"x\",\"expires_in\":\"600\"}", 39,
	    &a, &r, &exp, &cause), 0);
	assert_null(r);
	assert_int_equal(exp, 600);
	secret_free(a);
	assert_int_equal(snow_parse_oauth("{\"access_token\":\"x\"}", 20, &a, &r, &exp, &cause), 0);
	assert_int_equal(exp, 1800);
	secret_free(a);
}

static void
test_oauth_refusals_and_bad_answers_say_why(void **state)
{
	size_t len;
	char *body = slurp("oauth_error.json", &len), *a, *r, *cause = NULL;
	int64_t exp;

	(void)state;
	assert_int_equal(snow_parse_oauth(body, len, &a, &r, &exp, &cause), -EBADMSG);
	assert_null(a);
	assert_cause(cause, "the token endpoint refused: server_error: access_denied");
	free(body);
	assert_int_equal(snow_parse_oauth("{\"token_type\":\"Bearer\"}", 23, &a, &r, &exp, &cause),
	    -EBADMSG);
	assert_cause(cause, "no access_token");
	assert_int_equal(snow_parse_oauth("{\"access_token\":\"x\",\"expires_in\":\"soon\"}", 40,
	    &a, &r, &exp, &cause), -EBADMSG);
	assert_cause(cause, "bad expires_in");
}

/* The client against the scripted server. */

struct outcome {
	int		 done;
	int		 err;
	long		 status;
	char		*cause;
	size_t		 n;
	char		 sys_id[33];
	int64_t		 mod_count;
	int64_t		 total;
};

struct env {
	struct ts		*ts;
	struct http_client	*h;
	struct config		*cfg;
	struct snow_client	*s;
	int64_t			 offset;
	struct outcome		 o[4];
};

static int64_t
real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
shifted_clock(void *arg)
{
	return real_ms() + *(int64_t *)arg;
}

static void
on_record(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct outcome *o = arg;

	o->done++;
	o->err = err;
	o->status = status;
	o->cause = cause ? xstrdup(cause) : NULL;
	if (rec != NULL) {
		memcpy(o->sys_id, rec->sys_id, sizeof(o->sys_id));
		o->mod_count = rec->mod_count;
	}
}

static void
on_list(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct outcome *o = arg;

	o->done++;
	o->err = err;
	o->cause = cause ? xstrdup(cause) : NULL;
	if (page != NULL)
		o->total = page->total;
	if (page != NULL && page->n > 0) {
		o->n = page->n;
		memcpy(o->sys_id, page->v[page->n - 1].sys_id, sizeof(o->sys_id));
	}
}

static struct env *
env_new(enum config_auth auth)
{
	struct env *e = xcalloc(1, sizeof(*e));
	char *cause = NULL;

	e->ts = ts_start();
	e->h = http_client_new();
	http_client_set_clock(e->h, shifted_clock, &e->offset);
	e->cfg = oauth_config(CONFIG_GRANT_PASSWORD);
	e->cfg->snow.auth = auth;
	free(e->cfg->snow.user);
	free(e->cfg->snow.password);
	e->cfg->snow.user = xstrdup("admin");
	e->cfg->snow.password = xstrdup("p@ss w\xc3\xb6rd");
	e->cfg->snow.instance = ts_url(e->ts, "/");
	e->cfg->snow.page_size = 50;
	e->cfg->snow.http = (struct config_http){ .concurrency = 1, .connect_timeout = 5,
	    .timeout = 5, .max_retries = 0 };
	e->s = snow_client_new(e->cfg, e->h, &cause);
	if (e->s == NULL)
		fail_msg("snow_client_new: %s", cause);
	return e;
}

static void
env_free(struct env *e)
{
	snow_client_free(e->s);
	http_client_free(e->h);
	ts_stop(e->ts);
	config_release(e->cfg);
	for (size_t i = 0; i < ARRAY_SIZE(e->o); i++)
		free(e->o[i].cause);
	free(e);
}

static void
env_pump(struct env *e, int n)
{
	int64_t bound = real_ms() + 10000;
	int done;

	for (;;) {
		done = 0;
		for (size_t i = 0; i < ARRAY_SIZE(e->o); i++)
			done += e->o[i].done;
		if (done >= n || real_ms() > bound)
			break;
		http_perform(e->h, 100);
	}
	assert_int_equal(done, n);
}

static void
get(struct env *e, int slot)
{
	static const char *const fields[] = { "sys_id", "sys_mod_count", "state" };
	char *cause = NULL;

	assert_int_equal(snow_get(e->s, "incident", SYS_ID, fields, 3, on_record, &e->o[slot],
	    &cause), 0);
}

static char *
file_body(const char *name)
{
	size_t len;

	return slurp(name, &len);
}

static const char json_ct[] = "Content-Type: application/json;charset=UTF-8\r\n";

static void
script_reply(struct env *e, int status, const char *headers, const char *body)
{
	struct ts_step s = { TS_REPLY, status, headers, body, 0, 0, 0 };

	ts_script(e->ts, &s, 1);
}

static void
script_file(struct env *e, int status, const char *headers, const char *file)
{
	char *body = file_body(file);

	script_reply(e, status, headers, body);
	free(body);
}

static void
assert_request(struct env *e, size_t i, const char *line_prefix, const char *header,
    const char *value)
{
	char *line = ts_request_line(e->ts, i), *v;

	assert_non_null(line);
	if (strncmp(line, line_prefix, strlen(line_prefix)) != 0)
		fail_msg("request %zu is \"%s\", not \"%s...\"", i, line, line_prefix);
	free(line);
	if (header == NULL)
		return;
	v = ts_request_header(e->ts, i, header);
	if (value == NULL)
		assert_null(v);
	else {
		assert_non_null(v);
		assert_string_equal(v, value);
	}
	free(v);
}

static void
test_basic_auth_is_sent_and_the_record_parsed(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);

	(void)state;
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(e->o[0].status, 200);
	assert_string_equal(e->o[0].sys_id, SYS_ID);
	assert_int_equal(e->o[0].mod_count, 5);
	assert_request(e, 0, "GET /api/now/table/incident/" SYS_ID
	    "?sysparm_fields=sys_id%2Csys_mod_count%2Cstate&sysparm_display_value=false",
	    "Authorization", "Basic YWRtaW46cEBzcyB3w7ZyZA==");
	assert_request(e, 0, "GET", "Accept", "application/json");
	env_free(e);
}

static void
test_session_cookie_is_sent_back(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);
	char *cookie;

	(void)state;
	script_file(e, 200, "Set-Cookie: JSESSIONID=C0FFEE42; Path=/; HttpOnly\r\n"
	    "Set-Cookie: glide_user_route=glide.a1b2; Path=/\r\n", "record_patch.json");
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	get(e, 1);
	env_pump(e, 2);
	assert_request(e, 0, "GET", "Cookie", NULL);
	cookie = ts_request_header(e->ts, 1, "Cookie");
	assert_non_null(cookie);
	assert_non_null(strstr(cookie, "JSESSIONID=C0FFEE42"));
	assert_non_null(strstr(cookie, "glide_user_route=glide.a1b2"));
	free(cookie);
	env_free(e);
}

static void
test_oauth_token_is_fetched_once_and_reused(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);
	char *body;

	(void)state;
	script_file(e, 200, json_ct, "oauth_token.json");
	script_file(e, 200, json_ct, "record_patch.json");
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	get(e, 1);
	env_pump(e, 2);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(e->o[1].err, 0);
	assert_int_equal(ts_nrequests(e->ts), 3);
	assert_request(e, 0, "POST /oauth_token.do ", "Content-Type",
	    "application/x-www-form-urlencoded");
	body = ts_request_body(e->ts, 0);
	assert_string_equal(body, "grant_type=password&client_id=ac0dd3408c1031006907010c2cc6ef6d"
	    "&client_secret=s3cr%25t&username=admin&password=p%40ss%20w%C3%B6rd");
	free(body);
	for (size_t i = 1; i < 3; i++)
		assert_request(e, i, "GET /api/now/table/incident/", "Authorization",
		    "Bearer q1Wf9sO2mVdXgQjPk8_Lw4nB0sH3yT5eR7uI6oP9aS2dF1gH4jK");
	env_free(e);
}

static void
test_oauth_401_refreshes_the_token_and_resubmits_once(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);
	char *body;

	(void)state;
	script_file(e, 200, json_ct, "oauth_token.json");
	script_file(e, 401, json_ct, "error_401.json");
	script_reply(e, 200, json_ct, "{\"access_token\":\"second\",\"refresh_token\":\"r2\","
	    "\"expires_in\":1799}");
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(ts_nrequests(e->ts), 4);
	assert_request(e, 2, "POST /oauth_token.do ", NULL, NULL);
	body = ts_request_body(e->ts, 2);
	assert_string_equal(body, "grant_type=refresh_token&client_id=ac0dd3408c1031006907010c2cc6ef6d"
	    "&client_secret=s3cr%25t&refresh_token=zX8cV7bN6mQ5wE4rT3yU2iO1pA0sD9fG8hJ7kL6zX5cV4bN3mQ");
	free(body);
	assert_request(e, 3, "GET /api/now/table/incident/", "Authorization", "Bearer second");
	env_free(e);
}

static void
test_second_401_is_an_error_naming_the_user(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);

	(void)state;
	script_file(e, 200, json_ct, "oauth_token.json");
	script_file(e, 401, json_ct, "error_401.json");
	script_file(e, 200, json_ct, "oauth_token.json");
	script_file(e, 401, json_ct, "error_401.json");
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, -EACCES);
	assert_int_equal(e->o[0].status, 401);
	assert_non_null(strstr(e->o[0].cause, "ServiceNow rejected the credentials of admin: "
	    "check servicenow.user and the password"));
	assert_int_equal(ts_nrequests(e->ts), 4);
	env_free(e);
}

static void
test_refused_refresh_token_falls_back_to_the_password_grant(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);
	char *body;

	(void)state;
	script_file(e, 200, json_ct, "oauth_token.json");
	script_file(e, 401, json_ct, "error_401.json");
	script_file(e, 401, json_ct, "oauth_error.json");
	script_reply(e, 200, json_ct, "{\"access_token\":\"third\",\"expires_in\":1799}");
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(ts_nrequests(e->ts), 5);
	body = ts_request_body(e->ts, 3);
	assert_non_null(strstr(body, "grant_type=password&"));
	free(body);
	assert_request(e, 4, "GET", "Authorization", "Bearer third");
	env_free(e);
}

static void
test_refused_token_fails_the_waiting_requests(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);

	(void)state;
	script_file(e, 401, json_ct, "oauth_error.json");
	get(e, 0);
	get(e, 1);
	env_pump(e, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(e->o[i].err, -EACCES);
		assert_non_null(strstr(e->o[i].cause, "ServiceNow refused an OAuth token for admin "
		    "(401 server_error: access_denied): check servicenow.client_id"));
	}
	assert_int_equal(ts_nrequests(e->ts), 1);
	env_free(e);
}

static void
test_token_is_refreshed_ahead_of_expiry(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);

	(void)state;
	script_reply(e, 200, json_ct, "{\"access_token\":\"first\",\"refresh_token\":\"r1\","
	    "\"expires_in\":100}");
	script_file(e, 200, json_ct, "record_patch.json");
	script_reply(e, 200, json_ct, "{\"access_token\":\"second\",\"expires_in\":100}");
	script_file(e, 200, json_ct, "record_patch.json");
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	/* past 80% of the lifetime: refresh, but the valid token still serves */
	e->offset += 81 * 1000;
	get(e, 1);
	env_pump(e, 2);
	get(e, 2);
	env_pump(e, 3);
	assert_int_equal(ts_nrequests(e->ts), 5);
	assert_request(e, 1, "GET", "Authorization", "Bearer first");
	assert_request(e, 2, "POST /oauth_token.do ", NULL, NULL);
	assert_request(e, 3, "GET", "Authorization", "Bearer first");
	assert_request(e, 4, "GET", "Authorization", "Bearer second");
	env_free(e);
}

static void
test_html_answer_is_eagain_with_the_hibernating_cause(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);

	(void)state;
	script_file(e, 200, "Content-Type: text/html\r\n", "hibernating.html");
	script_file(e, 200, NULL, "hibernating.html");
	get(e, 0);
	get(e, 1);
	env_pump(e, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(e->o[i].err, -EAGAIN);
		assert_non_null(strstr(e->o[i].cause,
		    "instance unavailable (hibernating or under maintenance?)"));
	}
	env_free(e);
}

static struct env *env_retrying(void);

static void
test_patch_is_not_retried_after_a_reset(void **state)
{
	struct env *e = env_retrying();
	static const char *const fields[] = { "sys_mod_count", "u_imperai_verification" };
	struct ts_step reset = { TS_RESET, 0, NULL, NULL, 0, 0, 0 };
	char *cause = NULL, *body;

	(void)state;
	script_file(e, 200, json_ct, "record_patch.json");
	ts_script(e->ts, &reset, 1);
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(snow_patch(e->s, "incident", SYS_ID, "{\"work_notes\":\"[imper.ai] sent\"}",
	    fields, 2, on_record, &e->o[1], &cause), 0);
	env_pump(e, 2);
	assert_int_equal(e->o[1].err, -EAGAIN);
	assert_non_null(strstr(e->o[1].cause, "PATCH incident/" SYS_ID ": cannot reach ServiceNow"));
	assert_int_equal(ts_nrequests(e->ts), 2);
	assert_request(e, 1, "PATCH /api/now/table/incident/" SYS_ID
	    "?sysparm_fields=sys_mod_count%2Cu_imperai_verification", "Content-Type",
	    "application/json");
	body = ts_request_body(e->ts, 1);
	assert_string_equal(body, "{\"work_notes\":\"[imper.ai] sent\"}");
	free(body);
	env_free(e);
}

static struct env *
env_retrying(void)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);
	char *cause = NULL;

	/* a second client on the same server, its pool allowed retries */
	snow_client_free(e->s);
	e->cfg->snow.http.max_retries = 3;
	e->s = snow_client_new(e->cfg, e->h, &cause);
	assert_non_null(e->s);
	return e;
}

static void
test_get_is_retried_but_patch_is_not(void **state)
{
	struct env *e = env_retrying();
	static const char *const fields[] = { "sys_mod_count" };
	struct ts_step reset = { TS_RESET, 0, NULL, NULL, 0, 0, 0 };
	char *cause = NULL;

	(void)state;
	ts_script(e->ts, &reset, 1);
	script_file(e, 200, json_ct, "record_patch.json");
	ts_script(e->ts, &reset, 1);
	script_file(e, 200, json_ct, "record_patch.json");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(ts_nrequests(e->ts), 2);
	assert_int_equal(snow_patch(e->s, "incident", SYS_ID, "{}", fields, 1, on_record,
	    &e->o[1], &cause), 0);
	env_pump(e, 2);
	assert_int_equal(e->o[1].err, -EAGAIN);
	assert_int_equal(ts_nrequests(e->ts), 3);
	env_free(e);
}

static void
test_status_errors_map_to_codes_with_causes(void **state)
{
	static const struct {
		int status;
		const char *file;
		int err;
		const char *cause;
	} cases[] = {
		{ 403, "error_403_data_policy.json", -EPERM, "ServiceNow refused to update incident/"
		    SYS_ID ": Operation Failed: Data Policy Exception: \n\tThe following fields are "
		    "mandatory: Resolution code, Resolution notes\n" },
		{ 403, "error_403_acl.json", -EPERM, "(403 User Not Authorized: Failed API level ACL "
		    "Validation): grant the integration user" },
		{ 404, "error_404.json", -ENOENT, "incident/" SYS_ID " not found, or the integration "
		    "user may not read it (404 No Record found" },
		{ 429, "error_429.json", -EAGAIN, "rate limit reached for admin (429 Rate limit "
		    "exceeded" },
		{ 400, "error_400_table.json", -EINVAL, "(400 Invalid table incidnet)" },
		{ 503, "error_429.json", -EAGAIN, "failed with 503" },
		{ 200, "list_references.json", -EBADMSG, "\"result\" is array, expected object" },
		{ 200, "{\"result\":{\"sys_id\":\"" SYS_ID "\",\"priority\":3}}", -EBADMSG,
		    "GET incident/" SYS_ID ": result.priority: expected a string, got int" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct env *e = env_new(CONFIG_AUTH_BASIC);

		if (cases[i].file[0] == '{')
			script_reply(e, cases[i].status, json_ct, cases[i].file);
		else
			script_file(e, cases[i].status, json_ct, cases[i].file);
		get(e, 0);
		env_pump(e, 1);
		assert_int_equal(e->o[0].err, cases[i].err);
		assert_int_equal(e->o[0].status, cases[i].status);
		if (strstr(e->o[0].cause, cases[i].cause) == NULL)
			fail_msg("case %zu: cause \"%s\" lacks \"%s\"", i, e->o[0].cause, cases[i].cause);
		env_free(e);
	}
}

static void
test_redirect_is_refused_without_leaking_its_query(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);

	(void)state;
	script_reply(e, 302, "Location: https://sso.example.com/login?SAMLRequest=secret\r\n", "");
	get(e, 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, -EPROTO);
	assert_non_null(strstr(e->o[0].cause, "302 to https://sso.example.com/login)"));
	assert_null(strstr(e->o[0].cause, "secret"));
	env_free(e);
}

static void
test_list_page_sends_the_keyset_query_and_delivers_the_page(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);
	static const char *const fields[] = { "number", "sys_id", "caller_id" };
	struct snow_watermark w = { 1795514400, "9d385017c611228701d22104cc95c370" };
	char *cause = NULL;

	(void)state;
	script_file(e, 200, json_ct, "list_references.json");
	assert_int_equal(snow_list_page(e->s, "incident", "category=inquiry^ORsubcategory=password",
	    &w, 0, fields, 3, on_list, &e->o[0], &cause), 0);
	env_pump(e, 1);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(e->o[0].n, 2);
	assert_string_equal(e->o[0].sys_id, "a9e30c7dc61122760116894de7bcc7bd");
	assert_request(e, 0, "GET /api/now/table/incident?sysparm_query="
	    "category%3Dinquiry%5EORsubcategory%3Dpassword%5Esys_updated_on%3E2026-11-24%2010%3A00%3A00"
	    "%5ENQcategory%3Dinquiry%5EORsubcategory%3Dpassword%5Esys_updated_on%3D2026-11-24%2010%3A00%3A00"
	    "%5Esys_id%3E9d385017c611228701d22104cc95c370"
	    "%5EORDERBYsys_updated_on%5EORDERBYsys_id"
	    "&sysparm_fields=number%2Csys_id%2Ccaller_id%2Csys_updated_on%2Csys_mod_count"
	    "&sysparm_limit=50&sysparm_display_value=false&sysparm_exclude_reference_link=true"
	    "&sysparm_suppress_pagination_header=true ", NULL, NULL);
	assert_int_equal(e->o[0].total, -1);
	env_free(e);
}

/* Row ACLs apply after sysparm_limit: the count is what tells a page they
 * emptied from the end, and the offset is how the poll gets past it. */
static void
test_list_page_skips_by_offset_and_delivers_the_count(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);
	static const char *const fields[] = { "number" };
	struct snow_watermark w = { 1795514400, "" };
	char *cause = NULL;

	(void)state;
	script_reply(e, 200, "Content-Type: application/json\r\nX-Total-Count: 412\r\n",
	    "{\"result\":[]}");
	script_reply(e, 200, "Content-Type: application/json\r\nX-Total-Count: 4x\r\n",
	    "{\"result\":[]}");
	assert_int_equal(snow_list_page(e->s, "incident", NULL, &w, 150, fields, 1, on_list,
	    &e->o[0], &cause), 0);
	assert_int_equal(snow_list_page(e->s, "incident", NULL, &w, 0, fields, 1, on_list,
	    &e->o[1], &cause), 0);
	env_pump(e, 2);
	assert_int_equal(e->o[0].err, 0);
	assert_int_equal(e->o[0].n, 0);
	assert_int_equal(e->o[0].total, 412);
	assert_int_equal(e->o[1].total, -1);
	assert_request(e, 0, "GET /api/now/table/incident?sysparm_query="
	    "sys_updated_on%3E%3D2026-11-24%2010%3A00%3A00%5EORDERBYsys_updated_on%5EORDERBYsys_id"
	    "&sysparm_fields=number%2Csys_id%2Csys_updated_on%2Csys_mod_count"
	    "&sysparm_limit=50&sysparm_offset=150&sysparm_display_value=false"
	    "&sysparm_exclude_reference_link=true&sysparm_suppress_pagination_header=true ",
	    NULL, NULL);
	env_free(e);
}

static void
test_bad_arguments_are_refused_without_a_callback(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_BASIC);
	char *cause = NULL;

	(void)state;
	assert_int_equal(snow_get(e->s, "incident/../sys_user", SYS_ID, NULL, 0, on_record,
	    &e->o[0], &cause), -EINVAL);
	assert_cause(cause, "is not a ServiceNow table name");
	cause = NULL;
	assert_int_equal(snow_patch(e->s, "incident", "../../x", "{}", NULL, 0, on_record,
	    &e->o[0], &cause), -EINVAL);
	assert_cause(cause, "is not a sys_id");
	cause = NULL;
	assert_int_equal(snow_list_page(e->s, "incident", "a=1^NQb=2", NULL, 0, NULL, 0, on_list,
	    &e->o[0], &cause), -EINVAL);
	assert_cause(cause, "uses ^NQ");
	http_perform(e->h, 0);
	assert_int_equal(e->o[0].done, 0);
	assert_int_equal(http_pending(e->h), 0);
	env_free(e);
}

static void
test_client_free_cancels_outstanding_requests(void **state)
{
	struct env *e = env_new(CONFIG_AUTH_OAUTH);
	struct ts_step hang = { TS_HANG, 0, NULL, NULL, 0, 0, 0 };
	int64_t bound = real_ms() + 10000;

	(void)state;
	ts_script(e->ts, &hang, 1);
	get(e, 0);
	get(e, 1);
	while (ts_nrequests(e->ts) < 1 && real_ms() < bound)
		http_perform(e->h, 20);
	snow_client_free(e->s);
	e->s = NULL;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(e->o[i].done, 1);
		assert_int_equal(e->o[i].err, -ECANCELED);
	}
	assert_int_equal(http_pending(e->h), 0);
	env_free(e);
}

static void
test_client_refuses_plain_http_and_missing_credentials(void **state)
{
	struct http_client *h = http_client_new();
	struct config *c = oauth_config(CONFIG_GRANT_PASSWORD);
	char *cause = NULL;

	(void)state;
	c->snow.instance = xstrdup("http://dev1.service-now.com");
	assert_null(snow_client_new(c, h, &cause));
	assert_cause(cause, "must be https://");
	str_replace(&c->snow.instance, "https://dev1.service-now.com/now/nav");
	assert_null(snow_client_new(c, h, &cause));
	assert_cause(cause, "without a path");
	str_replace(&c->snow.instance, "https://dev1.service-now.com");
	str_replace(&c->snow.client_id, NULL);
	assert_null(snow_client_new(c, h, &cause));
	assert_cause(cause, "servicenow.client_id is not set");
	c->snow.auth = CONFIG_AUTH_BASIC;
	str_replace(&c->snow.user, NULL);
	assert_null(snow_client_new(c, h, &cause));
	assert_cause(cause, "servicenow.user is not set");
	http_client_free(h);
	config_release(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_with_references_flattens_them_to_sys_ids),
		cmocka_unit_test(test_display_value_all_keeps_value_and_display),
		cmocka_unit_test(test_dot_walked_field_names_are_kept),
		cmocka_unit_test(test_empty_result_is_an_empty_list),
		cmocka_unit_test(test_patch_answer_parses_as_one_record),
		cmocka_unit_test(test_null_reads_as_empty_and_missing_system_fields_have_defaults),
		cmocka_unit_test(test_number_where_a_string_is_expected_names_the_field),
		cmocka_unit_test(test_bool_array_and_bare_objects_are_refused),
		cmocka_unit_test(test_record_without_sys_id_is_an_error_naming_its_index),
		cmocka_unit_test(test_bad_sys_id_mod_count_or_date_is_refused),
		cmocka_unit_test(test_invalid_utf8_or_nul_is_refused),
		cmocka_unit_test(test_deep_nesting_is_refused),
		cmocka_unit_test(test_huge_field_is_refused),
		cmocka_unit_test(test_duplicate_key_last_wins),
		cmocka_unit_test(test_truncated_trailing_or_foreign_json_is_refused),
		cmocka_unit_test(test_error_body_instead_of_a_result_is_explained),
		cmocka_unit_test(test_error_bodies_read_as_message_and_detail),
		cmocka_unit_test(test_poll_query_without_watermark_orders_by_time_and_sys_id),
		cmocka_unit_test(test_poll_query_first_page_is_inclusive_from_the_rewound_watermark),
		cmocka_unit_test(test_poll_query_keyset_page_repeats_the_filter_in_each_group),
		cmocka_unit_test(test_poll_query_with_an_or_filter_keeps_its_meaning),
		cmocka_unit_test(test_poll_query_drops_a_trailing_eq),
		cmocka_unit_test(test_poll_query_refuses_nq_orderby_eq_and_empty_terms),
		cmocka_unit_test(test_list_url_encodes_every_parameter),
		cmocka_unit_test(test_record_url_names_the_record_and_fields),
		cmocka_unit_test(test_obs_fields_list_what_every_read_of_a_ticket_asks_for),
		cmocka_unit_test(test_obs_parse_reads_the_requester_walks_and_whether_it_ended),
		cmocka_unit_test(test_oauth_bodies_for_each_grant_are_form_encoded),
		cmocka_unit_test(test_oauth_token_answer_is_parsed),
		cmocka_unit_test(test_oauth_refusals_and_bad_answers_say_why),
		cmocka_unit_test(test_basic_auth_is_sent_and_the_record_parsed),
		cmocka_unit_test(test_session_cookie_is_sent_back),
		cmocka_unit_test(test_oauth_token_is_fetched_once_and_reused),
		cmocka_unit_test(test_oauth_401_refreshes_the_token_and_resubmits_once),
		cmocka_unit_test(test_second_401_is_an_error_naming_the_user),
		cmocka_unit_test(test_refused_refresh_token_falls_back_to_the_password_grant),
		cmocka_unit_test(test_refused_token_fails_the_waiting_requests),
		cmocka_unit_test(test_token_is_refreshed_ahead_of_expiry),
		cmocka_unit_test(test_html_answer_is_eagain_with_the_hibernating_cause),
		cmocka_unit_test(test_patch_is_not_retried_after_a_reset),
		cmocka_unit_test(test_get_is_retried_but_patch_is_not),
		cmocka_unit_test(test_status_errors_map_to_codes_with_causes),
		cmocka_unit_test(test_redirect_is_refused_without_leaking_its_query),
		cmocka_unit_test(test_list_page_sends_the_keyset_query_and_delivers_the_page),
		cmocka_unit_test(test_list_page_skips_by_offset_and_delivers_the_count),
		cmocka_unit_test(test_bad_arguments_are_refused_without_a_callback),
		cmocka_unit_test(test_client_free_cancels_outstanding_requests),
		cmocka_unit_test(test_client_refuses_plain_http_and_missing_credentials),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
