/* The engine's test fixture: a hand-built config and flows, a fake flow
 * match, one ticket driven through the engine (struct h) and the
 * assertions on its result.  Shared by test_engine.c and test_codec.c. */
#ifndef IMPERAI_ENGINE_FIXTURE_H
#define IMPERAI_ENGINE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "flows.h"
#include "imperai.h"
#include "snow.h"

#define T0		INT64_C(1772366400)	/* 2026-03-01 12:00:00 UTC */
#define SYS1		"46d44a5fa9fe198101b5a8b5de1e3e13"
#define SYS2		"9d385017c611228701d22104cc95c371"
#define CALLER1		"681ccaf9c0a8016400b98a06818d57c7"
#define CALLER2		"5137153cc611227c000bbd1bd8cd2005"
#define SEND_URL	"https://verify.imper.ai/send/tok1"
#define DETAILS_URL	"https://verify.imper.ai/requests/vr_81"
#define FIELD		"u_imperai_verification"

extern struct config cfg;
extern struct flow flow_v[];
extern struct flows flows;
extern const struct engine_policy pol;

/* One ticket under test and the result of the last decision. */
struct h {
	struct ticket		t;
	struct engine_result	res;
	const char		*table;
	int64_t			 mod;		/* the ticket's sys_mod_count in ServiceNow */
	const char		*category;
	const char		*state;
	const char		*caller;
	int			 hide;		/* 1: requester unreadable, 2: only its email readable */
};

/* One change of the current request as the feed reports it. */
struct chg {
	enum imperai_status		status;
	int				risk;		/* score + 1: 0 = unknown */
	enum imperai_action_status	action;
	int64_t				completed_at;
	int64_t				action_at;
	int64_t				updated_at;	/* 0: now */
	const char			*rec;
	const char			*recipient;
	const char			*id;
	int64_t				 sent_at;	/* the latest send, 0: none reported */
};

int setup(void **state);
int teardown(void **state);
void reset_result(struct h *h);
void record(struct h *h, struct snow_record *r);
int observe(struct h *h);
void v_free(struct imperai_verification *v);
void v_init(struct h *h, struct imperai_verification *v, const char *id, enum imperai_status st);
int created(struct h *h, uint32_t gen, const char *id, int64_t now);
int feed(struct h *h, const struct chg *c, int64_t now);
int patched(struct h *h, uint32_t rev, int skip);
const struct effect *effect(const struct h *h, size_t i);
char *patch_get(const struct effect *e, const char *key);
void assert_patch_has(const struct effect *e, const char *key, const char *needle);
void assert_patch_lacks(const struct effect *e, const char *key);
void assert_kinds(const struct h *h, const char *kinds);
const struct engine_event *find_event(const struct h *h, const char *msg);
void assert_event(const struct h *h, const char *msg, const char *kv);
void restart(struct h *h);
void to_awaiting(struct h *h);
void to_link_ready(struct h *h);
void to_link_sent(struct h *h);
void to_passed(struct h *h, int risk);
int action_done(struct h *h, int risk);

#endif
