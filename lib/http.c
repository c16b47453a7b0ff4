/* http: pools over one libcurl multi handle (see http.h). */

#include <sys/queue.h>
#include <sys/random.h>

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define HTTP_WINDOW_MS		(3600 * 1000LL)	/* request budget window */
#define HTTP_MAX_WAIT_S		3600		/* Retry-After cap */
#define HTTP_DEFAULT_MAX_BODY	(16u * 1024 * 1024)

enum xfer_state {
	XFER_QUEUED,
	XFER_TIMER,
	XFER_INFLIGHT,
};

struct http_xfer {
	TAILQ_ENTRY(http_xfer)	 entry;
	struct http_pool	*pool;
	enum xfer_state		 state;
	struct http_request	 req;
	http_done_fn		 done;
	void			*arg;
	CURL			*easy;
	struct curl_slist	*hdrs;
	struct buf		 body;
	size_t			 body_off;	/* of req.body handed to libcurl */
	struct http_response	 resp;
	int64_t			 submitted;
	int64_t			 wake_at;
	int			 budget_waited;
	int			 too_big;
	char			 errbuf[CURL_ERROR_SIZE];
};
TAILQ_HEAD(xfer_list, http_xfer);

struct http_pool {
	struct http_client	*client;
	struct http_pool_opts	 o;		/* strings owned */
	CURLSH			*share;		/* the pool's cookie jar */
	CURL			**idle;		/* easy handles kept for reuse */
	int			 nidle;
	struct xfer_list	 queue;
	struct xfer_list	 inflight;
	int			 ninflight;
	int64_t			 paused_until;
	int64_t			*sent;		/* ring of send times, oldest at sent_head */
	int			 sent_head;
	int			 sent_n;
	int			 allow;		/* sends left under the cap, -1: none */
	struct http_pool_stats	 stats;
};

struct http_client {
	CURLM			*multi;
	struct http_pool	**pools;
	size_t			 npools;
	struct xfer_list	 timers;	/* delayed retries, by wake_at */
	size_t			 pending;
	uint64_t		 rng;
	http_clock_fn		 clock;
	void			*clock_arg;
};

static int64_t
http_monotonic_ms(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
http_client_now(const struct http_client *c)
{
	return c->clock(c->clock_arg);
}

void
http_client_set_clock(struct http_client *c, http_clock_fn fn, void *arg)
{
	c->clock = fn ? fn : http_monotonic_ms;
	c->clock_arg = arg;
}

static uint64_t
http_seed(void)
{
	uint64_t s = 0;

	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s) || s == 0)
		s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	return s;
}

/* xorshift64*: jitter only needs to decorrelate clients, not be secret. */
static double
http_random(struct http_client *c)
{
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return (double)((c->rng * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}

struct http_client *
http_client_new(void)
{
	struct http_client *c = xcalloc(1, sizeof(*c));

	curl_global_init(CURL_GLOBAL_DEFAULT);
	c->multi = curl_multi_init();
	if (c->multi == NULL)
		abort();
	TAILQ_INIT(&c->timers);
	c->rng = http_seed();
	c->clock = http_monotonic_ms;
	return c;
}

static void
http_pool_free(struct http_pool *p)
{
	for (int i = 0; i < p->nidle; i++)
		curl_easy_cleanup(p->idle[i]);
	free(p->idle);
	curl_share_cleanup(p->share);
	free(p->sent);
	free((char *)p->o.name);
	free((char *)p->o.ca_file);
	free((char *)p->o.proxy);
	free(p);
}

void
http_client_free(struct http_client *c)
{
	if (c == NULL)
		return;
	http_cancel_all(c);
	for (size_t i = 0; i < c->npools; i++)
		http_pool_free(c->pools[i]);
	free(c->pools);
	curl_multi_cleanup(c->multi);
	free(c);
	curl_global_cleanup();
}

static int
http_opts_check(const struct http_pool_opts *o, char **cause)
{
	if (o->name == NULL || *o->name == '\0')
		*cause = xstrdup("http pool without a name");
	else if (o->concurrency < 1 || o->concurrency > 64)
		*cause = xprintf("%s: concurrency %d is not in 1..64", o->name, o->concurrency);
	else if (o->connect_timeout < 1 || o->timeout < 1)
		*cause = xprintf("%s: timeouts must be at least 1 second", o->name);
	else if (o->max_retries < 0 || o->max_retries > 20)
		*cause = xprintf("%s: max_retries %d is not in 0..20", o->name, o->max_retries);
	else if (o->request_budget < 0)
		*cause = xprintf("%s: request_budget %d is negative", o->name, o->request_budget);
	else if (o->backoff_base_ms < 0 || o->backoff_max_ms < 0)
		*cause = xprintf("%s: negative backoff", o->name);
	else
		return 0;
	return -EINVAL;
}

/* The multi handle's connection cache holds every pool's connections
 * (libcurl's default, 4 per handle in use, closes some as a burst ends). */
static void
http_keep_connections(struct http_client *c)
{
	long n = 0;

	for (size_t i = 0; i < c->npools; i++)
		n += c->pools[i]->o.concurrency;
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, n);
}

struct http_pool *
http_pool_new(struct http_client *c, const struct http_pool_opts *o, char **cause)
{
	struct http_pool *p;

	if (http_opts_check(o, cause) != 0)
		return NULL;
	p = xcalloc(1, sizeof(*p));
	p->client = c;
	p->o = *o;
	p->o.name = xstrdup(o->name);
	p->o.ca_file = o->ca_file ? xstrdup(o->ca_file) : NULL;
	p->o.proxy = o->proxy ? xstrdup(o->proxy) : NULL;
	if (p->o.max_body == 0)
		p->o.max_body = HTTP_DEFAULT_MAX_BODY;
	if (p->o.backoff_base_ms == 0)
		p->o.backoff_base_ms = 500;
	if (p->o.backoff_max_ms == 0)
		p->o.backoff_max_ms = 60000;
	if (p->o.request_budget > 0)
		p->sent = xcalloc((size_t)p->o.request_budget, sizeof(*p->sent));
	p->allow = -1;
	p->idle = xcalloc((size_t)p->o.concurrency, sizeof(*p->idle));
	p->share = curl_share_init();
	if (p->share == NULL)
		abort();
	curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
	/* one TLS session cache for the pool's handles: a new connection
	 * resumes (one round trip, no certificate work) */
	curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->inflight);
	c->pools = xreallocarray(c->pools, c->npools + 1, sizeof(*c->pools));
	c->pools[c->npools++] = p;
	http_keep_connections(c);
	return p;
}

