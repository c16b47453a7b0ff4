/* imperai: the imper.ai API client, contract v1 (man/imperai-snow-api.7).
 * The builders and parsers are pure; the client below them only builds
 * requests for http.c and turns answers into results. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "config.h"
#include "http.h"
#include "imperai.h"
#include "util.h"

#define IMPERAI_MAX_ID		128
#define IMPERAI_MAX_CURSOR	1024
#define IMPERAI_MAX_LIMIT	500
#define IMPERAI_MAX_ERROR	512
#define IMPERAI_JSON_DEPTH	32
#define IMPERAI_MAX_BODY	(16u * 1024 * 1024)

/* Field flags for the getters. */
#define IMPERAI_F_REQUIRED	0x1	/* absent is an error */
#define IMPERAI_F_NULLABLE	0x2	/* null is allowed (and means "unset") */
#define IMPERAI_F_NONEMPTY	0x4	/* "" is an error */
#define IMPERAI_F_URL		0x8	/* must be an http(s) URL */

static const char *const imperai_status_names[] = {
	[IMPERAI_PENDING] = "pending",
	[IMPERAI_LINK_SENT] = "link_sent",
	[IMPERAI_IN_PROGRESS] = "in_progress",
	[IMPERAI_PASSED] = "passed",
	[IMPERAI_FAILED] = "failed",
	[IMPERAI_TIMED_OUT] = "timed_out",
	[IMPERAI_NOT_ENOUGH_QUESTIONS] = "not_enough_questions",
	[IMPERAI_CANCELED] = "canceled",
};

static const char *const imperai_action_names[] = {
	[IMPERAI_ACTION_NONE] = "none",
	[IMPERAI_ACTION_PENDING] = "pending",
	[IMPERAI_ACTION_COMPLETED] = "completed",
	[IMPERAI_ACTION_FAILED] = "failed",
};

const char *
imperai_status_name(enum imperai_status s)
{
	if ((size_t)s >= ARRAY_SIZE(imperai_status_names))
		return "unknown";
	return imperai_status_names[s];
}

int
imperai_status_parse(const char *s, enum imperai_status *out)
{
	for (size_t i = 0; s != NULL && i < ARRAY_SIZE(imperai_status_names); i++) {
		if (strcmp(s, imperai_status_names[i]) == 0) {
			*out = (enum imperai_status)i;
			return 0;
		}
	}
	return -EINVAL;
}

int
imperai_status_is_final(enum imperai_status s)
{
	return s == IMPERAI_PASSED || s == IMPERAI_FAILED || s == IMPERAI_TIMED_OUT ||
	    s == IMPERAI_NOT_ENOUGH_QUESTIONS || s == IMPERAI_CANCELED;
}

const char *
imperai_action_status_name(enum imperai_action_status s)
{
	if ((size_t)s >= ARRAY_SIZE(imperai_action_names))
		return "unknown";
	return imperai_action_names[s];
}

int
imperai_action_status_parse(const char *s, enum imperai_action_status *out)
{
	for (size_t i = 0; s != NULL && i < ARRAY_SIZE(imperai_action_names); i++) {
		if (strcmp(s, imperai_action_names[i]) == 0) {
			*out = (enum imperai_action_status)i;
			return 0;
		}
	}
	return -EINVAL;
}

enum imperai_risk
imperai_risk_level(int score, int verified_max, int medium_max)
{
	if (score < 0 || score > 10)
		return IMPERAI_RISK_UNKNOWN;
	if (score <= verified_max)
		return IMPERAI_RISK_VERIFIED;
	if (score <= medium_max)
		return IMPERAI_RISK_MEDIUM;
	return IMPERAI_RISK_HIGH;
}

const char *
imperai_risk_name(enum imperai_risk r)
{
	switch (r) {
	case IMPERAI_RISK_VERIFIED:
		return "Verified";
	case IMPERAI_RISK_MEDIUM:
		return "Medium";
	case IMPERAI_RISK_HIGH:
		return "High";
	case IMPERAI_RISK_UNKNOWN:
		break;
	}
	return "Unknown";
}

int
imperai_id_valid(const char *id)
{
	size_t n;

	if (id == NULL)
		return 0;
	n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
	return n > 0 && n <= IMPERAI_MAX_ID && id[n] == '\0';
}

/* Printable ASCII without spaces: safe in a header, a query and a log. */
static int
imperai_token_valid(const char *s, size_t max)
{
	size_t n;

	if (s == NULL || *s == '\0')
		return 0;
	for (n = 0; s[n] != '\0'; n++) {
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
			return 0;
	}
	return n <= max;
}

/* Freeing and copying. */

static void
imperai_ticket_free(struct imperai_ticket_ref *t)
{
	free(t->instance);
	free(t->table);
	free(t->sys_id);
	free(t->number);
	free(t->url);
	memset(t, 0, sizeof *t);
}

void
imperai_create_free(struct imperai_create *c)
{
	if (c == NULL)
		return;
	imperai_ticket_free(&c->ticket);
	free(c->subject);
	free(c->description);
	free(c->category);
	free(c->action);
	free(c->requester_name);
	free(c->requester_email);
	free(c->requester_user_name);
	free(c->assigned_agent);
	free(c->idempotency_key);
	memset(c, 0, sizeof *c);
}

void
imperai_verification_free(struct imperai_verification *v)
{
	if (v == NULL)
		return;
	free(v->id);
	imperai_ticket_free(&v->ticket);
	free(v->channel);
	free(v->recipient_masked);
	free(v->initiated_by);
	free(v->recommendation);
	free(v->analysis_summary);
	free(v->additional_info);
	free(v->send_link_url);
	free(v->details_url);
	free(v->category);
	free(v->requested_action);
	free(v->subject);
	free(v->action.type);
	memset(v, 0, sizeof *v);
	v->risk_score = -1;
}

