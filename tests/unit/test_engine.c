/* Tests for lib/engine.c: every transition and every refusal of the ticket
 * lifecycle, effects and events (the store encoding: test_codec.c).
 *
 * The config and flows are built by hand and flows are matched by a fake
 * (engine_policy.match), so the engine links against nothing but util.c,
 * record.c, render.c and json-c. */
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

#include "codec.h"
#include "config.h"
#include "engine.h"
#include "engine_fixture.h"
#include "flows.h"
#include "imperai.h"
#include "log.h"
#include "snow.h"
#include "util.h"

static void
test_ticket_needing_no_verification_is_forgotten_without_effects(void **state)
{
	struct h *h = *state;

	h->category = "hardware";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.forget, 1);
	assert_int_equal(h->res.changed, 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.nevents, 0);
	assert_int_equal(h->t.generation, 0);
	assert_int_equal(h->t.state, TS_UNTRACKED);
}

static void
test_new_ticket_in_a_flow_registers_a_request_filled_from_the_record(void **state)
{
	struct h *h = *state;
	const struct imperai_create *c;

	to_awaiting(h);
	assert_kinds(h, "create");
	assert_int_equal(h->res.changed, 1);
	assert_int_equal(h->res.forget, 0);
	assert_int_equal(h->t.generation, 1);
	assert_string_equal(h->t.flow, "password-reset");
	assert_string_equal(h->t.requester, CALLER1);
	assert_string_equal(h->t.number, "INC0010001");
	c = &effect(h, 0)->create;
	assert_string_equal(c->ticket.instance, "acme.service-now.com");
	assert_string_equal(c->ticket.table, "incident");
	assert_string_equal(c->ticket.sys_id, SYS1);
	assert_string_equal(c->ticket.number, "INC0010001");
	assert_string_equal(c->ticket.url, "https://acme.service-now.com/incident.do?sys_id=" SYS1);
	assert_string_equal(c->subject, "Cannot log in");
	assert_string_equal(c->description, "Locked out after vacation");
	assert_string_equal(c->category, "password_reset");
	assert_string_equal(c->action, "password_reset");
	assert_string_equal(c->requester_name, "Jane Doe");
	assert_string_equal(c->requester_email, "jane.doe@example.com");
	assert_string_equal(c->requester_user_name, "jane.doe");
	assert_string_equal(c->assigned_agent, "Beth Anglin");
	assert_string_equal(c->idempotency_key, "acme.service-now.com/incident/" SYS1 "/1");
	assert_int_equal(effect(h, 0)->generation, 1);
	assert_event(h, "state changed",
	    "ticket=INC0010001 from=untracked to=awaiting_request why=new");
}

/* The sweep reads the ticket again unchanged (same sys_mod_count). */
static int
observe_again(struct h *h)
{
	struct snow_record r;
	int rc;

	record(h, &r);
	reset_result(h);
	rc = engine_observe(&pol, &h->t, h->table, &r, T0 + 10 * h->mod + 5, &h->res);
	snow_record_free(&r);
	return rc;
}

static void
test_unreadable_requester_gets_no_request_and_the_field_says_why(void **state)
{
	struct h *h = *state;
	const struct engine_event *ev;

	h->hide = 1;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch");
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_int_equal(h->t.requester_unreadable, 1);
	assert_patch_has(effect(h, 0), FIELD, "requester could not be read");
	assert_patch_has(effect(h, 0), FIELD, "sys_user.email");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai requester_unreadable 1.1]");
	assert_patch_has(effect(h, 0), "work_notes", "Grant the integration user read access");
	ev = find_event(h, "requester could not be read: no verification requested; grant the "
	    "integration user read access to the requester's name, email and user name");
	assert_non_null(ev);
	assert_int_equal(ev->level, LOG_LVL_WARN);
	assert_non_null(strstr(ev->kv, "ticket=INC0010001"));
}

static void
test_unreadable_requester_is_said_once_and_picked_up_when_readable(void **state)
{
	struct h *h = *state;
	const struct imperai_create *c;

	h->hide = 1;
	to_awaiting(h);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_int_equal(observe(h), 0);	/* an agent edit: still unreadable */
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.nevents, 0);
	assert_int_equal(observe_again(h), 0);
	assert_int_equal(h->res.neffects, 0);
	h->hide = 0;				/* the admin granted read access */
	assert_int_equal(observe_again(h), 0);
	assert_kinds(h, "patch,create");
	assert_patch_lacks(effect(h, 0), "work_notes");
	assert_patch_has(effect(h, 0), FIELD, "Registering the verification request");
	c = &effect(h, 1)->create;
	assert_string_equal(c->requester_email, "jane.doe@example.com");
	assert_string_equal(c->requester_name, "Jane Doe");
	assert_int_equal(effect(h, 1)->generation, 1);
	assert_int_equal(h->t.requester_unreadable, 0);
	assert_event(h, "requester readable now: verification requested", "ticket=INC0010001");
	assert_int_equal(created(h, 1, "vr_81", T0 + 500), 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
}

static void
test_requester_changed_to_an_unreadable_one_cancels_and_waits(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	h->caller = CALLER2;
	h->hide = 1;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch");
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_int_equal(h->t.generation, 2);
	assert_patch_has(effect(h, 1), "work_notes", "requester_unreadable");
}

static void
test_close_notes_show_a_word_for_a_missing_requester(void **state)
{
	struct h *h = *state;

	h->hide = 2;	/* only the email can be read: verified, but nameless */
	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "close_notes", "Password reset for (unknown requester) on "
	    "INC0010001 after imper.ai verification vr_81");
}

static void
test_configured_instance_name_goes_into_the_idempotency_key(void **state)
{
	struct h *h = *state;

	cfg.imperai.instance_name = "acme-prod";
	to_awaiting(h);
	assert_string_equal(effect(h, 0)->create.ticket.instance, "acme-prod");
	assert_string_equal(effect(h, 0)->create.idempotency_key, "acme-prod/incident/" SYS1 "/1");
}

static void
test_ticket_already_ended_is_never_verified(void **state)
{
	struct h *h = *state;
	static const char *const inc[] = { "6", "7", "8" };

	for (size_t i = 0; i < ARRAY_SIZE(inc); i++) {
		h->state = inc[i];
		assert_int_equal(observe(h), 0);
		assert_int_equal(h->res.neffects, 0);
		assert_int_equal(h->res.forget, 1);
		assert_int_equal(h->t.generation, 0);
	}
}

static void
test_catalog_item_already_closed_is_never_verified(void **state)
{
	struct h *h = *state;
	static const char *const ritm[] = { "3", "4", "7" };

	ticket_free(&h->t);
	ticket_init(&h->t, "sc_req_item", SYS2);
	h->table = "sc_req_item";
	for (size_t i = 0; i < ARRAY_SIZE(ritm); i++) {
		h->state = ritm[i];
		assert_int_equal(observe(h), 0);
		assert_int_equal(h->res.neffects, 0);
		assert_int_equal(h->res.forget, 1);
	}
	h->state = "2";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "create");
	assert_string_equal(effect(h, 0)->create.requester_name, "Jane Doe");
	assert_string_equal(effect(h, 0)->create.ticket.url,
	    "https://acme.service-now.com/sc_req_item.do?sys_id=" SYS2);
}

static void
test_record_not_newer_than_seen_is_a_noop(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	h->mod--;	/* the same sys_mod_count again, now with another caller */
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.changed, 0);
	assert_int_equal(h->res.neffects, 0);
	assert_string_equal(h->t.requester, CALLER1);
}

static void
test_own_patch_echo_is_only_bookkeeping(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	h->t.own_mod_count = h->mod + 1;	/* as if our PATCH made the next version */
	h->t.seen_mod_count = h->mod - 1;
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_int_equal(h->t.seen_mod_count, h->mod);
}

static void
test_change_the_engine_does_not_look_at_is_only_bookkeeping(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.changed, 1);
	assert_int_equal(h->t.seen_mod_count, h->mod);
	assert_int_equal(h->t.state, TS_LINK_READY);
}

