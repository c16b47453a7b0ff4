/* util: allocation wrappers, buffers, error lists, time formats, URLs
 * (through libcurl), secrets. */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "util.h"

static void __attribute__((noreturn))
util_oom(size_t n)
{
	fprintf(stderr, "imperai-snow: out of memory allocating %zu bytes\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		util_oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		util_oom(nmemb * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		util_oom(n);
	return q;
}

void *
xreallocarray(void *p, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size)
		util_oom(SIZE_MAX);
	return xrealloc(p, nmemb * size);
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
xvprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *p;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		util_oom(0);
	p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *
xprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvprintf(fmt, ap);
	va_end(ap);
	return p;
}

void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

static void
buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	size_t cap = b->cap ? b->cap : 64;

	if (need < b->len)
		util_oom(SIZE_MAX);
	if (need <= b->cap)
		return;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

void
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *
buf_detach(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");

	buf_init(b);
	return p;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void
errlist_add(struct errlist *e, const char *fmt, ...)
{
	va_list ap;

	e->msg = xreallocarray(e->msg, e->n + 1, sizeof(*e->msg));
	va_start(ap, fmt);
	e->msg[e->n++] = xvprintf(fmt, ap);
	va_end(ap);
}

void
errlist_free(struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	e->msg = NULL;
	e->n = 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), no timezone games. */
static int64_t
util_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

static int
util_days_in_month(int y, int m)
{
	static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dim[m - 1];
}

static int
util_digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Parses "YYYY-MM-DD?HH:MM:SS" where ? is sep; returns chars consumed. */
static int
util_parse_datetime(const char *s, char sep, int64_t *out)
{
	int y, mo, d, h, mi, se;

	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != sep ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	if (util_digits(s, 4, &y) || util_digits(s + 5, 2, &mo) ||
	    util_digits(s + 8, 2, &d) || util_digits(s + 11, 2, &h) ||
	    util_digits(s + 14, 2, &mi) || util_digits(s + 17, 2, &se))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > util_days_in_month(y, mo) ||
	    h > 23 || mi > 59 || se > 60)
		return -EINVAL;
	*out = util_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
	    h * 3600 + mi * 60 + se;
	return 19;
}

int
util_parse_snow_time(const char *s, int64_t *out)
{
	int64_t t;
	int n = util_parse_datetime(s, ' ', &t);

	if (n < 0 || s[n] != '\0')
		return -EINVAL;
	*out = t;
	return 0;
}

void
util_format_snow_time(int64_t t, char out[20])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 20, "%Y-%m-%d %H:%M:%S", &tm);
}

int
util_parse_rfc3339(const char *s, int64_t *out)
{
	int64_t t;
	int n, oh, om;
	const char *p;

	n = util_parse_datetime(s, 'T', &t);
	if (n < 0) {
		n = util_parse_datetime(s, 't', &t);
		if (n < 0)
			return -EINVAL;
	}
	p = s + n;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		*out = t;
		return 0;
	}
	if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':' &&
	    util_digits(p + 1, 2, &oh) == 0 && util_digits(p + 4, 2, &om) == 0 &&
	    oh < 24 && om < 60) {
		int64_t off = oh * 3600 + om * 60;
		*out = *p == '+' ? t - off : t + off;
		return 0;
	}
	return -EINVAL;
}

void
util_format_rfc3339(int64_t t, char out[21])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
util_parse_duration(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mult = 1;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return -EINVAL;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = 86400;
		break;
	default:
		return -EINVAL;
	}
	if (*end != '\0' && end[1] != '\0')
		return -EINVAL;
	if (v > INT64_MAX / mult)
		return -ERANGE;
	*out = (int64_t)v * mult;
	return 0;
}

int
util_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned c = p[i];
		size_t n;
		uint32_t cp;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else
			return 0;
		if (n >= len - i)	/* continuation bytes would run past the end */
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* overlong, surrogates, out of range */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
		    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

int
util_token_ok(const char *s, const char *extra)
{
	if (*s == '\0')
		return 0;
	for (const char *p = s; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_' &&
		    strchr(extra, *p) == NULL)
			return 0;
	return 1;
}

