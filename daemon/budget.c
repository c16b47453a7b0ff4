/* budget: each pool's hourly request budget, kept across restarts.  The
 * use is committed with a reserve the pool may spend past it before the
 * next commit: what a crash can cost of the hour's budget. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "http.h"
#include "imperai.h"
#include "log.h"
#include "loopd.h"
#include "store.h"
#include "util.h"

#define BUDGET_POOLS	2

/* Pool i (0: ServiceNow, 1: imper.ai) if it has a budget, with its meta key. */
static struct http_pool *
budget_pool(const struct loop *l, int i, const char **key)
{
	struct http_pool *p = NULL;

	*key = i == 0 ? "budget/servicenow" : "budget/imperai";
	if (i == 0 && l->snow)
		p = snow_client_pool(l->snow);
	else if (i == 1 && l->imp)
		p = imperai_client_pool(l->imp);
	return p && http_pool_budget(p) > 0 ? p : NULL;
}

/* Requests a pool may send past its stored use: what a crash can cost of
 * the hour's budget, and room to send between two commits. */
static int
budget_reserve(const struct loop *l, int i)
{
	const char *key;
	struct http_pool *p = budget_pool(l, i, &key);
	int conc = i == 0 ? l->cfg->snow.http.concurrency : l->cfg->imperai.http.concurrency;
	int r = p ? http_pool_budget(p) / 10 : 0;

	if (l->budget_final)
		return 0;
	r = r < 2 * conc ? r : 2 * conc;
	return r > 1 ? r : 1;
}

static void
budget_clock(struct http_budget_clock *c)
{
	static char id[80];
	static int id_read;
	struct timespec ts;
	FILE *f;

	/* the same boot dates the stored use by the boot clock, exactly */
	if (!id_read && (f = fopen("/proc/sys/kernel/random/boot_id", "r")) != NULL) {
		if (fgets(id, sizeof(id), f) == NULL)
			id[0] = '\0';
		id[strcspn(id, "\n")] = '\0';
		fclose(f);
	}
	id_read = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	c->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	c->boot_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	c->boot_id = id[0] ? id : NULL;
}

/* A commit is due once half a pool's reserve is spent (after a failed
 * commit, not before the retry time: no spinning against a full disk). */
int
budget_due(const struct loop *l)
{
	const char *key;

	if (l->outbox_reload_ms != 0)
		return 0;
	for (int i = 0; i < BUDGET_POOLS; i++) {
		struct http_pool *p = budget_pool(l, i, &key);

		if (p && (l->budget_final ||
		    http_pool_budget_allowance(p) <= budget_reserve(l, i) / 2))
			return 1;
	}
	return 0;
}

/* Stores each pool's use that changed (it sent, or the reserve changes)
 * with the reserve it may spend once this commits. */
void
budget_store(struct store_txn *txn, const struct loop *l)
{
	struct http_budget_clock now;
	int have_now = 0;
	const char *key;
	char *text;

	for (int i = 0; i < BUDGET_POOLS; i++) {
		struct http_pool *p = budget_pool(l, i, &key);
		int reserve = budget_reserve(l, i);

		if (p == NULL || (http_pool_budget_allowance(p) == reserve && !l->budget_final))
			continue;
		if (!have_now++)
			budget_clock(&now);
		http_pool_budget_export(p, &now, reserve, &text);
		store_meta_put(txn, key, text, strlen(text));
		free(text);
	}
}

void
budget_committed(struct loop *l)
{
	const char *key;

	for (int i = 0; i < BUDGET_POOLS; i++) {
		struct http_pool *p = budget_pool(l, i, &key);

		if (p)
			http_pool_budget_allow(p, budget_reserve(l, i));
	}
}

/* Nothing is sent until the first commit stores a reserve.  Unreadable:
 * warned, an empty window. */
static void
budget_import(struct store_txn *txn, struct http_pool *p, const char *key,
    const struct http_budget_clock *now, struct buf *b)
{
	char *cause = NULL;

	http_pool_budget_allow(p, 0);
	buf_reset(b);
	if (txn && store_meta_get(txn, key, b) == 0 &&
	    http_pool_budget_import(p, now, b->data, &cause) < 0) {
		log_kv(LOG_LVL_WARN, "stored request budget use unreadable: "
		    "counting from an empty hour", "key", key, "error", cause, NULL);
		free(cause);
	}
}

void
budget_load(struct loop *l)
{
	struct http_budget_clock now;
	struct store_txn *txn = NULL;
	const char *key;
	struct buf b;

	buf_init(&b);
	budget_clock(&now);
	if (store_begin(l->st, 1, &txn) < 0)
		txn = NULL;
	for (int i = 0; i < BUDGET_POOLS; i++) {
		struct http_pool *p = budget_pool(l, i, &key);

		if (p != NULL)
			budget_import(txn, p, key, &now, &b);
	}
	if (txn)
		store_abort(txn);
	buf_free(&b);
}
