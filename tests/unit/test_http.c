/* Tests for lib/http.c: the pure helpers, then real transfers against the
 * scripted server of testserver.c. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "testserver.h"
#include "util.h"

struct result {
	int		 done;
	long		 status;
	enum http_error	 error;
	int		 attempts;
	char		*errmsg;
	char		*body;
	size_t		 body_len;
	char		*content_type;
	char		*link;
	char		*location;
	int64_t		 total_count;
};

struct fixture {
	struct ts		*ts;
	struct http_client	*c;
	struct http_pool	*p;
	int64_t			 offset;	/* added to the real clock */
	int			 ndone;
	struct result		 r[8];
};

static int64_t
real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
shifted_clock(void *arg)
{
	return real_ms() + *(int64_t *)arg;
}

static void
on_done(struct http_response *resp, void *arg)
{
	struct result *r = arg;

	r->done++;
	r->status = resp->status;
	r->error = resp->error;
	r->attempts = resp->attempts;
	free(r->errmsg);
	r->errmsg = resp->errmsg ? xstrdup(resp->errmsg) : NULL;
	r->body = resp->body;
	r->body_len = resp->body_len;
	resp->body = NULL;
	r->content_type = resp->content_type ? xstrdup(resp->content_type) : NULL;
	r->link = resp->link ? xstrdup(resp->link) : NULL;
	r->location = resp->location ? xstrdup(resp->location) : NULL;
	r->total_count = resp->total_count;
}

static struct http_pool_opts
test_opts(void)
{
	struct http_pool_opts o = {
		.name = "test", .concurrency = 1, .connect_timeout = 5, .timeout = 5,
		.max_retries = 2, .backoff_base_ms = 1, .backoff_max_ms = 2,
	};
	return o;
}

static struct fixture *
fixture_new(const struct http_pool_opts *o)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char *cause = NULL;

	f->ts = ts_start();
	f->c = http_client_new();
	http_client_set_clock(f->c, shifted_clock, &f->offset);
	f->p = http_pool_new(f->c, o, &cause);
	assert_non_null(f->p);
	return f;
}

static void
fixture_free(struct fixture *f)
{
	http_client_free(f->c);
	ts_stop(f->ts);
	for (size_t i = 0; i < ARRAY_SIZE(f->r); i++) {
		free(f->r[i].body);
		free(f->r[i].errmsg);
		free(f->r[i].content_type);
		free(f->r[i].link);
		free(f->r[i].location);
	}
	free(f);
}

static void
submit(struct fixture *f, const char *method, const char *path, int retry_safe, int slot)
{
	struct http_request req;

	http_request_init(&req, method, ts_url(f->ts, path));
	req.retry_safe = retry_safe;
	http_submit(f->p, &req, on_done, &f->r[slot]);
}

static void
submit_body(struct fixture *f, const char *method, const char *path, const char *body,
    int retry_safe, int slot)
{
	struct http_request req;

	http_request_init(&req, method, ts_url(f->ts, path));
	req.body = xstrdup(body);
	req.body_len = strlen(body);
	req.retry_safe = retry_safe;
	http_submit(f->p, &req, on_done, &f->r[slot]);
}

/* How many requests reached the server with exactly this body. */
static int
count_bodies(struct fixture *f, const char *body)
{
	int n = 0;

	for (size_t i = 0; i < ts_nrequests(f->ts); i++) {
		char *b = ts_request_body(f->ts, i);

		n += strcmp(b, body) == 0;
		free(b);
	}
	return n;
}

static int
ndone(const struct fixture *f)
{
	int n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(f->r); i++)
		n += f->r[i].done;
	return n;
}

/* Drives the client until n callbacks ran; 10 s is only a failure bound. */
static void
pump(struct fixture *f, int n)
{
	int64_t bound = real_ms() + 10000;

	while (ndone(f) < n && real_ms() < bound)
		http_perform(f->c, 100);
	assert_int_equal(ndone(f), n);
}

static struct http_pool_stats
stats(const struct fixture *f)
{
	struct http_pool_stats s;

	http_pool_stats(f->p, &s);
	return s;
}

/* A port nothing listens on: bound, then closed. */
static int
closed_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void
test_backoff_is_full_jitter_below_an_exponential_cap(void **state)
{
	(void)state;
	assert_int_equal(http_backoff_ms(1, 500, 60000, 0.0), 0);
	assert_true(http_backoff_ms(1, 500, 60000, 0.999) < 500);
	assert_true(http_backoff_ms(1, 500, 60000, 0.999) >= 499);
	assert_int_equal(http_backoff_ms(1, 500, 60000, 0.5), 250);
	assert_int_equal(http_backoff_ms(2, 500, 60000, 0.5), 500);
	assert_int_equal(http_backoff_ms(3, 500, 60000, 0.5), 1000);
	assert_int_equal(http_backoff_ms(4, 500, 60000, 0.5), 2000);
	for (int n = 1; n < 12; n++) {
		int64_t cap = 500LL << (n - 1);

		cap = cap > 60000 ? 60000 : cap;
		for (double r = 0; r < 1; r += 0.125)
			assert_true(http_backoff_ms(n, 500, 60000, r) < cap);
	}
}

static void
test_backoff_never_exceeds_max_and_survives_huge_attempts(void **state)
{
	(void)state;
	assert_int_equal(http_backoff_ms(8, 500, 60000, 0.5), 30000);
	assert_true(http_backoff_ms(1000, 500, 60000, 0.999) < 60000);
	assert_true(http_backoff_ms(1000, 500, 60000, 0.999) >= 59000);
	assert_true(http_backoff_ms(INT32_MAX, 500, 60000, 0.5) == 30000);
	assert_int_equal(http_backoff_ms(0, 500, 60000, 0.5), 250);
	assert_int_equal(http_backoff_ms(3, 500, 60000, 1.5), 0);
}

