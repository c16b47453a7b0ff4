/* sysd: the systemd calls, in one place.  Without libsystemd (configure
 * --disable-systemd) sd_notify is spoken directly to $NOTIFY_SOCKET, so
 * Type=notify units work either way. */
#ifndef IMPERAI_SYSD_H
#define IMPERAI_SYSD_H

#include <stdint.h>

/* Sends "READY=1" etc.; a no-op outside systemd.  Returns 0 or -errno. */
int sysd_notify(const char *state);
int sysd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog interval in microseconds, 0 when not enabled. */
uint64_t sysd_watchdog_usec(void);
/* $CREDENTIALS_DIRECTORY/name, or NULL when not running with credentials. */
char *sysd_credential_path(const char *name);

#endif