void
http_request_init(struct http_request *r, const char *method, char *url)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->url = url;
}

void
http_request_header(struct http_request *r, const char *fmt, ...)
{
	va_list ap;

	r->headers = xreallocarray(r->headers, r->nheaders + 1, sizeof(*r->headers));
	va_start(ap, fmt);
	r->headers[r->nheaders++] = xvprintf(fmt, ap);
	va_end(ap);
}

static void
http_wipe_free(char *s, size_t len)
{
	if (s == NULL)
		return;
	explicit_bzero(s, len);
	free(s);
}

void
http_request_free(struct http_request *r)
{
	free(r->url);
	http_wipe_free(r->body, r->body_len);
	for (size_t i = 0; i < r->nheaders; i++)
		http_wipe_free(r->headers[i], strlen(r->headers[i]));
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

void
http_response_free(struct http_response *r)
{
	free(r->errmsg);
	free(r->body);
	free(r->content_type);
	free(r->link);
	free(r->location);
	memset(r, 0, sizeof(*r));
	r->total_count = -1;
	r->retry_after = -1;
}

/* Forgets what the previous attempt (or a 1xx) received; keeps counters. */
static void
http_response_reset(struct http_response *r)
{
	int attempts = r->attempts;

	http_response_free(r);
	r->attempts = attempts;
}

void
http_submit(struct http_pool *p, struct http_request *r, http_done_fn done, void *arg)
{
	struct http_xfer *x = xcalloc(1, sizeof(*x));

	x->pool = p;
	x->req = *r;
	memset(r, 0, sizeof(*r));
	x->done = done;
	x->arg = arg;
	x->submitted = http_client_now(p->client);
	x->state = XFER_QUEUED;
	buf_init(&x->body);
	http_response_reset(&x->resp);
	TAILQ_INSERT_TAIL(&p->queue, x, entry);
	p->client->pending++;
}

size_t
http_pending(const struct http_client *c)
{
	return c->pending;
}

int
http_status_permanent(long status)
{
	return status >= 400 && status < 500 && status != 401 && status != 429;
}

int64_t
http_backoff_ms(int attempt, int base_ms, int max_ms, double rnd)
{
	int64_t cap = base_ms > 0 ? base_ms : 0;

	for (int i = 1; i < attempt && cap < max_ms; i++)
		cap *= 2;
	if (cap > max_ms)
		cap = max_ms;
	if (rnd < 0 || rnd >= 1)
		rnd = 0;
	return (int64_t)(rnd * (double)cap);
}

int
http_parse_retry_after(const char *v, int64_t now, int64_t *out)
{
	int64_t secs;

	while (*v == ' ' || *v == '\t')
		v++;
	if (isdigit((unsigned char)*v)) {
		char *end;
		long long n;

		errno = 0;
		n = strtoll(v, &end, 10);
		if (*end != '\0' && strspn(end, " \t") != strlen(end))
			return -EINVAL;
		secs = errno == ERANGE || n > HTTP_MAX_WAIT_S ? HTTP_MAX_WAIT_S : (int64_t)n;
	} else {
		time_t t = curl_getdate(v, NULL);

		if (t == (time_t)-1)
			return -EINVAL;
		secs = (int64_t)t - now;
	}
	if (secs < 0)
		secs = 0;
	*out = secs > HTTP_MAX_WAIT_S ? HTTP_MAX_WAIT_S : secs;
	return 0;
}

/* Returns the end of a quoted string starting at p ('"'), or NULL. */
static const char *
http_skip_quoted(const char *p)
{
	for (p++; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* True when the space-separated rel list [v, end) holds "next". */
static int
http_rel_has_next(const char *v, const char *end)
{
	while (v < end) {
		size_t n;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		n = 0;
		while (v + n < end && v[n] != ' ' && v[n] != '\t')
			n++;
		if (n == 4 && strncasecmp(v, "next", 4) == 0)
			return 1;
		v += n;
	}
	return 0;
}

/* A count header: decimal digits only, else -1 (as if absent). */
static int64_t
http_parse_count(const char *v)
{
	int64_t n = 0;

	if (*v == '\0' || strlen(v) > 18)
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		n = n * 10 + (*v - '0');
	}
	return n;
}

/* Parses one ;param of a link at *pp; sets *next when it is rel=next. */
static int
http_link_param(const char **pp, int *next)
{
	const char *p = *pp + 1, *name, *v, *vend;
	size_t nlen;

	p += strspn(p, " \t");
	name = p;
	nlen = strcspn(p, "=;, \t");
	p += nlen;
	p += strspn(p, " \t");
	v = vend = p;
	if (*p == '=') {
		p++;
		p += strspn(p, " \t");
		if (*p == '"') {
			if ((vend = http_skip_quoted(p)) == NULL)
				return -1;
			v = p + 1;
			p = vend--;
		} else {
			v = p;
			p += strcspn(p, ";, \t");
			vend = p;
		}
		p += strspn(p, " \t");
	}
	if (nlen == 3 && strncasecmp(name, "rel", 3) == 0 && http_rel_has_next(v, vend))
		*next = 1;
	*pp = p;
	return 0;
}

char *
http_link_next(const char *link)
{
	const char *p = link, *uri, *uend;

	while (p != NULL && *p != '\0') {
		int next = 0;

		p += strspn(p, " \t,");
		if (*p != '<' || (uend = strchr(p, '>')) == NULL)
			return NULL;
		uri = p + 1;
		p = uend + 1;
		p += strspn(p, " \t");
		while (*p == ';')
			if (http_link_param(&p, &next) != 0)
				return NULL;
		if (*p != ',' && *p != '\0')
			return NULL;
		if (next)
			return xstrndup(uri, (size_t)(uend - uri));
	}
	return NULL;
}

int
http_is_html(const char *content_type, const char *body, size_t len)
{
	size_t i = 0;

	if (content_type != NULL) {
		content_type += strspn(content_type, " \t");
		if (strncasecmp(content_type, "text/html", 9) == 0)
			return 1;
	}
	if (body == NULL)
		return 0;
	if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < len && isspace((unsigned char)body[i]))
		i++;
	return i < len && body[i] == '<';
}

static char *
http_trim(char *s)
{
	size_t n;

	s += strspn(s, " \t");
	n = strlen(s);
	while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' ||
	    s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

static void
http_take_header(struct http_response *r, char *line)
{
	char *colon = strchr(line, ':'), *v;

	if (colon == NULL)
		return;
	*colon = '\0';
	v = http_trim(colon + 1);
	if (strcasecmp(line, "content-type") == 0)
		str_replace(&r->content_type, v);
	else if (strcasecmp(line, "location") == 0)
		str_replace(&r->location, v);
	else if (strcasecmp(line, "x-total-count") == 0)
		r->total_count = http_parse_count(v);
	else if (strcasecmp(line, "retry-after") == 0 &&
	    http_parse_retry_after(v, (int64_t)time(NULL), &r->retry_after) != 0)
		r->retry_after = -1;
	else if (strcasecmp(line, "link") == 0) {
		char *old = r->link;

		r->link = old ? xprintf("%s, %s", old, v) : xstrdup(v);
		free(old);
	}
}

static size_t
http_on_header(char *data, size_t size, size_t n, void *arg)
{
	struct http_xfer *x = arg;
	size_t len = size * n;
	char *line = xstrndup(data, len);

	if (strncmp(line, "HTTP/", 5) == 0)
		http_response_reset(&x->resp);
	else
		http_take_header(&x->resp, line);
	free(line);
	return len;
}

static size_t
http_on_body(char *data, size_t size, size_t n, void *arg)
{
	struct http_xfer *x = arg;
	size_t len = size * n;

	if (len > x->pool->o.max_body - x->body.len) {
		x->too_big = 1;
		return 0;	/* aborts the transfer with CURLE_WRITE_ERROR */
	}
	buf_add(&x->body, data, len);
	return len;
}

/* The body goes to libcurl through a read callback, never as
 * CURLOPT_POSTFIELDS, so that libcurl cannot re-send it unasked. */
static size_t
http_on_read(char *dst, size_t size, size_t n, void *arg)
{
	struct http_xfer *x = arg;
	size_t len = size * n, left = x->req.body_len - x->body_off;

	if (len > left)
		len = left;
	if (len > 0)
		memcpy(dst, x->req.body + x->body_off, len);
	x->body_off += len;
	return len;
}

/* libcurl rewinds a body only to re-send the request on a new connection
 * when the reused one died before any answer (Curl_retry_request, 7.88).
 * Allowed for a retry_safe request; for any other, the request may have
 * been applied, so the refusal ends the transfer with
 * CURLE_SEND_FAIL_REWIND, reported as a lost answer. */
static int
http_on_seek(void *arg, curl_off_t off, int origin)
{
	struct http_xfer *x = arg;

	if (!x->req.retry_safe || origin != SEEK_SET || off < 0 || (size_t)off > x->req.body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->body_off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static struct curl_slist *
http_header_list(const struct http_request *r)
{
	struct curl_slist *l = NULL;

	for (size_t i = 0; i < r->nheaders; i++)
		l = curl_slist_append(l, r->headers[i]);
	/* a 100-continue round trip per body buys nothing against an API */
	if (r->body != NULL)
		l = curl_slist_append(l, "Expect:");
	return l;
}

/* Transport and TLS policy; returns non-zero if an option was refused. */
static int
http_easy_policy(CURL *e, const struct http_pool_opts *o)
{
	int bad = 0;

	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)o->connect_timeout) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)o->timeout) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
	if (o->ca_file != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file) != CURLE_OK;
	/* "" rather than unset: an http(s)_proxy in the service's environment
	 * must not silently route credentials through a proxy the
	 * configuration does not name. */
	bad |= curl_easy_setopt(e, CURLOPT_PROXY, o->proxy ? o->proxy : "") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
#endif
	bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
	return bad;
}

