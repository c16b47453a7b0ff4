/* engine: the decisions (ARCHITECTURE.md section 4).  Pure: no I/O, no
 * clock, no globals; it links against util.c, record.c, render.c, the pure
 * name functions of imperai.c, snow.c's observation parser (snow_obs_parse)
 * and json-c only (flows are matched through engine_policy.match). */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "engine.h"
#include "engine-int.h"
#include "flows.h"
#include "imperai.h"
#include "log.h"
#include "render.h"
#include "snow.h"
#include "util.h"

#define DEFAULT_ON_FAIL_NOTE	"High risk detected - Reject this request"
/* What the store accepts back: anything the engine keeps fits. */
#define ENGINE_MAX_STRING	(1u << 20)
#define ENGINE_TIME_MAX		INT64_C(253402300799)	/* 9999-12-31 23:59:59 */

const char *const engine_state_names[TS__COUNT] = {
	[TS_UNTRACKED] = "untracked",
	[TS_AWAITING_REQUEST] = "awaiting_request",
	[TS_LINK_READY] = "link_ready",
	[TS_LINK_SENT] = "link_sent",
	[TS_IN_PROGRESS] = "in_progress",
	[TS_PASSED] = "passed",
	[TS_FAILED] = "failed",
	[TS_TIMED_OUT] = "timed_out",
	[TS_NOT_ENOUGH_QUESTIONS] = "not_enough_questions",
	[TS_ACTION_DONE] = "action_done",
	[TS_RESOLVED] = "resolved",
	[TS_CLOSED] = "closed",
	[TS_CANCELED] = "canceled",
	[TS_SUPERSEDED] = "superseded",
};

const char *const engine_effect_names[EFFECT__KINDS] = {
	[EFFECT_CREATE] = "create",
	[EFFECT_CANCEL] = "cancel",
	[EFFECT_PATCH] = "patch",
};

const char *
engine_state_name(enum tstate s)
{
	if ((unsigned)s >= TS__COUNT)
		return "unknown";
	return engine_state_names[s];
}

/* Index of s in names, -1 if absent. */
static int
engine_name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (names[i] != NULL && strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

int
engine_state_parse(const char *s, enum tstate *out)
{
	int i = engine_name_index(engine_state_names, TS__COUNT, s);

	if (i < 0)
		return -EINVAL;
	*out = (enum tstate)i;
	return 0;
}

const char *
engine_effect_name(enum effect_kind k)
{
	if ((size_t)k >= ARRAY_SIZE(engine_effect_names))
		return "unknown";
	return engine_effect_names[k];
}

static const char *
engine_nz(const char *s)
{
	return s ? s : "";
}

/* A status imperai.c has a wire name for: out of range names "unknown",
 * which parses as nothing. */
static int
engine_status_known(enum imperai_status s)
{
	enum imperai_status x;

	return imperai_status_parse(imperai_status_name(s), &x) == 0;
}

static int
engine_action_known(enum imperai_action_status s)
{
	enum imperai_action_status x;

	return imperai_action_status_parse(imperai_action_status_name(s), &x) == 0;
}

/* States in which the verification has reached its final outcome. */
int
engine_state_final(enum tstate s)
{
	return s >= TS_PASSED && s <= TS_CLOSED;
}

/* States in which a request is (being) made and may still change. */
int
engine_state_live(enum tstate s)
{
	return s >= TS_AWAITING_REQUEST && s <= TS_ACTION_DONE;
}

/* A copy repaired for storage or the wire; NULL stays NULL. */
static char *
engine_text(const char *s, size_t max)
{
	return s ? render_plain(s, max) : NULL;
}

void
engine_set_text(char **dst, const char *s, size_t max)
{
	char *v = engine_text(s, max);

	free(*dst);
	*dst = v;
}

static void
engine_ref_clear(struct imperai_ticket_ref *r)
{
	free(r->instance);
	free(r->table);
	free(r->sys_id);
	free(r->number);
	free(r->url);
	memset(r, 0, sizeof(*r));
}

static char *
engine_dup(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* A string from imper.ai as the store can take it back: valid UTF-8 and
 * capped (imperai.c's own caps are lower, so normally an exact copy). */
static char *
engine_dup_wire(const char *s)
{
	if (s == NULL)
		return NULL;
	if (strlen(s) <= ENGINE_MAX_STRING && util_utf8_valid(s, strlen(s)))
		return xstrdup(s);
	return render_plain(s, ENGINE_MAX_STRING);
}

static int64_t
engine_clamp_time(int64_t t)
{
	return t < 0 ? 0 : t > ENGINE_TIME_MAX ? ENGINE_TIME_MAX : t;
}

static void
engine_ref_copy(struct imperai_ticket_ref *dst, const struct imperai_ticket_ref *src)
{
	dst->instance = engine_dup_wire(src->instance);
	dst->table = engine_dup_wire(src->table);
	dst->sys_id = engine_dup_wire(src->sys_id);
	dst->number = engine_dup_wire(src->number);
	dst->url = engine_dup_wire(src->url);
}

/* Frees the fields this module copies (and only those: the snapshot never
 * holds others, see engine_snapshot). */
static void
engine_verif_clear(struct imperai_verification *v)
{
	free(v->id);
	engine_ref_clear(&v->ticket);
	free(v->channel);
	free(v->recipient_masked);
	free(v->initiated_by);
	free(v->recommendation);
	free(v->analysis_summary);
	free(v->additional_info);
	free(v->send_link_url);
	free(v->details_url);
	free(v->action.type);
	memset(v, 0, sizeof(*v));
	v->risk_score = -1;
}

/* The snapshot the engine keeps of src, in n (zeroed by the caller): only
 * the fields the engine uses, repaired so the store can read it back. */
void
engine_snapshot(struct imperai_verification *n, const struct imperai_verification *src)
{
	n->id = engine_dup_wire(src->id);
	engine_ref_copy(&n->ticket, &src->ticket);
	n->status = engine_status_known(src->status) ? src->status : IMPERAI_PENDING;
	n->channel = engine_dup_wire(src->channel);
	n->recipient_masked = engine_dup_wire(src->recipient_masked);
	n->initiated_by = engine_dup_wire(src->initiated_by);
	n->risk_score = src->risk_score >= 0 && src->risk_score <= 10 ? src->risk_score : -1;
	n->recommendation = engine_dup_wire(src->recommendation);
	n->analysis_summary = engine_dup_wire(src->analysis_summary);
	n->additional_info = engine_dup_wire(src->additional_info);
	n->send_link_url = engine_dup_wire(src->send_link_url);
	n->details_url = engine_dup_wire(src->details_url);
	n->expires_at = engine_clamp_time(src->expires_at);
	n->completed_at = engine_clamp_time(src->completed_at);
	n->updated_at = engine_clamp_time(src->updated_at);
	n->sent_at = engine_clamp_time(src->sent_at);
	n->action.type = engine_dup_wire(src->action.type);
	n->action.status = engine_action_known(src->action.status) ? src->action.status :
	    IMPERAI_ACTION_NONE;
	n->action.completed_at = engine_clamp_time(src->action.completed_at);
	n->action.automated = src->action.automated != 0;
}

/* Replaces what dst held by the snapshot in n (which dst now owns). */
void
engine_verif_move(struct imperai_verification *dst, struct imperai_verification *n)
{
	engine_verif_clear(dst);
	*dst = *n;
	memset(n, 0, sizeof(*n));
	n->risk_score = -1;
}

static void
engine_create_clear(struct imperai_create *c)
{
	engine_ref_clear(&c->ticket);
	free(c->subject);
	free(c->description);
	free(c->category);
	free(c->action);
	free(c->requester_name);
	free(c->requester_email);
	free(c->requester_user_name);
	free(c->assigned_agent);
	free(c->idempotency_key);
	memset(c, 0, sizeof(*c));
}

void
ticket_init(struct ticket *t, const char *table, const char *sys_id)
{
	memset(t, 0, sizeof(*t));
	t->table = engine_dup(table);
	snprintf(t->sys_id, sizeof(t->sys_id), "%s", engine_nz(sys_id));
	t->state = TS_UNTRACKED;
	t->seen_mod_count = -1;
	t->own_mod_count = -1;
	t->v.risk_score = -1;
}

static void
ticket_history_clear(struct ticket *t)
{
	for (size_t i = 0; i < t->nhistory; i++)
		free(t->history[i].why);
	t->nhistory = 0;
}

void
ticket_free(struct ticket *t)
{
	free(t->table);
	free(t->number);
	free(t->flow);
	free(t->request_id);
	free(t->requester);
	free(t->requester_name);
	free(t->gen_reason);
	free(t->category);
	free(t->subcategory);
	free(t->snow_state);
	free(t->short_description);
	free(t->description);
	free(t->requester_email);
	engine_verif_clear(&t->v);
	ticket_history_clear(t);
	for (size_t i = 0; i < t->nattempts; i++)
		free(t->attempts[i].request_id);
	free(t->last_error);
	memset(t, 0, sizeof(*t));
}

uint32_t
ticket_attempt_number(const struct ticket *t)
{
	return str_eq(t->gen_reason, "retry") && t->attempt > 1 ? t->attempt : 1;
}

void
effect_free(struct effect *e)
{
	free(e->table);
	free(e->number);
	free(e->tag);
	free(e->request_id);
	engine_create_clear(&e->create);
	free(e->patch_json);
	memset(e, 0, sizeof(*e));
}

void
engine_result_init(struct engine_result *r)
{
	memset(r, 0, sizeof(*r));
}

void
engine_result_free(struct engine_result *r)
{
	for (size_t i = 0; i < r->neffects; i++)
		effect_free(&r->effects[i]);
	for (size_t i = 0; i < r->nevents; i++) {
		free(r->events[i].msg);
		free(r->events[i].kv);
	}
	free(r->effects);
	free(r->events);
	engine_result_init(r);
}

/* Appends " key=value", quoting values that would break one-line kv. */
static void
engine_kv(struct buf *b, const char *key, const char *val)
{
	char *plain = render_plain(val ? val : "-", 200), *v = render_mask_emails(plain);
	int quote = *v == '\0' || strpbrk(v, " \t\n\"=\\") != NULL;

	buf_addf(b, "%s%s=%s", b->len ? " " : "", key, quote ? "\"" : "");
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_addc(b, '\\');
		buf_addc(b, *p == '\n' || *p == '\t' ? ' ' : *p);
	}
	if (quote)
		buf_addc(b, '"');
	free(v);
	free(plain);
}

/* Adds an event; the variadic part is key, value pairs ending with NULL. */
static void
engine_event(struct engine_result *out, int level, const char *msg, ...)
{
	struct engine_event *ev;
	struct buf kv;
	const char *k;
	va_list ap;

	buf_init(&kv);
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *)) != NULL)
		engine_kv(&kv, k, va_arg(ap, const char *));
	va_end(ap);
	out->events = xreallocarray(out->events, out->nevents + 1, sizeof(*out->events));
	ev = &out->events[out->nevents++];
	ev->level = level;
	ev->msg = xstrdup(msg);
	ev->kv = buf_detach(&kv);
}

