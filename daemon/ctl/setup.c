/* ctl-setup: `imperai-snowctl setup`, first-time setup of ServiceNow.  It
 * checks what the instance lacks for the integration: the verification
 * field on each table (an HTML field), the integration user's roles and
 * its time zone; with --create-field and an administrator's credential
 * given for this run only, it creates the missing fields through the
 * Table API, and says what the administrator must still do by hand. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "snow.h"
#include "util.h"

#define SETUP_DEFAULT_FIELD	"u_imperai_verification"

struct setup_table {
	const char	*name;
	const char	*field;
	int		 missing;	/* the field does not exist */
	int		 watched;	/* in servicenow.tables */
};

struct setup {
	struct config		*cfg;
	struct ctl_net		 net;
	struct config		 acfg;		/* the admin's borrowed settings */
	char			*admin_password;
	const char		*admin_user;
	const char		*admin_file;
	struct setup_table	*tables;
	size_t			 ntables;
	int			 create;
	int			 dry_run;
	char			*user_sys_id;
	char			*time_zone;
	size_t			 nmissing;	/* things still missing at the end */
	size_t			 nunchecked;
	int			 unreachable;
};

static void
setup_say(struct setup *s, const char *what, const char *fmt, ...) PRINTFLIKE(3, 4);
static void
setup_say(struct setup *s, const char *what, const char *fmt, ...)
{
	va_list ap;
	char *raw, *safe;

	va_start(ap, fmt);
	raw = xvprintf(fmt, ap);
	va_end(ap);
	safe = ctl_printable(raw);
	printf("%-10s %s\n", what, safe);
	if (strcmp(what, "missing:") == 0)
		s->nmissing++;
	else if (strcmp(what, "unchecked:") == 0)
		s->nunchecked++;
	free(raw);
	free(safe);
}

/* A failure to get an answer at all is "unreachable" (69); a refusal of
 * one query is a permission the user lacks. */
static int
setup_is_transport(int err)
{
	return err == -EAGAIN || err == -ECANCELED || err == -EFBIG || err == -EPROTO ||
	    err == -EACCES;
}

static const char *
setup_user(const struct setup *s)
{
	return s->cfg->snow.user ? s->cfg->snow.user : "(the OAuth client's user)";
}

static void
setup_add_table(struct setup *s, const char *name)
{
	const struct config_table *ct = config_table(s->cfg, name);

	for (size_t i = 0; i < s->ntables; i++)
		if (strcmp(s->tables[i].name, name) == 0)
			return;
	s->tables = xreallocarray(s->tables, s->ntables + 1, sizeof(*s->tables));
	memset(&s->tables[s->ntables], 0, sizeof(*s->tables));
	s->tables[s->ntables].name = name;
	s->tables[s->ntables].field = ct && ct->field ? ct->field : SETUP_DEFAULT_FIELD;
	s->tables[s->ntables].watched = ct != NULL;
	s->ntables++;
}

/* The integration user's record: its sys_id and time zone. */
static int
setup_check_user(struct setup *s)
{
	static const char *const fields[] = { "sys_id", "user_name", "time_zone" };
	struct snow_list l;
	char *q, *cause = NULL;
	int rc;

	if (s->cfg->snow.user == NULL) {
		setup_say(s, "unchecked:", "roles and time zone: the OAuth client_credentials "
		    "grant names no user; check the OAuth application's user by hand");
		return 0;
	}
	q = xprintf("user_name=%s", s->cfg->snow.user);
	rc = ctl_snow_list(&s->net, s->net.snow, "sys_user", q, fields, ARRAY_SIZE(fields), 1,
	    &l, &cause);
	free(q);
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl setup: cannot log in to %s as %s: %s\n",
		    s->cfg->snow.instance, setup_user(s), cause);
		free(cause);
		s->unreachable = 1;
		return rc;
	}
	if (l.n == 0)
		setup_say(s, "unchecked:", "user %s cannot read its own sys_user record: roles "
		    "and time zone not checked", setup_user(s));
	else {
		s->user_sys_id = xstrdup(l.v[0].sys_id);
		s->time_zone = xstrdup(snow_record_get(&l.v[0], "time_zone") ?
		    snow_record_get(&l.v[0], "time_zone") : "");
	}
	snow_list_free(&l);
	return 0;
}