/* Per-request options; every one a previous request may have set is
 * set again, because the handle is reused without curl_easy_reset(). */
static int
http_easy_request(CURL *e, struct http_xfer *x)
{
	const struct http_request *r = &x->req;
	int custom = strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0;
	int bad = 0;

	bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK;
	if (r->body != NULL || strcmp(r->method, "GET") != 0) {
		x->body_off = 0;
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_READDATA, x) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_SEEKDATA, x) != CURLE_OK;
	} else
		bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, custom ? r->method : NULL) != CURLE_OK;
	x->hdrs = http_header_list(r);
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERPWD, r->userpwd) != CURLE_OK;
	/* Without a body byte sent, libcurl re-sends on a new connection
	 * without rewinding (http_on_seek never hears of it): harmless when a
	 * body was still due, but a request without one was complete. */
	bad |= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT,
	    !r->retry_safe && r->body_len == 0 ? 1L : 0L) != CURLE_OK;
	return bad;
}

/* A new handle with the pool's policy and cookie jar.  Set once: libcurl
 * (7.88) leaks the COOKIEFILE list on curl_easy_reset(). */
static CURL *
http_easy_new(struct http_pool *p)
{
	CURL *e = curl_easy_init();
	int bad;

	if (e == NULL)
		abort();
	bad = http_easy_policy(e, &p->o);
	bad |= curl_easy_setopt(e, CURLOPT_SHARE, p->share) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_COOKIEFILE, "") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_READFUNCTION, http_on_read) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, http_on_seek) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) != CURLE_OK;
	if (bad) {
		curl_easy_cleanup(e);
		return NULL;
	}
	return e;
}

