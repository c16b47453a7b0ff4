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
 *   -> action_done -> resolved -> closed; plus canceled and superseded. */
#ifndef IMPERAI_ENGINE_H
#define IMPERAI_ENGINE_H

#include <stddef.h>
#include <stdint.h>

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

#define ENGINE_HISTORY_MAX 32

struct ticket_history {
	int64_t		 at;
	enum tstate	 from;
	enum tstate	 to;
	char		*why;		/* short event tag: "created", "outcome", ... */
};

/* Everything the daemon remembers about one ticket. */
struct ticket {
	char		*table;
	char		 sys_id[33];
	char		*number;
	enum tstate	 state;
	char		*flow;		/* name of the matching flow, NULL if none */
	uint32_t	 generation;	/* request generation; bumps on requester change */
	uint32_t	 revision;	/* field revision; bumps on every field PATCH */
	uint32_t	 landed_revision;	/* highest revision seen in the field */
	char		*request_id;
	char		*requester;	/* sys_id the current request was made for */
	char		*requester_name;	/* display name, for close notes */
	/* the ticket as last observed */
	int64_t		 seen_mod_count;
	int64_t		 seen_updated_on;
	int64_t		 own_mod_count;	/* sys_mod_count our last PATCH produced */
	char		*category;
	char		*subcategory;
	char		*snow_state;	/* ServiceNow "state" value */
	char		*short_description;
	/* the verification as last reported */
	struct imperai_verification v;
	int		 on_fail_applied;
	int		 untracked_noted;	/* "no longer needs verification" said */
	int64_t		 created_at;
	int64_t		 state_since;
	struct ticket_history history[ENGINE_HISTORY_MAX];
	size_t		 nhistory;	/* ring: the newest ENGINE_HISTORY_MAX kept */
	char		*last_error;
	/* shown by imperai-snowctl show/list; NULL until observed */
	char		*requester_email;	/* as ServiceNow has it; the CLI masks it */
	char		*description;
};

void ticket_init(struct ticket *t, const char *table, const char *sys_id);
void ticket_free(struct ticket *t);
/* JSON encoding for the store (schema versioned inside). */
char *engine_ticket_encode(const struct ticket *t);
int engine_ticket_decode(const char *json, size_t len, struct ticket *t, char **cause);

enum effect_kind {
	EFFECT_CREATE,		/* imper.ai create (idempotent by key) */
	EFFECT_CANCEL,		/* imper.ai cancel of request_id */
	EFFECT_PATCH,		/* ServiceNow PATCH: field + work note (+ state) in one request */
};
const char *engine_effect_name(enum effect_kind k);

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
	int		 attempts;	/* shell bookkeeping, persisted */
	int64_t		 not_before;	/* shell bookkeeping: retry time */
	char		*last_error;
	int64_t		 created_at;	/* when decided (now); 0 if unknown: outbox age */
};
void effect_free(struct effect *e);
char *engine_effect_encode(const struct effect *e);
int engine_effect_decode(const char *json, size_t len, struct effect *e, char **cause);

/* One log/audit event produced by a decision. */
struct engine_event {
	int		 level;		/* enum log_level */
	char		*msg;		/* "state changed", "security: ..." */
	char		*kv;		/* "ticket=INC0010001 from=link_ready to=passed" */
};

struct engine_result {
	int		 changed;	/* the ticket record must be stored */
	int		 forget;	/* the ticket record may be deleted */
	struct effect	*effects;
	size_t		 neffects;
	struct engine_event *events;
	size_t		 nevents;
};
void engine_result_init(struct engine_result *r);
void engine_result_free(struct engine_result *r);

struct engine_policy {
	const struct config	*cfg;
	const struct flows	*flows;
};

/* A ServiceNow record of table was observed (poll, resync, read-back).
 * t is the stored ticket, or a fresh ticket_init()ed one in TS_UNTRACKED. */
int engine_observe(const struct engine_policy *p, struct ticket *t, const char *table,
    const struct snow_record *r, int64_t now, struct engine_result *out);
/* Our create for generation returned v. */
int engine_created(const struct engine_policy *p, struct ticket *t, uint32_t generation,
    const struct imperai_verification *v, int64_t now, struct engine_result *out);
/* imper.ai reported a change of v (feed or get). */
int engine_verification(const struct engine_policy *p, struct ticket *t,
    const struct imperai_verification *v, int64_t now, struct engine_result *out);
/* Our PATCH of revision landed; r is the record as ServiceNow returned it. */
int engine_patched(const struct engine_policy *p, struct ticket *t, uint32_t revision,
    const struct snow_record *r, int64_t now, struct engine_result *out);
/* An effect failed for good (4xx that will not heal): record why. */
int engine_effect_failed(const struct engine_policy *p, struct ticket *t,
    const struct effect *e, const char *why, int64_t now, struct engine_result *out);

/* The single place a ticket changes state; appends history and an event
 * "state changed ticket=N from=a to=b". */
void engine_enter_state(struct ticket *t, enum tstate to, const char *why, int64_t now,
    struct engine_result *out);

/* Does the field text show revision rev (or later) of generation gen? */
int engine_field_has_revision(const char *field, uint32_t generation, uint32_t revision);

#endif
