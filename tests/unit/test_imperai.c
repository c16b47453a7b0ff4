/* Tests for lib/imperai.c: builders, parsers (real and broken bodies), risk
 * bands, response handling, and the client's requests over a fake http.
 *
 * Fixtures: tests/data/imperai/ (under $top_srcdir, default "."). */
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

#include "config.h"
#include "http.h"
#include "imperai.h"
#include "util.h"

#define VFULL \
	"{\"id\":\"vr_0a1b2c\",\"ticket\":{\"instance\":\"dev12345\",\"table\":\"incident\"," \
	"\"sys_id\":\"46d44a5fa9fe198101b5a8b5de1e3e13\",\"number\":\"INC0010001\"," \
	"\"url\":\"https://dev12345.service-now.com/incident.do?sys_id=46d4\"}," \
	"\"status\":\"passed\",\"channel\":\"email\",\"recipient_masked\":\"j***e@e***.com\"," \
	"\"initiated_by\":\"Beth Anglin\",\"risk_score\":2," \
	"\"recommendation\":\"User verified successfully - Proceed with action\"," \
	"\"analysis_summary\":\"All challenge questions answered correctly.\"," \
	"\"additional_info\":null,\"send_link_url\":\"http://127.0.0.1:8081/send/tok1\"," \
	"\"details_url\":\"http://127.0.0.1:8081/verifications/vr_0a1b2c\"," \
	"\"expires_at\":\"2026-11-25T10:00:00Z\",\"created_at\":\"2026-11-24T10:00:00Z\"," \
	"\"completed_at\":\"2026-11-24T10:05:00Z\",\"updated_at\":\"2026-11-24T10:05:00+00:00\"," \
	"\"sent_at\":\"2026-11-24T10:01:00Z\"," \
	"\"action\":{\"type\":\"password_reset\",\"status\":\"pending\",\"completed_at\":null," \
	"\"automated\":false},\"category\":\"password_reset\"," \
	"\"requested_action\":\"password_reset\",\"subject\":\"Reset my password\"}"

/* Only the fields the client requires. */
#define VMIN_HEAD \
	"{\"id\":\"vr_1\",\"ticket\":{\"instance\":\"i\",\"table\":\"incident\"," \
	"\"sys_id\":\"s1\",\"number\":\"INC1\"},\"status\":\"pending\"," \
	"\"send_link_url\":\"https://a/send/t\",\"details_url\":\"https://a/v/vr_1\"," \
	"\"expires_at\":\"2026-11-25T10:00:00Z\",\"updated_at\":\"2026-11-24T10:00:00Z\"," \
	"\"action\":{\"type\":\"none\",\"status\":\"none\",\"automated\":false}"
#define VMIN VMIN_HEAD "}"

static const char *
srcdir(void)
{
	const char *d = getenv("top_srcdir");

	return d != NULL && *d != '\0' ? d : ".";
}

static int
parse_v(const char *body, struct imperai_verification *v, char **cause)
{
	*cause = NULL;
	return imperai_parse_verification(body, strlen(body), "test", v, cause);
}

/* Parses body, expecting failure with exactly want as the cause. */
static void
assert_v_fails(const char *body, const char *want)
{
	struct imperai_verification v;
	char *cause = NULL;

	assert_int_equal(imperai_parse_verification(body, strlen(body), "test", &v, &cause),
	    -EBADMSG);
	assert_non_null(cause);
	if (strcmp(cause, want) != 0)
		fail_msg("cause: got \"%s\", want \"%s\"", cause, want);
	assert_null(v.id);
	free(cause);
}

/* VMIN with one extra member appended (a later duplicate replaces it). */
static char *
vmin_with(const char *member)
{
	return xprintf("%s,%s}", VMIN_HEAD, member);
}

static void
assert_vmin_with_fails(const char *member, const char *want)
{
	char *body = vmin_with(member);

	assert_v_fails(body, want);
	free(body);
}

