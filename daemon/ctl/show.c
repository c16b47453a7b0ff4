/* ctl-show: `imperai-snowctl show TICKET|VERIFICATION_ID`: everything the
 * daemon knows about one ticket, its pending writes and its history. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "ctl.h"
#include "codec.h"
#include "engine.h"
#include "flows.h"
#include "imperai.h"
#include "store.h"
#include "util.h"

/* One outbox entry of the ticket. */
struct show_write {
	uint64_t		 seq;
	struct outbox_entry	 en;
};

struct show {
	int		 loaded;	/* t was initialised */
	char		*asked_id;	/* the verification id asked for, if one was */
	struct ticket	 t;
	struct show_write *w;
	size_t		 nw;
	char		*action;	/* the flow's requested action */
	char		*ticket_url;
};

/* number -> table/sys_id, or verification id -> table/sys_id. */
static int
show_find(struct store_txn *txn, const char *arg, char **table, char **sys_id, char **vid)
{
	char *upper = xstrdup(arg);
	struct buf b;
	json_object *o = NULL, *jt, *js;
	int rc;

	for (char *p = upper; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	rc = store_ticket_by_number(txn, arg, table, sys_id);
	if (rc == -ENOENT)
		rc = store_ticket_by_number(txn, upper, table, sys_id);
	free(upper);
	if (rc != -ENOENT)
		return rc;
	buf_init(&b);
	if ((rc = store_verification_get(txn, arg, &b)) == 0) {
		o = json_tokener_parse(b.data);
		rc = -EBADMSG;
		if (o && json_object_object_get_ex(o, "table", &jt) &&
		    json_object_object_get_ex(o, "sys_id", &js)) {
			*table = xstrdup(json_object_get_string(jt));
			*sys_id = xstrdup(json_object_get_string(js));
			*vid = xstrdup(arg);
			rc = 0;
		}
		json_object_put(o);
	}
	buf_free(&b);
	return rc;
}

struct show_scan {
	struct show	*s;
	const char	*table;
	const char	*sys_id;
};

static int
show_write_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct show_scan *sc = arg;
	struct outbox_entry en;
	char *cause = NULL;

	if (codec_entry_decode(val, len, &en, &cause) != 0) {
		free(cause);
		return 0;
	}
	if (!str_eq(en.e.table, sc->table) || strcmp(en.e.sys_id, sc->sys_id) != 0) {
		outbox_entry_free(&en);
		return 0;
	}
	sc->s->w = xreallocarray(sc->s->w, sc->s->nw + 1, sizeof(*sc->s->w));
	sc->s->w[sc->s->nw].seq = seq;
	sc->s->w[sc->s->nw++].en = en;
	return 0;
}

static int
show_load(struct ctl *c, struct store_txn *txn, const char *arg, struct show *s)
{
	char *table = NULL, *sys_id = NULL, *cause = NULL;
	struct show_scan sc = { s, NULL, NULL };
	struct buf b;
	int rc;

	buf_init(&b);
	rc = show_find(txn, arg, &table, &sys_id, &s->asked_id);
	if (rc == 0 && (rc = store_ticket_get(txn, table, sys_id, &b)) == 0) {
		memset(&s->t, 0, sizeof(s->t));	/* decode initialises it */
		s->loaded = 1;
		if ((rc = codec_ticket_decode(b.data, b.len, &s->t, &cause)) != 0) {
			fprintf(stderr, "imperai-snowctl: the stored record of %s cannot be read: %s\n",
			    arg, cause ? cause : "unknown format");
			rc = -EBADMSG;
		}
	}
	if (rc == -ENOENT)
		fprintf(stderr, "imperai-snowctl: no such ticket or verification: %s\n", arg);
	else if (rc != 0 && rc != -EBADMSG)
		fprintf(stderr, "imperai-snowctl: cannot read the store: %s\n", store_strerror(rc));
	if (rc == 0) {
		sc.table = table;
		sc.sys_id = sys_id;
		store_outbox_each(txn, show_write_one, &sc);
	}
	(void)c;
	free(cause);
	free(table);
	free(sys_id);
	buf_free(&b);
	return rc;
}

/* What the flow asks imper.ai to let the requester do: from the policy
 * file named by the settings, when it can be read. */
