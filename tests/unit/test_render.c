/* Tests for lib/render.c: the field per state and the work note per tag
 * against golden files, escaping, masking, link checks and the revision tag.
 *
 * Golden files: $top_srcdir/tests/data/render/NAME.golden (top_srcdir is set
 * by make check; by hand, "..", "." and "../.." are tried).  UPDATE_GOLDEN=1
 * rewrites them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "engine.h"
#include "imperai.h"
#include "render.h"
#include "util.h"

#define T0		INT64_C(1772366400)	/* 2026-03-01 12:00:00 UTC */
#define SYS_ID		"46d44a5fa9fe198101b5a8b5de1e3e13"
#define SEND_URL	"https://verify.imper.ai/send/vr_81?token=abc&lang=en"
#define DETAILS_URL	"https://verify.imper.ai/requests/vr_81"

static const char *const hosts[] = { "verify.imper.ai", "127.0.0.1" };
static const struct render_ctx rc = {
	.link_hosts = hosts, .nlink_hosts = 2, .risk_verified_max = 3, .risk_medium_max = 6,
};

static const char *
golden_dir(void)
{
	static char dir[4096];
	const char *top = getenv("top_srcdir");
	const char *cands[] = { top, "..", ".", "../.." };
	struct stat st;

	for (size_t i = 0; i < ARRAY_SIZE(cands); i++) {
		if (cands[i] == NULL || *cands[i] == '\0')
			continue;
		snprintf(dir, sizeof(dir), "%s/tests/data/render", cands[i]);
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			return dir;
	}
	fail_msg("tests/data/render not found: set top_srcdir");
	return NULL;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	fclose(f);
	*len = b.len;
	return buf_detach(&b);
}

/* Compares actual with NAME.golden byte for byte (UPDATE_GOLDEN=1 rewrites it). */
static void
check_golden(const char *name, const char *actual)
{
	char path[4200];
	const char *upd = getenv("UPDATE_GOLDEN");
	char *want;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/%s.golden", golden_dir(), name);
	if (upd != NULL && strcmp(upd, "1") == 0) {
		FILE *f = fopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(actual, 1, strlen(actual), f), strlen(actual));
		assert_int_equal(fclose(f), 0);
		return;
	}
	want = read_file(path, &len);
	if (want == NULL)
		fail_msg("%s: missing (run with UPDATE_GOLDEN=1 to create it)", path);
	if (len != strlen(actual) || memcmp(want, actual, len) != 0) {
		print_error("%s differs.\n--- golden\n%s\n--- actual\n%s\n", path, want, actual);
		free(want);
		fail();
	}
	free(want);
}

/* A ticket of generation 1 whose request vr_81 exists. */
static void
fixture(struct ticket *t, enum tstate st, uint32_t revision)
{
	ticket_init(t, "incident", SYS_ID);
	t->number = xstrdup("INC0010001");
	t->flow = xstrdup("password-reset");
	t->generation = 1;
	t->revision = revision;
	t->gen_reason = xstrdup("new");
	t->request_id = xstrdup("vr_81");
	t->v.id = xstrdup("vr_81");
	t->v.status = IMPERAI_PENDING;
	t->v.send_link_url = xstrdup(SEND_URL);
	t->v.details_url = xstrdup(DETAILS_URL);
	t->v.expires_at = T0 + 86400;
	t->v.updated_at = T0;
	engine_enter_state(t, TS_AWAITING_REQUEST, "new", T0, NULL);
	if (st != TS_AWAITING_REQUEST)
		engine_enter_state(t, st, "test", T0, NULL);
}

static void
sent(struct ticket *t, enum imperai_status s)
{
	t->v.status = s;
	t->v.channel = xstrdup("email");
	t->v.recipient_masked = xstrdup("j***e@e***.com");
	t->v.initiated_by = xstrdup("Beth Anglin");
	t->sent_at = T0 + 60;
	t->v.updated_at = T0 + 60;
}

static void
outcome(struct ticket *t, enum imperai_status s, int risk, const char *rec)
{
	sent(t, s);
	t->v.risk_score = risk;
	t->v.recommendation = rec ? xstrdup(rec) : NULL;
	t->v.completed_at = T0 + 300;
	t->v.updated_at = T0 + 300;
	t->v.action.type = xstrdup("password_reset");
	t->v.action.status = IMPERAI_ACTION_PENDING;
}

static void
golden_field(const char *name, struct ticket *t)
{
	char *html = render_field_html(&rc, t);

	check_golden(name, html);
	free(html);
	ticket_free(t);
}

