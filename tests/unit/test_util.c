/* Unit tests for lib/util.c. */

#include <errno.h>
#include <fcntl.h>
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

#include "util.h"

static void
test_buf_grows_and_stays_nul_terminated(void **state)
{
	struct buf b;

	buf_init(&b);
	for (int i = 0; i < 100; i++)
		buf_addf(&b, "%02d", i);
	buf_addc(&b, '!');
	buf_adds(&b, "end");
	buf_add(&b, "xyz", 2);
	assert_int_equal(b.len, 200 + 1 + 3 + 2);
	assert_int_equal(strlen(b.data), b.len);
	assert_memory_equal(b.data, "000102", 6);
	assert_string_equal(b.data + 200, "!endxy");
	assert_true(b.cap > b.len);
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
}

static void
test_buf_reset_keeps_memory_and_detach_reinitialises(void **state)
{
	struct buf b;
	char *p;
	size_t cap;

	buf_init(&b);
	buf_reset(&b);
	p = buf_detach(&b);
	assert_string_equal(p, "");
	free(p);
	buf_adds(&b, "hello");
	cap = b.cap;
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_int_equal(b.cap, cap);
	buf_adds(&b, "again");
	p = buf_detach(&b);
	assert_string_equal(p, "again");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	free(p);
}

static void
test_errlist_collects_formatted_messages(void **state)
{
	struct errlist e = { NULL, 0 };

	errlist_add(&e, "%s:%d: %s: unknown key", "a.conf", 3, "foo");
	errlist_add(&e, "second");
	assert_int_equal(e.n, 2);
	assert_string_equal(e.msg[0], "a.conf:3: foo: unknown key");
	assert_string_equal(e.msg[1], "second");
	errlist_free(&e);
	assert_int_equal(e.n, 0);
	assert_null(e.msg);
}

static void
test_xprintf_and_str_helpers(void **state)
{
	char *s = xprintf("%s-%d", "a", 42), *d = NULL;

	assert_string_equal(s, "a-42");
	free(s);
	s = xstrndup("abcdef", 3);
	assert_string_equal(s, "abc");
	free(s);
	str_replace(&d, "one");
	str_replace(&d, "two");
	assert_string_equal(d, "two");
	str_replace(&d, NULL);
	assert_null(d);
	assert_true(str_eq(NULL, NULL));
	assert_false(str_eq("a", NULL));
	assert_false(str_eq(NULL, "a"));
	assert_true(str_eq("a", "a"));
	assert_false(str_eq("a", "b"));
}

static void
test_snow_time_round_trips(void **state)
{
	static const char *const good[] = {
		"1970-01-01 00:00:00", "2024-02-29 23:59:59", "2000-02-29 12:00:00",
		"2023-12-31 00:00:01", "2038-01-19 03:14:08", "2100-03-01 00:00:00",
	};
	char out[20];
	int64_t t;

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		assert_int_equal(util_parse_snow_time(good[i], &t), 0);
		util_format_snow_time(t, out);
		assert_string_equal(out, good[i]);
	}
	assert_int_equal(util_parse_snow_time("1970-01-02 00:00:01", &t), 0);
	assert_int_equal(t, 86401);
	assert_int_equal(util_parse_snow_time("2024-03-01 00:00:00", &t), 0);
	assert_int_equal(t, 1709251200);
}

static void
test_snow_time_rejects_impossible_dates_and_junk(void **state)
{
	static const char *const bad[] = {
		"2024-02-30 00:00:00", "2023-02-29 00:00:00", "1900-02-29 00:00:00",
		"2024-04-31 00:00:00", "2024-13-01 00:00:00", "2024-00-10 00:00:00",
		"2024-01-00 00:00:00", "2024-01-01 24:00:00", "2024-01-01 23:60:00",
		"2024-01-01T00:00:00", "2024-01-01 00:00:00Z", "2024-01-01 00:00",
		"2024-1-01 00:00:00", "2024-01-01 0a:00:00", "", "garbage",
		"2024-01-01 00:00:00 ",
	};
	int64_t t = 7;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(util_parse_snow_time(bad[i], &t), -EINVAL);
	assert_int_equal(t, 7);
}