/* Encoded-query dates are read in the session user's time zone; the
 * watermark query writes UTC. */
static void
setup_check_tz(struct setup *s)
{
	if (s->time_zone == NULL)
		return;
	if (ctl_setup_tz_is_utc(s->time_zone))
		setup_say(s, "ok:", "user %s works in time zone %s (UTC): the poll's date "
		    "queries mean what they say", setup_user(s), s->time_zone);
	else
		setup_say(s, "missing:", "user %s has time zone %s: ServiceNow reads the dates in "
		    "encoded queries in the session user's time zone, and the daemon's watermark "
		    "query is in UTC, so updates would be missed or read twice; set the user's "
		    "Time zone to GMT (User Administration > Users > %s > Time zone)",
		    setup_user(s), *s->time_zone ? s->time_zone : "(empty: the instance default, "
		    "glide.sys.default.tz)", setup_user(s));
}

/* Roles are read as the admin when given (the integration user may not
 * be allowed to read sys_user_has_role). */
static void
setup_check_roles(struct setup *s)
{
	static const char *const fields[] = { "sys_id", "role", "role.name" };
	struct snow_client *who = s->net.admin ? s->net.admin : s->net.snow;
	struct snow_list l;
	char **roles, *q, *cause = NULL;
	const char *r;
	int rc;

	if (s->user_sys_id == NULL)
		return;
	q = xprintf("user=%s^state=active", s->user_sys_id);
	rc = ctl_snow_list(&s->net, who, "sys_user_has_role", q, fields, ARRAY_SIZE(fields),
	    1000, &l, &cause);
	free(q);
	if (rc < 0) {
		setup_say(s, "unchecked:", "roles of %s: sys_user_has_role is not readable (%s): "
		    "run setup with --admin-user, or check by hand that %s has the itil role",
		    setup_user(s), cause, setup_user(s));
		free(cause);
		return;
	}
	roles = xcalloc(l.n ? l.n : 1, sizeof(*roles));
	for (size_t i = 0; i < l.n; i++)
		roles[i] = (char *)snow_record_get(&l.v[i], "role.name");
	for (size_t i = 0; i < s->ntables; i++) {
		const char *t = s->tables[i].name;

		if ((r = ctl_setup_role_for(t, roles, l.n)) != NULL)
			setup_say(s, "ok:", "user %s has role %s: reads and writes %s and may "
			    "resolve and close its records", setup_user(s), r, t);
		else
			setup_say(s, "missing:", "user %s has no role that writes %s (itil): grant "
			    "it the itil role (User Administration > Users > %s > Roles)",
			    setup_user(s), t, setup_user(s));
	}
	free(roles);
	snow_list_free(&l);
}

static int
setup_field_query(struct setup *s, struct snow_client *who, const struct setup_table *t,
    struct snow_list *l, char **cause)
{
	static const char *const fields[] = { "sys_id", "element", "internal_type",
	    "internal_type.name", "max_length" };
	char *q = xprintf("name=%s^element=%s", t->name, t->field);
	int rc;

	rc = ctl_snow_list(&s->net, who, "sys_dictionary", q, fields, ARRAY_SIZE(fields), 1, l,
	    cause);
	free(q);
	return rc;
}

/* The requester of the newest ticket must be readable: the daemon never
 * verifies an identity it cannot read. */
static void
setup_check_requester(struct setup *s, const struct setup_table *t)
{
	const struct config_table *ct = config_table(s->cfg, t->name);
	char *fields[CTL_REQUESTER_NFIELDS], *q, *msg = NULL, *cause = NULL;
	struct snow_list l;
	int rc;

	if (ct == NULL || ct->requester_field == NULL)
		return;
	q = ctl_requester_query(ct->requester_field, fields);
	rc = ctl_snow_list(&s->net, s->net.snow, t->name, q, (const char *const *)fields,
	    CTL_REQUESTER_NFIELDS, 1, &l, &cause);
	free(q);
	for (size_t i = 0; i < CTL_REQUESTER_NFIELDS; i++)
		free(fields[i]);
	if (rc < 0) {
		setup_say(s, "unchecked:", "requester of %s tickets: %s", t->name, cause);
		free(cause);
		return;
	}
	rc = ctl_requester_verdict(t->name, ct->requester_field, setup_user(s), &l, &msg);
	/* no ticket yet is the normal first-time setup: a note, not a gap */
	setup_say(s, rc < 0 ? "missing:" : rc == 0 ? "note:" : "ok:", "%s", msg);
	free(msg);
	snow_list_free(&l);
}

