/* snow: ServiceNow Table API, pure request building and parsing, and the
 * client over http.c (see snow.h). */

#include <sys/queue.h>

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "snow.h"

#define SNOW_MAX_DEPTH		16
#define SNOW_MAX_FIELD		(1024 * 1024)
#define SNOW_MAX_BODY		(32u * 1024 * 1024)
#define SNOW_TOKEN_PATH		"/oauth_token.do"

static int
snow_is_sys_id(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (!isxdigit((unsigned char)s[n]))
			return 0;
	return n == 32;
}

static int
snow_is_table(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");

	return n > 0 && n <= 80 && s[n] == '\0';
}

static void
snow_add_param(struct buf *b, const char *name, const char *value)
{
	char *v = util_urlencode(value);

	buf_addf(b, "%c%s=%s", strchr(b->data, '?') ? '&' : '?', name, v);
	free(v);
}

static void
snow_add_fields(struct buf *b, const char *const *fields, size_t nfields)
{
	struct buf list;

	if (nfields == 0)
		return;
	buf_init(&list);
	for (size_t i = 0; i < nfields; i++)
		buf_addf(&list, "%s%s", i ? "," : "", fields[i]);
	snow_add_param(b, "sysparm_fields", list.data);
	buf_free(&list);
}

/* "<instance>/api/now/table/<table>[/<sys_id>]", instance without a
 * trailing slash. */
static void
snow_table_path(struct buf *b, const char *instance, const char *table, const char *sys_id)
{
	size_t n = strlen(instance);
	char *t = util_urlencode(table);

	while (n > 0 && instance[n - 1] == '/')
		n--;
	buf_init(b);
	buf_add(b, instance, n);
	buf_addf(b, "/api/now/table/%s", t);
	free(t);
	if (sys_id != NULL) {
		t = util_urlencode(sys_id);
		buf_addf(b, "/%s", t);
		free(t);
	}
}

static char *
snow_list_url_ex(const char *instance, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, int offset, int count)
{
	struct buf b;

	snow_table_path(&b, instance, table, NULL);
	if (query != NULL && *query != '\0')
		snow_add_param(&b, "sysparm_query", query);
	snow_add_fields(&b, fields, nfields);
	if (limit > 0)
		buf_addf(&b, "&sysparm_limit=%d", limit);
	if (offset > 0)
		buf_addf(&b, "&sysparm_offset=%d", offset);
	snow_add_param(&b, "sysparm_display_value", "false");
	snow_add_param(&b, "sysparm_exclude_reference_link", "true");
	if (!count)
		snow_add_param(&b, "sysparm_no_count", "true");
	snow_add_param(&b, "sysparm_suppress_pagination_header", "true");
	return buf_detach(&b);
}

char *
snow_list_url(const char *instance, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit)
{
	return snow_list_url_ex(instance, table, query, fields, nfields, limit, 0, 0);
}

char *
snow_poll_url(const char *instance, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, int offset)
{
	return snow_list_url_ex(instance, table, query, fields, nfields, limit, offset, 1);
}

char *
snow_record_url(const char *instance, const char *table, const char *sys_id,
    const char *const *fields, size_t nfields)
{
	struct buf b;

	snow_table_path(&b, instance, table, sys_id);
	snow_add_fields(&b, fields, nfields);
	snow_add_param(&b, "sysparm_display_value", "false");
	snow_add_param(&b, "sysparm_exclude_reference_link", "true");
	return buf_detach(&b);
}

static void
snow_form_add(struct buf *b, const char *name, const char *value)
{
	char *v = util_urlencode(value ? value : "");

	buf_addf(b, "%s%s=%s", b->len ? "&" : "", name, v);
	explicit_bzero(v, strlen(v));
	free(v);
}

char *
snow_oauth_body(const struct config *c, const char *refresh_token)
{
	struct buf b;

	buf_init(&b);
	if (refresh_token != NULL)
		snow_form_add(&b, "grant_type", "refresh_token");
	else if (c->snow.grant == CONFIG_GRANT_CLIENT_CREDENTIALS)
		snow_form_add(&b, "grant_type", "client_credentials");
	else
		snow_form_add(&b, "grant_type", "password");
	snow_form_add(&b, "client_id", c->snow.client_id);
	snow_form_add(&b, "client_secret", c->snow.client_secret);
	if (refresh_token != NULL)
		snow_form_add(&b, "refresh_token", refresh_token);
	else if (c->snow.grant == CONFIG_GRANT_PASSWORD) {
		snow_form_add(&b, "username", c->snow.user);
		snow_form_add(&b, "password", c->snow.password);
	}
	return buf_detach(&b);
}

#define SNOW_DEFAULT_FIELD	"u_imperai_verification"

const char *
snow_requester_field(const struct config_table *tc)
{
	if (tc->requester_field != NULL && *tc->requester_field != '\0')
		return tc->requester_field;
	if (str_eq(tc->name, "sc_req_item"))
		return "requested_for";
	if (str_eq(tc->name, "sc_task"))
		return "request_item.requested_for";
	return "caller_id";
}

const char *
snow_verification_field(const struct config_table *tc)
{
	return tc->field != NULL && *tc->field != '\0' ? tc->field : SNOW_DEFAULT_FIELD;
}

static void
snow_add_name(char ***names, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0)
			return;
	*names = xreallocarray(*names, *n + 1, sizeof(**names));
	(*names)[(*n)++] = xstrdup(name);
}