static void
test_rfc3339_offsets_fractions_and_round_trip(void **state)
{
	char out[21];
	int64_t t, u;

	assert_int_equal(util_parse_rfc3339("2024-05-01T12:00:00Z", &t), 0);
	util_format_rfc3339(t, out);
	assert_string_equal(out, "2024-05-01T12:00:00Z");
	assert_int_equal(util_parse_rfc3339("2024-05-01t12:00:00.123456z", &u), 0);
	assert_int_equal(u, t);
	assert_int_equal(util_parse_rfc3339("2024-05-01T14:00:00+02:00", &u), 0);
	assert_int_equal(u, t);
	assert_int_equal(util_parse_rfc3339("2024-05-01T06:30:00-05:30", &u), 0);
	assert_int_equal(u, t);
	assert_int_equal(util_parse_rfc3339("2024-05-01T12:00:00-00:00", &u), 0);
	assert_int_equal(u, t);
	/* An offset carries the instant over a day and a leap day. */
	assert_int_equal(util_parse_rfc3339("2024-03-01T01:00:00+02:00", &u), 0);
	util_format_rfc3339(u, out);
	assert_string_equal(out, "2024-02-29T23:00:00Z");
}

static void
test_rfc3339_rejects_missing_or_malformed_zone(void **state)
{
	static const char *const bad[] = {
		"2024-05-01T12:00:00", "2024-05-01 12:00:00Z", "2024-05-01T12:00:00+2:00",
		"2024-05-01T12:00:00+0200", "2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+01:60",
		"2024-05-01T12:00:00.Z", "2024-02-30T12:00:00Z", "2024-05-01T12:00:00Zjunk",
		"2024-05-01T12:00:00+01:00x", "",
	};
	int64_t t;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(util_parse_rfc3339(bad[i], &t), -EINVAL);
}

