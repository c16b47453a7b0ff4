/* snow: the ServiceNow Table API client.
 *
 * The pure half builds URLs and bodies and parses answers (no I/O, fuzzed).
 * The client half runs them through http.c: Basic or OAuth 2.0 (password
 * or client_credentials grant, refresh on 401), the watermark poll with a
 * keyset within one second, and PATCH. */
#ifndef IMPERAI_SNOW_H
#define IMPERAI_SNOW_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "util.h"

struct config;
struct config_table;
struct http_client;

/* What the engine reads of a record of a watched table: listed once
 * (snow_obs_fields, the fields every read of a ticket asks for) and parsed
 * once (snow_obs_parse).  The strings point into the record. */
struct snow_obs {
	const char	*number;
	const char	*state;
	const char	*active;
	const char	*category;
	const char	*subcategory;
	const char	*short_description;
	const char	*description;
	const char	*requester;	/* NULL: the record does not carry the field */
	const char	*requester_name;	/* .name, else .user_name */
	const char	*requester_email;
	const char	*requester_user_name;
	const char	*assigned_agent;	/* assigned_to.name */
	const char	*field;		/* the verification field */
	int		 complete;	/* number, state and requester present (a PATCH
					 * answer may lack them) */
	int		 ended;		/* inactive, or resolved, closed or canceled */
	int		 closed;	/* ended, and not merely resolved */
};

/* The table's requester field: requester_field, else the table's default
 * (caller_id; requested_for for sc_req_item; request_item.requested_for
 * for sc_task). */
const char *snow_requester_field(const struct config_table *tc);
/* The table's verification field (default u_imperai_verification). */
const char *snow_verification_field(const struct config_table *tc);
/* Appends to *names (each name once, new strings) the fields to ask for
 * when reading a ticket of tc: sys_id, number, the system and text fields,
 * assigned_to.name, the verification field and the requester field with
 * its .name, .email and .user_name.  tc NULL: the fixed ones only.  The
 * flows add theirs with flows_fields(). */
void snow_obs_fields(const struct config_table *tc, char ***names, size_t *n);
/* Reads the observation of r, a record of tc's table. */
void snow_obs_parse(const struct config_table *tc, const struct snow_record *r,
    struct snow_obs *o);

/* Error body {"error":{"message","detail"},"status":"failure"}: formats
 * "message: detail" or NULL if the body is not one. */
char *snow_parse_error(const char *body, size_t len);

/* Parses {"result":[...]} (list) or {"result":{...}} (one record).
 * Every value must be a JSON string; null reads as "".  References
 * ({"link","value"}) become their sys_id and display_value=all objects
 * ({"display_value","value"}) their value plus display.  Dot-walked names
 * (caller_id.email) are kept as they are.  sys_id (32 hex, required) goes to
 * r->sys_id only; sys_mod_count (-1 when absent) and sys_updated_on (0 when
 * absent) are also kept as fields.  A duplicate key: the last one wins
 * (json-c).  Refused with -EBADMSG and a cause naming the place
 * (result[3].priority): other JSON types, invalid UTF-8 or NUL, nesting
 * deeper than 16, a value over 1 MiB, a bad sys_id, count or date.  The
 * caller caps the body size (http max_body). */
int snow_parse_list(const char *body, size_t len, struct snow_list *out, char **cause);
int snow_parse_record(const char *body, size_t len, struct snow_record *out, char **cause);

/* Poll position for one table, in (sys_updated_on, sys_id) order. */
struct snow_watermark {
	int64_t	 updated_on;	/* 0: nothing seen yet */
	char	 sys_id[33];	/* "": from updated_on inclusive (a cycle's first page) */
};

/* Start of a poll cycle from the stored watermark: its time minus overlap
 * (sys_updated_on is set before commit, so late commits carry older
 * times), sys_id cleared.  The caller skips records already seen at the
 * same sys_mod_count. */
void snow_watermark_rewind(const struct snow_watermark *stored, int overlap,
    struct snow_watermark *out);

/* Builds the encoded query of one poll page from w (NULL: from the start):
 *   no watermark:  (F)^ORDERBYsys_updated_on^ORDERBYsys_id
 *   sys_id "":     (F)^sys_updated_on>=T^ORDERBY...
 *   keyset:        (F)^sys_updated_on>T^NQ(F)^sys_updated_on=T^sys_id>S^ORDERBY...
 * with T as "YYYY-MM-DD HH:MM:SS" UTC; a page after the first passes the
 * last record it got.  ^OR binds to the previous term, so appending with
 * ^ keeps the filter's meaning; the filter is repeated in each ^NQ group.
 * A trailing ^EQ is dropped (the UI appends it; terms after it would be
 * ignored).  -EINVAL with *cause for a filter holding ^NQ, ORDERBY, ^EQ
 * inside, or an empty term, or a malformed watermark sys_id. */
