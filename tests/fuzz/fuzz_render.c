/* Fuzzes the renderer with a ticket whose every text comes from the input,
 * and checks what must always hold of what ServiceNow will show:
 *   field: valid UTF-8; only h3, p, br, strong, small and a tags; no script;
 *     only class, title, target, rel and href attributes (so no on* event
 *     handler, style or src), double-quoted; every href an http(s) URL
 *     whose host, parsed the way a browser does, is an allowed host; every
 *     & starts an entity; the visible text ends with the revision tag and
 *     render_parse_revision() finds exactly that one;
 *   work note: valid UTF-8, no control characters but \n and \t, starts
 *     with "[imper.ai <tag> <gen>.<rev>]", at most RENDER_NOTE_MAX bytes,
 *     no "[code]" (ServiceNow renders it as HTML in a journal entry), no
 *     email address left unmasked;
 *   escapers: valid UTF-8, nothing left to escape, capped.
 *
 * Input: a 16-byte header (states, scores, flags, times), then the texts,
 * separated by NUL bytes, in the order of texts[] below; a missing text is
 * NULL. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"
#include "fuzz.h"
#include "imperai.h"
#include "render.h"
#include "util.h"

#define HDR	16

static const char *const hosts[] = { "verify.imper.ai", "api.imper.ai", "127.0.0.1" };

static const char *const tags[] = {
	"link", "sent", "progress", "outcome", "action", "update", "resolved",
	"requester_changed", "flow_changed", "canceled", "untracked", "on_fail", "error",
};

static const int64_t times[] = {
	0, 1700000000, -1, INT64_MAX, INT64_MIN, 253402300799, 253402300800, 86400,
};

/* Where each text of the input goes. */
#define TEXT(field)	offsetof(struct ticket, field)
static const size_t texts[] = {
	TEXT(number), TEXT(short_description), TEXT(category), TEXT(subcategory),
	TEXT(snow_state), TEXT(flow), TEXT(request_id), TEXT(requester),
	TEXT(requester_name), TEXT(gen_reason), TEXT(last_error),
	TEXT(v.id), TEXT(v.channel), TEXT(v.recipient_masked), TEXT(v.initiated_by),
	TEXT(v.recommendation), TEXT(v.analysis_summary), TEXT(v.additional_info),
	TEXT(v.send_link_url), TEXT(v.details_url), TEXT(v.action.type),
	TEXT(v.ticket.number), TEXT(v.ticket.url), TEXT(table), TEXT(requester_email),
	TEXT(description), TEXT(v.category), TEXT(v.requested_action), TEXT(v.subject),
	TEXT(v.ticket.instance), TEXT(v.ticket.table), TEXT(v.ticket.sys_id),
};

struct input {
	struct ticket	 t;
	char		*extra;		/* the work note's extra lines */
	const char	*tag;
	char		*pieces[ARRAY_SIZE(texts) + 1];
	size_t		 npieces;
};

static void
input_texts(struct input *in, const uint8_t *p, size_t n)
{
	while (n > 0 && in->npieces < ARRAY_SIZE(in->pieces)) {
		const uint8_t *nul = memchr(p, '\0', n);
		size_t len = nul != NULL ? (size_t)(nul - p) : n;

		in->pieces[in->npieces] = xstrndup((const char *)p, len);
		if (in->npieces < ARRAY_SIZE(texts))
			*(char **)((char *)&in->t + texts[in->npieces]) = in->pieces[in->npieces];
		else
			in->extra = in->pieces[in->npieces];
		in->npieces++;
		p += len + (nul != NULL);
		n -= len + (nul != NULL);
	}
}

static void
input_parse(struct input *in, const uint8_t *data, size_t size)
{
	uint8_t h[HDR] = { 0 };

	memset(in, 0, sizeof(*in));
	memcpy(h, data, size < HDR ? size : HDR);
	in->t.state = (enum tstate)(h[0] % TS__COUNT);
	in->t.v.status = (enum imperai_status)(h[1] % (IMPERAI_CANCELED + 1));
	in->t.v.risk_score = h[2] % 14 - 2;
	in->t.v.action.status = (enum imperai_action_status)(h[3] % 4);
	in->t.v.action.automated = h[4] & 1;
	in->t.ended = (h[4] >> 1) & 1;
	in->t.on_fail_applied = (h[4] >> 2) & 1;
	in->t.untracked_noted = (h[4] >> 3) & 1;
	in->t.resolve_failed = (h[4] >> 4) & 1;
	in->t.generation = (uint32_t)h[5] | (uint32_t)h[6] << 8 | (h[4] & 0x80 ? 0xffff0000u : 0);
	in->t.revision = (uint32_t)h[7] | (uint32_t)h[8] << 8 | (h[4] & 0x40 ? 0xffff0000u : 0);
	in->tag = h[9] < ARRAY_SIZE(tags) ? tags[h[9]] : "unknown";
	in->t.v.expires_at = times[h[10] & 7];
	in->t.v.completed_at = times[h[10] >> 3 & 7];
	in->t.v.updated_at = times[h[11] & 7];
	in->t.v.action.completed_at = times[h[11] >> 3 & 7];
	in->t.sent_at = times[h[12] & 7];
	in->t.resolved_at = times[h[12] >> 3 & 7];
	in->t.created_at = times[h[13] & 7];
	in->t.state_since = times[h[13] >> 3 & 7];
	in->t.resolve_revision = h[14];
	in->t.landed_revision = h[15];
	if (size > HDR)
		input_texts(in, data + HDR, size - HDR);
}

