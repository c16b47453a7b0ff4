/* engine: the decisions.  Given what is stored about a ticket, what was
 * just observed (a ServiceNow record, an imper.ai change, the result of one
 * of our own effects) and the policy, it returns the ticket's new state
 * and the effects to carry out.  Pure: no I/O, no clock (now is an
 * argument), no globals.  The shell (daemon/loop.c) stores the new state
 * and the effects in one transaction, then executes the effects.
 *
 * Lifecycle (ARCHITECTURE.md section 4):
 *   untracked -> awaiting_request -> link_ready -> link_sent -> in_progress
 *   -> passed | failed | timed_out | not_enough_questions
 *   -> action_done -> resolved -> closed; plus canceled and superseded.
 *
 * The engine links against util.c, record.c, render.c, snow.c's
 * observation parser (a record is read through snow_obs_parse) and json-c
 * only: flows are matched through engine_policy.match, and the config table,
 * the flow by name, status names and close-notes templates are looked up
 * locally.  Library code: it never logs; what happened is in the result's
 * events, which carry no raw email, phone or secret. */
#ifndef IMPERAI_ENGINE_H
#define IMPERAI_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "flows.h"
#include "imperai.h"
#include "util.h"

struct config;
struct flows;
struct snow_record;

enum tstate {
	TS_UNTRACKED = 0,
	TS_AWAITING_REQUEST,
	TS_LINK_READY,
	TS_LINK_SENT,
	TS_IN_PROGRESS,
	TS_PASSED,
	TS_FAILED,
	TS_TIMED_OUT,
	TS_NOT_ENOUGH_QUESTIONS,
	TS_ACTION_DONE,
	TS_RESOLVED,
	TS_CLOSED,
	TS_CANCELED,
	TS_SUPERSEDED,
	TS__COUNT
};
const char *engine_state_name(enum tstate s);	/* "link_ready" */
int engine_state_parse(const char *s, enum tstate *out);
/* The names of the states, indexed by enum tstate. */
extern const char *const engine_state_names[TS__COUNT];

#define ENGINE_HISTORY_MAX 32

struct ticket_history {
	int64_t		 at;
	enum tstate	 from;
	enum tstate	 to;
	char		*why;		/* short event tag: "created", "outcome", ... */
};

#define ENGINE_ATTEMPTS_MAX 16

/* An earlier request of the ticket that ended without a result. */
struct ticket_attempt {
	uint32_t	 generation;
	uint32_t	 attempt;	/* its number in its series, 1-based */
	char		*request_id;
	enum imperai_status status;	/* how it ended: timed_out, not_enough_questions */
	int64_t		 at;		/* when it ended */
};

/* Everything the daemon remembers about one ticket. */
struct ticket {
	char		*table;
	char		 sys_id[33];
	char		*number;
	enum tstate	 state;
	char		*flow;		/* name of the matching flow, NULL if none */
	uint32_t	 generation;	/* request generation; bumps on every new request */
	uint32_t	 revision;	/* field revision; bumps on every PATCH, never resets */
	uint32_t	 landed_revision;	/* highest revision seen in the field */
	char		*request_id;
	char		*requester;	/* sys_id the current request was made for */
	char		*requester_name;	/* display name, for close notes */
	char		*gen_reason;	/* why this generation began: "new", "requester_changed", ... */
	/* the ticket as last observed */
	int64_t		 seen_mod_count;
	int64_t		 seen_updated_on;
	int64_t		 own_mod_count;	/* sys_mod_count our last PATCH produced */
	char		*category;
	char		*subcategory;
	char		*snow_state;	/* ServiceNow "state" value */
	char		*short_description;
	int		 ended;		/* inactive, resolved, closed or canceled in ServiceNow */
	/* the verification as last reported */
	struct imperai_verification v;
	int64_t		 sent_at;	/* when the link was first reported sent */
	int		 on_fail_applied;
	int		 untracked_noted;	/* "no longer needs verification" said */
	int		 requester_unreadable;	/* no request: the requester could not be read */
	uint32_t	 resolve_revision;	/* the PATCH that resolved it, 0 if none */
	int		 resolve_failed;	/* ServiceNow refused our resolve: never retried */
	int64_t		 resolved_at;
	int64_t		 created_at;
	int64_t		 state_since;
	struct ticket_history history[ENGINE_HISTORY_MAX];
	size_t		 nhistory;	/* the newest ENGINE_HISTORY_MAX, oldest first */
	char		*last_error;
	/* shown by imperai-snowctl show/list; NULL until observed */
	char		*requester_email;	/* as ServiceNow has it; the CLI masks it */
	char		*description;
	/* automatic new attempts after an unfinished verification (flow retry) */
	uint32_t	 attempt;	/* of the current request when gen_reason is "retry" */
	uint32_t	 attempt_max;	/* attempts the flow allows in all; 0 unknown */
	int		 retry_exhausted;	/* the outcome would start one: none is left */
	struct ticket_attempt attempts[ENGINE_ATTEMPTS_MAX];
	size_t		 nattempts;	/* the newest ENGINE_ATTEMPTS_MAX, oldest first */
};
/* The current request's attempt number in its series (1 unless it is an
 * automatic new attempt). */
uint32_t ticket_attempt_number(const struct ticket *t);

