/* Tests of lib/config.c: the settings file, its checks and its messages. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "util.h"

struct fx {
	char		 dir[64];
	char		 conf[128];
	struct config	*c;
	struct errlist	 errs;
	struct errlist	 warns;
};

/* A valid file with the minimum: everything else takes its default. */
static const char minimal[] =
    "servicenow: {\n"
    "  instance = \"https://acme.service-now.com\";\n"
    "  user = \"imperai.integration\";\n"
    "  password_file = \"pw\";\n"
    "  tables = ( { name = \"incident\"; } );\n"
    "};\n"
    "imperai: {\n"
    "  api_url = \"https://api.imper.ai\";\n"
    "  api_key_file = \"key\";\n"
    "};\n";

static void
write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char *path = xprintf("%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	free(path);
}

static void
remove_file(const char *dir, const char *name)
{
	char *path = xprintf("%s/%s", dir, name);

	assert_int_equal(unlink(path), 0);
	free(path);
}

static void
rm_tree(const char *dir)
{
	char *cmd = xprintf("rm -rf '%s'", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static int
setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/test_config.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/imperai-snowd.conf", f->dir);
	write_file(f->dir, "pw", "s3cret-password\n", 0600);
	write_file(f->dir, "key", "s3cret-api-key\n", 0600);
	unsetenv("CREDENTIALS_DIRECTORY");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	config_free(f->c);
	errlist_free(&f->errs);
	errlist_free(&f->warns);
	rm_tree(f->dir);
	unsetenv("CREDENTIALS_DIRECTORY");
	free(f);
	return 0;
}

static int
load(struct fx *f, const char *text, int flags)
{
	config_free(f->c);
	f->c = NULL;
	errlist_free(&f->errs);
	errlist_free(&f->warns);
	write_file(f->dir, "imperai-snowd.conf", text, 0644);
	return config_load(f->conf, flags, &f->c, &f->errs, &f->warns);
}

/* The minimal file with extra text inserted in a group, or at the end. */
static int
load_with(struct fx *f, const char *group, const char *extra, int flags)
{
	char *text, *at;
	int rc;

	if (group == NULL)
		text = xprintf("%s%s", minimal, extra);
	else {
		char *open_brace = xprintf("%s: {\n", group);
		at = strstr(minimal, open_brace);
		assert_non_null(at);
		at += strlen(open_brace);
		text = xprintf("%.*s%s%s", (int)(at - minimal), minimal, extra, at);
		free(open_brace);
	}
	rc = load(f, text, flags);
	free(text);
	return rc;
}

static void
dump(const struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  | %s\n", e->msg[i]);
}

static const char *
find_msg(const struct errlist *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], needle) != NULL)
			return e->msg[i];
	return NULL;
}

static void
assert_msg(const struct errlist *e, const char *needle)
{
	if (find_msg(e, needle) == NULL) {
		fprintf(stderr, "no message contains \"%s\"; got:\n", needle);
		dump(e);
		fail();
	}
}

static void
assert_loads(struct fx *f, int rc)
{
	if (rc != 0 || f->errs.n != 0)
		dump(&f->errs);
	assert_int_equal(rc, 0);
	assert_int_equal(f->errs.n, 0);
	assert_non_null(f->c);
}

static void
assert_fails(struct fx *f, int rc)
{
	assert_int_equal(rc, -EINVAL);
	assert_null(f->c);
	assert_true(f->errs.n > 0);
}

