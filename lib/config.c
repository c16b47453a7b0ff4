/* config: the daemon's settings (libconfig), checked against one schema
 * table that is also what man/imperai-snowd.conf.5 documents. */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "sysd.h"
#include "util.h"

#define CONFIG_MAX_SIZE	(1024 * 1024)
#define MIB		(1024ULL * 1024ULL)

/* Enum fields are stored through an int pointer by the schema code. */
_Static_assert(sizeof(enum config_auth) == sizeof(int), "enum config_auth is int-sized");
_Static_assert(sizeof(enum config_grant) == sizeof(int), "enum config_grant is int-sized");

enum cfg_type {
	CFG_GROUP,	/* { } of further keys */
	CFG_TABLES,	/* ( { }, ... ) of watched tables */
	CFG_INT,	/* min..max */
	CFG_INT0,	/* 0 or min..max */
	CFG_MIB,	/* min..max MiB, stored as uint64_t bytes */
	CFG_STR,
	CFG_NAME,	/* ServiceNow table or column name */
	CFG_FIELDPATH,	/* column name, dot-walk allowed */
	CFG_URL,	/* http(s) URL; TLS unless the host is loopback */
	CFG_PROXY,
	CFG_PATH,	/* relative to the config file's directory */
	CFG_CRED,	/* systemd credential name */
	CFG_ENUM,
	CFG_HOSTS,	/* list of host names */
};

enum cfg_base {
	BASE_NONE,	/* groups: nothing stored */
	BASE_CONFIG,	/* struct config */
	BASE_SOURCES,	/* struct cfg_sources: where secrets come from */
	BASE_TABLE,	/* struct config_table */
};

enum cfg_flag {
	F_REQUIRED = 1 << 0,
	F_EMPTY_OK = 1 << 1,	/* "" means "none" and is stored as NULL */
};

struct cfg_choice {
	const char	*name;
	int		 value;
};

/* Where each secret comes from; only the secret itself reaches struct config. */
struct cfg_sources {
	char	*password_file;
	char	*password_credential;
	char	*client_secret_file;
	char	*client_secret_credential;
	char	*api_key_file;
	char	*api_key_credential;
};

struct cfg_key {
	const char		*key;	/* servicenow.tables.name for list entries */
	enum cfg_type		 type;
	long long		 min, max;
	const char		*def;	/* NULL: no default, or computed (see desc) */
	const char		*desc;
	enum cfg_base		 base;
	size_t			 off;
	const struct cfg_choice	*choices;
	int			 flags;
};