void
snow_obs_fields(const struct config_table *tc, char ***names, size_t *n)
{
	static const char *const base[] = { "sys_id", "number", "sys_mod_count",
	    "sys_updated_on", "state", "active", "category", "subcategory",
	    "short_description", "description", "assigned_to.name" };
	static const char *const walks[] = { "", ".name", ".email", ".user_name" };

	for (size_t i = 0; i < ARRAY_SIZE(base); i++)
		snow_add_name(names, n, base[i]);
	if (tc == NULL)
		return;
	snow_add_name(names, n, snow_verification_field(tc));
	for (size_t i = 0; i < ARRAY_SIZE(walks); i++) {
		char *s = xprintf("%s%s", snow_requester_field(tc), walks[i]);

		snow_add_name(names, n, s);
		free(s);
	}
}

static int
snow_state_in(const char *state, const char *const *set)
{
	for (; state != NULL && *set != NULL; set++)
		if (strcmp(state, *set) == 0)
			return 1;
	return 0;
}

/* Inactive, or in a resolved, closed or canceled state of its table. */
static void
snow_obs_ended(const char *table, struct snow_obs *o)
{
	static const char *const inc_closed[] = { "7", "8", NULL };
	static const char *const task_closed[] = { "3", "4", "7", NULL };

	if (str_eq(table, "incident"))
		o->closed = snow_state_in(o->state, inc_closed);
	else if (str_eq(table, "sc_req_item") || str_eq(table, "sc_task"))
		o->closed = snow_state_in(o->state, task_closed);
	o->closed = o->closed || str_eq(o->active, "false");
	o->ended = o->closed || (str_eq(table, "incident") && str_eq(o->state, "6"));
}

/* <base>.<suffix> of the record, NULL when absent or the name is too long. */
static const char *
snow_get_walk(const struct snow_record *r, const char *base, const char *suffix)
{
	char name[256];

	if ((size_t)snprintf(name, sizeof(name), "%s.%s", base, suffix) >= sizeof(name))
		return NULL;
	return snow_record_get(r, name);
}

static const char *
snow_first(const char *a, const char *b)
{
	return a != NULL && *a != '\0' ? a : b;
}

void
snow_obs_parse(const struct config_table *tc, const struct snow_record *r,
    struct snow_obs *o)
{
	const char *rf = snow_requester_field(tc);

	memset(o, 0, sizeof(*o));
	o->number = snow_record_get(r, "number");
	o->state = snow_record_get(r, "state");
	o->active = snow_record_get(r, "active");
	o->category = snow_record_get(r, "category");
	o->subcategory = snow_record_get(r, "subcategory");
	o->short_description = snow_record_get(r, "short_description");
	o->description = snow_record_get(r, "description");
	o->requester = snow_record_get(r, rf);
	o->requester_email = snow_get_walk(r, rf, "email");
	o->requester_user_name = snow_get_walk(r, rf, "user_name");
	o->requester_name = snow_first(snow_get_walk(r, rf, "name"), o->requester_user_name);
	o->assigned_agent = snow_record_get(r, "assigned_to.name");
	o->field = snow_record_get(r, snow_verification_field(tc));
	o->complete = o->number != NULL && o->state != NULL && o->requester != NULL;
	snow_obs_ended(tc->name, o);
}

/* Parses a whole JSON document, refusing bad UTF-8, NUL, deep nesting and
 * trailing data. */
static int
snow_json(const char *body, size_t len, struct json_object **out, char **cause)
{
	struct json_tokener *tok;
	enum json_tokener_error jerr;
	struct json_object *o;
	size_t end;

	if (len == 0 || len > INT_MAX) {
		*cause = xprintf(len ? "answer too large to parse" : "empty answer");
		return -EBADMSG;
	}
	if (!util_utf8_valid(body, len)) {
		*cause = xstrdup("answer is not valid UTF-8 or contains a NUL byte");
		return -EBADMSG;
	}
	tok = json_tokener_new_ex(SNOW_MAX_DEPTH);
	if (tok == NULL)
		abort();
	/* strict: no single quotes or bare words; trailing data checked below */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	o = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (jerr == json_tokener_success && end < len && (body[end] == ' ' ||
	    body[end] == '\t' || body[end] == '\r' || body[end] == '\n'))
		end++;
	if (jerr == json_tokener_success && end == len) {
		*out = o;
		return 0;
	}
	json_object_put(o);
	if (jerr == json_tokener_success)
		*cause = xprintf("trailing data after the JSON answer at byte %zu", end);
	else if (jerr == json_tokener_continue)
		*cause = xstrdup("answer is truncated JSON");
	else if (jerr == json_tokener_error_depth)
		*cause = xprintf("answer nests deeper than %d levels", SNOW_MAX_DEPTH);
	else
		*cause = xprintf("answer is not JSON: %s at byte %zu", json_tokener_error_desc(jerr), end);
	return -EBADMSG;
}

static const char *
snow_get_string(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* "message: detail" of a Table API error, or "error: error_description"
 * of an OAuth error; NULL if obj is neither. */
static char *
snow_error_text(struct json_object *obj)
{
	struct json_object *e;
	const char *msg, *detail;

	if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, "error", &e))
		return NULL;
	if (json_object_is_type(e, json_type_string)) {
		msg = json_object_get_string(e);
		detail = snow_get_string(obj, "error_description");
	} else if (json_object_is_type(e, json_type_object)) {
		msg = snow_get_string(e, "message");
		detail = snow_get_string(e, "detail");
	} else
		return NULL;
	if (msg == NULL || *msg == '\0')
		return detail && *detail ? xstrdup(detail) : NULL;
	return detail && *detail ? xprintf("%s: %s", msg, detail) : xstrdup(msg);
}

char *
snow_parse_error(const char *body, size_t len)
{
	struct json_object *o;
	char *cause = NULL, *text;

	if (body == NULL || snow_json(body, len, &o, &cause) != 0) {
		free(cause);
		return NULL;
	}
	text = snow_error_text(o);
	json_object_put(o);
	return text;
}

