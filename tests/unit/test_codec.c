/* Tests for lib/codec.c: tickets and effects the engine produced round-trip
 * through the store's JSON, and the decoders name what they refuse and
 * survive corrupt input.  The tickets come from the engine's fixture. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "engine.h"
#include "engine_fixture.h"
#include "util.h"

static void
test_ticket_round_trips_through_json(void **state)
{
	struct h *h = *state;
	struct ticket back;
	char *a, *b, *cause = NULL;

	to_passed(h, 8);
	h->t.last_error = xstrdup("503: \"unavailable\"\n");
	h->t.v.analysis_summary = xstrdup("caf\xc3\xa9");
	a = codec_ticket_encode(&h->t);
	assert_non_null(strstr(a, "\"v\":1"));
	assert_int_equal(codec_ticket_decode(a, strlen(a), &back, &cause), 0);
	assert_null(cause);
	b = codec_ticket_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.state, TS_PASSED);
	assert_string_equal(back.sys_id, SYS1);
	assert_int_equal(back.generation, 1);
	assert_int_equal(back.revision, h->t.revision);
	assert_int_equal(back.nhistory, h->t.nhistory);
	assert_int_equal(back.v.risk_score, 8);
	assert_int_equal(back.v.status, IMPERAI_PASSED);
	assert_int_equal(back.on_fail_applied, 1);
	assert_string_equal(back.v.recipient_masked, "j***e@e***.com");
	assert_string_equal(back.history[0].why, "new");
	free(a);
	free(b);
	ticket_free(&back);
}

static void
test_fresh_ticket_round_trips(void **state)
{
	struct ticket t, back;
	char *a, *b;

	(void)state;
	ticket_init(&t, "incident", SYS1);
	a = codec_ticket_encode(&t);
	assert_int_equal(codec_ticket_decode(a, strlen(a), &back, NULL), 0);
	b = codec_ticket_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.seen_mod_count, -1);
	assert_int_equal(back.v.risk_score, -1);
	free(a);
	free(b);
	ticket_free(&t);
	ticket_free(&back);
}

static void
test_ticket_decode_names_the_bad_field(void **state)
{
	static const struct { const char *json, *cause; int err; } cases[] = {
		{ "{\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: v: missing", -EINVAL },
		{ "{\"v\":2,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: v: unsupported", -EPROTO },
		{ "{\"v\":\"1\",\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: v: expected an integer", -EINVAL },
		{ "{\"v\":1,\"sys_id\":\"a\",\"state\":\"untracked\"}", "ticket: table: missing",
		  -EINVAL },
		{ "{\"v\":1,\"table\":7,\"sys_id\":\"a\",\"state\":\"untracked\"}",
		  "ticket: table: expected a string", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"0123456789abcdef0123456789abcdef0\","
		  "\"state\":\"untracked\"}", "ticket: sys_id: too long", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"happy\"}",
		  "ticket: state: unknown value", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"generation\":\"1\"}", "ticket: generation: expected an integer", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"generation\":4294967296}", "ticket: generation: out of range", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"generation\":-1}", "ticket: generation: out of range", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"ended\":1}", "ticket: ended: expected true or false", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"number\":\"IN\\u0000C\"}", "ticket: number: contains a NUL", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"verification\":{\"status\":\"won\"}}", "ticket: verification.status: unknown",
		  -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"verification\":{\"status\":\"passed\",\"risk_score\":11}}",
		  "ticket: verification.risk_score: out of range", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"verification\":{\"status\":\"passed\",\"action\":{\"status\":3}}}",
		  "ticket: verification.action.status: expected a string", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"history\":[{\"at\":1,\"from\":\"untracked\",\"to\":\"nowhere\",\"why\":\"x\"}]}",
		  "ticket: history[].to: unknown value", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"history\":[7]}", "ticket: history[]: expected an object", -EINVAL },
		{ "{\"v\":1,\"table\":\"incident\",\"sys_id\":\"a\",\"state\":\"untracked\","
		  "\"created_at\":99999999999999}", "ticket: created_at: out of range", -EINVAL },
		{ "[1,2]", "ticket: document: expected a JSON object", -EINVAL },
		{ "{\"v\":1", "ticket: document: truncated", -EINVAL },
		{ "{\"v\":1} x", "ticket: document:", -EINVAL },
		{ "{\"v\":1}  \n", "ticket: table: missing", -EINVAL },
		{ "{\"v\":1,}", "ticket: document:", -EINVAL },
		{ "{\"v\":NaN}", "ticket: v: expected an integer", -EINVAL },
		{ "{\"v\":1,\"table\":\"\xff\"}", "ticket: document:", -EINVAL },
	};
	struct ticket t;
	char *cause;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		cause = NULL;
		if (codec_ticket_decode(cases[i].json, strlen(cases[i].json), &t, &cause) !=
		    cases[i].err || cause == NULL || strstr(cause, cases[i].cause) == NULL)
			fail_msg("case %zu: %s: got \"%s\"", i, cases[i].json, cause ? cause : "");
		assert_null(t.table);
		free(cause);
		ticket_free(&t);
	}
	cause = NULL;
	assert_int_equal(codec_ticket_decode("{\"v\":1}\0", 8, &t, &cause), -EINVAL);
	assert_non_null(strstr(cause, "NUL"));
	free(cause);
	assert_int_equal(codec_ticket_decode("", 0, &t, NULL), -EINVAL);
	assert_int_equal(codec_ticket_decode(NULL, 0, &t, NULL), -EINVAL);
}

/* A deterministic generator for the corruption test. */
static uint32_t
lcg(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 16;
}

