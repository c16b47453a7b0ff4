/* Tests for lib/metrics.c: the Prometheus text exposition (checked line by
 * line against the format's grammar) and the atomic file write. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "metrics.h"
#include "util.h"

static const struct metrics_table tables[] = {
	{ .name = "incident", .seen = 42, .sweep_runs = 3, .sweep_records = 30, .sweep_missed = 2,
	  .late_records = 2, .late_max_lag = 9 },
	{ .name = "sc_req_item" },
};

static void
sample_metrics(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->version = "1.2.3";
	m->now = 1000000;
	m->started = 999000;
	m->tables = tables;
	m->ntables = ARRAY_SIZE(tables);
	m->nsvc = 2;
	m->svc[0].name = "servicenow";
	m->svc[0].by_status[2] = 17;
	m->svc[0].by_status[0] = 2;
	m->svc[0].retries = 3;
	m->svc[0].last_poll_ok = 999990;
	m->svc[1].name = "imperai";
	m->svc[1].rate_limited = 4;
	m->tickets[TS_LINK_READY] = 5;
	m->c.outcomes[metrics_result_index(IMPERAI_PASSED)][IMPERAI_RISK_VERIFIED] = 7;
	m->c.fields_injected = 9;
	m->outbox = 2;
	m->outbox_oldest = 999900;
}

/* The line of text that starts with prefix, or NULL. */
static const char *
line_of(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, n) == 0 && (p[n] == ' ' || p[n] == '\n'))
			return p;
	return NULL;
}

static int64_t
value_of(const char *text, const char *series)
{
	const char *l = line_of(text, series);

	assert_non_null(l);
	return strtoll(l + strlen(series) + 1, NULL, 10);
}

static void
test_counters_and_gauges_carry_their_values_and_labels(void **state)
{
	struct metrics m;
	char *t;

	(void)state;
	sample_metrics(&m);
	t = metrics_format(&m);
	assert_int_equal(value_of(t, "imperai_snow_tickets_seen_total{table=\"incident\"}"), 42);
	assert_int_equal(value_of(t, "imperai_snow_tickets_seen_total{table=\"sc_req_item\"}"), 0);
	assert_int_equal(value_of(t, "imperai_snow_sweep_runs_total{table=\"incident\"}"), 3);
	assert_int_equal(value_of(t, "imperai_snow_sweep_records_total{table=\"incident\"}"), 30);
	assert_int_equal(value_of(t, "imperai_snow_sweep_missed_total{table=\"incident\"}"), 2);
	assert_int_equal(value_of(t, "imperai_snow_late_records_total{table=\"incident\"}"), 2);
	assert_int_equal(value_of(t,
	    "imperai_snow_late_record_max_lag_seconds{table=\"sc_req_item\"}"), 0);
	assert_int_equal(value_of(t,
	    "imperai_snow_late_record_max_lag_seconds{table=\"incident\"}"), 9);
	assert_int_equal(value_of(t, "imperai_snow_tickets{state=\"link_ready\"}"), 5);
	assert_int_equal(value_of(t, "imperai_snow_tickets{state=\"closed\"}"), 0);
	assert_int_equal(value_of(t,
	    "imperai_snow_outcomes_total{result=\"passed\",risk=\"verified\"}"), 7);
	assert_int_equal(value_of(t,
	    "imperai_snow_outcomes_total{result=\"failed\",risk=\"high\"}"), 0);
	assert_int_equal(value_of(t, "imperai_snow_fields_injected_total"), 9);
	assert_int_equal(value_of(t,
	    "imperai_snow_http_requests_total{service=\"servicenow\",code=\"2xx\"}"), 17);
	assert_int_equal(value_of(t,
	    "imperai_snow_http_requests_total{service=\"servicenow\",code=\"error\"}"), 2);
	assert_int_equal(value_of(t, "imperai_snow_http_retries_total{service=\"servicenow\"}"), 3);
	assert_int_equal(value_of(t,
	    "imperai_snow_http_rate_limited_total{service=\"imperai\"}"), 4);
	assert_int_equal(value_of(t, "imperai_snow_outbox_entries"), 2);
	assert_int_equal(value_of(t, "imperai_snow_outbox_oldest_age_seconds"), 100);
	assert_int_equal(value_of(t, "imperai_snow_info{version=\"1.2.3\"}"), 1);
	free(t);
}