/* Every message starts "<the file>:<line>: ". */
static void
assert_all_name_file_and_line(struct fx *f)
{
	char *pat = xprintf("^%s:[1-9][0-9]*: [a-z_]", f->conf);
	regex_t re;

	assert_int_equal(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
	for (size_t i = 0; i < f->errs.n; i++) {
		if (regexec(&re, f->errs.msg[i], 0, NULL, 0) != 0)
			fail_msg("message without file and line: %s", f->errs.msg[i]);
	}
	regfree(&re);
	free(pat);
}

static void
test_file_with_every_key_loads_with_the_values_given(void **state)
{
	struct fx *f = *state;
	const char *text =
	    "servicenow: {\n"
	    "  instance = \"https://acme.service-now.com/\";\n"
	    "  auth = \"oauth\";\n"
	    "  oauth_grant = \"password\";\n"
	    "  user = \"imperai.integration\";\n"
	    "  password_file = \"pw\";\n"
	    "  client_id = \"abc123\";\n"
	    "  client_secret_file = \"key\";\n"
	    "  tables = ( { name = \"incident\"; field = \"u_verif\"; requester_field = \"opened_by\"; },\n"
	    "             { name = \"sc_req_item\"; } );\n"
	    "  page_size = 250; poll_interval = 20; poll_overlap = 0; concurrency = 8;\n"
	    "  connect_timeout = 7; timeout = 45; max_retries = 0; ca_file = \"ca.pem\";\n"
	    "  proxy = \"http://proxy.example.com:3128\"; request_budget = 5000;\n"
	    "};\n"
	    "imperai: {\n"
	    "  api_url = \"https://api.imper.ai\"; api_key_file = \"key\";\n"
	    "  instance_name = \"acme-prod\"; poll_interval = 3; feed_limit = 500;\n"
	    "  risk_bands = { verified_max = 2; medium_max = 7; };\n"
	    "  link_hosts = [ \"verify.imper.ai\", \"Details.Imper.AI\" ];\n"
	    "  concurrency = 2; connect_timeout = 5; timeout = 20; max_retries = 3;\n"
	    "  ca_file = \"\"; proxy = \"socks5h://127.0.0.1:1080\"; request_budget = 10;\n"
	    "};\n"
	    "state: { directory = \"/srv/imperai\"; map_size = 128; };\n"
	    "flows_file = \"/etc/x/flows.yaml\";\n"
	    "credentials_directory = \"creds\";\n"
	    "log_level = \"debug\";\n"
	    "metrics: { file = \"/run/imperai.prom\"; interval = 30; };\n";
	struct config *c;

	write_file(f->dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
	assert_loads(f, load(f, text, 0));
	c = f->c;
	assert_string_equal(c->snow.instance, "https://acme.service-now.com");
	assert_int_equal(c->snow.auth, CONFIG_AUTH_OAUTH);
	assert_int_equal(c->snow.grant, CONFIG_GRANT_PASSWORD);
	assert_string_equal(c->snow.user, "imperai.integration");
	assert_string_equal(c->snow.password, "s3cret-password");
	assert_string_equal(c->snow.client_id, "abc123");
	assert_string_equal(c->snow.client_secret, "s3cret-api-key");
	assert_int_equal(c->snow.ntables, 2);
	assert_string_equal(c->snow.tables[0].field, "u_verif");
	assert_string_equal(c->snow.tables[0].requester_field, "opened_by");
	assert_int_equal(c->snow.page_size, 250);
	assert_int_equal(c->snow.poll_interval, 20);
	assert_int_equal(c->snow.poll_overlap, 0);
	assert_int_equal(c->snow.http.concurrency, 8);
	assert_int_equal(c->snow.http.connect_timeout, 7);
	assert_int_equal(c->snow.http.timeout, 45);
	assert_int_equal(c->snow.http.max_retries, 0);
	assert_non_null(strstr(c->snow.http.ca_file, "/ca.pem"));
	assert_string_equal(c->snow.http.proxy, "http://proxy.example.com:3128");
	assert_int_equal(c->snow.http.request_budget, 5000);
	assert_string_equal(c->imperai.api_key, "s3cret-api-key");
	assert_string_equal(c->imperai.instance_name, "acme-prod");
	assert_int_equal(c->imperai.poll_interval, 3);
	assert_int_equal(c->imperai.feed_limit, 500);
	assert_int_equal(c->imperai.risk_verified_max, 2);
	assert_int_equal(c->imperai.risk_medium_max, 7);
	assert_int_equal(c->imperai.nlink_hosts, 2);
	assert_string_equal(c->imperai.link_hosts[1], "details.imper.ai");
	assert_int_equal(c->imperai.http.concurrency, 2);
	assert_null(c->imperai.http.ca_file);
	assert_string_equal(c->imperai.http.proxy, "socks5h://127.0.0.1:1080");
	assert_int_equal(c->imperai.http.request_budget, 10);
	assert_string_equal(c->state_dir, "/srv/imperai");
	assert_int_equal(c->map_size, 128ULL * 1024 * 1024);
	assert_string_equal(c->flows_file, "/etc/x/flows.yaml");
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_string_equal(c->metrics_file, "/run/imperai.prom");
	assert_int_equal(c->metrics_interval, 30);
}

static void
test_omitted_keys_take_the_documented_defaults(void **state)
{
	struct fx *f = *state;
	struct config *c;

	assert_loads(f, load(f, minimal, 0));
	c = f->c;
	assert_int_equal(c->snow.auth, CONFIG_AUTH_BASIC);
	assert_int_equal(c->snow.page_size, 100);
	assert_int_equal(c->snow.poll_interval, 10);
	assert_int_equal(c->snow.poll_overlap, 5);
	assert_int_equal(c->snow.http.concurrency, 4);
	assert_int_equal(c->snow.http.connect_timeout, 10);
	assert_int_equal(c->snow.http.timeout, 30);
	assert_int_equal(c->snow.http.max_retries, 5);
	assert_null(c->snow.http.ca_file);
	assert_null(c->snow.http.proxy);
	assert_int_equal(c->snow.http.request_budget, 0);
	assert_string_equal(c->snow.tables[0].field, "u_imperai_verification");
	assert_string_equal(c->snow.tables[0].requester_field, "caller_id");
	assert_null(c->snow.client_secret);
	assert_string_equal(c->imperai.instance_name, "acme.service-now.com");
	assert_int_equal(c->imperai.poll_interval, 5);
	assert_int_equal(c->imperai.feed_limit, 100);
	assert_int_equal(c->imperai.risk_verified_max, 3);
	assert_int_equal(c->imperai.risk_medium_max, 6);
	assert_int_equal(c->imperai.nlink_hosts, 1);
	assert_string_equal(c->imperai.link_hosts[0], "api.imper.ai");
	assert_int_equal(c->imperai.http.timeout, 30);
	assert_string_equal(c->state_dir, "/var/lib/imperai-snow");
	assert_int_equal(c->map_size, 64ULL * 1024 * 1024);
	assert_string_equal(c->flows_file, "/etc/imperai-snow/flows.yaml");
	assert_string_equal(c->credentials_dir, "/etc/imperai-snow/credentials");
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_null(c->metrics_file);
	assert_int_equal(c->metrics_interval, 15);
}

static void
test_requester_field_defaults_depend_on_the_table(void **state)
{
	struct fx *f = *state;
	const char *text =
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\";\n"
	    "  tables = ( { name = \"incident\"; }, { name = \"sc_req_item\"; },\n"
	    "             { name = \"sc_task\"; }, { name = \"u_custom\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n";

	assert_loads(f, load(f, text, 0));
	assert_string_equal(config_table(f->c, "incident")->requester_field, "caller_id");
	assert_string_equal(config_table(f->c, "sc_req_item")->requester_field, "requested_for");
	assert_string_equal(config_table(f->c, "sc_task")->requester_field,
	    "request_item.requested_for");
	assert_string_equal(config_table(f->c, "u_custom")->requester_field, "caller_id");
	assert_null(config_table(f->c, "problem"));
}

static void
test_syntax_error_names_file_line_and_the_parser_text(void **state)
{
	struct fx *f = *state;
	char *want;

	assert_fails(f, load_with(f, NULL, "log_level = \"info\"\nmetrics: { interval = ; };\n", 0));
	assert_int_equal(f->errs.n, 1);
	want = xprintf("%s:12: syntax error: libconfig expects name = value; with strings in "
	    "double quotes (\"...\"), numbers bare, groups as name: { ... };, lists as ( ... ) "
	    "and arrays as [ ... ]; see imperai-snowd.conf(5)", f->conf);
	assert_string_equal(f->errs.msg[0], want);
	free(want);
}

static void
test_unknown_top_level_key_is_an_error_naming_file_and_line(void **state)
{
	struct fx *f = *state;
	char *want;

	assert_fails(f, load_with(f, NULL, "loglevel = \"info\";\n", 0));
	want = xprintf("%s:11: loglevel: unknown key; did you mean \"log_level\"?", f->conf);
	assert_int_equal(f->errs.n, 1);
	assert_string_equal(f->errs.msg[0], want);
	free(want);
}

static void
test_unknown_nested_key_is_an_error_naming_the_full_key(void **state)
{
	struct fx *f = *state;
	char *want;

	assert_fails(f, load_with(f, "servicenow", "  page_sise = 10;\n  colour = 1;\n", 0));
	want = xprintf("%s:2: servicenow.page_sise: unknown key; did you mean \"page_size\"?",
	    f->conf);
	assert_string_equal(f->errs.msg[0], want);
	free(want);
	want = xprintf("%s:3: servicenow.colour: unknown key; see imperai-snowd.conf(5)", f->conf);
	assert_msg(&f->errs, want);
	free(want);
}

static void
test_unknown_key_in_a_table_entry_is_an_error(void **state)
{
	struct fx *f = *state;
	const char *text =
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\";\n"
	    "  tables = ( { name = \"incident\"; },\n"
	    "             { name = \"sc_task\"; requester = \"x\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n";

	assert_fails(f, load(f, text, 0));
	assert_msg(&f->errs, ":4: servicenow.tables[1].requester: unknown key");
}

static void
test_unknown_key_in_risk_bands_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "imperai", "  risk_bands = { high_min = 7; };\n", 0));
	assert_msg(&f->errs, ":8: imperai.risk_bands.high_min: unknown key");
}