static const struct cfg_choice cfg_auths[] = {
	{ "basic", CONFIG_AUTH_BASIC }, { "oauth", CONFIG_AUTH_OAUTH }, { NULL, 0 },
};
static const struct cfg_choice cfg_grants[] = {
	{ "password", CONFIG_GRANT_PASSWORD },
	{ "client_credentials", CONFIG_GRANT_CLIENT_CREDENTIALS }, { NULL, 0 },
};
static const struct cfg_choice cfg_levels[] = {
	{ "err", LOG_LVL_ERR }, { "warning", LOG_LVL_WARN }, { "notice", LOG_LVL_NOTICE },
	{ "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG }, { NULL, 0 },
};

#define GRP		BASE_NONE, 0
#define C(f)		BASE_CONFIG, offsetof(struct config, f)
#define S(f)		BASE_SOURCES, offsetof(struct cfg_sources, f)
#define T(f)		BASE_TABLE, offsetof(struct config_table, f)
#define HTTP_KEYS(g, m, who) \
	{ g ".concurrency", CFG_INT, 1, 64, "4", \
	  "requests to " who " in flight at once", C(m.concurrency), NULL, 0 }, \
	{ g ".connect_timeout", CFG_INT, 1, 300, "10", \
	  "seconds to wait for a connection to " who, C(m.connect_timeout), NULL, 0 }, \
	{ g ".timeout", CFG_INT, 1, 600, "30", \
	  "seconds a whole request to " who " may take", C(m.timeout), NULL, 0 }, \
	{ g ".max_retries", CFG_INT, 0, 20, "5", \
	  "retries of a failed idempotent request, with backoff", C(m.max_retries), NULL, 0 }, \
	{ g ".ca_file", CFG_PATH, 0, 0, "", \
	  "CA bundle to verify " who "; empty: the system store", C(m.ca_file), NULL, F_EMPTY_OK }, \
	{ g ".proxy", CFG_PROXY, 0, 0, "", \
	  "proxy URL for " who "; empty: none (the environment is ignored)", \
	  C(m.proxy), NULL, F_EMPTY_OK }, \
	{ g ".request_budget", CFG_INT0, 10, 1000000, "0", \
	  "requests per hour to " who "; 0: unlimited", C(m.request_budget), NULL, 0 }

/* The schema: every key, its type, range, default and meaning. */
static const struct cfg_key cfg_keys[] = {
	{ "servicenow", CFG_GROUP, 0, 0, NULL, "the ServiceNow instance", GRP, NULL, F_REQUIRED },
	{ "servicenow.instance", CFG_URL, 0, 0, NULL,
	  "instance URL, e.g. https://acme.service-now.com", C(snow.instance), NULL, F_REQUIRED },
	{ "servicenow.auth", CFG_ENUM, 0, 0, "basic", "basic or oauth",
	  C(snow.auth), cfg_auths, 0 },
	{ "servicenow.oauth_grant", CFG_ENUM, 0, 0, "password",
	  "OAuth grant: password or client_credentials (auth = oauth only)",
	  C(snow.grant), cfg_grants, 0 },
	{ "servicenow.user", CFG_STR, 0, 0, NULL,
	  "integration user (basic auth and the password grant)", C(snow.user), NULL, 0 },
	{ "servicenow.password_file", CFG_PATH, 0, 0, NULL,
	  "file holding the user's password (mode 0600)", S(password_file), NULL, 0 },
	{ "servicenow.password_credential", CFG_CRED, 0, 0, NULL,
	  "systemd credential holding the user's password", S(password_credential), NULL, 0 },
	{ "servicenow.client_id", CFG_STR, 0, 0, NULL,
	  "OAuth client id (auth = oauth only)", C(snow.client_id), NULL, 0 },
	{ "servicenow.client_secret_file", CFG_PATH, 0, 0, NULL,
	  "file holding the OAuth client secret (mode 0600)", S(client_secret_file), NULL, 0 },
	{ "servicenow.client_secret_credential", CFG_CRED, 0, 0, NULL,
	  "systemd credential holding the OAuth client secret",
	  S(client_secret_credential), NULL, 0 },
	{ "servicenow.tables", CFG_TABLES, 0, 0, NULL,
	  "the watched tables, at least one", GRP, NULL, F_REQUIRED },
	{ "servicenow.tables.name", CFG_NAME, 0, 0, NULL,
	  "table name, e.g. incident", T(name), NULL, F_REQUIRED },
	{ "servicenow.tables.field", CFG_NAME, 0, 0, "u_imperai_verification",
	  "the HTML field the daemon writes", T(field), NULL, 0 },
	{ "servicenow.tables.requester_field", CFG_FIELDPATH, 0, 0, NULL,
	  "who is verified; default caller_id, requested_for for sc_req_item, "
	  "request_item.requested_for for sc_task", T(requester_field), NULL, 0 },
	{ "servicenow.page_size", CFG_INT, 1, 10000, "100",
	  "records per Table API page", C(snow.page_size), NULL, 0 },
	{ "servicenow.poll_interval", CFG_INT, 1, 3600, "10",
	  "seconds between polls of each table", C(snow.poll_interval), NULL, 0 },
	{ "servicenow.poll_overlap", CFG_INT, 0, 300, "5",
	  "seconds each poll reaches back before the watermark", C(snow.poll_overlap), NULL, 0 },
	{ "servicenow.sweep_interval", CFG_INT, 0, 86400, "300",
	  "seconds between reconciliation sweeps of each table, 0 = off",
	  C(snow.sweep_interval), NULL, 0 },
	{ "servicenow.write_attempts", CFG_INT, 1, 100, "12",
	  "times a write is tried before it is parked", C(snow.write_attempts), NULL, 0 },
	{ "servicenow.parked_retry", CFG_INT, 0, 86400, "1800",
	  "seconds between automatic retries of parked writes, 0 = only imperai-snowctl retry",
	  C(snow.parked_retry), NULL, 0 },
	{ "servicenow.write_settle", CFG_INT, 0, 3600, "60",
	  "seconds after sending a write whose answer was lost before it is read back "
	  "(a request still in ServiceNow's queue may land until then)",
	  C(snow.write_settle), NULL, 0 },
	HTTP_KEYS("servicenow", snow.http, "ServiceNow"),
	{ "imperai", CFG_GROUP, 0, 0, NULL, "the imper.ai service", GRP, NULL, F_REQUIRED },
	{ "imperai.api_url", CFG_URL, 0, 0, NULL,
	  "API base URL, e.g. https://api.imper.ai", C(imperai.api_url), NULL, F_REQUIRED },
	{ "imperai.api_key_file", CFG_PATH, 0, 0, NULL,
	  "file holding the API key (mode 0600)", S(api_key_file), NULL, 0 },
	{ "imperai.api_key_credential", CFG_CRED, 0, 0, NULL,
	  "systemd credential holding the API key", S(api_key_credential), NULL, 0 },
	{ "imperai.instance_name", CFG_STR, 0, 0, "",
	  "sent as ticket.instance; empty: the host of servicenow.instance",
	  C(imperai.instance_name), NULL, F_EMPTY_OK },
	{ "imperai.poll_interval", CFG_INT, 1, 3600, "5",
	  "seconds between reads of the change feed", C(imperai.poll_interval), NULL, 0 },
	{ "imperai.feed_limit", CFG_INT, 1, 1000, "100",
	  "changes asked for per feed request", C(imperai.feed_limit), NULL, 0 },
	{ "imperai.risk_bands", CFG_GROUP, 0, 0, NULL,
	  "risk score bands shown to agents", GRP, NULL, 0 },
	{ "imperai.risk_bands.verified_max", CFG_INT, 0, 9, "3",
	  "highest score shown as Verified; below medium_max", C(imperai.risk_verified_max), NULL, 0 },
	{ "imperai.risk_bands.medium_max", CFG_INT, 0, 9, "6",
	  "highest score shown as Medium; above it: High", C(imperai.risk_medium_max), NULL, 0 },
	{ "imperai.link_hosts", CFG_HOSTS, 0, 0, NULL,
	  "hosts links may point to; default: the host of api_url", GRP, NULL, 0 },
	HTTP_KEYS("imperai", imperai.http, "imper.ai"),
	{ "state", CFG_GROUP, 0, 0, NULL, "the state database", GRP, NULL, 0 },
	{ "state.directory", CFG_PATH, 0, 0, "/var/lib/imperai-snow",
	  "directory of the LMDB state database", C(state_dir), NULL, 0 },
	{ "state.map_size", CFG_MIB, 1, 1048576, "64",
	  "initial LMDB map size in MiB; it grows when full", C(map_size), NULL, 0 },
	{ "flows_file", CFG_PATH, 0, 0, "/etc/imperai-snow/flows.yaml",
	  "the verification policy, see imperai-snow-flows(5)", C(flows_file), NULL, 0 },
	{ "credentials_directory", CFG_PATH, 0, 0, CONFIG_CREDENTIALS_FALLBACK,
	  "where *_credential names are looked up when $CREDENTIALS_DIRECTORY is unset",
	  C(credentials_dir), NULL, 0 },
	{ "log_level", CFG_ENUM, 0, 0, "info", "err, warning, notice, info or debug",
	  C(log_level), cfg_levels, 0 },
	{ "metrics", CFG_GROUP, 0, 0, NULL, "Prometheus textfile metrics", GRP, NULL, 0 },
	{ "metrics.file", CFG_PATH, 0, 0, "",
	  "file rewritten with metrics; empty: none", C(metrics_file), NULL, F_EMPTY_OK },
	{ "metrics.interval", CFG_INT, 1, 3600, "15",
	  "seconds between rewrites of metrics.file", C(metrics_interval), NULL, 0 },
};

#define NKEYS ARRAY_SIZE(cfg_keys)

struct cfg_ctx {
	struct config		*c;
	struct cfg_sources	 src;
	const char		*name;		/* file name in messages */
	const char		*dir;		/* relative paths are resolved against it */
	const char		*text;
	int			 flags;
	struct errlist		*errs;
	struct errlist		*warns;
	size_t			 nerrs0;	/* errs->n on entry */
	const config_setting_t	*root;
	const config_setting_t	*seen[NKEYS];
};

static void cfg_msgv(struct cfg_ctx *x, struct errlist *to, const config_setting_t *s,
    const char *key, const char *fmt, va_list ap) PRINTFLIKE(5, 0);
static void cfg_err(struct cfg_ctx *x, const config_setting_t *s, const char *key,
    const char *fmt, ...) PRINTFLIKE(4, 5);
static void cfg_warn(struct cfg_ctx *x, const config_setting_t *s, const char *key,
    const char *fmt, ...) PRINTFLIKE(4, 5);

/* Formats "FILE:LINE: KEY: message"; a key that has no setting of its own
 * is reported at its group (s), or at line 1 for the top level. */
static void
cfg_msgv(struct cfg_ctx *x, struct errlist *to, const config_setting_t *s, const char *key,
    const char *fmt, va_list ap)
{
	const char *file = x->name;
	unsigned line = 1;
	char *msg;

	if (s != NULL && config_setting_source_line(s) > 0) {
		line = config_setting_source_line(s);
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
	}
	msg = xvprintf(fmt, ap);
	errlist_add(to, "%s:%u: %s: %s", file, line, key, msg);
	free(msg);
}

static void
cfg_err(struct cfg_ctx *x, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_msgv(x, x->errs, s, key, fmt, ap);
	va_end(ap);
}

static void
cfg_warn(struct cfg_ctx *x, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (x->warns == NULL)
		return;
	va_start(ap, fmt);
	cfg_msgv(x, x->warns, s, key, fmt, ap);
	va_end(ap);
}

static const struct cfg_key *
cfg_find(const char *key)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(cfg_keys[i].key, key) == 0)
			return &cfg_keys[i];
	return NULL;
}

