/* Tests for lib/engine.c: every transition and every refusal of the ticket
 * lifecycle, effects and events, and the store encoding.
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

#include "config.h"
#include "codec.h"
#include "engine.h"
#include "flows.h"
#include "imperai.h"
#include "log.h"
#include "snow.h"
#include "util.h"

#define T0		INT64_C(1772366400)	/* 2026-03-01 12:00:00 UTC */
#define SYS1		"46d44a5fa9fe198101b5a8b5de1e3e13"
#define SYS2		"9d385017c611228701d22104cc95c371"
#define CALLER1		"681ccaf9c0a8016400b98a06818d57c7"
#define CALLER2		"5137153cc611227c000bbd1bd8cd2005"
#define SEND_URL	"https://verify.imper.ai/send/tok1"
#define DETAILS_URL	"https://verify.imper.ai/requests/vr_81"
#define FIELD		"u_imperai_verification"

static struct config_table tables[] = {
	{ .name = "incident", .field = FIELD, .requester_field = "caller_id" },
	{ .name = "sc_req_item", .field = FIELD, .requester_field = "requested_for" },
	{ .name = "sc_task", .field = NULL, .requester_field = NULL },
};
static char *link_hosts[] = { "verify.imper.ai" };
static struct config cfg;

static char *reset_cats[] = { "password_reset" };
static char *unlock_cats[] = { "account_unlock" };
static struct flow flow_v[] = {
	{ .name = "password-reset", .table = "incident", .categories = reset_cats,
	  .ncategories = 1, .action = "password_reset", .automated = 1, .close = 0,
	  .close_code = "Solution provided",
	  .close_notes = "Password reset for {requester} on {number} after imper.ai "
	      "verification {verification_id} ({action}).",
	  .max_age = 3600,
	  .on_fail = { .assignment_group = "Service Desk Security", .priority = 2 } },
	{ .name = "account-unlock", .table = "incident", .categories = unlock_cats,
	  .ncategories = 1, .action = "account_unlock", .automated = 0, .max_age = 3600 },
	{ .name = "ritm-reset", .table = "sc_req_item", .categories = reset_cats,
	  .ncategories = 1, .action = "password_reset", .automated = 1, .max_age = 1800 },
	{ .name = "task-reset", .table = "sc_task", .categories = reset_cats,
	  .ncategories = 1, .action = "password_reset", .automated = 1 },
};
static struct flows flows = { .v = flow_v, .n = ARRAY_SIZE(flow_v) };

/* The flows' match rule for tests: table and category. */
static const struct flow *
fake_match(const struct flows *f, const char *table, const struct snow_record *r)
{
	const char *cat = snow_record_get(r, "category");

	for (size_t i = 0; i < f->n; i++) {
		if (!str_eq(f->v[i].table, table))
			continue;
		for (size_t k = 0; k < f->v[i].ncategories; k++)
			if (str_eq(cat, f->v[i].categories[k]))
				return &f->v[i];
	}
	return NULL;
}

static const struct engine_policy pol = { .cfg = &cfg, .flows = &flows, .match = fake_match };

/* One ticket under test and the result of the last decision. */
struct h {
	struct ticket		t;
	struct engine_result	res;
	const char		*table;
	int64_t			 mod;		/* the ticket's sys_mod_count in ServiceNow */
	const char		*category;
	const char		*state;
	const char		*caller;
	int			 hide;		/* 1: requester unreadable, 2: only its email readable */
};

static int
setup(void **state)
{
	struct h *h = xcalloc(1, sizeof(*h));

	memset(&cfg, 0, sizeof(cfg));
	cfg.snow.instance = "https://acme.service-now.com/";
	cfg.snow.tables = tables;
	cfg.snow.ntables = ARRAY_SIZE(tables);
	cfg.imperai.link_hosts = link_hosts;
	cfg.imperai.nlink_hosts = 1;
	cfg.imperai.risk_verified_max = 3;
	cfg.imperai.risk_medium_max = 6;
	h->table = "incident";
	ticket_init(&h->t, "incident", SYS1);
	engine_result_init(&h->res);
	h->mod = -1;
	h->category = "password_reset";
	h->state = "1";
	h->caller = CALLER1;
	*state = h;
	return 0;
}