static void
test_wrong_type_says_what_was_expected_and_what_was_given(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow",
	    "  page_size = \"100\";\n  auth = 1;\n  tables2 = 1;\n", 0));
	assert_msg(&f->errs, ":2: servicenow.page_size: must be an integer from 1 to 10000, "
	    "got a string");
	assert_msg(&f->errs, ":3: servicenow.auth: must be one of basic, oauth (a string), "
	    "got an integer");
	errlist_free(&f->errs);
	assert_fails(f, load_with(f, NULL, "state = 1;\nmetrics: { file = 5; };\n", 0));
	assert_msg(&f->errs, ":11: state: must be a group { ... }, got an integer");
	assert_msg(&f->errs, ":12: metrics.file: must be a string, got an integer");
}

static void
test_out_of_range_value_names_the_range_and_the_value(void **state)
{
	struct fx *f = *state;
	char *want;

	assert_fails(f, load_with(f, "servicenow", "  page_size = 0;\n", 0));
	want = xprintf("%s:2: servicenow.page_size: must be an integer from 1 to 10000, got 0",
	    f->conf);
	assert_int_equal(f->errs.n, 1);
	assert_string_equal(f->errs.msg[0], want);
	free(want);
	assert_fails(f, load_with(f, "imperai", "  feed_limit = 1001;\n", 0));
	assert_msg(&f->errs, "imperai.feed_limit: must be an integer from 1 to 1000, got 1001");
}

static void
test_integer_beyond_32_bits_is_out_of_range_not_wrapped(void **state)
{
	struct fx *f = *state;

	/* 4294967396 wraps to 100 in libconfig 1.5: it must not load as 100. */
	assert_fails(f, load_with(f, "servicenow", "  timeout = 4; page_size = 4294967396;\n", 0));
	assert_msg(&f->errs, "servicenow.page_size: must be an integer from 1 to 10000");
	assert_null(find_msg(&f->errs, "servicenow.timeout"));
	assert_loads(f, load_with(f, "servicenow", "  connect_timeout = 10; timeout = 20;\n", 0));
	assert_int_equal(f->c->snow.http.timeout, 20);
}

static void
test_request_budget_is_zero_or_at_least_ten(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow", "  request_budget = 5;\n", 0));
	assert_msg(&f->errs, "servicenow.request_budget: must be 0 (unlimited) or an integer "
	    "from 10 to 1000000, got 5");
	assert_loads(f, load_with(f, "servicenow", "  request_budget = 10;\n", 0));
	assert_loads(f, load_with(f, "servicenow", "  request_budget = 0;\n", 0));
}

static void
test_missing_required_key_is_reported_at_its_group(void **state)
{
	struct fx *f = *state;
	const char *text =
	    "servicenow: {\n"
	    "  user = \"u\"; password_file = \"pw\";\n"
	    "};\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n";
	char *want;

	assert_fails(f, load(f, text, 0));
	want = xprintf("%s:1: servicenow.instance: required key missing", f->conf);
	assert_msg(&f->errs, want);
	free(want);
	assert_msg(&f->errs, ":1: servicenow.tables: required key missing");
}

static void
test_missing_required_group_is_reported_once(void **state)
{
	struct fx *f = *state;
	const char *text =
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\"; tables = ( { name = \"incident\"; } ); };\n";

	assert_fails(f, load(f, text, 0));
	assert_int_equal(f->errs.n, 1);
	assert_msg(&f->errs, ":1: imperai: required group missing");
}