void
imperai_feed_free(struct imperai_feed *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		imperai_verification_free(&f->v[i]);
	free(f->v);
	free(f->next_cursor);
	memset(f, 0, sizeof *f);
}

static char *
imperai_strdup0(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

void
imperai_verification_copy(struct imperai_verification *dst,
    const struct imperai_verification *src)
{
	*dst = *src;
	dst->id = imperai_strdup0(src->id);
	dst->ticket.instance = imperai_strdup0(src->ticket.instance);
	dst->ticket.table = imperai_strdup0(src->ticket.table);
	dst->ticket.sys_id = imperai_strdup0(src->ticket.sys_id);
	dst->ticket.number = imperai_strdup0(src->ticket.number);
	dst->ticket.url = imperai_strdup0(src->ticket.url);
	dst->channel = imperai_strdup0(src->channel);
	dst->recipient_masked = imperai_strdup0(src->recipient_masked);
	dst->initiated_by = imperai_strdup0(src->initiated_by);
	dst->recommendation = imperai_strdup0(src->recommendation);
	dst->analysis_summary = imperai_strdup0(src->analysis_summary);
	dst->additional_info = imperai_strdup0(src->additional_info);
	dst->send_link_url = imperai_strdup0(src->send_link_url);
	dst->details_url = imperai_strdup0(src->details_url);
	dst->category = imperai_strdup0(src->category);
	dst->requested_action = imperai_strdup0(src->requested_action);
	dst->subject = imperai_strdup0(src->subject);
	dst->action.type = imperai_strdup0(src->action.type);
}

/* Parsing: where we are, so that every failure names its field. */

struct imperai_pctx {
	const char	*what;		/* "change feed" */
	const char	*prefix;	/* "data[3]", "" at the top */
	char		**cause;
};

static int PRINTFLIKE(3, 4)
imperai_bad(const struct imperai_pctx *pc, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	const char *dot = *pc->prefix != '\0' && *key != '\0' ? "." : "";
	const char *where = *pc->prefix == '\0' && *key == '\0' ? "body" : "";

	if (pc->cause == NULL)
		return -EBADMSG;
	va_start(ap, fmt);
	msg = xvprintf(fmt, ap);
	va_end(ap);
	*pc->cause = xprintf("%s: %s%s%s%s: %s", pc->what, where, pc->prefix, dot, key, msg);
	free(msg);
	return -EBADMSG;
}

static const char *
imperai_jtype(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "boolean";
	case json_type_double:
		return "non-integer number";
	case json_type_int:
		return "integer";
	case json_type_object:
		return "object";
	case json_type_array:
		return "array";
	case json_type_string:
		return "string";
	}
	return "unknown type";
}

/* A short printable rendering of an untrusted value for a message. */
static char *
imperai_quote(const char *s)
{
	struct buf b;
	size_t i;

	buf_init(&b);
	buf_addc(&b, '"');
	for (i = 0; i < 40 && s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];
		buf_addc(&b, c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?');
	}
	buf_adds(&b, s[i] != '\0' ? "...\"" : "\"");
	return buf_detach(&b);
}

