/* Unit tests for lib/log.c: line format, escaping, levels, targets, masking. */

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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static char *
fmt_kv(const char *msg, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b);
	va_start(ap, msg);
	log_format_kv(&b, msg, ap);
	va_end(ap);
	return buf_detach(&b);
}

static void
assert_kv(const char *value, const char *expect)
{
	char *line = fmt_kv("m", "k", value, NULL);
	char *want = xprintf("m k=%s", expect);

	if (strcmp(line, want) != 0)
		fail_msg("value formatted as [%s], expected [%s]", line, want);
	free(want);
	free(line);
}

struct capture {
	enum log_level	 lvl[8];
	char		*line[8];
	int		 n;
};

static void
capture_sink(enum log_level lvl, const char *line, void *arg)
{
	struct capture *c = arg;

	if (c->n < 8) {
		c->lvl[c->n] = lvl;
		c->line[c->n++] = xstrdup(line);
	}
}

static void
capture_free(struct capture *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->line[i]);
	c->n = 0;
}

static int
log_reset(void **state)
{
	log_set_sink(NULL, NULL);
	unsetenv("JOURNAL_STREAM");
	log_init("test_log", LOG_TARGET_STDERR, 1);
	log_set_level(LOG_LVL_INFO);
	return 0;
}

static void
test_kv_line_is_message_then_pairs(void **state)
{
	char *line = fmt_kv("outcome recorded", "ticket", "INC0010001", "verification", "vr_81",
	    "result", "passed", NULL);

	assert_string_equal(line, "outcome recorded ticket=INC0010001 verification=vr_81 result=passed");
	free(line);
	line = fmt_kv("no pairs", NULL);
	assert_string_equal(line, "no pairs");
	free(line);
}

static void
test_kv_values_with_space_quote_or_equals_are_quoted_and_escaped(void **state)
{
	assert_kv("two words", "\"two words\"");
	assert_kv("a=b", "\"a=b\"");
	assert_kv("say \"hi\"", "\"say \\\"hi\\\"\"");
	assert_kv("C:\\dir", "\"C:\\\\dir\"");
	assert_kv("", "\"\"");
	assert_kv(NULL, "-");
	assert_kv("plain-value_1.2", "plain-value_1.2");
}

static void
test_kv_control_characters_keep_one_event_on_one_line(void **state)
{
	char *line;

	assert_kv("line1\nline2", "\"line1\\nline2\"");
	assert_kv("a\tb\rc", "\"a\\tb\\rc\"");
	assert_kv("bell\x07" "del\x7f" "esc\x1b", "\"bell\\x07del\\x7fesc\\x1b\"");
	line = fmt_kv("msg with\nnewline", "k", "v", NULL);
	assert_null(strchr(line, '\n'));
	assert_string_equal(line, "msg with\\nnewline k=v");
	free(line);
}

static void
test_kv_invalid_utf8_is_escaped_and_valid_utf8_kept(void **state)
{
	assert_kv("caf\xc3\xa9", "caf\xc3\xa9");
	assert_kv("\xe2\x82\xac" "5", "\xe2\x82\xac" "5");
	assert_kv("bad\xff", "\"bad\\xff\"");
	assert_kv("\xc3(", "\"\\xc3(\"");
	assert_kv("\xc0\x80", "\"\\xc0\\x80\"");
	assert_kv("\xed\xa0\x80", "\"\\xed\\xa0\\x80\"");
	assert_kv("cut\xe2\x82", "\"cut\\xe2\\x82\"");
}

static void
test_kv_long_value_is_cut_at_1024_bytes_without_splitting_a_character(void **state)
{
	char big[2000], *line;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	line = fmt_kv("m", "k", big, NULL);
	assert_int_equal(strlen(line), strlen("m k=") + 1024 + 3);
	assert_string_equal(line + strlen(line) - 4, "a...");
	free(line);
	/* A two-byte character starting at byte 1023 stays whole. */
	memcpy(big + 1023, "\xc3\xa9", 2);
	line = fmt_kv("m", "k", big, NULL);
	assert_int_equal(strlen(line), strlen("m k=") + 1025 + 3);
	assert_string_equal(line + strlen(line) - 5, "\xc3\xa9...");
	free(line);
	memset(big, 'a', sizeof(big) - 1);
	big[1024] = '\0';
	line = fmt_kv("m", "k", big, NULL);
	assert_null(strstr(line, "..."));
	free(line);
}