static CURL *
http_easy_get(struct http_pool *p)
{
	if (p->nidle > 0)
		return p->idle[--p->nidle];
	return http_easy_new(p);
}

static void
http_easy_put(struct http_pool *p, CURL *e)
{
	if (p->nidle < p->o.concurrency)
		p->idle[p->nidle++] = e;
	else
		curl_easy_cleanup(e);
}

static void
http_budget_expire(struct http_pool *p, int64_t now)
{
	while (p->sent_n > 0 && p->sent[p->sent_head] + HTTP_WINDOW_MS <= now) {
		p->sent_head = (p->sent_head + 1) % p->o.request_budget;
		p->sent_n--;
	}
}

/* Takes one request from the rolling-hour budget; 0 if none is left. */
static int
http_budget_take(struct http_pool *p, int64_t now)
{
	if (p->o.request_budget == 0)
		return 1;
	http_budget_expire(p, now);
	if (p->sent_n == p->o.request_budget)
		return 0;
	p->sent[(p->sent_head + p->sent_n) % p->o.request_budget] = now;
	p->sent_n++;
	return 1;
}

static void
http_complete(struct http_xfer *x, int64_t now)
{
	struct http_client *c = x->pool->client;

	x->resp.body_len = x->body.len;
	x->resp.body = buf_detach(&x->body);
	x->resp.elapsed_ms = now - x->submitted;
	c->pending--;
	x->done(&x->resp, x->arg);
	http_response_free(&x->resp);
	http_request_free(&x->req);
	free(x);
}

static void
http_fail(struct http_xfer *x, enum http_error err, const char *msg, int64_t now)
{
	x->resp.status = 0;
	x->resp.error = err;
	str_replace(&x->resp.errmsg, msg);
	http_complete(x, now);
}

