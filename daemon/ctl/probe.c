/* ctl-probe: `imperai-snowctl check-config [--probe]`.  Without --probe it
 * is `imperai-snowd -n` (same loading, same messages).  --probe then asks
 * ServiceNow and imper.ai whether the settings and the policy work: the
 * login, each watched table, its verification field, whether the requester
 * of its newest ticket can be read, the categories the flows name, the
 * imper.ai key.  Every failure is one line saying what to
 * change.  Nothing is written anywhere. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "ctl.h"
#include "flows.h"
#include "http.h"
#include "imperai.h"
#include "refs.h"
#include "snow.h"
#include "util.h"

enum probe_kind { P_LOGIN, P_TABLE, P_FIELD, P_CHOICE, P_IMPERAI, P_REQUESTER };

struct probe;

/* One request of the probe and what it checks. */
struct pcall {
	struct probe	*p;
	enum probe_kind	 kind;
	int		 done;
	size_t		 ti;		/* index in servicenow.tables */
	const char	*table;
	const char	*element;	/* P_CHOICE: category or subcategory */
	const char	*value;
	const struct flow *flow;
};

struct probe {
	const struct config *cfg;
	const struct flows *flows;
	struct http_client *http;
	struct snow_client *snow;
	struct imperai_client *imp;
	struct pcall	**calls;
	size_t		 ncalls;
	int		 pending;
	int		 login_ok;
	size_t		 nok;
	struct errlist	 fail;
};

/* Secrets must never reach the terminal, whatever a server echoed. */
static char *
probe_scrub(const struct config *cfg, const char *msg)
{
	const char *secrets[] = { cfg->snow.password, cfg->snow.client_secret, cfg->imperai.api_key };
	char *out = ctl_printable(msg), *hit;

	for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
		size_t n = secrets[i] ? strlen(secrets[i]) : 0;
		while (n > 0 && (hit = strstr(out, secrets[i])) != NULL) {
			char *next = xprintf("%.*s***%s", (int)(hit - out), out, hit + n);
			free(out);
			out = next;
		}
	}
	return out;
}

/* The message formatted and scrubbed (caller frees). */
static char *
probe_vformat(const struct probe *p, const char *fmt, va_list ap) PRINTFLIKE(2, 0);
static char *
probe_vformat(const struct probe *p, const char *fmt, va_list ap)
{
	char *raw = xvprintf(fmt, ap), *safe = probe_scrub(p->cfg, raw);

	free(raw);
	return safe;
}

static void
probe_fail(struct probe *p, const char *fmt, ...) PRINTFLIKE(2, 3);
static void
probe_fail(struct probe *p, const char *fmt, ...)
{
	va_list ap;
	char *safe;

	va_start(ap, fmt);
	safe = probe_vformat(p, fmt, ap);
	va_end(ap);
	errlist_add(&p->fail, "%s", safe);
	free(safe);
}

static void
probe_ok(struct probe *p, const char *fmt, ...) PRINTFLIKE(2, 3);
static void
probe_ok(struct probe *p, const char *fmt, ...)
{
	va_list ap;
	char *safe;

	va_start(ap, fmt);
	safe = probe_vformat(p, fmt, ap);
	va_end(ap);
	printf("ok: %s\n", safe);
	free(safe);
	p->nok++;
}

static struct pcall *
probe_call(struct probe *p, enum probe_kind kind)
{
	struct pcall *pc = xcalloc(1, sizeof(*pc));

	pc->p = p;
	pc->kind = kind;
	p->calls = xreallocarray(p->calls, p->ncalls + 1, sizeof(*p->calls));
	p->calls[p->ncalls++] = pc;
	p->pending++;
	return pc;
}

/* First answer counts; a callback may come once per page. */
static int
probe_first(struct pcall *pc)
{
	if (pc->done)
		return 0;
	pc->done = 1;
	pc->p->pending--;
	return 1;
}