static int
snow_string_ok(struct json_object *v, const char *where, const char *key, const char **out,
    char **cause)
{
	const char *s = json_object_get_string(v);
	int len = json_object_get_string_len(v);

	if (len > SNOW_MAX_FIELD) {
		*cause = xprintf("%s.%s: value of %d bytes is over the %d byte limit", where, key,
		    len, SNOW_MAX_FIELD);
		return -EBADMSG;
	}
	if (!util_utf8_valid(s, (size_t)len)) {
		*cause = xprintf("%s.%s: value is not valid UTF-8 or contains a NUL byte", where, key);
		return -EBADMSG;
	}
	*out = s;
	return 0;
}

/* A plain value: a string, or null read as "". */
static int
snow_scalar(struct json_object *v, const char *where, const char *key, const char **out,
    char **cause)
{
	if (v == NULL || json_object_is_type(v, json_type_null)) {
		*out = "";
		return 0;
	}
	if (json_object_is_type(v, json_type_string))
		return snow_string_ok(v, where, key, out, cause);
	*cause = xprintf("%s.%s: expected a string, got %s", where, key,
	    json_type_to_name(json_object_get_type(v)));
	return -EBADMSG;
}

/* A field's value and display value: a string, null, a reference
 * {"link","value"} or a display_value=all {"display_value","value"}. */
static int
snow_field(struct json_object *v, const char *where, const char *key, const char **value,
    const char **display, char **cause)
{
	struct json_object *val, *disp;

	*display = NULL;
	if (!json_object_is_type(v, json_type_object))
		return snow_scalar(v, where, key, value, cause);
	if (!json_object_object_get_ex(v, "value", &val)) {
		*cause = xprintf("%s.%s: an object without \"value\"", where, key);
		return -EBADMSG;
	}
	if (snow_scalar(val, where, key, value, cause) != 0)
		return -EBADMSG;
	if (json_object_object_get_ex(v, "display_value", &disp))
		return snow_scalar(disp, where, key, display, cause);
	return 0;
}

static void
snow_set_display(struct snow_record *r, const char *name, const char *display)
{
	for (size_t i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			str_replace(&r->fields[i].display, display);
}

/* Checks and stores the system fields the poller depends on. */
static int
snow_system_field(struct snow_record *r, const char *where, const char *key, const char *v,
    char **cause)
{
	if (strcmp(key, "sys_id") == 0) {
		if (!snow_is_sys_id(v)) {
			*cause = xprintf("%s.sys_id: \"%.40s\" is not 32 hex digits", where, v);
			return -EBADMSG;
		}
		memcpy(r->sys_id, v, 33);
	} else if (strcmp(key, "sys_mod_count") == 0) {
		char *end;

		errno = 0;
		r->mod_count = strtoll(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno != 0) {
			*cause = xprintf("%s.sys_mod_count: \"%.40s\" is not a count", where, v);
			return -EBADMSG;
		}
	} else if (strcmp(key, "sys_updated_on") == 0 && *v != '\0' &&
	    util_parse_snow_time(v, &r->updated_on) != 0) {
		*cause = xprintf("%s.sys_updated_on: \"%.40s\" is not a ServiceNow time "
		    "(YYYY-MM-DD HH:MM:SS, UTC)", where, v);
		return -EBADMSG;
	}
	return 0;
}

static int
snow_parse_one(struct json_object *o, const char *where, struct snow_record *r, char **cause)
{
	memset(r, 0, sizeof(*r));
	r->mod_count = -1;
	if (!json_object_is_type(o, json_type_object)) {
		*cause = xprintf("%s: expected an object, got %s", where,
		    json_type_to_name(json_object_get_type(o)));
		return -EBADMSG;
	}
	json_object_object_foreach(o, key, v) {
		const char *value, *display;

		if (snow_field(v, where, key, &value, &display, cause) != 0 ||
		    snow_system_field(r, where, key, value, cause) != 0)
			goto fail;
		if (strcmp(key, "sys_id") == 0)
			continue;
		snow_record_set(r, key, value);
		if (display != NULL)
			snow_set_display(r, key, display);
	}
	if (r->sys_id[0] != '\0')
		return 0;
	*cause = xprintf("%s: no sys_id (it must be in sysparm_fields)", where);
fail:
	snow_record_free(r);
	return -EBADMSG;
}

/* The "result" member, of the wanted type; explains error bodies. */
static int
snow_result(const char *body, size_t len, enum json_type want, struct json_object **root,
    struct json_object **result, char **cause)
{
	char *err;
	int rc, has;

	if ((rc = snow_json(body, len, root, cause)) != 0)
		return rc;
	has = json_object_object_get_ex(*root, "result", result);
	if (has && json_object_is_type(*result, want))
		return 0;
	if ((err = snow_error_text(*root)) != NULL) {
		*cause = xprintf("ServiceNow answered an error: %s", err);
		free(err);
	} else if (has)
		*cause = xprintf("\"result\" is %s, expected %s",
		    json_type_to_name(json_object_get_type(*result)), json_type_to_name(want));
	else
		*cause = xstrdup("answer has no \"result\"");
	json_object_put(*root);
	*root = NULL;
	return -EBADMSG;
}

int
snow_parse_list(const char *body, size_t len, struct snow_list *out, char **cause)
{
	struct json_object *root, *res = NULL;
	size_t n;
	int rc;

	out->v = NULL;
	out->n = 0;
	out->total = -1;
	if ((rc = snow_result(body, len, json_type_array, &root, &res, cause)) != 0)
		return rc;
	n = json_object_array_length(res);
	out->v = xcalloc(n, sizeof(*out->v));
	for (size_t i = 0; i < n; i++) {
		char where[32];

		snprintf(where, sizeof(where), "result[%zu]", i);
		rc = snow_parse_one(json_object_array_get_idx(res, i), where, &out->v[i], cause);
		if (rc != 0) {
			snow_list_free(out);
			break;
		}
		out->n++;
	}
	json_object_put(root);
	return rc;
}

int
snow_parse_record(const char *body, size_t len, struct snow_record *out, char **cause)
{
	struct json_object *root, *res = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = snow_result(body, len, json_type_object, &root, &res, cause)) != 0)
		return rc;
	rc = snow_parse_one(res, "result", out, cause);
	json_object_put(root);
	return rc;
}

