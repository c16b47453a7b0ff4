/* fuzz: what every fuzz target shares.  Each target defines
 * LLVMFuzzerTestOneInput; libFuzzer drives it under `make fuzz`, and
 * standalone.c runs it over the checked-in corpus under `make check`. */
#ifndef IMPERAI_FUZZ_H
#define IMPERAI_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of the input, for APIs that take C strings. */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* An invariant broke: say which, show the offending text, and abort so
 * that libFuzzer keeps the input. */
static inline void
fuzz_fail(const char *what, const char *text)
{
	fprintf(stderr, "fuzz invariant violated: %s\n--- output ---\n%s\n--- end ---\n",
	    what, text != NULL ? text : "(null)");
	abort();
}

#endif
