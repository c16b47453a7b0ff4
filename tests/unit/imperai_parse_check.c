/* imperai_parse_check: runs the C client on the simulator's answers.
 *
 *   imperai_parse_check verification|feed|error|error-verification FILE|-
 *	Runs one parser on a body; prints "OK" (exit 0) or "FAIL: <cause>"
 *	(exit 1).
 *   imperai_parse_check client URL [API-KEY]
 *	Drives the real client (lib/http.c) through create, a replayed
 *	create, get, the whole change feed, cancel twice and a conflicting
 *	create; prints one line per call: "<call> err=<n> status=<http>
 *	id=<id> state=<status>" or "changes err=<n> items=<n> ids=<n>".
 *
 * Usage errors exit 2. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "imperai.h"
#include "util.h"

static int
slurp(const char *path, struct buf *b)
{
	char chunk[8192];
	size_t n;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");

	if (f == NULL)
		return -errno;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_add(b, chunk, n);
	if (f != stdin)
		fclose(f);
	return 0;
}

static int
check(const char *kind, const char *body, size_t len, char **cause)
{
	struct imperai_verification v;
	struct imperai_feed f;
	char *e;
	int rc;

	if (strcmp(kind, "verification") == 0) {
		rc = imperai_parse_verification(body, len, "verification", &v, cause);
		imperai_verification_free(&v);
	} else if (strcmp(kind, "feed") == 0) {
		rc = imperai_parse_feed(body, len, &f, cause);
		imperai_feed_free(&f);
	} else if (strcmp(kind, "error-verification") == 0) {
		rc = imperai_parse_error_verification(body, len, &v, cause);
		imperai_verification_free(&v);
	} else {
		e = imperai_parse_error(body, len);
		rc = e != NULL ? 0 : -EBADMSG;
		if (e == NULL)
			*cause = xstrdup("not an error body {\"error\":{\"code\",\"message\"}}");
		free(e);
	}
	return rc;
}

static int
parse_main(const char *kind, const char *path)
{
	struct buf b;
	char *cause = NULL;
	int rc;

	buf_init(&b);
	if ((rc = slurp(path, &b)) != 0) {
		fprintf(stderr, "imperai_parse_check: %s: %s\n", path, strerror(-rc));
		return 2;
	}
	rc = check(kind, b.data, b.len, &cause);
	if (rc == 0)
		printf("OK\n");
	else
		printf("FAIL: %s\n", cause != NULL ? cause : "unknown");
	free(cause);
	buf_free(&b);
	return rc == 0 ? 0 : 1;
}

/* The client run: one call at a time, each driven to completion. */
struct run {
	struct http_client	*h;
	struct imperai_client	*ic;
	int			 pending;
	char			 id[160];
	char			*cursor;
	size_t			 items;
	int			 has_more;
};

struct call {
	struct run	*r;
	const char	*name;
};

static void
run_verification(int err, long status, const char *cause, struct imperai_verification *v,
    void *arg)
{
	struct call *call = arg;
	struct run *r = call->r;

	printf("%s err=%d status=%ld id=%s state=%s\n", call->name, err, status,
	    v != NULL ? v->id : "-", v != NULL ? imperai_status_name(v->status) : "-");
	if (err != 0 && cause != NULL)
		fprintf(stderr, "%s: %s\n", call->name, cause);
	if (v != NULL && r->id[0] == '\0')
		snprintf(r->id, sizeof r->id, "%s", v->id);
	r->pending--;
}

static void
run_feed(int err, const char *cause, struct imperai_feed *f, void *arg)
{
	struct run *r = arg;

	if (err != 0) {
		printf("changes err=%d items=%zu\n", err, r->items);
		fprintf(stderr, "changes: %s\n", cause != NULL ? cause : "?");
		r->has_more = 0;
	} else {
		r->items += f->n;
		r->has_more = f->has_more && f->n > 0;
		str_replace(&r->cursor, f->next_cursor);
	}
	r->pending--;
}

static void
run_wait(struct run *r)
{
	while (r->pending > 0)
		http_perform(r->h, 1000);
}

static void
run_call(struct run *r, const char *name, const struct imperai_create *req, const char *id,
    int cancel)
{
	struct call call = { r, name };

	r->pending = 1;
	if (req != NULL)
		imperai_create(r->ic, req, run_verification, &call);
	else if (cancel)
		imperai_cancel(r->ic, id, run_verification, &call);
	else
		imperai_get(r->ic, id, run_verification, &call);
	run_wait(r);
}

static void
run_changes(struct run *r)
{
	int pages = 0;

	do {
		r->pending = 1;
		imperai_changes(r->ic, r->cursor, 2, run_feed, r);
		run_wait(r);
	} while (r->has_more && ++pages < 10000);
	printf("changes err=0 items=%zu\n", r->items);
}

static int
client_main(const char *url, const char *key)
{
	struct imperai_create req;
	struct config c;
	struct run r;
	char *cause = NULL;

	memset(&c, 0, sizeof c);
	memset(&r, 0, sizeof r);
	c.imperai.api_url = (char *)(uintptr_t)url;
	c.imperai.api_key = (char *)(uintptr_t)key;
	c.imperai.http = (struct config_http){ .concurrency = 2, .connect_timeout = 5,
	    .timeout = 5, .max_retries = 8 };
	r.h = http_client_new();
	if ((r.ic = imperai_client_new(&c, r.h, &cause)) == NULL) {
		fprintf(stderr, "imperai_parse_check: %s\n", cause);
		return 2;
	}
	memset(&req, 0, sizeof req);
	req.ticket = (struct imperai_ticket_ref){ "dev12345", "incident",
	    "46d44a5fa9fe198101b5a8b5de1e3e13", "INC0010001", "https://dev12345.example/x" };
	req.subject = "Password reset";
	req.action = "password_reset";
	req.requester_email = "jane@example.com";
	req.idempotency_key = "dev12345/incident/46d44a5fa9fe198101b5a8b5de1e3e13/1";
	run_call(&r, "create", &req, NULL, 0);
	run_call(&r, "create-again", &req, NULL, 0);
	run_call(&r, "get", NULL, r.id, 0);
	run_changes(&r);
	run_call(&r, "cancel", NULL, r.id, 1);
	run_call(&r, "cancel-again", NULL, r.id, 1);
	req.subject = "Something else";
	run_call(&r, "create-conflict", &req, NULL, 0);
	imperai_client_free(r.ic);
	http_client_free(r.h);
	free(r.cursor);
	return 0;
}

int
main(int argc, char **argv)
{
	static const char *const kinds[] = { "verification", "feed", "error", "error-verification" };

	if ((argc == 3 || argc == 4) && strcmp(argv[1], "client") == 0)
		return client_main(argv[2], argc == 4 ? argv[3] : "sim-api-key");
	for (size_t i = 0; argc == 3 && i < ARRAY_SIZE(kinds); i++) {
		if (strcmp(argv[1], kinds[i]) == 0)
			return parse_main(argv[1], argv[2]);
	}
	fprintf(stderr, "usage: imperai_parse_check "
	    "verification|feed|error|error-verification FILE|-\n"
	    "       imperai_parse_check client URL [API-KEY]\n");
	return 2;
}
