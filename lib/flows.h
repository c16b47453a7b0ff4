/* flows: the verification policy, read from a YAML file (libyaml).
 *
 *   flows:
 *     - name: password-reset
 *       match:
 *         table: incident
 *         categories: [password_reset]
 *         subcategories: [...]      # optional
 *         query: "priority<=2"      # optional raw encoded query, ANDed
 *       action: password_reset
 *       automated: true
 *       close: true
 *       close_code: "Solution provided"
 *       close_notes: "Password reset by {requester} after imper.ai verification {verification_id}."
 *       max_age: 1h
 *       on_fail:
 *         assignment_group: "Service Desk Security"
 *         priority: 2
 *         work_note: "High risk detected - Reject this request"
 *       retry:                      # optional; this is the default
 *         on: [timed_out, not_enough_questions]
 *         max: 2                    # new attempts after the first, 0-5
 *
 * Flows are tried in file order; the first that matches a ticket wins.
 * Every error names the file, line and column. */
#ifndef IMPERAI_FLOWS_H
#define IMPERAI_FLOWS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct snow_record;
struct query;

/* Outcomes after which a new attempt starts on its own (flow.retry.on). */
#define FLOW_RETRY_TIMED_OUT		0x1
#define FLOW_RETRY_NOT_ENOUGH_QUESTIONS	0x2
#define FLOW_RETRY_MAX			5

struct flow {
	char		*name;
	int		 line;		/* where it starts in the file */
	/* match */
	char		*table;
	char		**categories;
	size_t		 ncategories;
	char		**subcategories;
	size_t		 nsubcategories;
	char		*query;		/* raw encoded query, NULL if none */
	struct query	*compiled;	/* query compiled for local evaluation */
	/* what to do */
	char		*action;	/* "none", "password_reset", ... */
	int		 automated;
	int		 close;
	char		*close_code;
	char		*close_notes;	/* template: {number} {requester} {verification_id} {action} */
	int64_t		 max_age;	/* seconds an outcome stays usable */
	struct {
		char	*assignment_group;	/* sys_id or name; NULL = leave;
						 * a sys_id once refs_resolve() ran */
		char	*assignment_group_name;	/* the group's name, once resolved */
		int	 unresolved;		/* ServiceNow could not be asked yet:
						 * assignment_group is not written */
		int	 line, col;		/* where assignment_group is given */
		int	 priority;		/* 1-5; 0 = leave */
		char	*work_note;
	} on_fail;
	struct {
		unsigned on;	/* FLOW_RETRY_* bits; never failed or high risk */
		int	 max;	/* new attempts after the first */
	} retry;
};

struct flows {
	char		*path;
	struct flow	*v;
	size_t		 n;
};

int flows_load(const char *path, struct flows **out, struct errlist *errs);
int flows_parse(const char *text, size_t len, const char *name, struct flows **out,
    struct errlist *errs);
void flows_free(struct flows *f);

/* The first flow matching the record of table; NULL if none. */
const struct flow *flows_match(const struct flows *f, const char *table,
    const struct snow_record *r);
const struct flow *flows_find(const struct flows *f, const char *name);
/* Every field name the flows of table need to see (category, subcategory,
 * fields named in queries), deduplicated, appended to *names. */
void flows_fields(const struct flows *f, const char *table, char ***names, size_t *n);
/* Expands {number} {requester} {verification_id} {action} in a template. */
char *flows_expand(const char *tmpl, const char *number, const char *requester,
    const char *verification_id, const char *action);

#endif
