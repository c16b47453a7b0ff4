/* render: the verification field's HTML and the work notes' text.  All
 * escaping and PII masking happen here and only here.
 *
 * Text from a ticket or from imper.ai is HTML-escaped (and invalid UTF-8
 * or NUL replaced); links are emitted only when http(s) and their host is
 * one of the configured imper.ai hosts.  The field always shows the
 * complete current picture and ends with a small, visible revision tag
 * ("imperai-snow ref 1.3") by which the daemon recognises its own writes:
 * ServiceNow's HTML sanitizer may strip comments and data attributes.
 *
 * Depends on util.c only (no config, flows or imperai functions are
 * called), so the engine and its tests link without those modules. */
#ifndef IMPERAI_RENDER_H
#define IMPERAI_RENDER_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct ticket;

/* Longest text from imper.ai shown in the field, and longest work note. */
#define RENDER_TEXT_MAX	2000
#define RENDER_NOTE_MAX	4000

/* Which hosts links may point to (lower case, no port), and the risk bands. */
struct render_ctx {
	const char *const *link_hosts;
	size_t		 nlink_hosts;
	int		 risk_verified_max;
	int		 risk_medium_max;
};
/* rc borrows c's strings: c must outlive rc. */
void render_ctx_from_config(struct render_ctx *rc, const struct config *c);

/* The field HTML for ticket t at t->revision: an <h3> headline (the
 * outcome, or the link to send), a <p> of details, and the revision tag
 * last in <p><small>; only h3, p, br, strong, small and a href, which
 * ServiceNow's sanitizer keeps (no style, data-* or comments). */
char *render_field_html(const struct render_ctx *rc, const struct ticket *t);
/* One work note (plain text, at most RENDER_NOTE_MAX bytes) for event tag
 * ("link", "sent", "progress", "outcome", "action", "update", "resolved",
 * "requester_changed", "flow_changed", "canceled", "untracked", "on_fail",
 * "requester_unreadable", "error"); begins with "[imper.ai <tag> <gen>.<rev>]".  extra (may be
 * NULL) is appended as further lines, sanitized and with emails masked. */
char *render_work_note(const struct render_ctx *rc, const struct ticket *t, const char *tag,
    const char *extra);

/* What a field written by render_field_html() shows, read back from its
 * text alone (imperai-snowctl rebuild, after the state was lost). */
struct render_shown {
	uint32_t	 generation;
	uint32_t	 revision;
	int		 state;		/* enum tstate the field was rendered in */
	int		 status;	/* enum imperai_status shown, -1 when none */
	int		 action;	/* enum imperai_action_status shown */
	int		 risk_high;	/* "Risk level: High" */
	int		 closed_first;	/* canceled because the ticket was closed */
	char		*verification_id;	/* NULL when the field shows none */
	char		*gen_reason;	/* "requester_changed", "flow_changed" or NULL */
	int64_t		 sent_at;
	int64_t		 resolved_at;
};
/* Parses field; action_type (the verification's, may be NULL) says which
 * action line to look for.  -ENOENT without a revision tag; -EINVAL for a
 * body render_field_html() does not write (generation and revision are
 * filled then).  Free with render_shown_free(). */
int render_parse_field(const char *field, const char *action_type, struct render_shown *out);
void render_shown_free(struct render_shown *s);

/* "imperai-snow ref <gen>.<rev>": the tag the field ends with. */
char *render_revision_tag(uint32_t generation, uint32_t revision);
/* Finds the last revision tag in a field's text (HTML tags stripped,
 * &nbsp; taken as a space); -ENOENT if none. */
int render_parse_revision(const char *field, uint32_t *generation, uint32_t *revision);

/* HTML text: escapes &<>"', replaces invalid UTF-8 with U+FFFD, drops NUL
 * and control characters but \n and \t; caps the result at max bytes
 * (when max > 0) on a character boundary, ending it with U+2026. */
char *render_escape(const char *s, size_t max);
/* Same for len bytes that may hold NUL. */
char *render_escape_n(const char *s, size_t len, size_t max);
/* Same for an attribute value: \n and \t become a space. */
char *render_escape_attr(const char *s, size_t max);
/* Plain text (work notes, text sent to imper.ai or ServiceNow): the same
 * UTF-8 and control-character repair and cap, no HTML escaping. */
char *render_plain(const char *s, size_t max);

/* 1 when url is http(s), has no userinfo, backslash, whitespace, control
 * or percent-encoded character in it, and its host is in the allowed list
 * (case-insensitive, exact). */
int render_url_allowed(const struct render_ctx *rc, const char *url);

/* "j***e@e***.com" for an email, "+*********67" for a phone number; an
 * already masked value is kept.  NULL for NULL. */
char *render_mask_recipient(const char *s);
/* Copy of s with every unmasked email address in it masked. */
char *render_mask_emails(const char *s);

const char *render_status_label(int imperai_status);	/* "Passed", "Timed out", ... */
/* "Verified", "Medium", "High"; NULL when the score is unknown (not 0-10). */
const char *render_risk_label(const struct render_ctx *rc, int score);
/* "Password reset" for "password_reset"; NULL for NULL, "" or "none". */
char *render_action_label(const char *action);

#endif
