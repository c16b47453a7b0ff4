/* enospc.so: an LD_PRELOAD shim that makes writes to files under
 * $ENOSPC_DIR fail with ENOSPC while the file $ENOSPC_FLAG exists: a full
 * disk under the daemon's state directory, switched on and off by a test
 * (tests/integration/test_disk.py) without root or a small filesystem.
 * Every other file (the log, sockets, the network) is left alone. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t write(int fd, const void *buf, size_t n);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off);
ssize_t writev(int fd, const struct iovec *iov, int cnt);
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
int fsync(int fd);
int fdatasync(int fd);

/* 1 when fd is a file under ENOSPC_DIR and the flag file exists. */
static int
full(int fd)
{
	const char *dir = getenv("ENOSPC_DIR"), *flag = getenv("ENOSPC_FLAG");
	char link[64], path[PATH_MAX];
	struct stat st;
	ssize_t n;
	size_t len;
	int saved = errno, hit = 0;

	if (dir == NULL || flag == NULL || fd < 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n > 0) {
		path[n] = '\0';
		len = strlen(dir);
		hit = strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0') &&
		    stat(flag, &st) == 0;
	}
	errno = saved;
	return hit;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t
write(int fd, const void *buf, size_t n)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(write)(fd, buf, n);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(pwrite)(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(writev)(fd, iov, cnt);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(pwritev)(fd, iov, cnt, off);
}

int
fsync(int fd)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(fsync)(fd);
}

int
fdatasync(int fd)
{
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return REAL(fdatasync)(fd);
}
