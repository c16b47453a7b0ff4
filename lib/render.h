/* render: the verification field's HTML and the work notes' text.  All
 * escaping and PII masking happen here and only here.
 *
 * Text from a ticket or from imper.ai is HTML-escaped (and invalid UTF-8
 * or NUL replaced); links are emitted only when http(s) and their host is
 * one of the configured imper.ai hosts.  The field always shows the
 * complete current picture and ends with a visible revision tag
 * ("imperai-snow ref 1.3") by which the daemon recognises its own writes:
 * ServiceNow's HTML sanitizer may strip comments and data attributes. */
#ifndef IMPERAI_RENDER_H
#define IMPERAI_RENDER_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct ticket;

/* Which hosts links may point to, and the risk bands. */
struct render_ctx {
	const char *const *link_hosts;
	size_t		 nlink_hosts;
	int		 risk_verified_max;
	int		 risk_medium_max;
};
void render_ctx_from_config(struct render_ctx *rc, const struct config *c);

/* The field HTML for ticket t at t->revision. */
char *render_field_html(const struct render_ctx *rc, const struct ticket *t);
/* One work note for event tag ("link", "sent", "outcome", "action",
 * "resolved", "requester_changed", "canceled", "untracked", "on_fail",
 * "error"); begins with "[imper.ai <tag> <gen>.<rev>]". */
char *render_work_note(const struct render_ctx *rc, const struct ticket *t, const char *tag,
    const char *extra);

/* "imperai-snow ref <gen>.<rev>": the tag the field ends with. */
char *render_revision_tag(uint32_t generation, uint32_t revision);
/* Finds the newest revision tag in a field's text (tags of HTML
 * stripped); -ENOENT if none. */
int render_parse_revision(const char *field, uint32_t *generation, uint32_t *revision);

/* Escapes &<>"' and replaces invalid UTF-8 and control characters; caps
 * at max bytes (adding an ellipsis) when max > 0. */
char *render_escape(const char *s, size_t max);
/* 1 when url is http(s) and its host is in the allowed list. */
int render_url_allowed(const struct render_ctx *rc, const char *url);

const char *render_status_label(int imperai_status);	/* "Passed", "Timed out", ... */

#endif
