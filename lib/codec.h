/* codec: tickets and outbox effects to and from the JSON the store keeps
 * ({"v":1,...}).  Pure; no input crashes it. */
#ifndef IMPERAI_CODEC_H
#define IMPERAI_CODEC_H

#include <stddef.h>

#include "engine.h"

/* Decode overwrites t without freeing it; on failure t holds nothing
 * (ticket_free is harmless) and *cause (when cause is not NULL; caller
 * frees) names the field: "ticket: generation: expected an integer".
 * -EPROTO for a newer schema version, -EINVAL for anything else. */
char *codec_ticket_encode(const struct ticket *t);
int codec_ticket_decode(const char *json, size_t len, struct ticket *t, char **cause);
/* Only the state of an encoded ticket, without decoding the rest (the
 * daemon counts a whole store by state at start); -EINVAL if absent. */
int codec_ticket_peek_state(const void *json, size_t len, enum tstate *out);
/* Same contract as the ticket's; kind decides what is required (CANCEL:
 * request_id, PATCH: patch_json, CREATE: create.idempotency_key). */
char *codec_effect_encode(const struct effect *e);
int codec_effect_decode(const char *json, size_t len, struct effect *e, char **cause);

#endif