static void
test_retry_after_accepts_delta_seconds_and_caps_at_one_hour(void **state)
{
	int64_t v = -1;

	(void)state;
	assert_int_equal(http_parse_retry_after("120", 0, &v), 0);
	assert_int_equal(v, 120);
	assert_int_equal(http_parse_retry_after(" 0 ", 0, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(http_parse_retry_after("86400", 0, &v), 0);
	assert_int_equal(v, 3600);
	assert_int_equal(http_parse_retry_after("99999999999999999999999", 0, &v), 0);
	assert_int_equal(v, 3600);
}

static void
test_retry_after_accepts_http_date_relative_to_now(void **state)
{
	const int64_t t = 1445412480;	/* Wed, 21 Oct 2015 07:28:00 GMT */
	int64_t v = -1;

	(void)state;
	assert_int_equal(http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t - 30, &v), 0);
	assert_int_equal(v, 30);
	assert_int_equal(http_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", t - 5, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(http_parse_retry_after("Wed Oct 21 07:28:00 2015", t - 7, &v), 0);
	assert_int_equal(v, 7);
	/* a date in the past means now; one a day ahead is capped */
	assert_int_equal(http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t + 100, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t - 86400, &v), 0);
	assert_int_equal(v, 3600);
}

static void
test_retry_after_refuses_garbage(void **state)
{
	int64_t v = 42;

	(void)state;
	assert_int_not_equal(http_parse_retry_after("soon", 0, &v), 0);
	assert_int_not_equal(http_parse_retry_after("12abc", 0, &v), 0);
	assert_int_not_equal(http_parse_retry_after("-5", 0, &v), 0);
	assert_int_not_equal(http_parse_retry_after("", 0, &v), 0);
	assert_int_equal(v, 42);
}

static void
test_link_next_is_found_among_several_links(void **state)
{
	const char *link =
	    "<https://x.service-now.com/api/now/table/incident?sysparm_fields=number,sys_id"
	    "&sysparm_limit=2&sysparm_offset=0>;rel=\"first\","
	    "<https://x.service-now.com/api/now/table/incident?sysparm_fields=number,sys_id"
	    "&sysparm_limit=2&sysparm_offset=2>;rel=\"next\","
	    "<https://x.service-now.com/api/now/table/incident?sysparm_offset=8>;rel=\"last\"";
	char *n = http_link_next(link);

	(void)state;
	assert_string_equal(n, "https://x.service-now.com/api/now/table/incident?"
	    "sysparm_fields=number,sys_id&sysparm_limit=2&sysparm_offset=2");
	free(n);
}

static void
test_link_next_ignores_commas_and_rel_inside_quoted_params(void **state)
{
	char *n;

	(void)state;
	n = http_link_next("<https://a/1>; title=\"a, b; rel=next\"; rel=\"prev\", "
	    "<https://a/2> ; REL = \"last Next\"");
	assert_string_equal(n, "https://a/2");
	free(n);
	n = http_link_next("<https://a/3>; title=\"say \\\"rel=next\\\"\", <https://a/4>;rel=next");
	assert_string_equal(n, "https://a/4");
	free(n);
	n = http_link_next("<https://a/5>; rel=nextish, <https://a/6>; rel=next");
	assert_string_equal(n, "https://a/6");
	free(n);
}

static void
test_link_next_absent_or_malformed_is_null(void **state)
{
	(void)state;
	assert_null(http_link_next(""));
	assert_null(http_link_next("<https://a/1>; rel=\"prev\", <https://a/2>; rel=last"));
	assert_null(http_link_next("https://a/1; rel=next"));
	assert_null(http_link_next("<https://a/1; rel=next"));
	assert_null(http_link_next("<https://a/1>; title=\"unterminated, rel=next"));
}

static void
test_is_html_by_content_type_or_leading_angle_bracket(void **state)
{
	(void)state;
	assert_true(http_is_html("text/html; charset=UTF-8", "{}", 2));
	assert_true(http_is_html(" TEXT/HTML", NULL, 0));
	assert_true(http_is_html(NULL, "\r\n  <html><body>Hibernating", 27));
	assert_true(http_is_html("application/json", "<!DOCTYPE html>", 15));
	assert_true(http_is_html(NULL, "\xef\xbb\xbf<html>", 9));
	assert_false(http_is_html("application/json;charset=utf-8", " {\"result\":[]}", 15));
	assert_false(http_is_html(NULL, "", 0));
	assert_false(http_is_html(NULL, "   ", 3));
}

static void
test_json_answer_arrives_with_its_headers_parsed(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 200, "Content-Type: application/json;charset=UTF-8\r\n"
		    "X-Total-Count: 42\r\nLink: <http://h/a>;rel=\"first\"\r\n"
		    "Link: <http://h/b>;rel=\"next\"\r\n", "{\"result\":[]}", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/api/now/table/incident?sysparm_limit=1", 1, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 200);
	assert_int_equal(f->r[0].error, HTTP_OK);
	assert_int_equal(f->r[0].attempts, 1);
	assert_string_equal(f->r[0].body, "{\"result\":[]}");
	assert_int_equal(f->r[0].body_len, 13);
	assert_string_equal(f->r[0].content_type, "application/json;charset=UTF-8");
	assert_int_equal(f->r[0].total_count, 42);
	assert_string_equal(f->r[0].link, "<http://h/a>;rel=\"first\", <http://h/b>;rel=\"next\"");
	assert_int_equal(stats(f).by_status[2], 1);
	assert_true(stats(f).last_success_at > 0);
	fixture_free(f);
}

static void
test_request_method_headers_and_body_reach_the_server(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = { { TS_REPLY, 200, NULL, "{}", 0, 0, 0 } };
	struct http_request req;
	char *line, *body, *ct, *expect;

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	http_request_init(&req, "PATCH", ts_url(f->ts, "/api/now/table/incident/abc"));
	http_request_header(&req, "Content-Type: %s", "application/json");
	req.body = xstrdup("{\"work_notes\":\"hi\"}");
	req.body_len = strlen(req.body);
	http_submit(f->p, &req, on_done, &f->r[0]);
	assert_null(req.url);
	pump(f, 1);
	line = ts_request_line(f->ts, 0);
	body = ts_request_body(f->ts, 0);
	ct = ts_request_header(f->ts, 0, "Content-Type");
	expect = ts_request_header(f->ts, 0, "Expect");
	assert_string_equal(line, "PATCH /api/now/table/incident/abc HTTP/1.1");
	assert_string_equal(body, "{\"work_notes\":\"hi\"}");
	assert_string_equal(ct, "application/json");
	assert_null(expect);
	free(line);
	free(body);
	free(ct);
	fixture_free(f);
}

static void
test_503_then_200_is_retried_for_a_retry_safe_request(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 503, NULL, "busy", 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "ok", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/r", 1, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 200);
	assert_string_equal(f->r[0].body, "ok");
	assert_int_equal(f->r[0].attempts, 2);
	assert_int_equal(ts_nrequests(f->ts), 2);
	assert_int_equal(stats(f).retries, 1);
	assert_int_equal(stats(f).requests, 2);
	assert_int_equal(stats(f).by_status[5], 1);
	fixture_free(f);
}

static void
test_reset_then_200_is_retried_for_a_retry_safe_request(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_RESET, 0, NULL, NULL, 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "ok", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/r", 1, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 200);
	assert_int_equal(f->r[0].attempts, 2);
	assert_int_equal(ts_nrequests(f->ts), 2);
	assert_int_equal(stats(f).by_status[0], 1);
	fixture_free(f);
}

static void
test_retries_stop_after_max_retries(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 502, NULL, "a", 0, 0, 0 },
		{ TS_REPLY, 502, NULL, "b", 0, 0, 0 },
		{ TS_REPLY, 502, NULL, "c", 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "never", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/r", 1, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 502);
	assert_string_equal(f->r[0].body, "c");
	assert_int_equal(f->r[0].attempts, 3);
	assert_int_equal(ts_nrequests(f->ts), 3);
	fixture_free(f);
}

static void
test_non_retry_safe_request_is_not_retried_after_503(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 503, NULL, "busy", 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "second PATCH", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "PATCH", "/r", 0, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 503);
	assert_int_equal(f->r[0].attempts, 1);
	assert_int_equal(ts_nrequests(f->ts), 1);
	assert_int_equal(stats(f).retries, 0);
	fixture_free(f);
}

