/* render: the verification field's HTML and the work notes' text; all
 * escaping and PII masking of the daemon happen in this file. */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "engine.h"
#include "imperai.h"
#include "render.h"
#include "util.h"

#define ELLIPSIS	"\xe2\x80\xa6"
#define REPLACEMENT	"\xef\xbf\xbd"
#define REV_PREFIX	"imperai-snow ref"

enum esc_mode {
	ESC_PLAIN,	/* repair only */
	ESC_HTML,	/* element content */
	ESC_ATTR,	/* attribute value: \n and \t become spaces */
};

void
render_ctx_from_config(struct render_ctx *rc, const struct config *c)
{
	rc->link_hosts = (const char *const *)c->imperai.link_hosts;
	rc->nlink_hosts = c->imperai.nlink_hosts;
	rc->risk_verified_max = c->imperai.risk_verified_max;
	rc->risk_medium_max = c->imperai.risk_medium_max;
}

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
static size_t
render_utf8_len(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		c = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		c = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		c = p[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* The output for the character at p (in *piece, *plen); returns the bytes
 * consumed (always >= 1). */
static size_t
render_unit(const unsigned char *p, size_t n, enum esc_mode mode, const char **piece,
    size_t *plen)
{
	static const char *const ent[] = { "&amp;", "&lt;", "&gt;", "&quot;", "&#39;" };
	const char *special = "&<>\"'";
	uint32_t cp;
	size_t len = render_utf8_len(p, n, &cp);

	*piece = (const char *)p;
	*plen = len;
	if (len == 0) {
		*piece = REPLACEMENT;
		*plen = 3;
		return 1;
	}
	if (cp == '\n' || cp == '\t') {
		if (mode == ESC_ATTR)
			*piece = " ";
		return 1;
	}
	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
		*plen = 0;
		return len;
	}
	if (mode != ESC_PLAIN && cp < 0x80 && strchr(special, (int)cp) != NULL) {
		*piece = ent[strchr(special, (int)cp) - special];
		*plen = strlen(*piece);
	}
	return len;
}

/* Appends the escaped text to b, capped at max output bytes (0: no cap). */
static void
render_text(struct buf *b, const char *s, size_t n, size_t max, enum esc_mode mode)
{
	const unsigned char *p = (const unsigned char *)s;
	const char *piece;
	size_t plen, total = 0, room, used = 0;

	for (size_t i = 0; i < n;) {
		i += render_unit(p + i, n - i, mode, &piece, &plen);
		total += plen;
	}
	room = max == 0 || total <= max ? total : (max > 3 ? max - 3 : 0);
	for (size_t i = 0; i < n;) {
		i += render_unit(p + i, n - i, mode, &piece, &plen);
		if (used + plen > room)
			break;
		buf_add(b, piece, plen);
		used += plen;
	}
	if (room < total)
		buf_adds(b, ELLIPSIS);
}

static char *
render_text_dup(const char *s, size_t n, size_t max, enum esc_mode mode)
{
	struct buf b;

	buf_init(&b);
	if (s != NULL)
		render_text(&b, s, n, max, mode);
	return buf_detach(&b);
}

char *
render_escape(const char *s, size_t max)
{
	return render_text_dup(s, s ? strlen(s) : 0, max, ESC_HTML);
}

char *
render_escape_n(const char *s, size_t len, size_t max)
{
	return render_text_dup(s, len, max, ESC_HTML);
}

char *
render_escape_attr(const char *s, size_t max)
{
	return render_text_dup(s, s ? strlen(s) : 0, max, ESC_ATTR);
}

char *
render_plain(const char *s, size_t max)
{
	return render_text_dup(s, s ? strlen(s) : 0, max, ESC_PLAIN);
}

static int
render_host_char(int c)
{
	return isalnum(c) || c == '.' || c == '-';
}

/* Splits "http(s)://host[:port]/..." strictly; returns the host span. */
static int
render_url_host(const char *url, const char **host, size_t *hlen)
{
	const char *p, *end;
	long port = 0;

	if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else
		return -EINVAL;
	end = p + strcspn(p, "/?#");
	*host = p;
	while (p < end && render_host_char((unsigned char)*p))
		p++;
	*hlen = (size_t)(p - *host);
	if (*hlen == 0 || (*host)[0] == '.' || (*host)[*hlen - 1] == '.')
		return -EINVAL;
	if (p == end)
		return 0;
	if (*p != ':' || p + 1 == end || end - p > 6)
		return -EINVAL;
	for (p++; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		port = port * 10 + (*p - '0');
	}
	return port >= 1 && port <= 65535 ? 0 : -EINVAL;
}

int
render_url_allowed(const struct render_ctx *rc, const char *url)
{
	const char *host;
	size_t hlen;

	if (url == NULL || strlen(url) > 4096)
		return 0;
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '\\')
			return 0;
	if (render_url_host(url, &host, &hlen) < 0)
		return 0;
	for (size_t i = 0; i < rc->nlink_hosts; i++) {
		const char *h = rc->link_hosts[i];

		if (h != NULL && strlen(h) == hlen && strncasecmp(h, host, hlen) == 0)
			return 1;
	}
	return 0;
}

