/* ctl-admin: the commands that ask the daemon for something (resync,
 * retry: a request queued in the store, taken on its next step) and the
 * audit log (verify, export). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "ctl.h"
#include "codec.h"
#include "engine.h"
#include "requests.h"
#include "store.h"
#include "util.h"


/* Only the shared options and --help; the rest are positional. */
static int
admin_opts(struct ctl *c, const char *name, int argc, char **argv)
{
	static const struct option opts[] = { CTL_COMMON_LONG, { NULL, 0, NULL, 0 } };
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORT, opts, NULL)) != -1) {
		if (ctl_common_opt(c, ch, optarg))
			continue;
		if (ch == 'h')
			return ctl_help(name) == 0 ? -1 : CTL_EX_USAGE;
		return ctl_usage_error(name);
	}
	return 0;
}

static int
admin_queue_fn(struct store_txn *t, void *arg)
{
	uint64_t seq;

	store_request_add(t, arg, &seq);
	return store_txn_error(t);
}

/* A note when nobody is there to take the request. */
static void
admin_daemon_note(struct ctl *c, struct store_txn *txn)
{
	struct buf b;
	json_object *o = NULL, *v;
	int64_t updated = 0;

	buf_init(&b);
	if (store_meta_get(txn, "daemon/status", &b) == 0 && (o = json_tokener_parse(b.data)) &&
	    json_object_object_get_ex(o, "updated", &v))
		updated = json_object_get_int64(v);
	if (c->now - updated > 30)
		fprintf(stderr, "imperai-snowctl: note: imperai-snowd does not seem to be running; "
		    "the request waits until it starts\n");
	json_object_put(o);
	buf_free(&b);
}

static int
admin_queue(struct ctl *c, const struct req *r, const char *what)
{
	char *json = requests_encode(r);
	int rc = store_write(c->st, admin_queue_fn, json);

	free(json);
	if (rc != 0) {
		fprintf(stderr, "imperai-snowctl: cannot queue the request: %s\n", store_strerror(rc));
		return CTL_EX_ERROR;
	}
	printf("queued: %s (the daemon picks it up within a few seconds)\n", what);
	return CTL_EX_OK;
}

int
ctl_cmd_resync(struct ctl *c, int argc, char **argv)
{
	struct req r = { .op = REQ_RESYNC };
	struct store_txn *txn;
	char *what;
	int rc;

	if ((rc = admin_opts(c, "resync", argc, argv)) != 0)
		return rc < 0 ? CTL_EX_OK : rc;
	if (optind + 1 != argc)
		return ctl_usage_error("resync");
	if ((rc = ctl_open(c, CTL_OPEN_WRITE)) != 0)
		return rc;
	if ((rc = store_begin(c->st, 1, &txn)) == 0) {
		rc = store_ticket_by_number(txn, argv[optind], &r.table, &r.sys_id);
		if (rc == 0)
			admin_daemon_note(c, txn);
		store_abort(txn);
	}
	if (rc == -ENOENT)
		fprintf(stderr, "imperai-snowctl: no such ticket: %s (imperai-snowd tracks only the "
		    "tickets its flows select)\n", argv[optind]);
	else if (rc != 0)
		fprintf(stderr, "imperai-snowctl: cannot read the store: %s\n", store_strerror(rc));
	if (rc == 0) {
		r.ticket = xstrdup(argv[optind]);
		what = xprintf("resync %s", r.ticket);
		rc = admin_queue(c, &r, what);
		free(what);
	} else
		rc = CTL_EX_ERROR;
	free(r.ticket);
	free(r.table);
	free(r.sys_id);
	return rc;
}

struct parked_scan {
	uint64_t	 want;		/* 0: count every parked entry */
	uint64_t	 parked;
	int		 found;
};

static int
admin_parked_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct parked_scan *ps = arg;
	struct outbox_entry en;
	char *cause = NULL;

	if (ps->want && seq == ps->want)
		ps->found = 1;
	if (codec_entry_decode(val, len, &en, &cause) == 0 && en.phase == OUTBOX_PARKED)
		ps->parked++;
	free(cause);
	outbox_entry_free(&en);
	return 0;
}

