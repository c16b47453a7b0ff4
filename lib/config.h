/* config: the daemon's settings, read from a libconfig file.  Every key is
 * checked for type and range, unknown keys are errors, and every error
 * names file, line and key.  The defaults live in one table in config.c;
 * man/imperai-snowd.conf.5 documents the same table. */
#ifndef IMPERAI_CONFIG_H
#define IMPERAI_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CONFIG_DEFAULT_PATH "/etc/imperai-snow/imperai-snowd.conf"

enum config_auth {
	CONFIG_AUTH_BASIC,
	CONFIG_AUTH_OAUTH,
};

enum config_grant {
	CONFIG_GRANT_PASSWORD,
	CONFIG_GRANT_CLIENT_CREDENTIALS,
};

struct config_table {
	char	*name;			/* "incident" */
	char	*field;			/* verification field, default u_imperai_verification */
	char	*requester_field;	/* caller_id (incident), requested_for (sc_req_item) */
};

struct config_http {
	int	 concurrency;		/* requests in flight */
	int	 connect_timeout;	/* seconds */
	int	 timeout;		/* seconds, whole request */
	int	 max_retries;
	char	*ca_file;		/* NULL: system store */
	char	*proxy;			/* NULL: none (environment ignored) */
	int	 request_budget;	/* requests per hour, 0 = unlimited */
};

struct config {
	char			*path;

	struct {
		char			*instance;	/* https://example.service-now.com */
		enum config_auth	 auth;
		enum config_grant	 grant;
		char			*user;
		char			*password;	/* secret memory */
		char			*client_id;
		char			*client_secret;	/* secret memory */
		struct config_table	*tables;
		size_t			 ntables;
		int			 page_size;
		int			 poll_interval;	/* seconds */
		int			 poll_overlap;	/* seconds */
		int			 sweep_interval;	/* seconds between sweeps, 0: off */
		int			 parked_retry;	/* seconds between releases of parked writes */
		int			 write_attempts;	/* tries before a write is parked */
		int			 write_settle;	/* seconds before a lost write is read back */
		struct config_http	 http;
	} snow;

	struct {
		char			*api_url;	/* https://api.imper.ai */
		char			*api_key;	/* secret memory */
		char			*instance_name;	/* sent as ticket.instance */
		int			 poll_interval;
		int			 feed_limit;
		int			 risk_verified_max;	/* score <= this: Verified */
		int			 risk_medium_max;	/* score <= this: Medium, above: High */
		char			**link_hosts;	/* hosts allowed in links; default: api_url's */
		size_t			 nlink_hosts;
		struct config_http	 http;
	} imperai;

	char		*state_dir;
	uint64_t	 map_size;		/* bytes, initial LMDB map */
	char		*flows_file;
	int		 log_level;		/* enum log_level */
	char		*credentials_dir;	/* fallback for *_credential */
	char		*metrics_file;		/* NULL: none */
	int		 metrics_interval;
};

/* Secrets (passwords, client secret, API key) come from a file
 * (*_file, mode 0600 or stricter) or a systemd credential (*_credential:
 * $CREDENTIALS_DIRECTORY/NAME, else CONFIG_CREDENTIALS_FALLBACK/NAME).
 * With CONFIG_SECRETS_OPTIONAL a secret whose source does not exist is a
 * warning, not an error (imperai-snowd -n on a host without credentials);
 * an insecure or empty secret is always an error.  With CONFIG_NO_SECRETS
 * no secret file is opened or even looked at (the read-only commands of
 * imperai-snowctl, run by users who may not read the credentials): the
 * sources are still checked, and the secrets in struct config stay NULL. */
#define CONFIG_CREDENTIALS_FALLBACK "/etc/imperai-snow/credentials"
enum config_flags {
	CONFIG_SECRETS_OPTIONAL = 1 << 0,
	CONFIG_NO_SECRETS = 1 << 1,
	/* The shipped placeholders (YOUR-...) are no error: imperai-snowctl
	 * status and list work on a fresh install, before it is configured. */
	CONFIG_PLACEHOLDERS_OK = 1 << 2,
};

/* Loads and validates path.  On failure returns -EINVAL (or -errno for a
 * file that cannot be read) and appends every problem found to errs, each
 * as "FILE:LINE: KEY: what is wrong; what to do".  warnings may be NULL. */
int config_load(const char *path, int flags, struct config **out, struct errlist *errs,
    struct errlist *warnings);
/* Same from memory; name is used in messages and relative paths are
 * resolved against dir (NULL: the current directory). */
int config_parse(const char *text, const char *name, const char *dir, int flags,
    struct config **out, struct errlist *errs, struct errlist *warnings);
void config_free(struct config *c);
/* Looks up a watched table; NULL if not watched. */
const struct config_table *config_table(const struct config *c, const char *name);

/* One row of the settings schema, as man/imperai-snowd.conf.5 documents it
 * (imperai-snowctl and the tests read it). */
struct config_key_doc {
	const char	*key;		/* "servicenow.page_size"; list entries: "servicenow.tables.name" */
	const char	*type;		/* "integer", "string", "path", "URL", ... */
	char		 range[32];	/* "1..10000", "" when not a number */
	const char	*def;		/* "" when none or computed (see desc) */
	const char	*desc;
	int		 required;
};
/* Row i of the schema; -ENOENT past the last row. */
int config_schema_row(size_t i, struct config_key_doc *out);

#endif
