/* send: an outbox entry on the wire.  Starts the request of each job the
 * outbox picked -- or, where the outbox says so, its read-back first --
 * and hands the answer to the engine.  What an answer means for the entry
 * (done, tried again, parked, landed) is the outbox's to say. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "imperai.h"
#include "log.h"
#include "loopd.h"
#include "snow.h"
#include "util.h"

static const char *
send_why(int err, const char *cause)
{
	return cause ? cause : strerror(-err);
}

struct send_failure {
	const struct effect	*e;
	const char		*why;
};

static int
send_failed_fn(struct loop *l, struct ticket *t, const void *arg, int64_t now,
    struct engine_result *out)
{
	const struct send_failure *f = arg;

	return engine_effect_failed(&l->pol, t, f->e, f->why, now, out);
}

/* A permanent failure: the engine decides what the ticket shows. */
static void
send_refused(struct job *j, const char *why)
{
	struct loop *l = j->l;
	struct send_failure f = { &j->en.e, why };

	log_kv(LOG_LVL_ERR, "write refused", "ticket", j->en.e.number, "effect",
	    engine_effect_name(j->en.e.kind), "error", why, NULL);
	l->m_write_failures[j->en.e.kind]++;
	commit_decide(l, commit_ticket(l, j->en.e.table, j->en.e.sys_id), send_failed_fn, &f);
	outbox_job_end(j, 1);
}

/* An error answer to an imper.ai request or a PATCH. */
static void
send_error(struct job *j, long status, const char *why)
{
	if (http_status_permanent(status))
		send_refused(j, why);
	else
		outbox_job_again(j, why);
}

struct send_created {
	const struct job			*j;
	const struct imperai_verification	*v;
};

static int
send_created_fn(struct loop *l, struct ticket *t, const void *arg, int64_t now,
    struct engine_result *out)
{
	const struct send_created *c = arg;
	int rc = engine_created(&l->pol, t, c->j->en.e.generation, c->v, now, out);

	if (rc == 0)
		commit_index_verification(l, c->v->id, t, c->j->en.e.generation);
	return rc;
}

static void
send_create_done(int err, long status, const char *cause, struct imperai_verification *v,
    void *arg)
{
	struct job *j = arg;
	struct loop *l = j->l;
	struct send_created c = { j, v };

	if (err == -ECANCELED) {
		outbox_job_end(j, 0);
		return;
	}
	if (err < 0) {
		send_error(j, status, send_why(err, cause));
		return;
	}
	commit_decide(l, commit_ticket(l, j->en.e.table, j->en.e.sys_id), send_created_fn, &c);
	l->m_step.writes[EFFECT_CREATE]++;
	log_kv(LOG_LVL_INFO, "verification requested", "ticket", j->en.e.number,
	    "verification", v->id, NULL);
	outbox_job_end(j, 1);
}

static void
send_cancel_done(int err, long status, const char *cause, struct imperai_verification *v,
    void *arg)
{
	struct job *j = arg;

	if (err == -ECANCELED) {
		outbox_job_end(j, 0);
		return;
	}
	/* Already final: the answer says how it ended, which the ticket shows
	 * (the feed would say so too, later). */
	if (status == 409 && v != NULL && v->id != NULL)
		poll_verification(j->l, v);
	/* Gone or already final: nothing left to cancel. */
	if (err < 0 && status != 404 && status != 409) {
		send_error(j, status, send_why(err, cause));
		return;
	}
	log_kv(LOG_LVL_INFO, "verification canceled", "ticket", j->en.e.number,
	    "verification", j->en.e.request_id, NULL);
	j->l->m_step.writes[EFFECT_CANCEL]++;
	outbox_job_end(j, 1);
}

struct send_landed {
	const struct job		*j;
	const struct snow_record	*rec;
};

/* A merged PATCH landed every revision it carries, in order. */
static int
send_patched_fn(struct loop *l, struct ticket *t, const void *arg, int64_t now,
    struct engine_result *out)
{
	const struct send_landed *p = arg;
	const struct job *j = p->j;
	int ok = 0;

	for (size_t i = 0; i < j->ngone; i++)
		ok |= engine_patched(&l->pol, t, j->revs[i], p->rec, now, out) == 0;
	ok |= engine_patched(&l->pol, t, j->en.e.revision, p->rec, now, out) == 0;
	return ok ? 0 : -EINVAL;
}

static void
send_patched(struct job *j, struct snow_record *rec)
{
	struct loop *l = j->l;
	struct lticket *lt = commit_ticket(l, j->en.e.table, j->en.e.sys_id);
	struct send_landed p = { j, rec };
	const struct effect *e = &j->en.e;
	int resolving = e->revision != 0 && e->revision == lt->t.resolve_revision;

	commit_decide(l, lt, send_patched_fn, &p);
	report_patched(l, e, resolving, &lt->t);
	log_kv(LOG_LVL_INFO, "ticket updated", "ticket", e->number, "event", e->tag, NULL);
	commit_audit(l, "write", e->tag ? e->tag : "patch", e->number);
	outbox_job_end(j, 1);
}