static char *
show_action(const struct ctl *c, const char *flow)
{
	struct errlist errs = { 0 };
	struct flows *fl = NULL;
	const struct flow *f;
	char *action = NULL;

	if (c->cfg == NULL || flow == NULL || c->cfg->flows_file == NULL)
		return NULL;
	if (flows_load(c->cfg->flows_file, &fl, &errs) == 0 && (f = flows_find(fl, flow)) != NULL &&
	    f->action != NULL)
		action = xstrdup(f->action);
	flows_free(fl);
	errlist_free(&errs);
	return action;
}

static void
show_free(struct show *s)
{
	if (s->loaded)
		ticket_free(&s->t);
	for (size_t i = 0; i < s->nw; i++)
		outbox_entry_free(&s->w[i].en);
	free(s->w);
	free(s->asked_id);
	free(s->action);
	free(s->ticket_url);
}

/* --- text ------------------------------------------------------------------ */

/* "label:" padded, then the value; further lines of a multi-line value
 * are indented under the first. */
static void
show_field(const char *indent, const char *label, const char *value)
{
	char *copy, *line, *save = NULL, *safe;
	int first = 1;

	printf("%s%-*s ", indent, 18 - (int)strlen(indent), label);
	if (value == NULL || *value == '\0') {
		printf("-\n");
		return;
	}
	copy = xstrdup(value);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		safe = ctl_printable(line);
		printf("%*s%s\n", first ? 0 : 19, "", safe);
		free(safe);
		first = 0;
	}
	if (first)
		printf("-\n");
	free(copy);
}

static void
show_fieldf(const char *indent, const char *label, const char *fmt, ...) PRINTFLIKE(3, 4);
static void
show_fieldf(const char *indent, const char *label, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvprintf(fmt, ap);
	va_end(ap);
	show_field(indent, label, s);
	free(s);
}

/* The current request used up the flow's automatic attempts. */
static int
show_no_attempt_left(const struct ticket *t)
{
	return t->retry_exhausted && (t->v.status == IMPERAI_TIMED_OUT ||
	    t->v.status == IMPERAI_NOT_ENOUGH_QUESTIONS);
}

/* Every request of the series: the earlier attempts, then the current. */
static void
show_text_attempts(const struct show *s)
{
	const struct ticket *t = &s->t;
	char when[20];

	if (t->nattempts == 0)
		return;
	printf("Attempts:\n");
	for (size_t i = 0; i < t->nattempts; i++) {
		const struct ticket_attempt *a = &t->attempts[i];

		ctl_format_second(a->at, when);
		printf("  %" PRIu32 ". %s  %s  %s%s\n", a->attempt, a->request_id ?
		    a->request_id : "-", ctl_status_label((int)a->status), when, a->at ? " UTC" : "");
	}
	printf("  %" PRIu32 ". %s  %s (current%s)\n", ticket_attempt_number(t),
	    t->request_id ? t->request_id : "-", t->v.id ? ctl_status_label((int)t->v.status) :
	    "Pending", show_no_attempt_left(t) ? ", no automatic attempt left" : "");
}

static void
show_text_verification(const struct ctl *c, const struct show *s)
{
	const struct imperai_verification *v = &s->t.v;
	enum imperai_risk risk = ctl_ticket_risk(c, &s->t);
	char when[20];

	if (s->t.request_id == NULL) {
		show_field("", "Verification:", "none requested yet");
		return;
	}
	show_fieldf("", "Verification:", "%s (request %" PRIu32 ")", s->t.request_id,
	    s->t.generation);
	if (s->asked_id && !str_eq(s->asked_id, s->t.request_id))
		show_fieldf("  ", "Note:", "%s was canceled when the requester changed; "
		    "the current request is shown", s->asked_id);
	show_field("  ", "Status:", v->id ? ctl_status_label((int)v->status) : "Pending");
	if (risk == IMPERAI_RISK_UNKNOWN)
		show_field("  ", "Risk:", NULL);
	else
		show_fieldf("  ", "Risk:", "%s (score %d of 10)", ctl_risk_label(risk), v->risk_score);
	show_field("  ", "Channel:", v->channel);
	show_field("  ", "Sent to:", v->recipient_masked);
	show_field("  ", "Initiated by:", v->initiated_by);
	show_field("  ", "Analysis:", v->analysis_summary);
	show_field("  ", "Additional info:", v->additional_info);
	show_field("  ", "Recommendation:", v->recommendation);
	ctl_format_second(v->updated_at, when);
	show_fieldf("  ", "Time:", "%s%s", when, v->updated_at ? " UTC" : "");
	ctl_format_second(v->completed_at, when);
	show_fieldf("  ", "Completed:", "%s%s", when, v->completed_at ? " UTC" : "");
	if (v->action.type && v->action.status != IMPERAI_ACTION_NONE) {
		ctl_format_second(v->action.completed_at, when);
		show_fieldf("  ", "Action:", "%s %s%s%s", v->action.type,
		    imperai_action_status_name(v->action.status), v->action.completed_at ? " " : "",
		    v->action.completed_at ? when : "");
	}
}