static void
test_poll_age_counts_from_the_start_until_a_poll_succeeded(void **state)
{
	struct metrics m;
	char *t;

	(void)state;
	sample_metrics(&m);
	t = metrics_format(&m);
	assert_int_equal(value_of(t,
	    "imperai_snow_last_poll_age_seconds{service=\"servicenow\"}"), 10);
	assert_int_equal(value_of(t,
	    "imperai_snow_last_poll_age_seconds{service=\"imperai\"}"), 1000);
	assert_int_equal(value_of(t,
	    "imperai_snow_last_poll_success_timestamp_seconds{service=\"imperai\"}"), 0);
	free(t);
}

static void
test_empty_outbox_has_age_zero(void **state)
{
	struct metrics m;
	char *t;

	(void)state;
	sample_metrics(&m);
	m.outbox = 0;
	m.outbox_oldest = 0;
	t = metrics_format(&m);
	assert_int_equal(value_of(t, "imperai_snow_outbox_oldest_age_seconds"), 0);
	free(t);
}

static void
test_label_values_are_escaped(void **state)
{
	static const struct metrics_table odd[] = { { .name = "we\"ird\\name\n", .seen = 1 } };
	struct metrics m;
	char *t;

	(void)state;
	sample_metrics(&m);
	m.tables = odd;
	m.ntables = 1;
	t = metrics_format(&m);
	assert_non_null(strstr(t, "{table=\"we\\\"ird\\\\name\\n\"} 1\n"));
	free(t);
}

static int
matches(regex_t *re, const char *line)
{
	return regexec(re, line, 0, NULL, 0) == 0;
}

/* Every line is HELP, TYPE or a sample of the family just announced;
 * HELP comes before TYPE, both before the samples; names are prefixed,
 * counters end in _total; no family is announced twice. */
static void
test_every_line_follows_the_text_format(void **state)
{
	struct metrics m;
	regex_t help, type, sample;
	char *t, *save = NULL, family[128] = "", *seen = xstrdup(" ");
	int have_help = 0, have_type = 0, nfam = 0;

	(void)state;
	sample_metrics(&m);
	t = metrics_format(&m);
	assert_int_equal(t[strlen(t) - 1], '\n');
	assert_int_equal(regcomp(&help, "^# HELP imperai_snow_[a-z_]+ [^\n]+$", REG_EXTENDED), 0);
	assert_int_equal(regcomp(&type, "^# TYPE imperai_snow_[a-z_]+ (counter|gauge)$",
	    REG_EXTENDED), 0);
	assert_int_equal(regcomp(&sample, "^imperai_snow_[a-z_]+(\\{[a-z_]+=\"([^\"\\\\]|\\\\.)*\""
	    "(,[a-z_]+=\"([^\"\\\\]|\\\\.)*\")*\\})? -?[0-9]+$", REG_EXTENDED), 0);
	for (char *l = strtok_r(t, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "# HELP ", 7) == 0) {
			char key[140], *next;

			assert_true(matches(&help, l));
			sscanf(l + 7, "%127s", family);
			snprintf(key, sizeof(key), " %s ", family);
			assert_null(strstr(seen, key));
			next = xprintf("%s%s ", seen, family);
			free(seen);
			seen = next;
			have_help = 1;
			have_type = 0;
			nfam++;
		} else if (strncmp(l, "# TYPE ", 7) == 0) {
			assert_true(have_help);
			assert_true(matches(&type, l));
			assert_int_equal(strncmp(l + 7, family, strlen(family)), 0);
			if (strstr(l, " counter") != NULL)
				assert_non_null(strstr(family, "_total"));
			have_type = 1;
		} else {
			assert_true(have_type);
			assert_true(matches(&sample, l));
			assert_int_equal(strncmp(l, family, strlen(family)), 0);
			assert_true(l[strlen(family)] == '{' || l[strlen(family)] == ' ');
		}
	}
	assert_true(nfam >= 15);
	regfree(&help);
	regfree(&type);
	regfree(&sample);
	free(seen);
	free(t);
}