static void
test_field_link_ready_shows_send_link_and_expiry(void **state)
{
	struct ticket t;
	char *html;

	(void)state;
	fixture(&t, TS_LINK_READY, 1);
	html = render_field_html(&rc, &t);
	assert_non_null(strstr(html, "<a href=\"https://verify.imper.ai/send/vr_81?token=abc&amp;"
	    "lang=en\">imper.ai - Send Verification link</a>"));
	assert_non_null(strstr(html, "Link expires 2026-03-02 12:00:00 UTC"));
	/* the link is the headline; the revision tag comes last, small */
	assert_int_equal(strncmp(html, "<h3><a href=", 12), 0);
	assert_non_null(strstr(html, "<p><small>imperai-snow ref 1.1</small></p>"));
	assert_int_equal(strcmp(strstr(html, "<p><small>"), "<p><small>imperai-snow ref 1.1"
	    "</small></p>"), 0);
	assert_null(strstr(html, "imper.ai Verification"));	/* the form's label says it */
	free(html);
	golden_field("field_link_ready", &t);
}

static void
test_unreadable_requester_field_and_note_say_what_to_grant(void **state)
{
	struct ticket t;
	struct render_shown shown;
	char *html, *note;

	(void)state;
	fixture(&t, TS_AWAITING_REQUEST, 1);
	free(t.request_id);
	t.request_id = NULL;
	t.requester_unreadable = 1;
	html = render_field_html(&rc, &t);
	assert_non_null(strstr(html, "<h3>Verification not started</h3><p>The requester "
	    "could not be read, so no verification was requested.<br>Grant the integration user "
	    "read access to the requester's Name, Email and User ID (sys_user.name, "
	    "sys_user.email, sys_user.user_name).</p>"));
	assert_null(strstr(html, "Registering"));
	assert_int_equal(render_parse_field(html, NULL, &shown), 0);
	assert_int_equal(shown.state, TS_AWAITING_REQUEST);
	render_shown_free(&shown);
	note = render_work_note(&rc, &t, "requester_unreadable", NULL);
	assert_int_equal(strncmp(note, "[imper.ai requester_unreadable 1.1]\nVerification not "
	    "started: the requester could not be read", 78), 0);
	assert_non_null(strstr(note, "sys_user.user_name"));
	assert_null(strstr(note, "  "));	/* no empty placeholder anywhere */
	free(note);
	free(html);
	ticket_free(&t);
}

static void
test_field_golden_per_state(void **state)
{
	struct ticket t;

	(void)state;
	fixture(&t, TS_AWAITING_REQUEST, 0);
	golden_field("field_awaiting_request", &t);

	fixture(&t, TS_LINK_SENT, 2);
	sent(&t, IMPERAI_LINK_SENT);
	golden_field("field_link_sent", &t);

	fixture(&t, TS_IN_PROGRESS, 3);
	sent(&t, IMPERAI_IN_PROGRESS);
	golden_field("field_in_progress", &t);

	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 2, "User verified successfully - Proceed with action");
	golden_field("field_passed", &t);

	fixture(&t, TS_ACTION_DONE, 5);
	outcome(&t, IMPERAI_PASSED, 2, "User verified successfully - Proceed with action");
	t.v.action.status = IMPERAI_ACTION_COMPLETED;
	t.v.action.completed_at = T0 + 600;
	golden_field("field_passed_action", &t);

	fixture(&t, TS_RESOLVED, 5);
	outcome(&t, IMPERAI_PASSED, 2, "User verified successfully - Proceed with action");
	t.v.action.status = IMPERAI_ACTION_COMPLETED;
	t.v.action.completed_at = T0 + 600;
	t.resolve_revision = 5;
	t.resolved_at = T0 + 610;
	golden_field("field_resolved", &t);

	fixture(&t, TS_FAILED, 4);
	outcome(&t, IMPERAI_FAILED, 9, "High risk detected - Reject this request");
	t.v.action.status = IMPERAI_ACTION_NONE;
	golden_field("field_failed_high_risk", &t);

	fixture(&t, TS_TIMED_OUT, 4);
	outcome(&t, IMPERAI_TIMED_OUT, -1, NULL);
	t.v.action.status = IMPERAI_ACTION_NONE;
	golden_field("field_timed_out", &t);

	fixture(&t, TS_NOT_ENOUGH_QUESTIONS, 4);
	outcome(&t, IMPERAI_NOT_ENOUGH_QUESTIONS, 5, "Verify the requester another way");
	t.v.action.status = IMPERAI_ACTION_NONE;
	golden_field("field_not_enough_questions", &t);

	fixture(&t, TS_AWAITING_REQUEST, 2);
	t.v.status = IMPERAI_CANCELED;
	engine_enter_state(&t, TS_CANCELED, "ticket_ended", T0, NULL);
	golden_field("field_canceled", &t);

	fixture(&t, TS_UNTRACKED, 3);
	golden_field("field_untracked", &t);

	/* attempt 2 after a timed-out attempt 1: a fresh link */
	fixture(&t, TS_LINK_READY, 6);
	t.generation = 2;
	str_replace(&t.gen_reason, "retry");
	t.attempt = 2;
	t.attempt_max = 3;
	t.nattempts = 1;
	t.attempts[0] = (struct ticket_attempt){ .generation = 1, .attempt = 1,
	    .request_id = xstrdup("vr_80"), .status = IMPERAI_TIMED_OUT, .at = T0 + 900 };
	golden_field("field_attempt_2", &t);

	/* the last attempt ended unfinished */
	fixture(&t, TS_NOT_ENOUGH_QUESTIONS, 9);
	t.generation = 3;
	str_replace(&t.gen_reason, "retry");
	t.attempt = 3;
	t.attempt_max = 3;
	t.retry_exhausted = 1;
	outcome(&t, IMPERAI_NOT_ENOUGH_QUESTIONS, -1, NULL);
	t.v.action.status = IMPERAI_ACTION_NONE;
	golden_field("field_no_attempt_left", &t);
}