/* libcurl itself re-sends a request whose reused connection dies before
 * the answer; a PATCH must still reach the server exactly once, and its
 * caller learn that it may have been applied. */
static void
patch_lost_on_a_reused_connection(enum ts_kind kind)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 200, NULL, "warm", 0, 0, 0 },
		{ kind, 0, NULL, NULL, 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "PATCH sent twice", 0, 0, 0 },
	};

	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/warm", 1, 0);
	pump(f, 1);
	submit_body(f, "PATCH", "/r", "{\"work_notes\":\"once\"}", 0, 1);
	pump(f, 2);
	assert_int_equal(ts_request_conn(f->ts, 1), ts_request_conn(f->ts, 0));
	assert_int_equal(f->r[1].error, HTTP_E_CONNECT);
	assert_int_equal(f->r[1].status, 0);
	assert_int_equal(f->r[1].attempts, 1);
	assert_int_equal(ts_nrequests(f->ts), 2);
	assert_int_equal(count_bodies(f, "{\"work_notes\":\"once\"}"), 1);
	assert_non_null(strstr(f->r[1].errmsg, "may have been applied"));
	fixture_free(f);
}

static void
test_patch_is_sent_once_when_the_connection_resets(void **state)
{
	(void)state;
	patch_lost_on_a_reused_connection(TS_RESET);
}

static void
test_patch_applied_then_closed_unanswered_is_sent_once_and_may_have_landed(void **state)
{
	(void)state;
	patch_lost_on_a_reused_connection(TS_CLOSE);
}

/* The server closes on the PATCH's headers, before its body is read: the
 * PATCH may be lost or, if libcurl had sent none of its body, re-sent on
 * a new connection -- never applied twice, and never reported done
 * unless it was. */