static size_t
cfg_index(const char *key)
{
	const struct cfg_key *k = cfg_find(key);

	return k ? (size_t)(k - cfg_keys) : NKEYS;
}

static const config_setting_t *
cfg_seen(const struct cfg_ctx *x, const char *key)
{
	size_t i = cfg_index(key);

	return i < NKEYS ? x->seen[i] : NULL;
}

static void *
cfg_slot(struct cfg_ctx *x, const struct cfg_key *k, struct config_table *t)
{
	switch (k->base) {
	case BASE_CONFIG:
		return (char *)x->c + k->off;
	case BASE_SOURCES:
		return (char *)&x->src + k->off;
	case BASE_TABLE:
		return (char *)t + k->off;
	default:
		return NULL;
	}
}

static char *
cfg_join(const char *prefix, const char *name)
{
	if (prefix == NULL || *prefix == '\0')
		return xstrdup(name);
	return xprintf("%s.%s", prefix, name);
}

/* Edit distance of two short names, to suggest the key that was meant. */
static size_t
cfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 64 || lb >= 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(*prev));
	}
	return prev[lb];
}

/* The closest known key in the same group, NULL if none is close. */
static const char *
cfg_suggest(const char *group, const char *name)
{
	size_t glen = group ? strlen(group) : 0, best = 3;
	const char *found = NULL;

	for (size_t i = 0; i < NKEYS; i++) {
		const char *k = cfg_keys[i].key, *leaf;
		size_t d;

		if (glen > 0 && (strncmp(k, group, glen) != 0 || k[glen] != '.'))
			continue;
		leaf = k + (glen ? glen + 1 : 0);
		if (strchr(leaf, '.') != NULL)
			continue;
		d = cfg_distance(leaf, name);
		if (d < best) {
			best = d;
			found = leaf;
		}
	}
	return found;
}

static void
cfg_unknown(struct cfg_ctx *x, const config_setting_t *s, const char *group, const char *dkey)
{
	const char *hint = cfg_suggest(group, config_setting_name(s));

	if (hint != NULL)
		cfg_err(x, s, dkey, "unknown key; did you mean \"%s\"?", hint);
	else
		cfg_err(x, s, dkey, "unknown key; see imperai-snowd.conf(5) for the known keys");
}

static const char *
cfg_type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		return "a group { }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ]";
	case CONFIG_TYPE_LIST:
		return "a list ( )";
	default:
		return "nothing";
	}
}