static void
test_field_after_requester_change_says_reverification_required(void **state)
{
	struct ticket t;
	char *html;

	(void)state;
	fixture(&t, TS_LINK_READY, 6);
	t.generation = 2;
	str_replace(&t.gen_reason, "requester_changed");
	html = render_field_html(&rc, &t);
	assert_non_null(strstr(html, "Re-verification required"));
	assert_non_null(strstr(html, "imperai-snow ref 2.6"));
	free(html);
	golden_field("field_requester_changed", &t);
}

static void
test_field_outcome_lines(void **state)
{
	struct ticket t;
	char *html;

	(void)state;
	fixture(&t, TS_ACTION_DONE, 5);
	outcome(&t, IMPERAI_PASSED, 5, "Proceed");
	t.v.action.status = IMPERAI_ACTION_COMPLETED;
	t.v.action.completed_at = T0 + 600;
	html = render_field_html(&rc, &t);
	assert_non_null(strstr(html, "Verification Outcome: Passed"));
	assert_non_null(strstr(html, "Risk level: Medium<br>"));
	assert_non_null(strstr(html, "Verification ID: <a href=\"" DETAILS_URL "\">vr_81</a>"));
	assert_non_null(strstr(html, "Outcome time: 2026-03-01 12:05:00 UTC"));
	assert_non_null(strstr(html, "Password reset completed 2026-03-01 12:10:00 UTC"));
	assert_non_null(strstr(html, "Recommendation: Proceed"));
	assert_non_null(strstr(html, "Recipient: j***e@e***.com"));
	free(html);
	ticket_free(&t);
}

static void
test_field_refuses_send_link_on_another_host(void **state)
{
	struct ticket t;
	char *html;

	(void)state;
	fixture(&t, TS_LINK_READY, 1);
	str_replace(&t.v.send_link_url, "https://verify.imper.ai.evil.com/send/vr_81");
	html = render_field_html(&rc, &t);
	assert_null(strstr(html, "href"));
	assert_null(strstr(html, "evil"));
	assert_non_null(strstr(html, "refused"));
	free(html);
	golden_field("field_link_refused", &t);
}

static void
test_field_refuses_javascript_and_data_urls(void **state)
{
	struct ticket t;
	char *html;

	(void)state;
	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 1, NULL);
	str_replace(&t.v.details_url, "javascript:alert(document.cookie)");
	html = render_field_html(&rc, &t);
	assert_null(strstr(html, "javascript"));
	assert_null(strstr(html, "href"));
	assert_non_null(strstr(html, "Verification ID: vr_81<br>"));
	free(html);
	str_replace(&t.v.details_url, "data:text/html;base64,PHNjcmlwdD4=");
	html = render_field_html(&rc, &t);
	assert_null(strstr(html, "data:"));
	assert_null(strstr(html, "href"));
	free(html);
	ticket_free(&t);
}

/* Every tag in html is one ServiceNow's sanitizer keeps, with no attribute
 * but href on a. */