int
util_host_is_loopback(const char *host)
{
	struct in_addr a;

	if (host == NULL)
		return 0;
	if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
	    strcmp(host, "[::1]") == 0)
		return 1;
	/* A strict dotted quad: "127.0.0.1.5" is a name DNS could resolve anywhere. */
	return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

char *
util_urlencode(const char *s)
{
	/* curl_easy_escape ignores its handle (7.82) or uses it only on EBCDIC hosts */
	char *e = curl_easy_escape(NULL, s, 0), *out;

	if (e == NULL)
		util_oom(strlen(s) * 3 + 1);
	out = xstrdup(e);
	curl_free(e);
	return out;
}

/* What libcurl accepts and the settings never did: an empty host
 * ("https:///x") or an empty port ("https://h:/"). */
static int
util_url_authority_ok(const char *url)
{
	const char *a = strstr(url, "://");
	size_t n;

	if (a == NULL)
		return 0;
	a += 3;
	n = strcspn(a, "/?#");
	return n > 0 && a[n - 1] != ':';
}

/* A part of u, or NULL when absent (CURLUE_NO_*). */
static char *
util_url_part(CURLU *u, CURLUPart what, unsigned flags)
{
	char *v = NULL, *out;

	if (curl_url_get(u, what, &v, flags) != CURLUE_OK)
		return NULL;
	out = xstrdup(v);
	curl_free(v);
	return out;
}

/* The path with the query and fragment, as the URL has them. */
static char *
util_url_path(CURLU *u)
{
	char *path = util_url_part(u, CURLUPART_PATH, 0);
	char *query = util_url_part(u, CURLUPART_QUERY, 0);
	char *frag = util_url_part(u, CURLUPART_FRAGMENT, 0);
	char *out = xprintf("%s%s%s%s%s", path ? path : "/", query ? "?" : "",
	    query ? query : "", frag ? "#" : "", frag ? frag : "");

	free(path);
	free(query);
	free(frag);
	return out;
}

/* The port of url parsed into u (explicit or the scheme's), -1 when curl
 * refuses the URL or it carries user info. */
static long
util_url_port(CURLU *u, const char *url)
{
	char *p;
	long v;

	if (curl_url_set(u, CURLUPART_URL, url, CURLU_PATH_AS_IS) != CURLUE_OK)
		return -1;
	if ((p = util_url_part(u, CURLUPART_USER, 0)) != NULL) {
		free(p);
		return -1;
	}
	if ((p = util_url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT)) == NULL)
		return -1;
	v = strtol(p, NULL, 10);
	free(p);
	return v;
}

/* Parses url with libcurl: http(s) as written, a host, no user info, a
 * port in 1..65535. */
static int
util_url_parse(const char *url, CURLU **out, int *port)
{
	CURLU *u;
	long v;

	if ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
	    !util_url_authority_ok(url))
		return -EINVAL;
	if ((u = curl_url()) == NULL)
		util_oom(sizeof(void *));
	if ((v = util_url_port(u, url)) < 1 || v > 65535) {
		curl_url_cleanup(u);
		return -EINVAL;
	}
	*port = (int)v;
	*out = u;
	return 0;
}

int
util_url_split(const char *url, char **scheme, char **host, int *port, char **path)
{
	CURLU *u;
	int prt;

	if (util_url_parse(url, &u, &prt) < 0)
		return -EINVAL;
	if (scheme)
		*scheme = xstrdup(url[4] == 's' ? "https" : "http");
	if (host) {
		*host = util_url_part(u, CURLUPART_HOST, 0);
		for (char *c = *host; *c; c++)
			*c = (char)tolower((unsigned char)*c);
	}
	if (port)
		*port = prt;
	if (path)
		*path = util_url_path(u);
	curl_url_cleanup(u);
	return 0;
}

/* The size cap as the messages say it ("1 MiB"). */
static char *
util_size_text(size_t n)
{
	if (n % (1024 * 1024) == 0)
		return xprintf("%zu MiB", n / (1024 * 1024));
	if (n % 1024 == 0)
		return xprintf("%zu KiB", n / 1024);
	return xprintf("%zu bytes", n);
}