static int
render_email_local_char(int c)
{
	return isalnum(c) || strchr("._%+-*", c) != NULL;
}

static int
render_email_domain_char(int c)
{
	return isalnum(c) || c == '.' || c == '-' || c == '*';
}

/* "jane.doe@example.com" -> "j***e@e***.com". */
static void
render_mask_email_into(struct buf *b, const char *local, size_t llen, const char *dom,
    size_t dlen)
{
	const char *dot = NULL;

	for (size_t i = 0; i < dlen; i++)
		if (dom[i] == '.')
			dot = dom + i;
	buf_addc(b, local[0]);
	buf_adds(b, "***");
	if (llen > 1)
		buf_addc(b, local[llen - 1]);
	buf_addc(b, '@');
	if (dlen == 0)
		return;
	buf_addc(b, dom[0]);
	buf_adds(b, "***");
	if (dot != NULL && dot > dom)
		buf_add(b, dot, (size_t)(dom + dlen - dot));
}

static int
render_span_masked(const char *s, size_t n)
{
	return memchr(s, '*', n) != NULL;
}

char *
render_mask_emails(const char *s)
{
	struct buf b;
	size_t i = 0, n = s ? strlen(s) : 0, start = 0;

	buf_init(&b);
	for (i = 0; i < n; i++) {
		size_t l = i, r = i + 1;

		if (s[i] != '@')
			continue;
		while (l > start && render_email_local_char((unsigned char)s[l - 1]))
			l--;
		while (r < n && render_email_domain_char((unsigned char)s[r]))
			r++;
		while (r > i + 1 && s[r - 1] == '.')
			r--;
		if (l == i || r == i + 1 ||
		    (render_span_masked(s + l, i - l) && render_span_masked(s + i, r - i)))
			continue;
		buf_add(&b, s + start, l - start);
		render_mask_email_into(&b, s + l, i - l, s + i + 1, r - i - 1);
		start = i = r;
		i--;
	}
	buf_add(&b, s ? s + start : "", n - start);
	return buf_detach(&b);
}

/* "+1 555 123 4567" -> "+*********67". */
static char *
render_mask_phone(const char *s)
{
	struct buf b;
	size_t digits = 0, seen = 0;

	for (const char *p = s; *p; p++)
		digits += isdigit((unsigned char)*p) != 0;
	buf_init(&b);
	if (*s == '+')
		buf_addc(&b, '+');
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			continue;
		buf_addc(&b, ++seen + 2 > digits ? *p : '*');
	}
	return buf_detach(&b);
}

char *
render_mask_recipient(const char *s)
{
	size_t digits = 0;

	if (s == NULL)
		return NULL;
	if (strchr(s, '@') != NULL)
		return render_mask_emails(s);
	for (const char *p = s; *p; p++)
		digits += isdigit((unsigned char)*p) != 0;
	if (digits >= 5 && strchr(s, '*') == NULL)
		return render_mask_phone(s);
	return xstrdup(s);
}

const char *
render_status_label(int s)
{
	static const char *const labels[] = {
		[IMPERAI_PENDING] = "Pending",
		[IMPERAI_LINK_SENT] = "Link sent",
		[IMPERAI_IN_PROGRESS] = "In progress",
		[IMPERAI_PASSED] = "Passed",
		[IMPERAI_FAILED] = "Failed",
		[IMPERAI_TIMED_OUT] = "Timed out",
		[IMPERAI_NOT_ENOUGH_QUESTIONS] = "Not enough questions",
		[IMPERAI_CANCELED] = "Canceled",
	};

	if (s < 0 || (size_t)s >= ARRAY_SIZE(labels))
		return "Unknown";
	return labels[s];
}

const char *
render_risk_label(const struct render_ctx *rc, int score)
{
	if (score < 0 || score > 10)
		return NULL;
	if (score <= rc->risk_verified_max)
		return "Verified";
	if (score <= rc->risk_medium_max)
		return "Medium";
	return "High";
}

char *
render_action_label(const char *action)
{
	char *s;

	if (action == NULL || *action == '\0' || strcmp(action, "none") == 0)
		return NULL;
	s = render_plain(action, 64);
	for (char *p = s; *p; p++)
		if (*p == '_' || *p == '\n' || *p == '\t')
			*p = ' ';
	s[0] = (char)toupper((unsigned char)s[0]);
	return s;
}

char *
render_revision_tag(uint32_t generation, uint32_t revision)
{
	return xprintf(REV_PREFIX " %" PRIu32 ".%" PRIu32, generation, revision);
}

/* Parses "<digits>" into a uint32; returns the characters used, 0 if none
 * or overflowing. */
static size_t
render_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; isdigit((unsigned char)s[i]); i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return 0;
	}
	*out = (uint32_t)v;
	return i;
}