static const char *
cfg_line_start(const char *text, unsigned line)
{
	const char *p = text;

	for (unsigned i = 1; i < line && p != NULL; i++) {
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return p;
}

/* libconfig 1.5 silently wraps integers beyond 32 bits; re-read the literal
 * from the source to see the value the user actually wrote.  Returns 0 and
 * the literal, or -ERANGE when it does not fit, or -ENOENT if not found. */
static int
cfg_int_literal(const struct cfg_ctx *x, const config_setting_t *s, long long *out)
{
	const char *name = config_setting_name(s), *line, *p, *end;
	size_t nlen;

	if (x->text == NULL || name == NULL || config_setting_source_file(s) != NULL)
		return -ENOENT;
	p = line = cfg_line_start(x->text, config_setting_source_line(s));
	end = p ? p + strcspn(p, "\n") : NULL;
	nlen = strlen(name);
	for (; p != NULL && (p = strstr(p, name)) != NULL && p < end; p += nlen) {
		const char *v = p + nlen;
		char *e;

		if (p > line && (isalnum((unsigned char)p[-1]) || strchr("_-*", p[-1])))
			continue;	/* the tail of a longer name */
		v += strspn(v, " \t");
		if (*v != '=' && *v != ':')
			continue;
		v++;
		errno = 0;
		*out = strtoll(v, &e, 0);
		if (e == v)
			return -ENOENT;
		return errno == ERANGE ? -ERANGE : 0;
	}
	return -ENOENT;
}

static void
cfg_range_msg(const struct cfg_key *k, char *buf, size_t len)
{
	if (k->type == CFG_INT0)
		snprintf(buf, len, "0 (unlimited) or an integer from %lld to %lld", k->min, k->max);
	else
		snprintf(buf, len, "an integer from %lld to %lld", k->min, k->max);
}

static int
cfg_get_int(struct cfg_ctx *x, const struct cfg_key *k, const config_setting_t *s,
    const char *dkey, long long *out)
{
	char range[96];
	long long v, lit;
	int rc;

	cfg_range_msg(k, range, sizeof(range));
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64) {
		cfg_err(x, s, dkey, "must be %s, got %s", range, cfg_type_name(s));
		return -EINVAL;
	}
	v = config_setting_get_int64(s);
	rc = cfg_int_literal(x, s, &lit);
	if (rc == -ERANGE || (rc == 0 && lit != v)) {
		cfg_err(x, s, dkey, "must be %s; the value given is far out of range", range);
		return -EINVAL;
	}
	if ((v < k->min || v > k->max) && !(k->type == CFG_INT0 && v == 0)) {
		cfg_err(x, s, dkey, "must be %s, got %lld", range, v);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int
cfg_fieldpath_ok(const char *s)
{
	return util_token_ok(s, ".") && s[0] != '.' && s[strlen(s) - 1] != '.' &&
	    strstr(s, "..") == NULL;
}

static int
cfg_cred_ok(const char *s)
{
	if (*s == '\0' || *s == '.' || strlen(s) > 255)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && strchr("_.-", *p) == NULL)
			return 0;
	return 1;
}

static int
cfg_text_ok(const char *s)
{
	for (const char *p = s; *p; p++)
		if (iscntrl((unsigned char)*p))
			return 0;
	return 1;
}

/* http(s) URL without query or fragment; plain http only to loopback. */
static int
cfg_check_url(struct cfg_ctx *x, const config_setting_t *s, const char *dkey, const char *v)
{
	char *scheme = NULL, *host = NULL;
	int rc = -EINVAL;

	if (!cfg_text_ok(v) || strchr(v, ' ') || strpbrk(v, "?#") ||
	    util_url_split(v, &scheme, &host, NULL, NULL) < 0) {
		cfg_err(x, s, dkey, "must be a URL like https://host.example.com, got \"%s\"",
		    cfg_text_ok(v) && strchr(v, '@') == NULL ? v : "(not shown)");
		goto out;
	}
	if (strcmp(scheme, "http") == 0 && !util_host_is_loopback(host)) {
		cfg_err(x, s, dkey, "TLS is required for %s: use https://; plain http is "
		    "allowed only for a loopback host (127.0.0.0/8, ::1, localhost)", host);
		goto out;
	}
	rc = 0;
out:
	free(scheme);
	free(host);
	return rc;
}

/* Any scheme libcurl takes for a proxy; the value may carry credentials, so
 * it is never repeated in a message. */
static int
cfg_check_proxy(struct cfg_ctx *x, const config_setting_t *s, const char *dkey, const char *v)
{
	static const char *const schemes[] = {
		"http://", "https://", "socks4://", "socks4a://", "socks5://", "socks5h://",
	};

	for (size_t i = 0; i < ARRAY_SIZE(schemes); i++) {
		size_t n = strlen(schemes[i]);
		if (strncmp(v, schemes[i], n) == 0 && v[n] != '\0' && v[n] != '/' &&
		    cfg_text_ok(v) && strchr(v, ' ') == NULL)
			return 0;
	}
	cfg_err(x, s, dkey, "must be a proxy URL like http://proxy.example.com:3128 "
	    "(schemes http, https, socks4, socks4a, socks5, socks5h)");
	return -EINVAL;
}

static int
cfg_check_string(struct cfg_ctx *x, const struct cfg_key *k, const config_setting_t *s,
    const char *dkey, const char *v)
{
	switch (k->type) {
	case CFG_NAME:
		if (util_token_ok(v, ""))
			return 0;
		cfg_err(x, s, dkey, "must be a ServiceNow name of a-z, 0-9 and _, got \"%s\"",
		    cfg_text_ok(v) ? v : "(control characters)");
		return -EINVAL;
	case CFG_FIELDPATH:
		if (cfg_fieldpath_ok(v))
			return 0;
		cfg_err(x, s, dkey, "must be a field name of a-z, 0-9 and _, dot-walked "
		    "with '.', got \"%s\"", cfg_text_ok(v) ? v : "(control characters)");
		return -EINVAL;
	case CFG_CRED:
		if (cfg_cred_ok(v))
			return 0;
		cfg_err(x, s, dkey, "must be a credential name of letters, digits, '_', '.' "
		    "and '-' (not starting with '.')");
		return -EINVAL;
	case CFG_URL:
		return cfg_check_url(x, s, dkey, v);
	case CFG_PROXY:
		return cfg_check_proxy(x, s, dkey, v);
	default:
		if (cfg_text_ok(v))
			return 0;
		cfg_err(x, s, dkey, "must not contain control characters");
		return -EINVAL;
	}
}

static int
cfg_get_enum(struct cfg_ctx *x, const struct cfg_key *k, const config_setting_t *s,
    const char *dkey, int *out)
{
	const char *v = config_setting_get_string(s);
	struct buf names;

	for (const struct cfg_choice *ch = k->choices; v != NULL && ch->name; ch++)
		if (strcmp(ch->name, v) == 0) {
			*out = ch->value;
			return 0;
		}
	buf_init(&names);
	for (const struct cfg_choice *ch = k->choices; ch->name; ch++)
		buf_addf(&names, "%s%s", ch == k->choices ? "" : ", ", ch->name);
	if (v == NULL)
		cfg_err(x, s, dkey, "must be one of %s (a string), got %s", names.data,
		    cfg_type_name(s));
	else
		cfg_err(x, s, dkey, "must be one of %s, got \"%s\"", names.data,
		    cfg_text_ok(v) ? v : "(control characters)");
	buf_free(&names);
	return -EINVAL;
}

static void
cfg_store_string(struct cfg_ctx *x, const struct cfg_key *k, const config_setting_t *s,
    const char *dkey, char **slot)
{
	const char *v = config_setting_get_string(s);

	if (v == NULL) {
		cfg_err(x, s, dkey, "must be a string, got %s", cfg_type_name(s));
		return;
	}
	if (*v == '\0') {
		if (k->flags & F_EMPTY_OK)
			str_replace(slot, NULL);
		else
			cfg_err(x, s, dkey, "must not be empty");
		return;
	}
	if (cfg_check_string(x, k, s, dkey, v) == 0)
		str_replace(slot, v);
}

static int
cfg_host_ok(const char *h)
{
	if (*h == '[')
		return h[strlen(h) - 1] == ']' && strspn(h + 1, "0123456789abcdefABCDEF:.") ==
		    strlen(h) - 2;
	return *h != '\0' && *h != '.' && *h != '-' &&
	    strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
	    strlen(h);
}

static void
cfg_store_hosts(struct cfg_ctx *x, const config_setting_t *s, const char *dkey)
{
	struct config *c = x->c;
	int n = config_setting_length(s);

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		cfg_err(x, s, dkey, "must be a list of host names like [ \"verify.imper.ai\" ], "
		    "got %s", cfg_type_name(s));
		return;
	}
	if (n == 0) {
		cfg_err(x, s, dkey, "must list at least one host; remove it to use the host "
		    "of imperai.api_url");
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *h = config_setting_get_string(e);

		if (h == NULL || !cfg_host_ok(h)) {
			cfg_err(x, e, dkey, "element %d must be a host name like "
			    "\"verify.imper.ai\" (no scheme, no path)", i);
			continue;
		}
		c->imperai.link_hosts = xreallocarray(c->imperai.link_hosts,
		    c->imperai.nlink_hosts + 1, sizeof(char *));
		c->imperai.link_hosts[c->imperai.nlink_hosts] = xstrdup(h);
		for (char *p = c->imperai.link_hosts[c->imperai.nlink_hosts]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		c->imperai.nlink_hosts++;
	}
}

/* Stores one scalar setting after checking its type and range. */
static void
cfg_store(struct cfg_ctx *x, const struct cfg_key *k, const config_setting_t *s,
    const char *dkey, void *slot)
{
	long long v;
	int e;

	switch (k->type) {
	case CFG_INT:
	case CFG_INT0:
		if (cfg_get_int(x, k, s, dkey, &v) == 0)
			*(int *)slot = (int)v;
		break;
	case CFG_MIB:
		if (cfg_get_int(x, k, s, dkey, &v) == 0)
			*(uint64_t *)slot = (uint64_t)v * MIB;
		break;
	case CFG_ENUM:
		if (cfg_get_enum(x, k, s, dkey, &e) == 0)
			*(int *)slot = e;
		break;
	case CFG_HOSTS:
		cfg_store_hosts(x, s, dkey);
		break;
	default:
		cfg_store_string(x, k, s, dkey, slot);
		break;
	}
}

static void
cfg_default(const struct cfg_key *k, void *slot)
{
	switch (k->type) {
	case CFG_INT:
	case CFG_INT0:
		*(int *)slot = atoi(k->def);
		break;
	case CFG_MIB:
		*(uint64_t *)slot = strtoull(k->def, NULL, 10) * MIB;
		break;
	case CFG_ENUM:
		for (const struct cfg_choice *ch = k->choices; ch->name; ch++)
			if (strcmp(ch->name, k->def) == 0)
				*(int *)slot = ch->value;
		break;
	default:
		str_replace(slot, *k->def == '\0' && (k->flags & F_EMPTY_OK) ? NULL : k->def);
		break;
	}
}

static void
cfg_defaults(struct cfg_ctx *x, enum cfg_base base, struct config_table *t)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (cfg_keys[i].base == base && cfg_keys[i].def != NULL)
			cfg_default(&cfg_keys[i], cfg_slot(x, &cfg_keys[i], t));
}