/* Parses a whole body into a JSON object, or says why not. */
static int
imperai_json_parse(const char *body, size_t len, const struct imperai_pctx *pc,
    json_object **out)
{
	struct json_tokener *tok;
	json_object *root = NULL;
	int rc = 0;

	*out = NULL;
	if (body == NULL || len == 0)
		return imperai_bad(pc, "", "empty, expected a JSON object");
	if (len > IMPERAI_MAX_BODY)
		return imperai_bad(pc, "", "%zu bytes, more than the %u-byte limit", len,
		    IMPERAI_MAX_BODY);
	if (memchr(body, '\0', len) != NULL)
		return imperai_bad(pc, "", "contains a NUL byte");
	tok = json_tokener_new_ex(IMPERAI_JSON_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (root == NULL || json_tokener_get_parse_end(tok) != len) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		rc = imperai_bad(pc, "", "not valid JSON at byte %zu: %s",
		    json_tokener_get_parse_end(tok),
		    e == json_tokener_success || e == json_tokener_continue ?
		    "unexpected end" : json_tokener_error_desc(e));
		goto out;
	}
	if (!json_object_is_type(root, json_type_object)) {
		rc = imperai_bad(pc, "", "expected a JSON object, got %s", imperai_jtype(root));
		goto out;
	}
	*out = root;
	root = NULL;
out:
	json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

/* Looks key up: 1 found (*o NULL for null), 0 absent or an error set. */
static int
imperai_lookup(const struct imperai_pctx *pc, json_object *obj, const char *key, int flags,
    json_object **o, int *rc)
{
	*rc = 0;
	if (!json_object_object_get_ex(obj, key, o)) {
		if (flags & IMPERAI_F_REQUIRED)
			*rc = imperai_bad(pc, key, "missing");
		return 0;
	}
	if (*o == NULL && (flags & IMPERAI_F_NULLABLE))
		return 0;
	return 1;
}

static int
imperai_string_value(const struct imperai_pctx *pc, const char *key, json_object *o,
    int flags, char **out)
{
	const char *s = json_object_get_string(o);
	size_t len = (size_t)json_object_get_string_len(o);

	if (len > IMPERAI_MAX_STRING)
		return imperai_bad(pc, key, "string of %zu bytes exceeds the %d-byte limit",
		    len, IMPERAI_MAX_STRING);
	if (memchr(s, '\0', len) != NULL)
		return imperai_bad(pc, key, "string contains a NUL character");
	if (!util_utf8_valid(s, len))
		return imperai_bad(pc, key, "string is not valid UTF-8");
	if (len == 0 && (flags & IMPERAI_F_NONEMPTY))
		return imperai_bad(pc, key, "empty string");
	if ((flags & IMPERAI_F_URL) && strncasecmp(s, "https://", 8) != 0 &&
	    strncasecmp(s, "http://", 7) != 0)
		return imperai_bad(pc, key, "expected an http(s) URL");
	*out = xstrndup(s, len);
	return 0;
}

static int
imperai_get_string(const struct imperai_pctx *pc, json_object *obj, const char *key,
    int flags, char **out)
{
	json_object *o;
	int rc;

	*out = NULL;
	if (!imperai_lookup(pc, obj, key, flags, &o, &rc))
		return rc;
	if (!json_object_is_type(o, json_type_string))
		return imperai_bad(pc, key, "expected string%s, got %s",
		    flags & IMPERAI_F_NULLABLE ? " or null" : "", imperai_jtype(o));
	return imperai_string_value(pc, key, o, flags, out);
}

static int
imperai_get_time(const struct imperai_pctx *pc, json_object *obj, const char *key,
    int flags, int64_t *out)
{
	json_object *o;
	char *q;
	int rc;

	*out = 0;
	if (!imperai_lookup(pc, obj, key, flags, &o, &rc))
		return rc;
	if (!json_object_is_type(o, json_type_string))
		return imperai_bad(pc, key, "expected RFC 3339 time%s, got %s",
		    flags & IMPERAI_F_NULLABLE ? " or null" : "", imperai_jtype(o));
	q = imperai_quote(json_object_get_string(o));
	if (util_parse_rfc3339(json_object_get_string(o), out) != 0)
		rc = imperai_bad(pc, key, "expected RFC 3339 time, got %s", q);
	else if (*out <= 0)	/* 0 stands for null in the struct */
		rc = imperai_bad(pc, key, "expected a time after 1970-01-01, got %s", q);
	free(q);
	if (rc != 0)
		*out = 0;
	return rc;
}

static int
imperai_get_bool(const struct imperai_pctx *pc, json_object *obj, const char *key, int *out)
{
	json_object *o;
	int rc;

	*out = 0;
	if (!imperai_lookup(pc, obj, key, IMPERAI_F_REQUIRED, &o, &rc))
		return rc;
	if (!json_object_is_type(o, json_type_boolean))
		return imperai_bad(pc, key, "expected boolean, got %s", imperai_jtype(o));
	*out = json_object_get_boolean(o) ? 1 : 0;
	return 0;
}

static int
imperai_get_risk(const struct imperai_pctx *pc, json_object *obj, const char *key, int *out)
{
	json_object *o;
	int64_t n;
	int rc;

	*out = -1;
	if (!imperai_lookup(pc, obj, key, IMPERAI_F_NULLABLE, &o, &rc))
		return rc;
	if (!json_object_is_type(o, json_type_int))
		return imperai_bad(pc, key, "expected integer 0-10 or null, got %s",
		    imperai_jtype(o));
	n = json_object_get_int64(o);
	if (n < -1000000 || n > 1000000)
		return imperai_bad(pc, key, "expected integer 0-10 or null, got a huge integer");
	if (n < 0 || n > 10)
		return imperai_bad(pc, key, "expected integer 0-10 or null, got %" PRId64, n);
	*out = (int)n;
	return 0;
}

/* A string that must be one of a fixed set (parse returns 0 when known). */
static int
imperai_get_enum(const struct imperai_pctx *pc, json_object *obj, const char *key,
    int (*parse)(const char *, void *), void *out)
{
	char *s, *q;
	int rc;

	if ((rc = imperai_get_string(pc, obj, key, IMPERAI_F_REQUIRED, &s)) != 0)
		return rc;
	if (parse(s, out) != 0) {
		q = imperai_quote(s);
		rc = imperai_bad(pc, key, "unknown value %s", q);
		free(q);
	}
	free(s);
	return rc;
}

static int
imperai_parse_status_cb(const char *s, void *out)
{
	return imperai_status_parse(s, out);
}

static int
imperai_parse_action_cb(const char *s, void *out)
{
	return imperai_action_status_parse(s, out);
}

/* Enters obj[key], which must be an object; the child context names it. */
static int
imperai_enter(const struct imperai_pctx *pc, json_object *obj, const char *key,
    json_object **child, struct imperai_pctx *cpc, char **prefix)
{
	json_object *o;
	int rc;

	*prefix = NULL;
	if (!imperai_lookup(pc, obj, key, IMPERAI_F_REQUIRED, &o, &rc))
		return rc;
	if (!json_object_is_type(o, json_type_object))
		return imperai_bad(pc, key, "expected object, got %s", imperai_jtype(o));
	*prefix = *pc->prefix != '\0' ? xprintf("%s.%s", pc->prefix, key) : xstrdup(key);
	*child = o;
	cpc->what = pc->what;
	cpc->prefix = *prefix;
	cpc->cause = pc->cause;
	return 0;
}

struct imperai_sfield {
	const char	*key;
	size_t		 off;
	int		 flags;
};

#define IMPERAI_VOFF(m) offsetof(struct imperai_verification, m)
#define IMPERAI_TOFF(m) offsetof(struct imperai_ticket_ref, m)

static const struct imperai_sfield imperai_ticket_fields[] = {
	{ "instance", IMPERAI_TOFF(instance), IMPERAI_F_REQUIRED | IMPERAI_F_NONEMPTY },
	{ "table", IMPERAI_TOFF(table), IMPERAI_F_REQUIRED | IMPERAI_F_NONEMPTY },
	{ "sys_id", IMPERAI_TOFF(sys_id), IMPERAI_F_REQUIRED | IMPERAI_F_NONEMPTY },
	{ "number", IMPERAI_TOFF(number), IMPERAI_F_REQUIRED | IMPERAI_F_NONEMPTY },
	{ "url", IMPERAI_TOFF(url), IMPERAI_F_NULLABLE },
};

static const struct imperai_sfield imperai_verification_strings[] = {
	{ "channel", IMPERAI_VOFF(channel), IMPERAI_F_NULLABLE | IMPERAI_F_NONEMPTY },
	{ "recipient_masked", IMPERAI_VOFF(recipient_masked), IMPERAI_F_NULLABLE },
	{ "initiated_by", IMPERAI_VOFF(initiated_by), IMPERAI_F_NULLABLE },
	{ "recommendation", IMPERAI_VOFF(recommendation), IMPERAI_F_NULLABLE },
	{ "analysis_summary", IMPERAI_VOFF(analysis_summary), IMPERAI_F_NULLABLE },
	{ "additional_info", IMPERAI_VOFF(additional_info), IMPERAI_F_NULLABLE },
	{ "send_link_url", IMPERAI_VOFF(send_link_url), IMPERAI_F_REQUIRED | IMPERAI_F_URL },
	{ "details_url", IMPERAI_VOFF(details_url), IMPERAI_F_REQUIRED | IMPERAI_F_URL },
	{ "category", IMPERAI_VOFF(category), IMPERAI_F_NULLABLE },
	{ "requested_action", IMPERAI_VOFF(requested_action), IMPERAI_F_NULLABLE },
	{ "subject", IMPERAI_VOFF(subject), IMPERAI_F_NULLABLE },
};

static const struct imperai_sfield imperai_verification_times[] = {
	{ "expires_at", IMPERAI_VOFF(expires_at), IMPERAI_F_REQUIRED },
	{ "created_at", IMPERAI_VOFF(created_at), IMPERAI_F_NULLABLE },
	{ "completed_at", IMPERAI_VOFF(completed_at), IMPERAI_F_NULLABLE },
	{ "updated_at", IMPERAI_VOFF(updated_at), IMPERAI_F_REQUIRED },
	{ "sent_at", IMPERAI_VOFF(sent_at), IMPERAI_F_NULLABLE },
};

static int
imperai_get_strings(const struct imperai_pctx *pc, json_object *obj, void *base,
    const struct imperai_sfield *f, size_t n)
{
	int rc;

	for (size_t i = 0; i < n; i++) {
		char **dst = (char **)(void *)((char *)base + f[i].off);
		if ((rc = imperai_get_string(pc, obj, f[i].key, f[i].flags, dst)) != 0)
			return rc;
	}
	return 0;
}

static int
imperai_get_times(const struct imperai_pctx *pc, json_object *obj, void *base,
    const struct imperai_sfield *f, size_t n)
{
	int rc;

	for (size_t i = 0; i < n; i++) {
		int64_t *dst = (int64_t *)(void *)((char *)base + f[i].off);
		if ((rc = imperai_get_time(pc, obj, f[i].key, f[i].flags, dst)) != 0)
			return rc;
	}
	return 0;
}

static int
imperai_get_ticket(const struct imperai_pctx *pc, json_object *obj, struct imperai_ticket_ref *t)
{
	struct imperai_pctx cpc;
	json_object *o;
	char *prefix;
	int rc;

	if ((rc = imperai_enter(pc, obj, "ticket", &o, &cpc, &prefix)) != 0)
		return rc;
	rc = imperai_get_strings(&cpc, o, t, imperai_ticket_fields,
	    ARRAY_SIZE(imperai_ticket_fields));
	free(prefix);
	return rc;
}

static int
imperai_get_action(const struct imperai_pctx *pc, json_object *obj, struct imperai_verification *v)
{
	struct imperai_pctx cpc;
	json_object *o;
	char *prefix;
	int rc;

	if ((rc = imperai_enter(pc, obj, "action", &o, &cpc, &prefix)) != 0)
		return rc;
	if ((rc = imperai_get_string(&cpc, o, "type", IMPERAI_F_REQUIRED | IMPERAI_F_NONEMPTY,
	    &v->action.type)) != 0)
		goto out;
	if ((rc = imperai_get_enum(&cpc, o, "status", imperai_parse_action_cb,
	    &v->action.status)) != 0)
		goto out;
	if ((rc = imperai_get_time(&cpc, o, "completed_at", IMPERAI_F_NULLABLE,
	    &v->action.completed_at)) != 0)
		goto out;
	rc = imperai_get_bool(&cpc, o, "automated", &v->action.automated);
out:
	free(prefix);
	return rc;
}

static int
imperai_get_id(const struct imperai_pctx *pc, json_object *obj, char **out)
{
	int rc;

	if ((rc = imperai_get_string(pc, obj, "id", IMPERAI_F_REQUIRED, out)) != 0)
		return rc;
	if (imperai_id_valid(*out))
		return 0;
	free(*out);
	*out = NULL;
	return imperai_bad(pc, "id", "expected 1-%d characters of [A-Za-z0-9_-]", IMPERAI_MAX_ID);
}

/* One verification object; on failure v is left empty. */
static int
imperai_verification_from(const struct imperai_pctx *pc, json_object *o,
    struct imperai_verification *v)
{
	int rc;

	memset(v, 0, sizeof *v);
	v->risk_score = -1;
	if (!json_object_is_type(o, json_type_object))
		return imperai_bad(pc, "", "expected object, got %s", imperai_jtype(o));
	if ((rc = imperai_get_id(pc, o, &v->id)) != 0 ||
	    (rc = imperai_get_ticket(pc, o, &v->ticket)) != 0 ||
	    (rc = imperai_get_enum(pc, o, "status", imperai_parse_status_cb, &v->status)) != 0 ||
	    (rc = imperai_get_strings(pc, o, v, imperai_verification_strings,
	    ARRAY_SIZE(imperai_verification_strings))) != 0 ||
	    (rc = imperai_get_risk(pc, o, "risk_score", &v->risk_score)) != 0 ||
	    (rc = imperai_get_times(pc, o, v, imperai_verification_times,
	    ARRAY_SIZE(imperai_verification_times))) != 0 ||
	    (rc = imperai_get_action(pc, o, v)) != 0)
		imperai_verification_free(v);
	return rc;
}

int
imperai_parse_verification(const char *body, size_t len, const char *what,
    struct imperai_verification *out, char **cause)
{
	struct imperai_pctx pc = { what != NULL ? what : "verification", "", cause };
	json_object *root;
	int rc;

	memset(out, 0, sizeof *out);
	out->risk_score = -1;
	if ((rc = imperai_json_parse(body, len, &pc, &root)) != 0)
		return rc;
	rc = imperai_verification_from(&pc, root, out);
	json_object_put(root);
	return rc;
}

static int
imperai_feed_items(const struct imperai_pctx *pc, json_object *root, struct imperai_feed *f)
{
	struct imperai_pctx ipc = *pc;
	json_object *data;
	size_t n;
	int rc;

	if (!imperai_lookup(pc, root, "data", IMPERAI_F_REQUIRED, &data, &rc))
		return rc;
	if (!json_object_is_type(data, json_type_array))
		return imperai_bad(pc, "data", "expected array, got %s", imperai_jtype(data));
	n = json_object_array_length(data);
	f->v = xcalloc(n > 0 ? n : 1, sizeof *f->v);
	for (size_t i = 0; i < n; i++) {
		char *prefix = xprintf("data[%zu]", i);
		ipc.prefix = prefix;
		rc = imperai_verification_from(&ipc, json_object_array_get_idx(data, i), &f->v[i]);
		free(prefix);
		if (rc != 0)
			return rc;
		f->n = i + 1;
	}
	return 0;
}

int
imperai_parse_feed(const char *body, size_t len, struct imperai_feed *out, char **cause)
{
	struct imperai_pctx pc = { "change feed", "", cause };
	json_object *root;
	int rc;

	memset(out, 0, sizeof *out);
	if ((rc = imperai_json_parse(body, len, &pc, &root)) != 0)
		return rc;
	if ((rc = imperai_feed_items(&pc, root, out)) != 0)
		goto out;
	if ((rc = imperai_get_string(&pc, root, "next_cursor", IMPERAI_F_REQUIRED,
	    &out->next_cursor)) != 0)
		goto out;
	if (!imperai_token_valid(out->next_cursor, IMPERAI_MAX_CURSOR)) {
		rc = imperai_bad(&pc, "next_cursor",
		    "expected 1-%d printable ASCII characters without spaces", IMPERAI_MAX_CURSOR);
		goto out;
	}
	rc = imperai_get_bool(&pc, root, "has_more", &out->has_more);
out:
	if (rc != 0)
		imperai_feed_free(out);
	json_object_put(root);
	return rc;
}

/* Error bodies. */

/* error.code and error.message of an error body; -EINVAL if not one. */
static int
imperai_error_fields(const char *body, size_t len, char **code, char **message)
{
	struct imperai_pctx pc = { "error body", "", NULL };
	struct imperai_pctx epc;
	json_object *root, *err;
	char *prefix = NULL;
	int rc;

	*code = *message = NULL;
	if (imperai_json_parse(body, len, &pc, &root) != 0)
		return -EINVAL;
	if ((rc = imperai_enter(&pc, root, "error", &err, &epc, &prefix)) != 0 ||
	    (rc = imperai_get_string(&epc, err, "code", IMPERAI_F_REQUIRED | IMPERAI_F_NONEMPTY,
	    code)) != 0 ||
	    (rc = imperai_get_string(&epc, err, "message", IMPERAI_F_NULLABLE, message)) != 0) {
		free(*code);
		*code = NULL;
		rc = -EINVAL;
	}
	free(prefix);
	json_object_put(root);
	return rc;
}

/* Printable and capped: control characters become spaces, and a string
 * that is not UTF-8 loses its non-ASCII bytes to '?'. */
static char *
imperai_printable(const char *s, size_t max)
{
	size_t len = strlen(s);
	int utf8 = util_utf8_valid(s, len);
	char *out;

	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	out = xstrndup(s, len);
	for (char *p = out; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f)
			*p = ' ';
		else if (c >= 0x80 && !utf8)
			*p = '?';
	}
	return out;
}