/* The field's visible text: each tag, &nbsp; and U+00A0 become a space. */
static char *
render_strip_tags(const char *s)
{
	struct buf b;
	int in_tag = 0;

	buf_init(&b);
	for (; *s; s++) {
		if (in_tag) {
			in_tag = *s != '>';
		} else if (*s == '<') {
			in_tag = 1;
			buf_addc(&b, ' ');
		} else if (strncmp(s, "&nbsp;", 6) == 0) {
			buf_addc(&b, ' ');
			s += 5;
		} else if (strncmp(s, "\xc2\xa0", 2) == 0) {
			buf_addc(&b, ' ');
			s++;
		} else
			buf_addc(&b, *s);
	}
	return buf_detach(&b);
}

/* Skips at least one blank; NULL if there is none. */
static const char *
render_blanks(const char *p)
{
	size_t n = strspn(p, " \t\r\n");

	return n ? p + n : NULL;
}

/* Parses "imperai-snow ref G.R" at p (blanks between words may vary). */
static int
render_parse_tag_at(const char *p, uint32_t *g, uint32_t *r)
{
	size_t n;

	p += strlen("imperai-snow");
	if ((p = render_blanks(p)) == NULL || strncmp(p, "ref", 3) != 0 ||
	    (p = render_blanks(p + 3)) == NULL)
		return -EINVAL;
	if ((n = render_parse_u32(p, g)) == 0 || p[n] != '.')
		return -EINVAL;
	p += n + 1;
	if ((n = render_parse_u32(p, r)) == 0 || isalnum((unsigned char)p[n]) ||
	    (p[n] == '.' && isdigit((unsigned char)p[n + 1])))
		return -EINVAL;
	return 0;
}

int
render_parse_revision(const char *field, uint32_t *generation, uint32_t *revision)
{
	char *text;
	const char *p;
	uint32_t g, r;
	int rc = -ENOENT;

	if (field == NULL)
		return -ENOENT;
	text = render_strip_tags(field);
	for (p = text; (p = strstr(p, "imperai-snow")) != NULL; p++) {
		if (render_parse_tag_at(p, &g, &r) == 0) {
			*generation = g;
			*revision = r;
			rc = 0;
		}
	}
	free(text);
	return rc;
}

/* Years 1970-9999 only: gmtime_r() fails beyond, and no real time is there. */
#define RENDER_TIME_MAX	INT64_C(253402300799)

static void
render_time(struct buf *b, int64_t t)
{
	char s[20];

	if (t < 0 || t > RENDER_TIME_MAX) {
		buf_adds(b, "(unknown time)");
		return;
	}
	util_format_snow_time(t, s);
	buf_adds(b, s);
	buf_adds(b, " UTC");
}

/* Text from imper.ai or the ticket: repaired, emails masked, escaped. */
static void
render_html_text(struct buf *b, const char *s, size_t max)
{
	char *masked, *esc;

	masked = render_mask_emails(s);
	esc = render_escape(masked, max);
	buf_adds(b, esc);
	free(esc);
	free(masked);
}

static void
render_line(struct buf *b, const char *label, const char *text)
{
	if (text == NULL || *text == '\0')
		return;
	buf_adds(b, label);
	render_html_text(b, text, RENDER_TEXT_MAX);
	buf_adds(b, "<br>");
}

static void
render_link(struct buf *b, const struct render_ctx *rc, const char *url, const char *text)
{
	char *href;

	if (!render_url_allowed(rc, url)) {
		render_html_text(b, text, RENDER_TEXT_MAX);
		return;
	}
	href = render_escape_attr(url, 0);
	buf_addf(b, "<a href=\"%s\">", href);
	render_html_text(b, text, RENDER_TEXT_MAX);
	buf_adds(b, "</a>");
	free(href);
}

/* The why of the transition into the current state. */
static const char *
render_state_why(const struct ticket *t)
{
	for (size_t i = t->nhistory; i > 0; i--)
		if (t->history[i - 1].to == t->state)
			return t->history[i - 1].why;
	return NULL;
}

static void
render_notice(struct buf *b, const struct ticket *t)
{
	if (str_eq(t->gen_reason, "requester_changed"))
		buf_adds(b, "<strong>Re-verification required</strong>: the requester changed.<br>");
	else if (str_eq(t->gen_reason, "flow_changed"))
		buf_adds(b, "<strong>Re-verification required</strong>: the ticket's verification "
		    "flow changed.<br>");
}

/* What an admin must grant for the daemon to read the requester. */
#define RENDER_GRANT "Grant the integration user read access to the requester's Name, " \
	"Email and User ID (sys_user.name, sys_user.email, sys_user.user_name)."

static void
render_unreadable(struct buf *b)
{
	buf_adds(b, "The requester could not be read, so no verification was requested.<br>"
	    RENDER_GRANT "<br>");
}