static void cfg_walk(struct cfg_ctx *x, const config_setting_t *g, const char *skey,
    const char *dkey, struct config_table *t);

static const char *
cfg_default_requester(const char *table)
{
	if (strcmp(table, "sc_req_item") == 0)
		return "requested_for";
	if (strcmp(table, "sc_task") == 0)
		return "request_item.requested_for";
	return "caller_id";
}

/* One { name = ...; } entry of servicenow.tables. */
static void
cfg_table(struct cfg_ctx *x, const config_setting_t *e, const char *dkey)
{
	struct config *c = x->c;
	struct config_table *t;

	if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
		cfg_err(x, e, dkey, "must be a group like { name = \"incident\"; }, got %s",
		    cfg_type_name(e));
		return;
	}
	c->snow.tables = xreallocarray(c->snow.tables, c->snow.ntables + 1, sizeof(*t));
	t = &c->snow.tables[c->snow.ntables++];
	memset(t, 0, sizeof(*t));
	cfg_defaults(x, BASE_TABLE, t);
	cfg_walk(x, e, "servicenow.tables", dkey, t);
	if (t->name == NULL && config_setting_get_member(e, "name") == NULL)
		cfg_err(x, e, dkey, "name is required, e.g. name = \"incident\";");
	if (t->requester_field == NULL && t->name != NULL)
		t->requester_field = xstrdup(cfg_default_requester(t->name));
}

static void
cfg_tables_dups(struct cfg_ctx *x, const config_setting_t *list)
{
	const struct config *c = x->c;

	for (size_t i = 0; i < c->snow.ntables; i++)
		for (size_t j = 0; j < i; j++) {
			const config_setting_t *ei, *ej;
			char *dkey;

			if (!str_eq(c->snow.tables[i].name, c->snow.tables[j].name) ||
			    c->snow.tables[i].name == NULL)
				continue;
			ei = config_setting_get_elem(list, (unsigned)i);
			ej = config_setting_get_elem(list, (unsigned)j);
			dkey = xprintf("servicenow.tables[%zu].name", i);
			cfg_err(x, config_setting_get_member(ei, "name"), dkey,
			    "table \"%s\" is listed twice (first at line %u); keep one entry",
			    c->snow.tables[i].name, config_setting_source_line(ej));
			free(dkey);
			break;
		}
}

static void
cfg_tables(struct cfg_ctx *x, const config_setting_t *s, const char *dkey)
{
	int n = config_setting_length(s);

	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		cfg_err(x, s, dkey, "must be a list of groups like ( { name = \"incident\"; } ), "
		    "got %s", cfg_type_name(s));
		return;
	}
	if (n == 0) {
		cfg_err(x, s, dkey, "must list at least one table, e.g. ( { name = \"incident\"; } )");
		return;
	}
	for (int i = 0; i < n; i++) {
		char *ekey = xprintf("%s[%d]", dkey, i);
		cfg_table(x, config_setting_get_elem(s, (unsigned)i), ekey);
		free(ekey);
	}
	/* Entries that were not groups are not stored: index only when aligned. */
	if (x->c->snow.ntables == (size_t)n)
		cfg_tables_dups(x, s);
}

