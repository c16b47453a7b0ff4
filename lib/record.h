/* record: the in-memory ServiceNow record, as strings, shared by the
 * parser (snow.c), the policy (flows.c, query.c) and the engine.  Its
 * functions keep the snow_record_ prefix every caller knows. */
#ifndef IMPERAI_RECORD_H
#define IMPERAI_RECORD_H

#include <stddef.h>
#include <stdint.h>

/* One field of a record, as strings (the Table API's own representation). */
struct snow_field {
	char	*name;
	char	*value;		/* "" for empty; references flattened to the sys_id */
	char	*display;	/* display value when asked for, else NULL */
};

struct snow_record {
	char		 sys_id[33];
	int64_t		 mod_count;	/* sys_mod_count */
	int64_t		 updated_on;	/* sys_updated_on, UNIX seconds */
	struct snow_field *fields;
	size_t		 nfields;
};

struct snow_list {
	struct snow_record *v;
	size_t		 n;
	int64_t		 total;	/* X-Total-Count: rows the query matched, those
				 * ACLs hid included; -1 when not sent */
};

/* NULL when the field is absent. */
const char *snow_record_get(const struct snow_record *r, const char *name);
void snow_record_free(struct snow_record *r);
void snow_list_free(struct snow_list *l);
int snow_record_copy(struct snow_record *dst, const struct snow_record *src);
/* Sets (or adds) a field; parsers and tests build records with it. */
void snow_record_set(struct snow_record *r, const char *name, const char *value);

#endif