static void
test_created_stores_the_request_and_injects_the_link(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_awaiting(h);
	assert_int_equal(created(h, 1, "vr_81", T0 + 20), 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_string_equal(h->t.request_id, "vr_81");
	assert_string_equal(h->t.v.send_link_url, SEND_URL);
	assert_int_equal(h->t.revision, 1);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_int_equal(e->revision, 1);
	assert_string_equal(e->tag, "link");
	assert_patch_has(e, FIELD, "<a href=\"" SEND_URL "\">imper.ai - Send Verification link</a>");
	assert_patch_has(e, FIELD, "imperai-snow ref 1.1");
	assert_patch_has(e, "work_notes", "[imper.ai link 1.1]\n");
	assert_patch_lacks(e, "state");
	assert_event(h, "state changed", "from=awaiting_request to=link_ready why=created");
}

static void
test_created_with_send_link_on_another_host_shows_no_link(void **state)
{
	struct h *h = *state;
	struct imperai_verification v;

	to_awaiting(h);
	v_init(h, &v, "vr_81", IMPERAI_PENDING);
	str_replace(&v.send_link_url, "https://evil.example.net/send/tok1");
	reset_result(h);
	assert_int_equal(engine_created(&pol, &h->t, 1, &v, T0 + 20, &h->res), 0);
	v_free(&v);
	assert_patch_has(effect(h, 0), FIELD, "refused");
	assert_null(strstr(effect(h, 0)->patch_json, "evil"));
	assert_null(strstr(effect(h, 0)->patch_json, "href"));
}

static void
test_created_reporting_a_later_status_applies_it_too(void **state)
{
	struct h *h = *state;
	struct imperai_verification v;

	to_awaiting(h);
	v_init(h, &v, "vr_81", IMPERAI_LINK_SENT);
	v.channel = xstrdup("sms");
	reset_result(h);
	assert_int_equal(engine_created(&pol, &h->t, 1, &v, T0 + 20, &h->res), 0);
	v_free(&v);
	assert_kinds(h, "patch,patch");
	assert_int_equal(h->t.state, TS_LINK_SENT);
	assert_string_equal(effect(h, 1)->tag, "sent");
}

static void
test_created_for_a_stale_generation_is_canceled(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.generation, 2);
	assert_int_equal(created(h, 1, "vr_80", T0 + 30), 0);
	assert_kinds(h, "cancel");
	assert_string_equal(effect(h, 0)->request_id, "vr_80");
	assert_int_equal(effect(h, 0)->generation, 1);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_null(h->t.request_id);
	assert_int_equal(h->res.changed, 0);
}

static void
test_created_replay_is_ignored(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	assert_int_equal(created(h, 1, "vr_81", T0 + 40), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.changed, 0);
	assert_non_null(find_event(h, "create replay ignored"));
}

static void
test_create_answered_after_the_ticket_closed_is_canceled(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_CANCELED);
	assert_int_equal(created(h, 1, "vr_81", T0 + 30), 0);
	assert_kinds(h, "cancel");
	assert_string_equal(effect(h, 0)->request_id, "vr_81");
	assert_int_equal(h->t.state, TS_CANCELED);
}

static void
test_verification_naming_another_ticket_is_refused(void **state)
{
	struct h *h = *state;
	struct imperai_verification v;
	const struct engine_event *ev;

	to_link_ready(h);
	v_init(h, &v, "vr_81", IMPERAI_PASSED);
	str_replace(&v.ticket.sys_id, SYS2);
	v.risk_score = 0;
	reset_result(h);
	assert_int_equal(engine_verification(&pol, &h->t, &v, T0 + 50, &h->res), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.changed, 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_int_equal(h->t.v.status, IMPERAI_PENDING);
	ev = find_event(h, "security: verification names another ticket");
	assert_non_null(ev);
	assert_int_equal(ev->level, LOG_LVL_ERR);
	assert_non_null(strstr(ev->kv, "table=incident sys_id=" SYS1));
	assert_non_null(strstr(ev->kv, "reported_table=incident reported_sys_id=" SYS2));
	assert_non_null(strstr(ev->kv, "verification=vr_81"));

	str_replace(&v.ticket.sys_id, SYS1);
	str_replace(&v.ticket.table, "sc_task");
	reset_result(h);
	assert_int_equal(engine_verification(&pol, &h->t, &v, T0 + 50, &h->res), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_non_null(find_event(h, "security: verification names another ticket"));

	str_replace(&v.ticket.table, NULL);
	reset_result(h);
	assert_int_equal(engine_verification(&pol, &h->t, &v, T0 + 50, &h->res), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_non_null(find_event(h, "security: verification names another ticket"));
	v_free(&v);
}

static void
test_verification_of_an_older_request_is_ignored(void **state)
{
	struct h *h = *state;
	const struct engine_event *ev;

	to_link_ready(h);
	assert_int_equal(feed(h, &(struct chg){ .id = "vr_79", .status = IMPERAI_PASSED,
	    .risk = 1 }, T0 + 50), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.changed, 0);
	ev = find_event(h, "stale verification ignored");
	assert_non_null(ev);
	assert_int_equal(ev->level, LOG_LVL_DEBUG);
	assert_int_equal(h->t.state, TS_LINK_READY);
}

static void
test_verification_without_relevant_change_is_a_noop(void **state)
{
	struct h *h = *state;
	struct imperai_verification v;

	to_link_ready(h);
	v_init(h, &v, "vr_81", IMPERAI_PENDING);
	v.updated_at = T0 + 99;
	reset_result(h);
	assert_int_equal(engine_verification(&pol, &h->t, &v, T0 + 99, &h->res), 0);
	v_free(&v);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.changed, 0);
	assert_int_equal(h->t.revision, 1);
}

static void
test_link_sent_updates_the_field_with_one_note(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_link_ready(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT }, T0 + 60), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_int_equal(h->t.state, TS_LINK_SENT);
	assert_int_equal(e->revision, 2);
	assert_patch_has(e, FIELD, "Verification link sent by Beth Anglin at 2026-03-01 12:01:00");
	assert_patch_has(e, FIELD, "Recipient: j***e@e***.com");
	assert_patch_has(e, "work_notes", "[imper.ai sent 1.2]\n");
	assert_int_equal(h->t.sent_at, T0 + 60);
}

static void
test_in_progress_is_shown(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_IN_PROGRESS }, T0 + 90), 0);
	assert_kinds(h, "patch");
	assert_int_equal(h->t.state, TS_IN_PROGRESS);
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai progress 1.3]");
	assert_patch_has(effect(h, 0), FIELD, "The requester is verifying now.");
}

static void
test_passed_with_action_pending_waits_and_explains(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 2,
	    .completed_at = T0 + 300 }, T0 + 300), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_int_equal(h->t.state, TS_PASSED);
	assert_patch_lacks(e, "state");
	assert_patch_has(e, FIELD, "Verification Outcome: Passed");
	assert_patch_has(e, "work_notes", "[imper.ai outcome 1.3]");
	assert_patch_has(e, "work_notes", "Not resolved automatically: the password reset is "
	    "not completed yet.");
	assert_event(h, "resolve refused", "reason=action_not_completed");
	assert_event(h, "outcome recorded", "ticket=INC0010001 verification=vr_81 result=passed "
	    "risk=verified");
}

static void
test_action_completed_on_automated_flow_resolves_in_the_same_patch(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_int_equal(h->t.state, TS_RESOLVED);
	assert_patch_has(e, "state", "6");
	assert_patch_has(e, "close_code", "Solution provided");
	assert_patch_has(e, "close_notes", "Password reset for Jane Doe on INC0010001 after "
	    "imper.ai verification vr_81 (password reset).");
	assert_patch_has(e, FIELD, "Password reset completed 2026-03-01 12:06:40 UTC");
	assert_patch_has(e, FIELD, "Ticket resolved automatically");
	assert_patch_has(e, "work_notes", "[imper.ai resolved 1.4]");
	assert_int_equal(h->t.resolve_revision, e->revision);
	assert_event(h, "state changed", "from=passed to=resolved why=resolved");
}

static void
test_pass_with_action_in_one_change_resolves(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	assert_int_equal(action_done(h, 0), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "state", "6");
	assert_int_equal(h->t.state, TS_RESOLVED);
}

static void
test_flow_that_closes_closes_the_incident(void **state)
{
	struct h *h = *state;

	flow_v[0].close = 1;
	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	flow_v[0].close = 0;
	assert_patch_has(effect(h, 0), "state", "7");
	assert_patch_has(effect(h, 0), "close_code", "Solution provided");
	assert_int_equal(h->t.state, TS_CLOSED);
	assert_patch_has(effect(h, 0), FIELD, "Ticket closed automatically");
}

static void
test_catalog_item_resolve_sets_closed_complete(void **state)
{
	struct h *h = *state;

	ticket_free(&h->t);
	ticket_init(&h->t, "sc_req_item", SYS2);
	h->table = "sc_req_item";
	h->state = "2";
	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	assert_patch_has(effect(h, 0), "state", "3");
	assert_patch_lacks(effect(h, 0), "close_code");
	assert_int_equal(h->t.state, TS_CLOSED);
}

/* sc_task: no field or requester_field configured, so the defaults apply;
 * the flow sets no max_age, so ENGINE_DEFAULT_MAX_AGE does. */
