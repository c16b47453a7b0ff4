/* util: allocation wrappers, growable buffers, error lists, time formats,
 * URLs (libcurl), small files, strict JSON objects (json-c), secret
 * memory.  Allocation failures abort: out of memory is not a
 * recoverable condition for this daemon. */
#ifndef IMPERAI_UTIL_H
#define IMPERAI_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTFLIKE(f, a)
#endif

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Grow an array of nmemb elements of size bytes, checking for overflow. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string. */
char *xprintf(const char *fmt, ...) PRINTFLIKE(1, 2);
char *xvprintf(const char *fmt, va_list ap) PRINTFLIKE(1, 0);

/* A growable byte buffer; data is always NUL-terminated. */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};
void buf_init(struct buf *b);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_addf(struct buf *b, const char *fmt, ...) PRINTFLIKE(2, 3);
void buf_reset(struct buf *b);
/* Hands the data to the caller (never NULL) and reinitialises the buffer. */
char *buf_detach(struct buf *b);
void buf_free(struct buf *b);

/* A list of human-readable error messages, each "file:line: key: what". */
struct errlist {
	char	**msg;
	size_t	  n;
};
void errlist_add(struct errlist *e, const char *fmt, ...) PRINTFLIKE(2, 3);
void errlist_free(struct errlist *e);

/* ServiceNow "YYYY-MM-DD HH:MM:SS" (UTC) <-> UNIX seconds. */
int util_parse_snow_time(const char *s, int64_t *out);
void util_format_snow_time(int64_t t, char out[20]);
/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)" -> UNIX seconds. */
int util_parse_rfc3339(const char *s, int64_t *out);
/* UNIX seconds -> "YYYY-MM-DDTHH:MM:SSZ". */
void util_format_rfc3339(int64_t t, char out[21]);
/* "30s", "15m", "24h", "7d" or plain seconds -> seconds. */
int util_parse_duration(const char *s, int64_t *out);

/* True when s is valid UTF-8 of exactly len bytes with no NUL. */
int util_utf8_valid(const char *s, size_t len);
/* True when s is a non-empty run of [a-z0-9_] and characters of extra:
 * the names config and flows files accept. */
int util_token_ok(const char *s, const char *extra);
/* True when host is loopback (localhost, 127.0.0.0/8, ::1). */
int util_host_is_loopback(const char *host);
/* Splits an http(s) URL with libcurl's URL API; the out-params may be
 * NULL.  The scheme must be written http:// or https://; user info, an
 * empty host or port and a port outside 1..65535 are refused (-EINVAL).
 * The host comes lower-cased (IPv6 in brackets), the port is the explicit
 * one or the scheme's default, the path keeps the query and fragment
 * ("/" when none). */
int util_url_split(const char *url, char **scheme, char **host, int *port, char **path);
/* Percent-encodes all but RFC 3986 unreserved characters (A-Z a-z 0-9
 * - . _ ~), with curl_easy_escape. */
char *util_urlencode(const char *s);

/* Reads the regular file path of at most max bytes into *text (NUL
 * added; *len bytes, which may hold a NUL); caller frees.  -errno, or
 * -EINVAL (not a regular file) / -EFBIG (larger than max), with *cause
 * (caller frees) saying "cannot read: ..." or "not a regular file of at
 * most 1 MiB"; the caller adds the path. */
int util_read_file(const char *path, size_t max, char **text, size_t *len, char **cause);
/* Exactly len bytes of one strict JSON object (json-c's
 * JSON_TOKENER_STRICT), nothing after it; NULL otherwise.  Caller puts. */
struct json_object *util_json_object(const void *p, size_t len);

/* Secret memory: excluded from core dumps (MADV_DONTDUMP) and wiped on
 * free.  Returns NULL-terminated copy of s, len bytes. */
char *secret_dup(const char *s, size_t len);
void secret_free(char *s);
/* Reads a whole secret file, stripping one trailing newline.  Refuses a
 * file readable or writable by group or others (-EPERM, with *cause
 * saying how to fix it). */
int secret_read_file(const char *path, char **out, char **cause);

/* Duplicates the string and frees the old one held in *dst. */
void str_replace(char **dst, const char *src);
int str_eq(const char *a, const char *b);	/* NULL-safe equality */

#endif