/* The history oldest first, whatever the ring's start: a stable
 * insertion sort by time.  Returns how many entries there are. */
static size_t
show_history_order(const struct ticket *t, size_t order[ENGINE_HISTORY_MAX])
{
	size_t n = t->nhistory < ENGINE_HISTORY_MAX ? t->nhistory : ENGINE_HISTORY_MAX;

	for (size_t i = 0; i < n; i++) {
		size_t k = i;
		while (k > 0 && t->history[order[k - 1]].at > t->history[i].at) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = i;
	}
	return n;
}

static void
show_text_history(const struct show *s)
{
	const struct ticket *t = &s->t;
	size_t order[ENGINE_HISTORY_MAX], n = show_history_order(t, order);
	char when[20];

	printf("History:\n");
	if (n == 0)
		printf("  -\n");
	for (size_t i = 0; i < n; i++) {
		const struct ticket_history *h = &t->history[order[i]];
		char *why = ctl_printable(h->why ? h->why : "");

		ctl_format_second(h->at, when);
		printf("  %s  %s -> %s%s%s\n", when, engine_state_name(h->from),
		    engine_state_name(h->to), *why ? "  " : "", why);
		free(why);
	}
}

static void
show_text_writes(const struct show *s)
{
	char when[20];

	printf("Pending writes:%s\n", s->nw == 0 ? "    none" : "");
	for (size_t i = 0; i < s->nw; i++) {
		const struct outbox_entry *en = &s->w[i].en;
		const struct effect *e = &en->e;
		char *err = ctl_printable(en->last_error);

		if (en->phase == OUTBOX_PARKED)
			snprintf(when, sizeof(when), "parked");
		else
			ctl_format_second(en->not_before, when);
		printf("  #%" PRIu64 " %s %s, %d attempt%s, next: %s%s%s\n", s->w[i].seq,
		    engine_effect_name(e->kind), e->tag ? e->tag : "", en->attempts,
		    en->attempts == 1 ? "" : "s", en->not_before ? when : "now",
		    *err ? ", last error: " : "", err);
		free(err);
	}
}

static void
show_text(const struct ctl *c, const struct show *s)
{
	const struct ticket *t = &s->t;
	char *email = ctl_masked_email(t), when[20];

	show_fieldf("", "Ticket:", "%s  %s", t->number ? t->number : "-",
	    t->short_description ? t->short_description : "");
	show_fieldf("", "Table:", "%s (sys_id %s)", t->table, t->sys_id);
	show_field("", "Description:", t->description);
	show_field("", "Requested action:", s->action);
	show_fieldf("", "Requester:", "%s%s%s%s", t->requester_name ? t->requester_name : "-",
	    email ? " <" : "", email ? email : "", email ? ">" : "");
	show_field("", "Category:", t->category);
	show_field("", "Flow:", t->flow);
	ctl_format_second(t->state_since, when);
	show_fieldf("", "State:", "%s since %s UTC", engine_state_name(t->state), when);
	show_text_verification(c, s);
	show_text_attempts(s);
	printf("Links:\n");
	show_field("  ", "Ticket:", s->ticket_url);
	show_field("  ", "Details:", t->v.details_url);
	show_text_history(s);
	show_text_writes(s);
	show_field("", "Last error:", t->last_error);
	free(email);
}

