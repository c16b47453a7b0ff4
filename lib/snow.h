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

#include "util.h"

struct config;
struct http_client;

/* One field of a record, as strings (the Table API's own representation). */
struct snow_field {
	char	*name;
	char	*value;		/* "" for empty; references flattened to the sys_id */
	char	*display;	/* display value when asked for, else NULL */
};

struct snow_record {
	char		 sys_id[33];
	int64_t		 mod_count;	/* sys_mod_count */
	int64_t		 updated_on;	/* sys_updated_on, UNIX seconds */
	struct snow_field *fields;
	size_t		 nfields;
};

struct snow_list {
	struct snow_record *v;
	size_t		 n;
};

/* NULL when the field is absent. */
const char *snow_record_get(const struct snow_record *r, const char *name);
void snow_record_free(struct snow_record *r);
void snow_list_free(struct snow_list *l);
int snow_record_copy(struct snow_record *dst, const struct snow_record *src);
/* Sets (or adds) a field; parsers and tests build records with it. */
void snow_record_set(struct snow_record *r, const char *name, const char *value);

/* Error body {"error":{"message","detail"},"status":"failure"}: formats
 * "message: detail" or NULL if the body is not one. */
char *snow_parse_error(const char *body, size_t len);

/* Parses {"result":[...]} (list) or {"result":{...}} (one record).
 * References ({"link","value"}) and display_value=all objects are
 * flattened.  Each failure says what was wrong in *cause. */
int snow_parse_list(const char *body, size_t len, struct snow_list *out, char **cause);
int snow_parse_record(const char *body, size_t len, struct snow_record *out, char **cause);

/* Poll position for one table: everything up to (updated_on, sys_id) has
 * been seen. */
struct snow_watermark {
	int64_t	 updated_on;
	char	 sys_id[33];
};

/* Builds the encoded query of one poll page:
 *   (filter)^sys_updated_on>T  ^NQ (filter)^sys_updated_on=T^sys_id>S
 *   ^ORDERBYsys_updated_on^ORDERBYsys_id
 * where T is the watermark minus overlap on the first page, and the last
 * record of the previous page afterwards.  filter may be NULL. */
char *snow_poll_query(const char *filter, const struct snow_watermark *w);
/* Full URL of a list GET, fields comma-joined, everything percent-encoded. */
char *snow_list_url(const char *instance, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit);
char *snow_record_url(const char *instance, const char *table, const char *sys_id,
    const char *const *fields, size_t nfields);
/* application/x-www-form-urlencoded body for /oauth_token.do. */
char *snow_oauth_body(const struct config *c, const char *refresh_token);
/* Parses the token answer; expires_in defaults to 1800. */
int snow_parse_oauth(const char *body, size_t len, char **access, char **refresh,
    int64_t *expires_in, char **cause);
char *snow_urlencode(const char *s);

/* The client. */
struct snow_client;

struct snow_client *snow_client_new(const struct config *c, struct http_client *h, char **cause);
void snow_client_free(struct snow_client *s);

/* Called once per page with the parsed records; return non-zero to stop. */
typedef void (*snow_list_fn)(int err, const char *cause, struct snow_list *page, void *arg);
typedef void (*snow_record_fn)(int err, long status, const char *cause,
    struct snow_record *rec, void *arg);

/* GET one page of the poll query for table from w (keyset).  err < 0 with
 * a cause on failure (-EAGAIN: retry later, e.g. instance unavailable). */
void snow_list_page(struct snow_client *s, const char *table, const char *filter,
    const struct snow_watermark *w, const char *const *fields, size_t nfields,
    snow_list_fn done, void *arg);
/* GET one record; err == -ENOENT for 404. */
void snow_get(struct snow_client *s, const char *table, const char *sys_id,
    const char *const *fields, size_t nfields, snow_record_fn done, void *arg);
/* PATCH body_json (field values, work_notes...) and return the record as
 * ServiceNow stored it (fields limited to the given list). Never retried
 * after the request may have reached the server: the outbox decides. */
void snow_patch(struct snow_client *s, const char *table, const char *sys_id,
    const char *body_json, const char *const *fields, size_t nfields,
    snow_record_fn done, void *arg);
/* Generic GET of a table with a query (check-config, setup, rebuild). */
void snow_query(struct snow_client *s, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, snow_list_fn done, void *arg);

struct http_pool *snow_client_pool(struct snow_client *s);

#endif