static int
snow_json_int(struct json_object *v, int64_t *out)
{
	char *end;

	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	errno = 0;
	*out = strtoll(json_object_get_string(v), &end, 10);
	return *end != '\0' || end == json_object_get_string(v) || errno ? -EINVAL : 0;
}

int
snow_parse_oauth(const char *body, size_t len, char **access, char **refresh,
    int64_t *expires_in, char **cause)
{
	struct json_object *o, *v;
	const char *a, *r;
	char *err;
	int rc;

	*access = *refresh = NULL;
	*expires_in = 1800;
	if ((rc = snow_json(body, len, &o, cause)) != 0)
		return rc;
	a = snow_get_string(o, "access_token");
	r = snow_get_string(o, "refresh_token");
	rc = -EBADMSG;
	if (a == NULL || *a == '\0') {
		err = snow_error_text(o);
		*cause = err ? xprintf("the token endpoint refused: %s", err) :
		    xstrdup("the token answer has no access_token");
		free(err);
	} else if (json_object_object_get_ex(o, "expires_in", &v) &&
	    (snow_json_int(v, expires_in) != 0 || *expires_in <= 0))
		*cause = xstrdup("the token answer has a bad expires_in");
	else {
		*access = secret_dup(a, strlen(a));
		*refresh = r && *r ? secret_dup(r, strlen(r)) : NULL;
		rc = 0;
	}
	json_object_put(o);
	return rc;
}

void
snow_watermark_rewind(const struct snow_watermark *stored, int overlap,
    struct snow_watermark *out)
{
	memset(out, 0, sizeof(*out));
	if (stored == NULL || stored->updated_on <= 0)
		return;
	out->updated_on = stored->updated_on - (overlap > 0 ? overlap : 0);
	if (out->updated_on < 1)
		out->updated_on = 1;
}

/* Refuses the terms that would change the poll's meaning or order; the
 * filter without a trailing ^EQ goes to *out. */
static int
snow_filter_check(const char *filter, char **out, char **cause)
{
	size_t n = filter ? strlen(filter) : 0;
	const char *p, *t;

	if (n >= 3 && strcmp(filter + n - 3, "^EQ") == 0)
		n -= 3;
	*out = xstrndup(filter ? filter : "", n);
	for (p = *out; n > 0; p = t + 1) {
		t = strchr(p, '^');
		if ((t ? (size_t)(t - p) : strlen(p)) == 0)
			*cause = xprintf("filter \"%s\" has an empty term (a ^ too many)", *out);
		else if (strncmp(p, "NQ", 2) == 0)
			*cause = xprintf("filter \"%s\" uses ^NQ: the poller adds its own ^NQ groups; "
			    "write one query per flow instead", *out);
		else if (strncmp(p, "ORDERBY", 7) == 0 || strncmp(p, "ORORDERBY", 9) == 0)
			*cause = xprintf("filter \"%s\" sorts (ORDERBY): the poller must order by "
			    "sys_updated_on and sys_id; remove it", *out);
		else if (strcmp(p, "EQ") == 0 || strncmp(p, "EQ^", 3) == 0)
			*cause = xprintf("filter \"%s\" has ^EQ before its end: the terms after it "
			    "would be ignored", *out);
		if (*cause != NULL || t == NULL)
			break;
	}
	if (*cause == NULL)
		return 0;
	free(*out);
	*out = NULL;
	return -EINVAL;
}

int
snow_poll_query(const char *filter, const struct snow_watermark *w, char **out, char **cause)
{
	char *f, t[20];
	const char *sep;
	struct buf b;

	*out = NULL;
	if (snow_filter_check(filter, &f, cause) != 0)
		return -EINVAL;
	if (w != NULL && w->updated_on > 0 && w->sys_id[0] != '\0' && !snow_is_sys_id(w->sys_id)) {
		*cause = xprintf("watermark sys_id \"%.40s\" is not 32 hex digits", w->sys_id);
		free(f);
		return -EINVAL;
	}
	sep = *f ? "^" : "";
	buf_init(&b);
	if (w == NULL || w->updated_on <= 0)
		buf_addf(&b, "%s%s", f, sep);
	else {
		util_format_snow_time(w->updated_on, t);
		if (w->sys_id[0] == '\0')
			buf_addf(&b, "%s%ssys_updated_on>=%s^", f, sep, t);
		else
			buf_addf(&b, "%s%ssys_updated_on>%s^NQ%s%ssys_updated_on=%s^sys_id>%s^",
			    f, sep, t, f, sep, t, w->sys_id);
	}
	buf_adds(&b, "ORDERBYsys_updated_on^ORDERBYsys_id");
	free(f);
	*out = buf_detach(&b);
	return 0;
}

/* The client. */

enum snow_kind {
	SNOW_LIST,
	SNOW_RECORD,
};