/* A fresh ticket in TS_UNTRACKED, generation 0 (table may be NULL). */
void ticket_init(struct ticket *t, const char *table, const char *sys_id);
void ticket_free(struct ticket *t);

enum effect_kind {
	EFFECT_CREATE,		/* imper.ai create (idempotent by key) */
	EFFECT_CANCEL,		/* imper.ai cancel of request_id */
	EFFECT_PATCH,		/* ServiceNow PATCH: field + work note (+ state) in one request */
};
#define EFFECT__KINDS	(EFFECT_PATCH + 1)
const char *engine_effect_name(enum effect_kind k);
extern const char *const engine_effect_names[EFFECT__KINDS];

struct effect {
	enum effect_kind kind;
	char		*table;
	char		 sys_id[33];
	char		*number;
	uint32_t	 generation;
	uint32_t	 revision;	/* PATCH: the field revision it writes */
	char		*tag;		/* event that caused it: "link", "outcome", ... */
	char		*request_id;	/* CANCEL */
	struct imperai_create create;	/* CREATE */
	char		*patch_json;	/* PATCH body: {"<field>": html, "work_notes": text, ...} */
	int64_t		 created_at;	/* when decided (now); 0 if unknown: outbox age */
};
void effect_free(struct effect *e);

/* One log/audit event produced by a decision. */
struct engine_event {
	int		 level;		/* enum log_level */
	char		*msg;		/* "state changed", "security: ..." */
	char		*kv;		/* "ticket=INC0010001 from=link_ready to=passed" */
};

/* Effects are listed in the order to execute them (a CANCEL before the
 * PATCH before the CREATE of a re-verification). */
struct engine_result {
	int		 changed;	/* the ticket record must be stored */
	int		 forget;	/* the ticket needs no verification: store nothing */
	struct effect	*effects;
	size_t		 neffects;
	struct engine_event *events;
	size_t		 nevents;
};
void engine_result_init(struct engine_result *r);
void engine_result_free(struct engine_result *r);

/* Finds the flow for a record; flows_match in the daemon, a fake in tests. */
typedef const struct flow *(*engine_match_fn)(const struct flows *f, const char *table,
    const struct snow_record *r);

struct engine_policy {
	const struct config	*cfg;
	const struct flows	*flows;
	engine_match_fn		 match;
};

/* The daemon's policy: flows_match() decides.  Inline so that only callers
 * (not the engine itself) link against flows.c. */
static inline void
engine_policy_init(struct engine_policy *p, const struct config *cfg, const struct flows *f)
{
	p->cfg = cfg;
	p->flows = f;
	p->match = flows_match;
}

/* An outcome older than this is never acted on when the flow sets no max_age. */
#define ENGINE_DEFAULT_MAX_AGE	3600

/* Each decision below appends to out (engine_result_init it first) and
 * returns 0, or -EINVAL for unusable arguments and -ENOENT for a table
 * that is not configured (nothing is decided then). */

/* A ServiceNow record of table was observed (poll, resync, read-back).
 * t is the stored ticket, or a fresh ticket_init()ed one in TS_UNTRACKED;
 * r must carry the fields snow_obs_fields() lists for the table (number,
 * state, active, category, subcategory, short_description, description,
 * the requester field with its .name/.email/.user_name, assigned_to.name
 * and the verification field); the engine reads them through
 * snow_obs_parse(). */
int engine_observe(const struct engine_policy *p, struct ticket *t, const char *table,
    const struct snow_record *r, int64_t now, struct engine_result *out);
/* Our create for generation returned v.  A stale generation, or a ticket
 * that no longer wants it, gets a CANCEL of v. */
int engine_created(const struct engine_policy *p, struct ticket *t, uint32_t generation,
    const struct imperai_verification *v, int64_t now, struct engine_result *out);
/* imper.ai reported a change of v (feed or get).  v naming another ticket
 * is refused with an err event "security: ..."; v of another request is
 * ignored. */
int engine_verification(const struct engine_policy *p, struct ticket *t,
    const struct imperai_verification *v, int64_t now, struct engine_result *out);
/* Our PATCH of revision landed; r is the record as ServiceNow returned it
 * (ask for the same fields as the poll: with them, a change made by
 * someone else just before the PATCH, or a resolve ServiceNow ignored, is
 * decided here; without them only the bookkeeping is done). */
int engine_patched(const struct engine_policy *p, struct ticket *t, uint32_t revision,
    const struct snow_record *r, int64_t now, struct engine_result *out);
/* An effect failed for good (4xx that will not heal): record why.  A
 * PATCH that resolved the ticket is followed by one without the resolve
 * fields whose work note says why it was not resolved. */
int engine_effect_failed(const struct engine_policy *p, struct ticket *t,
    const struct effect *e, const char *why, int64_t now, struct engine_result *out);

/* The single place a ticket changes state; appends history and (when out
 * is not NULL) an event "state changed ticket=N from=a to=b why=w".
 * Entering the current state does nothing. */
void engine_enter_state(struct ticket *t, enum tstate to, const char *why, int64_t now,
    struct engine_result *out);

/* Does the field text show revision rev (or later) of generation gen?
 * Uses the last "imperai-snow ref G.R" in the text. */
int engine_field_has_revision(const char *field, uint32_t generation, uint32_t revision);

#endif