/* Hands a queued request to libcurl; returns 0 if libcurl refused it. */
static int
http_start(struct http_pool *p, struct http_xfer *x, int64_t now)
{
	CURL *e = http_easy_get(p);

	x->errbuf[0] = '\0';
	x->too_big = 0;
	if (e == NULL || http_easy_request(e, x) != 0 ||
	    curl_multi_add_handle(p->client->multi, e) != CURLM_OK) {
		curl_slist_free_all(x->hdrs);
		x->hdrs = NULL;
		if (e != NULL)
			curl_easy_cleanup(e);
		http_fail(x, HTTP_E_OTHER, "libcurl refused the request options", now);
		return 0;
	}
	x->easy = e;
	x->state = XFER_INFLIGHT;
	x->resp.attempts++;
	p->stats.requests++;
	p->ninflight++;
	TAILQ_INSERT_TAIL(&p->inflight, x, entry);
	return 1;
}

static void
http_mark_budget_waits(struct http_pool *p)
{
	struct http_xfer *x;

	TAILQ_FOREACH(x, &p->queue, entry) {
		if (!x->budget_waited) {
			x->budget_waited = 1;
			p->stats.budget_waits++;
		}
	}
}

/* Starts queued requests while concurrency, pause and budget allow. */
static int
http_pool_dispatch(struct http_pool *p, int64_t now)
{
	struct http_xfer *x;
	int failed = 0;

	while ((x = TAILQ_FIRST(&p->queue)) != NULL) {
		if (p->ninflight >= p->o.concurrency || now < p->paused_until || p->allow == 0)
			break;
		if (!http_budget_take(p, now)) {
			http_mark_budget_waits(p);
			break;
		}
		if (p->allow > 0)
			p->allow--;
		TAILQ_REMOVE(&p->queue, x, entry);
		failed += !http_start(p, x, now);
	}
	return failed;
}

static void
http_fire_timers(struct http_client *c, int64_t now)
{
	struct http_xfer *x;

	while ((x = TAILQ_FIRST(&c->timers)) != NULL && x->wake_at <= now) {
		TAILQ_REMOVE(&c->timers, x, entry);
		x->state = XFER_QUEUED;
		TAILQ_INSERT_TAIL(&x->pool->queue, x, entry);
	}
}

/* Returns how many callbacks ran (requests libcurl refused). */
static int
http_dispatch(struct http_client *c)
{
	int64_t now = http_client_now(c);
	int ran = 0;

	http_fire_timers(c, now);
	for (size_t i = 0; i < c->npools; i++)
		ran += http_pool_dispatch(c->pools[i], now);
	return ran;
}

/* Milliseconds until a timer, a pause or the budget window lets a
 * request go, -1 if nothing waits on time. */
static int64_t
http_next_wake(struct http_client *c, int64_t now)
{
	int64_t wake = INT64_MAX;
	struct http_xfer *x = TAILQ_FIRST(&c->timers);

	if (x != NULL)
		wake = x->wake_at;
	for (size_t i = 0; i < c->npools; i++) {
		struct http_pool *p = c->pools[i];

		/* a cap is lifted by the caller, not by time */
		if (TAILQ_EMPTY(&p->queue) || p->ninflight >= p->o.concurrency || p->allow == 0)
			continue;
		if (p->paused_until > now && p->paused_until < wake)
			wake = p->paused_until;
		else if (p->o.request_budget > 0 && p->sent_n == p->o.request_budget &&
		    p->sent[p->sent_head] + HTTP_WINDOW_MS < wake)
			wake = p->sent[p->sent_head] + HTTP_WINDOW_MS;
	}
	if (wake == INT64_MAX)
		return -1;
	return wake > now ? wake - now : 0;
}

static enum http_error
http_map_error(const struct http_xfer *x, CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return HTTP_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return HTTP_E_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SEND_FAIL_REWIND:	/* see http_on_seek */
		return HTTP_E_CONNECT;
	case CURLE_FILESIZE_EXCEEDED:
		return HTTP_E_TOOBIG;
	case CURLE_WRITE_ERROR:
		return x->too_big ? HTTP_E_TOOBIG : HTTP_E_OTHER;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CRL_BADFILE:
		return HTTP_E_TLS;
	default:
		return HTTP_E_OTHER;
	}
}