/* The one place that submits a query: the client's signature in one spot. */
static void
probe_query(struct pcall *pc, const char *table, const char *query,
    const char *const *fields, size_t nfields, snow_list_fn done)
{
	char *cause = NULL;

	/* Refused before sending (a name ServiceNow cannot have): report it as
	 * the answer, since done is then never called. */
	if (snow_query(pc->p->snow, table, query, fields, nfields, 1, done, pc, &cause) < 0) {
		done(-EINVAL, cause, NULL, pc);
		free(cause);
	}
}

static int
probe_auth_error(int err)
{
	return err == -EACCES || err == -EPERM;
}

static const char *
probe_why(int err, const char *cause)
{
	return cause && *cause ? cause : strerror(err < 0 ? -err : err);
}

/* ": hint", unless the client's cause already says what to check. */
static const char *
probe_hint(const char *cause, const char *hint)
{
	return cause && strstr(cause, "check ") ? "" : hint;
}

static void
probe_login_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pcall *pc = arg;
	struct probe *p = pc->p;
	const struct config *c = p->cfg;
	const char *user = c->snow.user ? c->snow.user : "(oauth client)";

	if (!probe_first(pc))
		return;
	(void)page;
	if (err == 0) {
		p->login_ok = 1;
		probe_ok(p, "servicenow: logged in to %s as %s", c->snow.instance, user);
	} else if (probe_auth_error(err))
		probe_fail(p, "servicenow: login to %s as %s refused: %s%s", c->snow.instance, user,
		    probe_why(err, cause), probe_hint(cause, c->snow.auth == CONFIG_AUTH_OAUTH ?
		    ": check servicenow.user, its password, servicenow.client_id and the client "
		    "secret" : ": check servicenow.user and its password "
		    "(servicenow.password_credential or password_file)"));
	else
		probe_fail(p, "servicenow: cannot log in to %s as %s: %s: check servicenow.instance "
		    "(and servicenow.proxy, servicenow.ca_file), then the user and its password",
		    c->snow.instance, user, probe_why(err, cause));
}

static void
probe_table_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pcall *pc = arg;
	struct probe *p = pc->p;

	if (!probe_first(pc))
		return;
	(void)page;
	if (err == 0)
		probe_ok(p, "servicenow: table %s is readable", pc->table);
	else
		probe_fail(p, "servicenow: table %s is not readable by %s: %s: check "
		    "servicenow.tables[%zu].name and the user's roles (read access to %s)", pc->table,
		    p->cfg->snow.user ? p->cfg->snow.user : "the integration user",
		    probe_why(err, cause), pc->ti, pc->table);
}

static void
probe_field_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pcall *pc = arg;
	struct probe *p = pc->p;
	const char *field = p->cfg->snow.tables[pc->ti].field, *type;

	if (!probe_first(pc))
		return;
	if (err != 0) {
		probe_fail(p, "servicenow: cannot read sys_dictionary to check %s.%s: %s: give the "
		    "integration user read access to sys_dictionary", pc->table, field,
		    probe_why(err, cause));
		return;
	}
	if (page == NULL || page->n == 0) {
		probe_fail(p, "servicenow: table %s has no field %s: create it (an HTML field: "
		    "System Definition > Dictionary) or set servicenow.tables[%zu].field",
		    pc->table, field, pc->ti);
		return;
	}
	type = snow_record_get(&page->v[0], "internal_type");
	if (!str_eq(type, "html"))
		probe_fail(p, "servicenow: field %s.%s is of type %s, not html: make it an HTML "
		    "field, or set servicenow.tables[%zu].field to one", pc->table, field,
		    type && *type ? type : "(unknown)", pc->ti);
	else
		probe_ok(p, "servicenow: field %s.%s exists and is an HTML field", pc->table, field);
}

