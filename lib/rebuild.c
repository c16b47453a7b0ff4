/* rebuild: a ticket reconstructed from ServiceNow and imper.ai alone, after
 * the state directory was lost (imperai-snowctl rebuild).  Part of the
 * engine: pure, and decides through the engine's own helpers
 * (engine-int.h). */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "engine-int.h"
#include "flows.h"
#include "imperai.h"
#include "rebuild.h"
#include "render.h"
#include "snow.h"
#include "util.h"

/* The verification as the field shows it: v's details with the status
 * (and, once final, the action) the field shows, so that whatever imper.ai
 * reported beyond it is a change that engine_verification() writes. */
static void
rebuild_verif(struct ticket *t, const struct render_shown *s,
    const struct imperai_verification *v)
{
	struct imperai_verification n = { .risk_score = -1 };

	engine_snapshot(&n, v);
	if (s->status >= 0)
		n.status = (enum imperai_status)s->status;
	if (imperai_status_is_final(n.status))
		n.action.status = (enum imperai_action_status)s->action;
	engine_verif_move(&t->v, &n);
	str_replace(&t->request_id, v->id);
}

/* Only the id is known (imper.ai's feed no longer has the request). */
static void
rebuild_id(struct ticket *t, const struct render_shown *s)
{
	str_replace(&t->request_id, s->verification_id);
	str_replace(&t->v.id, s->verification_id);
	t->v.status = s->status >= 0 ? (enum imperai_status)s->status : IMPERAI_PENDING;
	t->v.action.status = (enum imperai_action_status)s->action;
	str_replace(&t->v.ticket.table, t->table);
	str_replace(&t->v.ticket.sys_id, t->sys_id);
}

static void
rebuild_fill(struct engine_ctx *c, struct ticket *t, const struct snow_record *r,
    const struct snow_obs *o, const struct render_shown *s, const struct flow *f,
    const struct imperai_verification *v)
{
	engine_remember(t, r, o);
	t->generation = s->generation;
	t->revision = s->revision;
	t->landed_revision = s->revision;
	t->own_mod_count = -1;
	str_replace(&t->flow, s->state == TS_UNTRACKED || f == NULL ? NULL : f->name);
	engine_set_text(&t->requester, o->requester, MAX_NAME);
	engine_set_text(&t->requester_name, o->requester_name, MAX_NAME);
	engine_set_text(&t->requester_email, o->requester_email, MAX_NAME);
	str_replace(&t->gen_reason, s->gen_reason ? s->gen_reason : "new");
	t->created_at = c->now;
	if (v != NULL)
		rebuild_verif(t, s, v);
	else if (s->verification_id != NULL)
		rebuild_id(t, s);
	t->sent_at = s->sent_at;
	t->resolved_at = s->resolved_at;
	t->on_fail_applied = s->status == IMPERAI_FAILED || s->risk_high;
	t->untracked_noted = s->state == TS_UNTRACKED;
	engine_enter_state(t, (enum tstate)s->state, s->closed_first ? "ticket_ended" : "rebuilt",
	    c->now, c->out);
	/* closed before the end: an open record now means it was reopened */
	t->ended = s->closed_first || o->ended;
	c->out->changed = 1;
}

/* What the daemon would have done next: the change imper.ai reported
 * beyond the field, the request the field waits for, and whatever the
 * record shows that the field does not (ended, recategorized...). */
static void
rebuild_resume(struct engine_ctx *c, struct ticket *t, const struct flow *f,
    const struct snow_obs *o, const struct imperai_verification *v)
{
	if (v != NULL && str_eq(t->request_id, v->id) && t->state != TS_AWAITING_REQUEST &&
	    (engine_state_live(t->state) || engine_state_final(t->state)))
		engine_verification(c->p, t, v, c->now, c->out);
	if (t->state == TS_AWAITING_REQUEST && f != NULL && !o->ended &&
	    str_eq(f->name, t->flow))
		engine_create(c, t, f, o);
	else
		engine_decide(c, t, f, o);
	t->ended = o->ended;
}

int
rebuild_ticket(const struct engine_policy *p, struct ticket *t, const char *table,
    const struct snow_record *r, const struct imperai_verification *v, int64_t now,
    struct engine_result *out)
{
	struct engine_ctx c;
	struct snow_obs o;
	struct render_shown s;
	const struct flow *f;
	int rc;

	if ((rc = engine_begin(&c, p, t, table, r, now, out)) < 0)
		return rc;
	if (t->generation != 0)
		return -EINVAL;
	snow_obs_parse(c.tc, r, &o);
	if ((rc = render_parse_field(o.field, v ? v->action.type : NULL, &s)) < 0) {
		render_shown_free(&s);
		return rc;
	}
	if (v != NULL && (!engine_ref_matches(t, v) || s.state == TS_AWAITING_REQUEST ||
	    s.state == TS_UNTRACKED ||
	    (s.verification_id != NULL && !str_eq(s.verification_id, v->id))))
		v = NULL;	/* not the request the field shows */
	f = p->match(p->flows, table, r);
	rebuild_fill(&c, t, r, &o, &s, f, v);
	render_shown_free(&s);
	rebuild_resume(&c, t, f, &o, v);
	return 0;
}