static void
test_patch_closed_before_its_body_was_read_is_applied_at_most_once(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	const char *body = "{\"work_notes\":\"early\"}";
	struct ts_step s[] = {
		{ TS_REPLY, 200, NULL, "warm", 0, 0, 0 },
		{ TS_CLOSE_EARLY, 0, NULL, NULL, 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "applied", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/warm", 1, 0);
	pump(f, 1);
	submit_body(f, "PATCH", "/r", body, 0, 1);
	pump(f, 2);
	assert_int_equal(ts_request_conn(f->ts, 1), ts_request_conn(f->ts, 0));
	assert_int_equal(f->r[1].attempts, 1);
	if (f->r[1].error == HTTP_OK) {
		assert_int_equal(f->r[1].status, 200);
		assert_int_equal(count_bodies(f, body), 1);
	} else {
		assert_int_equal(f->r[1].error, HTTP_E_CONNECT);
		assert_int_equal(count_bodies(f, body), 0);
	}
	fixture_free(f);
}

static void
test_patches_reuse_the_kept_alive_connection(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step ok = { TS_REPLY, 200, NULL, "{}", 0, 0, 0 };
	char *b;

	(void)state;
	for (int i = 0; i < 3; i++)
		ts_script(f->ts, &ok, 1);
	submit(f, "GET", "/1", 1, 0);
	pump(f, 1);
	submit_body(f, "PATCH", "/2", "{\"a\":1}", 0, 1);
	pump(f, 2);
	submit_body(f, "PATCH", "/3", "{\"b\":2}", 0, 2);
	pump(f, 3);
	assert_int_equal(f->r[2].status, 200);
	assert_int_equal(ts_accepts(f->ts), 1);
	b = ts_request_body(f->ts, 2);
	assert_string_equal(b, "{\"b\":2}");
	free(b);
	fixture_free(f);
}

/* A retry_safe request is rewound and re-sent whole by libcurl itself. */
static void
test_retry_safe_post_lost_on_a_reused_connection_is_resent_whole(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 200, NULL, "warm", 0, 0, 0 },
		{ TS_CLOSE, 0, NULL, NULL, 0, 0, 0 },
		{ TS_REPLY, 201, NULL, "created", 0, 0, 0 },
	};

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/warm", 1, 0);
	pump(f, 1);
	submit_body(f, "POST", "/create", "{\"idempotent\":true}", 1, 1);
	pump(f, 2);
	assert_int_equal(f->r[1].status, 201);
	assert_int_equal(ts_nrequests(f->ts), 3);
	assert_int_equal(count_bodies(f, "{\"idempotent\":true}"), 2);
	assert_int_equal(ts_request_conn(f->ts, 1), ts_request_conn(f->ts, 0));
	assert_int_not_equal(ts_request_conn(f->ts, 2), ts_request_conn(f->ts, 0));
	fixture_free(f);
}

static void
test_client_errors_are_never_retried(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct ts_step s[] = {
		{ TS_REPLY, 400, NULL, "bad", 0, 0, 0 },
		{ TS_REPLY, 403, NULL, "forbidden", 0, 0, 0 },
		{ TS_REPLY, 404, NULL, "missing", 0, 0, 0 },
		{ TS_REPLY, 401, NULL, "who", 0, 0, 0 },
	};

	(void)state;
	o.max_retries = 5;
	f = fixture_new(&o);
	ts_script(f->ts, s, ARRAY_SIZE(s));
	for (int i = 0; i < 4; i++)
		submit(f, "GET", "/r", 1, i);
	pump(f, 4);
	assert_int_equal(f->r[0].status, 400);
	assert_int_equal(f->r[1].status, 403);
	assert_int_equal(f->r[2].status, 404);
	assert_int_equal(f->r[3].status, 401);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f->r[i].attempts, 1);
	assert_int_equal(ts_nrequests(f->ts), 4);
	assert_int_equal(stats(f).retries, 0);
	assert_int_equal(stats(f).by_status[4], 4);
	assert_string_equal(stats(f).last_error, "HTTP status 401");
	fixture_free(f);
}

static void
test_429_pauses_the_whole_pool_until_retry_after(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = {
		{ TS_REPLY, 429, "Retry-After: 1\r\n", "{\"error\":{\"message\":\"Rate limit exceeded\"}}", 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "one", 0, 0, 0 },
		{ TS_REPLY, 200, NULL, "two", 0, 0, 0 },
	};
	int64_t bound = real_ms() + 10000;

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/a", 1, 0);
	submit(f, "GET", "/b", 1, 1);
	while (stats(f).rate_limited == 0 && real_ms() < bound)
		http_perform(f->c, 20);
	assert_int_equal(stats(f).rate_limited, 1);
	assert_true(http_pool_paused_for(f->p) > 0);
	assert_true(http_pool_paused_for(f->p) <= 1000);
	/* the clock stands still: nothing else may leave the pool */
	for (int i = 0; i < 5; i++)
		http_perform(f->c, 0);
	assert_int_equal(ndone(f), 0);
	assert_int_equal(stats(f).requests, 1);
	assert_int_equal(ts_nrequests(f->ts), 1);
	assert_int_equal(http_pending(f->c), 2);
	f->offset += 1000;
	assert_int_equal(http_pool_paused_for(f->p), 0);
	pump(f, 2);
	assert_int_equal(f->r[0].status, 200);
	assert_int_equal(f->r[1].status, 200);
	assert_int_equal(f->r[0].attempts, 2);
	assert_int_equal(stats(f).retries, 1);
	assert_int_equal(ts_nrequests(f->ts), 3);
	fixture_free(f);
}

static void
test_429_for_a_non_retry_safe_request_is_returned_and_still_pauses(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step s[] = { { TS_REPLY, 429, "Retry-After: 30\r\n", "{}", 0, 0, 0 } };

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "PATCH", "/a", 0, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 429);
	assert_int_equal(f->r[0].attempts, 1);
	assert_true(http_pool_paused_for(f->p) > 29000);
	assert_int_equal(stats(f).rate_limited, 1);
	fixture_free(f);
}

static void
test_redirect_is_returned_not_followed(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts *other = ts_start();
	char *loc = ts_url(other, "/steal"), *hdr = xprintf("Location: %s\r\n", loc);
	struct ts_step s[] = { { TS_REPLY, 302, hdr, "", 0, 0, 0 } };

	(void)state;
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/r", 1, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].status, 302);
	assert_string_equal(f->r[0].location, loc);
	assert_int_equal(f->r[0].attempts, 1);
	assert_int_equal(ts_nrequests(f->ts), 1);
	assert_int_equal(ts_accepts(other), 0);
	ts_stop(other);
	free(loc);
	free(hdr);
	fixture_free(f);
}