static void
test_catalog_task_uses_default_requester_walk_and_field(void **state)
{
	struct h *h = *state;

	ticket_free(&h->t);
	ticket_init(&h->t, "sc_task", SYS2);
	h->table = "sc_task";
	h->state = "2";
	to_awaiting(h);
	assert_string_equal(effect(h, 0)->create.requester_name, "Jane Doe");
	assert_string_equal(effect(h, 0)->create.requester_email, "jane.doe@example.com");
	assert_string_equal(h->t.requester, CALLER1);
	assert_int_equal(created(h, 1, "vr_81", T0 + 20), 0);
	assert_patch_has(effect(h, 0), FIELD, "Send Verification link");
	assert_int_equal(patched(h, 1, 0), 0);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 1,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400 },
	    T0 + 300 + ENGINE_DEFAULT_MAX_AGE + 1), 0);
	assert_event(h, "resolve refused", "reason=too_old");
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 2,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400 },
	    T0 + 400), 0);
	assert_patch_has(effect(h, 0), "state", "3");
	assert_int_equal(h->t.state, TS_CLOSED);
}

static void
test_high_risk_pass_is_not_resolved_and_applies_on_fail(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_passed(h, 8);
	assert_int_equal(h->t.on_fail_applied, 1);
	assert_int_equal(action_done(h, 8), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_patch_lacks(e, "state");
	assert_patch_lacks(e, "assignment_group");	/* on_fail only once */
	assert_patch_has(e, "work_notes", "Not resolved automatically: the risk level is High.");
	assert_int_equal(h->t.state, TS_ACTION_DONE);
}

static void
test_high_risk_outcome_patch_carries_on_fail(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 9,
	    .completed_at = T0 + 300, .rec = "Caller seemed hesitant" }, T0 + 300), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_int_equal(h->t.state, TS_PASSED);
	assert_patch_has(e, "assignment_group", "Service Desk Security");
	assert_patch_has(e, "priority", "2");
	assert_patch_lacks(e, "state");
	assert_patch_has(e, "work_notes", "[imper.ai on_fail 1.3]");
	assert_patch_has(e, "work_notes", "High risk detected - Reject this request");
	assert_patch_has(e, "work_notes", "Recommendation: Caller seemed hesitant");
	assert_patch_has(e, "work_notes", "Reassigned to Service Desk Security.");
	assert_patch_has(e, FIELD, "Risk level: High");
	assert_event(h, "resolve refused", "reason=risk_high");
}

/* Started while ServiceNow could not be asked for the group's sys_id: the
 * name never goes into the reference field; the note says what to do. */
static void
test_on_fail_with_a_group_not_looked_up_yet_writes_no_assignment_group(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	flow_v[0].on_fail.unresolved = 1;
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 9,
	    .completed_at = T0 + 300, .rec = "Caller seemed hesitant" }, T0 + 300), 0);
	flow_v[0].on_fail.unresolved = 0;
	e = effect(h, 0);
	assert_patch_lacks(e, "assignment_group");
	assert_patch_has(e, "priority", "2");
	assert_patch_has(e, "work_notes", "Not reassigned to Service Desk Security: the daemon "
	    "could not look the group up in ServiceNow yet; reassign the ticket by hand.");
	assert_event(h, "on_fail applied", "changed=priority,work_note");
}

static void
test_outcome_older_than_max_age_is_not_resolved(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 2,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED,
	    .action_at = T0 + 300 + 3601 }, T0 + 300 + 3601), 0);
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_has(effect(h, 0), "work_notes", "Not resolved automatically: the outcome is "
	    "older than the flow's max_age (1h).");
	assert_int_equal(h->t.state, TS_ACTION_DONE);
	assert_event(h, "resolve refused", "reason=too_old");
}

static void
test_outcome_age_falls_back_to_updated_at(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	/* no completed_at: updated_at is the outcome's time */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 1,
	    .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400 }, T0 + 400), 0);
	assert_patch_has(effect(h, 0), "state", "6");
	restart(h);
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 1,
	    .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400, .updated_at = T0 + 400 },
	    T0 + 400 + 3601), 0);
	assert_patch_lacks(effect(h, 0), "state");
	assert_event(h, "resolve refused", "reason=too_old");
	assert_int_equal(h->t.state, TS_ACTION_DONE);
}

static void
test_not_automated_flow_stops_at_action_done(void **state)
{
	struct h *h = *state;

	h->category = "account_unlock";
	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai action 1.4]");
	/* a flow that never resolves says nothing about not resolving */
	assert_null(strstr(h->res.effects[0].patch_json, "Not resolved automatically"));
	assert_int_equal(h->t.state, TS_ACTION_DONE);
	assert_null(find_event(h, "resolve refused"));
}

/* One corner of (automated or not) x (on_fail or not) x outcome: what the
 * outcome's one PATCH carries, and what is logged. */
struct combo {
	const char	*category;
	int		 automated;
	int		 on_fail;
	enum imperai_status status;
	int		 risk;		/* score */
	const char	*tag;		/* "[imper.ai <tag> 1.3]" */
	const char	*refusal;	/* "Not resolved automatically: ..." or NULL for none */
};

static void
assert_note_lacks(const struct effect *e, const char *needle)
{
	char *s = patch_get(e, "work_notes");

	assert_non_null(s);
	if (strstr(s, needle) != NULL)
		fail_msg("work note has \"%s\": %s", needle, s);
	free(s);
}

static void
run_combo(struct h *h, const struct combo *k)
{
	const struct effect *e;
	char tag[64];

	h->category = k->category;
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = k->status, .risk = k->risk + 1,
	    .completed_at = T0 + 300, .action = k->status == IMPERAI_PASSED ?
	    IMPERAI_ACTION_COMPLETED : IMPERAI_ACTION_NONE, .action_at = T0 + 300,
	    .rec = "See the analysis" }, T0 + 300), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	snprintf(tag, sizeof(tag), "[imper.ai %s 1.3]", k->tag);
	assert_patch_has(e, "work_notes", tag);
	if (k->refusal != NULL)
		assert_patch_has(e, "work_notes", k->refusal);
	else
		assert_note_lacks(e, "Not resolved automatically");
	if (k->on_fail && (k->status == IMPERAI_FAILED || k->risk > 6)) {
		assert_patch_has(e, "assignment_group", "Service Desk Security");
		assert_patch_has(e, "work_notes", "Reassigned to Service Desk Security.");
		assert_event(h, "on_fail applied", "changed=assignment_group,priority,work_note");
		assert_int_equal(h->t.on_fail_applied, 1);
	} else {
		assert_patch_lacks(e, "assignment_group");
		assert_note_lacks(e, "Reassigned");
		assert_note_lacks(e, "High risk detected");
		assert_null(find_event(h, "on_fail applied"));
		assert_int_equal(h->t.on_fail_applied, 0);
	}
	if (k->automated && k->status == IMPERAI_PASSED && k->risk <= 6)
		assert_patch_has(e, "state", "6");
	else
		assert_patch_lacks(e, "state");
	if (k->refusal == NULL)
		assert_null(find_event(h, "resolve refused"));
	assert_event(h, "outcome recorded", "result=");
}

#define NR	"Not resolved automatically: "
#define COMBO(name, cat, aut, onf, st, risk, tag, why)					\
static void										\
test_##name(void **state)								\
{											\
	run_combo(*state, &(struct combo){ cat, aut, onf, st, risk, tag, why });	\
}
COMBO(combo_automated_on_fail_passed, "password_reset", 1, 1, IMPERAI_PASSED, 0, "resolved", NULL)
COMBO(combo_automated_on_fail_failed, "password_reset", 1, 1, IMPERAI_FAILED, 10, "on_fail",
    NR "the verification failed.")
COMBO(combo_automated_on_fail_high_risk, "password_reset", 1, 1, IMPERAI_PASSED, 9, "on_fail",
    NR "the risk level is High.")
COMBO(combo_automated_on_fail_timed_out, "password_reset", 1, 1, IMPERAI_TIMED_OUT, -1,
    "outcome", NULL)
COMBO(combo_automated_plain_passed, "reset_plain", 1, 0, IMPERAI_PASSED, 0, "resolved", NULL)
COMBO(combo_automated_plain_failed, "reset_plain", 1, 0, IMPERAI_FAILED, 10, "outcome",
    NR "the verification failed.")
COMBO(combo_automated_plain_high_risk, "reset_plain", 1, 0, IMPERAI_PASSED, 9, "outcome",
    NR "the risk level is High.")
COMBO(combo_automated_plain_timed_out, "reset_plain", 1, 0, IMPERAI_TIMED_OUT, -1, "outcome",
    NULL)