static void
probe_requester_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pcall *pc = arg;
	struct probe *p = pc->p;
	const struct config *c = p->cfg;
	char *msg = NULL;

	if (!probe_first(pc))
		return;
	if (err != 0) {
		probe_fail(p, "servicenow: cannot read the requester of %s tickets: %s", pc->table,
		    probe_why(err, cause));
		return;
	}
	if (ctl_requester_verdict(pc->table, c->snow.tables[pc->ti].requester_field,
	    c->snow.user ? c->snow.user : "the integration user", page, &msg) < 0)
		probe_fail(p, "servicenow: %s", msg);
	else
		probe_ok(p, "servicenow: %s", msg);
	free(msg);
}

/* The requester of the newest ticket of a table: the daemon never verifies
 * an identity it cannot read, so an ACL hiding it stops every verification. */
static void
probe_submit_requester(struct probe *p, size_t ti)
{
	const char *rf = p->cfg->snow.tables[ti].requester_field;
	char *fields[CTL_REQUESTER_NFIELDS], *q;
	struct pcall *pc = probe_call(p, P_REQUESTER);

	pc->ti = ti;
	pc->table = p->cfg->snow.tables[ti].name;
	q = ctl_requester_query(rf, fields);
	probe_query(pc, pc->table, q, (const char *const *)fields, CTL_REQUESTER_NFIELDS,
	    probe_requester_done);
	free(q);
	for (size_t i = 0; i < CTL_REQUESTER_NFIELDS; i++)
		free(fields[i]);
}

static void
probe_choice_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pcall *pc = arg;
	struct probe *p = pc->p;

	if (!probe_first(pc))
		return;
	if (err != 0)
		probe_fail(p, "servicenow: cannot read sys_choice to check %s %s of flow %s: %s: "
		    "give the integration user read access to sys_choice", pc->element, pc->value,
		    pc->flow->name, probe_why(err, cause));
	else if (page == NULL || page->n == 0)
		probe_fail(p, "policy: flow %s (%s:%d): %s \"%s\" does not exist on table %s (no "
		    "active sys_choice): fix the flow's %s or add the choice in ServiceNow",
		    pc->flow->name, p->flows->path, pc->flow->line, pc->element, pc->value,
		    pc->table, strcmp(pc->element, "category") == 0 ? "categories" : "subcategories");
	else
		probe_ok(p, "servicenow: %s %s of flow %s exists on %s", pc->element, pc->value,
		    pc->flow->name, pc->table);
}

static void
probe_imperai_done(int err, const char *cause, struct imperai_feed *f, void *arg)
{
	struct pcall *pc = arg;
	struct probe *p = pc->p;
	const char *url = p->cfg->imperai.api_url;

	if (!probe_first(pc))
		return;
	(void)f;
	if (err == 0)
		probe_ok(p, "imper.ai: %s accepts the API key", url);
	else if (probe_auth_error(err))
		probe_fail(p, "imper.ai: %s refused the API key: %s: check imperai.api_key_credential "
		    "(or imperai.api_key_file)", url, probe_why(err, cause));
	else
		probe_fail(p, "imper.ai: %s did not answer as the API should: %s: check "
		    "imperai.api_url (and imperai.proxy, imperai.ca_file)", url, probe_why(err, cause));
}

static void
probe_submit_first(struct probe *p)
{
	static const char *const ufields[] = { "sys_id", "user_name" };
	const struct config *c = p->cfg;
	char *q = xprintf("user_name=%s", c->snow.user ? c->snow.user : "");

	probe_query(probe_call(p, P_LOGIN), "sys_user", q, ufields, ARRAY_SIZE(ufields),
	    probe_login_done);
	free(q);
	imperai_changes(p->imp, NULL, 1, probe_imperai_done, probe_call(p, P_IMPERAI));
}

static int
probe_choice_queued(const struct probe *p, const char *table, const char *element,
    const char *value)
{
	for (size_t i = 0; i < p->ncalls; i++) {
		const struct pcall *pc = p->calls[i];
		if (pc->kind == P_CHOICE && strcmp(pc->table, table) == 0 &&
		    strcmp(pc->element, element) == 0 && strcmp(pc->value, value) == 0)
			return 1;
	}
	return 0;
}