/* Takes a finished transfer out of libcurl and records its outcome. */
static void
http_detach(struct http_xfer *x, CURLcode rc)
{
	struct http_pool *p = x->pool;
	long status = 0;

	x->resp.error = http_map_error(x, rc);
	if (x->resp.error == HTTP_OK)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	else if (x->resp.error == HTTP_E_TOOBIG)
		x->resp.errmsg = xprintf("answer larger than %zu bytes", p->o.max_body);
	else if (rc == CURLE_SEND_FAIL_REWIND)
		x->resp.errmsg = xstrdup("connection lost after the request was sent, before any "
		    "answer: it may have been applied");
	else
		x->resp.errmsg = xstrdup(x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
	x->resp.status = status;
	curl_multi_remove_handle(p->client->multi, x->easy);
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	http_easy_put(p, x->easy);
	x->easy = NULL;
	TAILQ_REMOVE(&p->inflight, x, entry);
	p->ninflight--;
}

static void
http_account(struct http_pool *p, const struct http_response *r)
{
	time_t now = time(NULL);
	long cls = r->status / 100;

	p->stats.by_status[cls >= 1 && cls <= 5 ? cls : 0]++;
	if (r->status >= 200 && r->status < 300) {
		p->stats.last_success_at = (int64_t)now;
		return;
	}
	if (r->error != HTTP_OK)
		snprintf(p->stats.last_error, sizeof(p->stats.last_error), "%s", r->errmsg);
	else if (r->status >= 400)
		snprintf(p->stats.last_error, sizeof(p->stats.last_error), "HTTP status %ld", r->status);
	else
		return;
	p->stats.last_error_at = (int64_t)now;
}

static int
http_may_retry(const struct http_xfer *x)
{
	return x->req.retry_safe && x->resp.attempts <= x->pool->o.max_retries;
}

static int
http_transient(const struct http_response *r)
{
	return r->error == HTTP_E_CONNECT || r->error == HTTP_E_TIMEOUT || r->status >= 500;
}

/* The whole pool waits out a 429: the limit is per user, not per request. */
static void
http_pause(struct http_pool *p, const struct http_xfer *x, int64_t now)
{
	int64_t wait = x->resp.retry_after >= 0 ? x->resp.retry_after * 1000 :
	    http_backoff_ms(x->resp.attempts, p->o.backoff_base_ms, p->o.backoff_max_ms,
	    http_random(p->client));

	p->stats.rate_limited++;
	if (now + wait > p->paused_until)
		p->paused_until = now + wait;
}

static void
http_requeue(struct http_xfer *x, int64_t delay, int64_t now)
{
	struct http_client *c = x->pool->client;
	struct http_xfer *t;

	x->pool->stats.retries++;
	http_response_reset(&x->resp);
	buf_reset(&x->body);
	if (delay <= 0) {
		x->state = XFER_QUEUED;
		TAILQ_INSERT_TAIL(&x->pool->queue, x, entry);
		return;
	}
	x->state = XFER_TIMER;
	x->wake_at = now + delay;
	TAILQ_FOREACH(t, &c->timers, entry) {
		if (t->wake_at > x->wake_at) {
			TAILQ_INSERT_BEFORE(t, x, entry);
			return;
		}
	}
	TAILQ_INSERT_TAIL(&c->timers, x, entry);
}

static int64_t
http_retry_delay(struct http_xfer *x)
{
	struct http_pool *p = x->pool;
	int64_t d = http_backoff_ms(x->resp.attempts, p->o.backoff_base_ms, p->o.backoff_max_ms,
	    http_random(p->client));

	/* a 503 during maintenance may say how long; never beyond the cap */
	if (x->resp.retry_after >= 0)
		d = x->resp.retry_after * 1000 < p->o.backoff_max_ms ?
		    x->resp.retry_after * 1000 : p->o.backoff_max_ms;
	return d;
}

/* Retries or completes a detached transfer; returns 1 if done ran. */
static int
http_after(struct http_xfer *x)
{
	struct http_pool *p = x->pool;
	int64_t now = http_client_now(p->client);

	http_account(p, &x->resp);
	if (x->resp.status == 429) {
		http_pause(p, x, now);
		if (http_may_retry(x)) {
			http_requeue(x, 0, now);
			return 0;
		}
	} else if (http_transient(&x->resp) && http_may_retry(x)) {
		http_requeue(x, http_retry_delay(x), now);
		return 0;
	}
	http_complete(x, now);
	return 1;
}

static int
http_drain(struct http_client *c)
{
	CURLMsg *m;
	int left, ran = 0;

	/* one message at a time: a callback may cancel other transfers, and
	 * removing a handle drops its pending message */
	while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
		struct http_xfer *x;
		CURLcode rc;
		char *priv;

		if (m->msg != CURLMSG_DONE)
			continue;
		rc = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		x = (struct http_xfer *)(void *)priv;
		http_detach(x, rc);
		ran += http_after(x);
	}
	return ran;
}

int
http_perform(struct http_client *c, int timeout_ms)
{
	int64_t deadline = http_monotonic_ms(NULL) + (timeout_ms > 0 ? timeout_ms : 0);
	int running, ran = 0;

	for (;;) {
		int64_t left, wake;

		ran += http_dispatch(c);
		curl_multi_perform(c->multi, &running);
		ran += http_drain(c);
		left = deadline - http_monotonic_ms(NULL);
		if (ran > 0) {
			/* Refill the slots the finished requests freed (and send
			 * what callbacks queued) before the caller's own work,
			 * which may wait on the disk. */
			ran += http_dispatch(c);
			curl_multi_perform(c->multi, &running);
			/* a connection that completed at once (a near peer) sends now */
			curl_multi_perform(c->multi, &running);
			break;
		}
		if (left <= 0)
			break;
		wake = http_next_wake(c, http_client_now(c));
		if (wake >= 0 && wake < left)
			left = wake;
		curl_multi_poll(c->multi, NULL, 0, (int)left, NULL);
	}
	return (int)c->pending;
}

