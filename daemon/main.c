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
#include <sys/wait.h>
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
	fprintf(f, "usage: imperai-snowd [-fndVh] [-c FILE] [--strict]\n"
	    "  -c FILE   settings file (default %s)\n"
	    "  -f        stay in the foreground, log to stderr\n"
	    "  -n        check settings and policy, print the result and exit\n"
	    "  --strict  with -n: a missing secret fails the check too (exit 78)\n"
	    "  -d        debug: -f and log level debug\n"
	    "  -V        print the version and exit\n"
	    "  -h        this help\n", CONFIG_DEFAULT_PATH);
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
 * (asks ServiceNow): -EINVAL for a bad reference, -EAGAIN unreachable (with
 * keep_unreachable, the settings and policy are kept, the reference marked
 * unresolved). */
static int
main_load_resolved(const char *path, struct config **cfg, struct flows **flows,
    struct errlist *errs, struct errlist *warns, int keep_unreachable)
{
	int rc = main_load(path, 0, cfg, flows, errs, warns);

	if (rc == 0 && (rc = refs_resolve(*cfg, *flows, errs)) < 0 &&
	    !(rc == -EAGAIN && keep_unreachable)) {
		flows_free(*flows);
		config_free(*cfg);
		*flows = NULL;
		*cfg = NULL;
	}
	return rc;
}

/* -n: errors exit 78; a missing secret is a warning ("OK, but cannot
 * start"), and exits 78 too under --strict (the unit's ExecStartPre=). */
