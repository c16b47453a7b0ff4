/* Fuzzes what the daemon reads from ServiceNow: list, single record,
 * error and OAuth token bodies; the Retry-After and Link headers and the
 * content sniffing of http.c; the revision tag and the picture of a field
 * read back (imperai-snowctl rebuild). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "fuzz.h"
#include "http.h"
#include "render.h"
#include "snow.h"
#include "util.h"

static void
check_text(const char *what, const char *s)
{
	if (s != NULL && !util_utf8_valid(s, strlen(s)))
		fuzz_fail(what, s);
}

/* What snow.h promises of a parsed record: a sys_id of 32 hex digits,
 * and names and values that are valid UTF-8 strings. */
static void
check_record(const struct snow_record *r)
{
	if (strnlen(r->sys_id, sizeof(r->sys_id)) != 32 ||
	    strspn(r->sys_id, "0123456789abcdefABCDEF") != 32)
		fuzz_fail("sys_id is not 32 hex digits", NULL);
	for (size_t i = 0; i < r->nfields; i++) {
		if (r->fields[i].name == NULL || r->fields[i].value == NULL)
			fuzz_fail("record field with a NULL name or value", NULL);
		check_text("field name is not valid UTF-8", r->fields[i].name);
		check_text("field value is not valid UTF-8", r->fields[i].value);
		check_text("display value is not valid UTF-8", r->fields[i].display);
		if (snow_record_get(r, r->fields[i].name) == NULL)
			fuzz_fail("parsed field not found by snow_record_get", r->fields[i].name);
	}
}

static void
fuzz_list(const char *body, size_t len)
{
	struct snow_list l = { 0 };
	char *cause = NULL;

	if (snow_parse_list(body, len, &l, &cause) == 0) {
		for (size_t i = 0; i < l.n; i++)
			check_record(&l.v[i]);
	} else if (cause == NULL)
		fuzz_fail("snow_parse_list failed without a cause", NULL);
	snow_list_free(&l);
	free(cause);
}

/* A parsed record survives a copy. */
static void
fuzz_record(const char *body, size_t len)
{
	struct snow_record r = { 0 }, copy = { 0 };
	char *cause = NULL;

	if (snow_parse_record(body, len, &r, &cause) == 0) {
		check_record(&r);
		snow_record_copy(&copy, &r);
		check_record(&copy);
		snow_record_free(&copy);
	} else if (cause == NULL)
		fuzz_fail("snow_parse_record failed without a cause", NULL);
	snow_record_free(&r);
	free(cause);
}

static void
fuzz_oauth(const char *body, size_t len)
{
	char *access = NULL, *refresh = NULL, *cause = NULL;
	int64_t expires_in = 0;

	if (snow_parse_oauth(body, len, &access, &refresh, &expires_in, &cause) == 0) {
		if (access == NULL)
			fuzz_fail("snow_parse_oauth succeeded without an access token", NULL);
	} else if (cause == NULL)
		fuzz_fail("snow_parse_oauth failed without a cause", NULL);
	secret_free(access);
	secret_free(refresh);
	free(cause);
}

/* The same bytes as a header value, or as the field's text. */
static void
fuzz_headers(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct render_shown shown;
	int64_t secs;
	uint32_t g, r;

	if (http_parse_retry_after(s, 1700000000, &secs) == 0 && (secs < 0 || secs > 3600))
		fuzz_fail("Retry-After outside 0..3600 s", s);
	free(http_link_next(s));
	(void)http_is_html(s, s, size);
	(void)render_parse_revision(s, &g, &r);
	(void)engine_field_has_revision(s, 1, 2);
	if (render_parse_field(s, "password_reset", &shown) == 0)
		render_shown_free(&shown);
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;

	fuzz_list(body, size);
	fuzz_record(body, size);
	free(snow_parse_error(body, size));
	fuzz_oauth(body, size);
	fuzz_headers(data, size);
	return 0;
}
