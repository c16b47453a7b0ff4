/* ctl: the pieces of imperai-snowctl, shared between its files.
 *
 * fmt.c and rows.c are pure (text, tables, CSV, the list's rows,
 * filters and sorting) and unit-tested; the command files read the store
 * and the settings and print. */
#ifndef IMPERAI_CTL_H
#define IMPERAI_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "imperai.h"
#include "util.h"

struct config;
struct store;

/* Exit codes (sysexits(3) where one fits). */
#define CTL_EX_OK		0
#define CTL_EX_ERROR		1
#define CTL_EX_NOT_RUNNING	2	/* status */
#define CTL_EX_ATTENTION	3	/* status */
#define CTL_EX_USAGE		64
#define CTL_EX_UNAVAILABLE	69	/* check-config --probe */
#define CTL_EX_CONFIG		78

/* What every command works with. */
struct ctl {
	const char	*config_path;
	int		 config_given;	/* -c on the command line */
	const char	*state_dir;	/* -S, else the settings' state.directory */
	struct config	*cfg;		/* NULL with -S and no -c */
	struct store	*st;
	int64_t		 now;
	int		 risk_verified_max;
	int		 risk_medium_max;
};

/* main.c: options shared by all commands, and opening things. */
struct option;
/* Handles -c/-S (and --config/--state-dir) inside a command's getopt loop;
 * 1 when ch was one of them. */
int ctl_common_opt(struct ctl *c, int ch, const char *arg);
/* Loads the settings without their secrets unless -S was given alone,
 * then opens the store read-only (writable with STORE_NOLOCK under
 * CTL_OPEN_WRITE).  Prints what went wrong and returns CTL_EX_ERROR, or 0;
 * under CTL_OPEN_MAYBE_NEW, an existing state directory without state
 * returns CTL_EX_NOT_RUNNING silently (c->st stays NULL). */
enum ctl_open_flags {
	CTL_OPEN_WRITE = 1 << 0,
	CTL_OPEN_MAYBE_NEW = 1 << 1,
};
int ctl_open(struct ctl *c, int flags);
void ctl_close(struct ctl *c);
/* Parses the options of command cmd that takes the common ones, one flag
 * (--name, -letter: sets *flag) and exactly nargs operands (from optind).
 * Returns -1 when they parse, else the exit code (--help, usage error). */
int ctl_flag_opts(struct ctl *c, int argc, char **argv, const char *cmd, const char *name,
    int letter, int *flag, int nargs);
/* Prints the command's usage on stderr; returns CTL_EX_USAGE. */
int ctl_usage_error(const char *cmd);
/* Prints the command's usage and summary on stdout (COMMAND --help). */
int ctl_help(const char *cmd);

/* Every command also takes these (getopt "c:S:h"). */
#define CTL_COMMON_SHORT "c:S:h"
#define CTL_COMMON_LONG \
	{ "config", required_argument, NULL, 'c' }, \
	{ "state-dir", required_argument, NULL, 'S' }, \
	{ "help", no_argument, NULL, 'h' }

/* list.c, shared with show: the masked address (what imper.ai
 * reported sending to, else the requester's ServiceNow address masked),
 * and the risk level from the configured bands. */
struct ticket;
char *ctl_masked_email(const struct ticket *t);
enum imperai_risk ctl_ticket_risk(const struct ctl *c, const struct ticket *t);

/* Commands: argc/argv start at the command name. */
int ctl_cmd_list(struct ctl *c, int argc, char **argv);
int ctl_cmd_show(struct ctl *c, int argc, char **argv);
int ctl_cmd_status(struct ctl *c, int argc, char **argv);
int ctl_cmd_check_config(struct ctl *c, int argc, char **argv);
int ctl_cmd_resync(struct ctl *c, int argc, char **argv);
int ctl_cmd_retry(struct ctl *c, int argc, char **argv);
int ctl_cmd_audit(struct ctl *c, int argc, char **argv);
int ctl_cmd_setup(struct ctl *c, int argc, char **argv);
int ctl_cmd_rebuild(struct ctl *c, int argc, char **argv);

/* --- net.c: blocking calls for setup and rebuild ---------------------- */