/* Completes the list's requests (of one pool, or all) as canceled. */
static void
http_cancel_list(struct xfer_list *l, const struct http_pool *only, int64_t now)
{
	struct xfer_list doomed = TAILQ_HEAD_INITIALIZER(doomed);
	struct http_xfer *x, *next;

	for (x = TAILQ_FIRST(l); x != NULL; x = next) {
		next = TAILQ_NEXT(x, entry);
		if (only != NULL && x->pool != only)
			continue;
		TAILQ_REMOVE(l, x, entry);
		TAILQ_INSERT_TAIL(&doomed, x, entry);
	}
	while ((x = TAILQ_FIRST(&doomed)) != NULL) {
		TAILQ_REMOVE(&doomed, x, entry);
		http_fail(x, HTTP_E_CANCELED, "canceled", now);
	}
}

static int
http_pool_idle(const struct http_pool *p)
{
	const struct http_xfer *x;

	TAILQ_FOREACH(x, &p->client->timers, entry)
		if (x->pool == p)
			return 0;
	return TAILQ_EMPTY(&p->queue) && TAILQ_EMPTY(&p->inflight);
}

void
http_pool_cancel(struct http_pool *p)
{
	/* callbacks may submit more; cancel until the pool stays empty */
	while (!http_pool_idle(p)) {
		int64_t now = http_client_now(p->client);
		struct xfer_list inflight = TAILQ_HEAD_INITIALIZER(inflight);
		struct http_xfer *x;

		/* detaching removes from p->inflight itself */
		while ((x = TAILQ_FIRST(&p->inflight)) != NULL) {
			http_detach(x, CURLE_ABORTED_BY_CALLBACK);
			TAILQ_INSERT_TAIL(&inflight, x, entry);
		}
		http_cancel_list(&inflight, NULL, now);
		http_cancel_list(&p->queue, NULL, now);
		http_cancel_list(&p->client->timers, p, now);
	}
}

void
http_cancel_all(struct http_client *c)
{
	while (c->pending > 0)
		for (size_t i = 0; i < c->npools; i++)
			http_pool_cancel(c->pools[i]);
}

int64_t
http_pool_paused_for(const struct http_pool *p)
{
	int64_t now = http_client_now(p->client);

	return p->paused_until > now ? p->paused_until - now : 0;
}

void
http_pool_stats(const struct http_pool *p, struct http_pool_stats *out)
{
	int64_t now = http_client_now(p->client);
	int used = 0;

	*out = p->stats;
	for (int i = 0; i < p->sent_n; i++)
		if (p->sent[(p->sent_head + i) % p->o.request_budget] + HTTP_WINDOW_MS > now)
			used++;
	out->budget_used = used;
}

#define HTTP_BUCKET_MS		(60 * 1000LL)
#define HTTP_BUCKETS		((int)(HTTP_WINDOW_MS / HTTP_BUCKET_MS))
#define HTTP_BOOT_ID_MAX	64
#define HTTP_BUDGET_MAX		1000000		/* the configuration's own bound */

struct http_budget_snap {
	int64_t		 wall_ms;
	int64_t		 boot_ms;
	char		 boot_id[HTTP_BOOT_ID_MAX + 1];
	int64_t		 reserve;
	int64_t		 age[HTTP_BUCKETS];	/* ms before the export */
	int64_t		 count[HTTP_BUCKETS];
	int		 n;
};

/* A time and how many requests it dates, when merging into the ring. */
struct http_budget_group {
	int64_t		 at;
	int64_t		 count;
};

/* A boot id goes into the text as one token, else not at all. */
static const char *
http_boot_id_token(const char *id)
{
	size_t n;

	if (id == NULL)
		return "-";
	n = strspn(id, "0123456789abcdefABCDEF-");
	return n > 0 && n <= HTTP_BOOT_ID_MAX && id[n] == '\0' ? id : "-";
}

void
http_pool_budget_export(const struct http_pool *p, const struct http_budget_clock *now,
    int reserve, char **out)
{
	int64_t mono = http_client_now(p->client), age[HTTP_BUCKETS];
	int count[HTTP_BUCKETS] = { 0 };
	struct buf b;

	buf_init(&b);
	buf_addf(&b, "v1 %" PRId64 " %s %" PRId64 " %d", now->wall_ms,
	    http_boot_id_token(now->boot_id), now->boot_ms, reserve > 0 ? reserve : 0);
	for (int i = 0; i < p->sent_n; i++) {
		int64_t a = mono - p->sent[(p->sent_head + i) % p->o.request_budget];
		int k;

		if (a >= HTTP_WINDOW_MS)
			continue;
		if (a < 0)
			a = 0;
		k = (int)(a / HTTP_BUCKET_MS);
		/* a minute is dated at its newest request: none expires early */
		if (count[k]++ == 0 || a < age[k])
			age[k] = a;
	}
	for (int k = 0; k < HTTP_BUCKETS; k++)
		if (count[k] > 0)
			buf_addf(&b, " %" PRId64 ":%d", age[k], count[k]);
	*out = buf_detach(&b);
}

/* Reads a decimal in 0..max ended by sep (a space also by the end of
 * the text) and steps over it. */
