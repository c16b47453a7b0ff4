/* log: the daemon's only way to speak.  Library modules do not log; they
 * return an error and a cause, and daemon/ decides the severity.
 *
 * A line is a short message followed by key=value pairs:
 *   outcome recorded ticket=INC0010001 verification=vr_81 result=passed
 * Under journald (JOURNAL_STREAM set) lines carry <N> priority prefixes;
 * built with libsystemd the pairs also become structured fields
 * (TICKET=, VERIFICATION=).  Outside systemd and not in the foreground,
 * syslog(3) is used. */
#ifndef IMPERAI_LOG_H
#define IMPERAI_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "util.h"

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

enum log_target {
	LOG_TARGET_AUTO,	/* journald if JOURNAL_STREAM matches stderr, else stderr/syslog */
	LOG_TARGET_STDERR,
	LOG_TARGET_SYSLOG,
	LOG_TARGET_JOURNAL,
};

void log_init(const char *ident, enum log_target target, int foreground);
/* While on, warnings and errors also go to stderr whatever the target: a
 * daemon that detaches reports a failure to start where it was started. */
void log_also_stderr(int on);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* "err", "warning", "notice", "info", "debug" -> level ("error" and
 * "warn" accepted too); -EINVAL otherwise. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level lvl);
/* Redirects output to a callback (tests). NULL restores. */
void log_set_sink(void (*sink)(enum log_level, const char *line, void *arg), void *arg);

/* msg then kv pairs: key, value, key, value, ..., NULL.  Values are
 * quoted when they contain spaces, quotes or '='; control characters are
 * escaped so one event is always one line.  More exactly: a NULL value
 * prints as -, an empty one as ""; '"' and '\' are escaped, control
 * characters become \n \t \r or \xNN, invalid UTF-8 bytes \xNN, and a
 * value that needed any escaping is quoted too; values are cut at 1024
 * bytes with "...". */
#if defined(__GNUC__)
void log_kv(enum log_level lvl, const char *msg, ...) __attribute__((sentinel));
#else
void log_kv(enum log_level lvl, const char *msg, ...);
#endif
void log_kvv(enum log_level lvl, const char *msg, va_list ap);

/* printf-style, for messages without structure. */
void log_err(const char *fmt, ...) PRINTFLIKE(1, 2);	/* adds strerror(errno) */
void log_errx(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_warn(const char *fmt, ...) PRINTFLIKE(1, 2);	/* adds strerror(errno) */
void log_warnx(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_notice(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_info(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_debug(const char *fmt, ...) PRINTFLIKE(1, 2);
/* Logs and exits with code; only at start-up or for impossible states. */
void fatalx(int code, const char *fmt, ...) PRINTFLIKE(2, 3) __attribute__((noreturn));

/* Formats one kv line into b (exposed for tests). */
void log_format_kv(struct buf *b, const char *msg, va_list ap);
/* The journal fields log_kv() would send, one "NAME=value" a line
 * (exposed for tests): MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, then each
 * key upper-cased to [A-Z0-9_] (KV_ prefixed if it would start with a
 * digit or '_' or clash with those three). */
void log_format_journal(struct buf *b, enum log_level lvl, const char *msg, va_list ap);

/* PII masking: "jane.doe@example.com" -> "j***e@e***.com";
 * "+1 555 123 4567" -> "+*********67".  Always returns a new string:
 * "" for NULL or "", "***" for something with no '@' (email) or no digit
 * (phone); phones with fewer than 5 digits are masked whole. */
char *mask_email(const char *email);
char *mask_phone(const char *phone);
/* Masks whichever of the two the string looks like. */
char *mask_recipient(const char *s);

#endif