char *
imperai_parse_error(const char *body, size_t len)
{
	char *code, *message, *joined, *out;

	if (imperai_error_fields(body, len, &code, &message) != 0)
		return NULL;
	if (message != NULL && *message != '\0')
		joined = xprintf("%s: %s", code, message);
	else
		joined = xstrdup(code);
	out = imperai_printable(joined, IMPERAI_MAX_ERROR);
	free(joined);
	free(code);
	free(message);
	return out;
}

int
imperai_parse_error_verification(const char *body, size_t len,
    struct imperai_verification *out, char **cause)
{
	struct imperai_pctx pc = { "error body", "", cause };
	struct imperai_pctx epc, vpc;
	json_object *root, *err, *o;
	char *eprefix = NULL, *vprefix = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	out->risk_score = -1;
	if ((rc = imperai_json_parse(body, len, &pc, &root)) != 0)
		return rc;
	if ((rc = imperai_enter(&pc, root, "error", &err, &epc, &eprefix)) != 0)
		goto out;
	if ((rc = imperai_enter(&epc, err, "verification", &o, &vpc, &vprefix)) != 0)
		goto out;
	rc = imperai_verification_from(&vpc, o, out);
out:
	free(eprefix);
	free(vprefix);
	json_object_put(root);
	return rc;
}

