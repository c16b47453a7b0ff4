/* Records built by hand for the tests (testrec.h). */
#include <stdarg.h>
#include <stdlib.h>

#include "record.h"
#include "testrec.h"
#include "util.h"

struct snow_record *
rec(const char *name, ...)
{
	struct snow_record *r = xcalloc(1, sizeof(*r));
	va_list ap;

	va_start(ap, name);
	for (const char *n = name; n != NULL; n = va_arg(ap, const char *))
		snow_record_set(r, n, va_arg(ap, const char *));
	va_end(ap);
	return r;
}

void
rec_free(struct snow_record *r)
{
	snow_record_free(r);
	free(r);
}
