/* Unit tests for lib/sysd.c: the notify protocol spoken to $NOTIFY_SOCKET. */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "sysd.h"

struct sock {
	int	 fd;
	char	 path[108];
};

static int
setup(void **state)
{
	struct sock *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(s->path, sizeof(s->path), "/tmp/test_sysd.%ld.sock", (long)getpid());
	unlink(s->path);
	s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s->fd >= 0);
	memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", s->path, 1);
	*state = s;
	return 0;
}

static int
teardown(void **state)
{
	struct sock *s = *state;

	unsetenv("NOTIFY_SOCKET");
	close(s->fd);
	unlink(s->path);
	free(s);
	return 0;
}

static void
test_notify_sends_one_datagram(void **state)
{
	struct sock *s = *state;
	char buf[64];
	ssize_t n;

	assert_int_equal(sysd_notifyf("STATUS=%d tickets", 3), 0);
	n = recv(s->fd, buf, sizeof(buf) - 1, 0);
	assert_int_equal(n, (ssize_t)strlen("STATUS=3 tickets"));
	buf[n] = '\0';
	assert_string_equal(buf, "STATUS=3 tickets");
}

static void
die_blocked(int sig)
{
	static const char msg[] = "sysd_notify blocked on a full notify socket\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/* A manager that does not read (busy, stuck, or a test harness) must never
 * stop the daemon: Linux queues only net.unix.max_dgram_qlen datagrams (10
 * by default); past that a blocking send waits until someone reads, and the
 * daemon's loop with it.  Found by the fault campaign: the daemon hung 50 s
 * after start (READY plus nine STATUS lines, one each 5 s). */
static void
test_notify_never_blocks_on_a_full_queue(void **state)
{
	struct sock *s = *state;
	int dropped = 0;

	(void)s;
	signal(SIGALRM, die_blocked);
	alarm(10);
	for (int i = 0; i < 1000; i++) {
		int rc = sysd_notifyf("STATUS=message %d", i);
		if (rc == -EAGAIN)
			dropped++;
		else
			assert_int_equal(rc, 0);
	}
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	assert_true(dropped > 0);
}

static void
test_no_socket_is_a_noop(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sysd_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sysd_notify("READY=1"), -EAFNOSUPPORT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_notify_sends_one_datagram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_never_blocks_on_a_full_queue, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_no_socket_is_a_noop, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
