/* refs: the reference values the policy writes into tickets
 * (on_fail.assignment_group), resolved to the referenced record's sys_id
 * when the policy is loaded.  ServiceNow stores a reference as a sys_id:
 * written by name without sysparm_input_display_value=true it is stored
 * as given, displays empty and points nowhere.  Resolving once, at load,
 * keeps every write in actual values (what the Table API documents as its
 * default) and turns a name that matches nothing or several groups into a
 * configuration error naming the file, line and value. */
#ifndef IMPERAI_REFS_H
#define IMPERAI_REFS_H

#include "util.h"

struct config;
struct flows;
struct flow;
struct snow_list;

/* Looks every reference of flows up in ServiceNow and rewrites it to its
 * sys_id (keeping the record's name for notes).  0 when all resolved;
 * -EINVAL when one matched nothing or several (errs says which, where);
 * -EAGAIN when ServiceNow could not be asked (errs says why). */
int refs_resolve(const struct config *cfg, struct flows *flows, struct errlist *errs);
/* The same for the references not looked up yet (only_unresolved), or all.
 * A reference ServiceNow did not answer for is marked unresolved: the
 * engine then writes no assignment_group and says so in the note. */
int refs_resolve_some(const struct config *cfg, struct flows *flows, int only_unresolved,
    struct errlist *errs);
/* Whether a reference of flows waits to be looked up. */
int refs_pending(const struct flows *flows);
/* The decision on one flow's assignment_group from the answer to
 * "sys_id=V^ORname=V" (at most 2 rows): 0 and the flow rewritten, or
 * -EINVAL with the problem in errs. */
int refs_apply(const struct flows *flows, struct flow *f, const struct snow_list *l,
    struct errlist *errs);

#endif
