/* Fuzzes the imper.ai answer parsers: one verification (and its snapshot
 * round trip), the change feed, the error body and the verification a 409
 * carries. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "imperai.h"

/* Parsed values stay in the ranges the header promises. */
static void
check_verification(const struct imperai_verification *v)
{
	if (v->risk_score < -1 || v->risk_score > 10)
		fuzz_fail("risk_score outside -1..10", NULL);
	if ((unsigned)v->status > IMPERAI_CANCELED)
		fuzz_fail("status outside the enum", NULL);
	if ((unsigned)v->action.status > IMPERAI_ACTION_FAILED)
		fuzz_fail("action.status outside the enum", NULL);
	if (imperai_status_name(v->status) == NULL)
		fuzz_fail("status without a wire name", NULL);
}

/* The snapshot of v (what the store keeps) reads back to the same
 * snapshot. */
static void
check_snapshot(const struct imperai_verification *v)
{
	struct imperai_verification v2;
	char *json = imperai_verification_json(v), *json2, *cause = NULL;

	memset(&v2, 0, sizeof(v2));
	if (imperai_parse_verification(json, strlen(json), "snapshot", &v2, &cause) != 0) {
		fprintf(stderr, "%s\n", cause);
		fuzz_fail("a verification's own snapshot does not parse", json);
	}
	json2 = imperai_verification_json(&v2);
	if (strcmp(json, json2) != 0)
		fuzz_fail("snapshot -> parse -> snapshot differs", json2);
	imperai_verification_free(&v2);
	free(json);
	free(json2);
}

static void
fuzz_verification(const char *body, size_t len)
{
	struct imperai_verification v;
	char *cause = NULL;

	memset(&v, 0, sizeof(v));
	if (imperai_parse_verification(body, len, "fuzz", &v, &cause) == 0) {
		check_verification(&v);
		check_snapshot(&v);
	} else if (cause == NULL)
		fuzz_fail("imperai_parse_verification failed without a cause", NULL);
	imperai_verification_free(&v);
	free(cause);
}

/* The verification inside a 409 already_final error. */
static void
fuzz_error_verification(const char *body, size_t len)
{
	struct imperai_verification v;
	char *cause = NULL;

	memset(&v, 0, sizeof(v));
	if (imperai_parse_error_verification(body, len, &v, &cause) == 0)
		check_verification(&v);
	else if (cause == NULL)
		fuzz_fail("imperai_parse_error_verification failed without a cause", NULL);
	imperai_verification_free(&v);
	free(cause);
}

static void
fuzz_feed(const char *body, size_t len)
{
	struct imperai_feed f;
	char *cause = NULL;

	memset(&f, 0, sizeof(f));
	if (imperai_parse_feed(body, len, &f, &cause) == 0) {
		for (size_t i = 0; i < f.n; i++)
			check_verification(&f.v[i]);
	} else if (cause == NULL)
		fuzz_fail("imperai_parse_feed failed without a cause", NULL);
	imperai_feed_free(&f);
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;

	fuzz_verification(body, size);
	fuzz_feed(body, size);
	free(imperai_parse_error(body, size));
	fuzz_error_verification(body, size);
	return 0;
}
