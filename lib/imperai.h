/* imperai: the imper.ai verification API client (contract v1, documented in
 * man/imperai-snow-api.7).  This is the only module that knows the wire
 * format; when the real API differs, only this file and the contract
 * document change.
 *
 * Parsers are strict about types, tolerant of unknown fields, and every
 * failure names the field and the response: "change feed: data[3].risk_score:
 * expected integer 0-10 or null, got string". */
#ifndef IMPERAI_IMPERAI_H
#define IMPERAI_IMPERAI_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct http_client;
struct http_pool;
struct config;

enum imperai_status {
	IMPERAI_PENDING,
	IMPERAI_LINK_SENT,
	IMPERAI_IN_PROGRESS,
	IMPERAI_PASSED,
	IMPERAI_FAILED,
	IMPERAI_TIMED_OUT,
	IMPERAI_NOT_ENOUGH_QUESTIONS,
	IMPERAI_CANCELED,
};
const char *imperai_status_name(enum imperai_status s);	/* wire name */
int imperai_status_parse(const char *s, enum imperai_status *out);
int imperai_status_is_final(enum imperai_status s);

/* "none": no action will run (none requested, or the verification ended
 * without passing); "pending": requested and still possible. */
enum imperai_action_status {
	IMPERAI_ACTION_NONE,
	IMPERAI_ACTION_PENDING,
	IMPERAI_ACTION_COMPLETED,
	IMPERAI_ACTION_FAILED,
};
const char *imperai_action_status_name(enum imperai_action_status s);	/* wire name */
int imperai_action_status_parse(const char *s, enum imperai_action_status *out);

/* The ticket a verification belongs to, as sent at create and echoed back. */
struct imperai_ticket_ref {
	char	*instance;
	char	*table;
	char	*sys_id;
	char	*number;
	char	*url;
};

struct imperai_create {
	struct imperai_ticket_ref ticket;
	char	*subject;
	char	*description;
	char	*category;
	char	*action;		/* "password_reset", "none" */
	char	*requester_name;
	char	*requester_email;
	char	*requester_user_name;
	char	*assigned_agent;
	char	*idempotency_key;	/* instance/table/sys_id/generation */
};

/* One verification request as imper.ai reports it (create, get, feed).
 * Strings are NULL when the wire value is null or absent; times are UNIX
 * seconds, 0 when null or absent. */
struct imperai_verification {
	char			*id;
	struct imperai_ticket_ref ticket;	/* url may be NULL */
	enum imperai_status	 status;
	char			*channel;	/* "email", "sms" or NULL */
	char			*recipient_masked;
	char			*initiated_by;
	int			 risk_score;	/* 0-10, -1 when not yet known */
	char			*recommendation;
	char			*analysis_summary;
	char			*additional_info;
	char			*send_link_url;
	char			*details_url;
	char			*category;	/* echoed from create */
	char			*requested_action;
	char			*subject;
	int64_t			 expires_at;
	int64_t			 created_at;
	int64_t			 completed_at;
	int64_t			 updated_at;
	int64_t			 sent_at;	/* the latest send of the link; 0 if none */
	struct {
		char			*type;
		enum imperai_action_status status;
		int64_t			 completed_at;
		int			 automated;
	} action;
};

struct imperai_feed {
	struct imperai_verification *v;
	size_t	 n;
	char	*next_cursor;
	int	 has_more;
};

/* Each frees what the struct holds and zeroes it, not the struct itself. */
void imperai_create_free(struct imperai_create *c);
void imperai_verification_free(struct imperai_verification *v);
void imperai_feed_free(struct imperai_feed *f);
/* Deep copy; dst is overwritten (free it first if it holds anything). */
void imperai_verification_copy(struct imperai_verification *dst,
    const struct imperai_verification *src);

/* Longest string field a parser accepts, in bytes. */
#define IMPERAI_MAX_STRING	65536

