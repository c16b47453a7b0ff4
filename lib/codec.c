/* codec: tickets, outbox effects and outbox entries to and from the JSON the store keeps.
 * Strict on the way in: every member is checked for type and range, and a
 * failure names the member ("ticket: history[2].to: unknown value"). */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "codec.h"
#include "engine.h"
#include "util.h"

/* What the store accepts back: anything the engine keeps fits. */
#define CODEC_MAX_STRING	(1u << 20)
#define CODEC_TIME_MAX		INT64_C(253402300799)	/* 9999-12-31 23:59:59 */
#define MAX_NUMBER		64
#define MAX_NAME		256

static char *
codec_json_string(struct json_object *o)
{
	return xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Index of s in names, -1 if absent. */
static int
codec_name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (names[i] != NULL && strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

/* The store's JSON: "v" is the schema version this build writes and reads. */
#define CODEC_SCHEMA		1
#define CODEC_MAX_DOC		(64u << 20)
#define CODEC_MAX_PATCH	(8u << 20)

static void
enc_str(struct json_object *o, const char *k, const char *v)
{
	if (v != NULL)
		json_object_object_add(o, k, json_object_new_string(v));
}

static void
enc_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static void
enc_bool(struct json_object *o, const char *k, int v)
{
	json_object_object_add(o, k, json_object_new_boolean(v != 0));
}

static struct json_object *
enc_ref(const struct imperai_ticket_ref *r)
{
	struct json_object *o = json_object_new_object();

	enc_str(o, "instance", r->instance);
	enc_str(o, "table", r->table);
	enc_str(o, "sys_id", r->sys_id);
	enc_str(o, "number", r->number);
	enc_str(o, "url", r->url);
	return o;
}

static struct json_object *
enc_verification(const struct imperai_verification *v)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_object();

	enc_str(o, "id", v->id);
	json_object_object_add(o, "ticket", enc_ref(&v->ticket));
	enc_str(o, "status", imperai_status_name(v->status));
	enc_str(o, "channel", v->channel);
	enc_str(o, "recipient_masked", v->recipient_masked);
	enc_str(o, "initiated_by", v->initiated_by);
	enc_int(o, "risk_score", v->risk_score);
	enc_str(o, "recommendation", v->recommendation);
	enc_str(o, "analysis_summary", v->analysis_summary);
	enc_str(o, "additional_info", v->additional_info);
	enc_str(o, "send_link_url", v->send_link_url);
	enc_str(o, "details_url", v->details_url);
	enc_int(o, "expires_at", v->expires_at);
	enc_int(o, "completed_at", v->completed_at);
	enc_int(o, "updated_at", v->updated_at);
	enc_int(o, "sent_at", v->sent_at);
	enc_str(a, "type", v->action.type);
	enc_str(a, "status", imperai_action_status_name(v->action.status));
	enc_int(a, "completed_at", v->action.completed_at);
	enc_bool(a, "automated", v->action.automated);
	json_object_object_add(o, "action", a);
	return o;
}

static struct json_object *
enc_history(const struct ticket *t)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < t->nhistory && i < ENGINE_HISTORY_MAX; i++) {
		struct json_object *h = json_object_new_object();

		enc_int(h, "at", t->history[i].at);
		enc_str(h, "from", engine_state_name(t->history[i].from));
		enc_str(h, "to", engine_state_name(t->history[i].to));
		enc_str(h, "why", t->history[i].why);
		json_object_array_add(a, h);
	}
	return a;
}

/* The automatic new attempts (flow retry); absent in older records. */
static void
enc_attempts(struct json_object *o, const struct ticket *t)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < t->nattempts && i < ENGINE_ATTEMPTS_MAX; i++) {
		struct json_object *e = json_object_new_object();

		enc_int(e, "generation", t->attempts[i].generation);
		enc_int(e, "attempt", t->attempts[i].attempt);
		enc_str(e, "request_id", t->attempts[i].request_id);
		enc_str(e, "status", imperai_status_name(t->attempts[i].status));
		enc_int(e, "at", t->attempts[i].at);
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "attempts", a);
	enc_int(o, "attempt", t->attempt);
	enc_int(o, "attempt_max", t->attempt_max);
	enc_bool(o, "retry_exhausted", t->retry_exhausted);
}