void
engine_enter_state(struct ticket *t, enum tstate to, const char *why, int64_t now,
    struct engine_result *out)
{
	struct ticket_history *h;
	enum tstate from = t->state;

	if (from == to)
		return;
	if (t->nhistory == ENGINE_HISTORY_MAX) {
		free(t->history[0].why);
		memmove(&t->history[0], &t->history[1], sizeof(t->history[0]) * (ENGINE_HISTORY_MAX - 1));
		t->nhistory--;
	}
	h = &t->history[t->nhistory++];
	h->at = now;
	h->from = from;
	h->to = to;
	h->why = render_plain(engine_nz(why), 64);
	t->state = to;
	t->state_since = now;
	if (out == NULL)
		return;
	out->changed = 1;
	engine_event(out, LOG_LVL_INFO, "state changed", "ticket", t->number,
	    "from", engine_state_name(from), "to", engine_state_name(to), "why", why, NULL);
}

static struct effect *
engine_effect_new(struct engine_ctx *c, const struct ticket *t, enum effect_kind kind,
    const char *tag)
{
	struct engine_result *out = c->out;
	struct effect *e;

	out->effects = xreallocarray(out->effects, out->neffects + 1, sizeof(*out->effects));
	e = &out->effects[out->neffects++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->table = engine_dup(t->table);
	memcpy(e->sys_id, t->sys_id, sizeof(e->sys_id));
	e->number = engine_dup(t->number);
	e->generation = t->generation;
	e->revision = t->revision;
	e->tag = xstrdup(tag);
	e->created_at = c->now;
	return e;
}

static void
engine_cancel(struct engine_ctx *c, const struct ticket *t, const char *request_id,
    uint32_t generation, const char *tag)
{
	struct effect *e = engine_effect_new(c, t, EFFECT_CANCEL, tag);

	e->request_id = xstrdup(request_id);
	e->generation = generation;
}

static char *
engine_json_string(struct json_object *o)
{
	return xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void
engine_json_add(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

/* Bumps the revision and queues one PATCH: the field (always the complete
 * picture), the work note when tag is set, and the fields in more. */
static void
engine_patch(struct engine_ctx *c, struct ticket *t, const char *tag, const char *extra,
    struct json_object *more)
{
	struct json_object *o = more ? more : json_object_new_object();
	struct effect *e;
	char *html, *note;

	t->revision++;
	c->out->changed = 1;
	html = render_field_html(&c->rc, t);
	engine_json_add(o, c->field, html);
	if (tag != NULL) {
		note = render_work_note(&c->rc, t, tag, extra);
		engine_json_add(o, "work_notes", note);
		free(note);
	}
	e = engine_effect_new(c, t, EFFECT_PATCH, tag ? tag : "field");
	e->patch_json = engine_json_string(o);
	json_object_put(o);
	free(html);
}

static const struct config_table *
engine_table(const struct config *cfg, const char *name)
{
	for (size_t i = 0; name != NULL && i < cfg->snow.ntables; i++)
		if (str_eq(cfg->snow.tables[i].name, name))
			return &cfg->snow.tables[i];
	return NULL;
}

static int
engine_ctx_init(struct engine_ctx *c, const struct engine_policy *p, const char *table,
    int64_t now, struct engine_result *out)
{
	if (p == NULL || p->cfg == NULL || out == NULL)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->p = p;
	c->now = now;
	c->out = out;
	if ((c->tc = engine_table(p->cfg, table)) == NULL)
		return -ENOENT;
	c->field = snow_verification_field(c->tc);
	render_ctx_from_config(&c->rc, p->cfg);
	return 0;
}

/* The ticket's flow by name (flows_find, without linking flows.c). */
static const struct flow *
engine_flow(const struct engine_ctx *c, const char *name)
{
	const struct flows *f = c->p->flows;

	for (size_t i = 0; f != NULL && name != NULL && i < f->n; i++)
		if (str_eq(f->v[i].name, name))
			return &f->v[i];
	return NULL;
}

static int
engine_is_task_table(const char *table)
{
	return str_eq(table, "sc_req_item") || str_eq(table, "sc_task");
}

/* Stores what was observed of the ticket (never the requester: that is
 * the one the current request was made for). */
void
engine_remember(struct ticket *t, const struct snow_record *r, const struct snow_obs *o)
{
	if (o->number != NULL)
		engine_set_text(&t->number, o->number, MAX_NUMBER);
	engine_set_text(&t->category, o->category, MAX_NAME);
	engine_set_text(&t->subcategory, o->subcategory, MAX_NAME);
	engine_set_text(&t->snow_state, o->state, MAX_NAME);
	engine_set_text(&t->short_description, o->short_description, MAX_SHORT);
	engine_set_text(&t->description, o->description, MAX_DESCRIPTION);
	t->ended = o->ended;
	if (r->mod_count > t->seen_mod_count)
		t->seen_mod_count = r->mod_count;
	if (r->updated_on > t->seen_updated_on)
		t->seen_updated_on = r->updated_on;
}

/* The field shows which of our revisions landed (never trust a future one). */
static void
engine_landed_from_field(struct ticket *t, const char *field)
{
	uint32_t g, r;

	if (render_parse_revision(field, &g, &r) == 0 && g <= t->generation &&
	    r <= t->revision && r > t->landed_revision)
		t->landed_revision = r;
}

/* cfg->imperai.instance_name, else the host of the ServiceNow instance. */
static char *
engine_instance(const struct config *cfg)
{
	char *host = NULL;

	if (cfg->imperai.instance_name != NULL && *cfg->imperai.instance_name != '\0')
		return xstrdup(cfg->imperai.instance_name);
	if (cfg->snow.instance != NULL &&
	    util_url_split(cfg->snow.instance, NULL, &host, NULL, NULL) == 0)
		return host;
	return xstrdup(engine_nz(cfg->snow.instance));
}

static char *
engine_ticket_url(const struct config *cfg, const struct ticket *t)
{
	const char *base = engine_nz(cfg->snow.instance);
	size_t n = strlen(base);

	while (n > 0 && base[n - 1] == '/')
		n--;
	return xprintf("%.*s/%s.do?sys_id=%s", (int)n, base, t->table, t->sys_id);
}

void
engine_create(struct engine_ctx *c, const struct ticket *t, const struct flow *f,
    const struct snow_obs *o)
{
	struct effect *e = engine_effect_new(c, t, EFFECT_CREATE, engine_nz(t->gen_reason));
	struct imperai_create *q = &e->create;
	const struct config *cfg = c->p->cfg;

	q->ticket.instance = engine_instance(cfg);
	q->ticket.table = xstrdup(t->table);
	q->ticket.sys_id = xstrdup(t->sys_id);
	q->ticket.number = engine_dup(t->number);
	q->ticket.url = engine_ticket_url(cfg, t);
	q->subject = engine_text(o->short_description, MAX_SHORT);
	q->description = engine_text(o->description, MAX_DESCRIPTION);
	q->category = engine_text(o->category, MAX_NAME);
	q->action = xstrdup(f->action && *f->action ? f->action : "none");
	q->requester_name = engine_text(o->requester_name, MAX_NAME);
	q->requester_email = engine_text(o->requester_email, MAX_NAME);
	q->requester_user_name = engine_text(o->requester_user_name, MAX_NAME);
	q->assigned_agent = engine_text(o->assigned_agent, MAX_NAME);
	q->idempotency_key = xprintf("%s/%s/%s/%" PRIu32, q->ticket.instance, t->table,
	    t->sys_id, t->generation);
}

static int
engine_empty(const char *s)
{
	return s == NULL || *s == '\0';
}

/* Name, email and user name all read as "": the ACLs hide the requester
 * (or there is none), and a verification must never go out blind. */
static int
engine_requester_unreadable(const struct snow_obs *o)
{
	return engine_empty(o->requester_name) && engine_empty(o->requester_email) &&
	    engine_empty(o->requester_user_name);
}

/* No request for an identity that could not be read: the field and one
 * work note say why and what to grant; the ticket waits for readable data. */
static void
engine_blind(struct engine_ctx *c, struct ticket *t)
{
	int noted = t->requester_unreadable;

	t->requester_unreadable = 1;
	engine_patch(c, t, noted ? NULL : "requester_unreadable", NULL, NULL);
	if (!noted)
		engine_event(c->out, LOG_LVL_WARN, "requester could not be read: no verification "
		    "requested; grant the integration user read access to the requester's name, "
		    "email and user name", "ticket", t->number, "requester", t->requester, NULL);
}

/* Forgets the request of the previous generation. */
static void
engine_reset_request(struct ticket *t)
{
	free(t->request_id);
	t->request_id = NULL;
	engine_verif_clear(&t->v);
	t->sent_at = 0;
	t->on_fail_applied = 0;
	t->untracked_noted = 0;
	t->resolve_revision = 0;
	t->resolve_failed = 0;
	t->resolved_at = 0;
	free(t->last_error);
	t->last_error = NULL;
}

/* A new request generation: awaiting_request, the CREATE, and for a
 * re-verification a PATCH saying so. */
static void
engine_start_generation(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o, const char *reason)
{
	t->generation++;
	engine_reset_request(t);
	str_replace(&t->flow, f->name);
	if (o->requester != NULL)
		engine_set_text(&t->requester, o->requester, MAX_NAME);
	engine_set_text(&t->requester_name, o->requester_name, MAX_NAME);
	engine_set_text(&t->requester_email, o->requester_email, MAX_NAME);
	str_replace(&t->gen_reason, reason);
	if (o->number != NULL)
		engine_set_text(&t->number, o->number, MAX_NUMBER);
	engine_enter_state(t, TS_AWAITING_REQUEST, reason, c->now, c->out);
	if (engine_requester_unreadable(o)) {
		engine_blind(c, t);
		return;
	}
	t->requester_unreadable = 0;
	if (strcmp(reason, "requester_changed") == 0 || strcmp(reason, "flow_changed") == 0)
		engine_patch(c, t, reason, NULL, NULL);
	engine_create(c, t, f, o);
}

/* A ticket that waited for a readable requester gets its request once the
 * requester can be read (the sweep or any later observation shows it). */
static void
engine_unblind(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o)
{
	if (!t->requester_unreadable || t->state != TS_AWAITING_REQUEST ||
	    t->request_id != NULL || f == NULL || o->ended || engine_requester_unreadable(o))
		return;
	t->requester_unreadable = 0;
	engine_set_text(&t->requester_name, o->requester_name, MAX_NAME);
	engine_set_text(&t->requester_email, o->requester_email, MAX_NAME);
	engine_event(c->out, LOG_LVL_NOTICE, "requester readable now: verification requested",
	    "ticket", t->number, NULL);
	engine_patch(c, t, NULL, NULL, NULL);
	engine_create(c, t, f, o);
}

/* Cancels the live request and starts over (requester or flow changed). */
static void
engine_supersede(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o, const char *reason)
{
	if (t->request_id != NULL) {
		engine_cancel(c, t, t->request_id, t->generation, reason);
		engine_event(c->out, LOG_LVL_INFO, "request superseded", "ticket", t->number,
		    "verification", t->request_id, "why", reason, NULL);
	}
	engine_enter_state(t, TS_SUPERSEDED, reason, c->now, c->out);
	engine_start_generation(c, t, f, o, reason);
}

/* The ticket was resolved, closed or canceled by someone else. */
static void
engine_on_ended(struct engine_ctx *c, struct ticket *t, const struct snow_obs *o)
{
	if (engine_state_live(t->state) && !engine_state_final(t->state)) {
		if (t->request_id != NULL)
			engine_cancel(c, t, t->request_id, t->generation, "canceled");
		t->v.status = IMPERAI_CANCELED;
		engine_enter_state(t, TS_CANCELED, "ticket_ended", c->now, c->out);
		engine_patch(c, t, "canceled", NULL, NULL);
	} else if (engine_state_live(t->state)) {
		engine_enter_state(t, o->closed ? TS_CLOSED : TS_RESOLVED, "ended", c->now, c->out);
	} else if (t->state == TS_RESOLVED && o->closed) {
		engine_enter_state(t, TS_CLOSED, "closed", c->now, c->out);
	}
}

/* The category left every flow: stop, and say so once. */
static void
engine_untrack(struct engine_ctx *c, struct ticket *t)
{
	const char *tag = t->untracked_noted ? NULL : "untracked";

	if (!engine_state_final(t->state) && t->request_id != NULL) {
		engine_cancel(c, t, t->request_id, t->generation, "untracked");
		t->v.status = IMPERAI_CANCELED;
	}
	free(t->flow);
	t->flow = NULL;
	engine_enter_state(t, TS_UNTRACKED, "untracked", c->now, c->out);
	t->untracked_noted = 1;
	engine_patch(c, t, tag, NULL, NULL);
}

static int
engine_requester_changed(const struct ticket *t, const struct snow_obs *o)
{
	return o->requester != NULL && strcmp(o->requester, engine_nz(t->requester)) != 0;
}

/* Untracked after leaving, or canceled: a flow matching again starts anew. */
static void
engine_maybe_restart(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o)
{
	if (f == NULL)
		return;
	if (t->state != TS_CANCELED)
		engine_start_generation(c, t, f, o, "recategorized");
	else if (t->ended)
		engine_start_generation(c, t, f, o, "reopened");
	else if (engine_requester_changed(t, o))
		engine_start_generation(c, t, f, o, "requester_changed");
	else if (!str_eq(f->name, t->flow))
		engine_start_generation(c, t, f, o, "flow_changed");
}

/* Our resolve is decided but not yet seen to land. */
static int
engine_resolve_unlanded(const struct ticket *t)
{
	return (t->state == TS_RESOLVED || t->state == TS_CLOSED) && t->resolve_revision != 0 &&
	    t->landed_revision < t->resolve_revision;
}

/* The ticket changed in a way the resolve did not know of: withdraw it
 * (the shell drops its PATCH) and let the change be decided instead. */
static void
engine_withdraw_resolve(struct engine_ctx *c, struct ticket *t)
{
	enum tstate to = t->v.action.status == IMPERAI_ACTION_COMPLETED ? TS_ACTION_DONE :
	    TS_PASSED;

	t->resolve_revision = 0;
	t->resolved_at = 0;
	engine_enter_state(t, to, "resolve_withdrawn", c->now, c->out);
	engine_patch(c, t, "action", "Not resolved automatically: the ticket changed in "
	    "ServiceNow before the resolution was written.\n", NULL);
	engine_event(c->out, LOG_LVL_NOTICE, "resolve withdrawn: the ticket changed first",
	    "ticket", t->number, "verification", t->request_id, NULL);
}

/* A change by someone else to a tracked ticket. */
void
engine_decide(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o)
{
	if (engine_resolve_unlanded(t) && (o->ended || f == NULL ||
	    engine_requester_changed(t, o) || !str_eq(f->name, t->flow)))
		engine_withdraw_resolve(c, t);
	if (o->ended) {
		engine_on_ended(c, t, o);
		return;
	}
	if (t->state == TS_RESOLVED || t->state == TS_CLOSED) {
		if (t->ended)
			engine_event(c->out, LOG_LVL_NOTICE, "ticket reopened after resolution; "
			    "verification not restarted", "ticket", t->number, NULL);
		return;
	}
	if (!engine_state_live(t->state))
		engine_maybe_restart(c, t, f, o);
	else if (f == NULL)
		engine_untrack(c, t);
	else if (engine_requester_changed(t, o))
		engine_supersede(c, t, f, o, "requester_changed");
	else if (!str_eq(f->name, t->flow) && !engine_state_final(t->state))
		engine_supersede(c, t, f, o, "flow_changed");
}

static int
engine_observe_new(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_record *r, const struct snow_obs *o)
{
	if (f == NULL || o->ended) {
		c->out->forget = 1;
		return 0;
	}
	engine_remember(t, r, o);
	t->created_at = c->now;
	engine_start_generation(c, t, f, o, "new");
	return 0;
}

/* Checks the arguments of a decision on record r of ticket t, which must
 * be the same record, and sets up its context. */
int
engine_begin(struct engine_ctx *c, const struct engine_policy *p, const struct ticket *t,
    const char *table, const struct snow_record *r, int64_t now, struct engine_result *out)
{
	int rc;

	if (t == NULL || r == NULL || table == NULL || p == NULL || p->match == NULL)
		return -EINVAL;
	if ((rc = engine_ctx_init(c, p, table, now, out)) < 0)
		return rc;
	if (!str_eq(t->table, table) || strcmp(t->sys_id, r->sys_id) != 0)
		return -EINVAL;
	return 0;
}

int
engine_observe(const struct engine_policy *p, struct ticket *t, const char *table,
    const struct snow_record *r, int64_t now, struct engine_result *out)
{
	struct engine_ctx c;
	struct snow_obs o;
	const struct flow *f;
	int rc;

	if ((rc = engine_begin(&c, p, t, table, r, now, out)) < 0)
		return rc;
	if (t->generation > 0 && r->mod_count <= t->seen_mod_count && !t->requester_unreadable)
		return 0;
	snow_obs_parse(c.tc, r, &o);
	f = p->match(p->flows, table, r);
	if (t->generation == 0)
		return engine_observe_new(&c, t, f, r, &o);
	out->changed = 1;
	engine_landed_from_field(t, o.field);
	if (r->mod_count != t->own_mod_count)
		engine_decide(&c, t, f, &o);
	engine_unblind(&c, t, f, &o);
	engine_remember(t, r, &o);
	return 0;
}

int
engine_ref_matches(const struct ticket *t, const struct imperai_verification *v)
{
	return str_eq(v->ticket.table, t->table) && str_eq(v->ticket.sys_id, t->sys_id);
}

static void
engine_refuse_foreign(struct engine_ctx *c, const struct ticket *t,
    const struct imperai_verification *v)
{
	engine_event(c->out, LOG_LVL_ERR, "security: verification names another ticket",
	    "ticket", t->number, "verification", v->id, "table", t->table, "sys_id", t->sys_id,
	    "reported_table", v->ticket.table, "reported_sys_id", v->ticket.sys_id, NULL);
}

/* A create answer the ticket does not want: cancel it or ignore it.
 * Returns 1 when handled so. */
static int
engine_created_unwanted(struct engine_ctx *c, const struct ticket *t, uint32_t generation,
    const struct imperai_verification *n)
{
	if (!engine_ref_matches(t, n)) {
		engine_refuse_foreign(c, t, n);
		return 1;
	}
	if (generation != t->generation || (t->state != TS_AWAITING_REQUEST &&
	    t->request_id == NULL)) {
		/* made for a generation (or a ticket state) that no longer wants it */
		engine_cancel(c, t, n->id, generation, "stale");
		engine_event(c->out, LOG_LVL_NOTICE, "stale request canceled", "ticket", t->number,
		    "verification", n->id, NULL);
		return 1;
	}
	if (t->state != TS_AWAITING_REQUEST) {
		engine_event(c->out, LOG_LVL_DEBUG, "create replay ignored", "ticket", t->number,
		    "verification", n->id, NULL);
		return 1;
	}
	return 0;
}

int
engine_created(const struct engine_policy *p, struct ticket *t, uint32_t generation,
    const struct imperai_verification *v, int64_t now, struct engine_result *out)
{
	struct engine_ctx c;
	struct imperai_verification n = { .risk_score = -1 };
	int rc;

	if (t == NULL || v == NULL || v->id == NULL)
		return -EINVAL;
	if ((rc = engine_ctx_init(&c, p, t->table, now, out)) < 0)
		return rc;
	engine_snapshot(&n, v);
	if (engine_created_unwanted(&c, t, generation, &n))
		goto out;
	str_replace(&t->request_id, n.id);
	free(t->last_error);
	t->last_error = NULL;
	n.status = IMPERAI_PENDING;	/* a later status is applied below, as a change */
	engine_verif_move(&t->v, &n);
	engine_enter_state(t, TS_LINK_READY, "created", now, out);
	engine_patch(&c, t, "link", NULL, NULL);
	if (v->status != IMPERAI_PENDING)
		rc = engine_verification(p, t, v, now, out);
out:
	engine_verif_clear(&n);
	return rc;
}

/* Did anything the field or the decisions show change? */
static int
engine_verif_relevant(const struct imperai_verification *a,
    const struct imperai_verification *b)
{
	return (!imperai_status_is_final(a->status) && a->status != b->status) ||
	    a->risk_score != b->risk_score || a->action.status != b->action.status ||
	    !str_eq(a->channel, b->channel) || !str_eq(a->recipient_masked, b->recipient_masked) ||
	    !str_eq(a->initiated_by, b->initiated_by) ||
	    !str_eq(a->recommendation, b->recommendation) ||
	    !str_eq(a->send_link_url, b->send_link_url) ||
	    (!imperai_status_is_final(a->status) && a->sent_at != b->sent_at);
}

static enum tstate
engine_state_for(enum imperai_status s)
{
	switch (s) {
	case IMPERAI_LINK_SENT:
		return TS_LINK_SENT;
	case IMPERAI_IN_PROGRESS:
		return TS_IN_PROGRESS;
	case IMPERAI_PASSED:
		return TS_PASSED;
	case IMPERAI_FAILED:
		return TS_FAILED;
	case IMPERAI_TIMED_OUT:
		return TS_TIMED_OUT;
	case IMPERAI_NOT_ENOUGH_QUESTIONS:
		return TS_NOT_ENOUGH_QUESTIONS;
	case IMPERAI_CANCELED:
		return TS_CANCELED;
	default:
		return TS_LINK_READY;
	}
}

static const char *
engine_change_tag(enum imperai_status old, const struct imperai_verification *now,
    enum imperai_action_status old_action)
{
	if (old != now->status) {
		if (now->status == IMPERAI_LINK_SENT)
			return "sent";
		if (now->status == IMPERAI_IN_PROGRESS)
			return "progress";
		if (now->status == IMPERAI_CANCELED)
			return "canceled";
		if (imperai_status_is_final(now->status))
			return "outcome";
		return "update";
	}
	return old_action != now->action.status ? "action" : "update";
}

static int
engine_risk_high(const struct engine_ctx *c, const struct ticket *t)
{
	return str_eq(render_risk_label(&c->rc, t->v.risk_score), "High");
}

/* "90s", "15m", "2h", "7d": max_age as people write it. */
static void
engine_format_duration(struct buf *b, int64_t s)
{
	if (s > 0 && s % 86400 == 0)
		buf_addf(b, "%" PRId64 "d", s / 86400);
	else if (s > 0 && s % 3600 == 0)
		buf_addf(b, "%" PRId64 "h", s / 3600);
	else if (s > 0 && s % 60 == 0)
		buf_addf(b, "%" PRId64 "m", s / 60);
	else
		buf_addf(b, "%" PRId64 "s", s);
}

static int64_t
engine_max_age(const struct flow *f)
{
	return f->max_age > 0 ? f->max_age : ENGINE_DEFAULT_MAX_AGE;
}

/* The action mid-sentence: "the password reset"; NULL for none. */
static char *
engine_action_phrase(const char *type)
{
	char *s = render_action_label(type);

	if (s != NULL && s[0] >= 'A' && s[0] <= 'Z')
		s[0] = (char)(s[0] - 'A' + 'a');
	return s;
}

/* Why a passed verification does not resolve the ticket, written to why;
 * returns a short code for the log, NULL when it may be resolved. */
static const char *
engine_resolve_refusal(const struct engine_ctx *c, const struct ticket *t,
    const struct flow *f, struct buf *why)
{
	const struct imperai_verification *v = &t->v;
	int64_t when = v->completed_at ? v->completed_at : v->updated_at;
	char *action = engine_action_phrase(v->action.type);
	const char *code = NULL;

	if (f == NULL) {
		buf_addf(why, "its flow %s is no longer configured.", engine_nz(t->flow));
		code = "flow_gone";
	} else if (!f->automated) {
		code = "not_automated";	/* never resolves: nothing to explain */
	} else if (engine_risk_high(c, t)) {
		buf_adds(why, "the risk level is High.");
		code = "risk_high";
	} else if (v->action.status != IMPERAI_ACTION_COMPLETED) {
		buf_addf(why, "the %s %s.", action ? action : "requested action",
		    v->action.status == IMPERAI_ACTION_FAILED ? "failed" : "is not completed yet");
		code = "action_not_completed";
	} else if (when <= 0 || c->now - when > engine_max_age(f)) {
		buf_adds(why, "the outcome is older than the flow's max_age (");
		engine_format_duration(why, engine_max_age(f));
		buf_adds(why, ").");
		code = "too_old";
	} else if (t->resolve_failed) {
		buf_adds(why, "ServiceNow refused an earlier attempt.");
		code = "refused_before";
	} else if (!str_eq(t->table, "incident") && !engine_is_task_table(t->table)) {
		buf_addf(why, "records of table %s are not resolved automatically.", t->table);
		code = "table";
	}
	free(action);
	return code;
}

/* {number} {requester} {verification_id} {action} in the flow's close notes. */
static char *
engine_close_notes(const struct ticket *t, const struct flow *f)
{
	const char *tmpl = f->close_notes ? f->close_notes :
	    "Resolved automatically after imper.ai verification {verification_id}.";
	char *action = engine_action_phrase(t->v.action.type);
	const char *vals[] = { t->number, t->requester_name, t->request_id, action };
	const char *keys[] = { "{number}", "{requester}", "{verification_id}", "{action}" };
	/* A missing value reads as a word, never as "by  after". */
	const char *missing[] = { "(no number)", "(unknown requester)", "(no verification ID)",
	    "(no action)" };
	struct buf b;
	char *s;

	buf_init(&b);
	for (const char *p = tmpl; *p; p++) {
		size_t k;

		for (k = 0; k < ARRAY_SIZE(keys) && strncmp(p, keys[k], strlen(keys[k])) != 0; k++)
			;
		if (k == ARRAY_SIZE(keys)) {
			buf_addc(&b, *p);
			continue;
		}
		buf_adds(&b, engine_empty(vals[k]) ? missing[k] : vals[k]);
		p += strlen(keys[k]) - 1;
	}
	s = render_plain(b.data ? b.data : "", 4000);
	buf_free(&b);
	free(action);
	return s;
}

/* Adds the fields that resolve (or close) the ticket; returns the state. */
static enum tstate
engine_resolve(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    struct json_object *more)
{
	char *notes = engine_close_notes(t, f);
	int incident = str_eq(t->table, "incident");
	enum tstate to = !incident || f->close ? TS_CLOSED : TS_RESOLVED;

	engine_json_add(more, "state", incident ? (f->close ? "7" : "6") : "3");
	if (incident && f->close_code != NULL)
		engine_json_add(more, "close_code", f->close_code);
	engine_json_add(more, "close_notes", notes);
	free(notes);
	t->resolved_at = c->now;
	return to;
}

/* Does the flow say what to do on a failure? */
static int
engine_has_on_fail(const struct flow *f)
{
	return f != NULL && (f->on_fail.assignment_group != NULL || f->on_fail.priority > 0 ||
	    f->on_fail.work_note != NULL);
}

/* The on_fail of the flow, once per generation; returns 0 when the flow
 * has none (nothing is applied, nothing is said). */
static int
engine_on_fail(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    struct json_object *more, struct buf *extra)
{
	const char *note;
	char prio[16];
	struct buf what;

	if (!engine_has_on_fail(f))
		return 0;
	note = f->on_fail.work_note ? f->on_fail.work_note : DEFAULT_ON_FAIL_NOTE;
	buf_init(&what);
	if (!str_eq(note, t->v.recommendation))	/* the note shows the recommendation already */
		buf_addf(extra, "%s\n", note);
	if (f->on_fail.assignment_group != NULL && f->on_fail.unresolved) {
		/* never a name into a reference field: said, not written */
		buf_addf(extra, "Not reassigned to %s: the daemon could not look the group up in "
		    "ServiceNow yet; reassign the ticket by hand.\n", f->on_fail.assignment_group);
	} else if (f->on_fail.assignment_group != NULL) {
		engine_json_add(more, "assignment_group", f->on_fail.assignment_group);
		buf_addf(extra, "Reassigned to %s.\n", f->on_fail.assignment_group_name ?
		    f->on_fail.assignment_group_name : f->on_fail.assignment_group);
		buf_adds(&what, "assignment_group,");
	}
	if (f->on_fail.priority > 0) {
		snprintf(prio, sizeof(prio), "%d", f->on_fail.priority);
		engine_json_add(more, "priority", prio);
		buf_addf(extra, "Priority set to %s.\n", prio);
		buf_adds(&what, "priority,");
	}
	buf_adds(&what, "work_note");
	t->on_fail_applied = 1;
	engine_event(c->out, LOG_LVL_NOTICE, "on_fail applied", "ticket", t->number,
	    "verification", t->request_id, "flow", t->flow, "changed", what.data, NULL);
	buf_free(&what);
	return 1;
}

/* Everything a change of a verification decides, merged into one PATCH. */
struct engine_change {
	const char		*tag;
	enum tstate		 to;
	struct buf		 extra;
	struct json_object	*more;
	int			 resolving;
};

static void
engine_passed(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    struct engine_change *ch)
{
	struct buf why;
	const char *code;

	if (t->state == TS_RESOLVED || t->state == TS_CLOSED)
		return;
	if (t->v.action.status == IMPERAI_ACTION_COMPLETED)
		ch->to = TS_ACTION_DONE;
	buf_init(&why);
	code = engine_resolve_refusal(c, t, f, &why);
	if (code == NULL) {
		ch->to = engine_resolve(c, t, f, ch->more);
		ch->tag = "resolved";
		ch->resolving = 1;
	} else if (why.len > 0) {
		buf_addf(&ch->extra, "Not resolved automatically: %s\n", why.data);
		engine_event(c->out, LOG_LVL_INFO, "resolve refused", "ticket", t->number,
		    "verification", t->request_id, "reason", code, NULL);
	}
	buf_free(&why);
}

/* The outcome starts a new attempt when the flow says so and attempts are
 * left; never after a failure or a high risk.  Sets retry_exhausted when
 * it would have but none is left. */
static int
engine_retry_due(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    enum imperai_status old)
{
	unsigned bit = t->v.status == IMPERAI_TIMED_OUT ? FLOW_RETRY_TIMED_OUT :
	    t->v.status == IMPERAI_NOT_ENOUGH_QUESTIONS ? FLOW_RETRY_NOT_ENOUGH_QUESTIONS : 0;

	t->retry_exhausted = 0;
	if (f == NULL || bit == 0 || imperai_status_is_final(old) || engine_risk_high(c, t) ||
	    t->ended)
		return 0;
	t->attempt_max = 1 + (uint32_t)f->retry.max;
	if ((f->retry.on & bit) && ticket_attempt_number(t) < t->attempt_max)
		return 1;
	t->retry_exhausted = 1;
	return 0;
}

/* Remembers the request that just ended as an earlier attempt. */
static void
engine_attempt_record(struct ticket *t)
{
	struct ticket_attempt *a;

	if (t->nattempts == ENGINE_ATTEMPTS_MAX) {
		free(t->attempts[0].request_id);
		memmove(&t->attempts[0], &t->attempts[1],
		    sizeof(t->attempts[0]) * (ENGINE_ATTEMPTS_MAX - 1));
		t->nattempts--;
	}
	a = &t->attempts[t->nattempts++];
	a->generation = t->generation;
	a->attempt = ticket_attempt_number(t);
	a->request_id = engine_dup(t->request_id);
	a->status = t->v.status;
	a->at = t->v.completed_at ? t->v.completed_at : t->v.updated_at;
}

/* What a new request for the same ticket is made of: the ticket as last
 * observed, and the requester the current request was made for. */
static void
engine_obs_from_ticket(const struct ticket *t, struct snow_obs *o)
{
	memset(o, 0, sizeof(*o));
	o->number = t->number;
	o->state = t->snow_state;
	o->category = t->category;
	o->subcategory = t->subcategory;
	o->short_description = t->short_description;
	o->description = t->description;
	o->requester = t->requester;
	o->requester_name = t->requester_name;
	o->requester_email = t->requester_email;
}

static void engine_outcome_event(struct engine_ctx *c, const struct ticket *t);

/* The verification ended unfinished and the flow allows another attempt:
 * the next generation, its own request (and Idempotency-Key), and the
 * field saying so; the one work note comes with the new link. */
static void
engine_retry(struct engine_ctx *c, struct ticket *t, const struct flow *f)
{
	struct snow_obs o;
	uint32_t next = ticket_attempt_number(t) + 1;
	char n[16], of[16];

	engine_enter_state(t, engine_state_for(t->v.status), "outcome", c->now, c->out);
	engine_outcome_event(c, t);
	snprintf(n, sizeof(n), "%" PRIu32, next);
	snprintf(of, sizeof(of), "%" PRIu32, t->attempt_max);
	engine_event(c->out, LOG_LVL_INFO, "new attempt", "ticket", t->number,
	    "verification", t->request_id, "after", imperai_status_name(t->v.status),
	    "attempt", n, "of", of, NULL);
	engine_attempt_record(t);
	engine_obs_from_ticket(t, &o);
	t->generation++;
	engine_reset_request(t);
	str_replace(&t->gen_reason, "retry");
	t->attempt = next;
	engine_enter_state(t, TS_AWAITING_REQUEST, "retry", c->now, c->out);
	engine_patch(c, t, NULL, NULL, NULL);
	engine_create(c, t, f, &o);
}

static void
engine_outcome_event(struct engine_ctx *c, const struct ticket *t)
{
	const char *risk = render_risk_label(&c->rc, t->v.risk_score);
	char *r = xstrdup(risk ? risk : "unknown");

	for (char *p = r; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	engine_event(c->out, LOG_LVL_INFO, "outcome recorded", "ticket", t->number,
	    "verification", t->request_id, "result", imperai_status_name(t->v.status),
	    "risk", r, NULL);
	free(r);
}

/* The agent sent the link again (to the same or another address) before
 * the outcome, and the earlier link no longer works: a later send time, or
 * (sends within one second) another recipient, channel or agent. */
static int
engine_resent(const struct imperai_verification *a, const struct imperai_verification *b)
{
	if (imperai_status_is_final(b->status) || a->status == IMPERAI_PENDING ||
	    a->channel == NULL)
		return 0;
	return (a->sent_at > 0 && b->sent_at > a->sent_at) || !str_eq(a->channel, b->channel) ||
	    !str_eq(a->recipient_masked, b->recipient_masked) ||
	    !str_eq(a->initiated_by, b->initiated_by);
}

/* Applies the snapshot n (a relevant change of the current request) to t. */
static void
engine_apply(struct engine_ctx *c, struct ticket *t, struct imperai_verification *n)
{
	enum imperai_status old = t->v.status;
	enum imperai_action_status old_action = t->v.action.status;
	int resent = engine_resent(&t->v, n);
	const struct flow *f = engine_flow(c, t->flow);
	struct engine_change ch = { .to = t->state, .more = json_object_new_object() };

	buf_init(&ch.extra);
	engine_verif_move(&t->v, n);
	if (imperai_status_is_final(old))
		t->v.status = old;
	else
		ch.to = engine_state_for(t->v.status);
	if (t->sent_at == 0 && (t->v.status == IMPERAI_LINK_SENT ||
	    t->v.status == IMPERAI_IN_PROGRESS || (t->v.channel != NULL && t->v.status != old)))
		t->sent_at = t->v.updated_at > 0 ? t->v.updated_at : c->now;
	ch.tag = engine_change_tag(old, &t->v, old_action);
	if (resent) {	/* the field shows the latest send */
		t->sent_at = t->v.sent_at > 0 ? t->v.sent_at : t->v.updated_at;
		ch.tag = "sent";
	}
	if (engine_retry_due(c, t, f, old)) {
		engine_retry(c, t, f);
		json_object_put(ch.more);
		buf_free(&ch.extra);
		return;
	}
	if (t->v.status == IMPERAI_FAILED && old != IMPERAI_FAILED && f != NULL && f->automated)
		buf_adds(&ch.extra, "Not resolved automatically: the verification failed.\n");
	if (t->v.status == IMPERAI_PASSED)
		engine_passed(c, t, f, &ch);
	if ((t->v.status == IMPERAI_FAILED || engine_risk_high(c, t)) && !t->on_fail_applied &&
	    engine_on_fail(c, t, f, ch.more, &ch.extra))
		ch.tag = ch.resolving ? ch.tag : "on_fail";
	engine_enter_state(t, ch.to, ch.tag, c->now, c->out);
	engine_patch(c, t, ch.tag, ch.extra.data, ch.more);
	if (ch.resolving)
		t->resolve_revision = t->revision;
	if (imperai_status_is_final(t->v.status) && !imperai_status_is_final(old))
		engine_outcome_event(c, t);
	buf_free(&ch.extra);
}

/* The ticket ended (someone else closed it) and its request was canceled,
 * but imper.ai had finished the verification first: the field shows the
 * real outcome.  Nothing is done with it on a ticket already ended: no
 * resolve, no on_fail. */
static int
engine_late_outcome(const struct ticket *t, const struct imperai_verification *n)
{
	return t->state == TS_CANCELED && t->ended && str_eq(n->id, t->request_id) &&
	    imperai_status_is_final(n->status) && n->status != IMPERAI_CANCELED;
}

static void
engine_apply_late(struct engine_ctx *c, struct ticket *t, struct imperai_verification *n)
{
	int resolved = str_eq(t->table, "incident") && str_eq(t->snow_state, "6");

	engine_verif_move(&t->v, n);
	if (t->sent_at == 0 && t->v.channel != NULL)
		t->sent_at = t->v.updated_at > 0 ? t->v.updated_at : c->now;
	engine_enter_state(t, resolved ? TS_RESOLVED : TS_CLOSED, "late_outcome", c->now, c->out);
	engine_patch(c, t, "outcome", "The ticket was closed before this outcome arrived: "
	    "nothing was done with it.\n", NULL);
	engine_outcome_event(c, t);
}

int
engine_verification(const struct engine_policy *p, struct ticket *t,
    const struct imperai_verification *v, int64_t now, struct engine_result *out)
{
	struct engine_ctx c;
	struct imperai_verification n = { .risk_score = -1 };
	int rc;

	if (t == NULL || v == NULL || v->id == NULL)
		return -EINVAL;
	if ((rc = engine_ctx_init(&c, p, t->table, now, out)) < 0)
		return rc;
	engine_snapshot(&n, v);
	if (!engine_ref_matches(t, &n))
		engine_refuse_foreign(&c, t, &n);
	else if (engine_late_outcome(t, &n))
		engine_apply_late(&c, t, &n);
	else if (!str_eq(n.id, t->request_id) || t->state == TS_AWAITING_REQUEST ||
	    !(engine_state_live(t->state) || engine_state_final(t->state)))
		engine_event(out, LOG_LVL_DEBUG, "stale verification ignored", "ticket", t->number,
		    "verification", n.id, "current", t->request_id, NULL);
	else if (engine_verif_relevant(&t->v, &n))
		engine_apply(&c, t, &n);
	engine_verif_clear(&n);
	return 0;
}

/* ServiceNow did not resolve the ticket: say so, without the resolve fields. */
static void
engine_resolve_failed(struct engine_ctx *c, struct ticket *t, const char *why)
{
	struct buf extra;
	enum tstate to = t->v.action.status == IMPERAI_ACTION_COMPLETED ? TS_ACTION_DONE :
	    TS_PASSED;

	t->resolve_failed = 1;
	t->resolve_revision = 0;
	t->resolved_at = 0;
	buf_init(&extra);
	buf_addf(&extra, "ServiceNow answered: %s", engine_nz(why));
	engine_enter_state(t, to, "resolve_failed", c->now, c->out);
	engine_patch(c, t, "error", extra.data, NULL);
	engine_event(c->out, LOG_LVL_WARN, "resolve refused by ServiceNow", "ticket", t->number,
	    "verification", t->request_id, "error", why, NULL);
	buf_free(&extra);
}

int
engine_patched(const struct engine_policy *p, struct ticket *t, uint32_t revision,
    const struct snow_record *r, int64_t now, struct engine_result *out)
{
	struct engine_ctx c;
	struct snow_obs o;
	int64_t known;
	int rc;

	if (t == NULL || r == NULL)
		return -EINVAL;
	if ((rc = engine_ctx_init(&c, p, t->table, now, out)) < 0)
		return rc;
	known = t->seen_mod_count > t->own_mod_count ? t->seen_mod_count : t->own_mod_count;
	t->own_mod_count = r->mod_count < -1 ? -1 : r->mod_count;
	if (revision > t->landed_revision && revision <= t->revision)
		t->landed_revision = revision;
	out->changed = 1;
	snow_obs_parse(c.tc, r, &o);
	if (!o.complete) {
		if (r->mod_count > t->seen_mod_count)
			t->seen_mod_count = r->mod_count;
		return 0;
	}
	if (revision == t->resolve_revision && !o.ended &&
	    (t->state == TS_RESOLVED || t->state == TS_CLOSED))
		engine_resolve_failed(&c, t, "the ticket is still open after the update "
		    "(state not writable, or a business rule reverted it)");
	else if (known >= 0 && r->mod_count > known + 1 && p->match != NULL)
		/* someone else changed the ticket between our last read and this PATCH */
		engine_decide(&c, t, p->match(p->flows, t->table, r), &o);
	engine_remember(t, r, &o);
	return 0;
}

int
engine_effect_failed(const struct engine_policy *p, struct ticket *t,
    const struct effect *e, const char *why, int64_t now, struct engine_result *out)
{
	struct engine_ctx c;
	char rev[16];
	int rc;

	if (t == NULL || e == NULL)
		return -EINVAL;
	if ((rc = engine_ctx_init(&c, p, t->table, now, out)) < 0)
		return rc;
	if (!str_eq(e->table, t->table) || strcmp(e->sys_id, t->sys_id) != 0)
		return -EINVAL;
	engine_set_text(&t->last_error, why ? why : "unknown error", MAX_ERROR);
	out->changed = 1;
	snprintf(rev, sizeof(rev), "%" PRIu32, e->revision);
	engine_event(out, LOG_LVL_WARN, "effect failed", "ticket", t->number,
	    "effect", engine_effect_name(e->kind), "tag", e->tag, "revision", rev,
	    "verification", e->request_id, "error", t->last_error, NULL);
	if (e->kind == EFFECT_PATCH && e->revision != 0 && e->revision == t->resolve_revision &&
	    (t->state == TS_RESOLVED || t->state == TS_CLOSED))
		engine_resolve_failed(&c, t, t->last_error);
	return 0;
}

int
engine_field_has_revision(const char *field, uint32_t generation, uint32_t revision)
{
	uint32_t g, r;

	if (render_parse_revision(field, &g, &r) < 0)
		return 0;
	return g > generation || (g == generation && r >= revision);
}