static void
render_send_link(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	const char *url = t->v.send_link_url;

	if (render_url_allowed(rc, url))
		render_link(b, rc, url, "imper.ai - Send Verification link");
	else if (url != NULL)
		buf_adds(b, "imper.ai - Send Verification link: refused, the link does not point "
		    "to an allowed imper.ai host.");
	else
		buf_adds(b, "imper.ai - Send Verification link: not available yet.");
}

/* While the link is out: send it again (a typo, an SMS that never came). */
static void
render_send_again(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	if (!render_url_allowed(rc, t->v.send_link_url))
		return;
	render_link(b, rc, t->v.send_link_url, "imper.ai - Send the link again");
	buf_adds(b, " (to the same or another address or phone; the earlier link stops "
	    "working)<br>");
}

static void
render_link_expiry(struct buf *b, const struct ticket *t)
{
	if (t->v.expires_at > 0) {
		buf_adds(b, "Link expires ");
		render_time(b, t->v.expires_at);
		buf_adds(b, "<br>");
	}
}

static void
render_sent(struct buf *b, const struct ticket *t)
{
	char *masked = render_mask_recipient(t->v.recipient_masked);

	buf_adds(b, "Verification link sent");
	if (t->v.initiated_by != NULL && *t->v.initiated_by != '\0') {
		buf_adds(b, " by ");
		render_html_text(b, t->v.initiated_by, 200);
	}
	if (t->sent_at > 0) {
		buf_adds(b, " at ");
		render_time(b, t->sent_at);
	}
	buf_adds(b, "<br>");
	if (t->v.channel != NULL && strcmp(t->v.channel, "sms") == 0)
		buf_adds(b, "Channel: SMS<br>");
	else if (t->v.channel != NULL && strcmp(t->v.channel, "email") == 0)
		buf_adds(b, "Channel: Email<br>");
	else
		render_line(b, "Channel: ", t->v.channel);
	render_line(b, "Recipient: ", masked);
	free(masked);
}

static void
render_verification_id(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	const char *id = t->v.id ? t->v.id : t->request_id;

	if (id == NULL)
		return;
	buf_adds(b, "Verification ID: ");
	render_link(b, rc, t->v.details_url, id);
	buf_adds(b, "<br>");
}

static void
render_outcome(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	const char *risk = render_risk_label(rc, t->v.risk_score);
	int64_t when = t->v.completed_at ? t->v.completed_at : t->v.updated_at;

	if (risk != NULL)
		buf_addf(b, "Risk level: %s<br>", risk);
	render_verification_id(b, rc, t);
	if (when > 0) {
		buf_adds(b, "Outcome time: ");
		render_time(b, when);
		buf_adds(b, "<br>");
	}
	render_line(b, "Recommendation: ", t->v.recommendation);
}

static void
render_action(struct buf *b, const struct ticket *t)
{
	char *label = render_action_label(t->v.action.type);

	if (label == NULL || t->v.action.status == IMPERAI_ACTION_NONE) {
		free(label);
		return;
	}
	render_html_text(b, label, 100);
	if (t->v.action.status == IMPERAI_ACTION_COMPLETED) {
		buf_adds(b, " completed");
		if (t->v.action.completed_at > 0) {
			buf_adds(b, " ");
			render_time(b, t->v.action.completed_at);
		}
	} else if (t->v.action.status == IMPERAI_ACTION_FAILED)
		buf_adds(b, " failed");
	else
		buf_adds(b, " pending");
	buf_adds(b, "<br>");
	free(label);
}

static void
render_resolved(struct buf *b, const struct ticket *t)
{
	if (t->resolved_at <= 0 || (t->state != TS_RESOLVED && t->state != TS_CLOSED))
		return;
	buf_addf(b, "Ticket %s automatically by imperai-snow",
	    t->state == TS_CLOSED ? "closed" : "resolved");
	if (t->resolved_at > 0) {
		buf_adds(b, " ");
		render_time(b, t->resolved_at);
	}
	buf_adds(b, "<br>");
}

static void
render_canceled(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	if (str_eq(render_state_why(t), "ticket_ended"))
		buf_adds(b, "The ticket was closed before the verification completed.<br>");
	else
		buf_adds(b, "The verification was canceled at imper.ai.<br>");
	render_verification_id(b, rc, t);
}

/* "Attempt 2 of 3 - attempt 1: Timed out 2026-03-01 12:05:00 UTC." for an
 * automatic new attempt; "No automatic attempt is left ..." after the
 * last.  Plain text; empty when neither applies. */
