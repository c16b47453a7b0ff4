/* http: asynchronous HTTP over one libcurl multi handle.
 *
 * Requests are submitted to a pool (one per remote service).  A pool caps
 * the requests in flight, keeps its own hourly request budget, honours
 * 429 Retry-After by pausing the whole pool, and retries with exponential
 * backoff and full jitter on transport errors, timeouts and 5xx -- but only
 * requests marked retry_safe.  It never retries another 4xx; 401 is handed
 * back so the caller can refresh credentials.  Redirects are not followed
 * (credentials must never reach another host).  TLS peer and host
 * verification are always on.  Cookies are kept in memory per pool, so
 * sessions are reused.  Connections are kept alive and reused by every
 * request of the client, and a pool's TLS sessions are resumed.  A request
 * that is not retry_safe is sent at most once: libcurl re-sends a request
 * whose reused connection died before any answer, and for such a request
 * that becomes HTTP_E_CONNECT ("it may have been applied") instead.
 *
 * Completion callbacks run from http_perform(), http_cancel_all() or
 * http_pool_cancel(), never re-entrantly from http_submit().  A callback may
 * submit requests or cancel, but must not call http_perform() or free the
 * client. */
#ifndef IMPERAI_HTTP_H
#define IMPERAI_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct http_client;
struct http_pool;

struct http_pool_opts {
	const char	*name;		/* "servicenow", "imperai": for stats and logs */
	int		 concurrency;
	int		 connect_timeout;	/* seconds */
	int		 timeout;		/* seconds */
	int		 max_retries;
	const char	*ca_file;
	const char	*proxy;
	int		 request_budget;	/* per rolling hour; 0 = unlimited */
	size_t		 max_body;		/* bytes; larger answers fail with HTTP_E_TOOBIG */
	int		 backoff_base_ms;	/* first retry delay (default 500) */
	int		 backoff_max_ms;	/* cap (default 60000) */
};

/* Transport-level outcomes, in http_response.error (0 = a status arrived). */
enum http_error {
	HTTP_OK = 0,
	HTTP_E_CONNECT = 1,	/* refused, DNS, reset or closed before an answer
				 * (a request sent may have been applied) */
	HTTP_E_TIMEOUT = 2,
	HTTP_E_TLS = 3,
	HTTP_E_TOOBIG = 4,
	HTTP_E_CANCELED = 5,	/* http_client_cancel_all (shutdown) */
	HTTP_E_BUDGET = 6,	/* reserved: over-budget requests wait instead */
	HTTP_E_OTHER = 7,
};

struct http_request {
	const char	*method;	/* "GET", "POST", "PATCH" */
	char		*url;		/* owned */
	char		*body;		/* owned, may be NULL */
	size_t		 body_len;
	char		**headers;	/* owned, "Name: value" */
	size_t		 nheaders;
	int		 retry_safe;	/* may be re-sent after a transport error or 5xx */
	const char	*userpwd;	/* basic auth "user:pass", not owned, not logged */
};

struct http_response {
	long		 status;	/* 0 when error != 0 */
	enum http_error	 error;
	char		*errmsg;	/* transport error text, no secrets */
	char		*body;		/* never NULL, NUL-terminated; a callback may take it (set NULL) */
	size_t		 body_len;
	char		*content_type;
	char		*link;		/* Link header(s), NULL if none */
	char		*location;	/* Location header (3xx are not followed), NULL if none */
	int64_t		 total_count;	/* X-Total-Count, -1 if none */
	int64_t		 retry_after;	/* seconds, -1 if none */
	int		 attempts;	/* how many times it was sent */
	int64_t		 elapsed_ms;	/* from submit to completion, retries included */
};

typedef void (*http_done_fn)(struct http_response *resp, void *arg);

struct http_client *http_client_new(void);
void http_client_free(struct http_client *c);
/* Creates a pool; returns NULL with *cause on a bad option. */
struct http_pool *http_pool_new(struct http_client *c, const struct http_pool_opts *o, char **cause);

/* Test hook: the monotonic millisecond clock behind timers, pauses and the
 * budget window (default CLOCK_MONOTONIC). */
typedef int64_t (*http_clock_fn)(void *arg);
void http_client_set_clock(struct http_client *c, http_clock_fn fn, void *arg);
/* The client's clock, in milliseconds (for callers' own timers). */
int64_t http_client_now(const struct http_client *c);