COMBO(combo_manual_on_fail_passed, "unlock_guarded", 0, 1, IMPERAI_PASSED, 0, "outcome", NULL)
COMBO(combo_manual_on_fail_failed, "unlock_guarded", 0, 1, IMPERAI_FAILED, 10, "on_fail", NULL)
COMBO(combo_manual_on_fail_high_risk, "unlock_guarded", 0, 1, IMPERAI_PASSED, 9, "on_fail",
    NULL)
COMBO(combo_manual_on_fail_timed_out, "unlock_guarded", 0, 1, IMPERAI_TIMED_OUT, -1, "outcome",
    NULL)
COMBO(combo_manual_plain_passed, "account_unlock", 0, 0, IMPERAI_PASSED, 0, "outcome", NULL)
COMBO(combo_manual_plain_failed, "account_unlock", 0, 0, IMPERAI_FAILED, 10, "outcome", NULL)
COMBO(combo_manual_plain_high_risk, "account_unlock", 0, 0, IMPERAI_PASSED, 9, "outcome", NULL)
COMBO(combo_manual_plain_timed_out, "account_unlock", 0, 0, IMPERAI_TIMED_OUT, -1, "outcome",
    NULL)

/* The request of the current generation ends with st at T0 + at. */
static int
ends(struct h *h, enum imperai_status st, int64_t at)
{
	return feed(h, &(struct chg){ .status = st, .completed_at = T0 + at,
	    .action = IMPERAI_ACTION_NONE }, T0 + at);
}

static void
test_timed_out_starts_attempt_2_with_its_own_request_and_one_note(void **state)
{
	struct h *h = *state;
	const struct effect *e;
	char *field;

	h->category = "reset_retry";
	to_link_sent(h);
	assert_int_equal(ends(h, IMPERAI_TIMED_OUT, 900), 0);
	assert_kinds(h, "patch,create");
	assert_patch_lacks(effect(h, 0), "work_notes");	/* the note comes with the link */
	assert_patch_has(effect(h, 0), FIELD, "Registering the verification request");
	assert_patch_has(effect(h, 0), FIELD, "Attempt 2 of 3 - attempt 1: Timed out "
	    "2026-03-01 12:15:00 UTC.");
	e = effect(h, 1);
	assert_int_equal(e->generation, 2);
	assert_string_equal(e->create.idempotency_key, "acme.service-now.com/incident/" SYS1 "/2");
	assert_string_equal(e->create.requester_email, "jane.doe@example.com");
	assert_string_equal(e->create.subject, "Cannot log in");
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_event(h, "outcome recorded", "result=timed_out");
	assert_event(h, "new attempt", "verification=vr_81 after=timed_out attempt=2 of=3");
	assert_int_equal(h->t.nattempts, 1);
	assert_string_equal(h->t.attempts[0].request_id, "vr_81");
	assert_int_equal(h->t.attempts[0].status, IMPERAI_TIMED_OUT);

	assert_int_equal(created(h, 2, "vr_82", T0 + 910), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai link 2.");
	assert_patch_has(effect(h, 0), "work_notes", "Attempt 2 of 3 - attempt 1: Timed out");
	field = patch_get(effect(h, 0), FIELD);
	assert_int_equal(strncmp(field, "<h3><a href=\"" SEND_URL "\">imper.ai - Send "
	    "Verification link</a></h3><p>Attempt 2 of 3 - attempt 1: Timed out", 83), 0);
	free(field);
	/* the old request's late news changes nothing */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_TIMED_OUT, .id = "vr_81",
	    .rec = "late" }, T0 + 920), 0);
	assert_kinds(h, "");
}

static void
test_a_link_expired_before_it_was_sent_counts_as_timed_out(void **state)
{
	struct h *h = *state;

	h->category = "reset_retry";
	to_link_ready(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_TIMED_OUT,
	    .completed_at = T0 + 900 }, T0 + 900), 0);
	assert_kinds(h, "patch,create");
	assert_int_equal(h->t.generation, 2);
	assert_event(h, "new attempt", "attempt=2 of=3");
}

static void
test_not_enough_questions_three_times_leaves_no_attempt(void **state)
{
	struct h *h = *state;

	h->category = "reset_retry";
	to_link_sent(h);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(ends(h, IMPERAI_NOT_ENOUGH_QUESTIONS, 900 + 100 * i), 0);
		assert_kinds(h, "patch,create");
		assert_int_equal(created(h, h->t.generation, i ? "vr_83" : "vr_82",
		    T0 + 950 + 100 * i), 0);
		assert_patch_has(effect(h, 0), "work_notes", i ? "Attempt 3 of 3 - attempt 2: "
		    "Not enough questions" : "Attempt 2 of 3 - attempt 1: Not enough questions");
		assert_int_equal(patched(h, h->t.revision, 0), 0);
	}
	assert_int_equal(h->t.generation, 3);
	assert_int_equal(ends(h, IMPERAI_NOT_ENOUGH_QUESTIONS, 1200), 0);
	assert_kinds(h, "patch");
	assert_null(find_event(h, "new attempt"));
	assert_int_equal(h->t.state, TS_NOT_ENOUGH_QUESTIONS);
	assert_patch_has(effect(h, 0), FIELD, "<h3>Verification Outcome: Not enough questions</h3>");
	assert_patch_has(effect(h, 0), FIELD, "No automatic attempt is left (3 of 3 used). To "
	    "send the requester a new link");
	assert_patch_has(effect(h, 0), "work_notes", "No automatic attempt is left (3 of 3 used).");
	assert_int_equal(h->t.nattempts, 2);
	/* another requester: a new series, nothing said of the old one's attempts */
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_int_equal(ticket_attempt_number(&h->t), 1);
	assert_kinds(h, "cancel,patch,create");
	assert_null(strstr(effect(h, 1)->patch_json, "No automatic attempt"));
	assert_null(strstr(effect(h, 1)->patch_json, "Attempt "));
}

static void
test_failed_or_high_risk_never_starts_a_new_attempt(void **state)
{
	struct h *h = *state;

	h->category = "reset_retry";
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_NONE }, T0 + 300), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "assignment_group", "Service Desk Security");
	assert_null(find_event(h, "new attempt"));
	assert_int_equal(h->t.generation, 1);
	restart(h);
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_TIMED_OUT, .risk = 10,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_NONE }, T0 + 300), 0);
	assert_kinds(h, "patch");
	assert_null(find_event(h, "new attempt"));
	assert_event(h, "on_fail applied", "changed=");
}

static void
test_a_resend_while_sent_shows_the_latest_send_with_one_note(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT,
	    .sent_at = T0 + 60 }, T0 + 60), 0);
	assert_patch_has(effect(h, 0), FIELD, "imper.ai - Send the link again</a>");
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	/* the agent corrects the address: same request, a new link */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT,
	    .recipient = "j***n@e***.org", .sent_at = T0 + 500 }, T0 + 500), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai sent 1.3]");
	assert_patch_has(effect(h, 0), "work_notes", "Verification link sent by Beth Anglin via "
	    "email to j***n@e***.org.");
	assert_patch_has(effect(h, 0), FIELD, "Verification link sent by Beth Anglin at "
	    "2026-03-01 12:08:20 UTC");
	assert_patch_has(effect(h, 0), FIELD, "Recipient: j***n@e***.org");
	assert_patch_has(effect(h, 0), FIELD, "imper.ai - Send the link again</a>");
	assert_int_equal(h->t.generation, 1);
	/* the same send reported again changes nothing */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT,
	    .recipient = "j***n@e***.org", .sent_at = T0 + 500 }, T0 + 520), 0);
	assert_kinds(h, "");
	/* sent again within the same second (times have one-second steps) */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT,
	    .recipient = "+*********67", .sent_at = T0 + 500 }, T0 + 530), 0);
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai sent 1.4]");
	assert_patch_has(effect(h, 0), "work_notes", "to +*********67.");
	/* no send-again link once the outcome is in */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 2,
	    .recipient = "j***n@e***.org", .sent_at = T0 + 500, .completed_at = T0 + 600 },
	    T0 + 600), 0);
	assert_null(strstr(effect(h, 0)->patch_json, "Send the link again"));
}

static void
test_attempts_survive_the_store(void **state)
{
	struct h *h = *state;
	struct ticket back;
	char *enc, *cause = NULL;

	h->category = "reset_retry";
	to_link_sent(h);
	assert_int_equal(ends(h, IMPERAI_TIMED_OUT, 900), 0);
	enc = codec_ticket_encode(&h->t);
	assert_int_equal(codec_ticket_decode(enc, strlen(enc), &back, &cause), 0);
	assert_int_equal(back.nattempts, 1);
	assert_string_equal(back.attempts[0].request_id, "vr_81");
	assert_int_equal(back.attempts[0].status, IMPERAI_TIMED_OUT);
	assert_int_equal(back.attempts[0].at, T0 + 900);
	assert_int_equal(back.attempt, 2);
	assert_int_equal(back.attempt_max, 3);
	assert_int_equal(ticket_attempt_number(&back), 2);
	ticket_free(&back);
	free(enc);
}

