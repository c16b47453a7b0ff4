/* query: ServiceNow encoded queries, compiled once and evaluated locally on
 * records (the subset of operators of SERVICENOW.md: = != < <= > >= IN
 * NOT IN LIKE NOT LIKE STARTSWITH ENDSWITH ISEMPTY ISNOTEMPTY BETWEEN, ^
 * ^OR ^NQ), so a flow's query decides exactly as the instance would. */
#ifndef IMPERAI_QUERY_H
#define IMPERAI_QUERY_H

#include <stddef.h>

struct query;
struct snow_record;

/* -EINVAL with *cause (caller frees) naming the position of the error. */
int query_compile(const char *q, struct query **out, char **cause);
/* True when record r matches q. */
int query_eval(const struct query *q, const struct snow_record *r);
/* The field names q reads, deduplicated, appended to *names. */
void query_fields(const struct query *q, char ***names, size_t *n);
void query_free(struct query *q);

#endif