static void
render_attempt_text(struct buf *b, const struct ticket *t)
{
	uint32_t n = ticket_attempt_number(t);
	const struct ticket_attempt *a = t->nattempts ? &t->attempts[t->nattempts - 1] : NULL;
	/* only on the request that used up the attempts, not on a later one */
	int exhausted = t->retry_exhausted && (t->v.status == IMPERAI_TIMED_OUT ||
	    t->v.status == IMPERAI_NOT_ENOUGH_QUESTIONS);
	char when[20];

	if (n > 1 && !exhausted) {
		buf_addf(b, "Attempt %" PRIu32 " of %" PRIu32, n, t->attempt_max > n ?
		    t->attempt_max : n);
		if (a != NULL && a->generation + 1 == t->generation) {
			buf_addf(b, " - attempt %" PRIu32 ": %s", a->attempt,
			    render_status_label((int)a->status));
			if (a->at > 0 && a->at <= RENDER_TIME_MAX) {
				util_format_snow_time(a->at, when);
				buf_addf(b, " %s UTC", when);
			}
		}
		buf_adds(b, ".");
	} else if (exhausted) {
		buf_adds(b, "No automatic attempt is left");
		if (t->attempt_max > 1)
			buf_addf(b, " (%" PRIu32 " of %" PRIu32 " used)", n, t->attempt_max);
		buf_adds(b, ". To send the requester a new link, set the ticket's category to one "
		    "that needs no verification, save, and set it back: a new request starts.");
	}
}

static void
render_attempt(struct buf *b, const struct ticket *t)
{
	struct buf a;

	buf_init(&a);
	render_attempt_text(&a, t);
	if (a.len > 0) {
		buf_adds(b, a.data);	/* our own text: nothing to escape */
		buf_adds(b, "<br>");
	}
	buf_free(&a);
}

/* The headline: what the agent needs to know first, in the largest type. */
static void
render_headline(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	buf_adds(b, "<h3>");
	switch (t->state) {
	case TS_UNTRACKED:
		buf_adds(b, "No verification needed");
		break;
	case TS_AWAITING_REQUEST:
	case TS_SUPERSEDED:
		buf_adds(b, t->requester_unreadable ? "Verification not started" :
		    "Registering the verification request with imper.ai.");
		break;
	case TS_LINK_READY:
		render_send_link(b, rc, t);
		break;
	case TS_LINK_SENT:
		buf_adds(b, "Waiting for the requester to verify.");
		break;
	case TS_IN_PROGRESS:
		buf_adds(b, "The requester is verifying now.");
		break;
	default:
		buf_addf(b, "Verification Outcome: %s", render_status_label(t->state ==
		    TS_CANCELED ? IMPERAI_CANCELED : (int)t->v.status));
		break;
	}
	buf_adds(b, "</h3>");
}

/* The lines under the headline, each ending in <br>. */
static void
render_details(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	switch (t->state) {
	case TS_UNTRACKED:
		buf_adds(b, "The ticket left the verification categories.<br>");
		break;
	case TS_AWAITING_REQUEST:
	case TS_SUPERSEDED:
		if (t->requester_unreadable) {
			render_unreadable(b);
			break;
		}
		render_notice(b, t);
		render_attempt(b, t);
		break;
	case TS_LINK_READY:
		render_notice(b, t);
		render_attempt(b, t);
		render_link_expiry(b, t);
		break;
	case TS_LINK_SENT:
	case TS_IN_PROGRESS:
		render_notice(b, t);
		render_attempt(b, t);
		render_sent(b, t);
		render_send_again(b, rc, t);
		render_verification_id(b, rc, t);
		break;
	case TS_CANCELED:
		render_canceled(b, rc, t);
		break;
	default:
		render_outcome(b, rc, t);
		render_action(b, t);
		render_resolved(b, t);
		render_attempt(b, t);
		if (t->sent_at > 0 || t->v.channel != NULL || t->v.recipient_masked != NULL)
			render_sent(b, t);
		break;
	}
}

char *
render_field_html(const struct render_ctx *rc, const struct ticket *t)
{
	struct buf b, d;

	buf_init(&b);
	buf_init(&d);
	render_headline(&b, rc, t);
	render_details(&d, rc, t);
	if (d.len >= 4 && strcmp(d.data + d.len - 4, "<br>") == 0)
		d.data[d.len -= 4] = '\0';
	if (d.len > 0)
		buf_addf(&b, "<p>%s</p>", d.data);
	/* last and small, but visible text: the sanitizer keeps <small> */
	buf_addf(&b, "<p><small>" REV_PREFIX " %" PRIu32 ".%" PRIu32 "</small></p>",
	    t->generation, t->revision);
	buf_free(&d);
	return buf_detach(&b);
}

static void
render_note_text(struct buf *b, const char *s, size_t max)
{
	char *plain = render_plain(s, max), *masked = render_mask_emails(plain);

	buf_adds(b, masked);
	free(masked);
	free(plain);
}

static void
render_note_time(struct buf *b, const char *label, int64_t t)
{
	char s[20];

	if (t <= 0 || t > RENDER_TIME_MAX)
		return;
	util_format_snow_time(t, s);
	buf_addf(b, "%s%s UTC\n", label, s);
}

static void
render_note_id(struct buf *b, const struct ticket *t)
{
	const char *id = t->v.id ? t->v.id : t->request_id;

	if (id == NULL)
		return;
	buf_adds(b, "Verification ID: ");
	render_note_text(b, id, 128);
	buf_adds(b, "\n");
}