static void
test_keys_are_sanitised(void **state)
{
	char *line = fmt_kv("m", "risk level", "high", "", "x", NULL);

	assert_string_equal(line, "m risk_level=high _=x");
	free(line);
}

static void
test_levels_filter_lower_priority_messages(void **state)
{
	struct capture c = { .n = 0 };

	log_set_sink(capture_sink, &c);
	log_set_level(LOG_LVL_WARN);
	assert_int_equal(log_get_level(), LOG_LVL_WARN);
	log_kv(LOG_LVL_INFO, "dropped", NULL);
	log_debug("dropped %d", 1);
	log_notice("dropped");
	log_kv(LOG_LVL_WARN, "kept", "k", "v", NULL);
	log_errx("kept %d", 2);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.lvl[0], LOG_LVL_WARN);
	assert_string_equal(c.line[0], "kept k=v");
	assert_int_equal(c.lvl[1], LOG_LVL_ERR);
	assert_string_equal(c.line[1], "kept 2");
	capture_free(&c);
	log_set_level(LOG_LVL_DEBUG);
	log_debug("now %s", "shown");
	assert_int_equal(c.n, 1);
	assert_int_equal(c.lvl[0], LOG_LVL_DEBUG);
	capture_free(&c);
}

static void
test_log_warn_appends_strerror_and_keeps_errno(void **state)
{
	struct capture c = { .n = 0 };

	log_set_sink(capture_sink, &c);
	errno = ENOENT;
	log_warn("cannot open %s", "x.conf");
	assert_int_equal(errno, ENOENT);
	errno = EACCES;
	log_err("denied");
	errno = EACCES;
	log_warnx("no errno %s", "here");
	assert_int_equal(c.n, 3);
	assert_string_equal(c.line[0], "cannot open x.conf: No such file or directory");
	assert_string_equal(c.line[1], "denied: Permission denied");
	assert_string_equal(c.line[2], "no errno here");
	capture_free(&c);
}

static void
test_level_names_parse_and_print(void **state)
{
	enum log_level l;

	assert_int_equal(log_level_parse("err", &l), 0);
	assert_int_equal(l, LOG_LVL_ERR);
	assert_int_equal(log_level_parse("warning", &l), 0);
	assert_int_equal(l, LOG_LVL_WARN);
	assert_int_equal(log_level_parse("notice", &l), 0);
	assert_int_equal(l, LOG_LVL_NOTICE);
	assert_int_equal(log_level_parse("info", &l), 0);
	assert_int_equal(l, LOG_LVL_INFO);
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("verbose", &l), -EINVAL);
	assert_int_equal(log_level_parse("", &l), -EINVAL);
	assert_int_equal(log_level_parse(NULL, &l), -EINVAL);
	assert_string_equal(log_level_name(LOG_LVL_WARN), "warning");
	assert_string_equal(log_level_name(LOG_LVL_DEBUG), "debug");
	assert_string_equal(log_level_name((enum log_level)42), "unknown");
}

static void
test_fatalx_logs_and_exits_with_code(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct capture c = { .n = 0 };

		log_set_sink(capture_sink, &c);
		fatalx(3, "cannot continue: %s", "bad state");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 3);
}

static void
assert_mask(char *(*fn)(const char *), const char *in, const char *expect)
{
	char *out = fn(in);

	if (strcmp(out, expect) != 0)
		fail_msg("masked [%s] as [%s], expected [%s]", in ? in : "(null)", out, expect);
	free(out);
}