/* Builders. */

static json_object *
imperai_jstr(const char *s)
{
	return s == NULL ? NULL : json_object_new_string(s);
}

static json_object *
imperai_jtime(int64_t t, int nullable)
{
	char buf[21];

	if (t == 0 && nullable)
		return NULL;
	util_format_rfc3339(t, buf);
	return json_object_new_string(buf);
}

static char *
imperai_json_detach(json_object *root)
{
	char *s = xstrdup(json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	json_object_put(root);
	return s;
}

static json_object *
imperai_ticket_json(const struct imperai_ticket_ref *t)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "instance", imperai_jstr(t->instance));
	json_object_object_add(o, "table", imperai_jstr(t->table));
	json_object_object_add(o, "sys_id", imperai_jstr(t->sys_id));
	json_object_object_add(o, "number", imperai_jstr(t->number));
	json_object_object_add(o, "url", imperai_jstr(t->url));
	return o;
}

char *
imperai_create_body(const struct imperai_create *c)
{
	json_object *root = json_object_new_object();
	json_object *r = json_object_new_object();

	json_object_object_add(root, "ticket", imperai_ticket_json(&c->ticket));
	json_object_object_add(root, "subject", imperai_jstr(c->subject));
	json_object_object_add(root, "description", imperai_jstr(c->description));
	json_object_object_add(root, "category", imperai_jstr(c->category));
	json_object_object_add(root, "requested_action",
	    imperai_jstr(c->action != NULL ? c->action : "none"));
	json_object_object_add(r, "name", imperai_jstr(c->requester_name));
	json_object_object_add(r, "email", imperai_jstr(c->requester_email));
	json_object_object_add(r, "user_name", imperai_jstr(c->requester_user_name));
	json_object_object_add(root, "requester", r);
	json_object_object_add(root, "assigned_agent", imperai_jstr(c->assigned_agent));
	return imperai_json_detach(root);
}