static void
test_table_entry_without_name_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow", "  tables = ( { field = \"u_x\"; } );\n", 0));
	assert_fails(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\";\n"
	    "  tables = ( { field = \"u_x\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n", 0));
	assert_msg(&f->errs, ":3: servicenow.tables[0]: name is required");
}

static void
test_invalid_table_name_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\";\n"
	    "  tables = ( { name = \"Incident; drop\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n", 0));
	assert_msg(&f->errs, ":3: servicenow.tables[0].name: must be a ServiceNow name");
}

static void
test_empty_tables_list_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\"; tables = ( ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n", 0));
	assert_msg(&f->errs, ":2: servicenow.tables: must list at least one table");
}

static void
test_http_to_a_non_loopback_host_is_refused_as_tls_is_required(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow",
	    "  instance = \"http://acme.service-now.com\";\n", 0));
	/* the same key twice is a libconfig error; build the file by hand */
	assert_fails(f, load(f,
	    "servicenow: { instance = \"http://acme.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\"; tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"http://10.0.0.1:8080\"; api_key_file = \"key\"; };\n", 0));
	assert_msg(&f->errs, ":1: servicenow.instance: TLS is required for acme.service-now.com: "
	    "use https://");
	assert_msg(&f->errs, ":3: imperai.api_url: TLS is required for 10.0.0.1");
}

static void
test_http_to_a_loopback_host_is_allowed(void **state)
{
	struct fx *f = *state;
	static const char *const urls[][2] = {
		{ "http://127.0.0.1:18080", "http://localhost:18090/" },
		{ "http://127.1.2.3", "http://[::1]:18090" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(urls); i++) {
		char *text = xprintf(
		    "servicenow: { instance = \"%s\"; user = \"u\";\n"
		    "  password_file = \"pw\"; tables = ( { name = \"incident\"; } ); };\n"
		    "imperai: { api_url = \"%s\"; api_key_file = \"key\"; };\n", urls[i][0],
		    urls[i][1]);
		assert_loads(f, load(f, text, 0));
		free(text);
	}
	assert_string_equal(f->c->imperai.link_hosts[0], "[::1]");
}

static void
test_malformed_url_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load(f,
	    "servicenow: { instance = \"acme.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\"; tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://u:hunter2@api.imper.ai\"; api_key_file = \"key\"; };\n",
	    0));
	assert_msg(&f->errs, ":1: servicenow.instance: must be a URL like https://");
	assert_msg(&f->errs, ":3: imperai.api_url: must be a URL");
	assert_null(find_msg(&f->errs, "hunter2"));
}

static void
test_duplicate_table_is_an_error_naming_both_lines(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"pw\";\n"
	    "  tables = ( { name = \"incident\"; },\n"
	    "             { name = \"sc_task\"; },\n"
	    "             { name = \"incident\"; field = \"u_other\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n", 0));
	assert_int_equal(f->errs.n, 1);
	assert_msg(&f->errs, ":5: servicenow.tables[2].name: table \"incident\" is listed twice "
	    "(first at line 3)");
}

static void
test_both_password_file_and_credential_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow",
	    "  password_credential = \"servicenow-password\";\n", 0));
	assert_int_equal(f->errs.n, 1);
	assert_msg(&f->errs, ":2: servicenow.password_credential: servicenow.password_file is "
	    "set too: keep exactly one of password_file and password_credential");
}

static void
test_neither_password_file_nor_credential_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; };\n", 0));
	assert_msg(&f->errs, ":1: servicenow: set one of password_file or password_credential");
	assert_msg(&f->errs, ":3: imperai: set one of api_key_file or api_key_credential");
}

static void
test_secret_file_readable_by_others_is_refused_with_the_chmod_hint(void **state)
{
	struct fx *f = *state;
	char *want;

	write_file(f->dir, "pw", "hunter2\n", 0644);
	assert_fails(f, load(f, minimal, CONFIG_SECRETS_OPTIONAL));
	want = xprintf("%s:4: servicenow.password_file: secret file %s/pw is accessible by "
	    "group or others (mode 0644); fix with: chmod 600 %s/pw", f->conf, f->dir, f->dir);
	assert_int_equal(f->errs.n, 1);
	assert_string_equal(f->errs.msg[0], want);
	assert_null(find_msg(&f->errs, "hunter2"));
	free(want);
}

static void
test_no_secrets_opens_no_secret_file_but_checks_the_sources(void **state)
{
	struct fx *f = *state;

	/* A world-readable and a missing secret: both untouched, no message. */
	write_file(f->dir, "pw", "hunter2\n", 0644);
	remove_file(f->dir, "key");
	assert_loads(f, load(f, minimal, CONFIG_NO_SECRETS));
	assert_int_equal(f->warns.n, 0);
	assert_null(f->c->snow.password);
	assert_null(f->c->imperai.api_key);
	assert_fails(f, load(f, "servicenow: { instance = \"https://a.service-now.com\"; "
	    "user = \"u\";\n  tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; };\n", CONFIG_NO_SECRETS));
	assert_msg(&f->errs, ":1: servicenow: set one of password_file or password_credential");
}

static void
test_empty_secret_is_an_error_even_when_secrets_are_optional(void **state)
{
	struct fx *f = *state;

	write_file(f->dir, "key", "\n", 0600);
	assert_fails(f, load(f, minimal, CONFIG_SECRETS_OPTIONAL));
	assert_msg(&f->errs, ":9: imperai.api_key_file: secret file");
	assert_msg(&f->errs, "is empty");
}