static void
cfg_setting(struct cfg_ctx *x, const struct cfg_key *k, const config_setting_t *s,
    const char *skey, const char *dkey, struct config_table *t)
{
	if (k->base != BASE_TABLE)
		x->seen[k - cfg_keys] = s;
	switch (k->type) {
	case CFG_GROUP:
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			cfg_err(x, s, dkey, "must be a group { ... }, got %s", cfg_type_name(s));
		else
			cfg_walk(x, s, skey, dkey, t);
		break;
	case CFG_TABLES:
		cfg_tables(x, s, dkey);
		break;
	default:
		cfg_store(x, k, s, dkey, cfg_slot(x, k, t));
		break;
	}
}

/* Checks every member of group g against the schema keys under skey. */
static void
cfg_walk(struct cfg_ctx *x, const config_setting_t *g, const char *skey, const char *dkey,
    struct config_table *t)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		char *sk = cfg_join(skey, config_setting_name(s));
		char *dk = cfg_join(dkey, config_setting_name(s));
		const struct cfg_key *k = cfg_find(sk);

		if (k == NULL || (k->base == BASE_TABLE) != (t != NULL))
			cfg_unknown(x, s, skey, dk);
		else
			cfg_setting(x, k, s, sk, dk, t);
		free(sk);
		free(dk);
	}
}

/* The setting of the group holding key, for errors about a missing key. */
static const config_setting_t *
cfg_parent_setting(const struct cfg_ctx *x, const char *key, int *parent_missing)
{
	const char *dot = strrchr(key, '.');
	const config_setting_t *p;
	char *parent;
	size_t i;

	*parent_missing = 0;
	if (dot == NULL)
		return NULL;
	parent = xstrndup(key, (size_t)(dot - key));
	i = cfg_index(parent);
	free(parent);
	p = i < NKEYS ? x->seen[i] : NULL;
	*parent_missing = p == NULL || config_setting_type(p) != CONFIG_TYPE_GROUP;
	return p;
}

static void
cfg_check_required(struct cfg_ctx *x)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct cfg_key *k = &cfg_keys[i];
		const config_setting_t *p;
		int parent_missing;

		if (!(k->flags & F_REQUIRED) || k->base == BASE_TABLE || x->seen[i] != NULL)
			continue;
		p = cfg_parent_setting(x, k->key, &parent_missing);
		/* A missing group is reported once, not once per key in it. */
		if (parent_missing && strchr(k->key, '.') != NULL)
			continue;
		if (k->type == CFG_GROUP)
			cfg_err(x, p, k->key, "required group missing (%s); add %s: { ... }; "
			    "see imperai-snowd.conf(5)", k->desc, k->key);
		else
			cfg_err(x, p, k->key, "required key missing; add it: %s", k->desc);
	}
}

static int
cfg_group_present(const struct cfg_ctx *x, const char *key)
{
	const config_setting_t *g = cfg_seen(x, key);

	return g != NULL && config_setting_type(g) == CONFIG_TYPE_GROUP;
}

/* Exactly one of *_file and *_credential when needed, none otherwise. */
static int
cfg_secret_source(struct cfg_ctx *x, const char *group, const char *what, int needed,
    const char *unused_why, const char **path_key)
{
	char *fk = xprintf("%s.%s_file", group, what), *ck = xprintf("%s.%s_credential", group, what);
	const config_setting_t *fs = cfg_seen(x, fk), *cs = cfg_seen(x, ck);
	int rc = -EINVAL;

	if (!cfg_group_present(x, group))
		;	/* the missing group is reported on its own */
	else if (!needed) {
		if (fs != NULL || cs != NULL)
			cfg_err(x, fs ? fs : cs, fs ? fk : ck, "%s", unused_why);
	} else if (fs != NULL && cs != NULL)
		cfg_err(x, cs, ck, "%s is set too: keep exactly one of %s_file and %s_credential",
		    fk, what, what);
	else if (fs == NULL && cs == NULL)
		cfg_err(x, cfg_seen(x, group), group, "set one of %s_file or %s_credential",
		    what, what);
	else {
		*path_key = cfg_find(fs ? fk : ck)->key;
		rc = 0;
	}
	free(fk);
	free(ck);
	return rc;
}

static void
cfg_secret_missing(struct cfg_ctx *x, const config_setting_t *s, const char *key,
    const char *path, int from_systemd)
{
	const char *name = s ? config_setting_get_string(s) : NULL;

	if (!(x->flags & CONFIG_SECRETS_OPTIONAL)) {
		if (from_systemd)
			cfg_err(x, s, key, "%s not found: the daemon cannot start without it; "
			    "pass it with LoadCredential=%s:/path/to/secret in the unit", path, name);
		else
			cfg_err(x, s, key, "%s not found: the daemon cannot start without it; "
			    "create it with: install -m 600 /dev/null %s && edit it", path, path);
	} else if (from_systemd)
		cfg_warn(x, s, key, "%s not found: the daemon cannot start without it; "
		    "pass it with LoadCredential=%s:/path/to/secret in the unit", path, name);
	else
		cfg_warn(x, s, key, "%s not found: the daemon cannot start without it; "
		    "create it with: install -m 600 /dev/null %s && edit it", path, path);
}

/* Reads one secret from where key (a *_file or *_credential) points. */
static void
cfg_secret_read(struct cfg_ctx *x, const char *key, char **dst)
{
	const struct cfg_key *k = cfg_find(key);
	const config_setting_t *s = x->seen[k - cfg_keys];
	const char *v = *(char **)cfg_slot(x, k, NULL);
	char *path = NULL, *cause = NULL;
	struct stat st;
	int from_systemd = 0, rc;

	if (v == NULL || (x->flags & CONFIG_NO_SECRETS))
		return;		/* invalid value (already reported), or not wanted */
	if (k->type == CFG_CRED) {
		path = sysd_credential_path(v);
		from_systemd = path != NULL;
		if (path == NULL)
			path = xprintf("%s/%s", x->c->credentials_dir, v);
	} else
		path = xstrdup(v);
	if (stat(path, &st) < 0 && errno == ENOENT)
		cfg_secret_missing(x, s, key, path, from_systemd);
	else if ((rc = secret_read_file(path, dst, &cause)) == -EACCES)
		cfg_err(x, s, key, "%s: this needs the secrets, which only root reads "
		    "(the daemon gets them from systemd): run it as root", cause);
	else if (rc < 0)
		cfg_err(x, s, key, "%s", cause);
	free(cause);
	free(path);
}