char *
imperai_verification_json(const struct imperai_verification *v)
{
	json_object *root = json_object_new_object();
	json_object *a = json_object_new_object();

	json_object_object_add(root, "id", imperai_jstr(v->id));
	json_object_object_add(root, "ticket", imperai_ticket_json(&v->ticket));
	json_object_object_add(root, "status", json_object_new_string(imperai_status_name(v->status)));
	for (size_t i = 0; i < ARRAY_SIZE(imperai_verification_strings); i++) {
		const struct imperai_sfield *f = &imperai_verification_strings[i];
		json_object_object_add(root, f->key,
		    imperai_jstr(*(char *const *)(const void *)((const char *)v + f->off)));
	}
	json_object_object_add(root, "risk_score",
	    v->risk_score >= 0 && v->risk_score <= 10 ? json_object_new_int(v->risk_score) : NULL);
	for (size_t i = 0; i < ARRAY_SIZE(imperai_verification_times); i++) {
		const struct imperai_sfield *f = &imperai_verification_times[i];
		json_object_object_add(root, f->key,
		    imperai_jtime(*(const int64_t *)(const void *)((const char *)v + f->off),
		    f->flags & IMPERAI_F_NULLABLE));
	}
	json_object_object_add(a, "type", imperai_jstr(v->action.type));
	json_object_object_add(a, "status",
	    json_object_new_string(imperai_action_status_name(v->action.status)));
	json_object_object_add(a, "completed_at", imperai_jtime(v->action.completed_at, 1));
	json_object_object_add(a, "automated", json_object_new_boolean(v->action.automated));
	json_object_object_add(root, "action", a);
	return imperai_json_detach(root);
}

/* Turning HTTP answers into results. */

static int
imperai_looks_html(const struct http_response *r)
{
	size_t i = 0;

	if (r->content_type != NULL && strncasecmp(r->content_type, "text/html", 9) == 0)
		return 1;
	while (r->body != NULL && i < r->body_len && strchr(" \t\r\n", r->body[i]) != NULL)
		i++;
	return r->body != NULL && i < r->body_len && r->body[i] == '<';
}

static int
imperai_transport_errno(enum http_error e)
{
	switch (e) {
	case HTTP_E_CONNECT:
		return -ECONNREFUSED;
	case HTTP_E_TIMEOUT:
		return -ETIMEDOUT;
	case HTTP_E_CANCELED:
		return -ECANCELED;
	case HTTP_E_BUDGET:
		return -EAGAIN;
	case HTTP_OK:
	case HTTP_E_TLS:
	case HTTP_E_TOOBIG:
	case HTTP_E_OTHER:
		break;
	}
	return -EIO;
}

static int
imperai_transport_error(const struct http_response *r, const char *what, char **cause)
{
	static const char *const names[] = {
		"ok", "cannot connect", "timed out", "TLS error", "answer too large",
		"canceled", "hourly request budget used up", "transport error",
	};
	const char *name = (size_t)r->error < ARRAY_SIZE(names) ? names[r->error] : "error";

	*cause = xprintf("%s: %s%s%s (after %d attempt%s)", what, name,
	    r->errmsg != NULL ? ": " : "", r->errmsg != NULL ? r->errmsg : "",
	    r->attempts, r->attempts == 1 ? "" : "s");
	return imperai_transport_errno(r->error);
}

