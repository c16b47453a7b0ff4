/* testserver: scripted HTTP/1.1 server for unit tests (see testserver.h). */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "testserver.h"
#include "util.h"

#define TS_MAXCONN 32

struct ts_req {
	char	*line;
	char	*headers;	/* raw header block */
	char	*body;
	int	 conn;		/* ts_conn.id */
};

struct ts_conn {
	int		 fd;
	int		 id;		/* accept order, from 1 */
	struct buf	 in;
	int		 hang;
	int		 held;
	struct ts_step	 step;		/* the held request's step */
};

struct ts {
	int		 lfd;
	int		 port;
	int		 wake[2];
	pthread_t	 thread;
	pthread_mutex_t	 mu;
	struct ts_step	*steps;
	size_t		 nsteps;
	size_t		 next;
	struct ts_req	*reqs;
	size_t		 nreqs;
	int		 accepts;
	int		 conns;
	int		 max_conns;
	struct ts_conn	 c[TS_MAXCONN];
};

static void
ts_send(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void
ts_close(struct ts *t, struct ts_conn *c, int reset)
{
	if (reset) {
		struct linger l = { 1, 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	c->hang = c->held = 0;
	pthread_mutex_lock(&t->mu);
	t->conns--;
	pthread_mutex_unlock(&t->mu);
}

/* Writes the answer of step s; returns 1 if the connection must close. */
static int
ts_reply(struct ts_conn *c, const struct ts_step *s)
{
	const char *body = s->body ? s->body : "";
	size_t blen = s->body_len ? s->body_len : strlen(body);
	char *head;

	if (s->no_length)
		head = xprintf("HTTP/1.1 %d Scripted\r\nConnection: close\r\n%s\r\n",
		    s->status, s->headers ? s->headers : "");
	else
		head = xprintf("HTTP/1.1 %d Scripted\r\nContent-Length: %zu\r\n%s\r\n",
		    s->status, blen, s->headers ? s->headers : "");
	ts_send(c->fd, head, strlen(head));
	ts_send(c->fd, body, blen);
	free(head);
	return s->no_length || (s->headers && strstr(s->headers, "Connection: close"));
}

static void
ts_release_held(struct ts *t)
{
	for (int i = 0; i < TS_MAXCONN; i++) {
		struct ts_conn *c = &t->c[i];

		if (c->fd >= 0 && c->held) {
			c->held = 0;
			if (ts_reply(c, &c->step))
				ts_close(t, c, 0);
		}
	}
}

static void
ts_hold(struct ts *t, struct ts_conn *c, const struct ts_step *s)
{
	int held = 0;

	c->held = 1;
	c->step = *s;
	for (int i = 0; i < TS_MAXCONN; i++)
		held += t->c[i].fd >= 0 && t->c[i].held;
	if (held >= s->hold)
		ts_release_held(t);
}

static void
ts_act(struct ts *t, struct ts_conn *c)
{
	static const struct ts_step exhausted = { TS_REPLY, 500, NULL, "script exhausted", 0, 0, 0 };
	struct ts_step step;
	const struct ts_step *s = &step;

	/* a copy: the test may append to the script meanwhile */
	pthread_mutex_lock(&t->mu);
	step = t->next < t->nsteps ? t->steps[t->next] : exhausted;
	t->next++;
	pthread_mutex_unlock(&t->mu);
	switch (s->kind) {
	case TS_REPLY:
		if (ts_reply(c, s))
			ts_close(t, c, 0);
		break;
	case TS_RESET:
		ts_close(t, c, 1);
		break;
	case TS_CLOSE:
	case TS_CLOSE_EARLY:
		ts_close(t, c, 0);
		break;
	case TS_HANG:
		c->hang = 1;
		break;
	case TS_HOLD:
		ts_hold(t, c, s);
		break;
	}
}

static size_t
ts_content_length(const char *headers)
{
	const char *p = headers;

	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			return (size_t)strtoul(p + 15, NULL, 10);
	}
	return 0;
}

static int
ts_next_closes_early(struct ts *t)
{
	int early;

	pthread_mutex_lock(&t->mu);
	early = t->next < t->nsteps && t->steps[t->next].kind == TS_CLOSE_EARLY;
	pthread_mutex_unlock(&t->mu);
	return early;
}

/* Records and answers one complete request at the head of c->in, if any
 * (only its headers for a TS_CLOSE_EARLY step). */
static int
ts_take_request(struct ts *t, struct ts_conn *c)
{
	char *end = c->in.data ? strstr(c->in.data, "\r\n\r\n") : NULL;
	size_t hlen, blen, total;
	struct ts_req r;

	if (end == NULL)
		return 0;
	hlen = (size_t)(end - c->in.data) + 4;
	r.headers = xstrndup(c->in.data, hlen);
	blen = ts_next_closes_early(t) ? 0 : ts_content_length(r.headers);
	total = hlen + blen;
	if (c->in.len < total) {
		free(r.headers);
		return 0;
	}
	r.line = xstrndup(c->in.data, strcspn(c->in.data, "\r"));
	r.body = xstrndup(c->in.data + hlen, blen);
	r.conn = c->id;
	memmove(c->in.data, c->in.data + total, c->in.len - total + 1);
	c->in.len -= total;
	pthread_mutex_lock(&t->mu);
	t->reqs = xreallocarray(t->reqs, t->nreqs + 1, sizeof(*t->reqs));
	t->reqs[t->nreqs++] = r;
	pthread_mutex_unlock(&t->mu);
	ts_act(t, c);
	return c->fd >= 0 && !c->hang && !c->held;
}

static void
ts_readable(struct ts *t, struct ts_conn *c)
{
	char tmp[16384];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);

	if (n <= 0) {
		ts_close(t, c, 0);
		return;
	}
	if (c->hang || c->held)
		return;
	buf_add(&c->in, tmp, (size_t)n);
	while (ts_take_request(t, c))
		;
}

static void
ts_accept(struct ts *t)
{
	int fd = accept(t->lfd, NULL, NULL);

	if (fd < 0)
		return;
	for (int i = 0; i < TS_MAXCONN; i++) {
		if (t->c[i].fd < 0) {
			t->c[i].fd = fd;
			buf_init(&t->c[i].in);
			pthread_mutex_lock(&t->mu);
			t->c[i].id = ++t->accepts;
			if (++t->conns > t->max_conns)
				t->max_conns = t->conns;
			pthread_mutex_unlock(&t->mu);
			return;
		}
	}
	close(fd);
}

static void *
ts_main(void *arg)
{
	struct ts *t = arg;

	for (;;) {
		struct pollfd pfd[TS_MAXCONN + 2];
		int map[TS_MAXCONN + 2], n = 2;

		pfd[0] = (struct pollfd){ .fd = t->wake[0], .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = t->lfd, .events = POLLIN };
		for (int i = 0; i < TS_MAXCONN; i++) {
			if (t->c[i].fd >= 0) {
				map[n] = i;
				pfd[n++] = (struct pollfd){ .fd = t->c[i].fd, .events = POLLIN };
			}
		}
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		if (pfd[0].revents)
			return NULL;
		if (pfd[1].revents & POLLIN)
			ts_accept(t);
		for (int k = 2; k < n; k++)
			if (pfd[k].revents && t->c[map[k]].fd >= 0)
				ts_readable(t, &t->c[map[k]]);
	}
}

struct ts *
ts_start(void)
{
	struct ts *t = xcalloc(1, sizeof(*t));
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (t->lfd < 0 || bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(t->lfd, 64) != 0 || getsockname(t->lfd, (struct sockaddr *)&sa, &len) != 0 ||
	    pipe(t->wake) != 0)
		abort();
	t->port = ntohs(sa.sin_port);
	for (int i = 0; i < TS_MAXCONN; i++)
		t->c[i].fd = -1;
	pthread_mutex_init(&t->mu, NULL);
	if (pthread_create(&t->thread, NULL, ts_main, t) != 0)
		abort();
	return t;
}

void
ts_stop(struct ts *t)
{
	if (write(t->wake[1], "x", 1) != 1)
		abort();
	pthread_join(t->thread, NULL);
	for (int i = 0; i < TS_MAXCONN; i++)
		if (t->c[i].fd >= 0)
			ts_close(t, &t->c[i], 0);
	for (size_t i = 0; i < t->nreqs; i++) {
		free(t->reqs[i].line);
		free(t->reqs[i].headers);
		free(t->reqs[i].body);
	}
	for (size_t i = 0; i < t->nsteps; i++) {
		free((char *)t->steps[i].headers);
		free((char *)t->steps[i].body);
	}
	free(t->reqs);
	free(t->steps);
	close(t->lfd);
	close(t->wake[0]);
	close(t->wake[1]);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

void
ts_script(struct ts *t, const struct ts_step *steps, size_t n)
{
	pthread_mutex_lock(&t->mu);
	t->steps = xreallocarray(t->steps, t->nsteps + n, sizeof(*t->steps));
	for (size_t i = 0; i < n; i++) {
		struct ts_step *s = &t->steps[t->nsteps + i];
		size_t blen;

		*s = steps[i];
		blen = s->body ? (s->body_len ? s->body_len : strlen(s->body)) : 0;
		s->headers = s->headers ? xstrdup(s->headers) : NULL;
		if (s->body != NULL) {
			char *b = xmalloc(blen + 1);

			memcpy(b, steps[i].body, blen);
			b[blen] = '\0';
			s->body = b;
			s->body_len = blen;
		}
	}
	t->nsteps += n;
	pthread_mutex_unlock(&t->mu);
}

int
ts_port(const struct ts *t)
{
	return t->port;
}

char *
ts_url(const struct ts *t, const char *path)
{
	return xprintf("http://127.0.0.1:%d%s", t->port, path);
}

size_t
ts_nrequests(struct ts *t)
{
	size_t n;

	pthread_mutex_lock(&t->mu);
	n = t->nreqs;
	pthread_mutex_unlock(&t->mu);
	return n;
}

int
ts_accepts(struct ts *t)
{
	int n;

	pthread_mutex_lock(&t->mu);
	n = t->accepts;
	pthread_mutex_unlock(&t->mu);
	return n;
}

int
ts_max_conns(struct ts *t)
{
	int n;

	pthread_mutex_lock(&t->mu);
	n = t->max_conns;
	pthread_mutex_unlock(&t->mu);
	return n;
}

int
ts_request_conn(struct ts *t, size_t i)
{
	int n = 0;

	pthread_mutex_lock(&t->mu);
	if (i < t->nreqs)
		n = t->reqs[i].conn;
	pthread_mutex_unlock(&t->mu);
	return n;
}

static char *
ts_copy(struct ts *t, size_t i, int which)
{
	char *s = NULL;

	pthread_mutex_lock(&t->mu);
	if (i < t->nreqs)
		s = xstrdup(which == 0 ? t->reqs[i].line : which == 1 ? t->reqs[i].body :
		    t->reqs[i].headers);
	pthread_mutex_unlock(&t->mu);
	return s;
}

char *
ts_request_line(struct ts *t, size_t i)
{
	return ts_copy(t, i, 0);
}

char *
ts_request_body(struct ts *t, size_t i)
{
	return ts_copy(t, i, 1);
}

char *
ts_request_header(struct ts *t, size_t i, const char *name)
{
	char *h = ts_copy(t, i, 2), *p, *v = NULL;
	size_t n = strlen(name);

	for (p = h; p != NULL && (p = strstr(p, "\r\n")) != NULL; ) {
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			p += n + 1;
			p += strspn(p, " ");
			v = xstrndup(p, strcspn(p, "\r"));
			break;
		}
	}
	free(h);
	return v;
}