static void
test_result_index_covers_final_statuses_only(void **state)
{
	(void)state;
	assert_int_equal(metrics_result_index(IMPERAI_PASSED), 0);
	assert_int_equal(metrics_result_index(IMPERAI_CANCELED), METRICS_NRESULTS - 1);
	assert_int_equal(metrics_result_index(IMPERAI_PENDING), -1);
	assert_int_equal(metrics_result_index(IMPERAI_IN_PROGRESS), -1);
}

static void
test_counts_add_sums_every_counter(void **state)
{
	struct metrics_counts a = { .tracked = 1, .actions_completed = 2, .writes = { 1, 0, 2 } };
	struct metrics_counts b = { .tracked = 3, .actions_failed = 1, .auto_resolved = 1,
	    .fields_injected = 2, .writes = { 0, 5, 1 } };

	(void)state;
	a.outcomes[1][3] = 5;
	b.outcomes[1][3] = 6;
	metrics_counts_add(&a, &b);
	assert_int_equal(a.tracked, 4);
	assert_int_equal(a.actions_completed, 2);
	assert_int_equal(a.actions_failed, 1);
	assert_int_equal(a.outcomes[1][3], 11);
	assert_int_equal(a.auto_resolved, 1);
	assert_int_equal(a.fields_injected, 2);
	assert_int_equal(a.writes[0], 1);
	assert_int_equal(a.writes[1], 5);
	assert_int_equal(a.writes[2], 3);
}

static void
test_peek_state_reads_the_state_not_a_lookalike_in_the_text(void **state)
{
	struct ticket t;
	enum tstate s = TS_UNTRACKED;
	char *enc;

	(void)state;
	ticket_init(&t, "incident", "0123456789abcdef0123456789abcdef");
	t.number = xstrdup("INC1\",\"state\":\"closed");
	t.short_description = xstrdup("\"state\":\"resolved\"");
	t.state = TS_LINK_SENT;
	enc = codec_ticket_encode(&t);
	assert_int_equal(codec_ticket_peek_state(enc, strlen(enc), &s), 0);
	assert_int_equal(s, TS_LINK_SENT);
	assert_int_equal(codec_ticket_peek_state("{\"v\":1}", 7, &s), -EINVAL);
	assert_int_equal(codec_ticket_peek_state("{\"state\":\"bogus\"}", 17, &s), -EINVAL);
	free(enc);
	ticket_free(&t);
}

static char *
read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	struct buf b;
	char chunk[512];
	size_t n;

	assert_non_null(f);
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	fclose(f);
	return buf_detach(&b);
}

static size_t
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void
test_write_file_replaces_the_file_world_readable_leaving_no_temp(void **state)
{
	char dir[] = "/tmp/test_metrics.XXXXXX";
	char *path, *cause = NULL, *got;
	struct stat st;
	mode_t old = umask(077);

	(void)state;
	assert_non_null(mkdtemp(dir));
	path = xprintf("%s/imperai-snow.prom", dir);
	assert_int_equal(metrics_write_file(path, "a 1\n", &cause), 0);
	assert_int_equal(metrics_write_file(path, "b 2\n", &cause), 0);
	umask(old);
	got = read_all(path);
	assert_string_equal(got, "b 2\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(count_entries(dir), 1);
	unlink(path);
	rmdir(dir);
	free(got);
	free(path);
}

static void
test_write_file_into_a_missing_directory_names_the_file(void **state)
{
	char *cause = NULL;
	int rc;

	(void)state;
	rc = metrics_write_file("/nonexistent-dir-imperai/x.prom", "a 1\n", &cause);
	assert_int_equal(rc, -ENOENT);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "/nonexistent-dir-imperai/x.prom"));
	free(cause);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_and_gauges_carry_their_values_and_labels),
		cmocka_unit_test(test_poll_age_counts_from_the_start_until_a_poll_succeeded),
		cmocka_unit_test(test_empty_outbox_has_age_zero),
		cmocka_unit_test(test_label_values_are_escaped),
		cmocka_unit_test(test_every_line_follows_the_text_format),
		cmocka_unit_test(test_result_index_covers_final_statuses_only),
		cmocka_unit_test(test_counts_add_sums_every_counter),
		cmocka_unit_test(test_peek_state_reads_the_state_not_a_lookalike_in_the_text),
		cmocka_unit_test(test_write_file_replaces_the_file_world_readable_leaving_no_temp),
		cmocka_unit_test(test_write_file_into_a_missing_directory_names_the_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
