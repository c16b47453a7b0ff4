/* imperai_parse_check: runs the client's parsers on a body, so that tests of
 * the simulator can check its answers against the C client.
 *
 *   imperai_parse_check verification|feed|error|error-verification FILE|-
 *
 * Prints "OK" (exit 0) or "FAIL: <cause>" (exit 1); usage errors exit 2. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "imperai.h"
#include "util.h"

/* The parsers never talk HTTP: weak stand-ins keep this tool linkable
 * without lib/http.c (a build with the real one uses the real one). */
__attribute__((weak)) struct http_pool *
http_pool_new(struct http_client *c, const struct http_pool_opts *o, char **cause)
{
	(void)c;
	(void)o;
	*cause = xstrdup("imperai_parse_check has no HTTP");
	return NULL;
}

__attribute__((weak)) void
http_request_init(struct http_request *r, const char *method, char *url)
{
	(void)r;
	(void)method;
	(void)url;
	abort();
}

__attribute__((weak)) void
http_request_header(struct http_request *r, const char *fmt, ...)
{
	(void)r;
	(void)fmt;
	abort();
}

__attribute__((weak)) void
http_submit(struct http_pool *p, struct http_request *r, http_done_fn done, void *arg)
{
	(void)p;
	(void)r;
	(void)done;
	(void)arg;
	abort();
}

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

int
main(int argc, char **argv)
{
	static const char *const kinds[] = { "verification", "feed", "error", "error-verification" };
	struct buf b;
	char *cause = NULL;
	int known = 0, rc;

	for (size_t i = 0; argc == 3 && i < ARRAY_SIZE(kinds); i++)
		known |= strcmp(argv[1], kinds[i]) == 0;
	if (!known) {
		fprintf(stderr, "usage: imperai_parse_check "
		    "verification|feed|error|error-verification FILE|-\n");
		return 2;
	}
	buf_init(&b);
	if ((rc = slurp(argv[2], &b)) != 0) {
		fprintf(stderr, "imperai_parse_check: %s: %s\n", argv[2], strerror(-rc));
		return 2;
	}
	rc = check(argv[1], b.data, b.len, &cause);
	if (rc == 0)
		printf("OK\n");
	else
		printf("FAIL: %s\n", cause != NULL ? cause : "unknown");
	free(cause);
	buf_free(&b);
	return rc == 0 ? 0 : 1;
}
