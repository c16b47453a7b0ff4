/* The engine's test fixture (engine_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "engine_fixture.h"
#include "util.h"

static struct config_table tables[] = {
	{ .name = "incident", .field = FIELD, .requester_field = "caller_id" },
	{ .name = "sc_req_item", .field = FIELD, .requester_field = "requested_for" },
	{ .name = "sc_task", .field = NULL, .requester_field = NULL },
};
static char *link_hosts[] = { "verify.imper.ai" };
struct config cfg;

static char *reset_cats[] = { "password_reset" };
static char *unlock_cats[] = { "account_unlock" };
static char *plain_cats[] = { "reset_plain" };
static char *guarded_cats[] = { "unlock_guarded" };
static char *retry_cats[] = { "reset_retry" };
struct flow flow_v[] = {
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
	/* the other two corners of (automated or not) x (on_fail or not) */
	{ .name = "reset-plain", .table = "incident", .categories = plain_cats,
	  .ncategories = 1, .action = "password_reset", .automated = 1,
	  .close_code = "Solution provided", .max_age = 3600 },
	{ .name = "unlock-guarded", .table = "incident", .categories = guarded_cats,
	  .ncategories = 1, .action = "account_unlock", .automated = 0, .max_age = 3600,
	  .on_fail = { .assignment_group = "Service Desk Security", .priority = 2 } },
	/* the default retry of flows.yaml */
	{ .name = "reset-retry", .table = "incident", .categories = retry_cats,
	  .ncategories = 1, .action = "password_reset", .automated = 1,
	  .close_code = "Solution provided", .max_age = 3600,
	  .on_fail = { .assignment_group = "Service Desk Security", .priority = 2 },
	  .retry = { .on = FLOW_RETRY_TIMED_OUT | FLOW_RETRY_NOT_ENOUGH_QUESTIONS, .max = 2 } },
};
struct flows flows = { .v = flow_v, .n = ARRAY_SIZE(flow_v) };

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

const struct engine_policy pol = { .cfg = &cfg, .flows = &flows, .match = fake_match };

int
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

int
teardown(void **state)
{
	struct h *h = *state;

	ticket_free(&h->t);
	engine_result_free(&h->res);
	free(h);
	return 0;
}

void
reset_result(struct h *h)
{
	engine_result_free(&h->res);
	engine_result_init(&h->res);
}

/* The ticket as ServiceNow would return it at h->mod. */
void
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
int
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

void
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

void
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

int
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

int
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
	v.sent_at = c->sent_at;
	reset_result(h);
	rc = engine_verification(&pol, &h->t, &v, now, &h->res);
	v_free(&v);
	return rc;
}

/* Our PATCH of rev landed; ServiceNow answered with the ticket at the next
 * sys_mod_count (plus skip changes by others). */
int
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

const struct effect *
effect(const struct h *h, size_t i)
{
	assert_true(i < h->res.neffects);
	return &h->res.effects[i];
}

/* The string value of key in a PATCH body, NULL if absent (caller frees). */
char *
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

void
assert_patch_has(const struct effect *e, const char *key, const char *needle)
{
	char *s = patch_get(e, key);

	if (s == NULL)
		fail_msg("PATCH has no %s: %s", key, e->patch_json);
	if (needle != NULL && strstr(s, needle) == NULL)
		fail_msg("PATCH %s lacks \"%s\": %s", key, needle, s);
	free(s);
}

void
assert_patch_lacks(const struct effect *e, const char *key)
{
	char *s = patch_get(e, key);

	if (s != NULL)
		fail_msg("PATCH has %s=%s", key, s);
}

void
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

const struct engine_event *
find_event(const struct h *h, const char *msg)
{
	for (size_t i = 0; i < h->res.nevents; i++)
		if (strcmp(h->res.events[i].msg, msg) == 0)
			return &h->res.events[i];
	return NULL;
}

void
assert_event(const struct h *h, const char *msg, const char *kv)
{
	for (size_t i = 0; i < h->res.nevents; i++)
		if (strcmp(h->res.events[i].msg, msg) == 0 && strstr(h->res.events[i].kv, kv))
			return;
	fail_msg("no event \"%s\" with \"%s\"", msg, kv);
}

/* Starts over with a fresh ticket. */
void
restart(struct h *h)
{
	ticket_free(&h->t);
	ticket_init(&h->t, h->table, SYS1);
	h->mod = -1;
	h->state = "1";
	h->caller = CALLER1;
}

void
to_awaiting(struct h *h)
{
	assert_int_equal(observe(h), 0);
	assert_int_equal(h->t.state, TS_AWAITING_REQUEST);
}

void
to_link_ready(struct h *h)
{
	to_awaiting(h);
	assert_int_equal(created(h, h->t.generation, "vr_81", T0 + 20), 0);
	assert_int_equal(h->t.state, TS_LINK_READY);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
}

void
to_link_sent(struct h *h)
{
	to_link_ready(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_LINK_SENT }, T0 + 60), 0);
	assert_int_equal(h->t.state, TS_LINK_SENT);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
}

void
to_passed(struct h *h, int risk)
{
	to_link_sent(h);
	assert_int_equal(feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = risk + 1,
	    .completed_at = T0 + 300, .rec = "User verified successfully - Proceed with action" },
	    T0 + 300), 0);
	assert_int_equal(patched(h, h->t.revision, 0), 0);
}

/* The action completed at T0 + 400 (reported then). */
int
action_done(struct h *h, int risk)
{
	return feed(h, &(struct chg){ .status = IMPERAI_PASSED, .risk = risk + 1,
	    .completed_at = T0 + 300, .action = IMPERAI_ACTION_COMPLETED, .action_at = T0 + 400,
	    .rec = "User verified successfully - Proceed with action" }, T0 + 400);
}