static int
setup_check_field(struct setup *s, struct setup_table *t)
{
	struct snow_list l;
	const char *type;
	char *cause = NULL;
	int rc;

	if ((rc = setup_field_query(s, s->net.snow, t, &l, &cause)) < 0) {
		if (setup_is_transport(rc)) {
			fprintf(stderr, "imperai-snowctl setup: %s\n", cause);
			s->unreachable = 1;
		} else
			setup_say(s, "unchecked:", "%s.%s: sys_dictionary is not readable by %s (%s): "
			    "give the user read access to sys_dictionary", t->name, t->field,
			    setup_user(s), cause);
		free(cause);
		return rc;
	}
	type = l.n ? ctl_setup_field_type(&l.v[0]) : NULL;
	if (l.n == 0) {
		t->missing = 1;
		if (!s->create)
			setup_say(s, "missing:", "field %s.%s does not exist: run setup "
			    "--create-field with an admin credential, or create it by hand (an HTML "
			    "field, label \"imper.ai Verification\")", t->name, t->field);
	} else if (!str_eq(type, "html"))
		setup_say(s, "missing:", "field %s.%s is of type %s, not html: change its type "
		    "by hand, or name another field in servicenow.tables", t->name, t->field,
		    type ? type : "(unknown)");
	else
		setup_say(s, "ok:", "field %s.%s exists and is an HTML field", t->name, t->field);
	snow_list_free(&l);
	return 0;
}

static void
setup_todo(struct setup *s, const struct setup_table *t)
{
	printf("todo:      by hand, as an administrator: add \"imper.ai Verification\" to the "
	    "form layout of %s (open a record, Configure > Form Layout) so agents see it\n",
	    t->name);
	printf("todo:      if ACLs restrict fields of %s, allow %s to read and write %s.%s "
	    "(Security Admin > Access Control)\n", t->name, setup_user(s), t->name, t->field);
}

static void
setup_create_one(struct setup *s, struct setup_table *t)
{
	char *body = ctl_setup_field_body(t->name, t->field), *cause = NULL;
	struct snow_record rec;
	struct snow_list l;
	int rc;

	if (s->dry_run) {
		printf("would:     create field %s.%s as %s: POST %s/api/now/table/sys_dictionary "
		    "%s\n", t->name, t->field, s->admin_user ? s->admin_user : "the admin",
		    s->cfg->snow.instance, body);
		s->nmissing++;
		free(body);
		return;
	}
	rc = ctl_snow_insert(&s->net, s->net.admin, "sys_dictionary", body, &rec, &cause);
	free(body);
	if (rc == 0) {
		snow_record_free(&rec);
		rc = setup_field_query(s, s->net.admin, t, &l, &cause);
	}
	if (rc == 0 && l.n > 0 && str_eq(ctl_setup_field_type(&l.v[0]), "html")) {
		setup_say(s, "created:", "field %s.%s (HTML, label \"imper.ai Verification\", max "
		    "length 65000)", t->name, t->field);
		setup_todo(s, t);
		t->missing = 0;
	} else
		setup_say(s, "missing:", "field %s.%s could not be created as %s: %s", t->name,
		    t->field, s->admin_user, rc < 0 ? cause : "it does not read back as an HTML "
		    "field");
	if (rc == 0)
		snow_list_free(&l);
	free(cause);
}

static int
setup_admin(struct setup *s)
{
	char *cause = NULL;
	int rc;

	if (s->admin_user == NULL)
		return 0;
	rc = secret_read_file(s->admin_file, &s->admin_password, &cause);
	if (rc == 0)
		rc = ctl_net_admin(&s->net, &s->acfg, s->cfg, s->admin_user, s->admin_password,
		    &cause);
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl setup: --admin-password-file %s: %s\n",
		    s->admin_file, cause ? cause : strerror(-rc));
		free(cause);
		return CTL_EX_USAGE;
	}
	return 0;
}

