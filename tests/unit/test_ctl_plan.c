/* Tests for daemon/ctl/plan.c: what `imperai-snowctl setup` concludes from
 * ServiceNow's answers. */
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
#include "snow.h"
#include "util.h"

#define SID "0123456789abcdef0123456789abcdef"

static void
parse(const char *json, struct snow_record *r)
{
	char *cause = NULL;

	if (snow_parse_record(json, strlen(json), r, &cause) != 0)
		fail_msg("%s", cause);
}

static void
test_field_type_is_read_from_a_plain_string(void **state)
{
	struct snow_record r;

	(void)state;
	parse("{\"result\":{\"sys_id\":\"" SID "\",\"internal_type\":\"html\"}}", &r);
	assert_string_equal(ctl_setup_field_type(&r), "html");
	snow_record_free(&r);
}

/* A real instance sends internal_type as a reference to sys_glide_object. */
static void
test_field_type_is_read_from_a_reference_object(void **state)
{
	struct snow_record r;

	(void)state;
	parse("{\"result\":{\"sys_id\":\"" SID "\",\"internal_type\":{\"link\":"
	    "\"https://x.service-now.com/api/now/table/sys_glide_object/html\","
	    "\"value\":\"html\"}}}", &r);
	assert_string_equal(ctl_setup_field_type(&r), "html");
	snow_record_free(&r);
}

static void
test_field_type_falls_back_to_the_dot_walked_name_for_a_sys_id(void **state)
{
	struct snow_record r;

	(void)state;
	parse("{\"result\":{\"sys_id\":\"" SID "\",\"internal_type\":\"" SID "\","
	    "\"internal_type.name\":\"string\"}}", &r);
	assert_string_equal(ctl_setup_field_type(&r), "string");
	snow_record_free(&r);
	parse("{\"result\":{\"sys_id\":\"" SID "\",\"internal_type\":\"" SID "\"}}", &r);
	assert_null(ctl_setup_field_type(&r));
	snow_record_free(&r);
}

static void
test_only_utc_time_zones_pass_and_empty_is_not_utc(void **state)
{
	(void)state;
	assert_true(ctl_setup_tz_is_utc("GMT"));
	assert_true(ctl_setup_tz_is_utc("UTC"));
	assert_true(ctl_setup_tz_is_utc("Etc/UTC"));
	assert_false(ctl_setup_tz_is_utc(""));
	assert_false(ctl_setup_tz_is_utc(NULL));
	assert_false(ctl_setup_tz_is_utc("Europe/London"));
	assert_false(ctl_setup_tz_is_utc("America/Los_Angeles"));
}

static void
test_itil_is_preferred_and_rest_api_explorer_is_not_enough(void **state)
{
	char *with[] = { "rest_api_explorer", "admin", "itil" };
	char *without[] = { "rest_api_explorer", "snc_internal" };
	char *incident_only[] = { "sn_incident_write" };

	(void)state;
	assert_string_equal(ctl_setup_role_for("incident", with, 3), "itil");
	assert_null(ctl_setup_role_for("incident", without, 2));
	assert_string_equal(ctl_setup_role_for("incident", incident_only, 1), "sn_incident_write");
	assert_null(ctl_setup_role_for("sc_req_item", incident_only, 1));
	assert_null(ctl_setup_role_for("incident", NULL, 0));
}

static void
test_field_body_creates_an_html_field_of_65000(void **state)
{
	char *b = ctl_setup_field_body("incident", "u_imperai_verification");
	json_object *o = json_tokener_parse(b), *v;

	(void)state;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "name", &v));
	assert_string_equal(json_object_get_string(v), "incident");
	assert_true(json_object_object_get_ex(o, "element", &v));
	assert_string_equal(json_object_get_string(v), "u_imperai_verification");
	assert_true(json_object_object_get_ex(o, "internal_type", &v));
	assert_string_equal(json_object_get_string(v), "html");
	assert_true(json_object_object_get_ex(o, "column_label", &v));
	assert_string_equal(json_object_get_string(v), "imper.ai Verification");
	assert_true(json_object_object_get_ex(o, "max_length", &v));
	assert_int_equal(json_object_get_int(v), 65000);
	json_object_put(o);
	free(b);
}

static void
page_of(struct snow_list *l, const char *name, const char *email, const char *user)
{
	memset(l, 0, sizeof(*l));
	l->v = xcalloc(1, sizeof(*l->v));
	l->n = 1;
	snow_record_set(&l->v[0], "number", "INC0010001");
	snow_record_set(&l->v[0], "caller_id.name", name);
	snow_record_set(&l->v[0], "caller_id.email", email);
	snow_record_set(&l->v[0], "caller_id.user_name", user);
}

static void
test_requester_check_reads_the_newest_tickets_requester(void **state)
{
	char *fields[CTL_REQUESTER_NFIELDS];
	char *q = ctl_requester_query("caller_id", fields);

	(void)state;
	assert_string_equal(q, "caller_idISNOTEMPTY^ORDERBYDESCsys_updated_on");
	assert_string_equal(fields[3], "caller_id.email");
	assert_string_equal(fields[4], "caller_id.user_name");
	free(q);
	for (size_t i = 0; i < CTL_REQUESTER_NFIELDS; i++)
		free(fields[i]);
}

static void
test_requester_hidden_by_acls_is_a_problem_naming_what_to_grant(void **state)
{
	struct snow_list l = { 0 };
	char *msg;

	(void)state;
	assert_int_equal(ctl_requester_verdict("incident", "caller_id", "imperai.integration",
	    &l, &msg), 0);
	free(msg);
	page_of(&l, "", "", "");
	assert_int_equal(ctl_requester_verdict("incident", "caller_id", "imperai.integration",
	    &l, &msg), -1);
	assert_non_null(strstr(msg, "imperai.integration cannot read the requester of "
	    "INC0010001"));
	assert_non_null(strstr(msg, "sys_user.email"));
	free(msg);
	snow_list_free(&l);
	page_of(&l, "", "abel@example.com", "");
	assert_int_equal(ctl_requester_verdict("incident", "caller_id", "u", &l, &msg), 1);
	free(msg);
	snow_list_free(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field_type_is_read_from_a_plain_string),
		cmocka_unit_test(test_requester_check_reads_the_newest_tickets_requester),
		cmocka_unit_test(test_requester_hidden_by_acls_is_a_problem_naming_what_to_grant),
		cmocka_unit_test(test_field_type_is_read_from_a_reference_object),
		cmocka_unit_test(test_field_type_falls_back_to_the_dot_walked_name_for_a_sys_id),
		cmocka_unit_test(test_only_utc_time_zones_pass_and_empty_is_not_utc),
		cmocka_unit_test(test_itil_is_preferred_and_rest_api_explorer_is_not_enough),
		cmocka_unit_test(test_field_body_creates_an_html_field_of_65000),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