static int
teardown(void **state)
{
	struct h *h = *state;

	ticket_free(&h->t);
	engine_result_free(&h->res);
	free(h);
	return 0;
}

static void
reset_result(struct h *h)
{
	engine_result_free(&h->res);
	engine_result_init(&h->res);
}

/* The ticket as ServiceNow would return it at h->mod. */
static void
record(struct h *h, struct snow_record *r)
{
	int john = str_eq(h->caller, CALLER2);
	const char *rf = str_eq(h->table, "sc_req_item") ? "requested_for" :
	    str_eq(h->table, "sc_task") ? "request_item.requested_for" : "caller_id";
	char walk[64];

	memset(r, 0, sizeof(*r));
	snprintf(r->sys_id, sizeof(r->sys_id), "%s", h->t.sys_id);
	r->mod_count = h->mod;
	r->updated_on = T0 + h->mod;
	snow_record_set(r, "number", str_eq(h->table, "incident") ? "INC0010001" : "RITM0010001");
	snow_record_set(r, "state", h->state);
	snow_record_set(r, "active", str_eq(h->state, "7") || str_eq(h->state, "8") ? "false" :
	    "true");
	snow_record_set(r, "category", h->category);
	snow_record_set(r, "subcategory", "");
	snow_record_set(r, "short_description", "Cannot log in");
	snow_record_set(r, "description", "Locked out after vacation");
	snow_record_set(r, rf, h->caller);
	/* ACLs that hide a field make ServiceNow answer "" for it */
	snprintf(walk, sizeof(walk), "%s.name", rf);
	snow_record_set(r, walk, h->hide ? "" : john ? "John Roe" : "Jane Doe");
	snprintf(walk, sizeof(walk), "%s.email", rf);
	snow_record_set(r, walk, h->hide == 1 ? "" : john ? "john.roe@example.com" :
	    "jane.doe@example.com");
	snprintf(walk, sizeof(walk), "%s.user_name", rf);
	snow_record_set(r, walk, h->hide ? "" : john ? "john.roe" : "jane.doe");
	snow_record_set(r, "assigned_to.name", "Beth Anglin");
	snow_record_set(r, FIELD, "");
}

/* ServiceNow shows the next version of the ticket to the poller. */
static int
observe(struct h *h)
{
	struct snow_record r;
	int rc;

	h->mod++;
	record(h, &r);
	reset_result(h);
	rc = engine_observe(&pol, &h->t, h->table, &r, T0 + 10 * h->mod, &h->res);
	snow_record_free(&r);
	return rc;
}

static void
v_free(struct imperai_verification *v)
{
	free(v->id);
	free(v->ticket.instance);
	free(v->ticket.table);
	free(v->ticket.sys_id);
	free(v->ticket.number);
	free(v->ticket.url);
	free(v->channel);
	free(v->recipient_masked);
	free(v->initiated_by);
	free(v->recommendation);
	free(v->send_link_url);
	free(v->details_url);
	free(v->action.type);
	memset(v, 0, sizeof(*v));
}

static void
v_init(struct h *h, struct imperai_verification *v, const char *id, enum imperai_status st)
{
	memset(v, 0, sizeof(*v));
	v->id = xstrdup(id);
	v->ticket.instance = xstrdup("acme.service-now.com");
	v->ticket.table = xstrdup(h->table);
	v->ticket.sys_id = xstrdup(h->t.sys_id);
	v->ticket.number = xstrdup("INC0010001");
	v->status = st;
	v->risk_score = -1;
	v->send_link_url = xstrdup(SEND_URL);
	v->details_url = xstrdup(DETAILS_URL);
	v->expires_at = T0 + 86400;
	v->updated_at = T0;
	v->action.type = xstrdup("password_reset");
	v->action.status = IMPERAI_ACTION_PENDING;
}