static void
cfg_check_secrets(struct cfg_ctx *x)
{
	struct config *c = x->c;
	int oauth = c->snow.auth == CONFIG_AUTH_OAUTH;
	int pw = !oauth || c->snow.grant == CONFIG_GRANT_PASSWORD;
	const char *key = NULL;

	if (cfg_secret_source(x, "servicenow", "password", pw,
	    "not used with oauth_grant = \"client_credentials\"; remove it", &key) == 0)
		cfg_secret_read(x, key, &c->snow.password);
	if (cfg_secret_source(x, "servicenow", "client_secret", oauth,
	    "only used with auth = \"oauth\"; remove it or set auth", &key) == 0)
		cfg_secret_read(x, key, &c->snow.client_secret);
	if (cfg_secret_source(x, "imperai", "api_key", 1, "", &key) == 0)
		cfg_secret_read(x, key, &c->imperai.api_key);
}

static void
cfg_check_auth(struct cfg_ctx *x)
{
	const struct config *c = x->c;
	const config_setting_t *g = cfg_seen(x, "servicenow"), *s;
	int oauth = c->snow.auth == CONFIG_AUTH_OAUTH;
	int pw = !oauth || c->snow.grant == CONFIG_GRANT_PASSWORD;

	if (!cfg_group_present(x, "servicenow"))
		return;
	if (!oauth && (s = cfg_seen(x, "servicenow.oauth_grant")) != NULL)
		cfg_err(x, s, "servicenow.oauth_grant", "only used with auth = \"oauth\"; "
		    "remove it or set auth");
	if (!oauth && (s = cfg_seen(x, "servicenow.client_id")) != NULL)
		cfg_err(x, s, "servicenow.client_id", "only used with auth = \"oauth\"; "
		    "remove it or set auth");
	if (oauth && cfg_seen(x, "servicenow.client_id") == NULL)
		cfg_err(x, g, "servicenow.client_id", "required with auth = \"oauth\": "
		    "the client id of the OAuth application registry entry");
	if (pw && cfg_seen(x, "servicenow.user") == NULL)
		cfg_err(x, g, "servicenow.user", "required with %s: the integration "
		    "user's name, e.g. user = \"imperai.integration\";",
		    oauth ? "oauth_grant = \"password\"" : "auth = \"basic\"");
	if (!pw && (s = cfg_seen(x, "servicenow.user")) != NULL)
		cfg_err(x, s, "servicenow.user", "not used with oauth_grant = "
		    "\"client_credentials\"; remove it");
}

static void
cfg_check_bands(struct cfg_ctx *x)
{
	const struct config *c = x->c;
	const config_setting_t *s = cfg_seen(x, "imperai.risk_bands.verified_max");

	if (c->imperai.risk_verified_max < c->imperai.risk_medium_max)
		return;
	if (s == NULL)
		s = cfg_seen(x, "imperai.risk_bands.medium_max");
	cfg_err(x, s, "imperai.risk_bands", "verified_max (%d) must be below medium_max (%d)",
	    c->imperai.risk_verified_max, c->imperai.risk_medium_max);
}

static char *
cfg_url_host(const char *url)
{
	char *host = NULL;

	if (url == NULL || util_url_split(url, NULL, &host, NULL, NULL) < 0)
		return NULL;
	return host;
}

static void
cfg_strip_slashes(char *url)
{
	size_t n = url ? strlen(url) : 0;

	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
}

static void
cfg_computed_defaults(struct cfg_ctx *x)
{
	struct config *c = x->c;
	char *host;

	cfg_strip_slashes(c->snow.instance);
	cfg_strip_slashes(c->imperai.api_url);
	if (c->imperai.instance_name == NULL)
		c->imperai.instance_name = cfg_url_host(c->snow.instance);
	if (c->imperai.nlink_hosts == 0 && cfg_seen(x, "imperai.link_hosts") == NULL &&
	    (host = cfg_url_host(c->imperai.api_url)) != NULL) {
		c->imperai.link_hosts = xcalloc(1, sizeof(char *));
		c->imperai.link_hosts[0] = host;
		c->imperai.nlink_hosts = 1;
	}
}

static char *
cfg_absolute(const char *dir, const char *path)
{
	char cwd[4096];

	if (path[0] == '/')
		return xstrdup(path);
	if (dir != NULL)
		return xprintf("%s/%s", dir, path);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return xstrdup(path);
	return xprintf("%s/%s", cwd, path);
}

static void
cfg_resolve_paths(struct cfg_ctx *x)
{
	for (size_t i = 0; i < NKEYS; i++) {
		char **slot;
		char *abs;

		if (cfg_keys[i].type != CFG_PATH)
			continue;
		slot = cfg_slot(x, &cfg_keys[i], NULL);
		if (*slot == NULL)
			continue;
		abs = cfg_absolute(x->dir, *slot);
		free(*slot);
		*slot = abs;
	}
}

static void
cfg_check_ca(struct cfg_ctx *x, const char *key, const char *path)
{
	if (path != NULL && access(path, R_OK) < 0)
		cfg_err(x, cfg_seen(x, key), key, "%s: %s; give a readable PEM CA bundle, or "
		    "remove the key to use the system store", path, strerror(errno));
}

/* The shipped file's placeholders ("https://YOUR-INSTANCE.service-now.com"):
 * the unit must not start until the admin has replaced them. */
#define CFG_PLACEHOLDER "YOUR-"

static void
cfg_check_placeholders(struct cfg_ctx *x)
{
	for (size_t i = 0; i < NKEYS && !(x->flags & CONFIG_PLACEHOLDERS_OK); i++) {
		const config_setting_t *s = x->seen[i];
		const char *v;

		if (s == NULL || cfg_keys[i].base == BASE_TABLE ||
		    config_setting_type(s) != CONFIG_TYPE_STRING)
			continue;
		v = config_setting_get_string(s);
		if (v != NULL && strstr(v, CFG_PLACEHOLDER) != NULL)
			cfg_err(x, s, cfg_keys[i].key, "\"%s\" is a placeholder of the shipped "
			    "file: put your own value here (%s)", v, cfg_keys[i].desc);
	}
}

static void
cfg_check(struct cfg_ctx *x)
{
	cfg_check_placeholders(x);
	cfg_check_required(x);
	cfg_check_auth(x);
	cfg_check_bands(x);
	cfg_computed_defaults(x);
	cfg_resolve_paths(x);
	cfg_check_ca(x, "servicenow.ca_file", x->c->snow.http.ca_file);
	cfg_check_ca(x, "imperai.ca_file", x->c->imperai.http.ca_file);
	cfg_check_secrets(x);
}