static void
test_missing_secret_is_an_error_saying_how_to_create_it(void **state)
{
	struct fx *f = *state;
	char *want;

	remove_file(f->dir, "pw");
	assert_fails(f, load(f, minimal, 0));
	want = xprintf("%s:4: servicenow.password_file: %s/pw not found: the daemon cannot start "
	    "without it; create it with: install -m 600 /dev/null %s/pw && edit it",
	    f->conf, f->dir, f->dir);
	assert_int_equal(f->errs.n, 1);
	assert_string_equal(f->errs.msg[0], want);
	free(want);
}

static void
test_missing_secret_is_a_warning_when_secrets_are_optional(void **state)
{
	struct fx *f = *state;

	remove_file(f->dir, "pw");
	assert_loads(f, load(f, minimal, CONFIG_SECRETS_OPTIONAL));
	assert_int_equal(f->warns.n, 1);
	assert_msg(&f->warns, ":4: servicenow.password_file: ");
	assert_msg(&f->warns, "/pw not found: the daemon cannot start without it; create it "
	    "with: install -m 600 /dev/null ");
	assert_null(f->c->snow.password);
	assert_string_equal(f->c->imperai.api_key, "s3cret-api-key");
}

static void
test_credential_is_read_from_CREDENTIALS_DIRECTORY(void **state)
{
	struct fx *f = *state;
	char *sd = xprintf("%s/sd", f->dir), *text;

	assert_int_equal(mkdir(sd, 0700), 0);
	write_file(sd, "servicenow-password", "from-systemd\n", 0400);
	setenv("CREDENTIALS_DIRECTORY", sd, 1);
	text = xprintf(
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_credential = \"servicenow-password\";\n"
	    "  tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_credential = \"imperai-api-key\"; };\n");
	assert_fails(f, load(f, text, 0));
	/* Under systemd there is no fallback: the unit must pass the credential. */
	assert_int_equal(f->errs.n, 1);
	assert_msg(&f->errs, ":4: imperai.api_key_credential: ");
	assert_msg(&f->errs, "sd/imperai-api-key not found: the daemon cannot start without it; "
	    "pass it with LoadCredential=imperai-api-key:/path/to/secret in the unit");
	write_file(sd, "imperai-api-key", "key-from-systemd", 0400);
	assert_loads(f, load(f, text, 0));
	assert_string_equal(f->c->snow.password, "from-systemd");
	assert_string_equal(f->c->imperai.api_key, "key-from-systemd");
	free(text);
	free(sd);
}

static void
test_credential_falls_back_to_credentials_directory(void **state)
{
	struct fx *f = *state;
	char *cd = xprintf("%s/creds", f->dir);

	assert_int_equal(mkdir(cd, 0700), 0);
	write_file(cd, "servicenow-password", "from-fallback\n", 0600);
	write_file(cd, "imperai-api-key", "key-fallback\n", 0600);
	assert_loads(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_credential = \"servicenow-password\";\n"
	    "  tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_credential = \"imperai-api-key\"; };\n"
	    "credentials_directory = \"creds\";\n", 0));
	assert_string_equal(f->c->credentials_dir, cd);
	assert_string_equal(f->c->snow.password, "from-fallback");
	assert_string_equal(f->c->imperai.api_key, "key-fallback");
	free(cd);
}

static void
test_credential_name_with_a_slash_is_refused(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_credential = \"../pw\";\n"
	    "  tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n", 0));
	assert_msg(&f->errs, ":2: servicenow.password_credential: must be a credential name");
}

static void
test_relative_paths_resolve_against_the_config_directory(void **state)
{
	struct fx *f = *state;
	char *want;

	want = xprintf("%s/sub", f->dir);
	assert_int_equal(mkdir(want, 0700), 0);
	free(want);
	write_file(f->dir, "sub/pw", "p\n", 0600);
	write_file(f->dir, "ca.pem", "x\n", 0644);
	assert_loads(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; user = \"u\";\n"
	    "  password_file = \"sub/pw\"; ca_file = \"ca.pem\";\n"
	    "  tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n"
	    "state: { directory = \"state\"; };\n"
	    "flows_file = \"flows.yaml\";\n"
	    "credentials_directory = \"creds\";\n"
	    "metrics: { file = \"m/imperai.prom\"; };\n", 0));
	want = xprintf("%s/flows.yaml", f->dir);
	assert_string_equal(f->c->flows_file, want);
	free(want);
	want = xprintf("%s/state", f->dir);
	assert_string_equal(f->c->state_dir, want);
	free(want);
	want = xprintf("%s/ca.pem", f->dir);
	assert_string_equal(f->c->snow.http.ca_file, want);
	free(want);
	want = xprintf("%s/m/imperai.prom", f->dir);
	assert_string_equal(f->c->metrics_file, want);
	free(want);
	assert_string_equal(f->c->snow.password, "p");
	assert_string_equal(f->c->path, f->conf);
}

static void
test_unreadable_ca_file_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "imperai", "  ca_file = \"nope.pem\";\n", 0));
	assert_msg(&f->errs, ":8: imperai.ca_file: ");
	assert_msg(&f->errs, "nope.pem: No such file or directory");
}

static void
test_oauth_needs_a_client_id_and_secret(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow", "  auth = \"oauth\";\n", 0));
	assert_msg(&f->errs, ":1: servicenow.client_id: required with auth = \"oauth\"");
	assert_msg(&f->errs, ":1: servicenow: set one of client_secret_file or "
	    "client_secret_credential");
	assert_loads(f, load_with(f, "servicenow", "  auth = \"oauth\"; client_id = \"id\";\n"
	    "  client_secret_file = \"key\";\n", 0));
	assert_int_equal(f->c->snow.grant, CONFIG_GRANT_PASSWORD);
}

