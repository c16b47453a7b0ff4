/* testserver: a scripted HTTP/1.1 server on 127.0.0.1 (port 0), in a
 * thread, for the http and snow tests.  Each request that arrives takes the
 * next step of the script, in arrival order; the server records every
 * request and counts connections, so tests assert on what was really sent.
 * Nothing is timed: the server only reacts to what the client does. */
#ifndef IMPERAI_TESTSERVER_H
#define IMPERAI_TESTSERVER_H

#include <stddef.h>

enum ts_kind {
	TS_REPLY,	/* answer status/headers/body, keep the connection */
	TS_RESET,	/* read the request, then reset the connection (RST) */
	TS_CLOSE,	/* read the request, then close without answering */
	TS_HANG,	/* never answer; close when the client gives up */
	TS_HOLD,	/* answer only once `hold` requests are held at once */
	TS_CLOSE_EARLY,	/* close on the request's headers, its body unread: the
			 * request is recorded with an empty body (not applied) */
};

struct ts_step {
	enum ts_kind	 kind;
	int		 status;
	const char	*headers;	/* extra lines, each "Name: value\r\n" */
	const char	*body;
	size_t		 body_len;	/* 0: strlen(body) */
	int		 hold;
	int		 no_length;	/* no Content-Length: close after the body */
};

struct ts;

struct ts *ts_start(void);
void ts_stop(struct ts *t);
/* Appends steps to the script (copied).  Past its end: 500. */
void ts_script(struct ts *t, const struct ts_step *steps, size_t n);
int ts_port(const struct ts *t);
/* "http://127.0.0.1:PORT" followed by path. */
char *ts_url(const struct ts *t, const char *path);

size_t ts_nrequests(struct ts *t);
int ts_accepts(struct ts *t);
int ts_max_conns(struct ts *t);
/* The connection request i came on: 1 for the first accepted, 2 ... */
int ts_request_conn(struct ts *t, size_t i);
/* Request i, allocated: "METHOD /path?query", its body, a header's value
 * (NULL if absent). */
char *ts_request_line(struct ts *t, size_t i);
char *ts_request_body(struct ts *t, size_t i);
char *ts_request_header(struct ts *t, size_t i, const char *name);

#endif