static void
test_answer_over_max_body_fails_too_big(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	char *big = xmalloc(4097);
	struct ts_step s[] = {
		{ TS_REPLY, 200, NULL, big, 4096, 0, 0 },
		{ TS_REPLY, 200, NULL, big, 4096, 0, 1 },
	};

	(void)state;
	memset(big, 'x', 4096);
	big[4096] = '\0';
	o.max_body = 1024;
	f = fixture_new(&o);
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/announced", 1, 0);
	pump(f, 1);
	submit(f, "GET", "/streamed", 1, 1);
	pump(f, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(f->r[i].error, HTTP_E_TOOBIG);
		assert_int_equal(f->r[i].attempts, 1);
		assert_int_equal(f->r[i].body_len, 0);
	}
	assert_int_equal(ts_nrequests(f->ts), 2);
	free(big);
	fixture_free(f);
}

static void
test_slow_answer_times_out(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct ts_step s[] = { { TS_HANG, 0, NULL, NULL, 0, 0, 0 } };

	(void)state;
	o.timeout = 1;
	f = fixture_new(&o);
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "PATCH", "/slow", 0, 0);
	pump(f, 1);
	assert_int_equal(f->r[0].error, HTTP_E_TIMEOUT);
	assert_int_equal(f->r[0].attempts, 1);
	assert_string_not_equal(stats(f).last_error, "");
	fixture_free(f);
}

static void
test_budget_holds_requests_until_the_window_frees_a_slot(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct ts_step ok = { TS_REPLY, 200, NULL, "ok", 0, 0, 0 };

	(void)state;
	o.concurrency = 5;
	o.request_budget = 3;
	f = fixture_new(&o);
	for (int i = 0; i < 5; i++)
		ts_script(f->ts, &ok, 1);
	for (int i = 0; i < 5; i++)
		submit(f, "GET", "/r", 1, i);
	pump(f, 3);
	for (int i = 0; i < 5; i++)
		http_perform(f->c, 0);
	assert_int_equal(ndone(f), 3);
	assert_int_equal(ts_nrequests(f->ts), 3);
	assert_int_equal(http_pending(f->c), 2);
	assert_int_equal(stats(f).budget_used, 3);
	assert_int_equal(stats(f).budget_waits, 2);
	f->offset += 3600 * 1000;
	pump(f, 5);
	assert_int_equal(ts_nrequests(f->ts), 5);
	assert_int_equal(stats(f).budget_used, 2);
	assert_int_equal(stats(f).budget_waits, 2);
	fixture_free(f);
}

static void
test_sequential_requests_reuse_one_connection(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts_step ok = { TS_REPLY, 200, NULL, "ok", 0, 0, 0 };

	(void)state;
	for (int i = 0; i < 4; i++)
		ts_script(f->ts, &ok, 1);
	submit(f, "GET", "/1", 1, 0);
	pump(f, 1);
	submit(f, "GET", "/2", 1, 1);
	pump(f, 2);
	submit(f, "POST", "/3", 1, 2);
	submit(f, "GET", "/4", 1, 3);
	pump(f, 4);
	assert_int_equal(ts_nrequests(f->ts), 4);
	assert_int_equal(ts_accepts(f->ts), 1);
	fixture_free(f);
}

static void
test_cookies_are_sent_back_from_every_handle_of_the_pool(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct ts_step s[] = {
		{ TS_REPLY, 200, "Set-Cookie: JSESSIONID=abc123; Path=/; HttpOnly\r\n", "ok", 0, 0, 0 },
		{ TS_HOLD, 200, NULL, "ok", 0, 2, 0 },
		{ TS_HOLD, 200, NULL, "ok", 0, 2, 0 },
	};
	char *c0, *c1, *c2;

	(void)state;
	o.concurrency = 2;
	f = fixture_new(&o);
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/login", 1, 0);
	pump(f, 1);
	/* held together: two easy handles, one cookie jar */
	submit(f, "GET", "/a", 1, 1);
	submit(f, "GET", "/b", 1, 2);
	pump(f, 3);
	c0 = ts_request_header(f->ts, 0, "Cookie");
	c1 = ts_request_header(f->ts, 1, "Cookie");
	c2 = ts_request_header(f->ts, 2, "Cookie");
	assert_null(c0);
	assert_string_equal(c1, "JSESSIONID=abc123");
	assert_string_equal(c2, "JSESSIONID=abc123");
	assert_int_equal(ts_max_conns(f->ts), 2);
	free(c1);
	free(c2);
	fixture_free(f);
}