/* The request and verification half of a ticket. */
static void
enc_ticket_request(struct json_object *o, const struct ticket *t)
{
	enc_attempts(o, t);
	enc_str(o, "request_id", t->request_id);
	enc_str(o, "requester", t->requester);
	enc_str(o, "requester_name", t->requester_name);
	enc_str(o, "requester_email", t->requester_email);
	enc_str(o, "description", t->description);
	enc_str(o, "gen_reason", t->gen_reason);
	json_object_object_add(o, "verification", enc_verification(&t->v));
	enc_int(o, "sent_at", t->sent_at);
	enc_bool(o, "on_fail_applied", t->on_fail_applied);
	enc_bool(o, "untracked_noted", t->untracked_noted);
	enc_bool(o, "requester_unreadable", t->requester_unreadable);
	enc_int(o, "resolve_revision", t->resolve_revision);
	enc_bool(o, "resolve_failed", t->resolve_failed);
	enc_int(o, "resolved_at", t->resolved_at);
}

char *
codec_ticket_encode(const struct ticket *t)
{
	struct json_object *o = json_object_new_object();
	char *s;

	enc_int(o, "v", CODEC_SCHEMA);
	enc_str(o, "table", t->table);
	enc_str(o, "sys_id", t->sys_id);
	enc_str(o, "number", t->number);
	enc_str(o, "state", engine_state_name(t->state));
	enc_str(o, "flow", t->flow);
	enc_int(o, "generation", t->generation);
	enc_int(o, "revision", t->revision);
	enc_int(o, "landed_revision", t->landed_revision);
	enc_int(o, "seen_mod_count", t->seen_mod_count);
	enc_int(o, "seen_updated_on", t->seen_updated_on);
	enc_int(o, "own_mod_count", t->own_mod_count);
	enc_str(o, "category", t->category);
	enc_str(o, "subcategory", t->subcategory);
	enc_str(o, "snow_state", t->snow_state);
	enc_str(o, "short_description", t->short_description);
	enc_bool(o, "ended", t->ended);
	enc_ticket_request(o, t);
	enc_int(o, "created_at", t->created_at);
	enc_int(o, "state_since", t->state_since);
	json_object_object_add(o, "history", enc_history(t));
	enc_str(o, "last_error", t->last_error);
	s = codec_json_string(o);
	json_object_put(o);
	return s;
}

/* The encoder writes "state" before any free text, and a quote inside a
 * string is always escaped, so the first "state":" is the ticket's. */
int
codec_ticket_peek_state(const void *json, size_t len, enum tstate *out)
{
	static const char key[] = "\"state\":\"";
	const char *p = memmem(json, len, key, sizeof(key) - 1), *end;
	char name[32];

	if (p == NULL)
		return -EINVAL;
	p += sizeof(key) - 1;
	end = memchr(p, '"', len - (size_t)(p - (const char *)json));
	if (end == NULL || (size_t)(end - p) >= sizeof(name))
		return -EINVAL;
	memcpy(name, p, (size_t)(end - p));
	name[end - p] = '\0';
	return engine_state_parse(name, out);
}

/* A decoder with a sticky error: the first problem met is the cause. */
struct codec_dec {
	const char	*what;
	char		*cause;
	int		 err;
};

static void
dec_fail(struct codec_dec *d, int err, const char *pfx, const char *key, const char *problem)
{
	if (d->err)
		return;
	d->err = err;
	d->cause = xprintf("%s: %s%s: %s", d->what, pfx, key, problem);
}

static const char *
dec_type_name(enum json_type type)
{
	switch (type) {
	case json_type_string:
		return "expected a string";
	case json_type_int:
		return "expected an integer";
	case json_type_boolean:
		return "expected true or false";
	case json_type_object:
		return "expected an object";
	case json_type_array:
		return "expected an array";
	default:
		return "unexpected type";
	}
}

/* The member key of o, of type; NULL (and an error if required) when absent
 * or null. */
