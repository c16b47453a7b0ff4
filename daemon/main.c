/* imperai-snowd: options, signals, systemd notification, reload, and the
 * run loop's life.  The work itself is in loop.c. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "flows.h"
#include "log.h"
#include "loop.h"
#include "refs.h"
#include "sysd.h"
#include "util.h"

static volatile sig_atomic_t main_stop;
static volatile sig_atomic_t main_reload;
static int main_debug;

static void
main_usage(FILE *f)
{
	fprintf(f, "usage: imperai-snowd [-fndV] [-c FILE]\n"
	    "  -c FILE  settings file (default %s)\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -n       check settings and policy, print the result and exit\n"
	    "  -d       debug: -f and log level debug\n"
	    "  -V       print the version and exit\n", CONFIG_DEFAULT_PATH);
}

static void
main_signal(int sig)
{
	if (sig == SIGHUP)
		main_reload = 1;
	else
		main_stop = 1;
}

static void
main_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = main_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

static void
main_print_errors(FILE *f, const char *prefix, const struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(f, "%s%s\n", prefix, e->msg[i]);
}

/* Loads settings and policy; every problem is appended to errs. */
static int
main_load(const char *path, int flags, struct config **cfg, struct flows **flows,
    struct errlist *errs, struct errlist *warns)
{
	int rc;

	*cfg = NULL;
	*flows = NULL;
	rc = config_load(path, flags, cfg, errs, warns);
	if (rc < 0)
		return rc;
	rc = flows_load((*cfg)->flows_file, flows, errs);
	if (rc < 0) {
		config_free(*cfg);
		*cfg = NULL;
	}
	return rc;
}

/* Settings and policy, with the policy's references resolved to sys_ids
 * (asks ServiceNow): -EINVAL for a bad reference, -EAGAIN unreachable. */
static int
main_load_resolved(const char *path, struct config **cfg, struct flows **flows,
    struct errlist *errs, struct errlist *warns)
{
	int rc = main_load(path, 0, cfg, flows, errs, warns);

	if (rc == 0 && (rc = refs_resolve(*cfg, *flows, errs)) < 0) {
		flows_free(*flows);
		config_free(*cfg);
		*flows = NULL;
		*cfg = NULL;
	}
	return rc;
}

static int
main_check(const char *path)
{
	struct errlist errs = { 0 }, warns = { 0 };
	struct config *cfg;
	struct flows *flows;
	int rc;

	rc = main_load(path, CONFIG_SECRETS_OPTIONAL, &cfg, &flows, &errs, &warns);
	main_print_errors(stderr, "warning: ", &warns);
	if (rc < 0) {
		main_print_errors(stderr, "", &errs);
		fprintf(stderr, "configuration has %zu error%s\n", errs.n, errs.n == 1 ? "" : "s");
		rc = EX_CONFIG;
	} else {
		printf("configuration OK\n");
		flows_free(flows);
		config_free(cfg);
		rc = EX_OK;
	}
	errlist_free(&errs);
	errlist_free(&warns);
	return rc;
}

static void
main_reload_config(struct loop *l, const char *path)
{
	struct errlist errs = { 0 }, warns = { 0 };
	struct config *cfg;
	struct flows *flows;

	sysd_notifyf("RELOADING=1\nMONOTONIC_USEC=%lld", (long long)loop_now_ms() * 1000);
	if (main_load_resolved(path, &cfg, &flows, &errs, &warns) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_kv(LOG_LVL_ERR, "reload refused", "error", errs.msg[i], NULL);
		log_kv(LOG_LVL_WARN, "reload failed: keeping the running settings and policy",
		    "file", path, "errors", errs.n == 1 ? "1" : "several", NULL);
	} else {
		for (size_t i = 0; i < warns.n; i++)
			log_kv(LOG_LVL_WARN, "reload warning", "warning", warns.msg[i], NULL);
		if (!main_debug)
			log_set_level((enum log_level)cfg->log_level);
		loop_reload(l, cfg, flows);
		log_kv(LOG_LVL_NOTICE, "reloaded", "file", path, NULL);
	}
	errlist_free(&errs);
	errlist_free(&warns);
	sysd_notify("READY=1");
}

/* Feeds the watchdog at half its interval, and only while the loop makes
 * progress: a wedged loop gets restarted by systemd. */