static void
test_failed_applies_on_fail_once_and_explains(void **state)
{
	struct h *h = *state;
	const struct effect *e;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_NONE,
	    .rec = "High risk detected - Reject this request" }, T0 + 300), 0);
	assert_kinds(h, "patch");
	e = effect(h, 0);
	assert_int_equal(h->t.state, TS_FAILED);
	assert_patch_has(e, "assignment_group", "Service Desk Security");
	assert_patch_has(e, "priority", "2");
	assert_patch_has(e, "work_notes", "Not resolved automatically: the verification failed.");
	assert_patch_has(e, "work_notes", "High risk detected - Reject this request");
	assert_patch_has(e, FIELD, "Verification Outcome: Failed");
	assert_int_equal(h->t.on_fail_applied, 1);
	assert_event(h, "on_fail applied", "flow=password-reset");
	assert_event(h, "on_fail applied", "changed=assignment_group,priority,work_note");

	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_NONE,
	    .rec = "Escalate to security" }, T0 + 500), 0);
	assert_kinds(h, "patch");
	assert_patch_lacks(effect(h, 0), "assignment_group");
	assert_patch_lacks(effect(h, 0), "priority");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai update 1.4]");
	assert_null(find_event(h, "on_fail applied"));
}

static void
test_timed_out_and_not_enough_questions_enter_their_states(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_TIMED_OUT,
	    .action = IMPERAI_ACTION_NONE }, T0 + 900), 0);
	assert_int_equal(h->t.state, TS_TIMED_OUT);
	assert_patch_has(effect(h, 0), FIELD, "Verification Outcome: Timed out");
	assert_patch_lacks(effect(h, 0), "assignment_group");

	restart(h);
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_NOT_ENOUGH_QUESTIONS,
	    .risk = 5, .action = IMPERAI_ACTION_NONE }, T0 + 900), 0);
	assert_int_equal(h->t.state, TS_NOT_ENOUGH_QUESTIONS);
	assert_patch_has(effect(h, 0), FIELD, "Verification Outcome: Not enough questions");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai outcome 1.3]");
}

static void
test_canceled_at_imperai_enters_canceled(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_CANCELED }, T0 + 900), 0);
	assert_int_equal(h->t.state, TS_CANCELED);
	assert_patch_has(effect(h, 0), FIELD, "canceled at imper.ai");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai canceled 1.3]");
	/* later changes of a canceled request are not shown */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_CANCELED, .risk = 3 },
	    T0 + 901), 0);
	assert_int_equal(h->res.neffects, 0);
}

static void
test_final_outcome_never_moves_backwards(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_IN_PROGRESS, .risk = 2,
	    .completed_at = T0 + 300, .rec = "User verified successfully - Proceed with action" },
	    T0 + 500), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 2,
	    .completed_at = T0 + 300, .rec = "changed its mind" }, T0 + 500), 0);
	assert_int_equal(h->t.state, TS_PASSED);
	assert_int_equal(h->t.v.status, IMPERAI_PASSED);
	assert_patch_has(effect(h, 0), FIELD, "Verification Outcome: Passed");
	assert_patch_lacks(effect(h, 0), "assignment_group");
}

static void
test_requester_change_cancels_passed_verification(void **state)
{
	struct h *h = *state;
	uint32_t rev;

	to_passed(h, 1);
	rev = h->t.revision;
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch,create");
	assert_string_equal(effect(h, 0)->request_id, "vr_81");
	assert_int_equal(effect(h, 0)->generation, 1);
	assert_int_equal(h->t.generation, 2);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_null(h->t.request_id);
	assert_int_equal(h->t.v.status, IMPERAI_PENDING);
	assert_int_equal(h->t.v.risk_score, -1);
	assert_null(h->t.v.recommendation);
	assert_string_equal(h->t.requester, CALLER2);
	assert_int_equal(effect(h, 1)->revision, rev + 1);
	assert_patch_has(effect(h, 1), FIELD, "Re-verification required");
	assert_null(strstr(effect(h, 1)->patch_json, "Passed"));
	assert_patch_has(effect(h, 1), "work_notes", "[imper.ai requester_changed 2.");
	assert_string_equal(effect(h, 2)->create.idempotency_key,
	    "acme.service-now.com/incident/" SYS1 "/2");
	assert_string_equal(effect(h, 2)->create.requester_name, "John Roe");
	assert_int_equal(h->t.history[h->t.nhistory - 2].to, TS_SUPERSEDED);
	assert_int_equal(h->t.history[h->t.nhistory - 2].from, TS_PASSED);
	assert_int_equal(h->t.history[h->t.nhistory - 1].to, TS_AWAITING_REQUEST);
	assert_event(h, "request superseded", "verification=vr_81 why=requester_changed");

	/* the old request's late news never resolves the ticket */
	assert_int_equal(feed(h, &(struct chg){ .id = "vr_81", .status = IMPERAI_PASSED, .risk = 2,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400 },
	    T0 + 400), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);

	assert_int_equal(created(h, 2, "vr_82", T0 + 600), 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_patch_has(effect(h, 0), FIELD, "Re-verification required");
	assert_patch_has(effect(h, 0), FIELD, "Send Verification link");
}

static void
test_requester_change_while_awaiting_request_makes_no_cancel(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch,create");
	assert_int_equal(h->t.generation, 2);
}

static void
test_requester_change_on_a_closed_ticket_does_nothing(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_CLOSED);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.generation, 1);
}

/* The reset completed and the resolve was decided, but the poll shows the
 * caller changed before our PATCH went out: the pass is not the new
 * caller's, so the resolve is withdrawn and verification starts over. */
static void
test_requester_change_seen_before_our_resolve_landed_withdraws_it(void **state)
{
	struct h *h = *state;
	uint32_t rev;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	assert_int_equal(h->t.state, TS_RESOLVED);
	rev = h->t.resolve_revision;
	assert_int_not_equal(rev, 0);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch,cancel,patch,create");
	assert_int_equal(h->t.resolve_revision, 0);
	assert_int_equal(h->t.resolved_at, 0);
	assert_int_equal(h->t.generation, 2);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_int_equal(effect(h, 0)->revision, rev + 1);
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_lacks(effect(h, 0), "close_notes");
	assert_null(strstr(effect(h, 0)->patch_json, "Ticket resolved automatically"));
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai action 1.");
	assert_patch_has(effect(h, 0), "work_notes", "changed in ServiceNow before the "
	    "resolution was written");
	assert_patch_has(effect(h, 2), "work_notes", "[imper.ai requester_changed 2.");
	assert_string_equal(effect(h, 3)->create.requester_name, "John Roe");
	assert_event(h, "resolve withdrawn: the ticket changed first", "verification=vr_81");
}

static void
test_agent_closing_before_our_resolve_landed_keeps_the_agents_resolution(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch");
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_lacks(effect(h, 0), "close_code");
	assert_int_equal(h->t.resolve_revision, 0);
	assert_int_equal(h->t.state, TS_CLOSED);
	assert_event(h, "state changed", "to=closed why=ended");
}

static void
test_unrelated_edit_before_our_resolve_landed_keeps_it(void **state)
{
	struct h *h = *state;
	uint32_t rev;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	rev = h->t.resolve_revision;
	assert_int_equal(observe(h), 0);	/* someone edited another field */
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.resolve_revision, rev);
	assert_int_equal(h->t.state, TS_RESOLVED);
}

static void
test_agent_closing_the_ticket_before_the_outcome_cancels_the_request(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch");
	assert_string_equal(effect(h, 0)->request_id, "vr_81");
	assert_int_equal(h->t.state, TS_CANCELED);
	assert_patch_has(effect(h, 1), FIELD, "closed before the verification completed");
	assert_patch_has(effect(h, 1), "work_notes", "[imper.ai canceled 1.3]");
	assert_event(h, "state changed", "from=link_sent to=canceled why=ticket_ended");
	/* imper.ai confirming the cancel changes nothing */
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_CANCELED }, T0 + 900), 0);
	assert_int_equal(h->res.neffects, 0);
}

/* The requester finished at imper.ai just before the agent closed the
 * ticket: our cancel comes too late (409 already_final), and the field must
 * end showing the real outcome, not "canceled" -- with no resolve and no
 * on_fail on a ticket already closed. */