static void
test_client_credentials_grant_takes_no_user_or_password(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow", "  auth = \"oauth\"; client_id = \"id\";\n"
	    "  oauth_grant = \"client_credentials\"; client_secret_file = \"key\";\n", 0));
	assert_msg(&f->errs, "servicenow.user: not used with oauth_grant = \"client_credentials\"");
	assert_msg(&f->errs, "servicenow.password_file: not used with oauth_grant = "
	    "\"client_credentials\"");
	assert_loads(f, load(f,
	    "servicenow: { instance = \"https://a.service-now.com\"; auth = \"oauth\";\n"
	    "  oauth_grant = \"client_credentials\"; client_id = \"id\";\n"
	    "  client_secret_file = \"key\"; tables = ( { name = \"incident\"; } ); };\n"
	    "imperai: { api_url = \"https://api.imper.ai\"; api_key_file = \"key\"; };\n", 0));
	assert_null(f->c->snow.user);
	assert_null(f->c->snow.password);
	assert_string_equal(f->c->snow.client_secret, "s3cret-api-key");
}

static void
test_oauth_keys_with_basic_auth_are_errors(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow", "  client_id = \"id\";\n"
	    "  oauth_grant = \"password\";\n  client_secret_file = \"key\";\n", 0));
	assert_msg(&f->errs, ":2: servicenow.client_id: only used with auth = \"oauth\"");
	assert_msg(&f->errs, ":3: servicenow.oauth_grant: only used with auth = \"oauth\"");
	assert_msg(&f->errs, ":4: servicenow.client_secret_file: only used with auth = \"oauth\"");
}

static void
test_risk_bands_must_be_ordered(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "imperai",
	    "  risk_bands = { verified_max = 6; medium_max = 6; };\n", 0));
	assert_msg(&f->errs, ":8: imperai.risk_bands: verified_max (6) must be below medium_max (6)");
}

static void
test_log_level_names_map_to_syslog_levels(void **state)
{
	struct fx *f = *state;
	static const struct { const char *name; int lvl; } levels[] = {
		{ "err", LOG_LVL_ERR }, { "warning", LOG_LVL_WARN }, { "notice", LOG_LVL_NOTICE },
		{ "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG },
	};

	for (size_t i = 0; i < ARRAY_SIZE(levels); i++) {
		char *extra = xprintf("log_level = \"%s\";\n", levels[i].name);
		assert_loads(f, load_with(f, NULL, extra, 0));
		assert_int_equal(f->c->log_level, levels[i].lvl);
		free(extra);
	}
	assert_fails(f, load_with(f, NULL, "log_level = \"verbose\";\n", 0));
	assert_msg(&f->errs, ":11: log_level: must be one of err, warning, notice, info, debug, "
	    "got \"verbose\"");
}

static void
test_invalid_link_host_is_an_error(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "imperai",
	    "  link_hosts = [ \"verify.imper.ai\", \"https://evil.example/\" ];\n", 0));
	assert_msg(&f->errs, ":8: imperai.link_hosts: element 1 must be a host name");
	assert_fails(f, load_with(f, "imperai", "  link_hosts = [ ];\n", 0));
	assert_msg(&f->errs, "imperai.link_hosts: must list at least one host");
}

static void
test_invalid_proxy_is_an_error_without_echoing_it(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow", "  proxy = \"ftp://u:hunter2@p\";\n", 0));
	assert_msg(&f->errs, ":2: servicenow.proxy: must be a proxy URL");
	assert_null(find_msg(&f->errs, "hunter2"));
}

static void
test_all_errors_are_collected_not_only_the_first(void **state)
{
	struct fx *f = *state;

	assert_fails(f, load_with(f, "servicenow",
	    "  page_size = 0;\n  poll_interval = 99999;\n  bogus = 1;\n", 0));
	assert_int_equal(f->errs.n, 3);
	assert_msg(&f->errs, ":2: servicenow.page_size:");
	assert_msg(&f->errs, ":3: servicenow.poll_interval:");
	assert_msg(&f->errs, ":4: servicenow.bogus:");
}

static void
test_every_error_names_file_and_line(void **state)
{
	struct fx *f = *state;

	write_file(f->dir, "key", "k\n", 0640);
	assert_fails(f, load(f,
	    "servicenow: {\n"
	    "  instance = \"http://acme.service-now.com\";\n"
	    "  auth = \"kerberos\";\n"
	    "  password_file = \"missing\"; password_credential = \"x\";\n"
	    "  tables = ( { name = \"incident\"; }, { name = \"incident\"; }, 7 );\n"
	    "  page_size = 1.5; concurrency = 0; proxy = \"nope\"; ca_file = \"/nonexistent\";\n"
	    "  wat = 1;\n"
	    "};\n"
	    "imperai: { api_key_file = \"key\"; risk_bands = { verified_max = 9; medium_max = 1; };\n"
	    "  link_hosts = 5; };\n"
	    "state: { map_size = 0; directory = \"\"; };\n"
	    "metrics = 1;\n"
	    "log_level = 3;\n", 0));
	if (f->errs.n < 15)
		dump(&f->errs);
	assert_true(f->errs.n >= 15);
	assert_all_name_file_and_line(f);
}

static void
test_config_parse_uses_the_name_in_messages(void **state)
{
	struct config *c = NULL;
	struct errlist errs = { NULL, 0 };

	(void)state;
	assert_int_equal(config_parse("metrics: { interval = 0; };\n", "inline.conf", "/tmp", 0,
	    &c, &errs, NULL), -EINVAL);
	assert_null(c);
	assert_msg(&errs, "inline.conf:1: metrics.interval: must be an integer from 1 to 3600, got 0");
	assert_msg(&errs, "inline.conf:1: servicenow: required group missing");
	errlist_free(&errs);
}

