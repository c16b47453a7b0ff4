/* ctl-list: `imperai-snowctl list`, one row per verification request the
 * daemon made, read from the store's verifications index and tickets. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ctl.h"
#include "codec.h"
#include "engine.h"
#include "imperai.h"
#include "log.h"
#include "store.h"
#include "util.h"

struct list_ctx {
	struct ctl	*c;
	struct store_txn *txn;
	struct ctl_row	*rows;
	size_t		 n;
	size_t		 unreadable;
};

/* The verifications index entry: {"table","sys_id","number","generation"}. */
static int
list_index_parse(const void *val, size_t len, char **table, char **sys_id, char **number)
{
	char *copy = xstrndup(val, len);
	json_object *o = json_tokener_parse(copy), *v;
	int rc = -EBADMSG;

	free(copy);
	*table = *sys_id = *number = NULL;
	if (o && json_object_object_get_ex(o, "table", &v) && json_object_is_type(v, json_type_string))
		*table = xstrdup(json_object_get_string(v));
	if (o && json_object_object_get_ex(o, "sys_id", &v) && json_object_is_type(v, json_type_string))
		*sys_id = xstrdup(json_object_get_string(v));
	if (o && json_object_object_get_ex(o, "number", &v) && json_object_is_type(v, json_type_string))
		*number = xstrdup(json_object_get_string(v));
	if (*table && *sys_id)
		rc = 0;
	json_object_put(o);
	return rc;
}