static void
decode_any(const char *buf, size_t len, int effect)
{
	struct ticket t;
	struct effect e;
	char *cause = NULL;
	int rc;

	if (effect) {
		rc = codec_effect_decode(buf, len, &e, &cause);
		if (rc == 0)
			effect_free(&e);
	} else {
		rc = codec_ticket_decode(buf, len, &t, &cause);
		if (rc == 0)
			ticket_free(&t);
	}
	assert_true(rc == 0 ? cause == NULL : cause != NULL);
	free(cause);
}

static void
corrupt_and_decode(const char *doc, int effect)
{
	size_t len = strlen(doc);
	char *buf = xmalloc(len + 1);
	uint32_t seed = 42;

	for (size_t cut = 0; cut <= len; cut++)
		decode_any(doc, cut, effect);
	for (size_t i = 0; i < 3000; i++) {
		memcpy(buf, doc, len);
		for (int k = 0; k < 1 + (int)(lcg(&seed) % 4); k++)
			buf[lcg(&seed) % len] = (char)lcg(&seed);
		decode_any(buf, len, effect);
	}
	for (size_t i = 0; i < 500; i++) {
		for (size_t k = 0; k < len; k++)
			buf[k] = (char)lcg(&seed);
		decode_any(buf, len, effect);
	}
	free(buf);
}

static void
test_decoders_survive_corrupt_input(void **state)
{
	struct h *h = *state;
	const char *doc;
	char *enc;

	to_passed(h, 1);
	enc = codec_ticket_encode(&h->t);
	corrupt_and_decode(enc, 0);
	free(enc);
	assert_int_equal(action_done(h, 1), 0);
	enc = codec_effect_encode(effect(h, 0));
	corrupt_and_decode(enc, 1);
	free(enc);
	restart(h);
	to_passed(h, 1);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	enc = codec_effect_encode(effect(h, 2));
	corrupt_and_decode(enc, 1);
	free(enc);
	doc = "{\"v\":1,\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]"
	    "]]]]]]]]]]]]]]]]}";
	decode_any(doc, strlen(doc), 0);
}