static int
created(struct h *h, uint32_t gen, const char *id, int64_t now)
{
	struct imperai_verification v;
	int rc;

	v_init(h, &v, id, IMPERAI_PENDING);
	reset_result(h);
	rc = engine_created(&pol, &h->t, gen, &v, now, &h->res);
	v_free(&v);
	return rc;
}

/* One change of the current request as the feed reports it. */
struct chg {
	enum imperai_status		status;
	int				risk;		/* score + 1: 0 = unknown */
	enum imperai_action_status	action;
	int64_t				completed_at;
	int64_t				action_at;
	int64_t				updated_at;	/* 0: now */
	const char			*rec;
	const char			*recipient;
	const char			*id;
};

static int
feed(struct h *h, const struct chg *c, int64_t now)
{
	struct imperai_verification v;
	int rc;

	v_init(h, &v, c->id ? c->id : h->t.request_id, c->status);
	v.channel = xstrdup("email");
	v.recipient_masked = xstrdup(c->recipient ? c->recipient : "j***e@e***.com");
	v.initiated_by = xstrdup("Beth Anglin");
	v.risk_score = c->risk - 1;
	v.recommendation = c->rec ? xstrdup(c->rec) : NULL;
	v.completed_at = c->completed_at;
	v.updated_at = c->updated_at ? c->updated_at : now;
	v.action.status = c->action ? c->action : IMPERAI_ACTION_PENDING;
	v.action.completed_at = c->action_at;
	reset_result(h);
	rc = engine_verification(&pol, &h->t, &v, now, &h->res);
	v_free(&v);
	return rc;
}

/* Our PATCH of rev landed; ServiceNow answered with the ticket at the next
 * sys_mod_count (plus skip changes by others). */
static int
patched(struct h *h, uint32_t rev, int skip)
{
	struct snow_record r;
	int rc;

	h->mod += 1 + skip;
	record(h, &r);
	reset_result(h);
	rc = engine_patched(&pol, &h->t, rev, &r, T0 + 10 * h->mod, &h->res);
	snow_record_free(&r);
	return rc;
}

static const struct effect *
effect(const struct h *h, size_t i)
{
	assert_true(i < h->res.neffects);
	return &h->res.effects[i];
}

/* The string value of key in a PATCH body, NULL if absent (caller frees). */
static char *
patch_get(const struct effect *e, const char *key)
{
	struct json_object *o, *v;
	char *s = NULL;

	assert_int_equal(e->kind, EFFECT_PATCH);
	o = json_tokener_parse(e->patch_json);
	assert_non_null(o);
	if (json_object_object_get_ex(o, key, &v))
		s = xstrdup(json_object_get_string(v));
	json_object_put(o);
	return s;
}

static void
assert_patch_has(const struct effect *e, const char *key, const char *needle)
{
	char *s = patch_get(e, key);

	if (s == NULL)
		fail_msg("PATCH has no %s: %s", key, e->patch_json);
	if (needle != NULL && strstr(s, needle) == NULL)
		fail_msg("PATCH %s lacks \"%s\": %s", key, needle, s);
	free(s);
}

static void
assert_patch_lacks(const struct effect *e, const char *key)
{
	char *s = patch_get(e, key);

	if (s != NULL)
		fail_msg("PATCH has %s=%s", key, s);
}

static void
assert_kinds(const struct h *h, const char *kinds)
{
	struct buf b;

	buf_init(&b);
	for (size_t i = 0; i < h->res.neffects; i++)
		buf_addf(&b, "%s%s", i ? "," : "", engine_effect_name(h->res.effects[i].kind));
	if (strcmp(b.data ? b.data : "", kinds) != 0)
		fail_msg("effects %s, expected %s", b.data ? b.data : "(none)", kinds);
	buf_free(&b);
}

static const struct engine_event *
find_event(const struct h *h, const char *msg)
{
	for (size_t i = 0; i < h->res.nevents; i++)
		if (strcmp(h->res.events[i].msg, msg) == 0)
			return &h->res.events[i];
	return NULL;
}

