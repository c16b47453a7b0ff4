/* Tests for rebuild_ticket() and render_parse_field(): a ticket driven
 * through the real engine (a small loop that lands every PATCH) is
 * rebuilt from the field its last PATCH wrote and the newest verification,
 * and must come back with the same generation, revision, request and
 * state, and decide exactly what the daemon had not yet written. */
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
#include "engine.h"
#include "flows.h"
#include "imperai.h"
#include "rebuild.h"
#include "render.h"
#include "snow.h"
#include "util.h"

#define T0		INT64_C(1772366400)	/* 2026-03-01 12:00:00 UTC */
#define SYS1		"46d44a5fa9fe198101b5a8b5de1e3e13"
#define SYS2		"9d385017c611228701d22104cc95c371"
#define CALLER1		"681ccaf9c0a8016400b98a06818d57c7"
#define CALLER2		"5137153cc611227c000bbd1bd8cd2005"
#define FIELD		"u_imperai_verification"

static struct config_table tables[] = {
	{ .name = "incident", .field = FIELD, .requester_field = "caller_id" },
};
static char *link_hosts[] = { "verify.imper.ai" };
static struct config cfg;
static char *reset_cats[] = { "password_reset" };
static char *access_cats[] = { "account_access" };
static struct flow flow_v[] = {
	{ .name = "password-reset", .table = "incident", .categories = reset_cats,
	  .ncategories = 1, .action = "password_reset", .automated = 1, .close = 0,
	  .close_code = "Solution provided", .max_age = 3600,
	  .on_fail = { .assignment_group = "Service Desk Security", .priority = 2 } },
	{ .name = "account-access", .table = "incident", .categories = access_cats,
	  .ncategories = 1, .action = "none", .automated = 0, .max_age = 3600 },
};
static struct flows flows = { .v = flow_v, .n = ARRAY_SIZE(flow_v) };

static const struct flow *
fake_match(const struct flows *f, const char *table, const struct snow_record *r)
{
	const char *cat = snow_record_get(r, "category");

	for (size_t i = 0; i < f->n; i++)
		for (size_t k = 0; str_eq(f->v[i].table, table) && k < f->v[i].ncategories; k++)
			if (str_eq(cat, f->v[i].categories[k]))
				return &f->v[i];
	return NULL;
}

static const struct engine_policy pol = { .cfg = &cfg, .flows = &flows, .match = fake_match };

/* The ticket in ServiceNow and in the daemon, and what a verification is. */
struct sim {
	struct ticket	 t;
	int64_t		 mod;
	int64_t		 now;
	char		*field;		/* as the last landed PATCH wrote it */
	const char	*category;
	const char	*state;
	const char	*caller;
	size_t		 notes;		/* work notes written */
};

static int
setup(void **state)
{
	struct sim *s = xcalloc(1, sizeof(*s));

	memset(&cfg, 0, sizeof(cfg));
	cfg.snow.instance = "https://acme.service-now.com";
	cfg.snow.tables = tables;
	cfg.snow.ntables = ARRAY_SIZE(tables);
	cfg.imperai.link_hosts = link_hosts;
	cfg.imperai.nlink_hosts = 1;
	cfg.imperai.risk_verified_max = 3;
	cfg.imperai.risk_medium_max = 6;
	ticket_init(&s->t, "incident", SYS1);
	s->now = T0;
	s->category = "password_reset";
	s->state = "2";
	s->caller = CALLER1;
	*state = s;
	return 0;
}

static int
teardown(void **state)
{
	struct sim *s = *state;

	ticket_free(&s->t);
	free(s->field);
	free(s);
	return 0;
}

static void
record(const struct sim *s, struct snow_record *r)
{
	int john = str_eq(s->caller, CALLER2);

