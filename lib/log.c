/* log: one line per event, to stderr (journald-aware), the journal or syslog. */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

#include "log.h"

#define LOG_VALUE_MAX	1024
#define LOG_JOURNAL_SOCKET	"/run/systemd/journal/socket"

struct log_state {
	char		 ident[64];
	enum log_target	 target;	/* resolved: STDERR, SYSLOG or JOURNAL */
	int		 prefix;	/* stderr is journald's stream: "<N>" prefixes */
	int		 stamp;		/* RFC 3339 timestamps on stderr */
	enum log_level	 level;
	int		 also_stderr;	/* warnings and errors to stderr too */
	void		(*sink)(enum log_level, const char *, void *);
	void		*sink_arg;
};

static struct log_state log_st = {
	"imperai-snow", LOG_TARGET_STDERR, 0, 1, LOG_LVL_INFO, 0, NULL, NULL
};

static const char *const log_names[] = {
	[LOG_LVL_ERR] = "err", [LOG_LVL_WARN] = "warning", [LOG_LVL_NOTICE] = "notice",
	[LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug",
};

/* True when stderr is the stream systemd connected to journald: the
 * JOURNAL_STREAM it exported names our fd 2 (not one inherited by a child). */
static int
log_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	if (e == NULL || !isdigit((unsigned char)*e))
		return 0;
	dev = strtoull(e, &end, 10);
	if (*end != ':' || !isdigit((unsigned char)end[1]))
		return 0;
	ino = strtoull(end + 1, &end, 10);
	if (*end != '\0' || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *ident, enum log_target target, int foreground)
{
	int journal = log_stderr_is_journal();

	if (log_st.target == LOG_TARGET_SYSLOG)
		closelog();
	snprintf(log_st.ident, sizeof(log_st.ident), "%s", ident ? ident : "imperai-snow");
	if (target == LOG_TARGET_AUTO)
		target = journal ? LOG_TARGET_JOURNAL :
		    foreground ? LOG_TARGET_STDERR : LOG_TARGET_SYSLOG;
	/* Without libsystemd the journal is reached through stderr's prefixes;
	 * sd_journal_send() drops messages silently when journald is absent. */
#ifdef HAVE_SYSTEMD
	if (target == LOG_TARGET_JOURNAL && access(LOG_JOURNAL_SOCKET, W_OK) != 0)
		target = LOG_TARGET_STDERR;
#else
	if (target == LOG_TARGET_JOURNAL)
		target = LOG_TARGET_STDERR;
#endif
	log_st.target = target;
	log_st.prefix = journal;
	log_st.stamp = !journal;
	if (target == LOG_TARGET_SYSLOG)
		openlog(log_st.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_also_stderr(int on)
{
	log_st.also_stderr = on;
}

void
log_set_level(enum log_level lvl)
{
	log_st.level = lvl;
}

enum log_level
log_get_level(void)
{
	return log_st.level;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const struct {
		const char	*name;
		enum log_level	 lvl;
	} names[] = {
		{ "err", LOG_LVL_ERR }, { "error", LOG_LVL_ERR },
		{ "warning", LOG_LVL_WARN }, { "warn", LOG_LVL_WARN },
		{ "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG },
	};

	for (size_t i = 0; s != NULL && i < ARRAY_SIZE(names); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].lvl;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
log_level_name(enum log_level lvl)
{
	if (lvl < LOG_LVL_ERR || lvl > LOG_LVL_DEBUG)
		return "unknown";
	return log_names[lvl];
}

void
log_set_sink(void (*sink)(enum log_level, const char *line, void *arg), void *arg)
{
	log_st.sink = sink;
	log_st.sink_arg = arg;
}

/* Length of the valid UTF-8 character at p (at most avail bytes), 0 if invalid. */
static size_t
log_charlen(const unsigned char *p, size_t avail)
{
	size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 :
	    (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;

	if (n == 0 || n > avail)
		return 0;
	return n == 1 || util_utf8_valid((const char *)p, n) ? n : 0;
}

static void
log_escape_byte(struct buf *b, unsigned char c, int valid, int value)
{
	if (!valid || (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f)
		buf_addf(b, "\\x%02x", c);
	else if (c == '\n')
		buf_adds(b, "\\n");
	else if (c == '\t')
		buf_adds(b, "\\t");
	else if (c == '\r')
		buf_adds(b, "\\r");
	else if (value && (c == '"' || c == '\\')) {
		buf_addc(b, '\\');
		buf_addc(b, (char)c);
	} else
		buf_addc(b, (char)c);
}

/* Appends s with control characters and invalid UTF-8 escaped (and, for
 * values, quotes and backslashes), stopping at the first character that
 * starts at or after max.  Returns the bytes consumed. */
static size_t
log_escape(struct buf *b, const char *s, size_t len, int value, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len && i < max) {
		n = log_charlen(p + i, len - i);
		if (n > 1)
			buf_add(b, p + i, n);
		else
			log_escape_byte(b, p[i], n == 1, value);
		i += n ? n : 1;
	}
	return i;
}

static void
log_key(struct buf *b, const char *k)
{
	if (*k == '\0')
		buf_addc(b, '_');
	for (; *k != '\0'; k++)
		buf_addc(b, isalnum((unsigned char)*k) || strchr("_.-", *k) ? *k : '_');
}

/* Quoted when empty or when anything in it needed escaping, a space or '='. */
static void
log_value(struct buf *b, const char *v)
{
	struct buf e;
	size_t used;
	int quote;

	if (v == NULL) {
		buf_addc(b, '-');
		return;
	}
	buf_init(&e);
	used = log_escape(&e, v, strlen(v), 1, LOG_VALUE_MAX);
	quote = used == 0 || e.len != used || strcspn(v, " =") < used;
	if (quote)
		buf_addc(b, '"');
	buf_add(b, e.data, e.len);
	if (v[used] != '\0')
		buf_adds(b, "...");
	if (quote)
		buf_addc(b, '"');
	buf_free(&e);
}

void
log_format_kv(struct buf *b, const char *msg, va_list ap)
{
	const char *k, *v;

	if (msg != NULL)
		log_escape(b, msg, strlen(msg), 0, SIZE_MAX);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		buf_addc(b, ' ');
		log_key(b, k);
		buf_addc(b, '=');
		log_value(b, v);
	}
}

/* A journal field name: upper case [A-Z0-9_], not starting with a digit or
 * '_', and not one of the fields this module sets itself. */
static void
log_field_name(struct buf *b, const char *k)
{
	size_t start = b->len;

	for (; *k != '\0' && b->len - start < 60; k++)
		buf_addc(b, isalnum((unsigned char)*k) ? (char)toupper((unsigned char)*k) : '_');
	if (b->len == start || b->data[start] == '_' || isdigit((unsigned char)b->data[start]) ||
	    strcmp(b->data + start, "MESSAGE") == 0 || strcmp(b->data + start, "PRIORITY") == 0 ||
	    strcmp(b->data + start, "SYSLOG_IDENTIFIER") == 0) {
		char *name = xstrdup(b->data + start);

		b->len = start;
		buf_addf(b, "KV_%s", name);
		free(name);
	}
}

/* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, then one field per pair. */
static size_t
log_journal_fields(char ***out, enum log_level lvl, const char *line, va_list *kv)
{
	struct buf f;
	const char *k, *v;
	size_t n = 3;
	char **fields = xcalloc(n, sizeof(*fields));

	fields[0] = xprintf("MESSAGE=%s", line);
	fields[1] = xprintf("PRIORITY=%d", (int)lvl);
	fields[2] = xprintf("SYSLOG_IDENTIFIER=%s", log_st.ident);
	while (kv != NULL && (k = va_arg(*kv, const char *)) != NULL) {
		v = va_arg(*kv, const char *);
		buf_init(&f);
		log_field_name(&f, k);
		buf_addc(&f, '=');
		buf_add(&f, v ? v : "-", v ? strnlen(v, LOG_VALUE_MAX) : 1);
		fields = xreallocarray(fields, n + 1, sizeof(*fields));
		fields[n++] = buf_detach(&f);
	}
	*out = fields;
	return n;
}

static void
log_fields_free(char **fields, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(fields[i]);
	free(fields);
}

void
log_format_journal(struct buf *b, enum log_level lvl, const char *msg, va_list ap)
{
	struct buf line;
	char **fields;
	size_t n;
	va_list aq;

	buf_init(&line);
	va_copy(aq, ap);
	log_format_kv(&line, msg, aq);
	va_end(aq);
	va_copy(aq, ap);
	n = log_journal_fields(&fields, lvl, line.data ? line.data : "", &aq);
	va_end(aq);
	for (size_t i = 0; i < n; i++) {
		buf_adds(b, fields[i]);
		buf_addc(b, '\n');
	}
	log_fields_free(fields, n);
	buf_free(&line);
}

static void
log_write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* One write(2) per line so that lines from several processes never mix. */
static void
log_stderr(enum log_level lvl, const char *line)
{
	char stamp[21];
	struct buf b;

	buf_init(&b);
	if (log_st.prefix)
		buf_addf(&b, "<%d>", (int)lvl);
	else {
		if (log_st.stamp) {
			util_format_rfc3339((int64_t)time(NULL), stamp);
			buf_addf(&b, "%s ", stamp);
		}
		buf_addf(&b, "%s ", log_level_name(lvl));
	}
	buf_adds(&b, line);
	buf_addc(&b, '\n');
	log_write_all(STDERR_FILENO, b.data, b.len);
	buf_free(&b);
}

#ifdef HAVE_SYSTEMD
static int
log_journal(enum log_level lvl, const char *line, va_list *kv)
{
	char **fields;
	size_t n = log_journal_fields(&fields, lvl, line, kv);
	struct iovec *iov = xcalloc(n, sizeof(*iov));
	int rc;

	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = fields[i];
		iov[i].iov_len = strlen(fields[i]);
	}
	rc = sd_journal_sendv(iov, (int)n);
	free(iov);
	log_fields_free(fields, n);
	return rc;
}
#endif

/* kv, when not NULL, holds the pairs again for the journal's fields. */
static void
log_emit(enum log_level lvl, const char *line, va_list *kv)
{
	if (log_st.sink != NULL) {
		log_st.sink(lvl, line, log_st.sink_arg);
		return;
	}
	if (log_st.also_stderr && lvl <= LOG_LVL_WARN && log_st.target != LOG_TARGET_STDERR)
		log_stderr(lvl, line);
	switch (log_st.target) {
	case LOG_TARGET_SYSLOG:
		syslog((int)lvl, "%s", line);
		return;
	case LOG_TARGET_JOURNAL:
#ifdef HAVE_SYSTEMD
		if (log_journal(lvl, line, kv) >= 0)
			return;
#endif
		/* FALLTHROUGH */
	default:
		log_stderr(lvl, line);
	}
}

static int
log_enabled(enum log_level lvl)
{
	return lvl <= log_st.level;
}

void
log_kvv(enum log_level lvl, const char *msg, va_list ap)
{
	struct buf line;
	va_list aq;

	if (!log_enabled(lvl))
		return;
	buf_init(&line);
	va_copy(aq, ap);
	log_format_kv(&line, msg, aq);
	va_end(aq);
	va_copy(aq, ap);
	log_emit(lvl, line.data ? line.data : "", &aq);
	va_end(aq);
	buf_free(&line);
}

void
log_kv(enum log_level lvl, const char *msg, ...)
{
	va_list ap;

	va_start(ap, msg);
	log_kvv(lvl, msg, ap);
	va_end(ap);
}

/* errnum < 0: no error text; the caller saved errno before formatting. */
static void PRINTFLIKE(3, 0)
log_vmsg(enum log_level lvl, int errnum, const char *fmt, va_list ap)
{
	struct buf line;
	char *msg;

	if (!log_enabled(lvl))
		return;
	msg = xvprintf(fmt, ap);
	buf_init(&line);
	log_escape(&line, msg, strlen(msg), 0, SIZE_MAX);
	if (errnum >= 0)
		buf_addf(&line, ": %s", strerror(errnum));
	log_emit(lvl, line.data ? line.data : "", NULL);
	buf_free(&line);
	free(msg);
}

#define LOG_DEFINE(name, lvl, witherr)			\
void							\
name(const char *fmt, ...)				\
{							\
	int saved = errno;				\
	va_list ap;					\
							\
	va_start(ap, fmt);				\
	log_vmsg(lvl, witherr ? saved : -1, fmt, ap);	\
	va_end(ap);					\
	errno = saved;					\
}

LOG_DEFINE(log_err, LOG_LVL_ERR, 1)
LOG_DEFINE(log_errx, LOG_LVL_ERR, 0)
LOG_DEFINE(log_warn, LOG_LVL_WARN, 1)
LOG_DEFINE(log_warnx, LOG_LVL_WARN, 0)
LOG_DEFINE(log_notice, LOG_LVL_NOTICE, 0)
LOG_DEFINE(log_info, LOG_LVL_INFO, 0)
LOG_DEFINE(log_debug, LOG_LVL_DEBUG, 0)

void
fatalx(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, -1, fmt, ap);
	va_end(ap);
	exit(code);
}

/* Bytes of the character at p: a valid UTF-8 sequence, else one byte. */
static size_t
mask_charlen(const char *p, size_t avail)
{
	size_t n = log_charlen((const unsigned char *)p, avail);

	return n ? n : 1;
}

/* Start of the last character of s[0..len). */
static size_t
mask_last_char(const char *s, size_t len)
{
	size_t i = len - 1;

	while (i > 0 && len - i < 4 && ((unsigned char)s[i] & 0xc0) == 0x80)
		i--;
	return mask_charlen(s + i, len - i) == len - i ? i : len - 1;
}

static void
mask_local(struct buf *b, const char *s, size_t len)
{
	size_t first, last;

	if (len == 0) {
		buf_addc(b, '*');
		return;
	}
	first = mask_charlen(s, len);
	last = mask_last_char(s, len);
	if (first >= len)
		buf_addc(b, '*');
	else if (last <= first) {
		buf_add(b, s, first);
		buf_addc(b, '*');
	} else {
		buf_add(b, s, first);
		buf_adds(b, "***");
		buf_add(b, s + last, len - last);
	}
}

static void
mask_domain(struct buf *b, const char *d)
{
	const char *dot = strrchr(d, '.');

	if (*d != '\0')
		buf_add(b, d, mask_charlen(d, strlen(d)));
	buf_adds(b, "***");
	if (dot != NULL && dot != d && dot[1] != '\0')
		buf_adds(b, dot);
}

char *
mask_email(const char *email)
{
	const char *at;
	struct buf b;

	if (email == NULL || *email == '\0')
		return xstrdup("");
	if ((at = strrchr(email, '@')) == NULL)
		return xstrdup("***");
	buf_init(&b);
	mask_local(&b, email, (size_t)(at - email));
	buf_addc(&b, '@');
	mask_domain(&b, at + 1);
	/* An already masked address could map to itself: never hand it back. */
	if (strcmp(b.data, email) == 0) {
		buf_free(&b);
		return xstrdup("***@***");
	}
	return buf_detach(&b);
}

char *
mask_phone(const char *phone)
{
	size_t digits = 0, seen = 0;
	const char *p;
	struct buf b;

	if (phone == NULL || *phone == '\0')
		return xstrdup("");
	for (p = phone; *p != '\0'; p++)
		digits += isdigit((unsigned char)*p) != 0;
	if (digits == 0)
		return xstrdup("***");
	buf_init(&b);
	p = phone + strspn(phone, " \t");
	if (*p == '+')
		buf_addc(&b, '+');
	/* Short numbers are masked whole: two digits of four say too much. */
	for (; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			continue;
		seen++;
		buf_addc(&b, digits >= 5 && seen + 2 > digits ? *p : '*');
	}
	return buf_detach(&b);
}

char *
mask_recipient(const char *s)
{
	if (s != NULL && strchr(s, '@') != NULL)
		return mask_email(s);
	return mask_phone(s);
}