static void
test_mask_email_shapes(void **state)
{
	assert_mask(mask_email, "jane.doe@example.com", "j***e@e***.com");
	assert_mask(mask_email, "jd@example.com", "j*@e***.com");
	assert_mask(mask_email, "j@example.com", "*@e***.com");
	assert_mask(mask_email, "abc@mail.example.co.uk", "a***c@m***.uk");
	assert_mask(mask_email, "user@localhost", "u***r@l***");
	assert_mask(mask_email, "@example.com", "*@e***.com");
	assert_mask(mask_email, "user@", "u***r@***");
	assert_mask(mask_email, "a@b@example.org", "a***b@e***.org");
	assert_mask(mask_email, "\xc3\xa9lodie.\xc3\xa9@ex.fr", "\xc3\xa9***\xc3\xa9@e***.fr");
	assert_mask(mask_email, "no-at-sign", "***");
	assert_mask(mask_email, "", "");
	assert_mask(mask_email, NULL, "");
}

static void
test_mask_phone_shapes(void **state)
{
	assert_mask(mask_phone, "+1 555 123 4567", "+*********67");
	assert_mask(mask_phone, "555-123-4567", "********67");
	assert_mask(mask_phone, " +44 (20) 7946.0958", "+**********58");
	assert_mask(mask_phone, "12345", "***45");
	assert_mask(mask_phone, "1234", "****");
	assert_mask(mask_phone, "12", "**");
	assert_mask(mask_phone, "call me", "***");
	assert_mask(mask_phone, "", "");
	assert_mask(mask_phone, NULL, "");
}

static void
test_mask_recipient_picks_by_at_sign(void **state)
{
	assert_mask(mask_recipient, "jane.doe@example.com", "j***e@e***.com");
	assert_mask(mask_recipient, "+1 555 123 4567", "+*********67");
	assert_mask(mask_recipient, NULL, "");
}

/* Whatever the shape, PII-looking input never comes back unchanged. */
static void
test_mask_never_returns_pii_unchanged(void **state)
{
	static const char *const in[] = {
		"a@b", "*@***", "*@****", "a*@b***", "x***y@z***.com", "@", "@@", "12345",
		"*****@****", "***@***", "+12345", "1@2.34567", "a@b.c",
	};

	for (size_t i = 0; i < ARRAY_SIZE(in); i++) {
		char *m = mask_recipient(in[i]);

		if (strcmp(m, in[i]) == 0)
			fail_msg("%s returned unchanged", in[i]);
		free(m);
	}
}

/* Points fd 2 at a fresh file; returns the saved stderr. */
static int
stderr_to_file(const char *path, struct stat *st)
{
	int saved = dup(STDERR_FILENO), fd;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	assert_int_equal(fstat(STDERR_FILENO, st), 0);
	return saved;
}

static char *
stderr_restore(int saved, const char *path)
{
	char buf[512];
	ssize_t n;
	int fd;

	dup2(saved, STDERR_FILENO);
	close(saved);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(path);
	assert_true(n >= 0);
	buf[n] = '\0';
	return xstrdup(buf);
}

static void
test_stderr_under_journald_gets_priority_prefix_and_no_timestamp(void **state)
{
	char path[] = "/tmp/test_log.journal.XXXXXX", env[64], *out;
	struct stat st;
	int saved;

	close(mkstemp(path));
	saved = stderr_to_file(path, &st);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	log_init("test_log", LOG_TARGET_STDERR, 1);
	log_kv(LOG_LVL_WARN, "outcome recorded", "ticket", "INC0010001", NULL);
	log_errx("second");
	out = stderr_restore(saved, path);
	assert_string_equal(out, "<4>outcome recorded ticket=INC0010001\n<3>second\n");
	free(out);
}

#ifndef HAVE_SYSTEMD
static void
test_auto_target_under_journald_uses_prefixed_stderr(void **state)
{
	char path[] = "/tmp/test_log.auto.XXXXXX", env[64], *out;
	struct stat st;
	int saved;

	close(mkstemp(path));
	saved = stderr_to_file(path, &st);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	log_init("test_log", LOG_TARGET_AUTO, 0);
	log_kv(LOG_LVL_INFO, "started", NULL);
	out = stderr_restore(saved, path);
	assert_string_equal(out, "<6>started\n");
	free(out);
}
#endif