static void
probe_submit_choices(struct probe *p, const struct flow *f, const char *element,
    char *const *values, size_t n)
{
	static const char *const fields[] = { "sys_id", "value" };
	struct pcall *pc;
	char *q;

	for (size_t i = 0; i < n; i++) {
		if (probe_choice_queued(p, f->table, element, values[i]))
			continue;
		pc = probe_call(p, P_CHOICE);
		pc->table = f->table;
		pc->element = element;
		pc->value = values[i];
		pc->flow = f;
		q = xprintf("name=%s^element=%s^value=%s^inactive=false", f->table, element, values[i]);
		probe_query(pc, "sys_choice", q, fields, ARRAY_SIZE(fields), probe_choice_done);
		free(q);
	}
}

/* After a successful login: tables, fields, the policy's categories. */
static void
probe_submit_rest(struct probe *p)
{
	static const char *const tfields[] = { "sys_id" };
	static const char *const dfields[] = { "sys_id", "element", "internal_type" };
	const struct config *c = p->cfg;
	struct pcall *pc;
	char *q;

	for (size_t i = 0; i < c->snow.ntables; i++) {
		pc = probe_call(p, P_TABLE);
		pc->ti = i;
		pc->table = c->snow.tables[i].name;
		probe_query(pc, pc->table, "sys_idISNOTEMPTY", tfields, ARRAY_SIZE(tfields),
		    probe_table_done);
		pc = probe_call(p, P_FIELD);
		pc->ti = i;
		pc->table = c->snow.tables[i].name;
		q = xprintf("name=%s^element=%s", pc->table, c->snow.tables[i].field);
		probe_query(pc, "sys_dictionary", q, dfields, ARRAY_SIZE(dfields), probe_field_done);
		free(q);
		if (c->snow.tables[i].requester_field != NULL)
			probe_submit_requester(p, i);
	}
	for (size_t i = 0; p->flows && i < p->flows->n; i++) {
		const struct flow *f = &p->flows->v[i];
		if (f->table == NULL)
			continue;
		probe_submit_choices(p, f, "category", f->categories, f->ncategories);
		probe_submit_choices(p, f, "subcategory", f->subcategories, f->nsubcategories);
	}
}

static int64_t
probe_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the transfers until every call answered, or gives up on the slow
 * ones after the configured timeouts (with room for the retries). */
static void
probe_run(struct probe *p)
{
	const struct config *c = p->cfg;
	int t = c->snow.http.timeout > c->imperai.http.timeout ? c->snow.http.timeout :
	    c->imperai.http.timeout;
	int64_t deadline = probe_now_ms() + (int64_t)t * 2000 + 5000;

	while (p->pending > 0 && probe_now_ms() < deadline)
		http_perform(p->http, 200);
	if (p->pending > 0) {
		http_cancel_all(p->http);
		while (http_pending(p->http) > 0)
			http_perform(p->http, 50);
	}
	for (size_t i = 0; i < p->ncalls; i++) {
		if (!p->calls[i]->done) {
			p->calls[i]->done = 1;
			p->pending--;
			probe_fail(p, "%s: no answer within %d s: check the network path and the "
			    "timeout settings", p->calls[i]->kind == P_IMPERAI ? "imper.ai" :
			    "servicenow", t * 2 + 5);
		}
	}
}

static int
probe_clients(struct probe *p)
{
	char *cause = NULL;

	p->http = http_client_new();
	p->snow = snow_client_new(p->cfg, p->http, &cause);
	if (p->snow != NULL)
		p->imp = imperai_client_new(p->cfg, p->http, &cause);
	if (p->snow == NULL || p->imp == NULL) {
		probe_fail(p, "cannot set up the clients: %s", cause ? cause : "unknown error");
		free(cause);
		return -EINVAL;
	}
	return 0;
}

static void
probe_free(struct probe *p)
{
	if (p->snow)
		snow_client_free(p->snow);
	if (p->imp)
		imperai_client_free(p->imp);
	if (p->http)
		http_client_free(p->http);
	for (size_t i = 0; i < p->ncalls; i++)
		free(p->calls[i]);
	free(p->calls);
	errlist_free(&p->fail);
}