static int
http_budget_num(const char **s, int64_t max, char sep, int64_t *out)
{
	const char *q = *s;
	int64_t v = 0;

	if (!isdigit((unsigned char)*q))
		return -1;
	for (; isdigit((unsigned char)*q); q++) {
		if (v > (max - (*q - '0')) / 10)
			return -1;
		v = v * 10 + (*q - '0');
	}
	if (*q == sep)
		q++;
	else if (!(sep == ' ' && *q == '\0'))
		return -1;
	*out = v;
	*s = q;
	return 0;
}

static int
http_budget_parse_buckets(const char **q, struct http_budget_snap *snap)
{
	while (**q != '\0') {
		if (snap->n == HTTP_BUCKETS ||
		    http_budget_num(q, INT64_MAX / 4, ':', &snap->age[snap->n]) < 0 ||
		    http_budget_num(q, HTTP_BUDGET_MAX, ' ', &snap->count[snap->n]) < 0 ||
		    snap->count[snap->n] == 0)
			return -1;
		snap->n++;
	}
	return 0;
}

static int
http_budget_parse(const char *text, struct http_budget_snap *snap, char **cause)
{
	const char *q = text;
	size_t idlen;

	memset(snap, 0, sizeof(*snap));
	if (strncmp(q, "v1 ", 3) != 0) {
		*cause = xstrdup("not a request budget record (no \"v1\" at its start)");
		return -EINVAL;
	}
	q += 3;
	if (http_budget_num(&q, INT64_MAX / 4, ' ', &snap->wall_ms) < 0)
		goto bad;
	idlen = strcspn(q, " ");
	if (idlen == 0 || idlen > HTTP_BOOT_ID_MAX || q[idlen] != ' ')
		goto bad;
	memcpy(snap->boot_id, q, idlen);
	q += idlen + 1;
	if (http_budget_num(&q, INT64_MAX / 4, ' ', &snap->boot_ms) < 0 ||
	    http_budget_num(&q, HTTP_BUDGET_MAX, ' ', &snap->reserve) < 0 ||
	    http_budget_parse_buckets(&q, snap) < 0)
		goto bad;
	return 0;
bad:
	*cause = xprintf("malformed request budget record at byte %td", q - text);
	return -EINVAL;
}

/* Time since the export, never more than could have passed. */
static int64_t
http_budget_elapsed(const struct http_budget_snap *snap, const struct http_budget_clock *now)
{
	/* Within one boot the boot clock is exact, whatever the wall clock did. */
	if (now->boot_id != NULL && strcmp(snap->boot_id, "-") != 0 &&
	    strcmp(snap->boot_id, now->boot_id) == 0 && now->boot_ms >= snap->boot_ms)
		return now->boot_ms - snap->boot_ms;
	/* Across a reboot only the wall clock: set back, it counts as no time. */
	return now->wall_ms > snap->wall_ms ? now->wall_ms - snap->wall_ms : 0;
}

static int
http_budget_group_newest_first(const void *a, const void *b)
{
	const struct http_budget_group *x = a, *y = b;

	return (x->at < y->at) - (x->at > y->at);
}

/* Refills the ring with the newest request_budget of the groups. */
static void
http_budget_refill(struct http_pool *p, struct http_budget_group *g, size_t ng)
{
	int budget = p->o.request_budget, n = 0;

	qsort(g, ng, sizeof(*g), http_budget_group_newest_first);
	for (size_t i = 0; i < ng && n < budget; i++)
		n += (int)(g[i].count < budget - n ? g[i].count : budget - n);
	p->sent_head = 0;
	p->sent_n = n;
	for (size_t i = 0; i < ng && n > 0; i++)
		for (int64_t k = 0; k < g[i].count && n > 0; k++)
			p->sent[--n] = g[i].at;
}

int
http_pool_budget_import(struct http_pool *p, const struct http_budget_clock *now,
    const char *text, char **cause)
{
	struct http_budget_snap snap;
	struct http_budget_group *g;
	int64_t mono = http_client_now(p->client), elapsed;
	size_t ng = 0;

	if (http_budget_parse(text, &snap, cause) < 0)
		return -EINVAL;
	if (p->o.request_budget == 0)
		return 0;
	elapsed = http_budget_elapsed(&snap, now);
	g = xcalloc((size_t)(snap.n + 1 + p->sent_n), sizeof(*g));
	/* sent after the export, before now: dated now */
	g[ng++] = (struct http_budget_group){ mono, snap.reserve };
	for (int i = 0; i < snap.n; i++)
		if (snap.age[i] + elapsed < HTTP_WINDOW_MS)
			g[ng++] = (struct http_budget_group){ mono - snap.age[i] - elapsed,
			    snap.count[i] };
	for (int i = 0; i < p->sent_n; i++)
		g[ng++] = (struct http_budget_group){
		    p->sent[(p->sent_head + i) % p->o.request_budget], 1 };
	http_budget_refill(p, g, ng);
	free(g);
	http_budget_expire(p, mono);
	return 0;
}

void
http_pool_budget_allow(struct http_pool *p, int n)
{
	p->allow = n < 0 ? -1 : n;
}

int
http_pool_budget_allowance(const struct http_pool *p)
{
	return p->allow;
}

int
http_pool_budget(const struct http_pool *p)
{
	return p->o.request_budget;
}