static void
test_stderr_not_journald_gets_timestamp_and_level(void **state)
{
	char path[] = "/tmp/test_log.plain.XXXXXX", *out;
	struct stat st;
	int saved;

	close(mkstemp(path));
	saved = stderr_to_file(path, &st);
	/* Another file's stream: a JOURNAL_STREAM inherited from a parent. */
	setenv("JOURNAL_STREAM", "1:2", 1);
	log_init("test_log", LOG_TARGET_AUTO, 1);
	log_kv(LOG_LVL_WARN, "hello", "k", "v", NULL);
	out = stderr_restore(saved, path);
	assert_int_equal(strlen(out), 21 + strlen("warning hello k=v\n"));
	assert_true(out[4] == '-' && out[7] == '-' && out[10] == 'T' && out[13] == ':' &&
	    out[19] == 'Z' && out[20] == ' ');
	assert_string_equal(out + 21, "warning hello k=v\n");
	free(out);
}

static char *
fmt_journal(enum log_level lvl, const char *msg, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b);
	va_start(ap, msg);
	log_format_journal(&b, lvl, msg, ap);
	va_end(ap);
	return buf_detach(&b);
}

static void
test_journal_fields_are_upper_cased_keys(void **state)
{
	char *f;

	log_init("imperai-snowd", LOG_TARGET_STDERR, 1);
	f = fmt_journal(LOG_LVL_INFO, "outcome recorded", "ticket", "INC0010001",
	    "verification", "vr_81", "risk-level", "high", "2fa", "yes", "message", "x",
	    "_pid", "1", "empty", NULL, NULL);
	assert_string_equal(f,
	    "MESSAGE=outcome recorded ticket=INC0010001 verification=vr_81 risk-level=high "
	    "2fa=yes message=x _pid=1 empty=-\n"
	    "PRIORITY=6\n"
	    "SYSLOG_IDENTIFIER=imperai-snowd\n"
	    "TICKET=INC0010001\n"
	    "VERIFICATION=vr_81\n"
	    "RISK_LEVEL=high\n"
	    "KV_2FA=yes\n"
	    "KV_MESSAGE=x\n"
	    "KV__PID=1\n"
	    "EMPTY=-\n");
	free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kv_line_is_message_then_pairs),
		cmocka_unit_test(test_kv_values_with_space_quote_or_equals_are_quoted_and_escaped),
		cmocka_unit_test(test_kv_control_characters_keep_one_event_on_one_line),
		cmocka_unit_test(test_kv_invalid_utf8_is_escaped_and_valid_utf8_kept),
		cmocka_unit_test(test_kv_long_value_is_cut_at_1024_bytes_without_splitting_a_character),
		cmocka_unit_test(test_keys_are_sanitised),
		cmocka_unit_test_teardown(test_levels_filter_lower_priority_messages, log_reset),
		cmocka_unit_test_teardown(test_log_warn_appends_strerror_and_keeps_errno, log_reset),
		cmocka_unit_test(test_level_names_parse_and_print),
		cmocka_unit_test(test_fatalx_logs_and_exits_with_code),
		cmocka_unit_test(test_mask_email_shapes),
		cmocka_unit_test(test_mask_phone_shapes),
		cmocka_unit_test(test_mask_recipient_picks_by_at_sign),
		cmocka_unit_test(test_mask_never_returns_pii_unchanged),
		cmocka_unit_test_teardown(test_stderr_under_journald_gets_priority_prefix_and_no_timestamp,
		    log_reset),
#ifndef HAVE_SYSTEMD
		cmocka_unit_test_teardown(test_auto_target_under_journald_uses_prefixed_stderr,
		    log_reset),
#endif
		cmocka_unit_test_teardown(test_stderr_not_journald_gets_timestamp_and_level, log_reset),
		cmocka_unit_test_teardown(test_journal_fields_are_upper_cased_keys, log_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