static char *
list_dup(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

char *
ctl_masked_email(const struct ticket *t)
{
	if (t->v.recipient_masked && *t->v.recipient_masked)
		return xstrdup(t->v.recipient_masked);
	if (t->requester_email && *t->requester_email)
		return mask_email(t->requester_email);
	return NULL;
}

enum imperai_risk
ctl_ticket_risk(const struct ctl *c, const struct ticket *t)
{
	if (t->v.id == NULL || t->v.risk_score < 0)
		return IMPERAI_RISK_UNKNOWN;
	return imperai_risk_level(t->v.risk_score, c->risk_verified_max, c->risk_medium_max);
}

/* A row for verification id of ticket t.  Only the ticket's current
 * request has a snapshot; an earlier one was canceled when the requester
 * changed, and what it was about is no longer known. */
static void
list_row_from_ticket(const struct ctl *c, const char *id, const struct ticket *t,
    struct ctl_row *r)
{
	int current = str_eq(t->request_id, id);

	r->category = list_dup(t->category);
	if (!current) {
		r->status = IMPERAI_CANCELED;
		r->risk_score = -1;
		r->state = xstrdup(engine_state_name(TS_SUPERSEDED));
		return;
	}
	r->requester = list_dup(t->requester_name);
	r->email = ctl_masked_email(t);
	r->status = t->v.id ? (int)t->v.status : IMPERAI_PENDING;
	r->risk = ctl_ticket_risk(c, t);
	r->risk_score = t->v.id ? t->v.risk_score : -1;
	r->initiated_by = list_dup(t->v.initiated_by);
	r->time = t->v.updated_at ? t->v.updated_at : t->state_since;
	r->state = xstrdup(engine_state_name(t->state));
}

static int
list_one(const char *id, const void *val, size_t len, void *arg)
{
	struct list_ctx *lc = arg;
	struct ctl_row r = { .status = CTL_STATUS_UNKNOWN, .risk_score = -1 };
	struct ticket t;
	struct buf b;
	char *number = NULL, *cause = NULL;

	if (list_index_parse(val, len, &r.table, &r.sys_id, &number) != 0) {
		lc->unreadable++;
		ctl_row_free(&r);
		free(number);
		return 0;
	}
	r.verification_id = xstrdup(id);
	r.ticket = number;
	buf_init(&b);
	memset(&t, 0, sizeof(t));	/* decode initialises it */
	if (store_ticket_get(lc->txn, r.table, r.sys_id, &b) != 0)
		r.state = xstrdup("forgotten");	/* no longer tracked */
	else if (codec_ticket_decode(b.data, b.len, &t, &cause) != 0) {
		r.state = xstrdup("unreadable");
		lc->unreadable++;
		free(cause);
	} else {
		if (t.number && *t.number)
			str_replace(&r.ticket, t.number);
		list_row_from_ticket(lc->c, id, &t, &r);
	}
	ticket_free(&t);
	buf_free(&b);
	lc->rows = xreallocarray(lc->rows, lc->n + 1, sizeof(*lc->rows));
	lc->rows[lc->n++] = r;
	return 0;
}

/* Every verification request in the store, unfiltered and unsorted. */
static int
list_collect(struct ctl *c, struct ctl_row **rows, size_t *n)
{
	struct list_ctx lc = { .c = c };
	int rc;

	if ((rc = store_begin(c->st, 1, &lc.txn)) != 0) {
		fprintf(stderr, "imperai-snowctl: cannot read the store: %s\n", store_strerror(rc));
		return CTL_EX_ERROR;
	}
	rc = store_verification_each(lc.txn, list_one, &lc);
	store_abort(lc.txn);
	if (rc != 0) {
		fprintf(stderr, "imperai-snowctl: cannot read the verifications: %s\n",
		    store_strerror(rc));
		ctl_rows_free(lc.rows, lc.n);
		return CTL_EX_ERROR;
	}
	if (lc.unreadable > 0)
		fprintf(stderr, "imperai-snowctl: warning: %zu stored record%s could not be read "
		    "(written by a newer imperai-snowd?)\n", lc.unreadable,
		    lc.unreadable == 1 ? "" : "s");
	*rows = lc.rows;
	*n = lc.n;
	return 0;
}

enum {
	OPT_STATUS = 256, OPT_RISK, OPT_CATEGORY, OPT_SINCE, OPT_UNTIL, OPT_AGENT, OPT_TICKET,
	OPT_SORT, OPT_REVERSE, OPT_LIMIT, OPT_JSON, OPT_CSV,
};

struct list_opts {
	struct ctl_filter f;
	enum ctl_sort	 sort;
	int		 reverse;
	long		 limit;		/* -1: all */
	enum ctl_format	 fmt;
};

static int
list_limit(const char *s, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return errno || *end || end == s || *out < 0 ? -EINVAL : 0;
}

/* One option of `list`; prints what is wrong and returns non-zero. */
static int
list_opt(struct ctl *c, struct list_opts *lo, int ch, const char *arg)
{
	char *cause = NULL;
	int rc = 0;

	switch (ch) {
	case OPT_STATUS:
		rc = ctl_filter_status(&lo->f, arg, &cause);
		break;
	case OPT_RISK:
		rc = ctl_filter_risk(&lo->f, arg, &cause);
		break;
	case OPT_CATEGORY:
		ctl_filter_category(&lo->f, arg);
		break;
	case OPT_SINCE:
	case OPT_UNTIL:
		if ((rc = ctl_parse_when(arg, c->now, ch == OPT_SINCE ? &lo->f.since : &lo->f.until)))
			cause = xprintf("--%s: expected 24h, 7d, YYYY-MM-DD or \"YYYY-MM-DD HH:MM[:SS]\" "
			    "(UTC), got \"%s\"", ch == OPT_SINCE ? "since" : "until", arg);
		break;
	case OPT_AGENT:
		str_replace(&lo->f.agent, arg);
		break;
	case OPT_TICKET:
		str_replace(&lo->f.ticket, arg);
		break;
	case OPT_SORT:
		if ((rc = ctl_sort_parse(arg, &lo->sort)))
			cause = xprintf("--sort: expected time, ticket, risk or status, got \"%s\"", arg);
		break;
	case OPT_REVERSE:
		lo->reverse = 1;
		break;
	case OPT_LIMIT:
		if ((rc = list_limit(arg, &lo->limit)))
			cause = xprintf("--limit: expected a number >= 0, got \"%s\"", arg);
		break;
	case OPT_JSON:
	case OPT_CSV:
		if (lo->fmt != CTL_FMT_TABLE &&
		    lo->fmt != (ch == OPT_JSON ? CTL_FMT_JSON : CTL_FMT_CSV)) {
			fprintf(stderr, "imperai-snowctl list: --json and --csv exclude each other\n");
			return ctl_usage_error("list");
		}
		lo->fmt = ch == OPT_JSON ? CTL_FMT_JSON : CTL_FMT_CSV;
		break;
	default:
		return ctl_usage_error("list");
	}
	if (rc != 0) {
		fprintf(stderr, "imperai-snowctl list: %s\n", cause);
		free(cause);
		return ctl_usage_error("list");
	}
	return 0;
}

static int
list_parse(struct ctl *c, struct list_opts *lo, int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_COMMON_LONG,
		{ "status", required_argument, NULL, OPT_STATUS },
		{ "risk", required_argument, NULL, OPT_RISK },
		{ "category", required_argument, NULL, OPT_CATEGORY },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "agent", required_argument, NULL, OPT_AGENT },
		{ "ticket", required_argument, NULL, OPT_TICKET },
		{ "sort", required_argument, NULL, OPT_SORT },
		{ "reverse", no_argument, NULL, OPT_REVERSE },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "csv", no_argument, NULL, OPT_CSV },
		{ NULL, 0, NULL, 0 },
	};
	int ch, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORT, opts, NULL)) != -1) {
		if (ctl_common_opt(c, ch, optarg))
			continue;
		if (ch == 'h')
			return ctl_help("list") == 0 ? -1 : CTL_EX_USAGE;
		if ((rc = list_opt(c, lo, ch, optarg)) != 0)
			return rc;
	}
	if (optind != argc)
		return ctl_usage_error("list");
	return 0;
}

int
ctl_cmd_list(struct ctl *c, int argc, char **argv)
{
	struct list_opts lo = { .sort = CTL_SORT_TIME, .limit = -1, .fmt = CTL_FMT_TABLE };
	struct ctl_row *rows = NULL;
	size_t n = 0, kept = 0;
	int rc;

	if ((rc = list_parse(c, &lo, argc, argv)) != 0)
		goto out;
	if ((rc = ctl_open(c, 0)) != 0 || (rc = list_collect(c, &rows, &n)) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (ctl_row_matches(&lo.f, &rows[i]))
			rows[kept++] = rows[i];
		else
			ctl_row_free(&rows[i]);
	}
	ctl_rows_sort(rows, kept, lo.sort, lo.reverse);
	if (lo.limit >= 0 && (size_t)lo.limit < kept) {
		for (size_t i = (size_t)lo.limit; i < kept; i++)
			ctl_row_free(&rows[i]);
		kept = (size_t)lo.limit;
	}
	ctl_rows_print(stdout, rows, kept, lo.fmt, ctl_want_colour(STDOUT_FILENO));
out:
	ctl_rows_free(rows, kept);
	ctl_filter_free(&lo.f);
	return rc < 0 ? CTL_EX_OK : rc;
}
