/* ctl-net: blocking calls over the daemon's asynchronous clients, for the
 * commands that talk to ServiceNow and imper.ai one request at a time
 * (setup, rebuild).  Each call drives http_perform() until its callback
 * ran: the pools' own timeouts and retries bound the wait. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "http.h"
#include "imperai.h"
#include "snow.h"
#include "util.h"

struct ctl_wait {
	int			 done;
	int			 err;
	long			 status;
	char			*cause;
	struct snow_list	*list;
	struct snow_record	*rec;
	struct imperai_feed	*feed;
};

int
ctl_net_open(struct ctl_net *n, const struct config *cfg, int with_imperai, char **cause)
{
	memset(n, 0, sizeof(*n));
	n->http = http_client_new();
	if ((n->snow = snow_client_new(cfg, n->http, cause)) == NULL)
		return -EINVAL;
	if (with_imperai && (n->imp = imperai_client_new(cfg, n->http, cause)) == NULL)
		return -EINVAL;
	return 0;
}

/* A second ServiceNow client with other (Basic) credentials, on the same
 * HTTP client: the admin of `setup --create-field`.  acfg borrows cfg's
 * strings and must outlive the client. */
int
ctl_net_admin(struct ctl_net *n, struct config *acfg, const struct config *cfg,
    const char *user, const char *password, char **cause)
{
	*acfg = *cfg;
	acfg->snow.auth = CONFIG_AUTH_BASIC;
	acfg->snow.user = (char *)user;
	acfg->snow.password = (char *)password;
	acfg->snow.http.request_budget = 0;
	n->admin = snow_client_new(acfg, n->http, cause);
	return n->admin ? 0 : -EINVAL;
}

void
ctl_net_close(struct ctl_net *n)
{
	if (n->snow)
		snow_client_free(n->snow);
	if (n->admin)
		snow_client_free(n->admin);
	if (n->imp)
		imperai_client_free(n->imp);
	if (n->http)
		http_client_free(n->http);
	memset(n, 0, sizeof(*n));
}

static int
ctl_wait_run(struct ctl_net *n, struct ctl_wait *w, char **cause)
{
	while (!w->done)
		http_perform(n->http, 200);
	if (w->err != 0) {
		*cause = w->cause ? w->cause : xstrdup(strerror(-w->err));
		w->cause = NULL;
	}
	free(w->cause);
	return w->err;
}

static void
ctl_list_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct ctl_wait *w = arg;

	w->done = 1;
	w->err = err;
	w->cause = cause ? xstrdup(cause) : NULL;
	if (err == 0) {
		*w->list = *page;
		page->v = NULL;
		page->n = 0;
	}
}

int
ctl_snow_list(struct ctl_net *n, struct snow_client *s, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, struct snow_list *out, char **cause)
{
	struct ctl_wait w = { .list = out };
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = snow_query(s, table, query, fields, nfields, limit, ctl_list_done, &w,
	    cause)) < 0)
		return rc;
	return ctl_wait_run(n, &w, cause);
}

static void
ctl_record_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct ctl_wait *w = arg;

	w->done = 1;
	w->err = err;
	w->status = status;
	w->cause = cause ? xstrdup(cause) : NULL;
	if (err == 0)
		snow_record_copy(w->rec, rec);
}

int
ctl_snow_insert(struct ctl_net *n, struct snow_client *s, const char *table, const char *body,
    struct snow_record *out, char **cause)
{
	struct ctl_wait w = { .rec = out };
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = snow_insert(s, table, body, NULL, 0, ctl_record_done, &w, cause)) < 0)
		return rc;
	return ctl_wait_run(n, &w, cause);
}

static void
ctl_feed_done(int err, const char *cause, struct imperai_feed *f, void *arg)
{
	struct ctl_wait *w = arg;

	w->done = 1;
	w->err = err;
	w->cause = cause ? xstrdup(cause) : NULL;
	if (err == 0) {
		*w->feed = *f;
		memset(f, 0, sizeof(*f));
	}
}

int
ctl_imperai_changes(struct ctl_net *n, const char *cursor, int limit, struct imperai_feed *out,
    char **cause)
{
	struct ctl_wait w = { .feed = out };

	memset(out, 0, sizeof(*out));
	imperai_changes(n->imp, cursor, limit, ctl_feed_done, &w);
	return ctl_wait_run(n, &w, cause);
}