static struct json_object *
dec_get(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    enum json_type type, int required)
{
	struct json_object *v = NULL;

	if (d->err)
		return NULL;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL) {
		if (required)
			dec_fail(d, -EINVAL, pfx, key, "missing");
		return NULL;
	}
	if (!json_object_is_type(v, type)) {
		dec_fail(d, -EINVAL, pfx, key, dec_type_name(type));
		return NULL;
	}
	return v;
}

static void
dec_str(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    char **out, size_t max, int required)
{
	struct json_object *v = dec_get(d, o, pfx, key, json_type_string, required);
	const char *s;
	size_t len;

	if (v == NULL)
		return;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (strlen(s) != len)
		dec_fail(d, -EINVAL, pfx, key, "contains a NUL character");
	else if (len > max)
		dec_fail(d, -EINVAL, pfx, key, "too long");
	else if (required && len == 0)
		dec_fail(d, -EINVAL, pfx, key, "empty");
	else {
		free(*out);
		*out = xstrdup(s);
	}
}

static void
dec_int(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    int64_t *out, int64_t min, int64_t max)
{
	struct json_object *v = dec_get(d, o, pfx, key, json_type_int, 0);
	int64_t n;

	if (v == NULL)
		return;
	errno = 0;
	n = json_object_get_int64(v);
	if (errno != 0 || n < min || n > max)
		dec_fail(d, -EINVAL, pfx, key, "out of range");
	else
		*out = n;
}

static void
dec_time(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    int64_t *out)
{
	dec_int(d, o, pfx, key, out, 0, CODEC_TIME_MAX);
}

static void
dec_u32(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    uint32_t *out)
{
	int64_t n = *out;

	dec_int(d, o, pfx, key, &n, 0, UINT32_MAX);
	*out = (uint32_t)n;
}

static void
dec_int32(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    int *out, int min, int max)
{
	int64_t n = *out;

	dec_int(d, o, pfx, key, &n, min, max);
	*out = (int)n;
}

static void
dec_bool(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key, int *out)
{
	struct json_object *v = dec_get(d, o, pfx, key, json_type_boolean, 0);

	if (v != NULL)
		*out = json_object_get_boolean(v) ? 1 : 0;
}

/* A string member's value, NULL if absent (or failed). */
static const char *
dec_word(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    int required)
{
	struct json_object *v = dec_get(d, o, pfx, key, json_type_string, required);

	return v != NULL ? json_object_get_string(v) : NULL;
}

/* A string member naming one of names; returns its index via out. */
static void
dec_name(struct codec_dec *d, struct json_object *o, const char *pfx, const char *key,
    const char *const *names, size_t n, int *out, int required)
{
	const char *s = dec_word(d, o, pfx, key, required);
	int i;

	if (s == NULL)
		return;
	if ((i = codec_name_index(names, n, s)) < 0)
		dec_fail(d, -EINVAL, pfx, key, "unknown value");
	else
		*out = i;
}

static void
dec_sys_id(struct codec_dec *d, struct json_object *o, char out[33])
{
	char *s = NULL;

	dec_str(d, o, "", "sys_id", &s, 32, 1);
	if (s != NULL)
		memcpy(out, s, strlen(s) + 1);
	free(s);
}

static struct json_object *
codec_parse(struct codec_dec *d, const char *json, size_t len)
{
	struct json_tokener *tok;
	struct json_object *o;
	size_t end;

	if (json == NULL || len == 0 || len > CODEC_MAX_DOC || memchr(json, '\0', len)) {
		dec_fail(d, -EINVAL, "", "document", len > CODEC_MAX_DOC ? "too large" :
		    "empty or holding a NUL byte");
		return NULL;
	}
	tok = json_tokener_new_ex(16);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, json, (int)len);
	end = o ? json_tokener_get_parse_end(tok) : 0;
	while (o != NULL && end < len && strchr(" \t\r\n", json[end]) != NULL)
		end++;
	if (o == NULL)
		dec_fail(d, -EINVAL, "", "document", json_tokener_get_error(tok) ==
		    json_tokener_continue ? "truncated JSON" :
		    json_tokener_error_desc(json_tokener_get_error(tok)));
	else if (end != len)
		dec_fail(d, -EINVAL, "", "document", "trailing data after the JSON value");
	else if (!json_object_is_type(o, json_type_object))
		dec_fail(d, -EINVAL, "", "document", "expected a JSON object");
	json_tokener_free(tok);
	if (d->err) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static void