	memset(r, 0, sizeof(*r));
	snprintf(r->sys_id, sizeof(r->sys_id), "%s", SYS1);
	r->mod_count = s->mod;
	r->updated_on = s->now;
	snow_record_set(r, "number", "INC0010001");
	snow_record_set(r, "state", s->state);
	snow_record_set(r, "active", str_eq(s->state, "7") || str_eq(s->state, "8") ?
	    "false" : "true");
	snow_record_set(r, "category", s->category);
	snow_record_set(r, "subcategory", "");
	snow_record_set(r, "short_description", "Reset my password");
	snow_record_set(r, "description", "");
	snow_record_set(r, "caller_id", s->caller);
	snow_record_set(r, "caller_id.name", john ? "John Smith" : "Abel Tuter");
	snow_record_set(r, "caller_id.email", john ? "john@example.com" : "abel@example.com");
	snow_record_set(r, "caller_id.user_name", john ? "john.smith" : "abel.tuter");
	snow_record_set(r, "assigned_to.name", "Ivy Agent");
	snow_record_set(r, FIELD, s->field ? s->field : "");
}

static void
verif(struct imperai_verification *v, const char *id, enum imperai_status st, int risk,
    enum imperai_action_status act, int64_t when)
{
	memset(v, 0, sizeof(*v));
	v->id = (char *)id;
	v->ticket.table = (char *)"incident";
	v->ticket.sys_id = (char *)SYS1;
	v->ticket.number = (char *)"INC0010001";
	v->status = st;
	v->risk_score = risk;
	v->send_link_url = (char *)"https://verify.imper.ai/send/tok1";
	v->details_url = (char *)"https://verify.imper.ai/requests/x";
	v->expires_at = when + 86400;
	v->created_at = T0;
	v->updated_at = when;
	if (st != IMPERAI_PENDING) {
		v->channel = (char *)"email";
		v->recipient_masked = (char *)"a***l@e***.com";
		v->initiated_by = (char *)"Ivy Agent";
	}
	if (imperai_status_is_final(st))
		v->completed_at = when;
	v->action.type = (char *)"password_reset";
	v->action.status = act;
	v->action.completed_at = act == IMPERAI_ACTION_COMPLETED ? when : 0;
}

static void run(struct sim *s, struct engine_result *res);

/* A PATCH lands: the field and mod count change, the engine hears back. */
static void
land_patch(struct sim *s, const struct effect *e)
{
	json_object *o = json_tokener_parse(e->patch_json), *f, *st;
	struct snow_record r;
	struct engine_result res;

	assert_non_null(o);
	if (json_object_object_get_ex(o, FIELD, &f)) {
		free(s->field);
		s->field = xstrdup(json_object_get_string(f));
	}
	if (json_object_object_get_ex(o, "state", &st))
		s->state = json_object_get_string(st)[0] == '7' ? "7" : "6";
	s->notes += json_object_object_get_ex(o, "work_notes", &f);
	s->mod++;
	record(s, &r);
	engine_result_init(&res);
	assert_int_equal(engine_patched(&pol, &s->t, e->revision, &r, s->now, &res), 0);
	snow_record_free(&r);
	json_object_put(o);
	run(s, &res);
}

/* The daemon's loop in miniature: creates answer with vr_<generation>. */
static void
run(struct sim *s, struct engine_result *res)
{
	for (size_t i = 0; i < res->neffects; i++) {
		struct effect *e = &res->effects[i];
		struct imperai_verification v;
		struct engine_result r2;
		char id[16];

		if (e->kind == EFFECT_PATCH)
			land_patch(s, e);
		else if (e->kind == EFFECT_CREATE) {
			snprintf(id, sizeof(id), "vr_%u", e->generation);
			verif(&v, id, IMPERAI_PENDING, -1, IMPERAI_ACTION_PENDING, s->now);
			engine_result_init(&r2);
			assert_int_equal(engine_created(&pol, &s->t, e->generation, &v, s->now, &r2), 0);
			run(s, &r2);
		}
	}
	engine_result_free(res);
}

static void
observe(struct sim *s)
{
	struct snow_record r;
	struct engine_result res;

	s->mod++;
	record(s, &r);
	engine_result_init(&res);
	assert_int_equal(engine_observe(&pol, &s->t, "incident", &r, s->now, &res), 0);
	snow_record_free(&r);
	run(s, &res);
}