static void
assert_only_simple_tags(const char *html)
{
	const char *allowed[] = { "<h3>", "</h3>", "<p>", "</p>", "<br>", "<strong>",
	    "</strong>", "<small>", "</small>", "<a href=\"http", "</a>" };
	const char *p = html;

	while ((p = strchr(p, '<')) != NULL) {
		size_t i;

		for (i = 0; i < ARRAY_SIZE(allowed); i++)
			if (strncmp(p, allowed[i], strlen(allowed[i])) == 0)
				break;
		if (i == ARRAY_SIZE(allowed))
			fail_msg("unexpected markup at: %.40s", p);
		p++;
	}
}

static void
test_field_escapes_hostile_text_from_imperai(void **state)
{
	struct ticket t;
	char *html;

	(void)state;
	fixture(&t, TS_FAILED, 4);
	outcome(&t, IMPERAI_FAILED, 9, "<script>alert('x')</script> \"quoted\" & <img src=x "
	    "onerror=alert(1)>");
	str_replace(&t.v.initiated_by, "<b onmouseover=\"x\">Agent</b>");
	str_replace(&t.v.channel, "<i>carrier pigeon</i>");
	str_replace(&t.v.action.type, "<svg/onload=alert(1)>");
	html = render_field_html(&rc, &t);
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<img"));
	assert_null(strstr(html, "<b "));
	assert_null(strstr(html, "<svg"));
	assert_non_null(strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; "
	    "&quot;quoted&quot; &amp; &lt;img"));
	assert_only_simple_tags(html);
	free(html);
	ticket_free(&t);
}

static void
test_field_caps_megabyte_text_and_repairs_utf8(void **state)
{
	struct ticket t;
	char *big = xmalloc(1 << 20), *html;

	(void)state;
	memset(big, 'A', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	memcpy(big, "bad \xff\xfe utf8 \xc3\x28 ", 15);
	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 1, big);
	html = render_field_html(&rc, &t);
	assert_true(strlen(html) < 2 * RENDER_TEXT_MAX + 2000);
	assert_true(util_utf8_valid(html, strlen(html)));
	assert_non_null(strstr(html, "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd( "));
	assert_non_null(strstr(html, "\xe2\x80\xa6<br>"));
	free(html);
	free(big);
	ticket_free(&t);
}

/* ServiceNow renders [code]...[/code] in a journal entry as HTML: text
 * from imper.ai or the ticket must not open such a block. */
static void
test_work_note_never_carries_a_code_tag(void **state)
{
	struct ticket t;
	char *note;

	(void)state;
	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 1, "[CODE]<img src=x onerror=alert(1)>[/Code]");
	str_replace(&t.v.initiated_by, "[code]<script>alert(2)</script>[/code]");
	note = render_work_note(&rc, &t, "outcome", "see [cOdE]<b>x</b>[/cOdE]");
	assert_null(strcasestr(note, "[code]"));
	assert_null(strcasestr(note, "[/code]"));
	assert_non_null(strstr(note, "(CODE)<img src=x onerror=alert(1)>(/Code)"));
	free(note);
	ticket_free(&t);
}

static void
test_field_masks_emails_where_they_should_not_be(void **state)
{
	struct ticket t;
	char *html, *note;

	(void)state;
	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 1, "Call jane.doe@example.com back");
	str_replace(&t.v.recipient_masked, "jane.doe@example.com");
	str_replace(&t.v.initiated_by, "beth.anglin@example.com");
	html = render_field_html(&rc, &t);
	note = render_work_note(&rc, &t, "outcome", "mail jane.doe@example.com if needed");
	assert_null(strstr(html, "jane.doe@"));
	assert_null(strstr(html, "beth.anglin@"));
	assert_null(strstr(note, "jane.doe@"));
	assert_non_null(strstr(html, "Recipient: j***e@e***.com"));
	assert_non_null(strstr(html, "Call j***e@e***.com back"));
	assert_non_null(strstr(note, "mail j***e@e***.com if needed"));
	free(html);
	free(note);
	str_replace(&t.v.recipient_masked, "+1 555 123 4567");
	html = render_field_html(&rc, &t);
	assert_null(strstr(html, "555"));
	assert_non_null(strstr(html, "Recipient: +*********67"));
	free(html);
	ticket_free(&t);
}