struct http_client;
struct snow_client;
struct snow_list;
struct snow_record;
struct imperai_feed;

struct ctl_net {
	struct http_client	*http;
	struct snow_client	*snow;		/* the integration user */
	struct snow_client	*admin;		/* setup --admin-user, NULL otherwise */
	struct imperai_client	*imp;		/* NULL unless asked for */
};
/* Clients from the settings (imper.ai's only when with_imperai). */
int ctl_net_open(struct ctl_net *n, const struct config *cfg, int with_imperai, char **cause);
/* Adds n->admin: Basic auth as user; acfg is filled from cfg and must
 * outlive n (it borrows cfg's strings, never free it). */
int ctl_net_admin(struct ctl_net *n, struct config *acfg, const struct config *cfg,
    const char *user, const char *password, char **cause);
void ctl_net_close(struct ctl_net *n);
/* Each returns 0 or the client's negative error with *cause (caller frees). */
int ctl_snow_list(struct ctl_net *n, struct snow_client *s, const char *table, const char *query,
    const char *const *fields, size_t nfields, int limit, struct snow_list *out, char **cause);
int ctl_snow_insert(struct ctl_net *n, struct snow_client *s, const char *table, const char *body,
    struct snow_record *out, char **cause);
int ctl_imperai_changes(struct ctl_net *n, const char *cursor, int limit, struct imperai_feed *out,
    char **cause);

/* --- plan.c: the pure decisions of setup and rebuild ------------------ */

/* The type of a sys_dictionary row: internal_type (a plain string, or a
 * reference flattened to its value), or internal_type.name when the value
 * is a sys_id; NULL when neither says. */
const char *ctl_setup_field_type(const struct snow_record *r);
/* 1 for a time zone that is UTC (GMT, UTC, Etc/UTC...); 0 for any other,
 * and for "" (the instance default, which is not necessarily UTC). */
int ctl_setup_tz_is_utc(const char *tz);
/* The role among roles that lets the integration user read, write and
 * resolve records of table; NULL when none does. */
const char *ctl_setup_role_for(const char *table, char *const *roles, size_t n);
/* The POST body that creates the verification field of table. */
char *ctl_setup_field_body(const char *table, const char *field);
/* The query (returned) and the fields (filled, caller frees each) that read
 * the requester of the newest ticket of a table whose requester field is rf. */
#define CTL_REQUESTER_NFIELDS	5
char *ctl_requester_query(const char *rf, char *fields[CTL_REQUESTER_NFIELDS]);
/* What that page says: 1 the requester is readable, 0 there is no ticket to
 * check, -1 name, email and user name all read empty (the daemon would not
 * verify anyone).  *msg (caller frees) says so, and what to grant. */
int ctl_requester_verdict(const char *table, const char *rf, const char *user,
    const struct snow_list *l, char **msg);

/* --- fmt.c: text ------------------------------------------------------ */

/* Columns s takes on a terminal (UTF-8 code points; invalid bytes count 1). */
size_t ctl_width(const char *s);
/* Copy of s cut to at most max columns, ending in U+2026 when cut. */
char *ctl_fit(const char *s, size_t max);
/* Copy of s safe to print on a terminal: control characters (C0, DEL,
 * C1) and invalid UTF-8 become '?'; NULL becomes "". */
char *ctl_printable(const char *s);
/* "YYYY-MM-DD HH:MM" (UTC), or "-" for 0. */
void ctl_format_minute(int64_t t, char out[17]);
/* "YYYY-MM-DD HH:MM:SS" (UTC), or "-" for 0. */
void ctl_format_second(int64_t t, char out[20]);
/* "45s", "12m", "3h", "2d" since t; "-" for 0. */
void ctl_format_age(int64_t now, int64_t t, char out[24]);
/* --since/--until: "24h", "7d", "90m" (before now), "YYYY-MM-DD",
 * "YYYY-MM-DD HH:MM[:SS]" or RFC 3339; UTC.  -EINVAL otherwise. */
int ctl_parse_when(const char *s, int64_t now, int64_t *out);
/* Lower case, '-' and ' ' as '_': "Timed out" -> "timed_out". */
char *ctl_normalize(const char *s);

