/* Fuzzes the ServiceNow answer parsers: list, single record, error body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "snow.h"

/* What any parsed record must look like: a NUL-terminated sys_id and
 * fields that are all non-NULL strings. */
static void
check_record(const struct snow_record *r)
{
	if (memchr(r->sys_id, '\0', sizeof(r->sys_id)) == NULL)
		fuzz_fail("sys_id not NUL-terminated", NULL);
	for (size_t i = 0; i < r->nfields; i++) {
		if (r->fields[i].name == NULL || r->fields[i].value == NULL)
			fuzz_fail("record field with a NULL name or value", NULL);
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;

	fuzz_list(body, size);
	fuzz_record(body, size);
	free(snow_parse_error(body, size));
	return 0;
}