struct snow_op {
	TAILQ_ENTRY(snow_op)	 entry;
	struct snow_client	*s;
	enum snow_kind		 kind;
	const char		*method;
	char			*url;
	char			*body;
	char			*what;		/* "incident/<sys_id>", for causes */
	int			 retry_safe;
	int			 resubmitted;	/* after a 401 */
	uint64_t		 token_gen;
	snow_list_fn		 list_done;
	snow_record_fn		 rec_done;
	void			*arg;
};
TAILQ_HEAD(snow_ops, snow_op);

struct snow_client {
	const struct config	*cfg;
	struct http_client	*h;
	struct http_pool	*pool;
	char			*instance;
	char			*userpwd;	/* Basic, secret memory */
	char			*who;		/* whose credentials, for causes */
	const char		*fix;		/* which settings hold them */
	int			 oauth;
	char			*access;	/* secret memory */
	char			*refresh;	/* secret memory */
	int64_t			 refresh_at;	/* client clock, ms */
	int64_t			 expires_at;
	uint64_t		 token_gen;
	int			 fetching;
	int			 fetch_with_refresh;
	int			 closing;
	struct snow_ops		 waiting;	/* for a token */
};

static int
snow_check_instance(const char *instance, char **cause)
{
	char *scheme = NULL, *host = NULL, *path = NULL;
	int rc = -EINVAL;

	if (instance == NULL || util_url_split(instance, &scheme, &host, NULL, &path) != 0)
		*cause = xprintf("servicenow.instance \"%s\" is not an http(s) URL",
		    instance ? instance : "");
	else if (strcmp(scheme, "https") != 0 && !util_host_is_loopback(host))
		*cause = xprintf("servicenow.instance \"%s\" must be https:// (plain http only "
		    "for a simulator on loopback)", instance);
	else if (strspn(path, "/") != strlen(path) || strchr(instance, '?') != NULL)
		*cause = xprintf("servicenow.instance \"%s\" must be the instance root "
		    "(https://NAME.service-now.com), without a path", instance);
	else
		rc = 0;
	free(scheme);
	free(host);
	free(path);
	return rc;
}

static int
snow_check_auth(const struct config *c, char **cause)
{
	const char *missing = NULL;
	int need_user = c->snow.auth == CONFIG_AUTH_BASIC || c->snow.grant == CONFIG_GRANT_PASSWORD;

	if (need_user && (c->snow.user == NULL || *c->snow.user == '\0'))
		missing = "servicenow.user";
	else if (need_user && c->snow.password == NULL)
		missing = "the servicenow password";
	else if (c->snow.auth == CONFIG_AUTH_OAUTH && c->snow.client_id == NULL)
		missing = "servicenow.client_id";
	else if (c->snow.auth == CONFIG_AUTH_OAUTH && c->snow.client_secret == NULL)
		missing = "the servicenow OAuth client secret";
	if (missing == NULL)
		return 0;
	*cause = xprintf("%s is not set: it is required for %s authentication", missing,
	    c->snow.auth == CONFIG_AUTH_BASIC ? "Basic" : "OAuth");
	return -EINVAL;
}

static struct http_pool *
snow_pool(const struct config *c, struct http_client *h, char **cause)
{
	const struct config_http *ch = &c->snow.http;
	struct http_pool_opts o = {
		.name = "servicenow",
		.concurrency = ch->concurrency > 0 ? ch->concurrency : 4,
		.connect_timeout = ch->connect_timeout > 0 ? ch->connect_timeout : 10,
		.timeout = ch->timeout > 0 ? ch->timeout : 90,
		.max_retries = ch->max_retries >= 0 ? ch->max_retries : 3,
		.ca_file = ch->ca_file,
		.proxy = ch->proxy,
		.request_budget = ch->request_budget,
		.max_body = SNOW_MAX_BODY,
	};

	return http_pool_new(h, &o, cause);
}

