/* codec: tickets, outbox effects and entries to and from the JSON the store keeps
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
 * request_id, PATCH: patch_json, CREATE: create.idempotency_key).  The
 * decision alone: an outbox entry's bookkeeping is skipped. */
char *codec_effect_encode(const struct effect *e);
int codec_effect_decode(const char *json, size_t len, struct effect *e, char **cause);

/* Where an outbox entry stands.  daemon/outbox.c alone moves it; the CLI
 * only reads it. */
enum outbox_phase {
	OUTBOX_QUEUED,		/* never sent, or refused before anything was done */
	OUTBOX_SENT,		/* sent without a final answer: it may have landed */
	OUTBOX_PARKED,		/* waits for imperai-snowctl retry */
};
/* not_before of a parked entry in the stored form (9999-12-31 23:59:59). */
#define OUTBOX_PARKED_AT	INT64_C(253402300799)

/* An outbox entry: the engine's decision and the shell's bookkeeping. */
struct outbox_entry {
	struct effect	 e;
	enum outbox_phase phase;
	int		 attempts;	/* sends that may have reached the service */
	int64_t		 not_before;	/* due, UNIX seconds (OUTBOX_PARKED_AT when parked) */
	int64_t		 sent_at;	/* the last send, UNIX seconds */
	char		*last_error;
};
void outbox_entry_free(struct outbox_entry *en);
/* The stored form is an effect's with attempts, not_before, sent_at and
 * last_error beside it; the phase is not stored but read from them:
 * parked when not_before is OUTBOX_PARKED_AT, else sent when attempts > 0,
 * else queued.  An effect encoded alone decodes as a queued entry. */
char *codec_entry_encode(const struct outbox_entry *en);
int codec_entry_decode(const char *json, size_t len, struct outbox_entry *en, char **cause);

#endif