dec_version(struct codec_dec *d, struct json_object *o)
{
	int64_t v = -1;

	if (dec_get(d, o, "", "v", json_type_int, 1) == NULL)
		return;
	dec_int(d, o, "", "v", &v, INT64_MIN, INT64_MAX);
	if (!d->err && v != CODEC_SCHEMA)
		dec_fail(d, v > CODEC_SCHEMA ? -EPROTO : -EINVAL, "", "v",
		    "unsupported schema version (this build reads 1)");
}

static void
dec_ref(struct codec_dec *d, struct json_object *o, const char *pfx,
    struct imperai_ticket_ref *r)
{
	char p[64];
	struct json_object *ref = dec_get(d, o, pfx, "ticket", json_type_object, 0);

	if (ref == NULL)
		return;
	snprintf(p, sizeof(p), "%sticket.", pfx);
	dec_str(d, ref, p, "instance", &r->instance, CODEC_MAX_STRING, 0);
	dec_str(d, ref, p, "table", &r->table, CODEC_MAX_STRING, 0);
	dec_str(d, ref, p, "sys_id", &r->sys_id, CODEC_MAX_STRING, 0);
	dec_str(d, ref, p, "number", &r->number, CODEC_MAX_STRING, 0);
	dec_str(d, ref, p, "url", &r->url, CODEC_MAX_STRING, 0);
}

static void
dec_action(struct codec_dec *d, struct json_object *o, struct imperai_verification *v)
{
	static const char *const p = "verification.action.";
	struct json_object *a = dec_get(d, o, "verification.", "action", json_type_object, 0);
	const char *st;

	if (a == NULL)
		return;
	dec_str(d, a, p, "type", &v->action.type, CODEC_MAX_STRING, 0);
	v->action.status = IMPERAI_ACTION_NONE;
	st = dec_word(d, a, p, "status", 0);
	if (st != NULL && imperai_action_status_parse(st, &v->action.status) < 0)
		dec_fail(d, -EINVAL, p, "status", "unknown value");
	dec_time(d, a, p, "completed_at", &v->action.completed_at);
	dec_bool(d, a, p, "automated", &v->action.automated);
}

static void
dec_verification(struct codec_dec *d, struct json_object *root, struct imperai_verification *v)
{
	static const char *const p = "verification.";
	struct json_object *o = dec_get(d, root, "", "verification", json_type_object, 0);
	const char *st;

	if (o == NULL)
		return;
	dec_str(d, o, p, "id", &v->id, CODEC_MAX_STRING, 0);
	dec_ref(d, o, p, &v->ticket);
	v->status = IMPERAI_PENDING;
	st = dec_word(d, o, p, "status", 1);
	if (st != NULL && imperai_status_parse(st, &v->status) < 0)
		dec_fail(d, -EINVAL, p, "status", "unknown value");
	dec_str(d, o, p, "channel", &v->channel, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "recipient_masked", &v->recipient_masked, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "initiated_by", &v->initiated_by, CODEC_MAX_STRING, 0);
	dec_int32(d, o, p, "risk_score", &v->risk_score, -1, 10);
	dec_str(d, o, p, "recommendation", &v->recommendation, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "analysis_summary", &v->analysis_summary, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "additional_info", &v->additional_info, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "send_link_url", &v->send_link_url, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "details_url", &v->details_url, CODEC_MAX_STRING, 0);
	dec_time(d, o, p, "expires_at", &v->expires_at);
	dec_time(d, o, p, "completed_at", &v->completed_at);
	dec_time(d, o, p, "updated_at", &v->updated_at);
	dec_time(d, o, p, "sent_at", &v->sent_at);
	dec_action(d, o, v);
}

