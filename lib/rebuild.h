/* rebuild: a ticket reconstructed from ServiceNow and imper.ai alone
 * (imperai-snowctl rebuild).  Pure, like the engine it is part of. */
#ifndef IMPERAI_REBUILD_H
#define IMPERAI_REBUILD_H

#include <stdint.h>

#include "engine.h"

struct snow_record;

/* Rebuilds a ticket the daemon wrote to from ServiceNow and imper.ai
 * alone, after its state directory was lost (imperai-snowctl rebuild).
 * t is a fresh ticket_init()ed ticket of table/r->sys_id; r the record as
 * the poll reads it, whose verification field ends with the revision tag
 * "imperai-snow ref G.R"; v the newest verification imper.ai holds for the
 * ticket (NULL if none; ignored when the field names another).  t gets
 * generation G and revision R (so the next PATCH writes R+1 and no note is
 * repeated), the request id, the state and verification the field shows,
 * the requester and seen_mod_count of r.  out gets what the daemon would
 * have done next: the PATCH of a change imper.ai reported beyond the
 * field, the CREATE of a request the field still waits for (same
 * Idempotency-Key, so imper.ai answers with the existing request), and
 * the decisions the record itself calls for (ended, left its flow).
 * -ENOENT when the field has no revision tag, -EINVAL when its text is not
 * one the daemon writes (or for unusable arguments). */
int rebuild_ticket(const struct engine_policy *p, struct ticket *t, const char *table,
    const struct snow_record *r, const struct imperai_verification *v, int64_t now,
    struct engine_result *out);

#endif