static void
test_status_names_round_trip(void **state)
{
	enum imperai_status s;
	enum imperai_action_status a;

	(void)state;
	for (int i = IMPERAI_PENDING; i <= IMPERAI_CANCELED; i++) {
		assert_int_equal(imperai_status_parse(imperai_status_name(i), &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(imperai_status_name(IMPERAI_NOT_ENOUGH_QUESTIONS), "not_enough_questions");
	assert_int_equal(imperai_status_parse("Passed", &s), -EINVAL);
	assert_int_equal(imperai_status_parse(NULL, &s), -EINVAL);
	assert_false(imperai_status_is_final(IMPERAI_IN_PROGRESS));
	assert_false(imperai_status_is_final(IMPERAI_LINK_SENT));
	assert_true(imperai_status_is_final(IMPERAI_TIMED_OUT));
	assert_true(imperai_status_is_final(IMPERAI_CANCELED));
	assert_int_equal(imperai_action_status_parse("completed", &a), 0);
	assert_int_equal(a, IMPERAI_ACTION_COMPLETED);
	assert_string_equal(imperai_action_status_name(IMPERAI_ACTION_NONE), "none");
}

static void
test_risk_bands_default_and_custom(void **state)
{
	static const enum imperai_risk want[11] = {
		IMPERAI_RISK_VERIFIED, IMPERAI_RISK_VERIFIED, IMPERAI_RISK_VERIFIED,
		IMPERAI_RISK_VERIFIED, IMPERAI_RISK_MEDIUM, IMPERAI_RISK_MEDIUM,
		IMPERAI_RISK_MEDIUM, IMPERAI_RISK_HIGH, IMPERAI_RISK_HIGH, IMPERAI_RISK_HIGH,
		IMPERAI_RISK_HIGH,
	};

	(void)state;
	for (int i = 0; i <= 10; i++)
		assert_int_equal(imperai_risk_level(i, 3, 6), want[i]);
	assert_int_equal(imperai_risk_level(-1, 3, 6), IMPERAI_RISK_UNKNOWN);
	assert_int_equal(imperai_risk_level(11, 3, 6), IMPERAI_RISK_UNKNOWN);
	assert_int_equal(imperai_risk_level(2, 1, 5), IMPERAI_RISK_MEDIUM);
	assert_int_equal(imperai_risk_level(6, 1, 5), IMPERAI_RISK_HIGH);
	assert_int_equal(imperai_risk_level(5, 5, 5), IMPERAI_RISK_VERIFIED);
	assert_string_equal(imperai_risk_name(IMPERAI_RISK_VERIFIED), "Verified");
	assert_string_equal(imperai_risk_name(IMPERAI_RISK_MEDIUM), "Medium");
	assert_string_equal(imperai_risk_name(IMPERAI_RISK_HIGH), "High");
	assert_string_equal(imperai_risk_name(IMPERAI_RISK_UNKNOWN), "Unknown");
}

static void
fill_create(struct imperai_create *c)
{
	memset(c, 0, sizeof *c);
	c->ticket.instance = xstrdup("dev12345");
	c->ticket.table = xstrdup("incident");
	c->ticket.sys_id = xstrdup("46d44a5fa9fe198101b5a8b5de1e3e13");
	c->ticket.number = xstrdup("INC0010001");
	c->ticket.url = xstrdup("https://dev12345.service-now.com/incident.do?sys_id=46d4");
	c->subject = xstrdup("Reset \"my\" password </script> \xc3\xa9");
	c->description = xstrdup("line1\nline2\t\x01");
	c->category = xstrdup("password_reset");
	c->action = xstrdup("password_reset");
	c->requester_name = xstrdup("Jane Doe");
	c->requester_email = xstrdup("jane@example.com");
	c->requester_user_name = xstrdup("jane.doe");
	c->assigned_agent = xstrdup("Beth Anglin");
	c->idempotency_key = xstrdup("dev12345/incident/46d4/1");
}

static const char *
jget(json_object *o, const char *path0, const char *path1)
{
	json_object *x;

	if (!json_object_object_get_ex(o, path0, &x))
		return "<absent>";
	if (path1 != NULL && !json_object_object_get_ex(x, path1, &x))
		return "<absent>";
	return x == NULL ? "<null>" : json_object_get_string(x);
}

static void
test_create_body_has_every_field_escaped(void **state)
{
	struct imperai_create c;
	json_object *o;
	char *body;

	(void)state;
	fill_create(&c);
	body = imperai_create_body(&c);
	assert_non_null(strstr(body, "\\\"my\\\""));
	assert_non_null(strstr(body, "\\n"));
	assert_null(strstr(body, "\\/"));	/* no slash escaping */
	assert_null(strstr(body, "Idempotency"));	/* the key is a header */
	o = json_tokener_parse(body);
	assert_non_null(o);
	assert_string_equal(jget(o, "ticket", "instance"), "dev12345");
	assert_string_equal(jget(o, "ticket", "table"), "incident");
	assert_string_equal(jget(o, "ticket", "sys_id"), "46d44a5fa9fe198101b5a8b5de1e3e13");
	assert_string_equal(jget(o, "ticket", "number"), "INC0010001");
	assert_string_equal(jget(o, "ticket", "url"), c.ticket.url);
	assert_string_equal(jget(o, "subject", NULL), c.subject);
	assert_string_equal(jget(o, "description", NULL), c.description);
	assert_string_equal(jget(o, "category", NULL), "password_reset");
	assert_string_equal(jget(o, "requested_action", NULL), "password_reset");
	assert_string_equal(jget(o, "requester", "name"), "Jane Doe");
	assert_string_equal(jget(o, "requester", "email"), "jane@example.com");
	assert_string_equal(jget(o, "requester", "user_name"), "jane.doe");
	assert_string_equal(jget(o, "assigned_agent", NULL), "Beth Anglin");
	json_object_put(o);
	free(body);
	imperai_create_free(&c);
	assert_null(c.subject);
}

static void
test_create_body_null_fields_and_default_action(void **state)
{
	struct imperai_create c;
	json_object *o;
	char *body;

	(void)state;
	memset(&c, 0, sizeof c);
	c.ticket.number = xstrdup("INC1");
	body = imperai_create_body(&c);
	o = json_tokener_parse(body);
	assert_string_equal(jget(o, "requested_action", NULL), "none");
	assert_string_equal(jget(o, "assigned_agent", NULL), "<null>");
	assert_string_equal(jget(o, "ticket", "url"), "<null>");
	assert_string_equal(jget(o, "requester", "email"), "<null>");
	json_object_put(o);
	free(body);
	imperai_create_free(&c);
}

static void
test_parse_full_verification(void **state)
{
	struct imperai_verification v;
	char *cause;

	(void)state;
	assert_int_equal(parse_v(VFULL, &v, &cause), 0);
	assert_null(cause);
	assert_string_equal(v.id, "vr_0a1b2c");
	assert_string_equal(v.ticket.instance, "dev12345");
	assert_string_equal(v.ticket.table, "incident");
	assert_string_equal(v.ticket.sys_id, "46d44a5fa9fe198101b5a8b5de1e3e13");
	assert_string_equal(v.ticket.number, "INC0010001");
	assert_non_null(v.ticket.url);
	assert_int_equal(v.status, IMPERAI_PASSED);
	assert_string_equal(v.channel, "email");
	assert_string_equal(v.recipient_masked, "j***e@e***.com");
	assert_string_equal(v.initiated_by, "Beth Anglin");
	assert_int_equal(v.risk_score, 2);
	assert_string_equal(v.recommendation, "User verified successfully - Proceed with action");
	assert_non_null(v.analysis_summary);
	assert_null(v.additional_info);
	assert_string_equal(v.send_link_url, "http://127.0.0.1:8081/send/tok1");
	assert_string_equal(v.details_url, "http://127.0.0.1:8081/verifications/vr_0a1b2c");
	assert_int_equal(v.expires_at, 1795600800);
	assert_int_equal(v.created_at, 1795514400);
	assert_int_equal(v.completed_at, 1795514700);
	assert_int_equal(v.updated_at, 1795514700);
	assert_int_equal(v.sent_at, 1795514460);	/* the latest send */
	assert_string_equal(v.action.type, "password_reset");
	assert_int_equal(v.action.status, IMPERAI_ACTION_PENDING);
	assert_int_equal(v.action.completed_at, 0);
	assert_int_equal(v.action.automated, 0);
	assert_string_equal(v.category, "password_reset");
	assert_string_equal(v.requested_action, "password_reset");
	assert_string_equal(v.subject, "Reset my password");
	imperai_verification_free(&v);
	assert_null(v.id);
	assert_int_equal(v.risk_score, -1);
}

static void
test_parse_minimal_verification_absent_means_null(void **state)
{
	struct imperai_verification v;
	char *cause;

	(void)state;
	assert_int_equal(parse_v(VMIN, &v, &cause), 0);
	assert_int_equal(v.status, IMPERAI_PENDING);
	assert_int_equal(v.risk_score, -1);
	assert_null(v.channel);
	assert_null(v.ticket.url);
	assert_null(v.subject);
	assert_int_equal(v.completed_at, 0);
	assert_int_equal(v.created_at, 0);
	assert_int_equal(v.action.status, IMPERAI_ACTION_NONE);
	imperai_verification_free(&v);
}

static void
test_parse_tolerates_unknown_fields_and_nested_junk(void **state)
{
	struct imperai_verification v;
	char *body, *cause;

	(void)state;
	body = vmin_with("\"future_field\":{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\"},"
	    "\"score_v2\":3.5,\"tags\":[\"x\",[],{}],\"flag\":true");
	assert_int_equal(parse_v(body, &v, &cause), 0);
	assert_string_equal(v.id, "vr_1");
	imperai_verification_free(&v);
	free(body);
	/* unknown members inside known objects too */
	body = xprintf("%s", "{\"id\":\"vr_1\",\"ticket\":{\"instance\":\"i\",\"table\":\"t\","
	    "\"sys_id\":\"s\",\"number\":\"n\",\"extra\":[1]},\"status\":\"canceled\","
	    "\"send_link_url\":\"https://a/s\",\"details_url\":\"https://a/d\","
	    "\"expires_at\":\"2026-11-25T10:00:00.123Z\",\"updated_at\":\"2026-11-24T10:00:00Z\","
	    "\"action\":{\"type\":\"none\",\"status\":\"none\",\"automated\":false,\"why\":{}}}");
	assert_int_equal(parse_v(body, &v, &cause), 0);
	assert_int_equal(v.status, IMPERAI_CANCELED);
	imperai_verification_free(&v);
	free(body);
}

static void
test_parse_rejects_wrong_types_naming_the_field(void **state)
{
	(void)state;
	assert_vmin_with_fails("\"risk_score\":\"2\"",
	    "test: risk_score: expected integer 0-10 or null, got string");
	assert_vmin_with_fails("\"risk_score\":11",
	    "test: risk_score: expected integer 0-10 or null, got 11");
	assert_vmin_with_fails("\"risk_score\":-1",
	    "test: risk_score: expected integer 0-10 or null, got -1");
	assert_vmin_with_fails("\"risk_score\":2.0",
	    "test: risk_score: expected integer 0-10 or null, got non-integer number");
	assert_vmin_with_fails("\"risk_score\":99999999999999999999",
	    "test: risk_score: expected integer 0-10 or null, got a huge integer");
	assert_vmin_with_fails("\"risk_score\":true",
	    "test: risk_score: expected integer 0-10 or null, got boolean");
	assert_vmin_with_fails("\"status\":\"approved\"", "test: status: unknown value \"approved\"");
	assert_vmin_with_fails("\"status\":3", "test: status: expected string, got integer");
	assert_vmin_with_fails("\"status\":null", "test: status: expected string, got null");
	assert_vmin_with_fails("\"channel\":[\"email\"]",
	    "test: channel: expected string or null, got array");
	assert_vmin_with_fails("\"channel\":\"\"", "test: channel: empty string");
	assert_vmin_with_fails("\"ticket\":\"INC1\"", "test: ticket: expected object, got string");
	assert_vmin_with_fails("\"ticket\":{\"instance\":\"i\",\"table\":\"t\",\"number\":\"n\"}",
	    "test: ticket.sys_id: missing");
	assert_vmin_with_fails("\"ticket\":{\"instance\":\"i\",\"table\":\"t\",\"sys_id\":7,"
	    "\"number\":\"n\"}", "test: ticket.sys_id: expected string, got integer");
	assert_vmin_with_fails("\"sent_at\":\"yesterday\"",
	    "test: sent_at: expected RFC 3339 time, got \"yesterday\"");
	assert_vmin_with_fails("\"updated_at\":\"yesterday\"",
	    "test: updated_at: expected RFC 3339 time, got \"yesterday\"");
	assert_vmin_with_fails("\"updated_at\":1732442400",
	    "test: updated_at: expected RFC 3339 time, got integer");
	assert_vmin_with_fails("\"updated_at\":\"2026-11-24 10:00:00\"",
	    "test: updated_at: expected RFC 3339 time, got \"2026-11-24 10:00:00\"");
	assert_vmin_with_fails("\"created_at\":\"1970-01-01T00:00:00Z\"",
	    "test: created_at: expected a time after 1970-01-01, got \"1970-01-01T00:00:00Z\"");
	assert_vmin_with_fails("\"created_at\":\"0689-11-24T10:02:00Z\"",
	    "test: created_at: expected a time after 1970-01-01, got \"0689-11-24T10:02:00Z\"");
	assert_vmin_with_fails("\"completed_at\":{}",
	    "test: completed_at: expected RFC 3339 time or null, got object");
	assert_vmin_with_fails("\"expires_at\":null",
	    "test: expires_at: expected RFC 3339 time, got null");
	assert_vmin_with_fails("\"action\":{\"type\":\"none\",\"status\":\"none\",\"automated\":\"no\"}",
	    "test: action.automated: expected boolean, got string");
	assert_vmin_with_fails("\"action\":{\"type\":\"x\",\"status\":\"done\",\"automated\":true}",
	    "test: action.status: unknown value \"done\"");
	assert_vmin_with_fails("\"action\":null", "test: action: expected object, got null");
	assert_vmin_with_fails("\"send_link_url\":\"javascript:alert(1)\"",
	    "test: send_link_url: expected an http(s) URL");
	assert_vmin_with_fails("\"details_url\":null",
	    "test: details_url: expected string, got null");
	assert_vmin_with_fails("\"id\":\"../../admin\"",
	    "test: id: expected 1-128 characters of [A-Za-z0-9_-]");
	assert_vmin_with_fails("\"id\":\"\"", "test: id: expected 1-128 characters of [A-Za-z0-9_-]");
	assert_vmin_with_fails("\"recommendation\":{\"text\":\"go\"}",
	    "test: recommendation: expected string or null, got object");
}

static void
test_parse_rejects_missing_required_fields(void **state)
{
	static const struct {
		const char *drop, *want;
	} cases[] = {
		{ "\"id\":\"vr_1\",", "test: id: missing" },
		{ "\"status\":\"pending\",", "test: status: missing" },
		{ "\"send_link_url\":\"https://a/send/t\",", "test: send_link_url: missing" },
		{ "\"expires_at\":\"2026-11-25T10:00:00Z\",", "test: expires_at: missing" },
		{ "\"updated_at\":\"2026-11-24T10:00:00Z\",", "test: updated_at: missing" },
		{ "\"number\":\"INC1\"", "test: ticket.number: missing" },
		{ "\"type\":\"none\",", "test: action.type: missing" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *body = xstrdup(VMIN), *p = strstr(body, cases[i].drop);
		size_t n = strlen(cases[i].drop);
		assert_non_null(p);
		memmove(p, p + n, strlen(p + n) + 1);
		if (strstr(body, ",}") != NULL)	/* ticket.number was last */
			memmove(strstr(body, ",}"), strstr(body, ",}") + 1, strlen(strstr(body, ",}")));
		assert_v_fails(body, cases[i].want);
		free(body);
	}
	assert_v_fails("{\"id\":\"vr_1\"}", "test: ticket: missing");
}

static void
test_parse_rejects_bad_strings(void **state)
{
	struct imperai_verification v;
	char *big, *member, *cause;

	(void)state;
	assert_vmin_with_fails("\"subject\":\"caf\xc3\"", "test: subject: string is not valid UTF-8");
	assert_vmin_with_fails("\"subject\":\"\xed\xa0\x80\"",
	    "test: subject: string is not valid UTF-8");
	assert_vmin_with_fails("\"subject\":\"a\\u0000b\"",
	    "test: subject: string contains a NUL character");
	assert_vmin_with_fails("\"ticket\":{\"instance\":\"i\",\"table\":\"t\",\"sys_id\":\"s\","
	    "\"number\":\"\"}", "test: ticket.number: empty string");
	/* exactly at the cap passes, one byte more fails */
	big = xmalloc(IMPERAI_MAX_STRING + 2);
	memset(big, 'a', IMPERAI_MAX_STRING + 1);
	big[IMPERAI_MAX_STRING] = '\0';
	member = xprintf("\"analysis_summary\":\"%s\"", big);
	free(big);
	big = vmin_with(member);
	assert_int_equal(parse_v(big, &v, &cause), 0);
	assert_int_equal(strlen(v.analysis_summary), IMPERAI_MAX_STRING);
	imperai_verification_free(&v);
	free(big);
	free(member);
	big = xmalloc(IMPERAI_MAX_STRING + 2);
	memset(big, 'a', IMPERAI_MAX_STRING + 1);
	big[IMPERAI_MAX_STRING + 1] = '\0';
	member = xprintf("\"analysis_summary\":\"%s\"", big);
	assert_vmin_with_fails(member,
	    "test: analysis_summary: string of 65537 bytes exceeds the 65536-byte limit");
	free(big);
	free(member);
}

static void
test_parse_invalid_utf8_in_unknown_field_is_ignored(void **state)
{
	struct imperai_verification v;
	char *body = vmin_with("\"junk\":\"\xff\xfe\""), *cause;

	(void)state;
	assert_int_equal(parse_v(body, &v, &cause), 0);
	imperai_verification_free(&v);
	free(body);
}

static void
test_parse_duplicate_keys_last_wins(void **state)
{
	struct imperai_verification v;
	char *body, *cause;

	(void)state;
	body = vmin_with("\"status\":\"failed\",\"risk_score\":1,\"risk_score\":9");
	assert_int_equal(parse_v(body, &v, &cause), 0);
	assert_int_equal(v.status, IMPERAI_FAILED);	/* VMIN said pending first */
	assert_int_equal(v.risk_score, 9);
	imperai_verification_free(&v);
	free(body);
	/* a bad first value does not matter, a bad last one does */
	body = vmin_with("\"risk_score\":\"x\",\"risk_score\":4");
	assert_int_equal(parse_v(body, &v, &cause), 0);
	assert_int_equal(v.risk_score, 4);
	imperai_verification_free(&v);
	free(body);
}

static void
test_parse_rejects_broken_json(void **state)
{
	struct imperai_verification v;
	struct buf deep;
	char *cause = NULL, *want;
	char nul[] = VMIN;

	(void)state;
	assert_v_fails("", "test: body: empty, expected a JSON object");
	assert_v_fails("[1,2]", "test: body: expected a JSON object, got array");
	assert_v_fails("\"vr_1\"", "test: body: expected a JSON object, got string");
	assert_v_fails("<html><body>Service Unavailable</body></html>",
	    "test: body: not valid JSON at byte 0: unexpected character");
	want = xprintf("test: body: not valid JSON at byte %zu: unexpected character",
	    sizeof VMIN - 1);
	assert_v_fails(VMIN "{}", want);	/* trailing data */
	free(want);
	assert_v_fails("{\"id\":\"vr_1\"", "test: body: not valid JSON at byte 12: unexpected end");
	/* a NUL byte inside the body, which strlen-based code would miss */
	nul[10] = '\0';
	assert_int_equal(imperai_parse_verification(nul, sizeof nul - 1, "test", &v, &cause),
	    -EBADMSG);
	assert_string_equal(cause, "test: body: contains a NUL byte");
	free(cause);
	/* nesting deeper than 32 is refused even in an unknown field */
	buf_init(&deep);
	buf_adds(&deep, VMIN_HEAD ",\"junk\":");
	for (int i = 0; i < 40; i++)
		buf_addc(&deep, '[');
	for (int i = 0; i < 40; i++)
		buf_addc(&deep, ']');
	buf_addc(&deep, '}');
	assert_int_equal(parse_v(deep.data, &v, &cause), -EBADMSG);
	assert_non_null(strstr(cause, "nesting too deep"));
	free(cause);
	buf_free(&deep);
}

static void
test_parse_null_cause_is_allowed(void **state)
{
	struct imperai_verification v;

	(void)state;
	assert_int_equal(imperai_parse_verification("{}", 2, "x", &v, NULL), -EBADMSG);
}

#define FEED_ITEM(id, risk) \
	"{\"id\":\"" id "\",\"ticket\":{\"instance\":\"i\",\"table\":\"incident\"," \
	"\"sys_id\":\"s\",\"number\":\"INC1\"},\"status\":\"failed\"," \
	"\"send_link_url\":\"https://a/s\",\"details_url\":\"https://a/d\",\"risk_score\":" risk \
	",\"expires_at\":\"2026-11-25T10:00:00Z\",\"updated_at\":\"2026-11-24T10:00:00Z\"," \
	"\"action\":{\"type\":\"none\",\"status\":\"none\",\"automated\":false}}"

static void
test_parse_feed_pages(void **state)
{
	const char *body = "{\"data\":[" FEED_ITEM("vr_1", "9") "," FEED_ITEM("vr_2", "null")
	    "],\"next_cursor\":\"c1.Mg\",\"has_more\":true,\"unknown\":{}}";
	struct imperai_feed f;
	char *cause = NULL;

	(void)state;
	assert_int_equal(imperai_parse_feed(body, strlen(body), &f, &cause), 0);
	assert_int_equal(f.n, 2);
	assert_string_equal(f.v[0].id, "vr_1");
	assert_int_equal(f.v[0].risk_score, 9);
	assert_int_equal(f.v[1].risk_score, -1);
	assert_string_equal(f.next_cursor, "c1.Mg");
	assert_true(f.has_more);
	imperai_feed_free(&f);
	assert_null(f.v);
	body = "{\"data\":[],\"next_cursor\":\"c1.MA\",\"has_more\":false}";
	assert_int_equal(imperai_parse_feed(body, strlen(body), &f, &cause), 0);
	assert_int_equal(f.n, 0);
	assert_false(f.has_more);
	imperai_feed_free(&f);
}

static void
assert_feed_fails(const char *body, const char *want)
{
	struct imperai_feed f;
	char *cause = NULL;

	assert_int_equal(imperai_parse_feed(body, strlen(body), &f, &cause), -EBADMSG);
	if (cause == NULL || strcmp(cause, want) != 0)
		fail_msg("cause: got \"%s\", want \"%s\"", cause, want);
	assert_null(f.v);
	assert_int_equal(f.n, 0);
	free(cause);
}

static void
test_parse_feed_names_the_bad_item(void **state)
{
	(void)state;
	assert_feed_fails("{\"data\":[" FEED_ITEM("vr_1", "1") "," FEED_ITEM("vr_2", "2") ","
	    FEED_ITEM("vr_3", "3") "," FEED_ITEM("vr_4", "\"high\"") "],\"next_cursor\":\"c\","
	    "\"has_more\":false}",
	    "change feed: data[3].risk_score: expected integer 0-10 or null, got string");
	assert_feed_fails("{\"data\":[" FEED_ITEM("vr_1", "1") ",42],\"next_cursor\":\"c\","
	    "\"has_more\":false}", "change feed: data[1]: expected object, got integer");
	assert_feed_fails("{\"data\":{},\"next_cursor\":\"c\",\"has_more\":false}",
	    "change feed: data: expected array, got object");
	assert_feed_fails("{\"next_cursor\":\"c\",\"has_more\":false}", "change feed: data: missing");
	assert_feed_fails("{\"data\":[],\"has_more\":false}", "change feed: next_cursor: missing");
	assert_feed_fails("{\"data\":[],\"next_cursor\":null,\"has_more\":false}",
	    "change feed: next_cursor: expected string, got null");
	assert_feed_fails("{\"data\":[],\"next_cursor\":\"a b\",\"has_more\":false}",
	    "change feed: next_cursor: expected 1-1024 printable ASCII characters without spaces");
	assert_feed_fails("{\"data\":[],\"next_cursor\":\"c\",\"has_more\":\"false\"}",
	    "change feed: has_more: expected boolean, got string");
	assert_feed_fails("{\"data\":[],\"next_cursor\":\"c\"}", "change feed: has_more: missing");
}

static void
test_parse_error_body(void **state)
{
	const char *b;
	char *s;

	(void)state;
	b = "{\"error\":{\"code\":\"idempotency_conflict\",\"message\":\"Key reused with a different body\"}}";
	s = imperai_parse_error(b, strlen(b));
	assert_string_equal(s, "idempotency_conflict: Key reused with a different body");
	free(s);
	b = "{\"error\":{\"code\":\"unauthorized\"}}";
	s = imperai_parse_error(b, strlen(b));
	assert_string_equal(s, "unauthorized");
	free(s);
	b = "{\"error\":{\"code\":\"x\",\"message\":\"line\\nbreak\\u001b[31m\"}}";
	s = imperai_parse_error(b, strlen(b));
	assert_string_equal(s, "x: line break [31m");
	free(s);
	b = "{\"error\":{\"code\":\"x\",\"message\":\"\xff\xfe\"}}";
	s = imperai_parse_error(b, strlen(b));
	assert_null(s);	/* invalid UTF-8 in a field we read */
	assert_null(imperai_parse_error("{\"error\":\"boom\"}", 16));
	assert_null(imperai_parse_error("{\"message\":\"x\"}", 15));
	assert_null(imperai_parse_error("<html>", 6));
	assert_null(imperai_parse_error(NULL, 0));
	/* ServiceNow-shaped error without a code is not ours */
	b = "{\"error\":{\"message\":\"No Record found\",\"detail\":\"x\"},\"status\":\"failure\"}";
	assert_null(imperai_parse_error(b, strlen(b)));
}

static void
test_parse_error_body_is_capped(void **state)
{
	struct buf b;
	char *s;

	(void)state;
	buf_init(&b);
	buf_adds(&b, "{\"error\":{\"code\":\"x\",\"message\":\"");
	for (int i = 0; i < 2000; i++)
		buf_adds(&b, "\xc3\xa9");
	buf_adds(&b, "\"}}");
	s = imperai_parse_error(b.data, b.len);
	assert_true(strlen(s) <= 512);
	assert_true(util_utf8_valid(s, strlen(s)));
	free(s);
	buf_free(&b);
}

static void
test_parse_error_verification_of_already_final(void **state)
{
	struct imperai_verification v;
	char *body, *cause = NULL;

	(void)state;
	body = xprintf("{\"error\":{\"code\":\"already_final\",\"message\":\"m\",\"verification\":%s}}",
	    VFULL);
	assert_int_equal(imperai_parse_error_verification(body, strlen(body), &v, &cause), 0);
	assert_int_equal(v.status, IMPERAI_PASSED);
	imperai_verification_free(&v);
	free(body);
	body = "{\"error\":{\"code\":\"already_final\",\"verification\":{\"id\":\"vr_1\"}}}";
	assert_int_equal(imperai_parse_error_verification(body, strlen(body), &v, &cause), -EBADMSG);
	assert_string_equal(cause, "error body: error.verification.ticket: missing");
	free(cause);
}

static void
test_verification_json_round_trips(void **state)
{
	struct imperai_verification v, w, c;
	char *json, *json2, *cause;

	(void)state;
	assert_int_equal(parse_v(VFULL, &v, &cause), 0);
	json = imperai_verification_json(&v);
	assert_int_equal(parse_v(json, &w, &cause), 0);
	json2 = imperai_verification_json(&w);
	assert_string_equal(json, json2);
	assert_int_equal(w.updated_at, v.updated_at);
	assert_int_equal(w.risk_score, 2);
	assert_null(w.additional_info);
	imperai_verification_copy(&c, &w);
	assert_ptr_not_equal(c.id, w.id);
	assert_string_equal(c.action.type, "password_reset");
	imperai_verification_free(&v);
	imperai_verification_free(&w);
	imperai_verification_free(&c);
	free(json);
	free(json2);
}

static void
resp_init(struct http_response *r, long status, const char *ctype, const char *body)
{
	memset(r, 0, sizeof *r);
	r->status = status;
	r->content_type = (char *)(uintptr_t)ctype;
	r->body = (char *)(uintptr_t)body;
	r->body_len = body != NULL ? strlen(body) : 0;
	r->retry_after = -1;
	r->total_count = -1;
	r->attempts = 1;
}

static void
assert_response(long status, const char *ctype, const char *body, int want_rc,
    const char *want_cause)
{
	struct imperai_verification v;
	struct http_response r;
	char *cause;

	resp_init(&r, status, ctype, body);
	assert_int_equal(imperai_verification_response(&r, "imper.ai get vr_1", &v, &cause),
	    want_rc);
	if (want_cause == NULL)
		assert_null(cause);
	else if (cause == NULL || strcmp(cause, want_cause) != 0)
		fail_msg("cause: got \"%s\", want \"%s\"", cause, want_cause);
	if (want_rc == 0 || want_rc == -EALREADY)
		assert_non_null(v.id);
	else
		assert_null(v.id);
	imperai_verification_free(&v);
	free(cause);
}

static void
test_response_statuses_map_to_errors(void **state)
{
	char *final = xprintf("{\"error\":{\"code\":\"already_final\",\"message\":\"is passed\","
	    "\"verification\":%s}}", VFULL);

	(void)state;
	assert_response(201, "application/json", VFULL, 0, NULL);
	assert_response(200, "application/json; charset=utf-8", VMIN, 0, NULL);
	assert_response(409, "application/json", final, -EALREADY,
	    "imper.ai get vr_1: HTTP 409: already_final: is passed");
	assert_response(409, "application/json",
	    "{\"error\":{\"code\":\"already_final\",\"message\":\"m\"}}", -EBADMSG,
	    "imper.ai get vr_1: HTTP 409 already_final: error body: error.verification: missing");
	assert_response(409, "application/json",
	    "{\"error\":{\"code\":\"idempotency_conflict\",\"message\":\"different body\"}}",
	    -EEXIST, "imper.ai get vr_1: HTTP 409: idempotency_conflict: different body");
	assert_response(401, "application/json",
	    "{\"error\":{\"code\":\"unauthorized\",\"message\":\"bad key\"}}", -EACCES,
	    "imper.ai get vr_1: HTTP 401: unauthorized: bad key");
	assert_response(404, "application/json", "{\"error\":{\"code\":\"not_found\"}}", -ENOENT,
	    "imper.ai get vr_1: HTTP 404: not_found");
	assert_response(400, NULL, "{\"error\":{\"code\":\"invalid_request\"}}", -EINVAL,
	    "imper.ai get vr_1: HTTP 400: invalid_request");
	assert_response(503, "text/html", "<html>down</html>", -EIO,
	    "imper.ai get vr_1: HTTP 503: an HTML page, not JSON");
	assert_response(502, NULL, NULL, -EIO, "imper.ai get vr_1: HTTP 502: no JSON error body");
	assert_response(200, "text/html", "<html>maintenance</html>", -EBADMSG,
	    "imper.ai get vr_1: HTTP 200: an HTML page, not JSON");
	assert_response(200, NULL, "  <!DOCTYPE html>", -EBADMSG,
	    "imper.ai get vr_1: HTTP 200: an HTML page, not JSON");
	assert_response(200, "application/json", "{\"id\":", -EBADMSG,
	    "imper.ai get vr_1: body: not valid JSON at byte 6: unexpected end");
	assert_response(302, NULL, "", -EPROTO, "imper.ai get vr_1: HTTP 302: no JSON error body");
	free(final);
}

static void
test_response_429_and_transport_errors(void **state)
{
	struct imperai_verification v;
	struct http_response r;
	char *cause;

	(void)state;
	resp_init(&r, 429, "application/json", "{\"error\":{\"code\":\"rate_limited\"}}");
	r.retry_after = 7;
	assert_int_equal(imperai_verification_response(&r, "imper.ai create", &v, &cause), -EAGAIN);
	assert_string_equal(cause, "imper.ai create: HTTP 429: rate_limited (retry after 7 s)");
	free(cause);
	resp_init(&r, 0, NULL, NULL);
	r.error = HTTP_E_TIMEOUT;
	r.errmsg = (char *)(uintptr_t)"Operation timed out after 30000 ms";
	r.attempts = 4;
	assert_int_equal(imperai_verification_response(&r, "imper.ai create", &v, &cause),
	    -ETIMEDOUT);
	assert_string_equal(cause,
	    "imper.ai create: timed out: Operation timed out after 30000 ms (after 4 attempts)");
	free(cause);
	r.error = HTTP_E_CANCELED;
	r.errmsg = NULL;
	assert_int_equal(imperai_verification_response(&r, "x", &v, &cause), -ECANCELED);
	free(cause);
	r.error = HTTP_E_CONNECT;
	assert_int_equal(imperai_verification_response(&r, "x", &v, &cause), -ECONNREFUSED);
	free(cause);
	r.error = HTTP_E_BUDGET;
	assert_int_equal(imperai_verification_response(&r, "x", &v, &cause), -EAGAIN);
	free(cause);
}

static void
test_feed_response(void **state)
{
	const char *body = "{\"data\":[" FEED_ITEM("vr_1", "9") "],\"next_cursor\":\"c1.MQ\","
	    "\"has_more\":false}";
	struct http_response r;
	struct imperai_feed f;
	char *cause;

	(void)state;
	resp_init(&r, 200, "application/json", body);
	assert_int_equal(imperai_feed_response(&r, &f, &cause), 0);
	assert_int_equal(f.n, 1);
	imperai_feed_free(&f);
	resp_init(&r, 400, "application/json",
	    "{\"error\":{\"code\":\"invalid_cursor\",\"message\":\"cannot decode\"}}");
	assert_int_equal(imperai_feed_response(&r, &f, &cause), -EINVAL);
	assert_string_equal(cause, "imper.ai changes: HTTP 400: invalid_cursor: cannot decode");
	free(cause);
}

/* A fake http layer: weak, so a build that links the real http.c keeps it
 * (the client tests then skip). */
struct fake_req {
	char	*method, *url, *body;
	char	**headers;
	size_t	 nheaders;
	int	 retry_safe;
	http_done_fn done;
	void	*arg;
};
static struct fake_req fake_last;
static int fake_pool_token;
static int fake_inits;

__attribute__((weak)) struct http_pool *
http_pool_new(struct http_client *c, const struct http_pool_opts *o, char **cause)
{
	(void)c;
	(void)cause;
	assert_string_equal(o->name, "imperai");
	return (struct http_pool *)&fake_pool_token;
}

__attribute__((weak)) void
http_request_init(struct http_request *r, const char *method, char *url)
{
	memset(r, 0, sizeof *r);
	r->method = method;
	r->url = url;
	fake_inits++;
}

__attribute__((weak)) void
http_request_free(struct http_request *r)
{
	free(r->url);
	free(r->body);
	for (size_t i = 0; i < r->nheaders; i++)
		free(r->headers[i]);
	free(r->headers);
	memset(r, 0, sizeof *r);
}

__attribute__((weak)) void
http_request_header(struct http_request *r, const char *fmt, ...)
{
	va_list ap;

	r->headers = xreallocarray(r->headers, r->nheaders + 1, sizeof *r->headers);
	va_start(ap, fmt);
	r->headers[r->nheaders++] = xvprintf(fmt, ap);
	va_end(ap);
}

__attribute__((weak)) void
http_submit(struct http_pool *p, struct http_request *r, http_done_fn done, void *arg)
{
	assert_ptr_equal(p, &fake_pool_token);
	fake_last.method = xstrdup(r->method);
	fake_last.url = r->url;
	fake_last.body = r->body;
	fake_last.headers = r->headers;
	fake_last.nheaders = r->nheaders;
	fake_last.retry_safe = r->retry_safe;
	fake_last.done = done;
	fake_last.arg = arg;
}

static void
fake_reset(void)
{
	free(fake_last.method);
	free(fake_last.url);
	free(fake_last.body);
	for (size_t i = 0; i < fake_last.nheaders; i++)
		free(fake_last.headers[i]);
	free(fake_last.headers);
	memset(&fake_last, 0, sizeof fake_last);
}

static const char *
fake_header(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < fake_last.nheaders; i++) {
		if (strncmp(fake_last.headers[i], name, n) == 0 && fake_last.headers[i][n] == ':')
			return fake_last.headers[i] + n + 2;
	}
	return NULL;
}

static void
fake_answer(long status, const char *body)
{
	struct http_response r;

	resp_init(&r, status, "application/json", body);
	fake_last.done(&r, fake_last.arg);
}

struct got {
	int	 calls, err;
	long	 status;
	char	*id;
	char	*cause;
	size_t	 n;
	char	*cursor;
};

static void
got_verification(int err, long status, const char *cause, struct imperai_verification *v,
    void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->err = err;
	g->status = status;
	g->cause = cause != NULL ? xstrdup(cause) : NULL;
	/* move the id out, as a caller keeping v would */
	g->id = v != NULL ? v->id : NULL;
	if (v != NULL)
		v->id = NULL;
}

static void
got_feed(int err, const char *cause, struct imperai_feed *f, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->err = err;
	g->cause = cause != NULL ? xstrdup(cause) : NULL;
	g->n = f != NULL ? f->n : 0;
	g->cursor = f != NULL ? xstrdup(f->next_cursor) : NULL;
}

static void
got_free(struct got *g)
{
	free(g->id);
	free(g->cause);
	free(g->cursor);
	memset(g, 0, sizeof *g);
}

static struct imperai_client *
client(struct config *c)
{
	struct imperai_client *ic;
	char *cause = NULL;

	memset(c, 0, sizeof *c);
	c->imperai.api_url = (char *)(uintptr_t)"http://127.0.0.1:8081/";
	c->imperai.api_key = (char *)(uintptr_t)"sim-api-key";
	c->imperai.http.concurrency = 4;
	c->imperai.http.timeout = 30;
	ic = imperai_client_new(c, NULL, &cause);
	assert_null(cause);
	assert_non_null(ic);
	return ic;
}

/* 0 when the real http.c was linked instead of the fakes. */
static int
fake_http_linked(void)
{
	struct http_request r;
	int before = fake_inits;

	http_request_init(&r, "GET", xstrdup("http://127.0.0.1/"));
	http_request_free(&r);
	return fake_inits > before;
}

static void
test_client_create_sends_key_and_idempotency_key(void **state)
{
	struct imperai_create req;
	struct imperai_client *ic;
	struct config c;
	struct got g = { 0 };

	(void)state;
	if (!fake_http_linked())
		skip();
	ic = client(&c);
	fill_create(&req);
	imperai_create(ic, &req, got_verification, &g);
	assert_string_equal(fake_last.method, "POST");
	assert_string_equal(fake_last.url, "http://127.0.0.1:8081/v1/verification-requests");
	assert_string_equal(fake_header("Authorization"), "Bearer sim-api-key");
	assert_string_equal(fake_header("Idempotency-Key"), "dev12345/incident/46d4/1");
	assert_string_equal(fake_header("Content-Type"), "application/json");
	assert_true(fake_last.retry_safe);
	assert_non_null(strstr(fake_last.body, "\"requested_action\":\"password_reset\""));
	assert_int_equal(g.calls, 0);	/* only from http_perform */
	fake_answer(201, VFULL);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.err, 0);
	assert_int_equal(g.status, 201);
	assert_string_equal(g.id, "vr_0a1b2c");
	got_free(&g);
	fake_reset();
	/* a key that could break the header is encoded, the same way each time */
	str_replace(&req.idempotency_key, "a\r\nX-Evil: 1%");
	imperai_create(ic, &req, got_verification, &g);
	assert_string_equal(fake_header("Idempotency-Key"), "a%0D%0AX-Evil:%201%25");
	assert_null(fake_header("X-Evil"));
	fake_answer(400, "{\"error\":{\"code\":\"invalid_idempotency_key\"}}");
	assert_int_equal(g.err, -EINVAL);
	got_free(&g);
	fake_reset();
	imperai_create_free(&req);
	imperai_client_free(ic);
}

static void
test_client_get_and_cancel_paths(void **state)
{
	struct imperai_client *ic;
	struct config c;
	struct got g = { 0 };
	char *final;

	(void)state;
	if (!fake_http_linked())
		skip();
	ic = client(&c);
	imperai_get(ic, "vr_0a1b2c", got_verification, &g);
	assert_string_equal(fake_last.method, "GET");
	assert_string_equal(fake_last.url, "http://127.0.0.1:8081/v1/verification-requests/vr_0a1b2c");
	assert_null(fake_header("Idempotency-Key"));
	fake_answer(404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such request\"}}");
	assert_int_equal(g.err, -ENOENT);
	assert_null(g.id);
	assert_string_equal(g.cause, "imper.ai get vr_0a1b2c: HTTP 404: not_found: no such request");
	got_free(&g);
	fake_reset();
	imperai_cancel(ic, "vr_0a1b2c", got_verification, &g);
	assert_string_equal(fake_last.method, "POST");
	assert_string_equal(fake_last.url,
	    "http://127.0.0.1:8081/v1/verification-requests/vr_0a1b2c/cancel");
	assert_true(fake_last.retry_safe);
	final = xprintf("{\"error\":{\"code\":\"already_final\",\"verification\":%s}}", VFULL);
	fake_answer(409, final);
	free(final);
	assert_int_equal(g.err, -EALREADY);
	assert_string_equal(g.id, "vr_0a1b2c");
	got_free(&g);
	fake_reset();
	/* an id cannot leave its path segment */
	imperai_get(ic, "../admin?x=1#", got_verification, &g);
	assert_string_equal(fake_last.url,
	    "http://127.0.0.1:8081/v1/verification-requests/..%2Fadmin%3Fx%3D1%23");
	fake_answer(404, "{\"error\":{\"code\":\"not_found\"}}");
	assert_string_equal(g.cause, "imper.ai get (invalid id): HTTP 404: not_found");
	got_free(&g);
	fake_reset();
	imperai_client_free(ic);
}

static void
test_client_changes_encodes_cursor(void **state)
{
	struct imperai_client *ic;
	struct config c;
	struct got g = { 0 };

	(void)state;
	if (!fake_http_linked())
		skip();
	ic = client(&c);
	imperai_changes(ic, NULL, 50, got_feed, &g);
	assert_string_equal(fake_last.url,
	    "http://127.0.0.1:8081/v1/verification-requests/changes?limit=50");
	fake_answer(200, "{\"data\":[" FEED_ITEM("vr_1", "3") "],\"next_cursor\":\"c1.MQ==\","
	    "\"has_more\":false}");
	assert_int_equal(g.err, 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.cursor, "c1.MQ==");
	got_free(&g);
	fake_reset();
	imperai_changes(ic, "c1.MQ==&x/", 9999, got_feed, &g);
	assert_string_equal(fake_last.url, "http://127.0.0.1:8081/v1/verification-requests/"
	    "changes?limit=500&cursor=c1.MQ%3D%3D%26x%2F");
	fake_answer(200, "{\"data\":[" FEED_ITEM("vr_1", "\"3\"") "],\"next_cursor\":\"c\","
	    "\"has_more\":false}");
	assert_int_equal(g.err, -EBADMSG);
	assert_string_equal(g.cause,
	    "change feed: data[0].risk_score: expected integer 0-10 or null, got string");
	got_free(&g);
	fake_reset();
	imperai_changes(ic, "", 0, got_feed, &g);
	assert_string_equal(fake_last.url,
	    "http://127.0.0.1:8081/v1/verification-requests/changes?limit=100");
	fake_answer(503, "<html>down</html>");
	assert_int_equal(g.err, -EIO);
	got_free(&g);
	fake_reset();
	imperai_client_free(ic);
}

static void
test_client_refuses_plain_http_to_remote_host(void **state)
{
	struct config c;
	char *cause = NULL;

	(void)state;
	memset(&c, 0, sizeof c);
	c.imperai.api_url = (char *)(uintptr_t)"http://api.imper.ai";
	c.imperai.api_key = (char *)(uintptr_t)"k";
	assert_null(imperai_client_new(&c, NULL, &cause));
	assert_non_null(strstr(cause, "use https"));
	free(cause);
	c.imperai.api_url = (char *)(uintptr_t)"ftp://x";
	assert_null(imperai_client_new(&c, NULL, &cause));
	assert_string_equal(cause, "imperai.api_url: expected an http(s) URL");
	free(cause);
	c.imperai.api_url = (char *)(uintptr_t)"https://api.imper.ai";
	c.imperai.api_key = (char *)(uintptr_t)"key\nInjected: 1";
	assert_null(imperai_client_new(&c, NULL, &cause));
	assert_non_null(strstr(cause, "imperai.api_key"));
	free(cause);
}

/* Fixtures: files named verification-*, feed-*, error-* must parse;
 * bad-verification-* and bad-feed-* must fail with the cause in the
 * table below. */
static char *
read_fixture(const char *name, size_t *len)
{
	char *path = xprintf("%s/tests/data/imperai/%s", srcdir(), name);
	struct buf b;
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "rb");

	if (f == NULL)
		fail_msg("cannot open %s", path);
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_add(&b, chunk, n);
	fclose(f);
	free(path);
	*len = b.len;
	return buf_detach(&b);
}

static const struct {
	const char *file, *kind, *cause;	/* cause NULL: must parse */
} fixtures[] = {
	{ "verification-created.json", "v", NULL },
	{ "verification-link-sent.json", "v", NULL },
	{ "verification-in-progress.json", "v", NULL },
	{ "verification-passed.json", "v", NULL },
	{ "verification-action-completed.json", "v", NULL },
	{ "verification-failed.json", "v", NULL },
	{ "verification-not-enough-questions.json", "v", NULL },
	{ "verification-timed-out.json", "v", NULL },
	{ "verification-canceled.json", "v", NULL },
	{ "verification-retargeted.json", "v", NULL },
	{ "feed-page.json", "f", NULL },
	{ "feed-empty.json", "f", NULL },
	{ "error-already-final.json", "ev", NULL },
	{ "error-idempotency-conflict.json", "e", NULL },
	{ "error-unauthorized.json", "e", NULL },
	{ "error-not-found.json", "e", NULL },
	{ "error-invalid-request.json", "e", NULL },
	{ "error-daily-cap.json", "e", NULL },
	{ "error-rate-limited.json", "e", NULL },
	{ "error-outage.json", "e", NULL },
	{ "bad-verification-risk-string.json", "v",
	  "fixture: risk_score: expected integer 0-10 or null, got string" },
	{ "bad-verification-status-unknown.json", "v", "fixture: status: unknown value \"approved\"" },
	{ "bad-verification-time.json", "v",
	  "fixture: updated_at: expected RFC 3339 time, got \"2026-11-24 10:05:00\"" },
	{ "bad-verification-invalid-utf8.json", "v",
	  "fixture: analysis_summary: string is not valid UTF-8" },
	{ "bad-verification-missing-id.json", "v", "fixture: id: missing" },
	{ "bad-verification-ticket-array.json", "v", "fixture: ticket: expected object, got array" },
	{ "bad-verification-truncated.json", "v",
	  "fixture: body: not valid JSON at byte 100: unexpected end" },
	{ "bad-feed-item.json", "f",
	  "change feed: data[1].action.status: unknown value \"done\"" },
	{ "bad-feed-html.json", "f", "change feed: body: not valid JSON at byte 0: unexpected character" },
};

static void
test_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct imperai_verification v;
		struct imperai_feed f;
		char *cause = NULL, *err = NULL;
		size_t len;
		char *body = read_fixture(fixtures[i].file, &len);
		int bad = strncmp(fixtures[i].file, "bad-", 4) == 0, rc;

		if (strcmp(fixtures[i].kind, "v") == 0) {
			rc = imperai_parse_verification(body, len, "fixture", &v, &cause);
			imperai_verification_free(&v);
		} else if (strcmp(fixtures[i].kind, "f") == 0) {
			rc = imperai_parse_feed(body, len, &f, &cause);
			imperai_feed_free(&f);
		} else if (strcmp(fixtures[i].kind, "ev") == 0) {
			rc = imperai_parse_error_verification(body, len, &v, &cause);
			imperai_verification_free(&v);
		} else {
			err = imperai_parse_error(body, len);
			rc = err != NULL ? 0 : -EBADMSG;
		}
		if (!bad && rc != 0)
			fail_msg("%s: %s", fixtures[i].file, cause != NULL ? cause : "not an error body");
		if (bad && rc == 0)
			fail_msg("%s: parsed but must not", fixtures[i].file);
		if (bad && fixtures[i].cause != NULL && strcmp(cause, fixtures[i].cause) != 0)
			fail_msg("%s: cause \"%s\", want \"%s\"", fixtures[i].file, cause,
			    fixtures[i].cause);
		free(err);
		free(cause);
		free(body);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_names_round_trip),
		cmocka_unit_test(test_risk_bands_default_and_custom),
		cmocka_unit_test(test_create_body_has_every_field_escaped),
		cmocka_unit_test(test_create_body_null_fields_and_default_action),
		cmocka_unit_test(test_parse_full_verification),
		cmocka_unit_test(test_parse_minimal_verification_absent_means_null),
		cmocka_unit_test(test_parse_tolerates_unknown_fields_and_nested_junk),
		cmocka_unit_test(test_parse_rejects_wrong_types_naming_the_field),
		cmocka_unit_test(test_parse_rejects_missing_required_fields),
		cmocka_unit_test(test_parse_rejects_bad_strings),
		cmocka_unit_test(test_parse_invalid_utf8_in_unknown_field_is_ignored),
		cmocka_unit_test(test_parse_duplicate_keys_last_wins),
		cmocka_unit_test(test_parse_rejects_broken_json),
		cmocka_unit_test(test_parse_null_cause_is_allowed),
		cmocka_unit_test(test_parse_feed_pages),
		cmocka_unit_test(test_parse_feed_names_the_bad_item),
		cmocka_unit_test(test_parse_error_body),
		cmocka_unit_test(test_parse_error_body_is_capped),
		cmocka_unit_test(test_parse_error_verification_of_already_final),
		cmocka_unit_test(test_verification_json_round_trips),
		cmocka_unit_test(test_response_statuses_map_to_errors),
		cmocka_unit_test(test_response_429_and_transport_errors),
		cmocka_unit_test(test_feed_response),
		cmocka_unit_test(test_client_create_sends_key_and_idempotency_key),
		cmocka_unit_test(test_client_get_and_cancel_paths),
		cmocka_unit_test(test_client_changes_encodes_cursor),
		cmocka_unit_test(test_client_refuses_plain_http_to_remote_host),
		cmocka_unit_test(test_fixtures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
