/* loop: the daemon's step, top to bottom.
 *
 *   1. what is due starts: poll cycles and feed pages (poll.c), the
 *      operator's requests (ops.c), and outbox entries, each committed as
 *      sent before it goes out (commit.c, outbox.c);
 *   2. the network runs until answers come back, each decided by the
 *      engine through commit_decide() (send.c for our own writes);
 *   3. the step's decisions commit, states and outbox entries in one
 *      transaction, and the new entries start;
 *   4. the status and metrics are written when due (report.c), and the
 *      loop sleeps until the next thing is due.
 *
 * The rooms share struct loop through loopd.h; the crash rule lives in
 * outbox.c alone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "flows.h"
#include "hmap.h"
#include "http.h"
#include "imperai.h"
#include "log.h"
#include "loop.h"
#include "loopd.h"
#include "snow.h"
#include "store.h"
#include "util.h"

static int64_t loop_idle_ms(const struct loop *l, int64_t now, int64_t until);

int
loop_step(struct loop *l, int max_wait_ms)
{
	int64_t now = loop_now_ms(), until = now + max_wait_ms;

	poll_schedule(l, now);
	if (now >= l->requests_ms) {
		ops_requests(l);
		l->requests_ms = now + 1000;
	}
	ops_unpark_due(l, now);
	ops_refs_due(l, now);
	/* what became due (retries, operator requests) starts now */
	commit_step(l, 1);
	while (l->http && http_pending(l->http) > 0 && loop_now_ms() < until) {
		http_perform(l->http, (int)(until - loop_now_ms()));
		if (commit_has_pending(l) || l->outbox_dirty)
			break;
	}
	if (l->http && http_pending(l->http) == 0) {
		int64_t left = loop_idle_ms(l, loop_now_ms(), until);

		if (left > 0)
			http_perform(l->http, (int)left);
	}
	/* A store that cannot be written (disk full) is retried by the next
	 * polls; the loop itself still turns, so the watchdog is fed: a
	 * restart would not free space. */
	commit_step(l, 1);
	report_write(l);
	l->progress_ms = loop_now_ms();
	return 0;
}

/* Idle: how long nothing is due (a poll, the feed, an outbox entry, the
 * operator requests, the status), up to until: the loop sleeps through it
 * rather than waking every few milliseconds. */
static int64_t
loop_idle_ms(const struct loop *l, int64_t now, int64_t until)
{
	int64_t next = report_next_ms(l, ops_next_ms(l, poll_next_ms(l, until)));
	int64_t due = outbox_index_next_due(l->oq);

	if (l->requests_ms < next)
		next = l->requests_ms;
	if (l->outbox_reload_ms != 0 && l->outbox_reload_ms < next)
		next = l->outbox_reload_ms;
	if (due != INT64_MAX && l->outbox_reload_ms == 0 && now + (due - loop_wall()) * 1000 < next)
		next = now + (due - loop_wall()) * 1000;
	return next - now;
}

/* --- clocks and keys ---------------------------------------------------------------- */

int64_t
loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
loop_wall(void)
{
	return (int64_t)time(NULL);
}

char *
loop_key(const char *table, const char *sys_id)
{
	return xprintf("%s/%s", table, sys_id);
}

/* --- life ------------------------------------------------------------------------------ */

static int
loop_clients(struct loop *l, char **cause)
{
	l->http = http_client_new();
	l->snow = snow_client_new(l->cfg, l->http, cause);
	if (l->snow == NULL)
		return -EINVAL;
	l->imp = imperai_client_new(l->cfg, l->http, cause);
	if (l->imp == NULL)
		return -EINVAL;
	budget_load(l);
	return 0;
}

static void
loop_clients_free(struct loop *l)
{
	if (l->http)
		http_cancel_all(l->http);
	/* Cancellation callbacks may have queued state: keep it, and the
	 * budget's use, with no reserve: these pools send nothing more. */
	l->budget_final = 1;
	commit_step(l, 0);
	l->budget_final = 0;
	/* The metrics' request counters outlive the pools a reload replaces. */
	if (l->snow)
		report_service(&l->m_base[0], &l->m_base[0], snow_client_pool(l->snow));
	if (l->imp)
		report_service(&l->m_base[1], &l->m_base[1], imperai_client_pool(l->imp));
	if (l->snow)
		snow_client_free(l->snow);
	if (l->imp)
		imperai_client_free(l->imp);
	if (l->http)
		http_client_free(l->http);
	l->snow = NULL;
	l->imp = NULL;
	l->http = NULL;
}

static void
loop_outlogs_init(struct loop *l)
{
	l->out_snow = (struct outlog){ .what = "ServiceNow poll", .check = "the instance URL and "
	    "the network (imperai-snowctl check-config --probe)" };
	l->out_imp = (struct outlog){ .what = "imper.ai change feed", .check = "imperai.api_url "
	    "and the network (imperai-snowctl check-config --probe)" };
	l->out_write = (struct outlog){ .what = "writes", .check = "imperai-snowctl status and "
	    "show TICKET" };
}

int
loop_new(struct config *cfg, struct flows *flows, struct loop **out, char **cause)
{
	struct loop *l = xcalloc(1, sizeof(*l));
	int rc;

	l->cfg = cfg;
	l->flows = flows;
	l->cache = hmap_new();
	engine_policy_init(&l->pol, cfg, flows);
	rc = store_open(cfg->state_dir, cfg->map_size, 0, &l->st, cause);
	if (rc < 0)
		goto fail;
	if ((rc = loop_clients(l, cause)) < 0)
		goto fail;
	poll_init(l);
	poll_load_positions(l);
	l->m_base[0].name = "servicenow";
	l->m_base[1].name = "imperai";
	loop_outlogs_init(l);
	outbox_load(l);
	l->progress_ms = loop_now_ms();
	l->started = loop_wall();
	srand((unsigned)(l->started ^ getpid()));
	*out = l;
	return 0;
fail:
	loop_free(l);
	return rc;
}

void
loop_reload(struct loop *l, struct config *cfg, struct flows *flows)
{
	size_t nsaved;
	struct tpoll *saved = poll_save(l, &nsaved);
	char *cause = NULL;

	loop_clients_free(l);
	poll_free(l);
	config_free(l->cfg);
	flows_free(l->flows);
	l->cfg = cfg;
	l->flows = flows;
	engine_policy_init(&l->pol, cfg, flows);
	if (loop_clients(l, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "reload: cannot set up the clients", "error", cause, NULL);
		free(cause);
	}
	poll_init(l);
	poll_restore(l, saved, nsaved);
	poll_load_positions(l);
	l->outbox_dirty = 1;
	l->feed_next_ms = 0;
}

int64_t
loop_last_progress(const struct loop *l)
{
	return l->progress_ms;
}

void
loop_status(const struct loop *l, char *buf, size_t len)
{
	if (l->store_failing)
		snprintf(buf, len, "state store in %s cannot be written (disk full?): nothing is "
		    "sent until it can", l->cfg->state_dir);
	else
		snprintf(buf, len, "polling %zu table%s; %d ServiceNow and %d imper.ai writes in "
		    "flight", l->npolls, l->npolls == 1 ? "" : "s", l->snow_jobs, l->imp_jobs);
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	loop_clients_free(l);
	commit_pending_clear(l);
	poll_free(l);
	outbox_index_free(l->oq);
	hmap_free(l->cache, NULL);
	free(l->cursor);
	free(l->feed_last_error);
	if (l->st)
		store_close(l->st);
	config_free(l->cfg);
	flows_free(l->flows);
	free(l);
}