static void
golden_note(const char *name, struct ticket *t, const char *tag, const char *extra)
{
	char *note = render_work_note(&rc, t, tag, extra);
	char head[64];

	snprintf(head, sizeof(head), "[imper.ai %s %u.%u]\n", tag, t->generation, t->revision);
	assert_int_equal(strncmp(note, head, strlen(head)), 0);
	assert_true(strlen(note) <= RENDER_NOTE_MAX);
	check_golden(name, note);
	free(note);
	ticket_free(t);
}

static void
test_work_note_golden_per_tag(void **state)
{
	struct ticket t;

	(void)state;
	fixture(&t, TS_LINK_READY, 1);
	golden_note("note_link", &t, "link", NULL);
	fixture(&t, TS_LINK_SENT, 2);
	sent(&t, IMPERAI_LINK_SENT);
	golden_note("note_sent", &t, "sent", NULL);
	fixture(&t, TS_IN_PROGRESS, 3);
	sent(&t, IMPERAI_IN_PROGRESS);
	golden_note("note_progress", &t, "progress", NULL);
	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 2, "User verified successfully - Proceed with action");
	golden_note("note_outcome", &t, "outcome",
	    "Not resolved automatically: the password reset is not completed yet.");
	fixture(&t, TS_ACTION_DONE, 5);
	outcome(&t, IMPERAI_PASSED, 2, NULL);
	t.v.action.status = IMPERAI_ACTION_COMPLETED;
	t.v.action.completed_at = T0 + 600;
	golden_note("note_action", &t, "action", "Not resolved automatically: the flow "
	    "password-reset is not automated; an agent resolves the ticket.");
	fixture(&t, TS_RESOLVED, 5);
	outcome(&t, IMPERAI_PASSED, 2, "User verified successfully - Proceed with action");
	t.v.action.status = IMPERAI_ACTION_COMPLETED;
	t.v.action.completed_at = T0 + 600;
	golden_note("note_resolved", &t, "resolved", NULL);
	fixture(&t, TS_FAILED, 4);
	outcome(&t, IMPERAI_FAILED, 9, "High risk detected - Reject this request");
	golden_note("note_on_fail", &t, "on_fail", "Not resolved automatically: the verification "
	    "failed.\nHigh risk detected - Reject this request\nReassigned to Service Desk "
	    "Security.\nPriority set to 2.");
	fixture(&t, TS_LINK_SENT, 3);
	sent(&t, IMPERAI_LINK_SENT);
	golden_note("note_update", &t, "update", NULL);
	fixture(&t, TS_AWAITING_REQUEST, 6);
	t.generation = 2;
	golden_note("note_requester_changed", &t, "requester_changed", NULL);
	fixture(&t, TS_AWAITING_REQUEST, 6);
	t.generation = 2;
	golden_note("note_flow_changed", &t, "flow_changed", NULL);
	fixture(&t, TS_LINK_SENT, 3);
	engine_enter_state(&t, TS_CANCELED, "ticket_ended", T0, NULL);
	golden_note("note_canceled", &t, "canceled", NULL);
	fixture(&t, TS_UNTRACKED, 3);
	golden_note("note_untracked", &t, "untracked", NULL);
	fixture(&t, TS_ACTION_DONE, 6);
	outcome(&t, IMPERAI_PASSED, 2, NULL);
	golden_note("note_error", &t, "error", "ServiceNow answered: Data Policy Exception: "
	    "Resolution code is mandatory");
}

static void
test_work_note_is_plain_capped_text(void **state)
{
	struct ticket t;
	char *big = xmalloc(100000), *note;

	(void)state;
	memset(big, 'x', 99999);
	big[99999] = '\0';
	big[10] = '\x01';
	big[20] = '\x1b';
	fixture(&t, TS_PASSED, 4);
	outcome(&t, IMPERAI_PASSED, 1, "<b>bold</b> & \"q\"");
	note = render_work_note(&rc, &t, "outcome", big);
	assert_true(strlen(note) <= RENDER_NOTE_MAX);
	assert_non_null(strstr(note, "Recommendation: <b>bold</b> & \"q\""));
	assert_null(strchr(note, '\x01'));
	assert_null(strchr(note, '\x1b'));
	assert_true(util_utf8_valid(note, strlen(note)));
	assert_non_null(strstr(note, "\xe2\x80\xa6"));
	free(note);
	free(big);
	ticket_free(&t);
}