static void
test_outcome_arriving_after_the_agent_closed_the_ticket_is_shown(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch");
	assert_int_equal(h->t.state, TS_CANCELED);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .completed_at = T0 + 300, .rec = "High risk detected - Reject this request" },
	    T0 + 900), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), FIELD, "Verification Outcome: Failed");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai outcome 1.4]");
	assert_patch_has(effect(h, 0), "work_notes", "closed before this outcome arrived");
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_lacks(effect(h, 0), "assignment_group");
	assert_patch_lacks(effect(h, 0), "priority");
	assert_int_equal(h->t.state, TS_CLOSED);
	assert_event(h, "outcome recorded", "result=failed");
	/* the same report again changes nothing */
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .completed_at = T0 + 300, .rec = "High risk detected - Reject this request" },
	    T0 + 950), 0);
	assert_int_equal(h->res.neffects, 0);

	/* resolved (not closed) by the agent, passed with the action done:
	 * shown, and never resolved by us */
	restart(h);
	to_link_sent(h);
	h->state = "6";
	assert_int_equal(observe(h), 0);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_int_equal(action_done(h, 1), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), FIELD, "Verification Outcome: Passed");
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_lacks(effect(h, 0), "close_code");
	assert_int_equal(h->t.state, TS_RESOLVED);
}

static void
test_agent_resolving_or_canceling_while_awaiting_request(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	h->state = "8";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch");
	assert_int_equal(h->t.state, TS_CANCELED);

	restart(h);
	to_link_ready(h);
	h->state = "6";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch");
}

static void
test_inactive_ticket_counts_as_ended(void **state)
{
	struct h *h = *state;
	struct snow_record r;

	to_link_ready(h);
	h->mod++;
	record(h, &r);
	snow_record_set(&r, "active", "false");
	reset_result(h);
	assert_int_equal(engine_observe(&pol, &h->t, "incident", &r, T0 + 500, &h->res), 0);
	snow_record_free(&r);
	assert_kinds(h, "cancel,patch");
	assert_int_equal(h->t.state, TS_CANCELED);
}

static void
test_agent_resolving_after_the_outcome_records_it_without_cancel(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .completed_at = T0 + 300 }, T0 + 300), 0);
	h->state = "6";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_RESOLVED);
	assert_event(h, "state changed", "from=failed to=resolved why=ended");
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_CLOSED);
}

static void
test_action_completing_after_agent_resolved_updates_the_field_only(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	h->state = "6";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_RESOLVED);
	assert_int_equal(action_done(h, 1), 0);
	assert_kinds(h, "patch");
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_has(effect(h, 0), FIELD, "Password reset completed");
	assert_int_equal(h->t.state, TS_RESOLVED);
}

static void
test_own_resolve_echo_is_a_noop_and_a_later_close_is_recorded(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	h->state = "6";
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_RESOLVED);
	h->mod--;
	assert_int_equal(observe(h), 0);	/* the poll sees our own version */
	assert_int_equal(h->res.changed, 0);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_CLOSED);
	assert_event(h, "state changed", "from=resolved to=closed why=closed");
}

static void
test_reopened_after_resolution_is_not_restarted(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	h->state = "6";
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	h->state = "2";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_RESOLVED);
	assert_non_null(find_event(h, "ticket reopened after resolution; verification not "
	    "restarted"));
}

static void
test_leaving_the_categories_untracks_and_notes_once(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	h->category = "hardware";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch");
	assert_int_equal(h->t.state, TS_UNTRACKED);
	assert_int_equal(h->res.forget, 0);
	assert_int_equal(h->t.untracked_noted, 1);
	assert_patch_has(effect(h, 1), FIELD, "<h3>No verification needed</h3><p>The ticket left "
	    "the verification categories");
	assert_patch_has(effect(h, 1), "work_notes", "[imper.ai untracked 1.3]");
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	h->category = "network";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
}

static void
test_leaving_after_the_outcome_does_not_cancel(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	h->category = "hardware";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai untracked");
	assert_int_equal(h->t.state, TS_UNTRACKED);
	/* and the request's later news is not shown any more */
	assert_int_equal(action_done(h, 1), 0);
	assert_int_equal(h->res.neffects, 0);
}

static void
test_moving_back_into_a_flow_starts_a_new_generation(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	h->category = "hardware";
	assert_int_equal(observe(h), 0);
	h->category = "password_reset";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "create");
	assert_int_equal(h->t.generation, 2);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_string_equal(effect(h, 0)->create.idempotency_key,
	    "acme.service-now.com/incident/" SYS1 "/2");
	assert_event(h, "state changed", "from=untracked to=awaiting_request why=recategorized");
	/* leaving again is said again, once */
	h->category = "hardware";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "patch");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai untracked 2.");
}

static void
test_flow_change_while_pending_recreates_with_the_new_action(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	h->category = "account_unlock";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch,create");
	assert_string_equal(effect(h, 0)->request_id, "vr_81");
	assert_patch_has(effect(h, 1), "work_notes", "[imper.ai flow_changed 2.");
	assert_string_equal(effect(h, 2)->create.action, "account_unlock");
	assert_string_equal(h->t.flow, "account-unlock");
	assert_int_equal(h->t.generation, 2);
}

static void
test_flow_change_after_the_outcome_keeps_the_flow(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	h->category = "account_unlock";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_string_equal(h->t.flow, "password-reset");
	assert_int_equal(h->t.generation, 1);
}

static void
test_reopened_canceled_ticket_starts_a_new_generation(void **state)
{
	struct h *h = *state;

	to_link_sent(h);
	h->state = "7";
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_CANCELED);
	h->state = "2";
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "create");
	assert_int_equal(h->t.generation, 2);
	assert_event(h, "state changed", "from=canceled to=awaiting_request why=reopened");
}

static void
test_patched_remembers_own_mod_count_and_landed_revision(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	assert_int_equal(created(h, 1, "vr_81", T0 + 20), 0);
	assert_int_equal(patched(h, 1, 0), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.own_mod_count, h->mod);
	assert_int_equal(h->t.seen_mod_count, h->mod);
	assert_int_equal(h->t.landed_revision, 1);
	/* an old revision landing late does not go backwards */
	assert_int_equal(patched(h, 0, 0), 0);
	assert_int_equal(h->t.landed_revision, 1);
}

static void
test_patch_answer_showing_a_change_by_someone_else_is_decided(void **state)
{
	struct h *h = *state;

	to_awaiting(h);
	assert_int_equal(created(h, 1, "vr_81", T0 + 20), 0);
	h->caller = CALLER2;	/* changed by an agent just before our PATCH */
	assert_int_equal(patched(h, 1, 1), 0);
	assert_kinds(h, "cancel,patch,create");
	assert_int_equal(h->t.generation, 2);
	assert_string_equal(h->t.requester, CALLER2);
}

static void
test_patch_answer_without_the_fields_is_only_bookkeeping(void **state)
{
	struct h *h = *state;
	struct snow_record r;

	to_link_ready(h);
	memset(&r, 0, sizeof(r));
	memcpy(r.sys_id, SYS1, sizeof(r.sys_id));
	r.mod_count = h->mod + 5;
	reset_result(h);
	assert_int_equal(engine_patched(&pol, &h->t, 1, &r, T0 + 99, &h->res), 0);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_int_equal(h->t.own_mod_count, h->mod + 5);
}

static void
test_resolve_ignored_by_servicenow_is_reported_and_not_retried(void **state)
{
	struct h *h = *state;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	/* the answer shows the ticket still In Progress: state not writable */
	assert_int_equal(patched(h, h->t.revision, 0), 0);
	assert_kinds(h, "patch");
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_has(effect(h, 0), "work_notes", "[imper.ai error 1.5]");
	assert_patch_has(effect(h, 0), "work_notes", "could not be resolved automatically");
	assert_int_equal(h->t.state, TS_ACTION_DONE);
	assert_int_equal(h->t.resolve_failed, 1);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = 1,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400,
	    .rec = "new words" }, T0 + 600), 0);
	assert_patch_lacks(effect(h, 0), "state");
	assert_event(h, "resolve refused", "reason=refused_before");
}