static void
main_watchdog(struct loop *l, uint64_t wd_usec, int64_t *last_ping)
{
	int64_t now = loop_now_ms(), half = (int64_t)(wd_usec / 2000);

	if (wd_usec == 0 || now - *last_ping < half)
		return;
	if (now - loop_last_progress(l) > (int64_t)(wd_usec / 1000))
		return;
	sysd_notify("WATCHDOG=1");
	*last_ping = now;
}

static int
main_run(const char *path)
{
	struct errlist errs = { 0 }, warns = { 0 };
	struct config *cfg;
	struct flows *flows;
	struct loop *l = NULL;
	uint64_t wd = sysd_watchdog_usec();
	int64_t last_ping = 0, last_status = 0;
	char *cause = NULL, status[256];
	int rc;

	if ((rc = main_load_resolved(path, &cfg, &flows, &errs, &warns)) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_kv(LOG_LVL_ERR, "configuration error", "error", errs.msg[i], NULL);
		errlist_free(&errs);
		errlist_free(&warns);
		/* unreachable: temporary, systemd restarts it */
		return rc == -EAGAIN ? EX_TEMPFAIL : EX_CONFIG;
	}
	for (size_t i = 0; i < warns.n; i++)
		log_kv(LOG_LVL_WARN, "configuration warning", "warning", warns.msg[i], NULL);
	errlist_free(&warns);
	if (!main_debug)
		log_set_level((enum log_level)cfg->log_level);
	rc = loop_new(cfg, flows, &l, &cause);
	if (rc < 0) {
		log_kv(LOG_LVL_ERR, "cannot start", "error", cause, NULL);
		free(cause);
		return rc == -EINVAL ? EX_CONFIG : rc == -EBUSY ? EX_TEMPFAIL :
		    rc == -EPROTO ? EX_DATAERR : EX_CANTCREAT;
	}
	log_kv(LOG_LVL_NOTICE, "started", "version", PACKAGE_VERSION, "config", path, NULL);
	sysd_notify("READY=1");
	while (!main_stop) {
		if (main_reload) {
			main_reload = 0;
			main_reload_config(l, path);
		}
		rc = loop_step(l, 250);
		if (rc < 0) {
			log_kv(LOG_LVL_ERR, "stopping: the state store cannot be written",
			    "error", strerror(-rc), NULL);
			break;
		}
		main_watchdog(l, wd, &last_ping);
		if (loop_now_ms() - last_status > 5000) {
			loop_status(l, status, sizeof(status));
			sysd_notifyf("STATUS=%s", status);
			last_status = loop_now_ms();
		}
	}
	sysd_notify("STOPPING=1");
	log_kv(LOG_LVL_NOTICE, "stopping", NULL);
	loop_free(l);
	log_kv(LOG_LVL_NOTICE, "stopped", NULL);
	return rc < 0 ? EX_IOERR : EX_OK;
}

static void
main_detach(void)
{
	pid_t pid = fork();

	if (pid < 0)
		fatalx(EX_OSERR, "fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	if (chdir("/") < 0)
		fatalx(EX_OSERR, "chdir /: %s", strerror(errno));
	if (freopen("/dev/null", "r", stdin) == NULL || freopen("/dev/null", "w", stdout) == NULL ||
	    freopen("/dev/null", "w", stderr) == NULL)
		fatalx(EX_OSERR, "cannot redirect standard streams to /dev/null");
}

int
main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	int ch, foreground = 0, check = 0, debug = 0;
	struct rlimit nocore = { 0, 0 };

	while ((ch = getopt(argc, argv, "c:fndVh")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'n':
			check = 1;
			break;
		case 'd':
			debug = foreground = 1;
			break;
		case 'V':
			printf("imperai-snowd %s\n", PACKAGE_VERSION);
			return EX_OK;
		case 'h':
			main_usage(stdout);
			return EX_OK;
		default:
			main_usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		main_usage(stderr);
		return EX_USAGE;
	}
	if (check)
		return main_check(path);
	/* Secrets are in memory from here on: no core files, no ptrace by others. */
	setrlimit(RLIMIT_CORE, &nocore);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (!foreground && getenv("NOTIFY_SOCKET") == NULL && getenv("JOURNAL_STREAM") == NULL)
		main_detach();
	else
		foreground = 1;
	log_init("imperai-snowd", LOG_TARGET_AUTO, foreground);
	if (debug) {
		main_debug = 1;
		log_set_level(LOG_LVL_DEBUG);
	}
	main_signals();
	return main_run(path);
}