static void
test_escape_html_specials_controls_and_nul(void **state)
{
	char *s;

	(void)state;
	s = render_escape("<a href='x'>\"&\"</a>", 0);
	assert_string_equal(s, "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
	free(s);
	s = render_escape("a\x01\x02\x7f" "b\n\tc\r", 0);
	assert_string_equal(s, "ab\n\tc");
	free(s);
	s = render_escape_n("ab\0cd", 5, 0);
	assert_string_equal(s, "abcd");
	free(s);
	s = render_escape_attr("a\nb\tc", 0);
	assert_string_equal(s, "a b c");
	free(s);
	s = render_escape("\xc2\x85" "x", 0);	/* C1 control NEL */
	assert_string_equal(s, "x");
	free(s);
	s = render_escape(NULL, 0);
	assert_string_equal(s, "");
	free(s);
}

static void
test_escape_replaces_invalid_utf8(void **state)
{
	const char *bad[] = { "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
	    "\x80" };
	char *s;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		s = render_escape(bad[i], 0);
		assert_true(util_utf8_valid(s, strlen(s)));
		assert_non_null(strstr(s, "\xef\xbf\xbd"));
		free(s);
	}
	s = render_escape("caf\xc3\xa9 \xf0\x9f\x94\x91", 0);
	assert_string_equal(s, "caf\xc3\xa9 \xf0\x9f\x94\x91");
	free(s);
}

static void
test_escape_caps_on_character_boundary_with_ellipsis(void **state)
{
	char *s;

	(void)state;
	s = render_escape("abcdefghij", 8);
	assert_string_equal(s, "abcde\xe2\x80\xa6");
	free(s);
	s = render_escape("abcdefgh", 8);
	assert_string_equal(s, "abcdefgh");
	free(s);
	/* never splits é (2 bytes) or an entity */
	s = render_escape("abc\xc3\xa9\xc3\xa9\xc3\xa9", 8);
	assert_string_equal(s, "abc\xc3\xa9\xe2\x80\xa6");
	free(s);
	s = render_escape("ab&cdefgh", 8);
	assert_string_equal(s, "ab\xe2\x80\xa6");
	free(s);
	s = render_plain("line1\nline2\x01", 0);
	assert_string_equal(s, "line1\nline2");
	free(s);
}