int snow_poll_query(const char *filter, const struct snow_watermark *w, char **out,
    char **cause);
/* Full URL of a list GET on the unversioned path (200 [] when nothing
 * matches; v1 answers 404), fields comma-joined, every value
 * percent-encoded; asks for plain values, no reference links, no count, no
 * pagination header.  nfields 0: all fields; limit <= 0: none. */
char *snow_list_url(const char *instance, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit);
/* The same for a poll page: from row offset (0: none) of the query, and
 * with the count (X-Total-Count), which tells a page emptied by row ACLs
 * (ServiceNow applies sysparm_limit before them) from the end. */
char *snow_poll_url(const char *instance, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, int offset);
char *snow_record_url(const char *instance, const char *table, const char *sys_id,
    const char *const *fields, size_t nfields);
/* application/x-www-form-urlencoded body for /oauth_token.do: the
 * refresh_token grant when refresh_token != NULL, else the configured
 * grant (password or client_credentials).  Holds secrets: wipe it. */
char *snow_oauth_body(const struct config *c, const char *refresh_token);
/* Parses the token answer; expires_in defaults to 1800; *refresh is NULL
 * when the answer has none (client_credentials).  Tokens are in secret
 * memory: release them with secret_free(). */
int snow_parse_oauth(const char *body, size_t len, char **access, char **refresh,
    int64_t *expires_in, char **cause);

/* The client. */
struct snow_client;

/* Validates the servicenow settings (https instance, or http on loopback
 * only; the credentials the auth method needs) and creates the pool. */
struct snow_client *snow_client_new(const struct config *c, struct http_client *h, char **cause);
/* Completes its outstanding requests with -ECANCELED, then frees; its
 * pool stays in the http client until http_client_free(). */
void snow_client_free(struct snow_client *s);

/* Completion of a list request: err 0 and the page, or err < 0 and a
 * cause.  The page is freed after the callback, which may take records
 * (move them out and zero page->v / page->n). */
typedef void (*snow_list_fn)(int err, const char *cause, struct snow_list *page, void *arg);
/* Completion of a record request: status is the HTTP status (0 if none);
 * rec as above, freed after the callback, NULL on error. */
typedef void (*snow_record_fn)(int err, long status, const char *cause,
    struct snow_record *rec, void *arg);

/* Errors handed to callbacks, each with a cause that says what to do:
 * -EACCES 401 (after one token refresh with OAuth), -EPERM 403 (with
 * ServiceNow's message and detail, e.g. a "Data Policy Exception"),
 * -ENOENT 404, -EINVAL 400, -EAGAIN 429, 5xx, transport failures and HTML
 * answers (hibernating instance), -EBADMSG malformed JSON, -EFBIG answer
 * over the size cap, -EPROTO a redirect or another status, -ECANCELED.
 *
 * The requests below return 0 when queued (done then runs exactly once,
 * from http_perform() or a cancel), or -EINVAL with *cause when the
 * arguments are refused (bad table name or sys_id, bad filter), or
 * -ECANCELED once snow_client_free() has begun: done is not called.  fields: the fields to read back (sys_id, sys_updated_on
 * and sys_mod_count are added to poll pages). */

/* GET one page of the poll query for table from w (keyset), skipping
 * offset rows of it (rows hidden by ACLs that a cursor cannot pass).
 * page->total is the count of the query's rows.  Retried on transport
 * errors and 5xx. */
int snow_list_page(struct snow_client *s, const char *table, const char *filter,
    const struct snow_watermark *w, int offset, const char *const *fields, size_t nfields,
    snow_list_fn done, void *arg, char **cause);
/* GET one record; err == -ENOENT for 404. */
int snow_get(struct snow_client *s, const char *table, const char *sys_id,
    const char *const *fields, size_t nfields, snow_record_fn done, void *arg,
    char **cause);
/* PATCH body_json (field values, work_notes...) and return the record as
 * ServiceNow stored it (fields limited to the given list). Never retried
 * after the request may have reached the server: the outbox decides.
 * Resubmitted once after a 401 (not applied) with a fresh OAuth token. */
int snow_patch(struct snow_client *s, const char *table, const char *sys_id,
    const char *body_json, const char *const *fields, size_t nfields,
    snow_record_fn done, void *arg, char **cause);
/* POST a new record of table (setup: a dictionary entry) and return it as
 * ServiceNow stored it.  Never retried after it may have reached the
 * server. */
int snow_insert(struct snow_client *s, const char *table, const char *body_json,
    const char *const *fields, size_t nfields, snow_record_fn done, void *arg, char **cause);
/* Generic GET of a table with a query (check-config, setup, rebuild). */
int snow_query(struct snow_client *s, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, snow_list_fn done, void *arg,
    char **cause);

struct http_pool *snow_client_pool(struct snow_client *s);

#endif
