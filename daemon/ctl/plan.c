/* ctl-plan: what `setup` concludes from ServiceNow's answers, without I/O
 * (unit-tested in tests/unit/test_ctl_plan.c). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "ctl.h"
#include "snow.h"
#include "util.h"

#define SETUP_FIELD_LABEL	"imper.ai Verification"
#define SETUP_FIELD_MAX		65000

static int
plan_is_sys_id(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0' && isxdigit((unsigned char)s[n]))
		n++;
	return n == 32 && s[n] == '\0';
}

const char *
ctl_setup_field_type(const struct snow_record *r)
{
	const char *v = snow_record_get(r, "internal_type");
	const char *name = snow_record_get(r, "internal_type.name");

	if (v != NULL && *v != '\0' && !plan_is_sys_id(v))
		return v;
	if (name != NULL && *name != '\0')
		return name;
	return NULL;
}

int
ctl_setup_tz_is_utc(const char *tz)
{
	static const char *const utc[] = { "GMT", "UTC", "Etc/UTC", "Etc/GMT", "Etc/Universal",
	    "Etc/Zulu", "Etc/Greenwich", "Universal", "Zulu", "Greenwich", "GMT0", "Etc/GMT0",
	    "UCT", "Etc/UCT" };

	for (size_t i = 0; tz != NULL && i < ARRAY_SIZE(utc); i++)
		if (strcasecmp(tz, utc[i]) == 0)
			return 1;
	return 0;
}

/* Roles that grant read, write and resolve on a table, in preference order. */
static const char *const *
plan_roles_for(const char *table)
{
	static const char *const incident[] = { "itil", "sn_incident_write", "admin", NULL };
	static const char *const request[] = { "itil", "sn_request_write", "admin", NULL };
	static const char *const other[] = { "itil", "admin", NULL };

	if (str_eq(table, "incident"))
		return incident;
	if (str_eq(table, "sc_req_item") || str_eq(table, "sc_task"))
		return request;
	return other;
}

const char *
ctl_setup_role_for(const char *table, char *const *roles, size_t n)
{
	for (const char *const *want = plan_roles_for(table); *want != NULL; want++)
		for (size_t i = 0; i < n; i++)
			if (str_eq(roles[i], *want))
				return *want;
	return NULL;
}

char *
ctl_setup_field_body(const char *table, const char *field)
{
	json_object *o = json_object_new_object();
	char *s;

	json_object_object_add(o, "name", json_object_new_string(table));
	json_object_object_add(o, "element", json_object_new_string(field));
	json_object_object_add(o, "column_label", json_object_new_string(SETUP_FIELD_LABEL));
	json_object_object_add(o, "internal_type", json_object_new_string("html"));
	json_object_object_add(o, "max_length", json_object_new_int(SETUP_FIELD_MAX));
	s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

char *
ctl_requester_query(const char *rf, char *fields[CTL_REQUESTER_NFIELDS])
{
	fields[0] = xstrdup("sys_id");
	fields[1] = xstrdup("number");
	fields[2] = xprintf("%s.name", rf);
	fields[3] = xprintf("%s.email", rf);
	fields[4] = xprintf("%s.user_name", rf);
	return xprintf("%sISNOTEMPTY^ORDERBYDESCsys_updated_on", rf);
}

static int
plan_blank(const struct snow_record *r, const char *rf, const char *suffix)
{
	char *name = xprintf("%s.%s", rf, suffix);
	const char *v = snow_record_get(r, name);

	free(name);
	return v == NULL || *v == '\0';
}

int
ctl_requester_verdict(const char *table, const char *rf, const char *user,
    const struct snow_list *l, char **msg)
{
	const struct snow_record *r = l->n > 0 ? &l->v[0] : NULL;
	const char *number = r ? snow_record_get(r, "number") : NULL;

	if (r == NULL) {
		*msg = xprintf("%s: no ticket with a requester to read: requester fields not "
		    "checked", table);
		return 0;
	}
	number = number && *number ? number : r->sys_id;
	if (plan_blank(r, rf, "name") && plan_blank(r, rf, "email") &&
	    plan_blank(r, rf, "user_name")) {
		*msg = xprintf("%s: %s cannot read the requester of %s (%s.name, .email and "
		    ".user_name read empty): grant it read access to sys_user.name, "
		    "sys_user.email and sys_user.user_name, or no ticket will be verified",
		    table, user, number, rf);
		return -1;
	}
	*msg = xprintf("%s: the requester of %s is readable (%s.name, .email, .user_name)",
	    table, number, rf);
	return 1;
}