static int
admin_seq(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || end == s || v == 0 || *s == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

int
ctl_cmd_retry(struct ctl *c, int argc, char **argv)
{
	struct req r = { .op = REQ_RETRY };
	struct parked_scan ps = { 0 };
	struct store_txn *txn;
	char *what;
	int rc;

	if ((rc = admin_opts(c, "retry", argc, argv)) != 0)
		return rc < 0 ? CTL_EX_OK : rc;
	if (optind + 1 < argc || (optind < argc && admin_seq(argv[optind], &r.seq) != 0))
		return ctl_usage_error("retry");
	if ((rc = ctl_open(c, CTL_OPEN_WRITE)) != 0)
		return rc;
	ps.want = r.seq;
	if ((rc = store_begin(c->st, 1, &txn)) == 0) {
		rc = store_outbox_each(txn, admin_parked_one, &ps);
		if (rc == 0)
			admin_daemon_note(c, txn);
		store_abort(txn);
	}
	if (rc != 0) {
		fprintf(stderr, "imperai-snowctl: cannot read the store: %s\n", store_strerror(rc));
		return CTL_EX_ERROR;
	}
	if (r.seq && !ps.found) {
		fprintf(stderr, "imperai-snowctl: no such pending write: %" PRIu64 "\n", r.seq);
		return CTL_EX_ERROR;
	}
	if (!r.seq && ps.parked == 0) {
		printf("nothing to retry: no parked writes\n");
		return CTL_EX_OK;
	}
	what = r.seq ? xprintf("retry of write #%" PRIu64, r.seq) :
	    xprintf("retry of %" PRIu64 " parked write%s", ps.parked, ps.parked == 1 ? "" : "s");
	rc = admin_queue(c, &r, what);
	free(what);
	return rc;
}

static int
admin_audit_verify(struct ctl *c)
{
	uint64_t checked = 0, bad = 0;
	char *cause = NULL;
	int rc;

	if ((rc = ctl_open(c, 0)) != 0)
		return rc;
	rc = store_audit_verify(c->st, &checked, &bad, &cause);
	if (rc == 0)
		printf("audit: %" PRIu64 " entr%s, chain intact\n", checked, checked == 1 ? "y" : "ies");
	else if (rc == -EBADMSG)
		printf("audit: chain broken at entry %" PRIu64 ": %s\n", bad,
		    cause ? cause : "hash mismatch");
	else
		fprintf(stderr, "imperai-snowctl: %s\n", cause ? cause : store_strerror(rc));
	free(cause);
	return rc == 0 ? CTL_EX_OK : CTL_EX_ERROR;
}

/* One entry a line, its time in RFC 3339 as list --json has it (the
 * stored entry, which the hash chain covers, keeps epoch seconds). */
static int
admin_export_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	const int64_t *since = arg;
	char *copy = xstrndup(val, len);
	json_object *o = json_tokener_parse(copy), *t;
	int64_t at;

	(void)seq;
	if (o == NULL || !json_object_object_get_ex(o, "time", &t)) {
		printf("%s\n", copy);	/* unreadable: shown as stored */
		goto out;
	}
	at = json_object_get_int64(t);
	if (at < *since)
		goto out;
	json_object_object_add(o, "time", ctl_json_time(at));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
out:
	json_object_put(o);
	free(copy);
	return 0;
}

static int
admin_audit_export(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_COMMON_LONG,
		{ "since", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_txn *txn;
	int64_t since = 0;
	int ch, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORT, opts, NULL)) != -1) {
		if (ctl_common_opt(c, ch, optarg))
			continue;
		if (ch == 'h')
			return ctl_help("audit");
		if (ch != 's' || ctl_parse_when(optarg, c->now, &since) != 0) {
			if (ch == 's')
				fprintf(stderr, "imperai-snowctl audit export: --since: expected 24h, "
				    "7d, YYYY-MM-DD or \"YYYY-MM-DD HH:MM[:SS]\", got \"%s\"\n", optarg);
			return ctl_usage_error("audit");
		}
	}
	if (optind != argc)
		return ctl_usage_error("audit");
	if ((rc = ctl_open(c, 0)) != 0)
		return rc;
	if ((rc = store_begin(c->st, 1, &txn)) == 0) {
		rc = store_audit_each(txn, 1, admin_export_one, &since);
		store_abort(txn);
	}
	if (rc != 0) {
		fprintf(stderr, "imperai-snowctl: cannot read the audit log: %s\n", store_strerror(rc));
		return CTL_EX_ERROR;
	}
	return CTL_EX_OK;
}

int
ctl_cmd_audit(struct ctl *c, int argc, char **argv)
{
	int rc;

	if (argc >= 2 && strcmp(argv[1], "verify") == 0) {
		if ((rc = admin_opts(c, "audit", argc - 1, argv + 1)) != 0)
			return rc < 0 ? CTL_EX_OK : rc;
		if (optind != argc - 1)
			return ctl_usage_error("audit");
		return admin_audit_verify(c);
	}
	if (argc >= 2 && strcmp(argv[1], "export") == 0)
		return admin_audit_export(c, argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return ctl_help("audit");
	return ctl_usage_error("audit");
}
