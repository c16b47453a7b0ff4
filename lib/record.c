/* record: the in-memory ServiceNow record, shared by the parser, the policy
 * and the engine. */
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util.h"

const char *
snow_record_get(const struct snow_record *r, const char *name)
{
	if (strcmp(name, "sys_id") == 0)
		return r->sys_id;
	for (size_t i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return r->fields[i].value;
	return NULL;
}

void
snow_record_free(struct snow_record *r)
{
	for (size_t i = 0; i < r->nfields; i++) {
		free(r->fields[i].name);
		free(r->fields[i].value);
		free(r->fields[i].display);
	}
	free(r->fields);
	memset(r, 0, sizeof(*r));
}

void
snow_list_free(struct snow_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		snow_record_free(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int
snow_record_copy(struct snow_record *dst, const struct snow_record *src)
{
	memcpy(dst->sys_id, src->sys_id, sizeof(dst->sys_id));
	dst->mod_count = src->mod_count;
	dst->updated_on = src->updated_on;
	dst->nfields = src->nfields;
	dst->fields = xcalloc(src->nfields, sizeof(*dst->fields));
	for (size_t i = 0; i < src->nfields; i++) {
		dst->fields[i].name = xstrdup(src->fields[i].name);
		dst->fields[i].value = xstrdup(src->fields[i].value ? src->fields[i].value : "");
		if (src->fields[i].display)
			dst->fields[i].display = xstrdup(src->fields[i].display);
	}
	return 0;
}

/* Appends a field; used by parsers and by tests to build records. */
void
snow_record_set(struct snow_record *r, const char *name, const char *value)
{
	for (size_t i = 0; i < r->nfields; i++) {
		if (strcmp(r->fields[i].name, name) == 0) {
			str_replace(&r->fields[i].value, value ? value : "");
			return;
		}
	}
	r->fields = xreallocarray(r->fields, r->nfields + 1, sizeof(*r->fields));
	r->fields[r->nfields].name = xstrdup(name);
	r->fields[r->nfields].value = xstrdup(value ? value : "");
	r->fields[r->nfields].display = NULL;
	r->nfields++;
}