static void
report(struct sim *s, const struct imperai_verification *v)
{
	struct engine_result res;

	s->now += 60;
	engine_result_init(&res);
	assert_int_equal(engine_verification(&pol, &s->t, v, s->now, &res), 0);
	run(s, &res);
}

/* Rebuilds from the field as it stands; the caller frees t and res. */
static int
rebuild(struct sim *s, const struct imperai_verification *v, struct ticket *t,
    struct engine_result *res)
{
	struct snow_record r;
	int rc;

	record(s, &r);
	ticket_init(t, "incident", SYS1);
	engine_result_init(res);
	rc = rebuild_ticket(&pol, t, "incident", &r, v, s->now + 5, res);
	snow_record_free(&r);
	return rc;
}

static size_t
count_kind(const struct engine_result *res, enum effect_kind k)
{
	size_t n = 0;

	for (size_t i = 0; i < res->neffects; i++)
		n += res->effects[i].kind == k;
	return n;
}

/* Rebuilt from the field and the verification the daemon last saw: same
 * ticket, nothing to do. */
static void
assert_same_and_idle(struct sim *s, const struct imperai_verification *v)
{
	struct ticket t;
	struct engine_result res;

	assert_int_equal(rebuild(s, v, &t, &res), 0);
	assert_int_equal(t.generation, s->t.generation);
	assert_int_equal(t.revision, s->t.revision);
	assert_int_equal(t.landed_revision, s->t.revision);
	assert_string_equal(engine_state_name(t.state), engine_state_name(s->t.state));
	/* a link-ready field does not show the id: it comes from imper.ai's feed */
	if (v != NULL && t.state != TS_UNTRACKED)
		assert_string_equal(t.request_id, s->t.request_id);
	assert_int_equal(t.seen_mod_count, s->mod);
	assert_string_equal(t.requester, s->caller);
	assert_int_equal(res.neffects, 0);
	assert_true(res.changed);
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_link_ready_round_trips(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;

	observe(s);
	assert_int_equal(s->t.state, TS_LINK_READY);
	verif(&v, "vr_1", IMPERAI_PENDING, -1, IMPERAI_ACTION_PENDING, s->now);
	assert_same_and_idle(s, &v);
	assert_same_and_idle(s, NULL);
}

static void
test_sent_in_progress_and_outcomes_round_trip(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;

	observe(s);
	verif(&v, "vr_1", IMPERAI_LINK_SENT, -1, IMPERAI_ACTION_PENDING, s->now + 60);
	report(s, &v);
	assert_int_equal(s->t.state, TS_LINK_SENT);
	assert_same_and_idle(s, &v);
	verif(&v, "vr_1", IMPERAI_IN_PROGRESS, -1, IMPERAI_ACTION_PENDING, s->now + 60);
	report(s, &v);
	assert_same_and_idle(s, &v);
	verif(&v, "vr_1", IMPERAI_PASSED, 1, IMPERAI_ACTION_PENDING, s->now + 60);
	report(s, &v);
	assert_int_equal(s->t.state, TS_PASSED);
	assert_same_and_idle(s, &v);
	verif(&v, "vr_1", IMPERAI_PASSED, 1, IMPERAI_ACTION_COMPLETED, s->now + 60);
	report(s, &v);
	assert_int_equal(s->t.state, TS_RESOLVED);
	assert_same_and_idle(s, &v);
}

static void
test_failed_high_risk_round_trips_without_a_second_on_fail(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct ticket t;
	struct engine_result res;

	observe(s);
	verif(&v, "vr_1", IMPERAI_FAILED, 9, IMPERAI_ACTION_NONE, s->now + 60);
	report(s, &v);
	assert_int_equal(s->t.state, TS_FAILED);
	assert_same_and_idle(s, &v);
	assert_int_equal(rebuild(s, &v, &t, &res), 0);
	assert_true(t.on_fail_applied);
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_canceled_by_a_closed_ticket_round_trips(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;

	observe(s);
	s->state = "7";
	observe(s);
	assert_int_equal(s->t.state, TS_CANCELED);
	verif(&v, "vr_1", IMPERAI_CANCELED, -1, IMPERAI_ACTION_NONE, s->now + 60);
	assert_same_and_idle(s, &v);
}

static void
test_untracked_round_trips(void **state)
{
	struct sim *s = *state;

	observe(s);
	s->category = "software";
	observe(s);
	assert_int_equal(s->t.state, TS_UNTRACKED);
	assert_same_and_idle(s, NULL);
}

/* The outcome imper.ai reported never reached the field: the rebuilt
 * ticket writes it as the next revision, once. */
static void
test_an_outcome_not_in_the_field_is_written_as_the_next_revision(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct ticket t;
	struct engine_result res;
	uint32_t r;

	observe(s);
	r = s->t.revision;
	verif(&v, "vr_1", IMPERAI_PASSED, 8, IMPERAI_ACTION_NONE, s->now + 60);
	assert_int_equal(rebuild(s, &v, &t, &res), 0);
	assert_int_equal(res.neffects, 1);
	assert_int_equal(res.effects[0].kind, EFFECT_PATCH);
	assert_int_equal(res.effects[0].revision, r + 1);
	assert_string_equal(res.effects[0].tag, "on_fail");
	assert_non_null(strstr(res.effects[0].patch_json, "imperai-snow ref 1.2"));
	assert_non_null(strstr(res.effects[0].patch_json, "Verification Outcome: Passed"));
	assert_non_null(strstr(res.effects[0].patch_json, "Service Desk Security"));
	assert_int_equal(t.state, TS_PASSED);
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_a_completed_action_not_in_the_field_resolves(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct ticket t;
	struct engine_result res;

	observe(s);
	verif(&v, "vr_1", IMPERAI_PASSED, 1, IMPERAI_ACTION_PENDING, s->now + 60);
	report(s, &v);
	verif(&v, "vr_1", IMPERAI_PASSED, 1, IMPERAI_ACTION_COMPLETED, s->now + 60);
	assert_int_equal(rebuild(s, &v, &t, &res), 0);
	assert_int_equal(res.neffects, 1);
	assert_string_equal(res.effects[0].tag, "resolved");
	assert_non_null(strstr(res.effects[0].patch_json, "\"state\":\"6\""));
	assert_int_equal(t.state, TS_RESOLVED);
	assert_int_equal(t.resolve_revision, res.effects[0].revision);
	ticket_free(&t);
	engine_result_free(&res);
}

/* A re-verification waiting for its request: asked again with the same
 * Idempotency-Key, so imper.ai answers with the request it has. */
static void
test_a_request_the_field_waits_for_is_asked_again_with_the_same_key(void **state)
{
	struct sim *s = *state;
	struct snow_record r;
	struct engine_result res;
	struct ticket t;
	char *key;

	observe(s);
	s->caller = CALLER2;
	s->mod++;
	record(s, &r);
	engine_result_init(&res);
	assert_int_equal(engine_observe(&pol, &s->t, "incident", &r, s->now, &res), 0);
	snow_record_free(&r);
	/* only the PATCH lands: the daemon is gone before the create */
	for (size_t i = 0; i < res.neffects; i++)
		if (res.effects[i].kind == EFFECT_PATCH)
			land_patch(s, &res.effects[i]);
	key = xstrdup(res.effects[res.neffects - 1].create.idempotency_key);
	engine_result_free(&res);
	assert_int_equal(s->t.state, TS_AWAITING_REQUEST);
	assert_int_equal(rebuild(s, NULL, &t, &res), 0);
	assert_int_equal(t.state, TS_AWAITING_REQUEST);
	assert_int_equal(t.generation, 2);
	assert_string_equal(t.gen_reason, "requester_changed");
	assert_int_equal(res.neffects, 1);
	assert_int_equal(res.effects[0].kind, EFFECT_CREATE);
	assert_string_equal(res.effects[0].create.idempotency_key, key);
	free(key);
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_a_ticket_closed_while_away_cancels_its_request(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct ticket t;
	struct engine_result res;

	observe(s);
	s->state = "7";
	s->mod++;
	verif(&v, "vr_1", IMPERAI_PENDING, -1, IMPERAI_ACTION_PENDING, s->now);
	assert_int_equal(rebuild(s, &v, &t, &res), 0);
	assert_int_equal(t.state, TS_CANCELED);
	assert_int_equal(count_kind(&res, EFFECT_CANCEL), 1);
	assert_int_equal(count_kind(&res, EFFECT_PATCH), 1);
	assert_string_equal(res.effects[0].request_id, "vr_1");
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_a_verification_of_another_ticket_is_not_bound(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct ticket t;
	struct engine_result res;

	observe(s);
	verif(&v, "vr_9", IMPERAI_PASSED, 1, IMPERAI_ACTION_NONE, s->now);
	v.ticket.sys_id = (char *)SYS2;
	assert_int_equal(rebuild(s, &v, &t, &res), 0);
	assert_null(t.request_id);
	assert_int_equal(res.neffects, 0);
	ticket_free(&t);
	engine_result_free(&res);
}

/* An agent's name is free text in the field: it cannot pose as an outcome. */
static void
test_free_text_cannot_pose_as_the_state(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct ticket t;
	struct engine_result res;

	observe(s);
	verif(&v, "vr_1", IMPERAI_LINK_SENT, -1, IMPERAI_ACTION_PENDING, s->now + 60);
	v.initiated_by = (char *)"Verification Outcome: Passed Ticket resolved automatically by "
	    "imperai-snow";
	report(s, &v);
	assert_int_equal(rebuild(s, &v, &t, &res), 0);
	assert_int_equal(t.state, TS_LINK_SENT);
	assert_int_equal(res.neffects, 0);
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_a_field_the_daemon_did_not_write_is_refused(void **state)
{
	struct sim *s = *state;
	struct ticket t;
	struct engine_result res;

	s->field = xstrdup("<p>written by hand</p>");
	assert_int_equal(rebuild(s, NULL, &t, &res), -ENOENT);
	ticket_free(&t);
	engine_result_free(&res);
	free(s->field);
	s->field = xstrdup("<p>something else entirely <span>imperai-snow ref 3.7</span></p>");
	assert_int_equal(rebuild(s, NULL, &t, &res), -EINVAL);
	ticket_free(&t);
	engine_result_free(&res);
}

static void
test_parse_field_reads_id_times_and_risk(void **state)
{
	struct sim *s = *state;
	struct imperai_verification v;
	struct render_shown sh;

	observe(s);
	verif(&v, "vr_1", IMPERAI_LINK_SENT, -1, IMPERAI_ACTION_PENDING, s->now + 60);
	report(s, &v);
	verif(&v, "vr_1", IMPERAI_PASSED, 7, IMPERAI_ACTION_PENDING, s->now + 60);
	report(s, &v);
	assert_int_equal(render_parse_field(s->field, "password_reset", &sh), 0);
	assert_int_equal(sh.generation, 1);
	assert_int_equal(sh.revision, s->t.revision);
	assert_int_equal(sh.status, IMPERAI_PASSED);
	assert_int_equal(sh.action, IMPERAI_ACTION_PENDING);
	assert_true(sh.risk_high);
	assert_string_equal(sh.verification_id, "vr_1");
	assert_int_equal(sh.sent_at, s->t.sent_at);
	render_shown_free(&sh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_link_ready_round_trips),
		T(test_sent_in_progress_and_outcomes_round_trip),
		T(test_failed_high_risk_round_trips_without_a_second_on_fail),
		T(test_canceled_by_a_closed_ticket_round_trips),
		T(test_untracked_round_trips),
		T(test_an_outcome_not_in_the_field_is_written_as_the_next_revision),
		T(test_a_completed_action_not_in_the_field_resolves),
		T(test_a_request_the_field_waits_for_is_asked_again_with_the_same_key),
		T(test_a_ticket_closed_while_away_cancels_its_request),
		T(test_a_verification_of_another_ticket_is_not_bound),
		T(test_free_text_cannot_pose_as_the_state),
		T(test_a_field_the_daemon_did_not_write_is_refused),
		T(test_parse_field_reads_id_times_and_risk),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