static void
cfg_sources_free(struct cfg_sources *src)
{
	free(src->password_file);
	free(src->password_credential);
	free(src->client_secret_file);
	free(src->client_secret_credential);
	free(src->api_key_file);
	free(src->api_key_credential);
}

int
config_parse(const char *text, const char *name, const char *dir, int flags,
    struct config **out, struct errlist *errs, struct errlist *warnings)
{
	struct cfg_ctx x;
	struct errlist local = { NULL, 0 };
	config_t lc;
	int rc = -EINVAL;

	memset(&x, 0, sizeof(x));
	x.c = xcalloc(1, sizeof(*x.c));
	x.c->path = xstrdup(name);
	x.name = name;
	x.dir = dir;
	x.text = text;
	x.flags = flags;
	x.errs = errs ? errs : &local;
	x.warns = warnings;
	x.nerrs0 = x.errs->n;
	*out = NULL;
	config_init(&lc);
	if (dir != NULL)
		config_set_include_dir(&lc, dir);
	if (!config_read_string(&lc, text)) {
		/* libconfig says only "syntax error": say what it expects. */
		errlist_add(x.errs, "%s:%d: %s: libconfig expects name = value; with strings in "
		    "double quotes (\"...\"), numbers bare, groups as name: { ... };, lists as "
		    "( ... ) and arrays as [ ... ]; see imperai-snowd.conf(5)",
		    config_error_file(&lc) ? config_error_file(&lc) : name, config_error_line(&lc),
		    config_error_text(&lc));
		goto out;
	}
	x.root = config_root_setting(&lc);
	cfg_defaults(&x, BASE_CONFIG, NULL);
	cfg_walk(&x, x.root, NULL, NULL, NULL);
	cfg_check(&x);
	if (x.errs->n == x.nerrs0) {
		*out = x.c;
		x.c = NULL;
		rc = 0;
	}
out:
	config_destroy(&lc);
	cfg_sources_free(&x.src);
	config_free(x.c);
	errlist_free(&local);
	return rc;
}

static int
cfg_read_text(const char *path, char **text, struct errlist *errs)
{
	char *cause = NULL;
	size_t len;
	int rc;

	if ((rc = util_read_file(path, CONFIG_MAX_SIZE, text, &len, &cause)) < 0) {
		errlist_add(errs, "%s: %s", path, cause);
		free(cause);
		return rc;
	}
	if (strlen(*text) != len) {
		errlist_add(errs, "%s: contains a NUL byte; is it a text file?", path);
		free(*text);
		*text = NULL;
		return -EINVAL;
	}
	return 0;
}

/* The absolute directory of path, against which relative paths resolve. */
static char *
cfg_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
	char *abs;

	if (slash == path)
		str_replace(&dir, "/");
	if (dir[0] == '/')
		return dir;
	abs = cfg_absolute(NULL, dir);
	free(dir);
	return abs;
}

int
config_load(const char *path, int flags, struct config **out, struct errlist *errs,
    struct errlist *warnings)
{
	struct errlist local = { NULL, 0 };
	char *text = NULL, *dir = NULL;
	int rc;

	*out = NULL;
	rc = cfg_read_text(path, &text, errs ? errs : &local);
	if (rc < 0)
		goto out;
	dir = cfg_dir_of(path);
	rc = config_parse(text, path, dir, flags, out, errs, warnings);
	if (rc == 0 && path[0] != '/') {
		free((*out)->path);
		(*out)->path = cfg_absolute(NULL, path);
	}
out:
	free(text);
	free(dir);
	errlist_free(&local);
	return rc;
}

static void
config_table_free(struct config_table *t)
{
	free(t->name);
	free(t->field);
	free(t->requester_field);
}

static void
config_http_free(struct config_http *h)
{
	free(h->ca_file);
	free(h->proxy);
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->snow.instance);
	free(c->snow.user);
	secret_free(c->snow.password);
	free(c->snow.client_id);
	secret_free(c->snow.client_secret);
	for (size_t i = 0; i < c->snow.ntables; i++)
		config_table_free(&c->snow.tables[i]);
	free(c->snow.tables);
	config_http_free(&c->snow.http);
	free(c->imperai.api_url);
	secret_free(c->imperai.api_key);
	free(c->imperai.instance_name);
	for (size_t i = 0; i < c->imperai.nlink_hosts; i++)
		free(c->imperai.link_hosts[i]);
	free(c->imperai.link_hosts);
	config_http_free(&c->imperai.http);
	free(c->state_dir);
	free(c->flows_file);
	free(c->credentials_dir);
	free(c->metrics_file);
	free(c);
}

const struct config_table *
config_table(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->snow.ntables; i++)
		if (str_eq(c->snow.tables[i].name, name))
			return &c->snow.tables[i];
	return NULL;
}

static const char *
cfg_doc_type(const struct cfg_key *k)
{
	static const char *const names[] = {
		[CFG_GROUP] = "group", [CFG_TABLES] = "list of groups", [CFG_INT] = "integer",
		[CFG_INT0] = "integer", [CFG_MIB] = "integer", [CFG_STR] = "string",
		[CFG_NAME] = "name", [CFG_FIELDPATH] = "field", [CFG_URL] = "URL",
		[CFG_PROXY] = "URL", [CFG_PATH] = "path", [CFG_CRED] = "credential",
		[CFG_ENUM] = "choice", [CFG_HOSTS] = "list of strings",
	};

	return names[k->type];
}

int
config_schema_row(size_t i, struct config_key_doc *out)
{
	const struct cfg_key *k;

	if (i >= NKEYS)
		return -ENOENT;
	k = &cfg_keys[i];
	memset(out, 0, sizeof(*out));
	out->key = k->key;
	out->type = cfg_doc_type(k);
	out->def = k->def ? k->def : "";
	out->desc = k->desc;
	out->required = (k->flags & F_REQUIRED) != 0;
	if (k->type == CFG_INT || k->type == CFG_MIB)
		snprintf(out->range, sizeof(out->range), "%lld..%lld", k->min, k->max);
	else if (k->type == CFG_INT0)
		snprintf(out->range, sizeof(out->range), "0, %lld..%lld", k->min, k->max);
	return 0;
}