static int
main_check(const char *path, int strict)
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
		if (warns.n > 0)
			printf("configuration OK, but imperai-snowd cannot start: %zu secret%s "
			    "missing (above)\n", warns.n, warns.n == 1 ? " is" : "s are");
		else
			printf("configuration OK\n");
		flows_free(flows);
		config_free(cfg);
		rc = strict && warns.n > 0 ? EX_CONFIG : EX_OK;
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
	if (main_load_resolved(path, &cfg, &flows, &errs, &warns, 0) < 0) {
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

/* Settings and policy for a start, references resolved; every problem is
 * logged (and, while starting detached, shown on stderr too).  A reference
 * ServiceNow could not be asked about does not stop the start: the loop
 * looks it up once ServiceNow answers, and until then no on_fail writes it. */
static int
main_load_start(const char *path, struct config **cfg, struct flows **flows)
{
	struct errlist errs = { 0 }, warns = { 0 };
	int rc;

	if ((rc = main_load_resolved(path, cfg, flows, &errs, &warns, 1)) == -EAGAIN) {
		for (size_t i = 0; i < errs.n; i++)
			log_kv(LOG_LVL_WARN, "starting without a reference: it is looked up once "
			    "ServiceNow answers; until then on_fail reassigns nothing",
			    "error", errs.msg[i], NULL);
		errlist_free(&errs);
		rc = 0;
	}
	for (size_t i = 0; i < errs.n; i++)
		log_kv(LOG_LVL_ERR, "configuration error", "error", errs.msg[i], NULL);
	for (size_t i = 0; i < warns.n; i++)
		log_kv(LOG_LVL_WARN, "configuration warning", "warning", warns.msg[i], NULL);
	errlist_free(&errs);
	errlist_free(&warns);
	return rc;
}

/* Tells whoever waits that the daemon runs: systemd, or the parent that
 * a detaching start left waiting on ready_fd. */
static void
main_ready(int *ready_fd)
{
	char ok = 0;

	sysd_notify("READY=1");
	if (*ready_fd < 0)
		return;
	if (write(*ready_fd, &ok, 1) != 1)
		log_kv(LOG_LVL_WARN, "cannot tell the starting process", "error", strerror(errno), NULL);
	close(*ready_fd);
	*ready_fd = -1;
	log_also_stderr(0);
	if (freopen("/dev/null", "w", stderr) == NULL)
		log_kv(LOG_LVL_WARN, "cannot redirect stderr to /dev/null", NULL);
}

static int
main_run(const char *path, struct config *cfg, struct flows *flows, int ready_fd)
{
	struct loop *l = NULL;
	uint64_t wd = sysd_watchdog_usec();
	int64_t last_ping = 0, last_status = 0;
	char *cause = NULL, status[256];
	int rc;

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
	main_ready(&ready_fd);
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

/* The parent of a detaching start: exits 0 once the daemon is ready, else
 * with the daemon's own exit status (its messages went to stderr). */
static void __attribute__((noreturn))
main_wait_ready(pid_t pid, int fd)
{
	char ok;
	int st;

	if (read(fd, &ok, 1) == 1)
		_exit(EX_OK);
	if (waitpid(pid, &st, 0) < 0)
		_exit(EX_OSERR);
	if (WIFEXITED(st))
		_exit(WEXITSTATUS(st) ? WEXITSTATUS(st) : EX_SOFTWARE);
	fprintf(stderr, "imperai-snowd: died while starting (signal %d)\n", WTERMSIG(st));
	_exit(EX_SOFTWARE);
}

/* Forks into the background; the parent waits until the daemon is ready.
 * stderr stays open until then, so a failure to start is seen. */
static int
main_detach(void)
{
	int p[2];
	pid_t pid;

	if (pipe(p) < 0)
		fatalx(EX_OSERR, "pipe: %s", strerror(errno));
	if ((pid = fork()) < 0)
		fatalx(EX_OSERR, "fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		main_wait_ready(pid, p[0]);
	}
	close(p[0]);
	setsid();
	if (chdir("/") < 0)
		fatalx(EX_OSERR, "chdir /: %s", strerror(errno));
	if (freopen("/dev/null", "r", stdin) == NULL || freopen("/dev/null", "w", stdout) == NULL)
		fatalx(EX_OSERR, "cannot redirect standard streams to /dev/null");
	return p[1];
}

struct main_args {
	const char	*path;
	int		 foreground, check, debug, strict;
};

/* The command line into a; -1 to go on, else the exit code. */
static int
main_parse(int argc, char **argv, struct main_args *a)
{
	static const struct option main_opts[] = {
		{ "strict", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:fndVh", main_opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			a->strict = 1;
			break;
		case 'c':
			a->path = optarg;
			break;
		case 'f':
			a->foreground = 1;
			break;
		case 'n':
			a->check = 1;
			break;
		case 'd':
			a->debug = a->foreground = 1;
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
	if (optind != argc || (a->strict && !a->check)) {
		main_usage(stderr);
		return EX_USAGE;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	struct main_args a = { .path = CONFIG_DEFAULT_PATH };
	const char *path;
	char *abs = NULL;
	struct config *cfg;
	struct flows *flows;
	int detach, ready_fd, rc;
	struct rlimit nocore = { 0, 0 };

	if ((rc = main_parse(argc, argv, &a)) >= 0)
		return rc;
	path = a.path;
	if (a.check)
		return main_check(path, a.strict);
	/* Secrets are in memory from here on: no core files, no ptrace by others. */
	setrlimit(RLIMIT_CORE, &nocore);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	detach = !a.foreground && getenv("NOTIFY_SOCKET") == NULL &&
	    getenv("JOURNAL_STREAM") == NULL;
	/* The settings file as an absolute path: reloads happen after chdir("/");
	 * a missing file is reported by the load. */
	if (detach && (abs = realpath(path, NULL)) != NULL)
		path = abs;
	log_init("imperai-snowd", LOG_TARGET_AUTO, !detach);
	log_also_stderr(detach);
	if (a.debug) {
		main_debug = 1;
		log_set_level(LOG_LVL_DEBUG);
	}
	/* Checked before the fork: a bad file fails where it was started. */
	if (main_load_start(path, &cfg, &flows) < 0) {
		free(abs);
		return EX_CONFIG;
	}
	ready_fd = detach ? main_detach() : -1;
	main_signals();
	rc = main_run(path, cfg, flows, ready_fd);
	free(abs);
	return rc;
}