static void
test_concurrency_cap_is_respected(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct ts_step hold = { TS_HOLD, 200, NULL, "held", 0, 2, 0 };
	struct ts_step ok = { TS_REPLY, 200, NULL, "ok", 0, 0, 0 };

	(void)state;
	o.concurrency = 2;
	f = fixture_new(&o);
	for (int i = 0; i < 4; i++)
		ts_script(f->ts, &hold, 1);
	ts_script(f->ts, &ok, 1);
	for (int i = 0; i < 5; i++)
		submit(f, "GET", "/r", 1, i);
	pump(f, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(f->r[i].status, 200);
	/* two at once proves parallelism, no more proves the cap */
	assert_int_equal(ts_max_conns(f->ts), 2);
	assert_int_equal(ts_accepts(f->ts), 2);
	fixture_free(f);
}

static void
test_cancel_all_completes_queued_and_in_flight_requests(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct ts_step s[] = { { TS_HANG, 0, NULL, NULL, 0, 0, 0 } };
	int64_t bound = real_ms() + 10000;

	(void)state;
	o.timeout = 30;
	f = fixture_new(&o);
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/hang", 1, 0);
	submit(f, "GET", "/queued", 1, 1);
	while (ts_nrequests(f->ts) < 1 && real_ms() < bound)
		http_perform(f->c, 20);
	assert_int_equal(ts_nrequests(f->ts), 1);
	assert_int_equal(ndone(f), 0);
	http_cancel_all(f->c);
	assert_int_equal(ndone(f), 2);
	assert_int_equal(f->r[0].error, HTTP_E_CANCELED);
	assert_int_equal(f->r[1].error, HTTP_E_CANCELED);
	assert_int_equal(f->r[1].attempts, 0);
	assert_int_equal(http_pending(f->c), 0);
	assert_int_equal(http_perform(f->c, 0), 0);
	fixture_free(f);
}

static void
test_callbacks_never_run_from_submit(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f;
	struct http_request req;
	char *url;

	(void)state;
	o.max_retries = 1;
	f = fixture_new(&o);
	url = xprintf("http://127.0.0.1:%d/", closed_port());
	http_request_init(&req, "GET", url);
	req.retry_safe = 1;
	http_submit(f->p, &req, on_done, &f->r[0]);
	assert_int_equal(ndone(f), 0);
	assert_int_equal(http_pending(f->c), 1);
	pump(f, 1);
	assert_int_equal(f->r[0].error, HTTP_E_CONNECT);
	assert_int_equal(f->r[0].attempts, 2);
	fixture_free(f);
}

static void
test_proxy_from_the_environment_is_ignored(void **state)
{
	struct http_pool_opts o = test_opts();
	struct fixture *f = fixture_new(&o);
	struct ts *proxy = ts_start();
	char *purl = ts_url(proxy, "");
	struct ts_step s[] = { { TS_REPLY, 200, NULL, "direct", 0, 0, 0 } };

	(void)state;
	setenv("http_proxy", purl, 1);
	setenv("HTTPS_PROXY", purl, 1);
	setenv("ALL_PROXY", purl, 1);
	ts_script(f->ts, s, ARRAY_SIZE(s));
	submit(f, "GET", "/r", 1, 0);
	pump(f, 1);
	unsetenv("http_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	assert_int_equal(f->r[0].status, 200);
	assert_int_equal(ts_accepts(proxy), 0);
	ts_stop(proxy);
	free(purl);
	fixture_free(f);
}

static void
test_pool_options_are_validated(void **state)
{
	struct http_client *c = http_client_new();
	struct http_pool_opts o = test_opts();
	char *cause = NULL;

	(void)state;
	o.concurrency = 0;
	assert_null(http_pool_new(c, &o, &cause));
	assert_non_null(strstr(cause, "concurrency"));
	free(cause);
	o = test_opts();
	o.name = NULL;
	cause = NULL;
	assert_null(http_pool_new(c, &o, &cause));
	assert_non_null(cause);
	free(cause);
	http_client_free(c);
}

/* --- budget persistence ------------------------------------------------------ */

#define HOUR_MS		(3600 * 1000LL)
#define MINUTE_MS	(60 * 1000LL)

static int64_t
fixed_clock(void *arg)
{
	return *(int64_t *)arg;
}

/* A pool of budget b on a clock that moves only when the test says. */
static struct http_pool *
budget_pool(struct http_client **c, int64_t *mono, int b)
{
	struct http_pool_opts o = test_opts();
	char *cause = NULL;
	struct http_pool *p;

	o.request_budget = b;
	*c = http_client_new();
	http_client_set_clock(*c, fixed_clock, mono);
	p = http_pool_new(*c, &o, &cause);
	assert_non_null(p);
	return p;
}

static int
budget_used(const struct http_pool *p)
{
	struct http_pool_stats s;

	http_pool_stats(p, &s);
	return s.budget_used;
}

static void
budget_import_ok(struct http_pool *p, const struct http_budget_clock *now, const char *text)
{
	char *cause = NULL;

	assert_int_equal(http_pool_budget_import(p, now, text, &cause), 0);
	assert_null(cause);
}

static void
test_budget_spent_before_a_restart_holds_back_the_new_pool(void **state)
{
	struct http_pool_opts o = test_opts();
	struct ts_step ok = { TS_REPLY, 200, NULL, "ok", 0, 0, 0 };
	struct http_budget_clock wall = { .wall_ms = 1700000000000, .boot_id = NULL };
	struct fixture *f;
	struct http_client *c2;
	struct http_pool *p2;
	char *text = NULL, *cause = NULL;

	(void)state;
	o.request_budget = 5;
	o.concurrency = 5;
	f = fixture_new(&o);
	for (int i = 0; i < 8; i++)
		ts_script(f->ts, &ok, 1);
	for (int i = 0; i < 3; i++)
		submit(f, "GET", "/r", 1, i);
	pump(f, 3);
	http_pool_budget_export(f->p, &wall, 0, &text);
	/* the restarted daemon: a new client and pool, another monotonic clock */
	c2 = http_client_new();
	http_client_set_clock(c2, shifted_clock, &f->offset);
	f->offset += 5 * HOUR_MS;
	p2 = http_pool_new(c2, &o, &cause);
	assert_non_null(p2);
	wall.wall_ms += 1000;
	budget_import_ok(p2, &wall, text);
	assert_int_equal(budget_used(p2), 3);
	http_client_free(f->c);
	f->c = c2;
	f->p = p2;
	for (int i = 3; i < 6; i++)
		submit(f, "GET", "/r", 1, i);
	pump(f, 5);
	for (int i = 0; i < 5; i++)
		http_perform(f->c, 0);
	/* 3 before the restart, 2 after: the third waits for the hour */
	assert_int_equal(ts_nrequests(f->ts), 5);
	assert_int_equal(stats(f).budget_used, 5);
	assert_int_equal(stats(f).budget_waits, 1);
	assert_int_equal(http_pending(f->c), 1);
	free(text);
	fixture_free(f);
}

static void
test_budget_export_counts_minutes_dated_at_their_newest_request(void **state)
{
	int64_t mono = 10 * HOUR_MS;
	struct http_client *c;
	struct http_pool *p = budget_pool(&c, &mono, 100);
	struct http_budget_clock now = { .wall_ms = 5000000, .boot_ms = 777,
	    .boot_id = "0c8f9e3a-1d2b-4c5d-8e9f-aabbccddeeff" };
	char *text = NULL;

	(void)state;
	/* 2 at 10 s and 50 s ago, 3 at 61 s ago, 1 at 59 min 59 s ago */
	budget_import_ok(p, &now, "v1 5000000 - 0 0 10000:1 50000:1 61000:3 3599000:1");
	assert_int_equal(budget_used(p), 6);
	http_pool_budget_export(p, &now, 4, &text);
	assert_string_equal(text, "v1 5000000 0c8f9e3a-1d2b-4c5d-8e9f-aabbccddeeff 777 4 "
	    "10000:2 61000:3 3599000:1");
	free(text);
	/* a second later the oldest is gone */
	mono += 1000;
	now.wall_ms += 1000;
	http_pool_budget_export(p, &now, 0, &text);
	assert_string_equal(text, "v1 5001000 0c8f9e3a-1d2b-4c5d-8e9f-aabbccddeeff 777 0 "
	    "11000:2 62000:3");
	free(text);
	http_client_free(c);
}

static void
test_budget_entries_older_than_an_hour_are_dropped_at_import(void **state)
{
	int64_t mono = 42;
	struct http_client *c;
	struct http_pool *p = budget_pool(&c, &mono, 10);
	struct http_budget_clock now = { .wall_ms = 1700000000000 + HOUR_MS, .boot_id = NULL };

	(void)state;
	/* exported an hour ago: 1 then 1 h old, 2 then 1 s old, 4 reserved */
	budget_import_ok(p, &now, "v1 1700000000000 - 0 4 1000:2 0:1");
	assert_int_equal(budget_used(p), 4);
	http_client_free(c);
	/* exported 59 min ago: the same requests count until their hour ends */
	p = budget_pool(&c, &mono, 10);
	now.wall_ms = 1700000000000 + 59 * MINUTE_MS;
	budget_import_ok(p, &now, "v1 1700000000000 - 0 0 1000:2 0:1");
	assert_int_equal(budget_used(p), 3);
	mono += MINUTE_MS - 1000;
	assert_int_equal(budget_used(p), 1);
	mono += 1000;
	assert_int_equal(budget_used(p), 0);
	http_client_free(c);
}

static void
test_budget_wall_clock_set_back_frees_nothing_early(void **state)
{
	int64_t mono = 5 * HOUR_MS;
	struct http_client *c;
	struct http_pool *p = budget_pool(&c, &mono, 10);
	struct http_budget_clock now = { .wall_ms = 1700000000000 - 10 * HOUR_MS };

	(void)state;
	budget_import_ok(p, &now, "v1 1700000000000 - 0 0 30000:3");
	assert_int_equal(budget_used(p), 3);
	/* counted as no time since the export: freed 59.5 minutes from now */
	mono += HOUR_MS - 30000 - 1;
	assert_int_equal(budget_used(p), 3);
	mono += 1;
	assert_int_equal(budget_used(p), 0);
	http_client_free(c);
}

static void
test_budget_boot_clock_wins_over_a_wall_clock_jump_within_one_boot(void **state)
{
	int64_t mono = 0;
	struct http_client *c;
	struct http_pool *p = budget_pool(&c, &mono, 10);
	/* the wall clock jumped two hours ahead; the boot clock says 10 s */
	struct http_budget_clock now = { .wall_ms = 1700000000000 + 2 * HOUR_MS,
	    .boot_ms = 500000 + 10000, .boot_id = "b00t" };

	(void)state;
	budget_import_ok(p, &now, "v1 1700000000000 b00t 500000 0 0:2");
	assert_int_equal(budget_used(p), 2);
	mono += HOUR_MS - 10000 - 1;
	assert_int_equal(budget_used(p), 2);
	mono += 1;
	assert_int_equal(budget_used(p), 0);
	http_client_free(c);
	/* another boot: only the wall clock can tell, and it says 2 h */
	p = budget_pool(&c, &mono, 10);
	now.boot_id = "other";
	budget_import_ok(p, &now, "v1 1700000000000 b00t 500000 0 0:2");
	assert_int_equal(budget_used(p), 0);
	http_client_free(c);
}

static void
test_budget_import_keeps_the_newest_when_over_a_smaller_budget(void **state)
{
	int64_t mono = HOUR_MS;
	struct http_client *c;
	struct http_pool *p = budget_pool(&c, &mono, 4);
	struct http_budget_clock now = { .wall_ms = 1000 };

	(void)state;
	budget_import_ok(p, &now, "v1 1000 - 0 1 60000:2 600000:5");
	assert_int_equal(budget_used(p), 4);
	/* full until the newest 4 thin out: the reserve, the 2, one of the 5 */
	mono += HOUR_MS - 600000 - 1;
	assert_int_equal(budget_used(p), 4);
	mono += 1;
	assert_int_equal(budget_used(p), 3);
	http_client_free(c);
}

static void
test_budget_malformed_record_is_refused_with_a_cause_and_changes_nothing(void **state)
{
	static const char *bad[] = {
		"", "v2 1 - 0 0", "v1", "v1 x - 0 0", "v1 1 - 0", "v1 1  0 0",
		"v1 1 - 0 0 5", "v1 1 - 0 0 5:0", "v1 1 - 0 0 5:1x", "v1 1 - 0 0 :1",
		"v1 1 - 0 2000000", "v1 99999999999999999999 - 0 0", "v1 1 - 0 0 -5:1",
		"v1 1 - 0 0 5:1,6:1",
		"v1 1 - 0 0 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1 10:1 11:1 12:1 13:1 14:1 "
		"15:1 16:1 17:1 18:1 19:1 20:1 21:1 22:1 23:1 24:1 25:1 26:1 27:1 28:1 29:1 "
		"30:1 31:1 32:1 33:1 34:1 35:1 36:1 37:1 38:1 39:1 40:1 41:1 42:1 43:1 44:1 "
		"45:1 46:1 47:1 48:1 49:1 50:1 51:1 52:1 53:1 54:1 55:1 56:1 57:1 58:1 59:1 "
		"60:1 61:1",
	};
	int64_t mono = HOUR_MS;
	struct http_client *c;
	struct http_pool *p = budget_pool(&c, &mono, 10);
	struct http_budget_clock now = { .wall_ms = 1000 };

	(void)state;
	budget_import_ok(p, &now, "v1 1000 - 0 0 0:2");
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *cause = NULL;

		assert_int_equal(http_pool_budget_import(p, &now, bad[i], &cause), -EINVAL);
		assert_non_null(cause);
		assert_non_null(strstr(cause, "budget record"));
		free(cause);
		assert_int_equal(budget_used(p), 2);
	}
	http_client_free(c);
}

static void
test_budget_allowance_caps_sends_until_raised(void **state)
{
	struct http_pool_opts o = test_opts();
	struct ts_step ok = { TS_REPLY, 200, NULL, "ok", 0, 0, 0 };
	struct fixture *f;

	(void)state;
	o.request_budget = 100;
	o.concurrency = 5;
	f = fixture_new(&o);
	for (int i = 0; i < 5; i++)
		ts_script(f->ts, &ok, 1);
	assert_int_equal(http_pool_budget_allowance(f->p), -1);
	http_pool_budget_allow(f->p, 2);
	for (int i = 0; i < 5; i++)
		submit(f, "GET", "/r", 1, i);
	pump(f, 2);
	for (int i = 0; i < 5; i++)
		http_perform(f->c, 0);
	assert_int_equal(ts_nrequests(f->ts), 2);
	assert_int_equal(http_pool_budget_allowance(f->p), 0);
	/* not the budget: nothing counts as a budget wait */
	assert_int_equal(stats(f).budget_waits, 0);
	http_pool_budget_allow(f->p, -1);
	pump(f, 5);
	assert_int_equal(ts_nrequests(f->ts), 5);
	fixture_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_is_full_jitter_below_an_exponential_cap),
		cmocka_unit_test(test_backoff_never_exceeds_max_and_survives_huge_attempts),
		cmocka_unit_test(test_retry_after_accepts_delta_seconds_and_caps_at_one_hour),
		cmocka_unit_test(test_retry_after_accepts_http_date_relative_to_now),
		cmocka_unit_test(test_retry_after_refuses_garbage),
		cmocka_unit_test(test_link_next_is_found_among_several_links),
		cmocka_unit_test(test_link_next_ignores_commas_and_rel_inside_quoted_params),
		cmocka_unit_test(test_link_next_absent_or_malformed_is_null),
		cmocka_unit_test(test_is_html_by_content_type_or_leading_angle_bracket),
		cmocka_unit_test(test_json_answer_arrives_with_its_headers_parsed),
		cmocka_unit_test(test_request_method_headers_and_body_reach_the_server),
		cmocka_unit_test(test_503_then_200_is_retried_for_a_retry_safe_request),
		cmocka_unit_test(test_reset_then_200_is_retried_for_a_retry_safe_request),
		cmocka_unit_test(test_retries_stop_after_max_retries),
		cmocka_unit_test(test_non_retry_safe_request_is_not_retried_after_503),
		cmocka_unit_test(test_patch_is_sent_once_when_the_connection_resets),
		cmocka_unit_test(test_patch_applied_then_closed_unanswered_is_sent_once_and_may_have_landed),
		cmocka_unit_test(test_patch_closed_before_its_body_was_read_is_applied_at_most_once),
		cmocka_unit_test(test_patches_reuse_the_kept_alive_connection),
		cmocka_unit_test(test_retry_safe_post_lost_on_a_reused_connection_is_resent_whole),
		cmocka_unit_test(test_client_errors_are_never_retried),
		cmocka_unit_test(test_429_pauses_the_whole_pool_until_retry_after),
		cmocka_unit_test(test_429_for_a_non_retry_safe_request_is_returned_and_still_pauses),
		cmocka_unit_test(test_redirect_is_returned_not_followed),
		cmocka_unit_test(test_answer_over_max_body_fails_too_big),
		cmocka_unit_test(test_slow_answer_times_out),
		cmocka_unit_test(test_budget_holds_requests_until_the_window_frees_a_slot),
		cmocka_unit_test(test_sequential_requests_reuse_one_connection),
		cmocka_unit_test(test_cookies_are_sent_back_from_every_handle_of_the_pool),
		cmocka_unit_test(test_concurrency_cap_is_respected),
		cmocka_unit_test(test_cancel_all_completes_queued_and_in_flight_requests),
		cmocka_unit_test(test_callbacks_never_run_from_submit),
		cmocka_unit_test(test_proxy_from_the_environment_is_ignored),
		cmocka_unit_test(test_pool_options_are_validated),
		cmocka_unit_test(test_budget_spent_before_a_restart_holds_back_the_new_pool),
		cmocka_unit_test(test_budget_export_counts_minutes_dated_at_their_newest_request),
		cmocka_unit_test(test_budget_entries_older_than_an_hour_are_dropped_at_import),
		cmocka_unit_test(test_budget_wall_clock_set_back_frees_nothing_early),
		cmocka_unit_test(test_budget_boot_clock_wins_over_a_wall_clock_jump_within_one_boot),
		cmocka_unit_test(test_budget_import_keeps_the_newest_when_over_a_smaller_budget),
		cmocka_unit_test(test_budget_malformed_record_is_refused_with_a_cause_and_changes_nothing),
		cmocka_unit_test(test_budget_allowance_caps_sends_until_raised),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