static void
assert_event(const struct h *h, const char *msg, const char *kv)
{
	for (size_t i = 0; i < h->res.nevents; i++)
		if (strcmp(h->res.events[i].msg, msg) == 0 && strstr(h->res.events[i].kv, kv))
			return;
	fail_msg("no event \"%s\" with \"%s\"", msg, kv);
}

/* Starts over with a fresh ticket. */
static void
restart(struct h *h)
{
	ticket_free(&h->t);
	ticket_init(&h->t, h->table, SYS1);
	h->mod = -1;
	h->state = "1";
	h->caller = CALLER1;
}

static void
to_awaiting(struct h *h)
{
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
}

static void
to_link_ready(struct h *h)
{
	to_awaiting(h);
	assert_int_equal(created(h, h->t.generation, "vr_81", T0 + 20), 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
}

static void
to_link_sent(struct h *h)
{
	to_link_ready(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT }, T0 + 60), 0);
	assert_int_equal(h->t.state, TS_LINK_SENT);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
}

static void
to_passed(struct h *h, int risk)
{
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = risk + 1,
	    .completed_at = T0 + 300, .rec = "User verified successfully - Proceed with action" },
	    T0 + 300), 0);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
}

/* The action completed at T0 + 400 (reported then). */
static int
action_done(struct h *h, int risk)
{
	return feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = risk + 1,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400,
	    .rec = "User verified successfully - Proceed with action" }, T0 + 400);
}

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
	assert_patch_has(effect(h, 0), FIELD, "the requester could not be read");
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
	assert_patch_has(effect(h, 0), "work_notes", "the flow account-unlock is not automated");
	assert_int_equal(h->t.state, TS_ACTION_DONE);
	assert_event(h, "resolve refused", "reason=not_automated");
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
	assert_patch_has(effect(h, 1), FIELD, "No verification needed: the ticket left the "
	    "verification categories");
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

static void
test_ticket_round_trips_through_json(void **state)
{
	struct h *h = *state;
	struct ticket back;
	char *a, *b, *cause = NULL;

	to_passed(h, 8);
	h->t.last_error = xstrdup("503: \"unavailable\"\n");
	h->t.v.analysis_summary = xstrdup("caf\xc3\xa9");
	a = codec_ticket_encode(&h->t);
	assert_non_null(strstr(a, "\"v\":1"));
	assert_int_equal(codec_ticket_decode(a, strlen(a), &back, &cause), 0);
	assert_null(cause);
	b = codec_ticket_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.state, TS_PASSED);
	assert_string_equal(back.sys_id, SYS1);
	assert_int_equal(back.generation, 1);
	assert_int_equal(back.revision, h->t.revision);
	assert_int_equal(back.nhistory, h->t.nhistory);
	assert_int_equal(back.v.risk_score, 8);
	assert_int_equal(back.v.status, IMPERAI_PASSED);
	assert_int_equal(back.on_fail_applied, 1);
	assert_string_equal(back.v.recipient_masked, "j***e@e***.com");
	assert_string_equal(back.history[0].why, "new");
	free(a);
	free(b);
	ticket_free(&back);
}

static void
test_fresh_ticket_round_trips(void **state)
{
	struct ticket t, back;
	char *a, *b;

	(void)state;
	ticket_init(&t, "incident", SYS1);
	a = codec_ticket_encode(&t);
	assert_int_equal(codec_ticket_decode(a, strlen(a), &back, NULL), 0);
	b = codec_ticket_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.seen_mod_count, -1);
	assert_int_equal(back.v.risk_score, -1);
	free(a);
	free(b);
	ticket_free(&t);
	ticket_free(&back);
}

