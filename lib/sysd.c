/* sysd: sd_notify and friends, with or without libsystemd. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sysd.h"
#include "util.h"

/* Speaks the notify protocol directly: one datagram to $NOTIFY_SOCKET.  This
 * is what sd_notify(3) does; doing it here keeps libsystemd optional. */
int
sysd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	size_t plen;
	int fd, rc = 0;

	if (path == NULL || *path == '\0')
		return 0;
	if (path[0] != '/' && path[0] != '@')
		return -EAFNOSUPPORT;
	plen = strlen(path);
	if (plen >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, plen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Never wait for the reader: a manager that does not read (its queue
	 * holds 10 datagrams) must not stall the loop, nor the stop. */
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int
sysd_notifyf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int rc;

	va_start(ap, fmt);
	s = xvprintf(fmt, ap);
	va_end(ap);
	rc = sysd_notify(s);
	free(s);
	return rc;
}

uint64_t
sysd_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (usec == NULL)
		return 0;
	if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno || *end != '\0')
		return 0;
	return (uint64_t)v;
}

char *
sysd_credential_path(const char *name)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");

	if (dir == NULL || *dir == '\0' || strchr(name, '/') != NULL)
		return NULL;
	return xprintf("%s/%s", dir, name);
}