static int
setup_run(struct setup *s)
{
	char *cause = NULL;
	int rc;

	if (ctl_net_open(&s->net, s->cfg, 0, &cause) < 0) {
		fprintf(stderr, "imperai-snowctl setup: %s\n", cause);
		free(cause);
		return CTL_EX_CONFIG;
	}
	if ((rc = setup_admin(s)) != 0)
		return rc;
	if (setup_check_user(s) < 0)
		return CTL_EX_UNAVAILABLE;
	for (size_t i = 0; i < s->ntables && !s->unreachable; i++)
		setup_check_field(s, &s->tables[i]);
	if (s->unreachable)
		return CTL_EX_UNAVAILABLE;
	for (size_t i = 0; i < s->ntables; i++)
		if (s->tables[i].watched)
			setup_check_requester(s, &s->tables[i]);
	setup_check_roles(s);
	setup_check_tz(s);
	for (size_t i = 0; i < s->ntables; i++)
		if (s->tables[i].missing && s->create)
			setup_create_one(s, &s->tables[i]);
	if (s->nmissing == 0 && s->nunchecked == 0) {
		printf("setup OK: nothing missing\n");
		return CTL_EX_OK;
	}
	printf("setup: %zu missing, %zu unchecked\n", s->nmissing, s->nunchecked);
	return CTL_EX_ERROR;
}

static int
setup_load(struct setup *s, const char *path)
{
	struct errlist errs = { 0 };
	int rc;

	rc = config_load(path, 0, &s->cfg, &errs, NULL);
	if (rc < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		if (errs.n == 0)
			fprintf(stderr, "%s: %s\n", path, strerror(-rc));
	}
	errlist_free(&errs);
	return rc;
}

static int
setup_opts(struct ctl *c, struct setup *s, int argc, char **argv, char ***tables, size_t *nt)
{
	static const struct option opts[] = {
		CTL_COMMON_LONG,
		{ "table", required_argument, NULL, 't' },
		{ "create-field", no_argument, NULL, 'C' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "admin-user", required_argument, NULL, 'u' },
		{ "admin-password-file", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORT "t:Cnu:p:", opts, NULL)) != -1) {
		if (ctl_common_opt(c, ch, optarg))
			continue;
		if (ch == 'h')
			return ctl_help("setup") == 0 ? -1 : CTL_EX_USAGE;
		if (ch == 't') {
			*tables = xreallocarray(*tables, *nt + 1, sizeof(**tables));
			(*tables)[(*nt)++] = optarg;
		} else if (ch == 'C')
			s->create = 1;
		else if (ch == 'n')
			s->dry_run = 1;
		else if (ch == 'u')
			s->admin_user = optarg;
		else if (ch == 'p')
			s->admin_file = optarg;
		else
			return ctl_usage_error("setup");
	}
	if (optind != argc)
		return ctl_usage_error("setup");
	if ((s->admin_user == NULL) != (s->admin_file == NULL) ||
	    (s->create && !s->dry_run && s->admin_user == NULL)) {
		fprintf(stderr, "imperai-snowctl setup: --create-field needs --admin-user and "
		    "--admin-password-file (an administrator's credential, used for this run "
		    "only and never stored)\n");
		return CTL_EX_USAGE;
	}
	return 0;
}

static void
setup_free(struct setup *s)
{
	ctl_net_close(&s->net);
	secret_free(s->admin_password);
	free(s->tables);
	free(s->user_sys_id);
	free(s->time_zone);
	config_free(s->cfg);
}

int
ctl_cmd_setup(struct ctl *c, int argc, char **argv)
{
	struct setup s = { 0 };
	char **tables = NULL;
	size_t nt = 0;
	int rc;

	if ((rc = setup_opts(c, &s, argc, argv, &tables, &nt)) != 0) {
		free(tables);
		return rc < 0 ? CTL_EX_OK : rc;
	}
	if (setup_load(&s, c->config_path) < 0) {
		free(tables);
		return CTL_EX_CONFIG;
	}
	for (size_t i = 0; i < nt; i++)
		setup_add_table(&s, tables[i]);
	for (size_t i = 0; nt == 0 && i < s.cfg->snow.ntables; i++)
		setup_add_table(&s, s.cfg->snow.tables[i].name);
	free(tables);
	rc = setup_run(&s);
	setup_free(&s);
	return rc;
}