static void
render_note_sent(struct buf *b, const struct ticket *t)
{
	char *masked = render_mask_recipient(t->v.recipient_masked);

	buf_adds(b, "Verification link sent");
	if (t->v.initiated_by != NULL && *t->v.initiated_by != '\0') {
		buf_adds(b, " by ");
		render_note_text(b, t->v.initiated_by, 200);
	}
	if (t->v.channel != NULL) {
		buf_adds(b, " via ");
		buf_adds(b, strcmp(t->v.channel, "sms") == 0 ? "SMS" :
		    strcmp(t->v.channel, "email") == 0 ? "email" : "another channel");
	}
	if (masked != NULL && *masked != '\0') {
		buf_adds(b, " to ");
		render_note_text(b, masked, 200);
	}
	buf_adds(b, ".\n");
	free(masked);
}

static void
render_note_outcome(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	const char *risk = render_risk_label(rc, t->v.risk_score);

	buf_addf(b, "Verification Outcome: %s\n", render_status_label((int)t->v.status));
	if (risk != NULL)
		buf_addf(b, "Risk level: %s\n", risk);
	render_note_id(b, t);
	if (t->v.recommendation != NULL && *t->v.recommendation != '\0') {
		buf_adds(b, "Recommendation: ");
		render_note_text(b, t->v.recommendation, RENDER_TEXT_MAX);
		buf_adds(b, "\n");
	}
}

static void
render_note_action(struct buf *b, const struct ticket *t)
{
	char *label = render_action_label(t->v.action.type);

	if (label != NULL && t->v.action.status != IMPERAI_ACTION_NONE) {
		render_note_text(b, label, 64);
		if (t->v.action.status == IMPERAI_ACTION_COMPLETED && t->v.action.completed_at > 0)
			render_note_time(b, " completed ", t->v.action.completed_at);
		else
			buf_addf(b, " %s\n", t->v.action.status == IMPERAI_ACTION_COMPLETED ?
			    "completed" : t->v.action.status == IMPERAI_ACTION_FAILED ?
			    "failed" : "pending");
	}
	free(label);
}

static void
render_note_attempt(struct buf *b, const struct ticket *t)
{
	size_t len = b->len;

	render_attempt_text(b, t);
	if (b->len > len)
		buf_adds(b, "\n");
}

static void
render_note_link(struct buf *b, const struct render_ctx *rc, const struct ticket *t)
{
	if (render_url_allowed(rc, t->v.send_link_url))
		buf_adds(b, "Verification link ready: click \"imper.ai - Send Verification link\" "
		    "in the imper.ai Verification field.\n");
	else
		buf_adds(b, "Verification link refused: it does not point to an allowed imper.ai "
		    "host.\n");
	render_note_id(b, t);
	render_note_time(b, "Link expires ", t->v.expires_at);
	render_note_attempt(b, t);
}

static int
render_status_final(enum imperai_status s)
{
	return s == IMPERAI_PASSED || s == IMPERAI_FAILED || s == IMPERAI_TIMED_OUT ||
	    s == IMPERAI_NOT_ENOUGH_QUESTIONS || s == IMPERAI_CANCELED;
}

/* The lines that describe the event tag, from the ticket's current picture. */
static void
render_note_body(struct buf *b, const struct render_ctx *rc, const struct ticket *t,
    const char *tag)
{
	if (strcmp(tag, "link") == 0)
		render_note_link(b, rc, t);
	else if (strcmp(tag, "sent") == 0)
		render_note_sent(b, t);
	else if (strcmp(tag, "progress") == 0)
		buf_adds(b, "The requester started the verification.\n");
	else if (strcmp(tag, "update") == 0 && !render_status_final(t->v.status))
		render_note_sent(b, t);
	else if (strcmp(tag, "outcome") == 0 || strcmp(tag, "on_fail") == 0 ||
	    strcmp(tag, "update") == 0) {
		render_note_outcome(b, rc, t);
		render_note_action(b, t);
		if (t->retry_exhausted)
			render_note_attempt(b, t);
	} else if (strcmp(tag, "action") == 0) {
		render_note_action(b, t);
		render_note_id(b, t);
	} else if (strcmp(tag, "resolved") == 0) {
		render_note_outcome(b, rc, t);
		render_note_action(b, t);
		buf_addf(b, "Ticket %s automatically.\n", t->state == TS_CLOSED ? "closed" : "resolved");
	} else if (strcmp(tag, "requester_changed") == 0)
		buf_adds(b, "Re-verification required: the requester changed. A new verification "
		    "request is being registered; an earlier result does not carry over.\n");
	else if (strcmp(tag, "flow_changed") == 0)
		buf_adds(b, "Re-verification required: the ticket's verification flow changed.\n");
	else if (strcmp(tag, "canceled") == 0)
		buf_adds(b, str_eq(render_state_why(t), "ticket_ended") ?
		    "Verification canceled: the ticket was closed before the verification "
		    "completed.\n" : "Verification canceled at imper.ai.\n");
	else if (strcmp(tag, "requester_unreadable") == 0)
		buf_adds(b, "Verification not started: the requester could not be read (name, "
		    "email and user name are empty for the integration user), so no verification "
		    "was requested. " RENDER_GRANT " The verification starts by itself once they "
		    "can be read.\n");
	else if (strcmp(tag, "untracked") == 0)
		buf_adds(b, "No verification needed: the ticket left the verification categories.\n");
	else if (strcmp(tag, "error") == 0)
		buf_adds(b, "The ticket could not be resolved automatically; an agent must resolve "
		    "it.\n");
}