/* Colour only for a terminal, without NO_COLOR, and TERM not dumb. */
int ctl_want_colour(int fd);
#define CTL_GREEN	"\033[32m"
#define CTL_YELLOW	"\033[33m"
#define CTL_RED		"\033[31m"
#define CTL_RESET	"\033[0m"

/* An aligned table: cells[row * ncols + col]; colours likewise (NULL
 * array or entry: plain).  Columns are as wide as their widest cell,
 * capped at max[col] (0: no cap) with an ellipsis. */
struct ctl_table {
	size_t		 ncols;
	const char	*const *head;
	const size_t	*max;
	char		**cells;
	const char	**colours;
	size_t		 nrows;
};
void ctl_table_print(FILE *f, const struct ctl_table *t, int colour);

/* RFC 4180: a field (quoted when it holds , " CR or LF; quotes doubled)
 * and a record ending in CRLF. */
void ctl_csv_field(struct buf *b, const char *s);
void ctl_csv_record(struct buf *b, const char *const *fields, size_t n);

/* json-c helpers: a string or null, an RFC 3339 time or null for 0. */
json_object *ctl_json_str(const char *s);
json_object *ctl_json_time(int64_t t);

/* --- rows.c: the list's rows ------------------------------------------ */

#define CTL_STATUS_UNKNOWN	(-1)

/* One verification request, as `list` shows it. */
struct ctl_row {
	char		*ticket;
	char		*table;
	char		*sys_id;
	char		*requester;
	char		*email;		/* masked */
	char		*category;
	char		*initiated_by;
	char		*verification_id;
	char		*state;		/* the daemon's state of the ticket */
	enum imperai_risk risk;
	int		 risk_score;	/* -1 unknown */
	int		 status;	/* enum imperai_status or CTL_STATUS_UNKNOWN */
	int64_t		 time;
};
void ctl_row_free(struct ctl_row *r);
void ctl_rows_free(struct ctl_row *v, size_t n);

/* "Passed", "Timed out"... ("-" for unknown) and the wire name "timed_out". */
const char *ctl_status_label(int status);
const char *ctl_status_name(int status);
/* Accepts a wire name or a label in any case ("timed_out", "Timed out"). */
int ctl_status_parse(const char *s, int *out);
/* "Verified", "Medium", "High", "-" and "verified", "medium", "high", NULL. */
const char *ctl_risk_label(enum imperai_risk r);
const char *ctl_risk_name(enum imperai_risk r);
int ctl_risk_parse(const char *s, enum imperai_risk *out);

struct ctl_filter {
	uint32_t	 status_mask;	/* bit (1 << (status + 1)); 0: any */
	uint32_t	 risk_mask;	/* bit (1 << risk); 0: any */
	char		**categories;
	size_t		 ncategories;
	char		*agent;		/* substring, case-insensitive */
	char		*ticket;
	int64_t		 since;		/* 0: open */
	int64_t		 until;		/* 0: open; inclusive */
};
/* Comma lists; an unknown name fails with *cause naming the valid ones. */
int ctl_filter_status(struct ctl_filter *f, const char *list, char **cause);
int ctl_filter_risk(struct ctl_filter *f, const char *list, char **cause);
void ctl_filter_category(struct ctl_filter *f, const char *list);
void ctl_filter_free(struct ctl_filter *f);
int ctl_row_matches(const struct ctl_filter *f, const struct ctl_row *r);

enum ctl_sort { CTL_SORT_TIME, CTL_SORT_TICKET, CTL_SORT_RISK, CTL_SORT_STATUS };
int ctl_sort_parse(const char *s, enum ctl_sort *out);
/* time: newest first; ticket: ascending; risk: highest first; status:
 * lifecycle order.  Ties: newest first.  reverse flips the whole order. */
void ctl_rows_sort(struct ctl_row *v, size_t n, enum ctl_sort key, int reverse);

enum ctl_format { CTL_FMT_TABLE, CTL_FMT_JSON, CTL_FMT_CSV };
/* Prints the rows in the format; colour applies to the table only. */
void ctl_rows_print(FILE *f, const struct ctl_row *v, size_t n, enum ctl_format fmt, int colour);
json_object *ctl_row_json(const struct ctl_row *r);

#endif
