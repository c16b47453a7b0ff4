/* Fuzzes the settings parser (libconfig text plus the schema checks).
 * Secrets are optional so that a missing secret file is a warning and the
 * rest of the checks still run. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errlist errs = { 0 }, warnings = { 0 };
	struct config *c = NULL;
	char *text = fuzz_cstr(data, size);
	int ret;

	/* Credentials must not come from the fuzzing host's environment. */
	unsetenv("CREDENTIALS_DIRECTORY");
	ret = config_parse(text, "fuzz.conf", "/nonexistent", CONFIG_SECRETS_OPTIONAL, &c,
	    &errs, &warnings);
	if (ret == 0 && c == NULL)
		fuzz_fail("config_parse succeeded without a config", text);
	if (ret != 0 && errs.n == 0)
		fuzz_fail("config_parse failed without saying why", text);
	if (c != NULL && c->snow.ntables > 0 && config_table(c, c->snow.tables[0].name) == NULL)
		fuzz_fail("first watched table not found by config_table", text);
	config_free(c);
	errlist_free(&errs);
	errlist_free(&warnings);
	free(text);
	return 0;
}