/* -errno, saved before xprintf may change it. */
static int
util_read_error(char **cause)
{
	int err = errno;

	*cause = xprintf("cannot read: %s", strerror(err));
	return -err;
}

static int
util_read_fd(int fd, size_t max, char **text, size_t *len, char **cause)
{
	struct stat st;
	ssize_t n;
	char *cap;

	if (fstat(fd, &st) < 0)
		return util_read_error(cause);
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		cap = util_size_text(max);
		*cause = xprintf("not a regular file of at most %s", cap);
		free(cap);
		return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
	}
	*text = xmalloc((size_t)st.st_size + 1);
	if ((n = read(fd, *text, (size_t)st.st_size)) < 0)
		return util_read_error(cause);
	(*text)[n] = '\0';
	*len = (size_t)n;
	return 0;
}

int
util_read_file(const char *path, size_t max, char **text, size_t *len, char **cause)
{
	int fd, rc;

	*text = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return util_read_error(cause);
	if ((rc = util_read_fd(fd, max, text, len, cause)) < 0) {
		free(*text);
		*text = NULL;
		*len = 0;
	}
	close(fd);
	return rc;
}

struct json_object *
util_json_object(const void *p, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	if (tok == NULL)
		util_oom(sizeof(*tok));
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = len <= INT32_MAX ? json_tokener_parse_ex(tok, p, (int)len) : NULL;
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* Secrets live in their own mapping, so they can be kept out of core files
 * and wiped reliably.  Layout: [size_t maplen][bytes...NUL], zero-filled. */
static char *
secret_alloc(size_t len)
{
	size_t maplen = sizeof(size_t) + len + 1;
	long pg = sysconf(_SC_PAGESIZE);
	char *m;

	maplen = (maplen + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
	m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		util_oom(maplen);
#ifdef MADV_DONTDUMP
	(void)madvise(m, maplen, MADV_DONTDUMP);
#endif
	memcpy(m, &maplen, sizeof(maplen));
	return m + sizeof(size_t);
}

char *
secret_dup(const char *s, size_t len)
{
	char *p = secret_alloc(len);

	memcpy(p, s, len);
	return p;
}

void
secret_free(char *s)
{
	char *m;
	size_t maplen;

	if (s == NULL)
		return;
	m = s - sizeof(size_t);
	memcpy(&maplen, m, sizeof(maplen));
	explicit_bzero(m, maplen);
	munmap(m, maplen);
}

int
secret_read_file(const char *path, char **out, char **cause)
{
	struct stat st;
	char *tmp = NULL;
	ssize_t n;
	size_t len;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		*cause = xprintf("cannot open secret file %s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		*cause = xprintf("secret file %s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = -EPERM;
		*cause = xprintf("secret file %s is accessible by group or others (mode %04o); "
		    "fix with: chmod 600 %s", path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > 65536) {
		rc = -EFBIG;
		*cause = xprintf("secret file %s is larger than 64 KiB", path);
		goto out;
	}
	tmp = secret_alloc((size_t)st.st_size);
	n = read(fd, tmp, (size_t)st.st_size);
	if (n < 0) {
		rc = -errno;
		*cause = xprintf("cannot read secret file %s: %s", path, strerror(errno));
		goto out;
	}
	len = (size_t)n;
	if (len > 0 && tmp[len - 1] == '\n')
		len--;
	if (len > 0 && tmp[len - 1] == '\r')
		len--;
	tmp[len] = '\0';
	if (len == 0 || strlen(tmp) != len) {
		rc = -EINVAL;
		*cause = xprintf("secret file %s is empty or contains a NUL byte", path);
		goto out;
	}
	*out = secret_dup(tmp, len);
out:
	secret_free(tmp);
	close(fd);
	return rc;
}

void
str_replace(char **dst, const char *src)
{
	char *old = *dst;

	*dst = src ? xstrdup(src) : NULL;
	free(old);
}

int
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}