static void
test_duration_units_and_rejects(void **state)
{
	static const char *const bad[] = { "", "s", "-5", "5x", "5ms", "1.5h", " 5", "5 ", "m" };
	int64_t v;

	assert_int_equal(util_parse_duration("30s", &v), 0);
	assert_int_equal(v, 30);
	assert_int_equal(util_parse_duration("15m", &v), 0);
	assert_int_equal(v, 900);
	assert_int_equal(util_parse_duration("24h", &v), 0);
	assert_int_equal(v, 86400);
	assert_int_equal(util_parse_duration("7d", &v), 0);
	assert_int_equal(v, 604800);
	assert_int_equal(util_parse_duration("45", &v), 0);
	assert_int_equal(v, 45);
	assert_int_equal(util_parse_duration("0", &v), 0);
	assert_int_equal(v, 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(util_parse_duration(bad[i], &v), -EINVAL);
	assert_int_equal(util_parse_duration(NULL, &v), -EINVAL);
	assert_int_equal(util_parse_duration("9223372036854775807d", &v), -ERANGE);
	assert_int_equal(util_parse_duration("99999999999999999999", &v), -EINVAL);
}

static void
test_utf8_accepts_valid_sequences(void **state)
{
	static const char *const good[] = {
		"", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
		"\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xee\x80\x80", "\xc2\x80",
	};

	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		assert_true(util_utf8_valid(good[i], strlen(good[i])));
}

static void
test_utf8_rejects_overlongs_surrogates_truncation_and_nul(void **state)
{
	static const char *const bad[] = {
		"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80",
		"\xf0\x8f\xbf\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf4\x90\x80\x80",
		"\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xff", "\x80", "abc\xbf",
		"\xc3", "ok\xe2\x82", "\xf0\x9f\x98", "\xc3(", "\xe2\x28\xa1",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(util_utf8_valid(bad[i], strlen(bad[i])));
	assert_false(util_utf8_valid("a\0b", 3));
	/* The length bounds the check: a sequence cut by len is truncated. */
	assert_false(util_utf8_valid("\xc3\xa9", 1));
	assert_true(util_utf8_valid("ab\xc3\xa9zz", 4));
}

static void
test_url_split_schemes_ports_paths(void **state)
{
	char *scheme, *host, *path;
	int port;

	assert_int_equal(util_url_split("https://Dev1234.Service-Now.com", &scheme, &host,
	    &port, &path), 0);
	assert_string_equal(scheme, "https");
	assert_string_equal(host, "dev1234.service-now.com");
	assert_int_equal(port, 443);
	assert_string_equal(path, "/");
	free(scheme), free(host), free(path);
	assert_int_equal(util_url_split("http://127.0.0.1:8080/api/now?x=1", &scheme, &host,
	    &port, &path), 0);
	assert_string_equal(scheme, "http");
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 8080);
	assert_string_equal(path, "/api/now?x=1");
	free(scheme), free(host), free(path);
	assert_int_equal(util_url_split("http://[::1]:9000/v1", NULL, &host, &port, NULL), 0);
	assert_string_equal(host, "[::1]");
	assert_int_equal(port, 9000);
	free(host);
	assert_int_equal(util_url_split("http://[::1]/", NULL, NULL, &port, NULL), 0);
	assert_int_equal(port, 80);
	assert_int_equal(util_url_split("https://h:65535", NULL, NULL, &port, NULL), 0);
	assert_int_equal(port, 65535);
}

static void
test_url_split_refuses_userinfo_bad_ports_and_schemes(void **state)
{
	static const char *const bad[] = {
		"ftp://host/", "host/path", "HTTP//host", "https://", "https:///path",
		"https://user@host/", "https://user:pass@host/", "https://host:80@evil/",
		"https://[::1]@evil/", "https://[::1]x/", "https://[::1", "https://host:0/",
		"https://host:65536/", "https://host:/", "https://host:abc/", "https://host:80x/",
		"https://host: 80/", "https://host:+80/", "https://host:-1/",
	};
	char *host = NULL;
	int port;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (util_url_split(bad[i], NULL, &host, &port, NULL) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
		assert_null(host);
	}
}

static void
test_urlencode_keeps_only_unreserved_characters(void **state)
{
	char *e;

	(void)state;
	e = util_urlencode("aZ09-._~ ^=>,&?/%+#\xc3\xa9");
	assert_string_equal(e, "aZ09-._~%20%5E%3D%3E%2C%26%3F%2F%25%2B%23%C3%A9");
	free(e);
	e = util_urlencode("");
	assert_string_equal(e, "");
	free(e);
}

static void
test_token_is_lowercase_digits_underscore_or_an_extra_character(void **state)
{
	(void)state;
	assert_true(util_token_ok("u_imperai_2", ""));
	assert_true(util_token_ok("caller_id.email", "."));
	assert_false(util_token_ok("", ""));
	assert_false(util_token_ok("caller_id.email", ""));
	assert_false(util_token_ok("Incident", ""));
	assert_false(util_token_ok("a-b", "."));
	assert_false(util_token_ok("a b", ""));
	assert_false(util_token_ok("\xc3\xa9", ""));
}

static void
test_loopback_detection(void **state)
{
	static const char *const yes[] = {
		"localhost", "127.0.0.1", "127.1.2.3", "127.255.255.255", "::1", "[::1]",
	};
	static const char *const no[] = {
		"128.0.0.1", "10.0.0.1", "127.0.0.1.evil.com", "localhost.evil.com",
		"127.evil", "127.0.0.1.5", "127.0.0.256", "::2", "[::2]", "", "evil127.0.0.1",
		"0.0.0.0",
	};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (!util_host_is_loopback(yes[i]))
			fail_msg("%s not loopback", yes[i]);
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (util_host_is_loopback(no[i]))
			fail_msg("%s taken for loopback", no[i]);
	assert_false(util_host_is_loopback(NULL));
}

static char *
write_file(const char *dir, const char *name, const char *content, size_t len, mode_t mode)
{
	char *path = xprintf("%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

struct tmpdir {
	char	path[64];
};

static int
tmpdir_setup(void **state)
{
	struct tmpdir *t = xcalloc(1, sizeof(*t));

	snprintf(t->path, sizeof(t->path), "/tmp/test_util.XXXXXX");
	if (mkdtemp(t->path) == NULL)
		return -1;
	*state = t;
	return 0;
}

static int
tmpdir_teardown(void **state)
{
	struct tmpdir *t = *state;
	char *cmd = xprintf("rm -rf '%s'", t->path);
	int rc = system(cmd);

	free(cmd);
	free(t);
	return rc == 0 ? 0 : -1;
}

static void
test_secret_file_0600_read_and_newline_stripped(void **state)
{
	struct tmpdir *t = *state;
	char *path, *secret = NULL, *cause = NULL;

	path = write_file(t->path, "s1", "hunter2\n", 8, 0600);
	assert_int_equal(secret_read_file(path, &secret, &cause), 0);
	assert_null(cause);
	assert_string_equal(secret, "hunter2");
	secret_free(secret);
	free(path);
	path = write_file(t->path, "s2", "tok\r\n", 5, 0400);
	assert_int_equal(secret_read_file(path, &secret, &cause), 0);
	assert_string_equal(secret, "tok");
	secret_free(secret);
	free(path);
	/* Only one trailing newline goes; the rest is the secret's. */
	path = write_file(t->path, "s3", "a b\n\n", 5, 0600);
	assert_int_equal(secret_read_file(path, &secret, &cause), 0);
	assert_string_equal(secret, "a b\n");
	secret_free(secret);
	free(path);
}

static void
test_secret_file_readable_by_group_is_refused_with_chmod_hint(void **state)
{
	struct tmpdir *t = *state;
	char *path, *secret = NULL, *cause = NULL;

	path = write_file(t->path, "s", "hunter2\n", 8, 0640);
	assert_int_equal(secret_read_file(path, &secret, &cause), -EPERM);
	assert_null(secret);
	assert_non_null(strstr(cause, "chmod 600"));
	assert_non_null(strstr(cause, path));
	assert_non_null(strstr(cause, "0640"));
	free(cause);
	free(path);
	path = write_file(t->path, "o", "x", 1, 0604);
	assert_int_equal(secret_read_file(path, &secret, &cause), -EPERM);
	free(cause);
	free(path);
}

static void
test_secret_file_empty_missing_or_not_regular_is_refused(void **state)
{
	struct tmpdir *t = *state;
	char *path, *secret = NULL, *cause = NULL;

	path = write_file(t->path, "e", "", 0, 0600);
	assert_int_equal(secret_read_file(path, &secret, &cause), -EINVAL);
	assert_non_null(strstr(cause, "empty"));
	free(cause);
	free(path);
	path = write_file(t->path, "n", "\n", 1, 0600);
	assert_int_equal(secret_read_file(path, &secret, &cause), -EINVAL);
	free(cause);
	free(path);
	path = write_file(t->path, "z", "ab\0cd", 5, 0600);
	assert_int_equal(secret_read_file(path, &secret, &cause), -EINVAL);
	free(cause);
	free(path);
	path = xprintf("%s/missing", t->path);
	assert_int_equal(secret_read_file(path, &secret, &cause), -ENOENT);
	assert_non_null(strstr(cause, path));
	free(cause);
	free(path);
	assert_int_equal(secret_read_file(t->path, &secret, &cause), -EINVAL);
	free(cause);
	assert_null(secret);
}

static void
test_secret_dup_copies_and_free_accepts_null(void **state)
{
	char *s = secret_dup("abcdef", 3);

	assert_string_equal(s, "abc");
	secret_free(s);
	secret_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_grows_and_stays_nul_terminated),
		cmocka_unit_test(test_buf_reset_keeps_memory_and_detach_reinitialises),
		cmocka_unit_test(test_errlist_collects_formatted_messages),
		cmocka_unit_test(test_xprintf_and_str_helpers),
		cmocka_unit_test(test_snow_time_round_trips),
		cmocka_unit_test(test_snow_time_rejects_impossible_dates_and_junk),
		cmocka_unit_test(test_rfc3339_offsets_fractions_and_round_trip),
		cmocka_unit_test(test_rfc3339_rejects_missing_or_malformed_zone),
		cmocka_unit_test(test_duration_units_and_rejects),
		cmocka_unit_test(test_utf8_accepts_valid_sequences),
		cmocka_unit_test(test_utf8_rejects_overlongs_surrogates_truncation_and_nul),
		cmocka_unit_test(test_url_split_schemes_ports_paths),
		cmocka_unit_test(test_url_split_refuses_userinfo_bad_ports_and_schemes),
		cmocka_unit_test(test_urlencode_keeps_only_unreserved_characters),
		cmocka_unit_test(test_token_is_lowercase_digits_underscore_or_an_extra_character),
		cmocka_unit_test(test_loopback_detection),
		cmocka_unit_test_setup_teardown(test_secret_file_0600_read_and_newline_stripped,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_secret_file_readable_by_group_is_refused_with_chmod_hint,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_secret_file_empty_missing_or_not_regular_is_refused,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(test_secret_dup_copies_and_free_accepts_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