static void
input_free(struct input *in)
{
	for (size_t i = 0; i < in->npieces; i++)
		free(in->pieces[i]);
}

static int
has_ci(const char *s, const char *needle)
{
	for (size_t n = strlen(needle); *s != '\0'; s++)
		if (strncasecmp(s, needle, n) == 0)
			return 1;
	return 0;
}

static int
host_allowed(const char *h, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(hosts); i++)
		if (strlen(hosts[i]) == len && strncasecmp(hosts[i], h, len) == 0)
			return 1;
	return 0;
}

/* The host of an href value the way a browser finds it: tabs and newlines
 * removed, "\" as "/", userinfo up to the last "@" skipped. */
static int
href_allowed(const char *v)
{
	char *u = xstrdup(v), *w = u, *auth, *end, *at, *colon;
	int ok = 0;

	for (const char *r = v; *r != '\0'; r++)
		if (*r != '\t' && *r != '\n' && *r != '\r')
			*w++ = *r;
	*w = '\0';
	if (strncasecmp(u, "https://", 8) == 0)
		auth = u + 8;
	else if (strncasecmp(u, "http://", 7) == 0)
		auth = u + 7;
	else
		goto out;
	end = auth + strcspn(auth, "/\\?#");
	*end = '\0';
	if ((at = strrchr(auth, '@')) != NULL)
		auth = at + 1;
	colon = strchr(auth, ':');
	ok = strchr(auth, '%') == NULL &&
	    host_allowed(auth, colon != NULL ? (size_t)(colon - auth) : strlen(auth));
out:
	free(u);
	return ok;
}

/* Decodes the entities render emits inside an attribute value. */
static char *
attr_decode(const char *s, size_t n)
{
	static const char *const ent[][2] = {
		{ "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" }, { "&quot;", "\"" },
		{ "&#39;", "'" },
	};
	struct buf b;

	buf_init(&b);
	for (size_t i = 0; i < n;) {
		size_t k;

		for (k = 0; k < ARRAY_SIZE(ent); k++)
			if (strncmp(s + i, ent[k][0], strlen(ent[k][0])) == 0)
				break;
		if (k < ARRAY_SIZE(ent)) {
			buf_adds(&b, ent[k][1]);
			i += strlen(ent[k][0]);
		} else
			buf_addc(&b, s[i++]);
	}
	return buf_detach(&b);
}

/* Checks one attribute (name, quoted value) of a tag: only class, title,
 * target, rel and an allowed href, so no event handler, style, src, or a
 * javascript: URL (that is a scheme, and href_allowed() wants http(s)). */