static void
dec_history_entry(struct codec_dec *d, struct json_object *h, struct ticket_history *e)
{
	static const char *const p = "history[].";
	int from = TS_UNTRACKED, to = TS_UNTRACKED;

	if (!json_object_is_type(h, json_type_object)) {
		dec_fail(d, -EINVAL, "", "history[]", "expected an object");
		return;
	}
	dec_time(d, h, p, "at", &e->at);
	dec_name(d, h, p, "from", engine_state_names, TS__COUNT, &from, 1);
	dec_name(d, h, p, "to", engine_state_names, TS__COUNT, &to, 1);
	dec_str(d, h, p, "why", &e->why, 64, 1);
	e->from = (enum tstate)from;
	e->to = (enum tstate)to;
}

static void
dec_history(struct codec_dec *d, struct json_object *o, struct ticket *t)
{
	struct json_object *a = dec_get(d, o, "", "history", json_type_array, 0);
	size_t n;

	if (a == NULL)
		return;
	n = json_object_array_length(a);
	if (n > ENGINE_HISTORY_MAX) {
		dec_fail(d, -EINVAL, "", "history", "more entries than ENGINE_HISTORY_MAX");
		return;
	}
	for (size_t i = 0; i < n && !d->err; i++) {
		dec_history_entry(d, json_object_array_get_idx(a, i), &t->history[i]);
		t->nhistory = i + 1;
	}
}

static void
dec_attempt(struct codec_dec *d, struct json_object *e, struct ticket_attempt *a)
{
	static const char *const p = "attempts[].";
	const char *st;

	if (!json_object_is_type(e, json_type_object)) {
		dec_fail(d, -EINVAL, "", "attempts[]", "expected an object");
		return;
	}
	dec_u32(d, e, p, "generation", &a->generation);
	dec_u32(d, e, p, "attempt", &a->attempt);
	dec_str(d, e, p, "request_id", &a->request_id, CODEC_MAX_STRING, 0);
	dec_time(d, e, p, "at", &a->at);
	st = dec_word(d, e, p, "status", 1);
	if (st != NULL && imperai_status_parse(st, &a->status) < 0)
		dec_fail(d, -EINVAL, p, "status", "unknown value");
}

static void
dec_attempts(struct codec_dec *d, struct json_object *o, struct ticket *t)
{
	struct json_object *a = dec_get(d, o, "", "attempts", json_type_array, 0);
	size_t n;

	dec_u32(d, o, "", "attempt", &t->attempt);
	dec_u32(d, o, "", "attempt_max", &t->attempt_max);
	dec_bool(d, o, "", "retry_exhausted", &t->retry_exhausted);
	if (a == NULL)
		return;
	if ((n = json_object_array_length(a)) > ENGINE_ATTEMPTS_MAX) {
		dec_fail(d, -EINVAL, "", "attempts", "more entries than ENGINE_ATTEMPTS_MAX");
		return;
	}
	for (size_t i = 0; i < n && !d->err; i++) {
		dec_attempt(d, json_object_array_get_idx(a, i), &t->attempts[i]);
		t->nattempts = i + 1;
	}
}

static void
dec_ticket_request(struct codec_dec *d, struct json_object *o, struct ticket *t)
{
	dec_attempts(d, o, t);
	dec_str(d, o, "", "request_id", &t->request_id, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "requester", &t->requester, MAX_NAME, 0);
	dec_str(d, o, "", "requester_name", &t->requester_name, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "requester_email", &t->requester_email, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "description", &t->description, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "gen_reason", &t->gen_reason, 64, 0);
	dec_verification(d, o, &t->v);
	dec_time(d, o, "", "sent_at", &t->sent_at);
	dec_bool(d, o, "", "on_fail_applied", &t->on_fail_applied);
	dec_bool(d, o, "", "untracked_noted", &t->untracked_noted);
	dec_bool(d, o, "", "requester_unreadable", &t->requester_unreadable);
	dec_u32(d, o, "", "resolve_revision", &t->resolve_revision);
	dec_bool(d, o, "", "resolve_failed", &t->resolve_failed);
	dec_time(d, o, "", "resolved_at", &t->resolved_at);
}