static void
test_ticket_decode_names_the_bad_field(void **state)
{
	static const struct { const char *json, *cause; int err; } cases[] = {
		{ "{\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: v: missing", -EINVAL },
		{ "{\"v\":2,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: v: unsupported", -EPROTO },
		{ "{\"v\":\"1\",\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: v: expected an integer", -EINVAL },
		{ "{\"v\":1,\"sys_id\":\"a\",\"state\":\"untracked\"}", "ticket: table: missing",
		  -EINVAL },
		{ "{\"v\":1,\"table\":7,\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: table: expected a string", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"0123456789abcdef0123456789abcdef0\","
		  "\"state\":\"untracked\"}", "ticket: sys_id: too long", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"happy\"}",
		  "ticket: state: unknown value", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"generation\":\"1\"}", "ticket: generation: expected an integer", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"generation\":4294967296}", "ticket: generation: out of range", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"generation\":-1}", "ticket: generation: out of range", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"ended\":1}", "ticket: ended: expected true or false", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"number\":\"IN\\u0000C\"}", "ticket: number: contains a NUL", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"verification\":{\"status\":\"won\"}}", "ticket: verification.status: unknown",
		  -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"verification\":{\"status\":\"passed\",\"risk_score\":11}}",
		  "ticket: verification.risk_score: out of range", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"verification\":{\"status\":\"passed\",\"action\":{\"status\":3}}}",
		  "ticket: verification.action.status: expected a string", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"history\":[{\"at\":1,\"from\":\"untracked\",\"to\":\"nowhere\",\"why\":\"x\"}]}",
		  "ticket: history[].to: unknown value", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"history\":[7]}", "ticket: history[]: expected an object", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"created_at\":99999999999999}", "ticket: created_at: out of range", -EINVAL },
		{ "[1,2]", "ticket: document: expected a JSON object", -EINVAL },
		{ "{\"v\":1", "ticket: document: truncated", -EINVAL },
		{ "{\"v\":1} x", "ticket: document:", -EINVAL },
		{ "{\"v\":1}  \n", "ticket: table: missing", -EINVAL },
		{ "{\"v\":1,}", "ticket: document:", -EINVAL },
		{ "{\"v\":NaN}", "ticket: v: expected an integer", -EINVAL },
		{ "{\"v\":1,\"table\":\"\xff\"}", "ticket: document:", -EINVAL },
	};
	struct ticket t;
	char *cause;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		cause = NULL;
		if (codec_ticket_decode(cases[i].json, strlen(cases[i].json), &t, &cause) !=
		    cases[i].err || cause == NULL || strstr(cause, cases[i].cause) == NULL)
			fail_msg("case %zu: %s: got \"%s\"", i, cases[i].json, cause ? cause : "");
		assert_null(t.table);
		free(cause);
		ticket_free(&t);
	}
	cause = NULL;
	assert_int_equal(codec_ticket_decode("{\"v\":1}\0", 8, &t, &cause), -EINVAL);
	assert_non_null(strstr(cause, "NUL"));
	free(cause);
	assert_int_equal(codec_ticket_decode("", 0, &t, NULL), -EINVAL);
	assert_int_equal(codec_ticket_decode(NULL, 0, &t, NULL), -EINVAL);
}

/* A deterministic generator for the corruption test. */
static uint32_t
lcg(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 16;
}

static void
decode_any(const char *buf, size_t len, int effect)
{
	struct ticket t;
	struct effect e;
	char *cause = NULL;
	int rc;

	if (effect) {
		rc = codec_effect_decode(buf, len, &e, &cause);
		if (rc == 0)
			effect_free(&e);
	} else {
		rc = codec_ticket_decode(buf, len, &t, &cause);
		if (rc == 0)
			ticket_free(&t);
	}
	assert_true(rc == 0 ? cause == NULL : cause != NULL);
	free(cause);
}

static void
corrupt_and_decode(const char *doc, int effect)
{
	size_t len = strlen(doc);
	char *buf = xmalloc(len + 1);
	uint32_t seed = 42;

	for (size_t cut = 0; cut <= len; cut++)
		decode_any(doc, cut, effect);
	for (size_t i = 0; i < 3000; i++) {
		memcpy(buf, doc, len);
		for (int k = 0; k < 1 + (int)(lcg(&seed) % 4); k++)
			buf[lcg(&seed) % len] = (char)lcg(&seed);
		decode_any(buf, len, effect);
	}
	for (size_t i = 0; i < 500; i++) {
		for (size_t k = 0; k < len; k++)
			buf[k] = (char)lcg(&seed);
		decode_any(buf, len, effect);
	}
	free(buf);
}