/* ServiceNow renders [code]...[/code] in a journal entry as HTML: every
 * such tag becomes (code) / (/code), in place (same length). */
static void
render_defuse_code(char *s)
{
	for (char *p = s; (p = strchr(p, '[')) != NULL; p++) {
		size_t slash = p[1] == '/';

		if (strncasecmp(p + 1 + slash, "code]", 5) == 0) {
			p[0] = '(';
			p[5 + slash] = ')';
		}
	}
}

char *
render_work_note(const struct render_ctx *rc, const struct ticket *t, const char *tag,
    const char *extra)
{
	struct buf b;
	char *note;

	buf_init(&b);
	buf_adds(&b, "[imper.ai ");
	render_note_text(&b, tag, 32);
	buf_addf(&b, " %" PRIu32 ".%" PRIu32 "]\n", t->generation, t->revision);
	render_note_body(&b, rc, t, tag);
	if (extra != NULL && *extra != '\0') {
		render_note_text(&b, extra, RENDER_NOTE_MAX);
		buf_adds(&b, "\n");
	}
	while (b.len > 0 && b.data[b.len - 1] == '\n')
		b.data[--b.len] = '\0';
	note = render_plain(b.data, RENDER_NOTE_MAX);
	render_defuse_code(note);
	buf_free(&b);
	return note;
}

/* --- reading a field back (rebuild) ------------------------------------- */

/* p past blanks and the literal s, or NULL when the text there is not s. */
static const char *
render_expect(const char *p, const char *s)
{
	p += strspn(p, " \t\r\n");
	return strncmp(p, s, strlen(s)) == 0 ? p + strlen(s) : NULL;
}

/* "YYYY-MM-DD HH:MM:SS UTC" right after the first " at " (or the
 * literal after) that has one; 0 when none does. */
static int64_t
render_time_after(const char *p, const char *lead)
{
	char when[20];
	int64_t t;

	for (; p != NULL && (p = strstr(p, lead)) != NULL; p++) {
		const char *q = p + strlen(lead);

		q += strspn(q, " ");
		if (strlen(q) < 23 || strncmp(q + 19, " UTC", 4) != 0)
			continue;
		memcpy(when, q, 19);
		when[19] = '\0';
		if (util_parse_snow_time(when, &t) == 0)
			return t;
	}
	return 0;
}

static char *
render_id_after(const char *p)
{
	size_t n;

	if (p == NULL || (p = strstr(p, "Verification ID:")) == NULL)
		return NULL;
	p += strlen("Verification ID:");
	p += strspn(p, " ");
	n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
	return n > 0 && n <= 128 ? xstrndup(p, n) : NULL;
}

/* The notice of a re-verification: before the body in fields of the old
 * form, right after the headline since. */
static const char *
render_skip_notice(const char *p, struct render_shown *s)
{
	const char *q = render_expect(p, "Re-verification required");

	if (q == NULL)
		return p;
	if ((q = render_expect(q, ":")) == NULL)
		return p;
	if (render_expect(q, "the requester changed.") != NULL) {
		str_replace(&s->gen_reason, "requester_changed");
		return render_expect(q, "the requester changed.");
	}
	if (render_expect(q, "the ticket's verification flow changed.") != NULL) {
		str_replace(&s->gen_reason, "flow_changed");
		return render_expect(q, "the ticket's verification flow changed.");
	}
	return p;
}

/* Past the link's text: its note when refused or not available yet. */
static const char *
render_line_after(const char *p)
{
	const char *q;

	if ((q = render_expect(p, ": refused, the link does not point to an allowed imper.ai "
	    "host.")) != NULL)
		return q;
	if ((q = render_expect(p, ": not available yet.")) != NULL)
		return q;
	return p;
}

/* "Verification Outcome: <label>": the final status, -1 if none fits. */
static int
render_outcome_status(const char *p, const char **end)
{
	static const int finals[] = { IMPERAI_PASSED, IMPERAI_FAILED, IMPERAI_TIMED_OUT,
	    IMPERAI_NOT_ENOUGH_QUESTIONS, IMPERAI_CANCELED };
	const char *q;

	if ((p = render_expect(p, "Verification Outcome:")) == NULL)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(finals); i++) {
		q = render_expect(p, render_status_label(finals[i]));
		if (q != NULL && (*q == '\0' || isspace((unsigned char)*q))) {
			*end = q;
			return finals[i];
		}
	}
	return -1;
}