static void
test_resolve_patch_rejected_by_data_policy_writes_an_error_note(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_passed(h, 1);
	assert_int_equal(action_done(h, 1), 0);
	memset(&e, 0, sizeof(e));
	e.kind = EFFECT_PATCH;
	e.table = xstrdup(h->res.effects[0].table);
	memcpy(e.sys_id, h->res.effects[0].sys_id, sizeof(e.sys_id));
	e.revision = h->res.effects[0].revision;
	e.tag = xstrdup("resolved");
	reset_result(h);
	assert_int_equal(engine_effect_failed(&pol, &h->t, &e, "403: Data Policy Exception: "
	    "Close code is mandatory", T0 + 500, &h->res), 0);
	effect_free(&e);
	assert_kinds(h, "patch");
	assert_patch_lacks(effect(h, 0), "state");
	assert_patch_lacks(effect(h, 0), "close_code");
	assert_patch_lacks(effect(h, 0), "close_notes");
	assert_patch_has(effect(h, 0), "work_notes", "could not be resolved automatically");
	assert_patch_has(effect(h, 0), "work_notes", "Data Policy Exception: Close code is "
	    "mandatory");
	assert_null(strstr(effect(h, 0)->patch_json, "resolved automatically by imperai-snow"));
	assert_int_equal(h->t.state, TS_ACTION_DONE);
	assert_string_equal(h->t.last_error, "403: Data Policy Exception: Close code is mandatory");
	assert_event(h, "effect failed", "effect=patch tag=resolved");
}

static void
test_failed_create_keeps_awaiting_request_with_the_error(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_awaiting(h);
	e = h->res.effects[0];	/* the CREATE: moved out of the result */
	memset(&h->res.effects[0], 0, sizeof(h->res.effects[0]));
	reset_result(h);
	assert_int_equal(engine_effect_failed(&pol, &h->t, &e, "400: invalid_request: subject",
	    T0 + 30, &h->res), 0);
	effect_free(&e);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->res.changed, 1);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
	assert_string_equal(h->t.last_error, "400: invalid_request: subject");
	assert_event(h, "effect failed", "effect=create");
	assert_int_equal(find_event(h, "effect failed")->level, LOG_LVL_WARN);
}

static void
test_failed_plain_patch_only_records_the_error(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_awaiting(h);
	assert_int_equal(created(h, 1, "vr_81", T0 + 20), 0);
	e = h->res.effects[0];
	memset(&h->res.effects[0], 0, sizeof(h->res.effects[0]));
	reset_result(h);
	assert_int_equal(engine_effect_failed(&pol, &h->t, &e, "403: User Not Authorized",
	    T0 + 30, &h->res), 0);
	effect_free(&e);
	assert_int_equal(h->res.neffects, 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_string_equal(h->t.last_error, "403: User Not Authorized");
}

static void
test_effect_of_another_ticket_is_rejected(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_awaiting(h);
	memset(&e, 0, sizeof(e));
	e.kind = EFFECT_PATCH;
	e.table = xstrdup("incident");
	memcpy(e.sys_id, SYS2, sizeof(e.sys_id));
	reset_result(h);
	assert_int_equal(engine_effect_failed(&pol, &h->t, &e, "x", T0, &h->res), -EINVAL);
	effect_free(&e);
	assert_null(h->t.last_error);
}

static void
test_bad_arguments_are_refused(void **state)
{
	struct h *h = *state;
	struct snow_record r;
	struct engine_policy nomatch = { .cfg = &cfg, .flows = &flows, .match = NULL };

	h->mod = 0;
	record(h, &r);
	assert_int_equal(engine_observe(&pol, &h->t, "problem", &r, T0, &h->res), -ENOENT);
	assert_int_equal(engine_observe(&nomatch, &h->t, "incident", &r, T0, &h->res), -EINVAL);
	memcpy(r.sys_id, SYS2, sizeof(r.sys_id));
	assert_int_equal(engine_observe(&pol, &h->t, "incident", &r, T0, &h->res), -EINVAL);
	snow_record_free(&r);
	assert_int_equal(h->res.neffects, 0);
}

static void
test_enter_state_keeps_the_newest_history_and_logs_each_change(void **state)
{
	struct h *h = *state;
	char why[16];

	h->t.number = xstrdup("INC0010001");
	for (int i = 0; i < 40; i++) {
		snprintf(why, sizeof(why), "w%d", i);
		engine_enter_state(&h->t, i % 2 ? TS_LINK_READY : TS_LINK_SENT, why, T0 + i,
		    &h->res);
	}
	engine_enter_state(&h->t, TS_LINK_READY, "same", T0 + 99, &h->res);	/* no change */
	assert_int_equal(h->res.nevents, 40);
	assert_int_equal(h->t.nhistory, ENGINE_HISTORY_MAX);
	assert_string_equal(h->t.history[0].why, "w8");
	assert_int_equal(h->t.history[0].at, T0 + 8);
	assert_string_equal(h->t.history[ENGINE_HISTORY_MAX - 1].why, "w39");
	assert_string_equal(h->res.events[1].kv,
	    "ticket=INC0010001 from=link_sent to=link_ready why=w1");
	assert_string_equal(h->res.events[1].msg, "state changed");
	assert_int_equal(h->res.events[1].level, LOG_LVL_INFO);
	assert_int_equal(h->t.state_since, T0 + 39);
}

static void
test_event_values_are_one_line_and_quoted(void **state)
{
	struct h *h = *state;

	h->t.number = xstrdup("INC 1\nx=\"y\"");
	engine_enter_state(&h->t, TS_LINK_SENT, "w", T0, &h->res);
	assert_string_equal(h->res.events[0].kv,
	    "ticket=\"INC 1 x=\\\"y\\\"\" from=untracked to=link_sent why=w");
}

/* Nothing the engine writes to ServiceNow or the log holds the email. */
static void
assert_no_raw_email(const struct h *h)
{
	for (size_t i = 0; i < h->res.nevents; i++)
		assert_null(strstr(h->res.events[i].kv, "@example.com"));
	for (size_t i = 0; i < h->res.neffects; i++)
		if (h->res.effects[i].kind == EFFECT_PATCH)
			assert_null(strstr(h->res.effects[i].patch_json, "@example.com"));
}

static void
test_no_raw_email_in_events_fields_or_notes(void **state)
{
	struct h *h = *state;

	to_link_ready(h);
	assert_no_raw_email(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT,
	    .recipient = "jane.doe@example.com" }, T0 + 60), 0);
	assert_no_raw_email(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_FAILED, .risk = 10,
	    .recipient = "jane.doe@example.com", .rec = "Mail jane.doe@example.com" },
	    T0 + 70), 0);
	assert_no_raw_email(h);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_no_raw_email(h);
}