static void
test_decoders_survive_corrupt_input(void **state)
{
	struct h *h = *state;
	const char *doc;
	char *enc;

	to_passed(h, 1);
	enc = codec_ticket_encode(&h->t);
	corrupt_and_decode(enc, 0);
	free(enc);
	assert_int_equal(action_done(h, 1), 0);
	enc = codec_effect_encode(effect(h, 0));
	corrupt_and_decode(enc, 1);
	free(enc);
	restart(h);
	to_passed(h, 1);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	enc = codec_effect_encode(effect(h, 2));
	corrupt_and_decode(enc, 1);
	free(enc);
	doc = "{\"v\":1,\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]"
	    "]]]]]]]]]]]]]]]]}";
	decode_any(doc, strlen(doc), 0);
}

static void
assert_effect_round_trip(const struct effect *e)
{
	struct effect back;
	char *a = codec_effect_encode(e), *b, *cause = NULL;

	assert_int_equal(codec_effect_decode(a, strlen(a), &back, &cause), 0);
	assert_null(cause);
	b = codec_effect_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.kind, e->kind);
	assert_int_equal(back.generation, e->generation);
	assert_int_equal(back.revision, e->revision);
	free(a);
	free(b);
	effect_free(&back);
}

static void
test_effects_round_trip_through_json(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_passed(h, 1);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch,create");
	for (size_t i = 0; i < h->res.neffects; i++)
		assert_effect_round_trip(effect(h, i));
	e = h->res.effects[2];
	e.attempts = 3;
	e.not_before = T0 + 60;
	e.sent_at = T0 + 1;
	e.last_error = "503";
	assert_effect_round_trip(&e);
	e.last_error = NULL;
	assert_string_equal(effect(h, 2)->create.requester_email, "john.roe@example.com");
}

static void
test_effect_decode_requires_what_each_kind_needs(void **state)
{
	static const struct { const char *json, *cause; } cases[] = {
		{ "{\"v\":1,\"kind\":\"cancel\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: request_id: missing" },
		{ "{\"v\":1,\"kind\":\"patch\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: patch_json: missing" },
		{ "{\"v\":1,\"kind\":\"create\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: create: missing" },
		{ "{\"v\":1,\"kind\":\"create\",\"table\":\"incident\",\"sys_id\":\"a\","
		  "\"create\":{\"subject\":\"s\"}}", "effect: create.idempotency_key: missing" },
		{ "{\"v\":1,\"kind\":\"create\",\"table\":\"incident\",\"sys_id\":\"a\","
		  "\"create\":{\"idempotency_key\":\"k\",\"ticket\":[]}}",
		  "effect: create.ticket: expected an object" },
		{ "{\"v\":1,\"kind\":\"explode\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: kind: unknown value" },
		{ "{\"v\":1,\"kind\":\"cancel\",\"table\":\"incident\",\"sys_id\":\"a\","
		  "\"request_id\":\"vr\",\"attempts\":-1}", "effect: attempts: out of range" },
	};
	struct effect e;
	char *cause;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		cause = NULL;
		if (codec_effect_decode(cases[i].json, strlen(cases[i].json), &e, &cause) !=
		    -EINVAL || cause == NULL || strstr(cause, cases[i].cause) == NULL)
			fail_msg("case %zu: got \"%s\"", i, cause ? cause : "");
		assert_null(e.table);
		free(cause);
	}
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
		T(test_outcome_older_than_max_age_is_not_resolved),
		T(test_outcome_age_falls_back_to_updated_at),
		T(test_not_automated_flow_stops_at_action_done),
		T(test_failed_applies_on_fail_once_and_explains),
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
		T(test_ticket_round_trips_through_json),
		T(test_fresh_ticket_round_trips),
		T(test_ticket_decode_names_the_bad_field),
		T(test_decoders_survive_corrupt_input),
		T(test_effects_round_trip_through_json),
		T(test_effect_decode_requires_what_each_kind_needs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
