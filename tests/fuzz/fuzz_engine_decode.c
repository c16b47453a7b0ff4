/* Fuzzes the store's record decoders (tickets, outbox effects and entries): any
 * bytes must be refused or decoded, and whatever decodes must encode to a
 * text that decodes and encodes to the very same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "engine.h"
#include "fuzz.h"

static void
fuzz_ticket(const char *json, size_t len)
{
	struct ticket t, t2;
	char *cause = NULL, *enc = NULL, *enc2 = NULL;

	memset(&t, 0, sizeof(t));
	memset(&t2, 0, sizeof(t2));
	if (codec_ticket_decode(json, len, &t, &cause) != 0) {
		if (cause == NULL)
			fuzz_fail("codec_ticket_decode failed without a cause", NULL);
		goto out;
	}
	enc = codec_ticket_encode(&t);
	if (codec_ticket_decode(enc, strlen(enc), &t2, &cause) != 0)
		fuzz_fail("a ticket's own encoding does not decode", enc);
	enc2 = codec_ticket_encode(&t2);
	if (strcmp(enc, enc2) != 0)
		fuzz_fail("ticket encode -> decode -> encode differs", enc2);
out:
	ticket_free(&t);
	ticket_free(&t2);
	free(enc);
	free(enc2);
	free(cause);
}

static void
fuzz_effect(const char *json, size_t len)
{
	struct effect e, e2;
	char *cause = NULL, *enc = NULL, *enc2 = NULL;

	memset(&e, 0, sizeof(e));
	memset(&e2, 0, sizeof(e2));
	if (codec_effect_decode(json, len, &e, &cause) != 0) {
		if (cause == NULL)
			fuzz_fail("codec_effect_decode failed without a cause", NULL);
		goto out;
	}
	enc = codec_effect_encode(&e);
	if (codec_effect_decode(enc, strlen(enc), &e2, &cause) != 0)
		fuzz_fail("an effect's own encoding does not decode", enc);
	enc2 = codec_effect_encode(&e2);
	if (strcmp(enc, enc2) != 0)
		fuzz_fail("effect encode -> decode -> encode differs", enc2);
out:
	effect_free(&e);
	effect_free(&e2);
	free(enc);
	free(enc2);
	free(cause);
}

/* The outbox entry around the effect: the store's form of both. */
static void
fuzz_entry(const char *json, size_t len)
{
	struct outbox_entry en, en2;
	char *cause = NULL, *enc = NULL, *enc2 = NULL;

	memset(&en2, 0, sizeof(en2));
	if (codec_entry_decode(json, len, &en, &cause) != 0) {
		if (cause == NULL)
			fuzz_fail("codec_entry_decode failed without a cause", NULL);
		goto out;
	}
	enc = codec_entry_encode(&en);
	if (codec_entry_decode(enc, strlen(enc), &en2, &cause) != 0)
		fuzz_fail("an entry's own encoding does not decode", enc);
	enc2 = codec_entry_encode(&en2);
	if (strcmp(enc, enc2) != 0 || en.phase != en2.phase)
		fuzz_fail("entry encode -> decode -> encode differs", enc2);
out:
	outbox_entry_free(&en);
	outbox_entry_free(&en2);
	free(enc);
	free(enc2);
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_ticket((const char *)data, size);
	fuzz_effect((const char *)data, size);
	fuzz_entry((const char *)data, size);
	return 0;
}