static void
dec_ticket(struct codec_dec *d, struct json_object *o, struct ticket *t)
{
	int state = TS_UNTRACKED;

	dec_version(d, o);
	dec_str(d, o, "", "table", &t->table, MAX_NAME, 1);
	dec_sys_id(d, o, t->sys_id);
	dec_str(d, o, "", "number", &t->number, MAX_NUMBER, 0);
	dec_name(d, o, "", "state", engine_state_names, TS__COUNT, &state, 1);
	t->state = (enum tstate)state;
	dec_str(d, o, "", "flow", &t->flow, CODEC_MAX_STRING, 0);
	dec_u32(d, o, "", "generation", &t->generation);
	dec_u32(d, o, "", "revision", &t->revision);
	dec_u32(d, o, "", "landed_revision", &t->landed_revision);
	dec_int(d, o, "", "seen_mod_count", &t->seen_mod_count, -1, INT64_MAX);
	dec_time(d, o, "", "seen_updated_on", &t->seen_updated_on);
	dec_int(d, o, "", "own_mod_count", &t->own_mod_count, -1, INT64_MAX);
	dec_str(d, o, "", "category", &t->category, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "subcategory", &t->subcategory, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "snow_state", &t->snow_state, CODEC_MAX_STRING, 0);
	dec_str(d, o, "", "short_description", &t->short_description, CODEC_MAX_STRING, 0);
	dec_bool(d, o, "", "ended", &t->ended);
	dec_ticket_request(d, o, t);
	dec_time(d, o, "", "created_at", &t->created_at);
	dec_time(d, o, "", "state_since", &t->state_since);
	dec_history(d, o, t);
	dec_str(d, o, "", "last_error", &t->last_error, CODEC_MAX_STRING, 0);
}

/* Hands the decoder's cause to the caller (or drops it). */
static int
dec_finish(struct codec_dec *d, char **cause)
{
	if (cause != NULL)
		*cause = d->cause;
	else
		free(d->cause);
	return d->err;
}

int
codec_ticket_decode(const char *json, size_t len, struct ticket *t, char **cause)
{
	struct codec_dec d = { .what = "ticket" };
	struct json_object *o;

	ticket_init(t, NULL, NULL);
	if ((o = codec_parse(&d, json, len)) != NULL)
		dec_ticket(&d, o, t);
	json_object_put(o);
	if (d.err)
		ticket_free(t);
	return dec_finish(&d, cause);
}

static struct json_object *
enc_create(const struct imperai_create *c)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ticket", enc_ref(&c->ticket));
	enc_str(o, "subject", c->subject);
	enc_str(o, "description", c->description);
	enc_str(o, "category", c->category);
	enc_str(o, "action", c->action);
	enc_str(o, "requester_name", c->requester_name);
	enc_str(o, "requester_email", c->requester_email);
	enc_str(o, "requester_user_name", c->requester_user_name);
	enc_str(o, "assigned_agent", c->assigned_agent);
	enc_str(o, "idempotency_key", c->idempotency_key);
	return o;
}

static struct json_object *
enc_effect(const struct effect *e)
{
	struct json_object *o = json_object_new_object();

	enc_int(o, "v", CODEC_SCHEMA);
	enc_str(o, "kind", engine_effect_name(e->kind));
	enc_str(o, "table", e->table);
	enc_str(o, "sys_id", e->sys_id);
	enc_str(o, "number", e->number);
	enc_int(o, "generation", e->generation);
	enc_int(o, "revision", e->revision);
	enc_str(o, "tag", e->tag);
	enc_str(o, "request_id", e->request_id);
	if (e->kind == EFFECT_CREATE)
		json_object_object_add(o, "create", enc_create(&e->create));
	enc_str(o, "patch_json", e->patch_json);
	enc_int(o, "created_at", e->created_at);
	return o;
}

char *
codec_effect_encode(const struct effect *e)
{
	struct json_object *o = enc_effect(e);
	char *s = codec_json_string(o);

	json_object_put(o);
	return s;
}

