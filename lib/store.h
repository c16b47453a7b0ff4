/* store: the daemon's state in one LMDB environment.
 *
 * Named databases: tickets (table/sys_id -> record), by_number (number ->
 * table/sys_id), verifications (request id -> table/sys_id + snapshot),
 * outbox (seq -> pending effect), meta (schema version, watermarks,
 * cursors, daemon status), audit (seq -> entry chained by SHA-256),
 * requests (seq -> operator request queued by imperai-snowctl).
 *
 * Values are opaque bytes to this module (the callers store JSON).  Write
 * transactions are short and no I/O but LMDB's happens inside one.  The
 * environment is opened with MDB_NOTLS, stale readers are cleared at open
 * and on MDB_READERS_FULL, and MDB_MAP_FULL grows the map (store_write()
 * re-runs the transaction once after growing).
 *
 * A writer holds an exclusive lock on DIR/lock: one daemon per state
 * directory.  Read-only opens (the CLI) never block the writer. */
#ifndef IMPERAI_STORE_H
#define IMPERAI_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define STORE_SCHEMA_VERSION 1

struct store;
struct store_txn;

enum store_flags {
	STORE_RDONLY = 1 << 0,
	STORE_NOLOCK = 1 << 1,	/* writer without the daemon lock (CLI requests, rebuild) */
};

struct store_stat {
	uint64_t	 tickets;
	uint64_t	 verifications;
	uint64_t	 outbox;
	uint64_t	 audit;
	uint64_t	 requests;
	uint64_t	 map_size;
	uint64_t	 used_bytes;	/* last page * page size */
};

/* Errors: 0, or -errno; -ENOSPC map full and could not grow (or disk full),
 * -EPROTO schema newer than this build, -EBUSY another writer holds the
 * lock, -ENOENT no such key.  *cause says what and what to do. */
int store_open(const char *dir, uint64_t map_size, int flags, struct store **out, char **cause);
void store_close(struct store *s);
int store_stat(struct store *s, struct store_stat *out);
const char *store_path(const struct store *s);

int store_begin(struct store *s, int rdonly, struct store_txn **out);
/* Commits; on failure the transaction is aborted and the error returned. */
int store_commit(struct store_txn *t);
void store_abort(struct store_txn *t);
/* The first error any operation in t hit (sticky), 0 if none. */
int store_txn_error(const struct store_txn *t);

/* Runs fn inside one write transaction and commits.  If fn or the commit
 * meets a full map, the map is grown and fn run once more.  fn returning
 * non-zero aborts and that value is returned.  No other transaction of
 * this process may be open (the map can only be resized then). */
int store_write(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg);
/* Why the last store_write()/store_commit() failed and what to do
 * (disk full, map cannot grow...); NULL if it gave no detail. */
const char *store_last_cause(const struct store *s);

/* Values returned through struct buf are copies the caller frees; out
 * must be initialised (buf_init) and is reset.  A missing key returns
 * -ENOENT without failing the transaction; any other error is sticky.
 *
 * The *_each callbacks run inside the transaction: no I/O in them, and
 * they must not modify the database being walked (collect, then act).
 * The pointers they get are valid only during the call. */
int store_ticket_get(struct store_txn *t, const char *table, const char *sys_id, struct buf *out);
int store_ticket_put(struct store_txn *t, const char *table, const char *sys_id,
    const char *number, const void *val, size_t len);
int store_ticket_del(struct store_txn *t, const char *table, const char *sys_id);
/* number -> table and sys_id (allocated). */
int store_ticket_by_number(struct store_txn *t, const char *number, char **table, char **sys_id);
/* Calls fn for every ticket in key order; non-zero from fn stops and is returned. */
int store_ticket_each(struct store_txn *t,
    int (*fn)(const char *table, const char *sys_id, const void *val, size_t len, void *arg),
    void *arg);

int store_verification_put(struct store_txn *t, const char *id, const void *val, size_t len);
int store_verification_get(struct store_txn *t, const char *id, struct buf *out);
int store_verification_each(struct store_txn *t,
    int (*fn)(const char *id, const void *val, size_t len, void *arg), void *arg);

/* The outbox: effects committed with the state change that caused them. */
int store_outbox_add(struct store_txn *t, const void *val, size_t len, uint64_t *seq);
int store_outbox_put(struct store_txn *t, uint64_t seq, const void *val, size_t len);
int store_outbox_get(struct store_txn *t, uint64_t seq, struct buf *out);
int store_outbox_del(struct store_txn *t, uint64_t seq);
/* In seq order (replay order). */
int store_outbox_each(struct store_txn *t,
    int (*fn)(uint64_t seq, const void *val, size_t len, void *arg), void *arg);

int store_meta_get(struct store_txn *t, const char *key, struct buf *out);
int store_meta_put(struct store_txn *t, const char *key, const void *val, size_t len);
int store_meta_del(struct store_txn *t, const char *key);

/* Operator requests (imperai-snowctl resync/retry), consumed by the daemon. */
int store_request_add(struct store_txn *t, const char *json, uint64_t *seq);
int store_request_del(struct store_txn *t, uint64_t seq);
int store_request_each(struct store_txn *t,
    int (*fn)(uint64_t seq, const void *val, size_t len, void *arg), void *arg);

/* Audit log: entry n stores {seq, time, prev: hex sha256 of entry n-1's
 * stored bytes, event: json}.  Append-only.  event_json must be one JSON
 * object (-EINVAL otherwise).  The last seq and its hash are also kept in
 * meta ("audit/head") so that altering or dropping the last entry shows. */
int store_audit_append(struct store_txn *t, int64_t now, const char *event_json, uint64_t *seq);
/* The last entry's seq and the hex SHA-256 of its bytes; -ENOENT if empty. */
int store_audit_last(struct store_txn *t, uint64_t *seq, char hash[65]);
int store_audit_each(struct store_txn *t, uint64_t from_seq,
    int (*fn)(uint64_t seq, const void *val, size_t len, void *arg), void *arg);
/* Walks the chain; returns 0 if intact, -EBADMSG with *bad_seq = the first
 * entry whose predecessor hash does not match (or that does not parse, or
 * is missing; an altered last entry is reported as itself). */
int store_audit_verify(struct store *s, uint64_t *checked, uint64_t *bad_seq, char **cause);

/* Human text for a store error code. */
const char *store_strerror(int err);

/* SHA-256 (libcrypto), for the audit chain; out as raw bytes or lower-case
 * hex.  Aborts only when libcrypto cannot allocate. */
void store_sha256(const void *data, size_t len, uint8_t out[32]);
void store_sha256_hex(const void *data, size_t len, char out[65]);

#endif
