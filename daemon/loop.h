/* loop: the daemon's work, one step at a time.  Each step polls ServiceNow
 * and the imper.ai change feed when their intervals are due, runs the
 * engine on what it saw, commits the new states and their effects in one
 * LMDB transaction, and drains the outbox with bounded concurrency.  The
 * step is told in loop.c; its rooms (loopd.h) are the only code that
 * knows both the network and the store. */
#ifndef IMPERAI_LOOP_H
#define IMPERAI_LOOP_H

#include <stdint.h>

struct config;
struct flows;
struct loop;

/* Opens the store and the clients.  Returns 0, or a negative error with
 * *cause (-ENOSPC, -EBUSY, -EPROTO from the store; -EINVAL config). */
int loop_new(struct config *cfg, struct flows *flows, struct loop **out, char **cause);
/* Replaces settings and policy (already validated); takes ownership.
 * Connections are rebuilt when the endpoints or credentials changed. */
void loop_reload(struct loop *l, struct config *cfg, struct flows *flows);
/* Runs for at most max_wait_ms.  Returns 0, or a negative error that is
 * fatal (the store cannot be written). */
int loop_step(struct loop *l, int max_wait_ms);
/* Monotonic ms of the last step that completed its work without a fatal
 * error: the watchdog is fed only while this advances. */
int64_t loop_last_progress(const struct loop *l);
/* One line for systemd's STATUS=. */
void loop_status(const struct loop *l, char *buf, size_t len);
/* Stops: abandons in-flight requests (their outbox entries stay for the
 * next start) and closes the store. */
void loop_free(struct loop *l);

/* Monotonic clock in milliseconds. */
int64_t loop_now_ms(void);

#endif
