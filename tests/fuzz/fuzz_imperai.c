/* Fuzzes the imper.ai answer parsers: one verification, the change feed,
 * the error body. */
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

static void
fuzz_verification(const char *body, size_t len)
{
	struct imperai_verification v;
	char *cause = NULL;

	memset(&v, 0, sizeof(v));
	if (imperai_parse_verification(body, len, "fuzz", &v, &cause) == 0)
		check_verification(&v);
	else if (cause == NULL)
		fuzz_fail("imperai_parse_verification failed without a cause", NULL);
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
	return 0;
}