/* Builders and parsers: pure.  A parser fails with -EBADMSG and *cause
 * ("<what>: <field path>: <problem>", caller frees); on failure *out
 * holds nothing.  Unknown fields are ignored; of duplicate keys the last
 * one wins (json-c). */
char *imperai_create_body(const struct imperai_create *c);
int imperai_parse_verification(const char *body, size_t len, const char *what,
    struct imperai_verification *out, char **cause);
int imperai_parse_feed(const char *body, size_t len, struct imperai_feed *out, char **cause);
/* {"error":{"code","message"}} -> "code: message", NULL if not one.  The
 * result is printable (control characters replaced) and capped. */
char *imperai_parse_error(const char *body, size_t len);
/* The verification carried in a 409 already_final error body. */
int imperai_parse_error_verification(const char *body, size_t len,
    struct imperai_verification *out, char **cause);
/* The wire object for v, e.g. for a snapshot that imperai_parse_verification
 * reads back. */
char *imperai_verification_json(const struct imperai_verification *v);
/* The risk level shown to agents, from the configured bands. */
enum imperai_risk { IMPERAI_RISK_UNKNOWN, IMPERAI_RISK_VERIFIED, IMPERAI_RISK_MEDIUM, IMPERAI_RISK_HIGH };
enum imperai_risk imperai_risk_level(int score, int verified_max, int medium_max);
const char *imperai_risk_name(enum imperai_risk r);	/* "Verified", "Medium", "High", "Unknown" */

/* The client.  A callback gets err 0 with v (or f), or a negative errno
 * with cause and v == NULL: -ETIMEDOUT, -ECONNREFUSED, -EIO (transport or
 * 5xx), -ECANCELED (shutdown), -EAGAIN (429, or the hourly budget),
 * -EACCES (401/403), -ENOENT (404), -EINVAL (400), -EEXIST (409
 * idempotency_conflict), -EBADMSG (an answer that breaks the contract),
 * -EPROTO (any other status).  Cancel of a request already final gives
 * -EALREADY *with* v, the request as it ended.  v, f and cause belong to
 * the client and are freed when the callback returns: copy or move out
 * what you keep (a struct copy followed by memset(v, 0, sizeof *v)). */
struct imperai_client;
typedef void (*imperai_verification_fn)(int err, long status, const char *cause,
    struct imperai_verification *v, void *arg);
typedef void (*imperai_feed_fn)(int err, const char *cause, struct imperai_feed *f, void *arg);

struct imperai_client *imperai_client_new(const struct config *c, struct http_client *h, char **cause);
void imperai_client_free(struct imperai_client *ic);
/* Each queues one request; done is called exactly once, from
 * http_perform(), never before these return.  Arguments are made safe
 * rather than refused: an id is percent-encoded into the path, bytes of an
 * idempotency key outside printable ASCII (and '%') become %XX, the
 * cursor is percent-encoded, limit is clamped to 1-500 (< 1: 100). */
void imperai_create(struct imperai_client *ic, const struct imperai_create *req,
    imperai_verification_fn done, void *arg);
void imperai_get(struct imperai_client *ic, const char *id, imperai_verification_fn done, void *arg);
void imperai_cancel(struct imperai_client *ic, const char *id, imperai_verification_fn done, void *arg);
void imperai_changes(struct imperai_client *ic, const char *cursor, int limit,
    imperai_feed_fn done, void *arg);
struct http_pool *imperai_client_pool(struct imperai_client *ic);

/* Response handling, pure, exposed for tests: turns an HTTP answer into a
 * result as described above (what names the call in causes). */
struct http_response;
int imperai_verification_response(const struct http_response *r, const char *what,
    struct imperai_verification *out, char **cause);
int imperai_feed_response(const struct http_response *r, struct imperai_feed *out, char **cause);
/* 1 when id can name a request in a URL path: 1-128 of [A-Za-z0-9_-]. */
int imperai_id_valid(const char *id);

#endif