static void
test_unreadable_file_is_an_error_with_errno(void **state)
{
	struct fx *f = *state;
	struct config *c = NULL;
	char *path = xprintf("%s/none.conf", f->dir);

	assert_int_equal(config_load(path, 0, &c, &f->errs, NULL), -ENOENT);
	assert_null(c);
	assert_msg(&f->errs, "none.conf: cannot read: No such file or directory");
	free(path);
}

static char *
shipped(const char *rel)
{
	const char *top = getenv("top_srcdir");

	return top ? xprintf("%s/%s", top, rel) : NULL;
}

/* Until the admin replaces them, the shipped placeholders are refused, and
 * they are the only errors: the rest of the shipped file is valid. */
static void
test_shipped_config_is_refused_until_its_placeholders_are_replaced(void **state)
{
	struct fx *f = *state;
	char *path = shipped("etc/imperai-snowd.conf");

	if (path == NULL)
		skip();
	assert_fails(f, config_load(path, CONFIG_NO_SECRETS, &f->c, &f->errs, &f->warns));
	assert_int_equal(f->errs.n, 3);
	assert_msg(&f->errs, ": servicenow.instance: \"https://YOUR-INSTANCE.service-now.com\" "
	    "is a placeholder of the shipped file: put your own value here (instance URL, "
	    "e.g. https://acme.service-now.com)");
	assert_msg(&f->errs, ": servicenow.user: \"YOUR-INTEGRATION-USER\" is a placeholder");
	assert_msg(&f->errs, ": imperai.api_url: \"https://YOUR-IMPERAI-API.imper.ai\" is a "
	    "placeholder");
	/* imperai-snowctl status and list on a fresh install. */
	errlist_free(&f->errs);
	assert_loads(f, config_load(path, CONFIG_NO_SECRETS | CONFIG_PLACEHOLDERS_OK, &f->c,
	    &f->errs, &f->warns));
	assert_string_equal(f->c->state_dir, "/var/lib/imperai-snow");
	free(path);
}

/* The shipped file filled in as the demo and the tests do it. */
static char *
shipped_filled(struct fx *f)
{
	const char *top = getenv("top_srcdir");
	char *out = xprintf("%s/imperai-snowd.conf", f->dir), *cmd;

	cmd = xprintf("sh '%s/tests/settings-from-shipped.sh' '%s/etc/imperai-snowd.conf' "
	    "http://127.0.0.1:18080 http://127.0.0.1:18090 /var/lib/imperai-snow > '%s'",
	    top, top, out);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	return out;
}

static void
test_shipped_config_filled_in_loads_with_only_warnings_when_secrets_are_optional(void **state)
{
	struct fx *f = *state;
	char *path, *cd;
	int rc;

	if (getenv("top_srcdir") == NULL)
		skip();
	path = shipped_filled(f);
	cd = xprintf("%s/empty", f->dir);
	/* no credentials anywhere: an empty $CREDENTIALS_DIRECTORY */
	assert_int_equal(mkdir(cd, 0700), 0);
	setenv("CREDENTIALS_DIRECTORY", cd, 1);
	rc = config_load(path, CONFIG_SECRETS_OPTIONAL, &f->c, &f->errs, &f->warns);
	assert_loads(f, rc);
	assert_int_equal(f->warns.n, 2);
	assert_msg(&f->warns, "servicenow.password_credential: ");
	assert_msg(&f->warns, "imperai.api_key_credential: ");
	assert_string_equal(f->c->snow.instance, "http://127.0.0.1:18080");
	assert_string_equal(f->c->imperai.api_url, "http://127.0.0.1:18090");
	assert_string_equal(f->c->snow.user, "imperai.integration");
	assert_int_equal(f->c->snow.ntables, 2);
	assert_non_null(config_table(f->c, "sc_req_item"));
	assert_string_equal(f->c->state_dir, "/var/lib/imperai-snow");
	assert_non_null(strstr(f->c->flows_file, "/flows.yaml"));
	free(path);
	free(cd);
}

static void
test_shipped_config_filled_in_loads_cleanly_with_its_credentials(void **state)
{
	struct fx *f = *state;
	char *path;

	if (getenv("top_srcdir") == NULL)
		skip();
	path = shipped_filled(f);
	write_file(f->dir, "servicenow-password", "pw\n", 0600);
	write_file(f->dir, "imperai-api-key", "key\n", 0600);
	setenv("CREDENTIALS_DIRECTORY", f->dir, 1);
	assert_loads(f, config_load(path, 0, &f->c, &f->errs, &f->warns));
	assert_int_equal(f->warns.n, 0);
	assert_string_equal(f->c->snow.password, "pw");
	assert_string_equal(f->c->imperai.api_key, "key");
	free(path);
}

static char *
read_all(const char *path)
{
	FILE *fp = fopen(path, "r");
	struct buf b;
	char chunk[4096];
	size_t n;

	assert_non_null(fp);
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_add(&b, chunk, n);
	fclose(fp);
	return buf_detach(&b);
}

/* The "# expect: TEXT" lines of a data file; NULL-terminated. */
static char **
data_expects(const char *text, size_t *n)
{
	char **v = NULL;
	const char *p = text;

	*n = 0;
	while ((p = strstr(p, "# expect: ")) != NULL) {
		const char *e = strchr(p, '\n');
		p += strlen("# expect: ");
		v = xreallocarray(v, *n + 2, sizeof(*v));
		v[(*n)++] = xstrndup(p, e ? (size_t)(e - p) : strlen(p));
		v[*n] = NULL;
	}
	return v;
}

/* Each expectation is met by one message, and no message is left over. */
static void
data_check(const char *file, char **expects, size_t nexp, const struct errlist *errs)
{
	for (size_t i = 0; i < nexp; i++)
		if (find_msg(errs, expects[i]) == NULL) {
			dump(errs);
			fail_msg("%s: no message contains \"%s\"", file, expects[i]);
		}
	if (errs->n != nexp) {
		dump(errs);
		fail_msg("%s: %zu messages for %zu expectations", file, errs->n, nexp);
	}
	for (size_t i = 0; i < nexp; i++)
		free(expects[i]);
	free(expects);
}