void http_request_init(struct http_request *r, const char *method, char *url);
void http_request_header(struct http_request *r, const char *fmt, ...) PRINTFLIKE(2, 3);
/* Frees, wiping body and headers (they may hold credentials). */
void http_request_free(struct http_request *r);
void http_response_free(struct http_response *r);

/* Queues a request; takes ownership of *r's contents (and zeroes *r).
 * done is always called exactly once, later, with a response the callback
 * does not free. */
void http_submit(struct http_pool *p, struct http_request *r, http_done_fn done, void *arg);
/* Drives transfers for up to timeout_ms (returns earlier when a callback
 * ran).  Returns the number of requests queued or in flight. */
int http_perform(struct http_client *c, int timeout_ms);
/* Completes every queued and in-flight request with HTTP_E_CANCELED. */
void http_cancel_all(struct http_client *c);
/* The same for one pool (a client of one service going away). */
void http_pool_cancel(struct http_pool *p);
size_t http_pending(const struct http_client *c);

/* Milliseconds until the pool sends again after a 429, 0 if open. */
int64_t http_pool_paused_for(const struct http_pool *p);

struct http_pool_stats {
	uint64_t	 requests;	/* sent, including retries */
	uint64_t	 retries;
	uint64_t	 rate_limited;	/* 429 answers */
	uint64_t	 budget_waits;
	uint64_t	 by_status[6];	/* 0 = transport error, 1..5 = 1xx..5xx */
	int		 budget_used;	/* in the current rolling hour */
	char		 last_error[256];
	int64_t		 last_error_at;
	int64_t		 last_success_at;
};
void http_pool_stats(const struct http_pool *p, struct http_pool_stats *out);

/* Budget persistence: what the pool spent of its request budget in the
 * last hour, as one line of text the caller stores, so that a restarted
 * daemon does not spend the hour's budget again.  The text holds per-minute
 * counts, each dated at its newest request (nothing expires early), and the
 * clocks at export.  Across a restart within one boot the boot clock dates
 * them exactly; across a reboot only the wall clock can, and a wall clock
 * set back counts as no time having passed. */
struct http_budget_clock {
	int64_t		 wall_ms;	/* CLOCK_REALTIME */
	int64_t		 boot_ms;	/* CLOCK_BOOTTIME */
	const char	*boot_id;	/* the kernel's boot id; NULL: unknown */
};
/* The pool's use in the last hour, plus reserve requests it may send
 * after this export (counted at import as sent just before it): a caller
 * storing the text then lets the pool spend exactly that reserve with
 * http_pool_budget_allow().  *out is allocated. */
void http_pool_budget_export(const struct http_pool *p, const struct http_budget_clock *now,
    int reserve, char **out);
/* Counts an export's requests in the pool's window (those older than an
 * hour are dropped; beyond the budget, the newest are kept).  Returns
 * -EINVAL with *cause for text that is not an export; the pool is then
 * untouched. */
int http_pool_budget_import(struct http_pool *p, const struct http_budget_clock *now,
    const char *text, char **cause);
/* Caps what the pool sends: at most n more requests until the next call;
 * -1 (the default) lifts the cap.  Requests over it wait in the queue. */
void http_pool_budget_allow(struct http_pool *p, int n);
/* What is left under the cap, -1 if none is set. */
int http_pool_budget_allowance(const struct http_pool *p);
/* The pool's request_budget (0: unlimited). */
int http_pool_budget(const struct http_pool *p);

/* Pure helpers, exposed for tests. */
/* Delay before retry n (1-based): min(max, base * 2^(n-1)) with full jitter
 * from rnd in [0,1). */
int64_t http_backoff_ms(int attempt, int base_ms, int max_ms, double rnd);
/* Parses Retry-After (delta-seconds or HTTP-date) against now (UNIX
 * seconds) into seconds from now, capped at one hour. */
int http_parse_retry_after(const char *v, int64_t now, int64_t *out);
/* Extracts the rel="next" target of a Link header, NULL if none. */
char *http_link_next(const char *link);
/* 1 if the body looks like HTML rather than JSON (hibernating instance). */
int http_is_html(const char *content_type, const char *body, size_t len);
/* 1 if a request answered with status will not heal by asking again: a
 * 4xx other than 401 (credentials refresh) and 429 (rate limit). */
int http_status_permanent(long status);

#endif