/* The phase is not stored: it follows from these members (see codec.h). */
char *
codec_entry_encode(const struct outbox_entry *en)
{
	struct json_object *o = enc_effect(&en->e);
	char *s;

	enc_int(o, "attempts", en->attempts);
	enc_int(o, "not_before", en->phase == OUTBOX_PARKED ? OUTBOX_PARKED_AT : en->not_before);
	enc_int(o, "sent_at", en->sent_at);
	enc_str(o, "last_error", en->last_error);
	s = codec_json_string(o);
	json_object_put(o);
	return s;
}

static void
dec_create(struct codec_dec *d, struct json_object *root, struct imperai_create *c)
{
	static const char *const p = "create.";
	struct json_object *o = dec_get(d, root, "", "create", json_type_object, 1);

	if (o == NULL)
		return;
	dec_ref(d, o, p, &c->ticket);
	dec_str(d, o, p, "subject", &c->subject, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "description", &c->description, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "category", &c->category, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "action", &c->action, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "requester_name", &c->requester_name, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "requester_email", &c->requester_email, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "requester_user_name", &c->requester_user_name, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "assigned_agent", &c->assigned_agent, CODEC_MAX_STRING, 0);
	dec_str(d, o, p, "idempotency_key", &c->idempotency_key, CODEC_MAX_STRING, 1);
}

static void
dec_effect(struct codec_dec *d, struct json_object *o, struct effect *e)
{
	int kind = EFFECT_PATCH;

	dec_version(d, o);
	dec_name(d, o, "", "kind", engine_effect_names, EFFECT__KINDS, &kind, 1);
	e->kind = (enum effect_kind)kind;
	dec_str(d, o, "", "table", &e->table, MAX_NAME, 1);
	dec_sys_id(d, o, e->sys_id);
	dec_str(d, o, "", "number", &e->number, MAX_NUMBER, 0);
	dec_u32(d, o, "", "generation", &e->generation);
	dec_u32(d, o, "", "revision", &e->revision);
	dec_str(d, o, "", "tag", &e->tag, 64, 0);
	dec_str(d, o, "", "request_id", &e->request_id, CODEC_MAX_STRING, kind == EFFECT_CANCEL);
	if (kind == EFFECT_CREATE)
		dec_create(d, o, &e->create);
	dec_str(d, o, "", "patch_json", &e->patch_json, CODEC_MAX_PATCH, kind == EFFECT_PATCH);
	dec_time(d, o, "", "created_at", &e->created_at);
}

static void
dec_entry(struct codec_dec *d, struct json_object *o, struct outbox_entry *en)
{
	dec_effect(d, o, &en->e);
	dec_int32(d, o, "", "attempts", &en->attempts, 0, INT32_MAX);
	dec_int(d, o, "", "not_before", &en->not_before, 0, CODEC_TIME_MAX);
	dec_time(d, o, "", "sent_at", &en->sent_at);
	dec_str(d, o, "", "last_error", &en->last_error, CODEC_MAX_STRING, 0);
	if (en->not_before == OUTBOX_PARKED_AT)
		en->phase = OUTBOX_PARKED;
	else
		en->phase = en->attempts > 0 ? OUTBOX_SENT : OUTBOX_QUEUED;
}

int
codec_effect_decode(const char *json, size_t len, struct effect *e, char **cause)
{
	struct codec_dec d = { .what = "effect" };
	struct json_object *o;

	memset(e, 0, sizeof(*e));
	if ((o = codec_parse(&d, json, len)) != NULL)
		dec_effect(&d, o, e);
	json_object_put(o);
	if (d.err)
		effect_free(e);
	return dec_finish(&d, cause);
}

int
codec_entry_decode(const char *json, size_t len, struct outbox_entry *en, char **cause)
{
	struct codec_dec d = { .what = "effect" };
	struct json_object *o;

	memset(en, 0, sizeof(*en));
	if ((o = codec_parse(&d, json, len)) != NULL)
		dec_entry(&d, o, en);
	json_object_put(o);
	if (d.err)
		outbox_entry_free(en);
	return dec_finish(&d, cause);
}

void
outbox_entry_free(struct outbox_entry *en)
{
	effect_free(&en->e);
	free(en->last_error);
	en->last_error = NULL;
}