struct snow_client *
snow_client_new(const struct config *c, struct http_client *h, char **cause)
{
	struct snow_client *s;
	struct http_pool *pool;
	size_t n;

	if (snow_check_instance(c->snow.instance, cause) != 0 || snow_check_auth(c, cause) != 0)
		return NULL;
	if ((pool = snow_pool(c, h, cause)) == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->cfg = c;
	s->h = h;
	s->pool = pool;
	n = strlen(c->snow.instance);
	while (n > 0 && c->snow.instance[n - 1] == '/')
		n--;
	s->instance = xstrndup(c->snow.instance, n);
	s->oauth = c->snow.auth == CONFIG_AUTH_OAUTH;
	if (!s->oauth || c->snow.grant == CONFIG_GRANT_PASSWORD) {
		s->who = xstrdup(c->snow.user);
		s->fix = "servicenow.user and the password";
	} else {
		s->who = xprintf("OAuth client %s", c->snow.client_id);
		s->fix = "servicenow.client_id and the client secret";
	}
	if (!s->oauth) {
		char *up = xprintf("%s:%s", c->snow.user, c->snow.password);

		s->userpwd = secret_dup(up, strlen(up));
		explicit_bzero(up, strlen(up));
		free(up);
	}
	TAILQ_INIT(&s->waiting);
	return s;
}

struct http_pool *
snow_client_pool(struct snow_client *s)
{
	return s->pool;
}

static void
snow_op_free(struct snow_op *op)
{
	free(op->url);
	free(op->body);
	free(op->what);
	free(op);
}

/* Completes an op with an error (no page, no record) and frees it. */
static void
snow_op_fail(struct snow_op *op, int err, long status, const char *cause)
{
	if (op->kind == SNOW_LIST)
		op->list_done(err, cause, NULL, op->arg);
	else
		op->rec_done(err, status, cause, NULL, op->arg);
	snow_op_free(op);
}

static void
snow_fail_waiting(struct snow_client *s, int err, const char *cause)
{
	struct snow_op *op;

	while ((op = TAILQ_FIRST(&s->waiting)) != NULL) {
		TAILQ_REMOVE(&s->waiting, op, entry);
		snow_op_fail(op, err, 0, cause);
	}
}

void
snow_client_free(struct snow_client *s)
{
	if (s == NULL)
		return;
	s->closing = 1;
	http_pool_cancel(s->pool);
	snow_fail_waiting(s, -ECANCELED, "canceled: the ServiceNow client is shutting down");
	secret_free(s->userpwd);
	secret_free(s->access);
	secret_free(s->refresh);
	free(s->instance);
	free(s->who);
	free(s);
}

/* Query string cut off: a redirect target may carry tokens. */
static char *
snow_safe_url(const char *url)
{
	return url ? xstrndup(url, strcspn(url, "?#")) : xstrdup("(none)");
}

static int
snow_map_transport(const struct snow_client *s, const struct http_response *r, char **cause)
{
	switch (r->error) {
	case HTTP_E_CANCELED:
		*cause = xstrdup("canceled: shutting down");
		return -ECANCELED;
	case HTTP_E_TOOBIG:
		*cause = xprintf("ServiceNow at %s sent an answer over %u bytes: lower "
		    "servicenow.page_size", s->instance, SNOW_MAX_BODY);
		return -EFBIG;
	case HTTP_E_TIMEOUT:
		*cause = xprintf("ServiceNow at %s did not answer in time (%s); retrying later",
		    s->instance, r->errmsg ? r->errmsg : "timeout");
		return -EAGAIN;
	case HTTP_E_TLS:
		*cause = xprintf("TLS with %s failed (%s): check servicenow.instance and "
		    "servicenow.ca_file", s->instance, r->errmsg ? r->errmsg : "?");
		return -EAGAIN;
	default:
		*cause = xprintf("cannot reach ServiceNow at %s (%s); retrying later", s->instance,
		    r->errmsg ? r->errmsg : "transport error");
		return -EAGAIN;
	}
}

static int
snow_map_4xx(const struct snow_client *s, const struct snow_op *op, long status,
    const char *detail, char **cause)
{
	switch (status) {
	case 401:
		*cause = xprintf("ServiceNow rejected the credentials of %s: check %s (401 %s)",
		    s->who, s->fix, detail);
		return -EACCES;
	case 403:
		if (strstr(detail, "Data Policy Exception") != NULL)
			*cause = xprintf("ServiceNow refused to update %s: %s", op->what, detail);
		else
			*cause = xprintf("ServiceNow denied %s to %s (403 %s): grant the integration "
			    "user the roles or ACLs for this table", op->what, s->who, detail);
		return -EPERM;
	case 404:
		*cause = xprintf("%s not found, or the integration user may not read it (404 %s)",
		    op->what, detail);
		return -ENOENT;
	case 400:
		*cause = xprintf("ServiceNow refused the request for %s (400 %s): check the table "
		    "and field names", op->what, detail);
		return -EINVAL;
	case 429:
		*cause = xprintf("ServiceNow rate limit reached for %s (429 %s): lower the polling "
		    "rate or raise the user's limit in sys_rate_limit_rules", s->who, detail);
		return -EAGAIN;
	default:
		*cause = xprintf("ServiceNow answered %ld for %s (%s)", status, op->what, detail);
		return -EPROTO;
	}
}

/* Maps an answer that is not a usable 2xx JSON body to -errno + cause. */
static int
snow_map(const struct snow_client *s, const struct snow_op *op, const struct http_response *r,
    char **cause)
{
	int html = http_is_html(r->content_type, r->body, r->body_len);
	char *detail, *where;
	int rc;

	if (r->error != HTTP_OK)
		return snow_map_transport(s, r, cause);
	if (html && (r->status < 300 || r->status >= 500)) {
		*cause = xprintf("ServiceNow at %s answered %ld with an HTML page: instance "
		    "unavailable (hibernating or under maintenance?); retrying later",
		    s->instance, r->status);
		return -EAGAIN;
	}
	if (r->status >= 200 && r->status < 300)
		return 0;
	if (r->status >= 300 && r->status < 400) {
		where = snow_safe_url(r->location);
		*cause = xprintf("ServiceNow redirected %s (%ld to %s): redirects are not followed "
		    "with credentials; set servicenow.instance to the instance's own https URL",
		    op->what, r->status, where);
		free(where);
		return -EPROTO;
	}
	detail = snow_parse_error(r->body, r->body_len);
	/* A 4xx without ServiceNow's own JSON error is a proxy's or load
	 * balancer's answer, not the instance's verdict: transient. */
	if (detail == NULL && r->status >= 400 && r->status < 500 && r->status != 401 &&
	    r->status != 429) {
		*cause = xprintf("ServiceNow at %s answered %ld for %s with %s, not ServiceNow's "
		    "JSON error (a proxy or load balancer in front?); retrying later", s->instance,
		    r->status, op->what, html ? "an HTML page" : "no error message");
		return -EAGAIN;
	}
	if (detail == NULL)
		detail = xprintf(html ? "an HTML page" : "no error message");
	if (r->status >= 500) {
		*cause = xprintf("ServiceNow at %s failed with %ld (%s); retrying later",
		    s->instance, r->status, detail);
		rc = -EAGAIN;
	} else
		rc = snow_map_4xx(s, op, r->status, detail, cause);
	free(detail);
	return rc;
}

static void
snow_op_finish(struct snow_op *op, struct http_response *r)
{
	char *cause = NULL;
	int err = snow_map(op->s, op, r, &cause);

	if (err == 0 && op->kind == SNOW_LIST) {
		struct snow_list page;

		if ((err = snow_parse_list(r->body, r->body_len, &page, &cause)) == 0) {
			page.total = r->total_count;
			op->list_done(0, NULL, &page, op->arg);
			snow_list_free(&page);
		}
	} else if (err == 0) {
		struct snow_record rec;

		if ((err = snow_parse_record(r->body, r->body_len, &rec, &cause)) == 0) {
			op->rec_done(0, r->status, NULL, &rec, op->arg);
			snow_record_free(&rec);
		}
	}
	if (err != 0) {
		char *full = xprintf("%s %s: %s", op->method, op->what, cause);

		snow_op_fail(op, err, r->status, full);
		free(full);
	} else
		snow_op_free(op);
	free(cause);
}

static void snow_op_start(struct snow_op *op);

static void
snow_op_done(struct http_response *r, void *arg)
{
	struct snow_op *op = arg;
	struct snow_client *s = op->s;

	/* a 401 was not applied: resend once, with a new token if this one
	 * is still the current one */
	if (r->error == HTTP_OK && r->status == 401 && s->oauth && !op->resubmitted &&
	    !s->closing) {
		op->resubmitted = 1;
		if (op->token_gen == s->token_gen) {
			secret_free(s->access);
			s->access = NULL;
		}
		snow_op_start(op);
		return;
	}
	snow_op_finish(op, r);
}

static void
snow_op_send(struct snow_op *op)
{
	struct snow_client *s = op->s;
	struct http_request req;

	http_request_init(&req, op->method, xstrdup(op->url));
	http_request_header(&req, "Accept: application/json");
	http_request_header(&req, "User-Agent: imperai-snow/%s", PACKAGE_VERSION);
	if (op->body != NULL) {
		http_request_header(&req, "Content-Type: application/json");
		req.body = xstrdup(op->body);
		req.body_len = strlen(op->body);
	}
	if (s->oauth) {
		http_request_header(&req, "Authorization: Bearer %s", s->access);
		op->token_gen = s->token_gen;
	} else
		req.userpwd = s->userpwd;
	req.retry_safe = op->retry_safe;
	http_submit(s->pool, &req, snow_op_done, op);
}

static void snow_token_fetch(struct snow_client *s);

static void
snow_op_start(struct snow_op *op)
{
	struct snow_client *s = op->s;
	int64_t now = http_client_now(s->h);

	if (s->oauth && (s->access == NULL || now >= s->expires_at)) {
		TAILQ_INSERT_TAIL(&s->waiting, op, entry);
		snow_token_fetch(s);
		return;
	}
	/* refresh ahead of expiry; the current token serves meanwhile */
	if (s->oauth && now >= s->refresh_at)
		snow_token_fetch(s);
	snow_op_send(op);
}

static void
snow_token_store(struct snow_client *s, char *access, char *refresh, int64_t expires_in)
{
	int64_t now = http_client_now(s->h);

	secret_free(s->access);
	s->access = access;
	if (refresh != NULL) {
		secret_free(s->refresh);
		s->refresh = refresh;
	}
	/* refresh at 80%; stop using it 10% (at most 30 s) before expiry */
	s->refresh_at = now + expires_in * 800;
	s->expires_at = now + expires_in * 1000 - (expires_in * 100 < 30000 ? expires_in * 100 : 30000);
	s->token_gen++;
}

/* 0 for a 2xx JSON answer; a refusal of the grant names the settings. */
static int
snow_token_error(struct snow_client *s, const struct http_response *r, char **cause)
{
	struct snow_op what = { .what = (char *)SNOW_TOKEN_PATH };
	char *detail;

	if (r->error != HTTP_OK || (r->status != 400 && r->status != 401))
		return snow_map(s, &what, r, cause);
	detail = snow_parse_error(r->body, r->body_len);
	*cause = xprintf("ServiceNow refused an OAuth token for %s (%ld %s): check %s", s->who,
	    r->status, detail ? detail : "no error message",
	    s->cfg->snow.grant == CONFIG_GRANT_PASSWORD ?
	    "servicenow.client_id, the client secret, servicenow.user and the password" :
	    "servicenow.client_id and the client secret, and that the instance allows the "
	    "client_credentials grant");
	free(detail);
	return -EACCES;
}

static void
snow_token_ready(struct snow_client *s, char *access, char *refresh, int64_t expires_in)
{
	struct snow_ops ready = TAILQ_HEAD_INITIALIZER(ready);
	struct snow_op *op;

	snow_token_store(s, access, refresh, expires_in);
	TAILQ_CONCAT(&ready, &s->waiting, entry);
	while ((op = TAILQ_FIRST(&ready)) != NULL) {
		TAILQ_REMOVE(&ready, op, entry);
		snow_op_send(op);
	}
}

static void
snow_token_done(struct http_response *r, void *arg)
{
	struct snow_client *s = arg;
	char *access, *refresh, *cause = NULL;
	int64_t expires_in;
	int err;

	s->fetching = 0;
	if ((err = snow_token_error(s, r, &cause)) == 0 &&
	    (err = snow_parse_oauth(r->body, r->body_len, &access, &refresh, &expires_in, &cause)) == 0) {
		snow_token_ready(s, access, refresh, expires_in);
		return;
	}
	/* an expired or revoked refresh token: start over with the grant */
	if (s->fetch_with_refresh && r->error == HTTP_OK && r->status >= 400 && r->status < 500 &&
	    !s->closing) {
		free(cause);
		secret_free(s->refresh);
		s->refresh = NULL;
		snow_token_fetch(s);
		return;
	}
	snow_fail_waiting(s, err, cause);
	free(cause);
}

static void
snow_token_fetch(struct snow_client *s)
{
	struct http_request req;
	char *body;

	if (s->fetching)
		return;
	s->fetching = 1;
	s->fetch_with_refresh = s->refresh != NULL;
	body = snow_oauth_body(s->cfg, s->refresh);
	http_request_init(&req, "POST", xprintf("%s%s", s->instance, SNOW_TOKEN_PATH));
	http_request_header(&req, "Accept: application/json");
	http_request_header(&req, "Content-Type: application/x-www-form-urlencoded");
	http_request_header(&req, "User-Agent: imperai-snow/%s", PACKAGE_VERSION);
	req.body = body;
	req.body_len = strlen(body);
	req.retry_safe = 1;
	http_submit(s->pool, &req, snow_token_done, s);
}

static int
snow_check_args(const struct snow_client *s, const char *table, const char *sys_id, char **cause)
{
	if (s->closing)
		*cause = xstrdup("the ServiceNow client is shutting down");
	else if (table == NULL || !snow_is_table(table))
		*cause = xprintf("\"%s\" is not a ServiceNow table name", table ? table : "");
	else if (sys_id != NULL && !snow_is_sys_id(sys_id))
		*cause = xprintf("\"%.40s\" is not a sys_id (32 hex digits)", sys_id);
	else
		return 0;
	return s->closing ? -ECANCELED : -EINVAL;
}

static struct snow_op *
snow_op_new(struct snow_client *s, const char *method, char *url, char *what, int retry_safe)
{
	struct snow_op *op = xcalloc(1, sizeof(*op));

	op->s = s;
	op->method = method;
	op->url = url;
	op->what = what;
	op->retry_safe = retry_safe;
	return op;
}

static int
snow_list_submit(struct snow_client *s, char *url, const char *table, snow_list_fn done,
    void *arg)
{
	struct snow_op *op = snow_op_new(s, "GET", url, xstrdup(table), 1);

	op->kind = SNOW_LIST;
	op->list_done = done;
	op->arg = arg;
	snow_op_start(op);
	return 0;
}

/* The fields plus the ones keyset paging needs, in a new array. */
static const char **
snow_poll_fields(const char *const *fields, size_t nfields, size_t *n)
{
	static const char *const need[] = { "sys_id", "sys_updated_on", "sys_mod_count" };
	const char **v = xcalloc(nfields + ARRAY_SIZE(need), sizeof(*v));

	*n = 0;
	for (size_t i = 0; i < nfields; i++)
		v[(*n)++] = fields[i];
	for (size_t k = 0; k < ARRAY_SIZE(need); k++) {
		size_t i;

		for (i = 0; i < nfields && strcmp(fields[i], need[k]) != 0; i++)
			;
		if (i == nfields)
			v[(*n)++] = need[k];
	}
	return v;
}

int
snow_list_page(struct snow_client *s, const char *table, const char *filter,
    const struct snow_watermark *w, int offset, const char *const *fields, size_t nfields,
    snow_list_fn done, void *arg, char **cause)
{
	const char **all;
	char *query;
	size_t n;
	int rc;

	if ((rc = snow_check_args(s, table, NULL, cause)) != 0 ||
	    (rc = snow_poll_query(filter, w, &query, cause)) != 0)
		return rc;
	all = nfields ? snow_poll_fields(fields, nfields, &n) : NULL;
	rc = snow_list_submit(s, snow_poll_url(s->instance, table, query, all, nfields ? n : 0,
	    s->cfg->snow.page_size > 0 ? s->cfg->snow.page_size : 100, offset), table, done, arg);
	free(all);
	free(query);
	return rc;
}

int
snow_query(struct snow_client *s, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, snow_list_fn done, void *arg,
    char **cause)
{
	int rc;

	if ((rc = snow_check_args(s, table, NULL, cause)) != 0)
		return rc;
	return snow_list_submit(s, snow_list_url(s->instance, table, query, fields, nfields, limit),
	    table, done, arg);
}

static int
snow_record_submit(struct snow_client *s, const char *method, const char *table,
    const char *sys_id, const char *body, const char *const *fields, size_t nfields,
    snow_record_fn done, void *arg, char **cause)
{
	struct snow_op *op;
	int rc;

	if ((rc = snow_check_args(s, table, sys_id, cause)) != 0)
		return rc;
	op = snow_op_new(s, method, snow_record_url(s->instance, table, sys_id, fields, nfields),
	    sys_id ? xprintf("%s/%s", table, sys_id) : xstrdup(table), body == NULL);
	op->kind = SNOW_RECORD;
	op->body = body ? xstrdup(body) : NULL;
	op->rec_done = done;
	op->arg = arg;
	snow_op_start(op);
	return 0;
}

int
snow_get(struct snow_client *s, const char *table, const char *sys_id,
    const char *const *fields, size_t nfields, snow_record_fn done, void *arg, char **cause)
{
	return snow_record_submit(s, "GET", table, sys_id, NULL, fields, nfields, done, arg, cause);
}

int
snow_patch(struct snow_client *s, const char *table, const char *sys_id,
    const char *body_json, const char *const *fields, size_t nfields,
    snow_record_fn done, void *arg, char **cause)
{
	if (body_json == NULL) {
		*cause = xstrdup("PATCH without a body");
		return -EINVAL;
	}
	return snow_record_submit(s, "PATCH", table, sys_id, body_json, fields, nfields, done,
	    arg, cause);
}

int
snow_insert(struct snow_client *s, const char *table, const char *body_json,
    const char *const *fields, size_t nfields, snow_record_fn done, void *arg, char **cause)
{
	if (body_json == NULL) {
		*cause = xstrdup("POST without a body");
		return -EINVAL;
	}
	return snow_record_submit(s, "POST", table, NULL, body_json, fields, nfields, done, arg,
	    cause);
}