/* --- JSON ------------------------------------------------------------------ */

static json_object *
show_json_attempts(const struct ticket *t)
{
	json_object *a = json_object_new_array(), *e;

	for (size_t i = 0; i < t->nattempts; i++) {
		e = json_object_new_object();
		json_object_object_add(e, "attempt", json_object_new_int64(t->attempts[i].attempt));
		json_object_object_add(e, "verification", ctl_json_str(t->attempts[i].request_id));
		json_object_object_add(e, "status",
		    json_object_new_string(imperai_status_name(t->attempts[i].status)));
		json_object_object_add(e, "ended", ctl_json_time(t->attempts[i].at));
		json_object_array_add(a, e);
	}
	e = json_object_new_object();
	json_object_object_add(e, "attempt", json_object_new_int64(ticket_attempt_number(t)));
	json_object_object_add(e, "verification", ctl_json_str(t->request_id));
	json_object_object_add(e, "status", json_object_new_string(t->v.id ?
	    imperai_status_name(t->v.status) : "pending"));
	json_object_object_add(e, "current", json_object_new_boolean(1));
	json_object_array_add(a, e);
	return a;
}

static json_object *
show_json_verification(const struct ctl *c, const struct show *s)
{
	const struct imperai_verification *v = &s->t.v;
	enum imperai_risk risk = ctl_ticket_risk(c, &s->t);
	json_object *o = json_object_new_object(), *a = json_object_new_object();

	json_object_object_add(o, "id", ctl_json_str(s->t.request_id));
	json_object_object_add(o, "generation", json_object_new_int64(s->t.generation));
	json_object_object_add(o, "status", ctl_json_str(ctl_status_name(v->id ?
	    (int)v->status : IMPERAI_PENDING)));
	json_object_object_add(o, "risk_level", ctl_json_str(ctl_risk_name(risk)));
	json_object_object_add(o, "risk_score", v->id && v->risk_score >= 0 ?
	    json_object_new_int(v->risk_score) : NULL);
	json_object_object_add(o, "channel", ctl_json_str(v->channel));
	json_object_object_add(o, "recipient", ctl_json_str(v->recipient_masked));
	json_object_object_add(o, "initiated_by", ctl_json_str(v->initiated_by));
	json_object_object_add(o, "analysis_summary", ctl_json_str(v->analysis_summary));
	json_object_object_add(o, "additional_info", ctl_json_str(v->additional_info));
	json_object_object_add(o, "recommendation", ctl_json_str(v->recommendation));
	json_object_object_add(o, "time", ctl_json_time(v->updated_at));
	json_object_object_add(o, "completed_at", ctl_json_time(v->completed_at));
	json_object_object_add(o, "details_url", ctl_json_str(v->details_url));
	json_object_object_add(a, "type", ctl_json_str(v->action.type));
	json_object_object_add(a, "status", json_object_new_string(
	    imperai_action_status_name(v->action.status)));
	json_object_object_add(a, "completed_at", ctl_json_time(v->action.completed_at));
	json_object_object_add(o, "action", a);
	return o;
}

static json_object *
show_json_history(const struct ticket *t)
{
	json_object *a = json_object_new_array();
	size_t order[ENGINE_HISTORY_MAX], n = show_history_order(t, order);

	for (size_t i = 0; i < n; i++) {
		const struct ticket_history *th = &t->history[order[i]];
		json_object *h = json_object_new_object();

		json_object_object_add(h, "time", ctl_json_time(th->at));
		json_object_object_add(h, "from", json_object_new_string(engine_state_name(th->from)));
		json_object_object_add(h, "to", json_object_new_string(engine_state_name(th->to)));
		json_object_object_add(h, "why", ctl_json_str(th->why));
		json_object_array_add(a, h);
	}
	return a;
}