static void
send_patch_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct job *j = arg;

	if (err == -ECANCELED) {
		outbox_job_end(j, 0);
		return;
	}
	if (err == -ENOENT) {
		log_kv(LOG_LVL_WARN, "ticket no longer exists or is hidden by an ACL: write dropped",
		    "ticket", j->en.e.number, NULL);
		outbox_job_end(j, 1);
		return;
	}
	if (err < 0) {
		/* Rate-limited or not authenticated: ServiceNow refused it
		 * before doing anything. */
		if (status == 429 || status == 401)
			outbox_unsent(&j->en);
		/* only ServiceNow's own JSON error on the write itself is final:
		 * a proxy's page (-EAGAIN) is tried again */
		if (err == -EAGAIN)
			outbox_job_again(j, send_why(err, cause));
		else
			send_error(j, status, send_why(err, cause));
		return;
	}
	send_patched(j, rec);
}

/* A resolving PATCH the engine withdrew since (the ticket changed first). */
static int
send_withdrawn(struct loop *l, const struct job *j)
{
	struct lticket *lt;

	if (!outbox_resolves(&j->en.e))
		return 0;
	lt = commit_ticket(l, j->en.e.table, j->en.e.sys_id);
	return lt->t.resolve_revision != j->en.e.revision;
}

static void
send_drop(struct job *j)
{
	log_kv(LOG_LVL_NOTICE, "resolve not written: the ticket changed before it was sent",
	    "ticket", j->en.e.number, NULL);
	outbox_job_end(j, 1);
}

/* A parked PATCH released after a later one of its ticket landed: the
 * field it carries is older than the one shown, so only the rest of it
 * goes (its work note).  1 when nothing is left: the entry is done. */
static int
send_superseded(struct loop *l, struct job *j)
{
	const struct config_table *ct = config_table(l->cfg, j->en.e.table);
	struct lticket *lt = commit_ticket(l, j->en.e.table, j->en.e.sys_id);

	if (ct == NULL || !outbox_superseded(&j->en, lt->t.landed_revision))
		return 0;
	log_kv(LOG_LVL_NOTICE, "parked write sent without its field: a later one landed first",
	    "ticket", j->en.e.number, "event", j->en.e.tag, NULL);
	return outbox_strip_field(&j->en, ct->field);
}

static void
send_patch(struct job *j)
{
	struct loop *l = j->l;
	size_t n;
	const char *const *fields = poll_fields(l, j->en.e.table, &n);
	char *cause = NULL;

	if (snow_patch(l->snow, j->en.e.table, j->en.e.sys_id, j->en.e.patch_json, fields, n,
	    send_patch_done, j, &cause) < 0) {
		send_refused(j, cause ? cause : "request refused");
		free(cause);
	}
}

/* The read-back before replaying a PATCH that may have landed, and before
 * resolving: a change made since the resolve was decided is decided first. */
static void
send_check_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct job *j = arg;
	struct loop *l = j->l;
	const struct config_table *ct;

	if (err == -ECANCELED || err == -ENOENT) {
		outbox_job_end(j, err == -ENOENT);
		return;
	}
	/* A read-back is a GET: whatever answered (a proxy's HTML page, an
	 * ACL's 403 until an admin fixes it), asking again later is safe, so it
	 * is retried with backoff; whether the write landed stays unknown, so
	 * it is neither dropped nor sent blind. */
	if (err < 0) {
		outbox_job_again(j, send_why(err, cause));
		return;
	}
	ct = config_table(l->cfg, j->en.e.table);
	if (outbox_shows(&j->en, ct ? snow_record_get(rec, ct->field) : NULL)) {
		log_kv(LOG_LVL_INFO, "write had landed before the answer was lost: not repeated",
		    "ticket", j->en.e.number, "event", j->en.e.tag, NULL);
		/* rec is the ticket as it is now, not our PATCH's answer: what
		 * others changed since (an agent closing it, a new caller) is
		 * decided as an observed change first, or it would pass for our
		 * own write and the next poll would skip it as seen. */
		poll_observe(l, j->en.e.table, rec);
		send_patched(j, rec);
		return;
	}
	if (outbox_resolves(&j->en.e)) {
		poll_observe(l, j->en.e.table, rec);
		if (send_withdrawn(l, j)) {
			send_drop(j);
			return;
		}
	}
	if (outbox_job_park_unlanded(j))
		return;
	send_patch(j);
}

static void
send_check(struct job *j)
{
	struct loop *l = j->l;
	char *cause = NULL;
	size_t n;
	const char *const *fields = poll_fields(l, j->en.e.table, &n);

	if (snow_get(l->snow, j->en.e.table, j->en.e.sys_id, fields, n, send_check_done, j,
	    &cause) < 0) {
		send_refused(j, cause ? cause : "request refused");
		free(cause);
	}
}

void
send_start(struct loop *l, struct job *j)
{
	switch (j->en.e.kind) {
	case EFFECT_CREATE:
		l->imp_jobs++;
		imperai_create(l->imp, &j->en.e.create, send_create_done, j);
		break;
	case EFFECT_CANCEL:
		l->imp_jobs++;
		imperai_cancel(l->imp, j->en.e.request_id, send_cancel_done, j);
		break;
	case EFFECT_PATCH:
		l->snow_jobs++;
		if (send_withdrawn(l, j))
			send_drop(j);
		else if (j->checking)
			send_check(j);
		else if (send_superseded(l, j))
			outbox_job_end(j, 1);
		else
			send_patch(j);
		break;
	}
}