static int
imperai_status_errno(long status, const char *code)
{
	if (status == 400 || status == 422)
		return -EINVAL;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 404)
		return -ENOENT;
	if (status == 409)
		return str_eq(code, "already_final") ? -EALREADY : -EEXIST;
	if (status == 413)
		return -EFBIG;
	if (status == 429)
		return -EAGAIN;
	if (status >= 500 && status <= 599)
		return -EIO;
	if (status >= 200 && status <= 299)
		return -EBADMSG;
	return -EPROTO;
}

/* A cause for a non-success answer: "what: HTTP 409: code: message". */
static char *
imperai_status_cause(const struct http_response *r, const char *what)
{
	char *detail = imperai_parse_error(r->body, r->body_len);
	char *retry = NULL, *cause;

	if (detail == NULL)
		detail = xstrdup(imperai_looks_html(r) ? "an HTML page, not JSON" :
		    "no JSON error body");
	if (r->status == 429 && r->retry_after >= 0)
		retry = xprintf(" (retry after %" PRId64 " s)", r->retry_after);
	cause = xprintf("%s: HTTP %ld: %s%s", what, r->status, detail, retry ? retry : "");
	free(retry);
	free(detail);
	return cause;
}

/* Common part: 0 when r carries a 200/201 JSON answer to parse. */
static int
imperai_response_check(const struct http_response *r, const char *what, char **code,
    char **cause)
{
	char *message;

	*code = NULL;
	if (r->error != HTTP_OK)
		return imperai_transport_error(r, what, cause);
	if (r->status == 200 || r->status == 201) {
		if (!imperai_looks_html(r))
			return 0;
		*cause = xprintf("%s: HTTP %ld: an HTML page, not JSON", what, r->status);
		return -EBADMSG;
	}
	if (imperai_error_fields(r->body, r->body_len, code, &message) == 0)
		free(message);
	*cause = imperai_status_cause(r, what);
	return imperai_status_errno(r->status, *code);
}

int
imperai_verification_response(const struct http_response *r, const char *what,
    struct imperai_verification *out, char **cause)
{
	char *code, *why = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	out->risk_score = -1;
	*cause = NULL;
	rc = imperai_response_check(r, what, &code, cause);
	if (rc == 0)
		rc = imperai_parse_verification(r->body, r->body_len, what, out, cause);
	else if (rc == -EALREADY &&
	    imperai_parse_error_verification(r->body, r->body_len, out, &why) != 0) {
		free(*cause);
		*cause = xprintf("%s: HTTP 409 already_final: %s", what, why);
		rc = -EBADMSG;
	}
	free(why);
	free(code);
	return rc;
}

int
imperai_feed_response(const struct http_response *r, struct imperai_feed *out, char **cause)
{
	char *code;
	int rc;

	memset(out, 0, sizeof *out);
	*cause = NULL;
	rc = imperai_response_check(r, "imper.ai changes", &code, cause);
	if (rc == 0)
		rc = imperai_parse_feed(r->body, r->body_len, out, cause);
	else if (rc == -EALREADY)
		rc = -EPROTO;
	free(code);
	return rc;
}

/* The client. */

struct imperai_client {
	struct http_pool	*pool;
	char			*base;		/* api_url without trailing '/' */
	char			*api_key;	/* secret memory */
};

struct imperai_call {
	char			*what;
	imperai_verification_fn	 vdone;
	imperai_feed_fn		 fdone;
	void			*arg;
};

static int
imperai_check_url(const char *url, char **cause)
{
	char *scheme = NULL, *host = NULL;
	int rc = 0;

	if (url == NULL || util_url_split(url, &scheme, &host, NULL, NULL) != 0) {
		*cause = xstrdup("imperai.api_url: expected an http(s) URL");
		return -EINVAL;
	}
	if (strcmp(scheme, "http") == 0 && !util_host_is_loopback(host)) {
		*cause = xprintf("imperai.api_url: plain http would send the API key in clear "
		    "to %s; use https (http is allowed for loopback only)", host);
		rc = -EINVAL;
	}
	free(scheme);
	free(host);
	return rc;
}

struct imperai_client *
imperai_client_new(const struct config *c, struct http_client *h, char **cause)
{
	const struct config_http *ch = &c->imperai.http;
	struct http_pool_opts o;
	struct imperai_client *ic = NULL;
	struct http_pool *pool;
	size_t n;

	*cause = NULL;
	if (imperai_check_url(c->imperai.api_url, cause) != 0)
		goto out;
	if (!imperai_token_valid(c->imperai.api_key, 4096)) {
		*cause = xstrdup("imperai.api_key: missing, or not printable ASCII without spaces");
		goto out;
	}
	memset(&o, 0, sizeof o);
	o.name = "imperai";
	o.concurrency = ch->concurrency;
	o.connect_timeout = ch->connect_timeout;
	o.timeout = ch->timeout;
	o.max_retries = ch->max_retries;
	o.ca_file = ch->ca_file;
	o.proxy = ch->proxy;
	o.request_budget = ch->request_budget;
	o.max_body = IMPERAI_MAX_BODY;
	o.backoff_base_ms = 500;
	o.backoff_max_ms = 60000;
	if ((pool = http_pool_new(h, &o, cause)) == NULL)
		goto out;
	ic = xcalloc(1, sizeof *ic);
	ic->pool = pool;
	n = strlen(c->imperai.api_url);
	while (n > 0 && c->imperai.api_url[n - 1] == '/')
		n--;
	ic->base = xstrndup(c->imperai.api_url, n);
	ic->api_key = secret_dup(c->imperai.api_key, strlen(c->imperai.api_key));
out:
	return ic;
}

