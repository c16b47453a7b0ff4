/* imperai-snowctl: the operator's view of imperai-snowd.  It reads the
 * daemon's LMDB state read-only while the daemon runs, and changes things
 * only by queueing requests the daemon takes on its next step. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "ctl.h"
#include "store.h"
#include "util.h"

struct ctl_cmd {
	const char	*name;
	int		(*fn)(struct ctl *c, int argc, char **argv);
	const char	*usage;
	const char	*help;
};

static const struct ctl_cmd ctl_cmds[] = {
	{ "list", ctl_cmd_list,
	  "list [--status S] [--risk R] [--category C] [--agent NAME] [--ticket NUMBER]\n"
	  "            [--since WHEN] [--until WHEN] [--sort time|ticket|risk|status] [--reverse]\n"
	  "            [--limit N] [--json | --csv]",
	  "the verification requests, newest first" },
	{ "show", ctl_cmd_show, "show [--json] TICKET|VERIFICATION_ID",
	  "one ticket: verification, history, links, pending writes" },
	{ "status", ctl_cmd_status, "status [--json]",
	  "is the daemon running and healthy (exit 0 ok, 2 not running, 3 attention)" },
	{ "check-config", ctl_cmd_check_config, "check-config [--probe]",
	  "validate settings and policy; --probe also tries ServiceNow and imper.ai" },
	{ "resync", ctl_cmd_resync, "resync TICKET",
	  "ask the daemon to read a ticket from ServiceNow again" },
	{ "retry", ctl_cmd_retry, "retry [SEQ]",
	  "ask the daemon to retry parked writes (all, or outbox entry SEQ)" },
	{ "audit", ctl_cmd_audit, "audit verify | audit export [--since WHEN]",
	  "check the audit log's hash chain, or print it as JSON lines" },
	{ "setup", ctl_cmd_setup, "setup [--table TABLE]... [--create-field [--dry-run]\n"
	  "            --admin-user USER --admin-password-file FILE]",
	  "check what ServiceNow lacks for the integration; create the field" },
	{ "rebuild", ctl_cmd_rebuild, "rebuild [--force]",
	  "rebuild a lost state directory from ServiceNow and imper.ai" },
};

static void
ctl_usage(FILE *f)
{
	fprintf(f, "usage: imperai-snowctl [-c FILE | -S DIR] COMMAND [ARGS]\n"
	    "       imperai-snowctl -V | -h | help [COMMAND]\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
		fprintf(f, "  %-13s %s\n", ctl_cmds[i].name, ctl_cmds[i].help);
	fprintf(f, "\noptions (also accepted after the command):\n"
	    "  -c, --config FILE     settings file (default %s)\n"
	    "  -S, --state-dir DIR   the daemon's state directory (default: the settings'\n"
	    "                        state.directory)\n"
	    "  -V, --version         print the version\n"
	    "  -h, --help            this help; COMMAND --help for a command's\n"
	    "\nSee imperai-snowctl(1).\n", CONFIG_DEFAULT_PATH);
}

static const struct ctl_cmd *
ctl_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
		if (strcmp(ctl_cmds[i].name, name) == 0)
			return &ctl_cmds[i];
	return NULL;
}

int
ctl_usage_error(const char *name)
{
	const struct ctl_cmd *cmd = ctl_find(name);

	fprintf(stderr, "usage: imperai-snowctl [-c FILE | -S DIR] %s\n", cmd ? cmd->usage : name);
	return CTL_EX_USAGE;
}

int
ctl_common_opt(struct ctl *c, int ch, const char *arg)
{
	switch (ch) {
	case 'c':
		c->config_path = arg;
		c->config_given = 1;
		return 1;
	case 'S':
		c->state_dir = arg;
		return 1;
	default:
		return 0;
	}
}

int
ctl_flag_opts(struct ctl *c, int argc, char **argv, const char *cmd, const char *name,
    int letter, int *flag, int nargs)
{
	const struct option opts[] = {
		CTL_COMMON_LONG,
		{ name, no_argument, NULL, letter },
		{ NULL, 0, NULL, 0 },
	};
	char shortopts[] = CTL_COMMON_SHORT "?";
	int ch;

	shortopts[sizeof(shortopts) - 2] = (char)letter;
	optind = 0;
	while ((ch = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		if (ctl_common_opt(c, ch, optarg))
			continue;
		if (ch == 'h')
			return ctl_help(cmd);
		if (ch != letter)
			return ctl_usage_error(cmd);
		*flag = 1;
	}
	if (optind + nargs != argc)
		return ctl_usage_error(cmd);
	return -1;
}

static void
ctl_print_errors(const struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "%s\n", e->msg[i]);
}

/* Settings are needed for the state directory unless -S names it; with
 * -S and -c both, the settings still give the bands and intervals. */