static void
assert_effect_round_trip(const struct effect *e)
{
	struct effect back;
	char *a = codec_effect_encode(e), *b, *cause = NULL;

	assert_int_equal(codec_effect_decode(a, strlen(a), &back, &cause), 0);
	assert_null(cause);
	b = codec_effect_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.kind, e->kind);
	assert_int_equal(back.generation, e->generation);
	assert_int_equal(back.revision, e->revision);
	free(a);
	free(b);
	effect_free(&back);
}

/* The outbox entry around it: its bookkeeping comes back too. */
static void
assert_entry_round_trip(const struct effect *e)
{
	struct outbox_entry en = { .e = *e, .phase = OUTBOX_SENT, .attempts = 3,
	    .not_before = T0 + 60, .sent_at = T0 + 1, .last_error = "503" }, back;
	char *a = codec_entry_encode(&en), *b, *cause = NULL;

	assert_int_equal(codec_entry_decode(a, strlen(a), &back, &cause), 0);
	assert_null(cause);
	b = codec_entry_encode(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.e.kind, e->kind);
	assert_int_equal(back.attempts, 3);
	assert_int_equal(back.not_before, T0 + 60);
	assert_int_equal(back.sent_at, T0 + 1);
	assert_string_equal(back.last_error, "503");
	assert_int_equal(back.phase, OUTBOX_SENT);
	free(a);
	free(b);
	outbox_entry_free(&back);
}

static void
test_effects_round_trip_through_json(void **state)
{
	struct h *h = *state;
	struct effect e;

	to_passed(h, 1);
	h->caller = CALLER2;
	assert_int_equal(observe(h), 0);
	assert_kinds(h, "cancel,patch,create");
	for (size_t i = 0; i < h->res.neffects; i++)
		assert_effect_round_trip(effect(h, i));
	e = h->res.effects[2];
	assert_entry_round_trip(&e);
	assert_string_equal(effect(h, 2)->create.requester_email, "john.roe@example.com");
}

static void
test_effect_decode_requires_what_each_kind_needs(void **state)
{
	static const struct { const char *json, *cause; } cases[] = {
		{ "{\"v\":1,\"kind\":\"cancel\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: request_id: missing" },
		{ "{\"v\":1,\"kind\":\"patch\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: patch_json: missing" },
		{ "{\"v\":1,\"kind\":\"create\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: create: missing" },
		{ "{\"v\":1,\"kind\":\"create\",\"table\":\"incident\",\"sys_id\":\"a\","
		  "\"create\":{\"subject\":\"s\"}}", "effect: create.idempotency_key: missing" },
		{ "{\"v\":1,\"kind\":\"create\",\"table\":\"incident\",\"sys_id\":\"a\","
		  "\"create\":{\"idempotency_key\":\"k\",\"ticket\":[]}}",
		  "effect: create.ticket: expected an object" },
		{ "{\"v\":1,\"kind\":\"explode\",\"table\":\"incident\",\"sys_id\":\"a\"}",
		  "effect: kind: unknown value" },
		{ "{\"v\":1,\"kind\":\"cancel\",\"table\":\"incident\",\"sys_id\":\"a\","
		  "\"request_id\":\"vr\",\"attempts\":-1}", "effect: attempts: out of range" },
	};
	struct outbox_entry en;
	char *cause;

	(void)state;
	/* as the outbox entry that holds each effect in the store */
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		cause = NULL;
		if (codec_entry_decode(cases[i].json, strlen(cases[i].json), &en, &cause) !=
		    -EINVAL || cause == NULL || strstr(cause, cases[i].cause) == NULL)
			fail_msg("case %zu: got \"%s\"", i, cause ? cause : "");
		assert_null(en.e.table);
		free(cause);
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_ticket_round_trips_through_json),
		T(test_fresh_ticket_round_trips),
		T(test_ticket_decode_names_the_bad_field),
		T(test_decoders_survive_corrupt_input),
		T(test_effects_round_trip_through_json),
		T(test_effect_decode_requires_what_each_kind_needs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