static void
test_hostile_ticket_text_is_capped_and_repaired_before_sending(void **state)
{
	struct h *h = *state;
	struct snow_record r;
	char *big = xmalloc(1 << 20);
	const struct imperai_create *c;

	memset(big, 'a', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	memcpy(big, "\xff\xfe<script>", 10);
	h->mod = 0;
	record(h, &r);
	snow_record_set(&r, "short_description", big);
	snow_record_set(&r, "description", big);
	snow_record_set(&r, "number", big);
	assert_int_equal(engine_observe(&pol, &h->t, "incident", &r, T0, &h->res), 0);
	snow_record_free(&r);
	free(big);
	c = &effect(h, 0)->create;
	assert_true(strlen(c->subject) <= 1024);
	assert_true(strlen(c->description) <= 16384);
	assert_true(util_utf8_valid(c->subject, strlen(c->subject)));
	assert_true(util_utf8_valid(c->description, strlen(c->description)));
	assert_true(strlen(h->t.number) <= 64);
	assert_true(strlen(h->t.short_description) <= 1024);
}

static void
test_hostile_verification_still_round_trips_through_the_store(void **state)
{
	struct h *h = *state;
	struct imperai_verification v;
	struct ticket back;
	char *enc, *cause = NULL;

	to_link_ready(h);
	v_init(h, &v, "vr_81", IMPERAI_PASSED);
	v.risk_score = 42;
	v.recommendation = xstrdup("bad \xff\xfe bytes \xed\xa0\x80 and \x01 control");
	v.completed_at = -5;
	v.expires_at = INT64_MAX;
	v.action.status = (enum imperai_action_status)77;
	reset_result(h);
	assert_int_equal(engine_verification(&pol, &h->t, &v, T0 + 50, &h->res), 0);
	v_free(&v);
	assert_kinds(h, "patch");
	assert_int_equal(h->t.v.risk_score, -1);
	assert_true(util_utf8_valid(h->t.v.recommendation, strlen(h->t.v.recommendation)));
	enc = codec_ticket_encode(&h->t);
	assert_int_equal(codec_ticket_decode(enc, strlen(enc), &back, &cause), 0);
	assert_null(cause);
	free(enc);
	ticket_free(&back);
}

static void
test_observed_field_shows_which_revision_landed(void **state)
{
	struct h *h = *state;
	struct snow_record r;

	to_awaiting(h);
	assert_int_equal(created(h, 1, "vr_81", T0 + 20), 0);
	h->mod++;
	record(h, &r);
	snow_record_set(&r, FIELD, "<p>...<span>imperai-snow ref 1.1</span></p>");
	reset_result(h);
	assert_int_equal(engine_observe(&pol, &h->t, "incident", &r, T0 + 30, &h->res), 0);
	assert_int_equal(h->t.landed_revision, 1);
	/* a revision we never wrote is not believed */
	h->mod++;
	r.mod_count = h->mod;
	snow_record_set(&r, FIELD, "imperai-snow ref 1.9");
	assert_int_equal(engine_observe(&pol, &h->t, "incident", &r, T0 + 40, &h->res), 0);
	assert_int_equal(h->t.landed_revision, 1);
	snow_record_free(&r);
}

static void
test_error_text_in_events_has_emails_masked(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_awaiting(h);
	e = h->res.effects[0];
	memset(&h->res.effects[0], 0, sizeof(h->res.effects[0]));
	reset_result(h);
	assert_int_equal(engine_effect_failed(&pol, &h->t, &e, "422: requester_email "
	    "jane.doe@example.com is unknown", T0 + 30, &h->res), 0);
	effect_free(&e);
	assert_event(h, "effect failed", "error=\"422: requester_email j***e@e***.com is unknown\"");
	assert_no_raw_email(h);
}

static void
test_field_has_revision(void **state)
{
	(void)state;
	assert_true(engine_field_has_revision("<p>x<span>imperai-snow ref 2.5</span></p>", 2, 5));
	assert_true(engine_field_has_revision("imperai-snow ref 2.6", 2, 5));
	assert_true(engine_field_has_revision("imperai-snow ref 3.6", 2, 5));
	assert_false(engine_field_has_revision("imperai-snow ref 2.4", 2, 5));
	assert_false(engine_field_has_revision("imperai-snow ref 1.9", 2, 5));
	assert_false(engine_field_has_revision("", 1, 1));
	assert_false(engine_field_has_revision(NULL, 1, 1));
}

static void
test_state_and_effect_names(void **state)
{
	enum tstate s;

	(void)state;
	for (int i = 0; i < TS__COUNT; i++) {
		assert_int_equal(engine_state_parse(engine_state_name((enum tstate)i), &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(engine_state_name(TS_NOT_ENOUGH_QUESTIONS), "not_enough_questions");
	assert_string_equal(engine_state_name(TS__COUNT), "unknown");
	assert_int_equal(engine_state_parse("bogus", &s), -EINVAL);
	assert_int_equal(engine_state_parse(NULL, &s), -EINVAL);
	assert_string_equal(engine_effect_name(EFFECT_CANCEL), "cancel");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)


int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ticket_needing_no_verification_is_forgotten_without_effects),
		T(test_new_ticket_in_a_flow_registers_a_request_filled_from_the_record),
		T(test_unreadable_requester_gets_no_request_and_the_field_says_why),
		T(test_unreadable_requester_is_said_once_and_picked_up_when_readable),
		T(test_requester_changed_to_an_unreadable_one_cancels_and_waits),
		T(test_close_notes_show_a_word_for_a_missing_requester),
		T(test_configured_instance_name_goes_into_the_idempotency_key),
		T(test_ticket_already_ended_is_never_verified),
		T(test_catalog_item_already_closed_is_never_verified),
		T(test_record_not_newer_than_seen_is_a_noop),
		T(test_own_patch_echo_is_only_bookkeeping),
		T(test_change_the_engine_does_not_look_at_is_only_bookkeeping),
		T(test_created_stores_the_request_and_injects_the_link),
		T(test_created_with_send_link_on_another_host_shows_no_link),
		T(test_created_reporting_a_later_status_applies_it_too),
		T(test_created_for_a_stale_generation_is_canceled),
		T(test_created_replay_is_ignored),
		T(test_create_answered_after_the_ticket_closed_is_canceled),
		T(test_verification_naming_another_ticket_is_refused),
		T(test_verification_of_an_older_request_is_ignored),
		T(test_verification_without_relevant_change_is_a_noop),
		T(test_link_sent_updates_the_field_with_one_note),
		T(test_in_progress_is_shown),
		T(test_passed_with_action_pending_waits_and_explains),
		T(test_action_completed_on_automated_flow_resolves_in_the_same_patch),
		T(test_pass_with_action_in_one_change_resolves),
		T(test_flow_that_closes_closes_the_incident),
		T(test_catalog_item_resolve_sets_closed_complete),
		T(test_catalog_task_uses_default_requester_walk_and_field),
		T(test_high_risk_pass_is_not_resolved_and_applies_on_fail),
		T(test_high_risk_outcome_patch_carries_on_fail),
		T(test_on_fail_with_a_group_not_looked_up_yet_writes_no_assignment_group),
		T(test_outcome_older_than_max_age_is_not_resolved),
		T(test_outcome_age_falls_back_to_updated_at),
		T(test_not_automated_flow_stops_at_action_done),
		T(test_combo_automated_on_fail_passed),
		T(test_combo_automated_on_fail_failed),
		T(test_combo_automated_on_fail_high_risk),
		T(test_combo_automated_on_fail_timed_out),
		T(test_combo_automated_plain_passed),
		T(test_combo_automated_plain_failed),
		T(test_combo_automated_plain_high_risk),
		T(test_combo_automated_plain_timed_out),
		T(test_combo_manual_on_fail_passed),
		T(test_combo_manual_on_fail_failed),
		T(test_combo_manual_on_fail_high_risk),
		T(test_combo_manual_on_fail_timed_out),
		T(test_combo_manual_plain_passed),
		T(test_combo_manual_plain_failed),
		T(test_combo_manual_plain_high_risk),
		T(test_combo_manual_plain_timed_out),
		T(test_failed_applies_on_fail_once_and_explains),
		T(test_timed_out_starts_attempt_2_with_its_own_request_and_one_note),
		T(test_a_link_expired_before_it_was_sent_counts_as_timed_out),
		T(test_not_enough_questions_three_times_leaves_no_attempt),
		T(test_failed_or_high_risk_never_starts_a_new_attempt),
		T(test_attempts_survive_the_store),
		T(test_a_resend_while_sent_shows_the_latest_send_with_one_note),
		T(test_timed_out_and_not_enough_questions_enter_their_states),
		T(test_canceled_at_imperai_enters_canceled),
		T(test_final_outcome_never_moves_backwards),
		T(test_requester_change_cancels_passed_verification),
		T(test_requester_change_while_awaiting_request_makes_no_cancel),
		T(test_requester_change_on_a_closed_ticket_does_nothing),
		T(test_requester_change_seen_before_our_resolve_landed_withdraws_it),
		T(test_agent_closing_before_our_resolve_landed_keeps_the_agents_resolution),
		T(test_unrelated_edit_before_our_resolve_landed_keeps_it),
		T(test_agent_closing_the_ticket_before_the_outcome_cancels_the_request),
		T(test_agent_resolving_or_canceling_while_awaiting_request),
		T(test_outcome_arriving_after_the_agent_closed_the_ticket_is_shown),
		T(test_inactive_ticket_counts_as_ended),
		T(test_agent_resolving_after_the_outcome_records_it_without_cancel),
		T(test_action_completing_after_agent_resolved_updates_the_field_only),
		T(test_own_resolve_echo_is_a_noop_and_a_later_close_is_recorded),
		T(test_reopened_after_resolution_is_not_restarted),
		T(test_leaving_the_categories_untracks_and_notes_once),
		T(test_leaving_after_the_outcome_does_not_cancel),
		T(test_moving_back_into_a_flow_starts_a_new_generation),
		T(test_flow_change_while_pending_recreates_with_the_new_action),
		T(test_flow_change_after_the_outcome_keeps_the_flow),
		T(test_reopened_canceled_ticket_starts_a_new_generation),
		T(test_patched_remembers_own_mod_count_and_landed_revision),
		T(test_patch_answer_showing_a_change_by_someone_else_is_decided),
		T(test_patch_answer_without_the_fields_is_only_bookkeeping),
		T(test_resolve_ignored_by_servicenow_is_reported_and_not_retried),
		T(test_resolve_patch_rejected_by_data_policy_writes_an_error_note),
		T(test_failed_create_keeps_awaiting_request_with_the_error),
		T(test_failed_plain_patch_only_records_the_error),
		T(test_effect_of_another_ticket_is_rejected),
		T(test_bad_arguments_are_refused),
		T(test_enter_state_keeps_the_newest_history_and_logs_each_change),
		T(test_event_values_are_one_line_and_quoted),
		T(test_no_raw_email_in_events_fields_or_notes),
		T(test_hostile_ticket_text_is_capped_and_repaired_before_sending),
		T(test_hostile_verification_still_round_trips_through_the_store),
		T(test_observed_field_shows_which_revision_landed),
		T(test_error_text_in_events_has_emails_masked),
		T(test_field_has_revision),
		T(test_state_and_effect_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
