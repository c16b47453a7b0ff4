/* sweep: the reconciliation sweep, the safety net under the poll's
 * watermark.  A record committed later than servicenow.poll_overlap after
 * its sys_updated_on is behind the watermark when it becomes visible, and
 * the poll never reads it.  Every servicenow.sweep_interval the sweep reads,
 * per watched table, every active ticket in the flows' categories (keyset
 * pages, like the poll) and hands each to the shell's observation; a ticket
 * the shell had never tracked is a missed one: counted, and one warning
 * with its lag behind the watermark and what to do.
 *
 * It lives in its own file so that the loop only calls in (schedule, next
 * time, status, metrics); it keeps no state across restarts. */
#ifndef IMPERAI_SWEEP_H
#define IMPERAI_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

struct config;
struct flows;
struct metrics_table;
struct snow_client;
struct snow_record;
struct sweep;

/* The shell's observation of a record read by the sweep; returns 1 when
 * it was a ticket needing verification that the shell had never seen. */
typedef int (*sweep_observe_fn)(void *arg, const char *table, const struct snow_record *r);

/* What one table's run needs from the shell, borrowed for the call. */
struct sweep_env {
	const struct config	*cfg;
	const struct flows	*flows;
	struct snow_client	*snow;
	sweep_observe_fn	 observe;
	void			*arg;
};

/* State for ntables tables; the first run of each is one interval after now. */
struct sweep *sweep_new(size_t ntables, int64_t now_ms, int interval_s);
void sweep_free(struct sweep *sw);
/* Starts table i's run when due (not while one is in flight): fields are
 * the ones the poll reads, wm_updated_on the poll's committed watermark. */
void sweep_schedule(struct sweep *sw, size_t i, const char *table, const char *const *fields,
    size_t nfields, int64_t wm_updated_on, const struct sweep_env *env, int64_t now_ms);
/* When the next run of any table is due (INT64_MAX: never). */
int64_t sweep_next_ms(const struct sweep *sw);
/* The pure decision of the filter: active tickets in the categories the
 * table's flows name; "active=true" when a flow names none. */
char *sweep_filter(const struct flows *flows, const char *table);
/* Table i's counters into the metrics, and into the status JSON object t. */
void sweep_metrics(const struct sweep *sw, size_t i, struct metrics_table *t);
void sweep_status(const struct sweep *sw, size_t i, json_object *t);

#endif