static void
test_data_files_give_exactly_the_expected_errors(void **state)
{
	struct fx *f = *state;
	const char *top = getenv("top_srcdir");
	char *dir, *cmd, *cd;
	char line[4096];
	FILE *ls;
	int files = 0;

	if (top == NULL)
		skip();
	/* secrets by credential are looked up in an empty directory */
	cd = xprintf("%s/creds", f->dir);
	assert_int_equal(mkdir(cd, 0700), 0);
	setenv("CREDENTIALS_DIRECTORY", cd, 1);
	dir = xprintf("%s/tests/data/config", top);
	cmd = xprintf("ls '%s' | grep '\\.conf$'", dir);
	ls = popen(cmd, "r");
	assert_non_null(ls);
	while (fgets(line, sizeof(line), ls) != NULL) {
		char *path, *text, **exp;
		size_t nexp;

		line[strcspn(line, "\n")] = '\0';
		path = xprintf("%s/%s", dir, line);
		text = read_all(path);
		exp = data_expects(text, &nexp);
		config_free(f->c);
		f->c = NULL;
		errlist_free(&f->errs);
		config_load(path, CONFIG_SECRETS_OPTIONAL, &f->c, &f->errs, NULL);
		assert_true(nexp == 0 ? f->c != NULL : f->c == NULL);
		data_check(line, exp, nexp, &f->errs);
		free(text);
		free(path);
		files++;
	}
	pclose(ls);
	assert_true(files >= 4);
	free(cmd);
	free(dir);
	free(cd);
}

/* The entry of key in the man page: from its .It line to the next .It. */
static char *
man_entry(const char *man, const char *key)
{
	char *tag = xprintf("\n.It Ic %s\n", key);
	const char *p = strstr(man, tag), *end;

	free(tag);
	if (p == NULL)
		return NULL;
	p++;
	end = strstr(p + 1, "\n.It ");
	if (end == NULL)
		end = strstr(p, "\n.El");
	return xstrndup(p, end ? (size_t)(end - p) : strlen(p));
}

static void
test_man_page_documents_every_key_with_its_range_and_default(void **state)
{
	char *path = shipped("man/imperai-snowd.conf.5"), *man;
	struct config_key_doc d;

	(void)state;
	if (path == NULL)
		skip();
	man = read_all(path);
	for (size_t i = 0; config_schema_row(i, &d) == 0; i++) {
		char *entry = man_entry(man, d.key);

		if (entry == NULL)
			fail_msg("%s: no \".It Ic %s\" entry in the man page", d.key, d.key);
		if (d.range[0] && strstr(entry, d.range) == NULL)
			fail_msg("%s: man page entry does not give the range %s", d.key, d.range);
		if (d.def[0] && strstr(entry, d.def) == NULL)
			fail_msg("%s: man page entry does not give the default %s", d.key, d.def);
		free(entry);
	}
	free(man);
	free(path);
}

static void
test_schema_rows_are_reported_in_order_and_end(void **state)
{
	struct config_key_doc d;
	size_t n = 0;

	(void)state;
	while (config_schema_row(n, &d) == 0)
		n++;
	assert_true(n > 40);
	assert_int_equal(config_schema_row(n, &d), -ENOENT);
	assert_int_equal(config_schema_row(0, &d), 0);
	assert_string_equal(d.key, "servicenow");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_with_every_key_loads_with_the_values_given, setup, teardown),
		cmocka_unit_test_setup_teardown(test_omitted_keys_take_the_documented_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requester_field_defaults_depend_on_the_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_error_names_file_line_and_the_parser_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_top_level_key_is_an_error_naming_file_and_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_nested_key_is_an_error_naming_the_full_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_in_a_table_entry_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_in_risk_bands_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_type_says_what_was_expected_and_what_was_given, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_value_names_the_range_and_the_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_integer_beyond_32_bits_is_out_of_range_not_wrapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_budget_is_zero_or_at_least_ten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required_key_is_reported_at_its_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required_group_is_reported_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_entry_without_name_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_table_name_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_tables_list_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_to_a_non_loopback_host_is_refused_as_tls_is_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_to_a_loopback_host_is_allowed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_url_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_table_is_an_error_naming_both_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_password_file_and_credential_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_neither_password_file_nor_credential_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_file_readable_by_others_is_refused_with_the_chmod_hint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_secrets_opens_no_secret_file_but_checks_the_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_secret_is_an_error_even_when_secrets_are_optional, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_secret_is_an_error_saying_how_to_create_it, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_secret_is_a_warning_when_secrets_are_optional, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credential_is_read_from_CREDENTIALS_DIRECTORY, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credential_falls_back_to_credentials_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credential_name_with_a_slash_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths_resolve_against_the_config_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_ca_file_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oauth_needs_a_client_id_and_secret, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_credentials_grant_takes_no_user_or_password, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oauth_keys_with_basic_auth_are_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_risk_bands_must_be_ordered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_level_names_map_to_syslog_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_link_host_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_proxy_is_an_error_without_echoing_it, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_errors_are_collected_not_only_the_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_error_names_file_and_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_parse_uses_the_name_in_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file_is_an_error_with_errno, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_config_is_refused_until_its_placeholders_are_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_config_filled_in_loads_with_only_warnings_when_secrets_are_optional, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_config_filled_in_loads_cleanly_with_its_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_files_give_exactly_the_expected_errors, setup, teardown),
		cmocka_unit_test(test_man_page_documents_every_key_with_its_range_and_default),
		cmocka_unit_test(test_schema_rows_are_reported_in_order_and_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
