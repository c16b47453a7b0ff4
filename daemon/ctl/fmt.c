/* ctl-fmt: text for imperai-snowctl's output: terminal-safe strings,
 * aligned tables, CSV, times.  Pure (no store, no settings). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

#define CTL_ELLIPSIS "\xe2\x80\xa6"	/* U+2026 */

/* Length of the valid UTF-8 sequence at s (1-4), 0 if invalid. */
static size_t
ctl_utf8_len(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

size_t
ctl_width(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t w = 0, n;
	uint32_t cp;

	while (*p) {
		n = ctl_utf8_len(p, &cp);
		p += n ? n : 1;
		w++;
	}
	return w;
}

char *
ctl_fit(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t w = 0, n;
	uint32_t cp;

	if (max == 0 || ctl_width(s) <= max)
		return xstrdup(s);
	while (*p && w < max - 1) {
		n = ctl_utf8_len(p, &cp);
		p += n ? n : 1;
		w++;
	}
	return xprintf("%.*s" CTL_ELLIPSIS, (int)((const char *)p - s), s);
}

char *
ctl_printable(const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	struct buf b;
	uint32_t cp;
	size_t n;

	buf_init(&b);
	while (*p) {
		n = ctl_utf8_len(p, &cp);
		if (n == 0) {
			buf_addc(&b, '?');
			p++;
			continue;
		}
		if (cp == '\t' || cp == '\n' || cp == '\r')
			buf_addc(&b, ' ');
		else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
			buf_addc(&b, '?');
		else
			buf_add(&b, p, n);
		p += n;
	}
	return buf_detach(&b);
}

void
ctl_format_minute(int64_t t, char out[17])
{
	char full[20];

	if (t == 0) {
		strcpy(out, "-");
		return;
	}
	util_format_snow_time(t, full);
	memcpy(out, full, 16);
	out[16] = '\0';
}

void
ctl_format_second(int64_t t, char out[20])
{
	if (t == 0)
		strcpy(out, "-");
	else
		util_format_snow_time(t, out);
}

void
ctl_format_age(int64_t now, int64_t t, char out[24])
{
	int64_t d = now - t;

	if (t == 0) {
		strcpy(out, "-");
		return;
	}
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, 24, "%llds", (long long)d);
	else if (d < 120 * 60)
		snprintf(out, 24, "%lldm", (long long)(d / 60));
	else if (d < 48 * 3600)
		snprintf(out, 24, "%lldh", (long long)(d / 3600));
	else
		snprintf(out, 24, "%lldd", (long long)(d / 86400));
}

/* A date, with or without a time, read as UTC. */
static int
ctl_parse_date(const char *s, int64_t *out)
{
	size_t len = strlen(s);
	char full[20];

	if (len != 10 && len != 16 && len != 19)
		return -EINVAL;
	memcpy(full, s, len);
	memcpy(full + len, " 00:00:00" + (len == 10 ? 0 : len == 16 ? 6 : 9), 19 - len);
	full[19] = '\0';
	if (len > 10 && full[10] == 'T')
		full[10] = ' ';
	return util_parse_snow_time(full, out);
}

int
ctl_parse_when(const char *s, int64_t now, int64_t *out)
{
	int64_t d;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (strchr(s, '-') == NULL && strchr(s, ':') == NULL) {
		if (util_parse_duration(s, &d) < 0 || d > now)
			return -EINVAL;
		*out = now - d;
		return 0;
	}
	if (ctl_parse_date(s, out) == 0)
		return 0;
	return util_parse_rfc3339(s, out) == 0 ? 0 : -EINVAL;
}

char *
ctl_normalize(const char *s)
{
	char *n = xstrdup(s ? s : "");

	for (char *p = n; *p; p++) {
		if (*p == '-' || *p == ' ')
			*p = '_';
		else
			*p = (char)tolower((unsigned char)*p);
	}
	return n;
}

int
ctl_want_colour(int fd)
{
	const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");

	if (nc != NULL && *nc != '\0')
		return 0;
	if (term == NULL || strcmp(term, "dumb") == 0)
		return 0;
	return isatty(fd);
}

static void
ctl_pad(FILE *f, size_t n)
{
	while (n-- > 0)
		fputc(' ', f);
}

/* The cells as printed: terminal-safe and cut to the column's cap. */
static char **
ctl_table_cells(const struct ctl_table *t, size_t *width)
{
	size_t ncells = t->nrows * t->ncols;
	char **out = xcalloc(ncells ? ncells : 1, sizeof(*out));

	for (size_t c = 0; c < t->ncols; c++)
		width[c] = ctl_width(t->head[c]);
	for (size_t i = 0; i < ncells; i++) {
		char *safe = ctl_printable(t->cells[i]);
		size_t c = i % t->ncols, w;

		out[i] = ctl_fit(safe, t->max ? t->max[c] : 0);
		free(safe);
		if ((w = ctl_width(out[i])) > width[c])
			width[c] = w;
	}
	return out;
}

void
ctl_table_print(FILE *f, const struct ctl_table *t, int colour)
{
	size_t *width = xcalloc(t->ncols ? t->ncols : 1, sizeof(*width));
	char **cells = ctl_table_cells(t, width);

	for (size_t c = 0; c < t->ncols; c++) {
		fputs(t->head[c], f);
		if (c + 1 < t->ncols)
			ctl_pad(f, width[c] - ctl_width(t->head[c]) + 2);
	}
	fputc('\n', f);
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			size_t i = r * t->ncols + c;
			const char *col = colour && t->colours ? t->colours[i] : NULL;

			fprintf(f, "%s%s%s", col ? col : "", cells[i], col ? CTL_RESET : "");
			if (c + 1 < t->ncols)
				ctl_pad(f, width[c] - ctl_width(cells[i]) + 2);
		}
		fputc('\n', f);
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(cells[i]);
	free(cells);
	free(width);
}

void
ctl_csv_field(struct buf *b, const char *s)
{
	if (s == NULL)
		s = "";
	if (strpbrk(s, ",\"\r\n") == NULL) {
		buf_adds(b, s);
		return;
	}
	buf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"')
			buf_addc(b, '"');
		buf_addc(b, *s);
	}
	buf_addc(b, '"');
}

void
ctl_csv_record(struct buf *b, const char *const *fields, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_addc(b, ',');
		ctl_csv_field(b, fields[i]);
	}
	buf_adds(b, "\r\n");
}

json_object *
ctl_json_str(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

json_object *
ctl_json_time(int64_t t)
{
	char buf[21];

	if (t == 0)
		return NULL;
	util_format_rfc3339(t, buf);
	return json_object_new_string(buf);
}