static void
check_attr(const char *html, const char *name, size_t nlen, const char *val, size_t vlen)
{
	static const char *const allowed[] = { "class", "title", "target", "rel" };
	char *v;

	if (nlen == 4 && strncasecmp(name, "href", 4) == 0) {
		v = attr_decode(val, vlen);
		if (!href_allowed(v))
			fuzz_fail("href to a host outside the allow-list", html);
		free(v);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
		if (strlen(allowed[i]) == nlen && strncasecmp(allowed[i], name, nlen) == 0)
			return;
	fuzz_fail("attribute other than class, title, target, rel, href", html);
}

/* Parses the attributes of the tag between p and end; values must be
 * double-quoted. */
static void
check_attrs(const char *html, const char *p, const char *end)
{
	while (p < end) {
		const char *name, *val;

		while (p < end && isspace((unsigned char)*p))
			p++;
		if (p == end || (*p == '/' && p + 1 == end))
			return;
		name = p;
		while (p < end && (isalnum((unsigned char)*p) || *p == '-'))
			p++;
		if (p == name || p + 1 >= end || p[0] != '=' || p[1] != '"')
			fuzz_fail("malformed or unquoted attribute", html);
		val = p + 2;
		if ((p = memchr(val, '"', (size_t)(end - val))) == NULL)
			fuzz_fail("unterminated attribute value", html);
		check_attr(html, name, (size_t)(val - 2 - name), val, (size_t)(p - val));
		p++;
	}
}

/* One tag from "<" to ">"; returns the position after it. */
static const char *
check_tag(const char *html, const char *lt)
{
	static const char *const allowed[] = { "h3", "p", "br", "strong", "small", "a" };
	const char *gt = strchr(lt, '>'), *name = lt + 1, *p;
	size_t k;

	if (gt == NULL || memchr(lt + 1, '<', (size_t)(gt - lt - 1)) != NULL)
		fuzz_fail("stray < in the field", html);
	if (*name == '/')
		name++;
	for (p = name; isalnum((unsigned char)*p); p++)
		;
	for (k = 0; k < ARRAY_SIZE(allowed); k++)
		if (strlen(allowed[k]) == (size_t)(p - name) &&
		    strncasecmp(allowed[k], name, (size_t)(p - name)) == 0)
			break;
	if (k == ARRAY_SIZE(allowed))
		fuzz_fail("tag outside h3, p, br, strong, small, a", html);
	check_attrs(html, p, gt);
	return gt + 1;
}

static void
check_entity(const char *html, const char *amp)
{
	const char *p = amp + 1;

	if (*p == '#')
		p++;
	while (isalnum((unsigned char)*p))
		p++;
	if (p == amp + 1 || *p != ';')
		fuzz_fail("& that starts no entity", html);
}

/* The visible text, tags removed and &nbsp; as a space. */
static char *
field_text(const char *html)
{
	struct buf b;

	buf_init(&b);
	for (const char *p = html; *p != '\0';) {
		if (*p == '<')
			p = strchr(p, '>') + 1;
		else if (strncmp(p, "&nbsp;", 6) == 0) {
			buf_addc(&b, ' ');
			p += 6;
		} else
			buf_addc(&b, *p++);
	}
	return buf_detach(&b);
}

static void
check_revision(const char *html, const struct ticket *t)
{
	char want[64], *text = field_text(html);
	size_t n = strlen(text), wlen;
	uint32_t g, r;

	snprintf(want, sizeof(want), "imperai-snow ref %" PRIu32 ".%" PRIu32, t->generation,
	    t->revision);
	wlen = strlen(want);
	while (n > 0 && isspace((unsigned char)text[n - 1]))
		n--;
	if (n < wlen || memcmp(text + n - wlen, want, wlen) != 0)
		fuzz_fail("field does not end with its revision tag", html);
	if (render_parse_revision(html, &g, &r) != 0 || g != t->generation || r != t->revision)
		fuzz_fail("render_parse_revision does not find the field's own tag", html);
	free(text);
}

static void
check_field(const char *html, const struct ticket *t)
{
	if (!util_utf8_valid(html, strlen(html)))
		fuzz_fail("field is not valid UTF-8", html);
	/* Escaped text may say "javascript:" harmlessly: check_attr() keeps it
	 * out of URLs. */
	if (has_ci(html, "<script"))
		fuzz_fail("script in the field", html);
	for (const char *p = html; *p != '\0';) {
		if (*p == '<')
			p = check_tag(html, p);
		else if (*p == '>')
			fuzz_fail("stray > in the field", html);
		else {
			if (*p == '&')
				check_entity(html, p);
			p++;
		}
	}
	check_revision(html, t);
}

static int
email_char(int c, const char *extra)
{
	return isalnum(c) || c == '*' || strchr(extra, c) != NULL;
}

/* An address as a reader sees one: local@name.tld with no "*" on either
 * side of the "@" (render masks as "j***e@e***.com"). */
static int
has_unmasked_email(const char *s)
{
	for (const char *at = strchr(s, '@'); at != NULL; at = strchr(at + 1, '@')) {
		const char *l = at, *r = at + 1, *dot = NULL;
		int star = 0;

		while (l > s && l[-1] != '\0' && email_char((unsigned char)l[-1], "._%+-")) {
			star |= l[-1] == '*';
			l--;
		}
		for (; *r != '\0' && email_char((unsigned char)*r, ".-"); r++) {
			star |= *r == '*';
			if (*r == '.' && r > at + 1)
				dot = r;
		}
		if (l < at && dot != NULL && dot + 1 < r && isalpha((unsigned char)dot[1]) &&
		    !star)
			return 1;
	}
	return 0;
}

static void
check_note(const char *note, const struct ticket *t, const char *tag)
{
	char want[128];

	if (!util_utf8_valid(note, strlen(note)))
		fuzz_fail("work note is not valid UTF-8", note);
	for (const unsigned char *p = (const unsigned char *)note; *p != '\0'; p++)
		if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
			fuzz_fail("control character in a work note", note);
	if (strlen(note) > RENDER_NOTE_MAX)
		fuzz_fail("work note longer than RENDER_NOTE_MAX", note);
	snprintf(want, sizeof(want), "[imper.ai %s %" PRIu32 ".%" PRIu32 "]", tag,
	    t->generation, t->revision);
	if (strncmp(note, want, strlen(want)) != 0)
		fuzz_fail("work note does not start with its tag", note);
	/* ServiceNow renders [code]...[/code] in a journal entry as HTML. */
	if (has_ci(note, "[code]"))
		fuzz_fail("[code] in a work note", note);
	if (has_unmasked_email(note))
		fuzz_fail("unmasked email address in a work note", note);
}

/* Escaped text: valid, nothing left unescaped, within the cap. */
static void
check_escaped(const char *out, size_t max, int attr)
{
	size_t len = strlen(out);

	if (!util_utf8_valid(out, len))
		fuzz_fail("escaped text is not valid UTF-8", out);
	if (strpbrk(out, "<>\"'") != NULL)
		fuzz_fail("escaped text holds < > \" or '", out);
	if (attr && strpbrk(out, "\n\t") != NULL)
		fuzz_fail("attribute text holds a newline or tab", out);
	for (const char *p = strchr(out, '&'); p != NULL; p = strchr(p + 1, '&'))
		check_entity(out, p);
	/* A cap below the ellipsis' 3 bytes cannot be honoured. */
	if (max >= 3 && len > max)
		fuzz_fail("escaped text longer than its cap", out);
}

static void
fuzz_escapers(const struct input *in, size_t max)
{
	for (size_t i = 0; i < in->npieces; i++) {
		const char *s = in->pieces[i];
		char *out;

		check_escaped(out = render_escape(s, max), max, 0);
		free(out);
		check_escaped(out = render_escape_attr(s, max), max, 1);
		free(out);
		out = render_plain(s, max);
		if (!util_utf8_valid(out, strlen(out)) || (max >= 3 && strlen(out) > max))
			fuzz_fail("plain text invalid or over its cap", out);
		free(out);
		free(render_mask_recipient(s));
		free(render_mask_emails(s));
		free(render_action_label(s));
	}
}

/* The state rebuild should read back from the field of t; -1 when any,
 * -2 when t is one the engine never builds (an outcome state without a
 * final status): the field then shows "Outcome: Pending" and may be
 * refused. */
static int
shown_state(const struct ticket *t)
{
	switch (t->state) {
	case TS_UNTRACKED:
	case TS_AWAITING_REQUEST:
	case TS_LINK_READY:
	case TS_LINK_SENT:
	case TS_IN_PROGRESS:
	case TS_CANCELED:
		return (int)t->state;
	case TS_SUPERSEDED:
		return TS_AWAITING_REQUEST;
	default:
		return t->v.status == IMPERAI_PASSED || t->v.status == IMPERAI_FAILED ||
		    t->v.status == IMPERAI_TIMED_OUT ||
		    t->v.status == IMPERAI_NOT_ENOUGH_QUESTIONS ? -1 : -2;
	}
}

/* imperai-snowctl rebuild reads the field back: what render wrote must
 * parse, with the ticket's own revision and, where the body alone says
 * it, the same state. */
static void
check_parse_back(const char *html, const struct ticket *t)
{
	struct render_shown sh;
	int want = shown_state(t), rc = render_parse_field(html, t->v.action.type, &sh);

	if (rc == -ENOENT)
		fuzz_fail("render_parse_field finds no revision tag", html);
	if (rc != 0 && want != -2)
		fuzz_fail("render_parse_field refuses a field render_field_html wrote", html);
	if (sh.generation != t->generation || sh.revision != t->revision)
		fuzz_fail("render_parse_field reads another revision", html);
	if (rc == 0 && want >= 0 && sh.state != want)
		fuzz_fail("render_parse_field reads another state", html);
	render_shown_free(&sh);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct render_ctx rc = { hosts, ARRAY_SIZE(hosts), 3, 6 };
	struct input in;
	char *out;
	uint32_t g, r;

	input_parse(&in, data, size);
	check_field(out = render_field_html(&rc, &in.t), &in.t);
	check_parse_back(out, &in.t);
	free(out);
	check_note(out = render_work_note(&rc, &in.t, in.tag, in.extra), &in.t, in.tag);
	free(out);
	fuzz_escapers(&in, size > 0 ? data[0] * 8u : 0);
	(void)render_url_allowed(&rc, in.t.v.send_link_url);
	if (in.t.v.details_url != NULL && render_url_allowed(&rc, in.t.v.details_url) &&
	    !href_allowed(in.t.v.details_url))
		fuzz_fail("render_url_allowed accepts a URL a browser sends elsewhere",
		    in.t.v.details_url);
	if (in.t.short_description != NULL)
		(void)render_parse_revision(in.t.short_description, &g, &r);
	(void)render_risk_label(&rc, in.t.v.risk_score);
	input_free(&in);
	return 0;
}