static void
test_url_allowed_only_https_or_http_to_listed_hosts(void **state)
{
	static const struct { const char *url; int ok; } cases[] = {
		{ "https://verify.imper.ai/send/1", 1 },
		{ "HTTPS://VERIFY.IMPER.AI/send/1", 1 },
		{ "http://127.0.0.1:8081/send/tok1", 1 },
		{ "https://verify.imper.ai", 1 },
		{ "https://verify.imper.ai?x=1", 1 },
		{ "https://verify.imper.ai:443/x", 1 },
		{ "javascript:alert(1)", 0 },
		{ "JavaScript://verify.imper.ai/%0aalert(1)", 0 },
		{ "data:text/html,<script>alert(1)</script>", 0 },
		{ "ftp://verify.imper.ai/x", 0 },
		{ "//verify.imper.ai/x", 0 },
		{ "https://verify.imper.ai@evil.com/x", 0 },
		{ "https://user:pass@verify.imper.ai/x", 0 },
		{ "https://evil.com\\@verify.imper.ai/", 0 },
		{ "https://verify.imper.ai\\.evil.com/", 0 },
		{ "https://verify.imper.ai.evil.com/", 0 },
		{ "https://evil.com/verify.imper.ai", 0 },
		{ "https://verify.imper.ai./x", 0 },
		{ "https://verify%2eimper.ai/x", 0 },
		{ "https://verify.imper.ai%2f@evil.com/", 0 },
		{ "https://verify.imper.ai /x", 0 },
		{ "https://verify.imper.ai/x y", 0 },
		{ "https://verify.imper.ai/\tx", 0 },
		{ "https://verify.imper.ai/\nx", 0 },
		{ " https://verify.imper.ai/", 0 },
		{ "https://verify.imper.ai:/x", 0 },
		{ "https://verify.imper.ai:80a/x", 0 },
		{ "https://verify.imper.ai:99999/x", 0 },
		{ "https://verify.imper.ai:0/x", 0 },
		{ "https://verify.imper.ai:8443/x", 1 },
		{ "https://[::1]/x", 0 },
		{ "https://verify.\xc4\xb1mper.ai/", 0 },
		{ "https://", 0 },
		{ "", 0 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (render_url_allowed(&rc, cases[i].url) != cases[i].ok)
			fail_msg("render_url_allowed(\"%s\") != %d", cases[i].url, cases[i].ok);
	assert_int_equal(render_url_allowed(&rc, NULL), 0);
}

static void
test_parse_revision_finds_last_tag_in_text_or_html(void **state)
{
	uint32_t g = 0, r = 0;

	(void)state;
	assert_int_equal(render_parse_revision("imperai-snow ref 1.3", &g, &r), 0);
	assert_int_equal(g, 1);
	assert_int_equal(r, 3);
	assert_int_equal(render_parse_revision("<p>x imperai-snow ref 1.2 <span>imperai-snow "
	    "ref 2.7</span></p>", &g, &r), 0);
	assert_int_equal(g, 2);
	assert_int_equal(r, 7);
	assert_int_equal(render_parse_revision("<span>imperai-snow</span> <b>ref</b>&nbsp;8.4",
	    &g, &r), 0);
	assert_int_equal(g, 8);
	assert_int_equal(render_parse_revision("imperai-snow ref&nbsp;3.4.", &g, &r), 0);
	assert_int_equal(g, 3);
	assert_int_equal(r, 4);
	assert_int_equal(render_parse_revision("imperai-snow\nref\t5.6", &g, &r), 0);
	assert_int_equal(g, 5);
	assert_int_equal(render_parse_revision("imperai-snowref 5.6", &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision("nothing here", &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision(NULL, &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision("imperai-snow ref 1.", &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision("imperai-snow ref 99999999999.1", &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision("imperai-snow ref 1.2x", &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision("imperai-snow ref 1.2.3", &g, &r), -ENOENT);
	assert_int_equal(render_parse_revision("<p>imperai-snow ref 4.9</p><p>imperai-snow ref "
	    "bogus", &g, &r), 0);
	assert_int_equal(g, 4);
	assert_int_equal(r, 9);
}

static void
test_revision_tag_round_trips_through_field(void **state)
{
	struct ticket t;
	uint32_t g, r;
	char *tag = render_revision_tag(7, 42), *html;

	(void)state;
	assert_string_equal(tag, "imperai-snow ref 7.42");
	free(tag);
	fixture(&t, TS_PASSED, 42);
	t.generation = 7;
	outcome(&t, IMPERAI_PASSED, 1, "imperai-snow ref 99.99 planted by someone");
	html = render_field_html(&rc, &t);
	assert_int_equal(render_parse_revision(html, &g, &r), 0);
	assert_int_equal(g, 7);
	assert_int_equal(r, 42);
	free(html);
	ticket_free(&t);
}

static char *
read_data(const char *rel)
{
	char path[4200];
	size_t len;
	char *s;

	snprintf(path, sizeof(path), "%s/%s", golden_dir(), rel);
	if ((s = read_file(path, &len)) == NULL)
		fail_msg("%s: missing", path);
	return s;
}

/* Live tickets carry fields of the form written before the headline
 * (tests/data/render/v1): they read back as the same picture as the
 * field written today. */
static void
test_fields_of_the_old_form_read_back_like_the_new(void **state)
{
	static const struct { const char *name; int st; const char *reason; } cases[] = {
		{ "field_awaiting_request", TS_AWAITING_REQUEST, NULL },
		{ "field_canceled", TS_CANCELED, NULL },
		{ "field_failed_high_risk", TS_FAILED, NULL },
		{ "field_in_progress", TS_IN_PROGRESS, NULL },
		{ "field_link_ready", TS_LINK_READY, NULL },
		{ "field_link_refused", TS_LINK_READY, NULL },
		{ "field_link_sent", TS_LINK_SENT, NULL },
		{ "field_not_enough_questions", TS_NOT_ENOUGH_QUESTIONS, NULL },
		{ "field_passed", TS_PASSED, NULL },
		{ "field_passed_action", TS_ACTION_DONE, NULL },
		{ "field_requester_changed", TS_LINK_READY, "requester_changed" },
		{ "field_resolved", TS_RESOLVED, NULL },
		{ "field_timed_out", TS_TIMED_OUT, NULL },
		{ "field_untracked", TS_UNTRACKED, NULL },
	};
	char rel[128];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct render_shown o, n;
		char *old, *cur;

		snprintf(rel, sizeof(rel), "v1/%s.html", cases[i].name);
		old = read_data(rel);
		snprintf(rel, sizeof(rel), "%s.golden", cases[i].name);
		cur = read_data(rel);
		assert_int_equal(render_parse_field(old, "password_reset", &o), 0);
		assert_int_equal(render_parse_field(cur, "password_reset", &n), 0);
		if (o.state != cases[i].st || n.state != cases[i].st)
			fail_msg("%s: state old %d new %d, want %d", cases[i].name, o.state, n.state,
			    cases[i].st);
		assert_int_equal(o.generation, n.generation);
		assert_int_equal(o.revision, n.revision);
		assert_int_equal(o.status, n.status);
		assert_int_equal(o.action, n.action);
		assert_int_equal(o.risk_high, n.risk_high);
		assert_int_equal(o.closed_first, n.closed_first);
		assert_int_equal(o.sent_at, n.sent_at);
		assert_int_equal(o.resolved_at, n.resolved_at);
		assert_true(str_eq(o.verification_id, n.verification_id));
		assert_true(str_eq(o.gen_reason, cases[i].reason));
		assert_true(str_eq(n.gen_reason, cases[i].reason));
		render_shown_free(&o);
		render_shown_free(&n);
		free(old);
		free(cur);
	}
}

static void
test_mask_recipient(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "jane.doe@example.com", "j***e@e***.com" },
		{ "j***e@e***.com", "j***e@e***.com" },
		{ "j***e@example.com", "j***e@e***.com" },
		{ "a@b.org", "a***@b***.org" },
		{ "x@localhost", "x***@l***" },
		{ "+1 555 123 4567", "+*********67" },
		{ "+*********67", "+*********67" },
		{ "12", "12" },
	};
	char *s;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		s = render_mask_recipient(cases[i].in);
		assert_string_equal(s, cases[i].out);
		free(s);
	}
	assert_null(render_mask_recipient(NULL));
	s = render_mask_emails("to a.b@c.co.uk, and x@y.io.");
	assert_string_equal(s, "to a***b@c***.uk, and x***@y***.io.");
	free(s);
	s = render_mask_emails("no @ here, @x, y@");
	assert_string_equal(s, "no @ here, @x, y@");
	free(s);
}

static void
test_labels(void **state)
{
	char *s;

	(void)state;
	assert_string_equal(render_status_label(IMPERAI_PASSED), "Passed");
	assert_string_equal(render_status_label(IMPERAI_TIMED_OUT), "Timed out");
	assert_string_equal(render_status_label(IMPERAI_NOT_ENOUGH_QUESTIONS),
	    "Not enough questions");
	assert_string_equal(render_status_label(99), "Unknown");
	assert_string_equal(render_risk_label(&rc, 0), "Verified");
	assert_string_equal(render_risk_label(&rc, 3), "Verified");
	assert_string_equal(render_risk_label(&rc, 4), "Medium");
	assert_string_equal(render_risk_label(&rc, 6), "Medium");
	assert_string_equal(render_risk_label(&rc, 7), "High");
	assert_string_equal(render_risk_label(&rc, 10), "High");
	assert_null(render_risk_label(&rc, -1));
	assert_null(render_risk_label(&rc, 11));
	s = render_action_label("password_reset");
	assert_string_equal(s, "Password reset");
	free(s);
	assert_null(render_action_label("none"));
	assert_null(render_action_label(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field_link_ready_shows_send_link_and_expiry),
		cmocka_unit_test(test_fields_of_the_old_form_read_back_like_the_new),
		cmocka_unit_test(test_unreadable_requester_field_and_note_say_what_to_grant),
		cmocka_unit_test(test_field_golden_per_state),
		cmocka_unit_test(test_field_after_requester_change_says_reverification_required),
		cmocka_unit_test(test_field_outcome_lines),
		cmocka_unit_test(test_field_refuses_send_link_on_another_host),
		cmocka_unit_test(test_field_refuses_javascript_and_data_urls),
		cmocka_unit_test(test_field_escapes_hostile_text_from_imperai),
		cmocka_unit_test(test_field_caps_megabyte_text_and_repairs_utf8),
		cmocka_unit_test(test_field_masks_emails_where_they_should_not_be),
		cmocka_unit_test(test_work_note_golden_per_tag),
		cmocka_unit_test(test_work_note_is_plain_capped_text),
		cmocka_unit_test(test_escape_html_specials_controls_and_nul),
		cmocka_unit_test(test_escape_replaces_invalid_utf8),
		cmocka_unit_test(test_escape_caps_on_character_boundary_with_ellipsis),
		cmocka_unit_test(test_url_allowed_only_https_or_http_to_listed_hosts),
		cmocka_unit_test(test_parse_revision_finds_last_tag_in_text_or_html),
		cmocka_unit_test(test_revision_tag_round_trips_through_field),
		cmocka_unit_test(test_mask_recipient),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_work_note_never_carries_a_code_tag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
