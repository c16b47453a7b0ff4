/* refs: reference values of the policy resolved to sys_ids at load time
 * (see refs.h for why). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "flows.h"
#include "http.h"
#include "refs.h"
#include "snow.h"
#include "util.h"

/* One lookup in flight. */
struct refs_call {
	struct flow	*f;
	int		 done;
	int		 err;
	char		*cause;
	struct snow_list l;
};

int
refs_apply(const struct flows *flows, struct flow *f, const struct snow_list *l,
    struct errlist *errs)
{
	const char *v = f->on_fail.assignment_group, *name;

	if (l->n != 1) {
		errlist_add(errs, "%s:%d:%d: flows[%s].on_fail.assignment_group: \"%s\" %s in "
		    "sys_user_group: give the group's exact name or its sys_id",
		    flows->path ? flows->path : "flows", f->on_fail.line, f->on_fail.col, f->name,
		    v, l->n == 0 ? "matches no group (by sys_id or name)" :
		    "matches several groups");
		return -EINVAL;
	}
	name = snow_record_get(&l->v[0], "name");
	str_replace(&f->on_fail.assignment_group_name, name && *name ? name : v);
	str_replace(&f->on_fail.assignment_group, l->v[0].sys_id);
	return 0;
}

static void
refs_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct refs_call *c = arg;

	c->done = 1;
	c->err = err;
	c->cause = cause ? xstrdup(cause) : NULL;
	if (err == 0 && page != NULL) {
		c->l = *page;
		page->v = NULL;
		page->n = 0;
	}
}

static int64_t
refs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
refs_submit(struct snow_client *s, struct refs_call *c, struct errlist *errs)
{
	static const char *const fields[] = { "sys_id", "name" };
	const char *v = c->f->on_fail.assignment_group;
	char *q, *cause = NULL;

	/* "^" in a name would end the term: ServiceNow escapes it as "^^". */
	if (strchr(v, '^') != NULL || strchr(v, '\n') != NULL) {
		c->done = 1;
		c->err = -EINVAL;
		c->cause = xstrdup("a group name with ^ or a line break cannot be looked up");
		return;
	}
	q = xprintf("sys_id=%s^ORname=%s", v, v);
	if (snow_query(s, "sys_user_group", q, fields, ARRAY_SIZE(fields), 2, refs_done, c,
	    &cause) < 0) {
		c->done = 1;
		c->err = -EINVAL;
		c->cause = cause;
		(void)errs;
	}
	free(q);
}

/* Runs the lookups until all answered or the timeout (with room for retries). */
static void
refs_run(const struct config *cfg, struct http_client *h, struct refs_call *v, size_t n)
{
	int64_t deadline = refs_now_ms() + (int64_t)cfg->snow.http.timeout * 2000 + 5000;
	size_t left = n;

	while (left > 0 && refs_now_ms() < deadline) {
		http_perform(h, 200);
		left = 0;
		for (size_t i = 0; i < n; i++)
			left += !v[i].done;
	}
	http_cancel_all(h);
	while (http_pending(h) > 0)
		http_perform(h, 50);
}

static int
refs_verdicts(const struct flows *flows, struct refs_call *v, size_t n, struct errlist *errs)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		if (!v[i].done || v[i].err != 0) {
			errlist_add(errs, "servicenow: cannot look up on_fail.assignment_group \"%s\" "
			    "of flow %s in sys_user_group: %s", v[i].f->on_fail.assignment_group,
			    v[i].f->name, v[i].cause ? v[i].cause : "no answer in time");
			v[i].f->on_fail.unresolved = 1;
			rc = rc ? rc : -EAGAIN;
		} else if (refs_apply(flows, v[i].f, &v[i].l, errs) < 0)
			rc = -EINVAL;
		else
			v[i].f->on_fail.unresolved = 0;
		snow_list_free(&v[i].l);
		free(v[i].cause);
	}
	return rc;
}

int
refs_resolve(const struct config *cfg, struct flows *flows, struct errlist *errs)
{
	return refs_resolve_some(cfg, flows, 0, errs);
}

int
refs_pending(const struct flows *flows)
{
	for (size_t i = 0; flows != NULL && i < flows->n; i++)
		if (flows->v[i].on_fail.unresolved)
			return 1;
	return 0;
}

int
refs_resolve_some(const struct config *cfg, struct flows *flows, int only_unresolved,
    struct errlist *errs)
{
	struct refs_call *v = xcalloc(flows->n ? flows->n : 1, sizeof(*v));
	struct http_client *h = NULL;
	struct snow_client *s = NULL;
	char *cause = NULL;
	size_t n = 0;
	int rc = 0;

	for (size_t i = 0; i < flows->n; i++)
		if (flows->v[i].on_fail.assignment_group != NULL &&
		    (only_unresolved == 0 || flows->v[i].on_fail.unresolved))
			v[n++].f = &flows->v[i];
	if (n == 0)
		goto out;
	h = http_client_new();
	if ((s = snow_client_new(cfg, h, &cause)) == NULL) {
		errlist_add(errs, "servicenow: %s", cause ? cause : "cannot set up the client");
		rc = -EAGAIN;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		refs_submit(s, &v[i], errs);
	refs_run(cfg, h, v, n);
	rc = refs_verdicts(flows, v, n, errs);
out:
	if (s != NULL)
		snow_client_free(s);
	if (h != NULL)
		http_client_free(h);
	free(cause);
	free(v);
	return rc;
}