/* The references the flows write resolve to exactly one record each. */
static void
probe_refs(struct probe *p, struct flows *flows)
{
	struct errlist errs = { 0 };

	if (flows == NULL)
		return;
	if (refs_resolve(p->cfg, flows, &errs) < 0)
		for (size_t i = 0; i < errs.n; i++)
			probe_fail(p, "%s", errs.msg[i]);
	for (size_t i = 0; i < flows->n; i++)
		if (flows->v[i].on_fail.assignment_group_name != NULL)
			probe_ok(p, "servicenow: flow %s: on_fail.assignment_group is group %s",
			    flows->v[i].name, flows->v[i].on_fail.assignment_group_name);
	errlist_free(&errs);
}

static int
probe(const struct config *cfg, struct flows *flows)
{
	struct probe p = { .cfg = cfg, .flows = flows };
	int rc;

	if (probe_clients(&p) == 0) {
		probe_submit_first(&p);
		probe_run(&p);
		if (p.login_ok) {
			probe_submit_rest(&p);
			probe_run(&p);
			probe_refs(&p, flows);
		}
	}
	for (size_t i = 0; i < p.fail.n; i++)
		fprintf(stderr, "%s\n", p.fail.msg[i]);
	if (p.fail.n > 0 && !p.login_ok && p.snow != NULL)
		fprintf(stderr, "(tables, fields and categories were not checked: the login "
		    "failed)\n");
	rc = p.fail.n ? CTL_EX_UNAVAILABLE : CTL_EX_OK;
	if (rc == CTL_EX_OK)
		printf("probe OK: %zu checks passed\n", p.nok);
	else
		fprintf(stderr, "probe failed: %zu problem%s\n", p.fail.n, p.fail.n == 1 ? "" : "s");
	probe_free(&p);
	return rc;
}

static void
probe_print_errors(const char *prefix, const struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "%s%s\n", prefix, e->msg[i]);
}

/* Loads settings and policy exactly as imperai-snowd -n does. */
static int
probe_load(const char *path, int flags, struct config **cfg, struct flows **flows)
{
	struct errlist errs = { 0 }, warns = { 0 };
	int rc;

	*cfg = NULL;
	*flows = NULL;
	rc = config_load(path, flags, cfg, &errs, &warns);
	if (rc == 0 && (rc = flows_load((*cfg)->flows_file, flows, &errs)) < 0) {
		config_free(*cfg);
		*cfg = NULL;
	}
	probe_print_errors("warning: ", &warns);
	if (rc < 0) {
		probe_print_errors("", &errs);
		if (errs.n == 0)
			fprintf(stderr, "%s: %s\n", path, strerror(-rc));
		fprintf(stderr, "configuration has %zu error%s\n", errs.n ? errs.n : 1,
		    errs.n == 1 || errs.n == 0 ? "" : "s");
	} else if (flags & CONFIG_NO_SECRETS)
		printf("configuration OK (secrets not read: check-config --probe, or "
		    "imperai-snowd -n as root, reads them)\n");
	else
		printf("configuration OK\n");
	errlist_free(&errs);
	errlist_free(&warns);
	return rc;
}

int
ctl_cmd_check_config(struct ctl *c, int argc, char **argv)
{
	struct config *cfg;
	struct flows *flows;
	int do_probe = 0, rc;

	if ((rc = ctl_flag_opts(c, argc, argv, "check-config", "probe", 'p', &do_probe, 0)) >= 0)
		return rc;
	/* The probe logs in: secrets are required for it, and only for it. */
	if (probe_load(c->config_path, do_probe ? 0 : CONFIG_NO_SECRETS, &cfg, &flows) < 0)
		return CTL_EX_CONFIG;
	rc = do_probe ? probe(cfg, flows) : CTL_EX_OK;
	flows_free(flows);
	config_free(cfg);
	return rc;
}