static int
ctl_load_config(struct ctl *c)
{
	struct errlist errs = { 0 };
	int rc;

	if (!c->config_given && c->state_dir != NULL)
		return 0;
	/* These commands read the store only: the secrets stay unopened, and
	 * the shipped placeholders do not matter (a fresh install). */
	rc = config_load(c->config_path, CONFIG_NO_SECRETS | CONFIG_PLACEHOLDERS_OK, &c->cfg,
	    &errs, NULL);
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl: cannot use the settings in %s:\n", c->config_path);
		ctl_print_errors(&errs);
		if (errs.n == 0)
			fprintf(stderr, "%s: %s\n", c->config_path, strerror(-rc));
		if (!c->config_given)
			fprintf(stderr, "(name another file with -c FILE, or the state directory "
			    "with -S DIR)\n");
		errlist_free(&errs);
		return CTL_EX_ERROR;
	}
	errlist_free(&errs);
	c->risk_verified_max = c->cfg->imperai.risk_verified_max;
	c->risk_medium_max = c->cfg->imperai.risk_medium_max;
	if (c->state_dir == NULL)
		c->state_dir = c->cfg->state_dir;
	return 0;
}

/* A state directory that exists but holds no state yet: a fresh install. */
static int
ctl_state_is_new(const struct ctl *c, int rc)
{
	struct stat st;

	return rc == -ENOENT && stat(c->state_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

int
ctl_open(struct ctl *c, int flags)
{
	char *cause = NULL;
	int rc;

	if ((rc = ctl_load_config(c)) != 0)
		return rc;
	rc = store_open(c->state_dir, 0, (flags & CTL_OPEN_WRITE) ? STORE_NOLOCK : STORE_RDONLY,
	    &c->st, &cause);
	if (rc < 0 && (flags & CTL_OPEN_MAYBE_NEW) && ctl_state_is_new(c, rc)) {
		free(cause);
		return CTL_EX_NOT_RUNNING;
	}
	if (rc < 0) {
		fprintf(stderr, "imperai-snowctl: %s\n", cause ? cause : store_strerror(rc));
		free(cause);
		return CTL_EX_ERROR;
	}
	return 0;
}

void
ctl_close(struct ctl *c)
{
	if (c->st)
		store_close(c->st);
	config_free(c->cfg);
	c->st = NULL;
	c->cfg = NULL;
}

int
ctl_help(const char *name)
{
	const struct ctl_cmd *cmd = name ? ctl_find(name) : NULL;

	if (name == NULL) {
		ctl_usage(stdout);
		return CTL_EX_OK;
	}
	if (cmd == NULL) {
		fprintf(stderr, "imperai-snowctl: no such command: %s\n", name);
		ctl_usage(stderr);
		return CTL_EX_USAGE;
	}
	printf("usage: imperai-snowctl [-c FILE | -S DIR] %s\n  %s\n", cmd->usage, cmd->help);
	return CTL_EX_OK;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c = { .config_path = CONFIG_DEFAULT_PATH, .risk_verified_max = 3,
	    .risk_medium_max = 6 };
	const struct ctl_cmd *cmd;
	int ch, rc;

	c.now = (int64_t)time(NULL);
	/* '+': stop at the command name; its own options follow it. */
	while ((ch = getopt_long(argc, argv, "+c:S:Vh", opts, NULL)) != -1) {
		if (ctl_common_opt(&c, ch, optarg))
			continue;
		switch (ch) {
		case 'V':
			printf("imperai-snowctl %s\n", PACKAGE_VERSION);
			return CTL_EX_OK;
		case 'h':
			ctl_usage(stdout);
			return CTL_EX_OK;
		default:
			ctl_usage(stderr);
			return CTL_EX_USAGE;
		}
	}
	if (optind >= argc) {
		ctl_usage(stderr);
		return CTL_EX_USAGE;
	}
	if (strcmp(argv[optind], "help") == 0)
		return ctl_help(optind + 1 < argc ? argv[optind + 1] : NULL);
	if ((cmd = ctl_find(argv[optind])) == NULL) {
		fprintf(stderr, "imperai-snowctl: no such command: %s\n", argv[optind]);
		ctl_usage(stderr);
		return CTL_EX_USAGE;
	}
	rc = cmd->fn(&c, argc - optind, argv + optind);
	ctl_close(&c);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "imperai-snowctl: cannot write the output: %s\n", strerror(errno));
		return CTL_EX_ERROR;
	}
	return rc;
}