static int
render_action_shown(const char *p, const char *action_type)
{
	char *label = render_action_label(action_type), *esc, *look;
	static const char *const words[] = { " completed", " failed", " pending" };
	static const int st[] = { IMPERAI_ACTION_COMPLETED, IMPERAI_ACTION_FAILED,
	    IMPERAI_ACTION_PENDING };
	int found = IMPERAI_ACTION_NONE;

	if (label == NULL)
		return IMPERAI_ACTION_NONE;
	esc = render_escape(label, 100);
	for (size_t i = 0; i < ARRAY_SIZE(words) && found == IMPERAI_ACTION_NONE; i++) {
		look = xprintf("%s%s", esc, words[i]);
		if (strstr(p, look) != NULL)
			found = st[i];
		free(look);
	}
	free(esc);
	free(label);
	return found;
}

/* The state of a field showing an outcome. */
static void
render_shown_final(const char *p, const char *action_type, struct render_shown *s)
{
	s->risk_high = render_expect(p, "Risk level: High") != NULL;
	s->verification_id = render_id_after(p);
	s->action = render_action_shown(p, action_type);
	s->sent_at = render_time_after(strstr(p, "Verification link sent"), " at ");
	s->resolved_at = render_time_after(p, "automatically by imperai-snow");
	if (strstr(p, "Ticket closed automatically by imperai-snow") != NULL)
		s->state = TS_CLOSED;
	else if (strstr(p, "Ticket resolved automatically by imperai-snow") != NULL)
		s->state = TS_RESOLVED;
	else if (s->action == IMPERAI_ACTION_COMPLETED)
		s->state = TS_ACTION_DONE;
	else if (s->status == IMPERAI_PASSED)
		s->state = TS_PASSED;
	else if (s->status == IMPERAI_FAILED)
		s->state = TS_FAILED;
	else if (s->status == IMPERAI_TIMED_OUT)
		s->state = TS_TIMED_OUT;
	else
		s->state = TS_NOT_ENOUGH_QUESTIONS;
}

static void
render_shown_sent(const char *p, struct render_shown *s, int state, int status)
{
	s->state = state;
	s->status = status;
	s->sent_at = render_time_after(strstr(p, "Verification link sent"), " at ");
	s->verification_id = render_id_after(p);
}

/* The body right after the header decides the state: free text (names,
 * recommendations) comes later and cannot pose as it. */
static int
render_shown_body(const char *p, const char *action_type, struct render_shown *s)
{
	const char *q;

	if (render_expect(p, "No verification needed") != NULL)
		s->state = TS_UNTRACKED;
	else if ((q = render_expect(p, "Registering the verification request with imper.ai.")) !=
	    NULL || (q = render_expect(p, "Verification not started")) != NULL) {
		s->state = TS_AWAITING_REQUEST;
		render_skip_notice(q, s);
	}
	else if ((q = render_expect(p, "imper.ai - Send Verification link")) != NULL) {
		s->state = TS_LINK_READY;
		s->status = IMPERAI_PENDING;
		render_skip_notice(render_line_after(q), s);
	} else if ((q = render_expect(p, "Waiting for the requester to verify.")) != NULL)
		render_shown_sent(render_skip_notice(q, s), s, TS_LINK_SENT, IMPERAI_LINK_SENT);
	else if ((q = render_expect(p, "The requester is verifying now.")) != NULL)
		render_shown_sent(render_skip_notice(q, s), s, TS_IN_PROGRESS, IMPERAI_IN_PROGRESS);
	else if ((s->status = render_outcome_status(p, &q)) == IMPERAI_CANCELED) {
		s->state = TS_CANCELED;
		s->closed_first = render_expect(q, "The ticket was closed") != NULL;
		s->verification_id = render_id_after(q);
	} else if (s->status >= 0)
		render_shown_final(q, action_type, s);
	else
		return -EINVAL;
	return 0;
}

int
render_parse_field(const char *field, const char *action_type, struct render_shown *out)
{
	char *text;
	const char *p;
	int rc;

	memset(out, 0, sizeof(*out));
	out->status = -1;
	if (render_parse_revision(field, &out->generation, &out->revision) < 0)
		return -ENOENT;
	text = render_strip_tags(field);
	/* fields written before 0.x began with a title and the notice */
	if ((p = render_expect(text, "imper.ai Verification")) == NULL)
		p = text;
	rc = render_shown_body(render_skip_notice(p, out), action_type, out);
	free(text);
	if (rc < 0)
		render_shown_free(out);
	return rc;
}

void
render_shown_free(struct render_shown *s)
{
	free(s->verification_id);
	free(s->gen_reason);
	s->verification_id = NULL;
	s->gen_reason = NULL;
}