void
imperai_client_free(struct imperai_client *ic)
{
	if (ic == NULL)
		return;
	free(ic->base);
	secret_free(ic->api_key);
	free(ic);
}

struct http_pool *
imperai_client_pool(struct imperai_client *ic)
{
	return ic->pool;
}

static void
imperai_request(struct imperai_client *ic, struct http_request *r, const char *method,
    char *url)
{
	http_request_init(r, method, url);
	http_request_header(r, "Authorization: Bearer %s", ic->api_key);
	http_request_header(r, "Accept: application/json");
	/* Creates carry an Idempotency-Key, cancel is idempotent, GETs are reads. */
	r->retry_safe = 1;
}

static void
imperai_request_body(struct http_request *r, char *body)
{
	r->body = body;
	r->body_len = strlen(body);
	http_request_header(r, "Content-Type: application/json");
}

static void
imperai_verification_done(struct http_response *resp, void *arg)
{
	struct imperai_call *call = arg;
	struct imperai_verification v;
	char *cause = NULL;
	int rc;

	rc = imperai_verification_response(resp, call->what, &v, &cause);
	call->vdone(rc, resp->status, cause, rc == 0 || rc == -EALREADY ? &v : NULL, call->arg);
	imperai_verification_free(&v);
	free(cause);
	free(call->what);
	free(call);
}

static void
imperai_feed_done(struct http_response *resp, void *arg)
{
	struct imperai_call *call = arg;
	struct imperai_feed f;
	char *cause = NULL;
	int rc;

	rc = imperai_feed_response(resp, &f, &cause);
	call->fdone(rc, cause, rc == 0 ? &f : NULL, call->arg);
	imperai_feed_free(&f);
	free(cause);
	free(call->what);
	free(call);
}

static void
imperai_submit_verification(struct imperai_client *ic, struct http_request *r, char *what,
    imperai_verification_fn done, void *arg)
{
	struct imperai_call *call = xcalloc(1, sizeof *call);

	call->what = what;
	call->vdone = done;
	call->arg = arg;
	http_submit(ic->pool, r, imperai_verification_done, call);
}

static void
imperai_add_encoded(struct buf *b, const char *s)
{
	char *e = util_urlencode(s);

	buf_adds(b, e);
	free(e);
}

/* "<base>/v1/verification-requests/<id><suffix>", the id encoded so that
 * no value can leave its path segment. */
static char *
imperai_id_url(const struct imperai_client *ic, const char *id, const char *suffix)
{
	struct buf b;

	buf_init(&b);
	buf_addf(&b, "%s/v1/verification-requests/", ic->base);
	imperai_add_encoded(&b, id != NULL ? id : "");
	buf_adds(&b, suffix);
	return buf_detach(&b);
}

/* The key as a header value: printable ASCII stays, other bytes and '%'
 * become %XX, so the same key always gives the same header. */
static char *
imperai_header_safe(const char *s)
{
	struct buf b;

	buf_init(&b);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c > 0x20 && c < 0x7f && c != '%')
			buf_addc(&b, (char)c);
		else
			buf_addf(&b, "%%%02X", c);
	}
	return buf_detach(&b);
}

void
imperai_create(struct imperai_client *ic, const struct imperai_create *req,
    imperai_verification_fn done, void *arg)
{
	struct http_request r;
	char *key;

	imperai_request(ic, &r, "POST", xprintf("%s/v1/verification-requests", ic->base));
	if (req->idempotency_key != NULL) {
		key = imperai_header_safe(req->idempotency_key);
		http_request_header(&r, "Idempotency-Key: %s", key);
		free(key);
	}
	imperai_request_body(&r, imperai_create_body(req));
	imperai_submit_verification(ic, &r, xstrdup("imper.ai create"), done, arg);
}

void
imperai_get(struct imperai_client *ic, const char *id, imperai_verification_fn done, void *arg)
{
	struct http_request r;

	imperai_request(ic, &r, "GET", imperai_id_url(ic, id, ""));
	imperai_submit_verification(ic, &r, xprintf("imper.ai get %s",
	    imperai_id_valid(id) ? id : "(invalid id)"), done, arg);
}

void
imperai_cancel(struct imperai_client *ic, const char *id, imperai_verification_fn done, void *arg)
{
	struct http_request r;

	imperai_request(ic, &r, "POST", imperai_id_url(ic, id, "/cancel"));
	imperai_request_body(&r, xstrdup("{}"));
	imperai_submit_verification(ic, &r, xprintf("imper.ai cancel %s",
	    imperai_id_valid(id) ? id : "(invalid id)"), done, arg);
}

void
imperai_changes(struct imperai_client *ic, const char *cursor, int limit,
    imperai_feed_fn done, void *arg)
{
	struct imperai_call *call;
	struct http_request r;
	struct buf url;

	if (limit < 1)
		limit = 100;
	if (limit > IMPERAI_MAX_LIMIT)
		limit = IMPERAI_MAX_LIMIT;
	buf_init(&url);
	buf_addf(&url, "%s/v1/verification-requests/changes?limit=%d", ic->base, limit);
	if (cursor != NULL && *cursor != '\0') {
		buf_adds(&url, "&cursor=");
		imperai_add_encoded(&url, cursor);
	}
	imperai_request(ic, &r, "GET", buf_detach(&url));
	call = xcalloc(1, sizeof *call);
	call->what = xstrdup("imper.ai changes");
	call->fdone = done;
	call->arg = arg;
	http_submit(ic->pool, &r, imperai_feed_done, call);
}