static json_object *
show_json_writes(const struct show *s)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < s->nw; i++) {
		const struct outbox_entry *en = &s->w[i].en;
		const struct effect *e = &en->e;
		json_object *w = json_object_new_object();
		int parked = en->phase == OUTBOX_PARKED;

		json_object_object_add(w, "seq", json_object_new_int64((int64_t)s->w[i].seq));
		json_object_object_add(w, "kind", json_object_new_string(engine_effect_name(e->kind)));
		json_object_object_add(w, "tag", ctl_json_str(e->tag));
		json_object_object_add(w, "attempts", json_object_new_int(en->attempts));
		json_object_object_add(w, "parked", json_object_new_boolean(parked));
		json_object_object_add(w, "not_before", parked ? NULL : ctl_json_time(en->not_before));
		json_object_object_add(w, "last_error", ctl_json_str(en->last_error));
		json_object_array_add(a, w);
	}
	return a;
}

static void
show_json(const struct ctl *c, const struct show *s)
{
	const struct ticket *t = &s->t;
	json_object *o = json_object_new_object(), *req = json_object_new_object(),
	    *links = json_object_new_object();
	char *email = ctl_masked_email(t);

	json_object_object_add(o, "ticket", ctl_json_str(t->number));
	json_object_object_add(o, "table", ctl_json_str(t->table));
	json_object_object_add(o, "sys_id", json_object_new_string(t->sys_id));
	json_object_object_add(o, "short_description", ctl_json_str(t->short_description));
	json_object_object_add(o, "description", ctl_json_str(t->description));
	json_object_object_add(o, "requested_action", ctl_json_str(s->action));
	json_object_object_add(req, "name", ctl_json_str(t->requester_name));
	json_object_object_add(req, "email", ctl_json_str(email));
	json_object_object_add(o, "requester", req);
	json_object_object_add(o, "category", ctl_json_str(t->category));
	json_object_object_add(o, "flow", ctl_json_str(t->flow));
	json_object_object_add(o, "state", json_object_new_string(engine_state_name(t->state)));
	json_object_object_add(o, "state_since", ctl_json_time(t->state_since));
	json_object_object_add(o, "verification", t->request_id ? show_json_verification(c, s) : NULL);
	json_object_object_add(links, "ticket", ctl_json_str(s->ticket_url));
	json_object_object_add(links, "details", ctl_json_str(t->v.details_url));
	json_object_object_add(o, "links", links);
	json_object_object_add(o, "attempts", show_json_attempts(t));
	if (t->attempt_max > 0)
		json_object_object_add(o, "attempts_allowed", json_object_new_int64(t->attempt_max));
	json_object_object_add(o, "no_automatic_attempt_left",
	    json_object_new_boolean(show_no_attempt_left(t)));
	json_object_object_add(o, "history", show_json_history(t));
	json_object_object_add(o, "pending_writes", show_json_writes(s));
	json_object_object_add(o, "last_error", ctl_json_str(t->last_error));
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	free(email);
}

/* <instance>/<table>.do?sys_id=<sys_id>, or the link imper.ai echoed. */
static char *
show_ticket_url(const struct ctl *c, const struct ticket *t)
{
	const char *inst = c->cfg ? c->cfg->snow.instance : NULL;
	size_t len = inst ? strlen(inst) : 0;

	if (inst == NULL)
		return t->v.ticket.url ? xstrdup(t->v.ticket.url) : NULL;
	while (len > 0 && inst[len - 1] == '/')
		len--;
	return xprintf("%.*s/%s.do?sys_id=%s", (int)len, inst, t->table, t->sys_id);
}

int
ctl_cmd_show(struct ctl *c, int argc, char **argv)
{
	struct show s;
	struct store_txn *txn;
	int json = 0, rc;

	memset(&s, 0, sizeof(s));
	if ((rc = ctl_flag_opts(c, argc, argv, "show", "json", 'j', &json, 1)) >= 0)
		return rc;
	if ((rc = ctl_open(c, 0)) != 0)
		return rc;
	if ((rc = store_begin(c->st, 1, &txn)) != 0) {
		fprintf(stderr, "imperai-snowctl: cannot read the store: %s\n", store_strerror(rc));
		return CTL_EX_ERROR;
	}
	rc = show_load(c, txn, argv[optind], &s);
	store_abort(txn);
	if (rc == 0) {
		s.action = show_action(c, s.t.flow);
		s.ticket_url = show_ticket_url(c, &s.t);
		if (json)
			show_json(c, &s);
		else
			show_text(c, &s);
	}
	show_free(&s);
	return rc == 0 ? CTL_EX_OK : CTL_EX_ERROR;
}
