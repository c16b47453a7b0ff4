/* engine-int: what the engine's own files share (engine.c, rebuild.c);
 * nothing outside lib/engine.c and lib/rebuild.c includes it. */
#ifndef IMPERAI_ENGINE_INT_H
#define IMPERAI_ENGINE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "render.h"

struct config_table;
struct flow;
struct snow_obs;
struct snow_record;

/* Caps on what is stored or sent: ServiceNow's own limits are smaller. */
#define MAX_NUMBER		64
#define MAX_SHORT		1024
#define MAX_DESCRIPTION		16384
#define MAX_NAME		256
#define MAX_ERROR		512

/* Everything one decision needs besides the ticket. */
struct engine_ctx {
	const struct engine_policy	*p;
	const struct config_table	*tc;
	const char			*field;		/* the verification field's name */
	struct render_ctx		 rc;
	int64_t				 now;
	struct engine_result		*out;
};

/* Checks the arguments of a decision on record r of ticket t (the same
 * record) and sets up its context. */
int engine_begin(struct engine_ctx *c, const struct engine_policy *p, const struct ticket *t,
    const char *table, const struct snow_record *r, int64_t now, struct engine_result *out);
/* Stores what was observed of the ticket (never the requester). */
void engine_remember(struct ticket *t, const struct snow_record *r, const struct snow_obs *o);
/* *dst = a repaired copy of s capped at max (NULL stays NULL). */
void engine_set_text(char **dst, const char *s, size_t max);
/* The snapshot the engine keeps of src, in n (zeroed by the caller). */
void engine_snapshot(struct imperai_verification *n, const struct imperai_verification *src);
/* Replaces what dst held by the snapshot in n (which dst now owns). */
void engine_verif_move(struct imperai_verification *dst, struct imperai_verification *n);
int engine_state_live(enum tstate s);
int engine_state_final(enum tstate s);
/* v is about ticket t (its table and sys_id). */
int engine_ref_matches(const struct ticket *t, const struct imperai_verification *v);
/* Appends the CREATE of t's current generation. */
void engine_create(struct engine_ctx *c, const struct ticket *t, const struct flow *f,
    const struct snow_obs *o);
/* A change by someone else to a tracked ticket. */
void engine_decide(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o);

#endif
