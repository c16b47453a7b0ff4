/* store: the daemon's state in one LMDB environment.
 *
 * Record formats (all big-endian where binary):
 *   tickets        "table/sys_id" -> number NUL value (the number is kept so
 *                  that a delete or renumbering can fix by_number)
 *   by_number      number -> "table/sys_id"
 *   verifications  id -> value
 *   outbox, requests, audit
 *                  8-byte big-endian seq -> value (byte order = numeric order)
 *   meta           key -> value; "schema_version" and the "seq/outbox",
 *                  "seq/requests" high-water marks are decimal text
 *
 * LMDB codes become negative errno values in store_errno() alone. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

#define STORE_DEFAULT_MAP	((uint64_t)256 << 20)
#define STORE_KEY_MAX		511	/* LMDB's default maximum key size */
#define STORE_AUDIT_HEAD	"audit/head"

enum store_db {
	DB_TICKETS,
	DB_BY_NUMBER,
	DB_VERIFICATIONS,
	DB_OUTBOX,
	DB_META,
	DB_AUDIT,
	DB_REQUESTS,
	DB_COUNT
};

static const char *const store_db_names[DB_COUNT] = {
	"tickets", "by_number", "verifications", "outbox", "meta", "audit", "requests",
};

struct store {
	MDB_env		*env;
	MDB_dbi		 dbi[DB_COUNT];
	char		*dir;
	int		 flags;
	int		 lockfd;
	unsigned	 live;		/* open transactions: the map is resized only at 0 */
	int		 commit_mapfull;
	char		*cause;
};

struct store_txn {
	struct store	*s;
	MDB_txn		*txn;
	int		 err;
	int		 rdonly;
	int		 mapfull;
};

static const char store_zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* The one place LMDB's codes become negative errno values. */
static int
store_errno(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
	case MDB_TLS_FULL:
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	case MDB_DBS_FULL:
		return -ENFILE;
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
		return -E2BIG;
	case MDB_VERSION_MISMATCH:
		return -ENOTSUP;
	case MDB_PAGE_NOTFOUND:
	case MDB_CORRUPTED:
	case MDB_PANIC:
	case MDB_INVALID:
		return -EIO;
	case MDB_INCOMPATIBLE:
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
		return -EINVAL;
	default:
		return rc > 0 ? -rc : rc;
	}
}

const char *
store_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ENOENT:
		return "no such entry";
	case -ENOSPC:
		return "state map or disk full";
	case -EPROTO:
		return "state schema not understood by this version";
	case -EBUSY:
		return "state directory in use by another writer";
	case -EAGAIN:
		return "state temporarily unavailable (reader table full or map resized)";
	case -EIO:
		return "state database corrupted or unreadable";
	case -EBADMSG:
		return "audit chain broken";
	case -EROFS:
		return "state opened read-only";
	case -EEXIST:
		return "entry already exists";
	default:
		return strerror(err < 0 ? -err : err);
	}
}

static void
store_set_cause(struct store *s, char *cause)
{
	free(s->cause);
	s->cause = cause;
}

const char *
store_last_cause(const struct store *s)
{
	return s->cause;
}

const char *
store_path(const struct store *s)
{
	return s->dir;
}

static int
store_mkdir(const char *dir, char **cause)
{
	struct stat st;
	int err;

	if (mkdir(dir, 0700) == 0)
		return 0;
	err = errno;
	if (err == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (err == EEXIST)
		err = ENOTDIR;
	*cause = xprintf("cannot create state directory %s: %s (create it, mode 0700, "
	    "owned by the daemon's user)", dir, strerror(err));
	return -err;
}

static long
store_lock_owner(int fd)
{
	char pid[32];
	ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);

	if (n <= 0)
		return -1;
	pid[n] = '\0';
	return strtol(pid, NULL, 10);
}

/* One writer per state directory; the pid in the file names it. */
static int
store_lock(struct store *s, char **cause)
{
	char *path = xprintf("%s/lock", s->dir), pid[32];
	int fd, rc = 0, n;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		*cause = xprintf("cannot open lock file %s: %s", path, strerror(errno));
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		*cause = rc == -EBUSY ?
		    xprintf("state directory %s is in use by another imperai-snowd (pid %ld): "
		    "stop it first, or give each daemon its own state directory", s->dir,
		    store_lock_owner(fd)) :
		    xprintf("cannot lock %s: %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		rc = -errno;
		*cause = xprintf("cannot write lock file %s: %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	s->lockfd = fd;
out:
	free(path);
	return rc;
}

static char *
store_open_cause(const struct store *s, int rc)
{
	if (rc == ENOENT && (s->flags & STORE_RDONLY))
		return xprintf("no state in %s: imperai-snowd has not run with this state "
		    "directory yet, or state.directory (or -S) points elsewhere", s->dir);
	if (rc == EACCES)
		return xprintf("permission denied opening the state in %s: run as root, as "
		    "the daemon's user, or as a member of its group (imperai-snow)", s->dir);
	return xprintf("cannot open the state in %s: %s", s->dir, mdb_strerror(rc));
}

/* The daemon's group may read the state (imperai-snowctl for a monitoring
 * user); LMDB readers write their slot in lock.mdb, so it is group-writable.
 * The state directory's own mode decides whether the group gets in. */
static void
store_share_with_group(const char *dir)
{
	char *data = xprintf("%s/data.mdb", dir), *lock = xprintf("%s/lock.mdb", dir);

	(void)chmod(data, 0640);
	(void)chmod(lock, 0660);
	free(data);
	free(lock);
}

/* A map given at first creation sets the size; later the larger of the
 * stored size (grown on MAP_FULL) and the configured one wins. */
static int
store_env_open(struct store *s, uint64_t map_size, char **cause)
{
	char *data = xprintf("%s/data.mdb", s->dir);
	int rdonly = s->flags & STORE_RDONLY, fresh, rc, dead;
	MDB_envinfo info;

	fresh = access(data, F_OK) != 0;
	free(data);
	/* A reader must not create lock.mdb (as root it would lock the daemon out). */
	if (rdonly && fresh) {
		rc = ENOENT;
		goto fail;
	}
	if ((rc = mdb_env_create(&s->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(s->env, DB_COUNT)) != 0)
		goto fail;
	if (!rdonly && fresh &&
	    (rc = mdb_env_set_mapsize(s->env, map_size ? map_size : STORE_DEFAULT_MAP)) != 0)
		goto fail;
	if ((rc = mdb_env_open(s->env, s->dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600)) != 0)
		goto fail;
	if (!rdonly)
		store_share_with_group(s->dir);
	(void)mdb_reader_check(s->env, &dead);
	mdb_env_info(s->env, &info);
	if (!rdonly && map_size > info.me_mapsize &&
	    (rc = mdb_env_set_mapsize(s->env, map_size)) != 0)
		goto fail;
	return 0;
fail:
	*cause = store_open_cause(s, rc);
	return store_errno(rc);
}

static int
store_txn_begin_raw(struct store *s, unsigned flags, MDB_txn **txn)
{
	int rc, full_retries = 1, resize_retries = 2, dead;

	for (;;) {
		rc = mdb_txn_begin(s->env, NULL, flags, txn);
		if (rc == MDB_READERS_FULL && full_retries-- > 0) {
			(void)mdb_reader_check(s->env, &dead);
			continue;
		}
		/* Another process grew the map: adopt its size (no txn may be live here). */
		if (rc == MDB_MAP_RESIZED && s->live == 0 && resize_retries-- > 0) {
			if ((rc = mdb_env_set_mapsize(s->env, 0)) != 0)
				return store_errno(rc);
			continue;
		}
		return store_errno(rc);
	}
}

static int
store_parse_u64(const void *p, size_t len, uint64_t *out)
{
	const char *c = p;
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (c[i] < '0' || c[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(c[i] - '0');
	}
	*out = v;
	return 0;
}

/* Version 1 is the first schema; older ones would be migrated here. */
static int
store_schema(struct store *s, MDB_txn *txn, char **cause)
{
	MDB_val k = { 14, "schema_version" }, v;
	char cur[24];
	uint64_t ver;
	int rc;

	rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
	if (rc == MDB_NOTFOUND && !(s->flags & STORE_RDONLY)) {
		v.mv_size = (size_t)snprintf(cur, sizeof(cur), "%d", STORE_SCHEMA_VERSION);
		v.mv_data = cur;
		if ((rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)) != 0)
			*cause = store_open_cause(s, rc);
		return store_errno(rc);
	}
	if (rc != 0 || store_parse_u64(v.mv_data, v.mv_size, &ver) != 0 || ver < 1) {
		*cause = xprintf("state directory %s has no readable schema version: it was "
		    "not written by imperai-snowd; point state.directory at the right directory", s->dir);
		return -EPROTO;
	}
	if (ver > STORE_SCHEMA_VERSION) {
		*cause = xprintf("state directory %s has schema %" PRIu64 "; this imperai-snowd "
		    "understands %d: upgrade imperai-snowd or restore a matching backup",
		    s->dir, ver, STORE_SCHEMA_VERSION);
		return -EPROTO;
	}
	return 0;
}

static int
store_dbs_open(struct store *s, char **cause)
{
	int rdonly = s->flags & STORE_RDONLY, rc;
	MDB_txn *txn;

	if ((rc = store_txn_begin_raw(s, rdonly ? MDB_RDONLY : 0, &txn)) != 0) {
		*cause = xprintf("cannot read the state in %s: %s", s->dir, store_strerror(rc));
		return rc;
	}
	for (int i = 0; i < DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, store_db_names[i], rdonly ? 0 : MDB_CREATE, &s->dbi[i]);
		if (rc != 0) {
			*cause = xprintf("cannot open database %s in %s: %s (the state is "
			    "incomplete; let imperai-snowd open it once)", store_db_names[i],
			    s->dir, mdb_strerror(rc));
			mdb_txn_abort(txn);
			return store_errno(rc);
		}
	}
	if ((rc = store_schema(s, txn, cause)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	/* Committing (even a read txn) keeps the dbi handles for the env's life. */
	if ((rc = mdb_txn_commit(txn)) != 0) {
		*cause = store_open_cause(s, rc);
		return store_errno(rc);
	}
	return 0;
}

int
store_open(const char *dir, uint64_t map_size, int flags, struct store **out, char **cause)
{
	struct store *s = xcalloc(1, sizeof(*s));
	int rc;

	s->dir = xstrdup(dir);
	s->flags = flags;
	s->lockfd = -1;
	if (!(flags & STORE_RDONLY) && (rc = store_mkdir(dir, cause)) != 0)
		goto fail;
	if (!(flags & (STORE_RDONLY | STORE_NOLOCK)) && (rc = store_lock(s, cause)) != 0)
		goto fail;
	if ((rc = store_env_open(s, map_size, cause)) != 0 ||
	    (rc = store_dbs_open(s, cause)) != 0)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->env != NULL)
		mdb_env_close(s->env);
	if (s->lockfd >= 0)
		close(s->lockfd);
	free(s->cause);
	free(s->dir);
	free(s);
}

int
store_begin(struct store *s, int rdonly, struct store_txn **out)
{
	struct store_txn *t;
	MDB_txn *txn;
	int rc;

	if (!rdonly && (s->flags & STORE_RDONLY))
		return -EROFS;
	if ((rc = store_txn_begin_raw(s, rdonly ? MDB_RDONLY : 0, &txn)) != 0)
		return rc;
	t = xcalloc(1, sizeof(*t));
	t->s = s;
	t->txn = txn;
	t->rdonly = rdonly != 0;
	s->live++;
	*out = t;
	return 0;
}

void
store_abort(struct store_txn *t)
{
	if (t == NULL)
		return;
	mdb_txn_abort(t->txn);
	t->s->live--;
	free(t);
}

int
store_txn_error(const struct store_txn *t)
{
	return t->err;
}

static char *
store_commit_cause(const struct store *s, int rc)
{
	if (rc == MDB_MAP_FULL)
		return xprintf("the state map in %s is full", s->dir);
	if (rc == ENOSPC || rc == EDQUOT)
		return xprintf("%s writing the state in %s: free space on that filesystem "
		    "(df %s); the transaction was rolled back, nothing was half-written",
		    rc == ENOSPC ? "disk full" : "disk quota exceeded", s->dir, s->dir);
	return xprintf("cannot commit the state in %s: %s", s->dir, mdb_strerror(rc));
}

int
store_commit(struct store_txn *t)
{
	struct store *s = t->s;
	int rc;

	if (t->err != 0) {
		rc = t->err;
		store_abort(t);
		return rc;
	}
	/* LMDB frees the txn whether or not the commit succeeds. */
	rc = mdb_txn_commit(t->txn);
	s->live--;
	free(t);
	s->commit_mapfull = rc == MDB_MAP_FULL;
	if (rc == 0)
		return 0;
	store_set_cause(s, store_commit_cause(s, rc));
	return rc == EDQUOT ? -ENOSPC : store_errno(rc);
}

/* Doubles the map; LMDB allows it only with no transaction open in this
 * process, which store_write() guarantees by aborting first. */
static int
store_grow(struct store *s)
{
	MDB_envinfo info;
	int rc;

	mdb_env_info(s->env, &info);
	if (s->live != 0 || info.me_mapsize > SIZE_MAX / 2) {
		store_set_cause(s, xprintf("the state map in %s is full (%zu bytes) and cannot "
		    "grow%s", s->dir, info.me_mapsize, s->live ? " while a transaction is open" : ""));
		return -ENOSPC;
	}
	if ((rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2)) != 0) {
		store_set_cause(s, xprintf("cannot grow the state map in %s to %zu bytes: %s",
		    s->dir, info.me_mapsize * 2, mdb_strerror(rc)));
		return -ENOSPC;
	}
	return 0;
}

int
store_write(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg)
{
	struct store_txn *t;
	int rc;

	store_set_cause(s, NULL);
	for (int attempt = 0;; attempt++) {
		if ((rc = store_begin(s, 0, &t)) != 0)
			return rc;
		rc = fn(t, arg);
		if (rc == 0)
			rc = t->err;
		if (t->mapfull && attempt == 0) {
			store_abort(t);
			if ((rc = store_grow(s)) != 0)
				return rc;
			continue;
		}
		if (rc != 0) {
			if (t->mapfull)
				store_set_cause(s, xprintf("the state map in %s is full even after "
				    "growing: one transaction needs more room", s->dir));
			store_abort(t);
			return rc;
		}
		rc = store_commit(t);
		if (rc == -ENOSPC && s->commit_mapfull && attempt == 0 &&
		    (rc = store_grow(s)) == 0)
			continue;
		return rc;
	}
}

/* A lookup that cannot match: not found, unless t already failed. */
static int
store_missing(const struct store_txn *t)
{
	return t->err != 0 ? t->err : -ENOENT;
}

/* Records the first failure of t; every later operation returns it. */
static int
store_fail(struct store_txn *t, int rc)
{
	if (rc == MDB_MAP_FULL)
		t->mapfull = 1;
	if (t->err == 0)
		t->err = store_errno(rc);
	return t->err;
}

static int
store_put(struct store_txn *t, enum store_db db, const void *key, size_t klen,
    const void *val, size_t vlen, unsigned flags)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	int rc;

	if (t->err != 0)
		return t->err;
	if (t->rdonly)
		return store_fail(t, -EROFS);
	if (klen == 0 || klen > STORE_KEY_MAX)
		return store_fail(t, -EINVAL);
	if ((rc = mdb_put(t->txn, t->s->dbi[db], &k, &v, flags)) != 0)
		return store_fail(t, rc);
	return 0;
}

/* A missing key is an answer, not a failure: it does not poison t. */
static int
store_get(struct store_txn *t, enum store_db db, const void *key, size_t klen, MDB_val *v)
{
	MDB_val k = { klen, (void *)key };
	int rc;

	if (t->err != 0)
		return t->err;
	if (klen == 0 || klen > STORE_KEY_MAX)
		return -ENOENT;
	rc = mdb_get(t->txn, t->s->dbi[db], &k, v);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	return rc != 0 ? store_fail(t, rc) : 0;
}

static int
store_get_buf(struct store_txn *t, enum store_db db, const void *key, size_t klen,
    struct buf *out)
{
	MDB_val v;
	int rc;

	if ((rc = store_get(t, db, key, klen, &v)) != 0)
		return rc;
	buf_reset(out);
	buf_add(out, v.mv_data, v.mv_size);
	return 0;
}

static int
store_del(struct store_txn *t, enum store_db db, const void *key, size_t klen)
{
	MDB_val k = { klen, (void *)key };
	int rc;

	if (t->err != 0)
		return t->err;
	if (t->rdonly)
		return store_fail(t, -EROFS);
	if (klen == 0 || klen > STORE_KEY_MAX)
		return -ENOENT;
	rc = mdb_del(t->txn, t->s->dbi[db], &k, NULL);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	return rc != 0 ? store_fail(t, rc) : 0;
}

typedef int (*store_each_fn)(const MDB_val *k, const MDB_val *v, void *arg);

/* Walks db from start (or the first key); fn's non-zero return stops it. */
static int
store_each(struct store_txn *t, enum store_db db, const MDB_val *start, store_each_fn fn,
    void *arg)
{
	MDB_cursor *c;
	MDB_val k = { 0, NULL }, v;
	int rc;

	if (t->err != 0)
		return t->err;
	if ((rc = mdb_cursor_open(t->txn, t->s->dbi[db], &c)) != 0)
		return store_fail(t, rc);
	if (start != NULL)
		k = *start;
	rc = mdb_cursor_get(c, &k, &v, start != NULL ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0) {
		if ((rc = fn(&k, &v, arg)) != 0)
			goto out;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	rc = rc == MDB_NOTFOUND ? 0 : store_fail(t, rc);
out:
	mdb_cursor_close(c);
	return rc;
}

static int
store_last(struct store_txn *t, enum store_db db, MDB_val *k, MDB_val *v)
{
	MDB_cursor *c;
	int rc;

	if (t->err != 0)
		return t->err;
	if ((rc = mdb_cursor_open(t->txn, t->s->dbi[db], &c)) != 0)
		return store_fail(t, rc);
	rc = mdb_cursor_get(c, k, v, MDB_LAST);
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	return rc != 0 ? store_fail(t, rc) : 0;
}

/* "table/sys_id"; a table name never contains '/'. */
static int
store_ticket_key(const char *table, const char *sys_id, struct buf *key)
{
	if (table == NULL || sys_id == NULL || *table == '\0' || *sys_id == '\0' ||
	    strchr(table, '/') != NULL)
		return -EINVAL;
	buf_addf(key, "%s/%s", table, sys_id);
	return key->len > STORE_KEY_MAX ? -EINVAL : 0;
}

/* The stored record is number NUL value; *number points into the record. */
static int
store_ticket_split(const MDB_val *v, const char **number, const void **val, size_t *len)
{
	const char *nul = memchr(v->mv_data, '\0', v->mv_size);

	if (nul == NULL)
		return -EBADMSG;
	*number = v->mv_data;
	*val = nul + 1;
	*len = v->mv_size - (size_t)(nul + 1 - (const char *)v->mv_data);
	return 0;
}

int
store_ticket_get(struct store_txn *t, const char *table, const char *sys_id, struct buf *out)
{
	struct buf key;
	const char *number;
	const void *val;
	size_t len;
	MDB_val v;
	int rc;

	buf_init(&key);
	if (store_ticket_key(table, sys_id, &key) != 0) {
		rc = store_missing(t);
		goto out;
	}
	if ((rc = store_get(t, DB_TICKETS, key.data, key.len, &v)) != 0 ||
	    (rc = store_ticket_split(&v, &number, &val, &len)) != 0)
		goto out;
	buf_reset(out);
	buf_add(out, val, len);
out:
	buf_free(&key);
	return rc;
}

/* Drops number -> key unless the number now belongs to another ticket. */
static int
store_number_unlink(struct store_txn *t, const char *number, const struct buf *key)
{
	MDB_val v;
	int rc;

	if (*number == '\0')
		return 0;
	rc = store_get(t, DB_BY_NUMBER, number, strlen(number), &v);
	if (rc == -ENOENT)
		return 0;
	if (rc != 0 || v.mv_size != key->len || memcmp(v.mv_data, key->data, key->len) != 0)
		return rc;
	rc = store_del(t, DB_BY_NUMBER, number, strlen(number));
	return rc == -ENOENT ? 0 : rc;
}

/* Whether number already maps to key: rewriting it would only dirty
 * pages (every update of a ticket rewrote its by_number entry). */
static int
store_number_maps(struct store_txn *t, const char *number, const struct buf *key)
{
	MDB_val v;

	return store_get(t, DB_BY_NUMBER, number, strlen(number), &v) == 0 &&
	    v.mv_size == key->len && memcmp(v.mv_data, key->data, key->len) == 0;
}

/* The old record's number, if the ticket exists and carries another one. */
static int
store_ticket_old_number(struct store_txn *t, const struct buf *key, const char *number,
    char **old)
{
	const char *oldnum;
	const void *val;
	size_t len;
	MDB_val v;
	int rc;

	*old = NULL;
	rc = store_get(t, DB_TICKETS, key->data, key->len, &v);
	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return rc;
	if (store_ticket_split(&v, &oldnum, &val, &len) == 0 && strcmp(oldnum, number) != 0)
		*old = xstrdup(oldnum);
	return 0;
}

int
store_ticket_put(struct store_txn *t, const char *table, const char *sys_id,
    const char *number, const void *val, size_t len)
{
	struct buf key, rec;
	char *old = NULL;
	int rc;

	buf_init(&key);
	buf_init(&rec);
	if (number == NULL)
		number = "";
	if ((rc = store_ticket_key(table, sys_id, &key)) != 0 ||
	    strlen(number) > STORE_KEY_MAX) {
		rc = store_fail(t, -EINVAL);
		goto out;
	}
	if ((rc = store_ticket_old_number(t, &key, number, &old)) != 0 ||
	    (old != NULL && (rc = store_number_unlink(t, old, &key)) != 0))
		goto out;
	buf_add(&rec, number, strlen(number) + 1);
	buf_add(&rec, val, len);
	if ((rc = store_put(t, DB_TICKETS, key.data, key.len, rec.data, rec.len, 0)) != 0)
		goto out;
	if (*number != '\0' && !store_number_maps(t, number, &key))
		rc = store_put(t, DB_BY_NUMBER, number, strlen(number), key.data, key.len, 0);
out:
	free(old);
	buf_free(&rec);
	buf_free(&key);
	return rc;
}

int
store_ticket_del(struct store_txn *t, const char *table, const char *sys_id)
{
	struct buf key;
	char *number = NULL;
	int rc;

	buf_init(&key);
	if (store_ticket_key(table, sys_id, &key) != 0) {
		rc = store_missing(t);
		goto out;
	}
	/* An empty "current" number makes every stored number count as old. */
	if ((rc = store_ticket_old_number(t, &key, "", &number)) != 0)
		goto out;
	if ((rc = store_del(t, DB_TICKETS, key.data, key.len)) != 0)
		goto out;
	if (number != NULL)
		rc = store_number_unlink(t, number, &key);
out:
	free(number);
	buf_free(&key);
	return rc;
}

int
store_ticket_by_number(struct store_txn *t, const char *number, char **table, char **sys_id)
{
	const char *slash;
	MDB_val v;
	int rc;

	if (number == NULL)
		return store_missing(t);
	if ((rc = store_get(t, DB_BY_NUMBER, number, strlen(number), &v)) != 0)
		return rc;
	slash = memchr(v.mv_data, '/', v.mv_size);
	if (slash == NULL)
		return -EBADMSG;
	*table = xstrndup(v.mv_data, (size_t)(slash - (const char *)v.mv_data));
	*sys_id = xstrndup(slash + 1, v.mv_size - (size_t)(slash + 1 - (const char *)v.mv_data));
	return 0;
}

struct store_ticket_iter {
	int	(*fn)(const char *, const char *, const void *, size_t, void *);
	void	*arg;
};

static int
store_ticket_each_one(const MDB_val *k, const MDB_val *v, void *arg)
{
	struct store_ticket_iter *it = arg;
	char key[STORE_KEY_MAX + 1], *slash;
	const char *number;
	const void *val;
	size_t len;

	if (k->mv_size > STORE_KEY_MAX || store_ticket_split(v, &number, &val, &len) != 0)
		return -EBADMSG;
	memcpy(key, k->mv_data, k->mv_size);
	key[k->mv_size] = '\0';
	if ((slash = strchr(key, '/')) == NULL)
		return -EBADMSG;
	*slash = '\0';
	return it->fn(key, slash + 1, val, len, it->arg);
}

int
store_ticket_each(struct store_txn *t,
    int (*fn)(const char *table, const char *sys_id, const void *val, size_t len, void *arg),
    void *arg)
{
	struct store_ticket_iter it = { fn, arg };

	return store_each(t, DB_TICKETS, NULL, store_ticket_each_one, &it);
}

int
store_verification_put(struct store_txn *t, const char *id, const void *val, size_t len)
{
	if (id == NULL)
		return store_fail(t, -EINVAL);
	return store_put(t, DB_VERIFICATIONS, id, strlen(id), val, len, 0);
}

int
store_verification_get(struct store_txn *t, const char *id, struct buf *out)
{
	if (id == NULL)
		return store_missing(t);
	return store_get_buf(t, DB_VERIFICATIONS, id, strlen(id), out);
}

struct store_str_iter {
	int	(*fn)(const char *, const void *, size_t, void *);
	void	*arg;
};

static int
store_str_each_one(const MDB_val *k, const MDB_val *v, void *arg)
{
	struct store_str_iter *it = arg;
	char key[STORE_KEY_MAX + 1];

	if (k->mv_size > STORE_KEY_MAX)
		return -EBADMSG;
	memcpy(key, k->mv_data, k->mv_size);
	key[k->mv_size] = '\0';
	return it->fn(key, v->mv_data, v->mv_size, it->arg);
}

int
store_verification_each(struct store_txn *t,
    int (*fn)(const char *id, const void *val, size_t len, void *arg), void *arg)
{
	struct store_str_iter it = { fn, arg };

	return store_each(t, DB_VERIFICATIONS, NULL, store_str_each_one, &it);
}

int
store_meta_get(struct store_txn *t, const char *key, struct buf *out)
{
	if (key == NULL)
		return store_missing(t);
	return store_get_buf(t, DB_META, key, strlen(key), out);
}

int
store_meta_put(struct store_txn *t, const char *key, const void *val, size_t len)
{
	if (key == NULL)
		return store_fail(t, -EINVAL);
	return store_put(t, DB_META, key, strlen(key), val, len, 0);
}

int
store_meta_del(struct store_txn *t, const char *key)
{
	if (key == NULL)
		return store_missing(t);
	return store_del(t, DB_META, key, strlen(key));
}

static void
store_seq_key(uint64_t seq, uint8_t key[8])
{
	for (int i = 0; i < 8; i++)
		key[i] = (uint8_t)(seq >> (56 - 8 * i));
}

static int
store_seq_of(const MDB_val *k, uint64_t *seq)
{
	const uint8_t *p = k->mv_data;

	if (k->mv_size != 8)
		return -EBADMSG;
	*seq = 0;
	for (int i = 0; i < 8; i++)
		*seq = *seq << 8 | p[i];
	return 0;
}

/* The last key, or the meta high-water mark if larger, so that a drained
 * queue never hands out a number twice. */
static int
store_seq_next(struct store_txn *t, enum store_db db, const char *hwm_key, uint64_t *next)
{
	uint64_t last = 0, hwm = 0;
	MDB_val k, v;
	int rc;

	rc = store_last(t, db, &k, &v);
	if (rc == 0 && store_seq_of(&k, &last) != 0)
		return store_fail(t, -EBADMSG);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	if (hwm_key != NULL) {
		rc = store_get(t, DB_META, hwm_key, strlen(hwm_key), &v);
		if (rc == 0 && store_parse_u64(v.mv_data, v.mv_size, &hwm) != 0)
			return store_fail(t, -EBADMSG);
		if (rc != 0 && rc != -ENOENT)
			return rc;
	}
	*next = (last > hwm ? last : hwm) + 1;
	return 0;
}

static int
store_seq_add(struct store_txn *t, enum store_db db, const char *hwm_key, const void *val,
    size_t len, uint64_t *seq)
{
	uint8_t key[8];
	char num[24];
	uint64_t next;
	int rc, n;

	if ((rc = store_seq_next(t, db, hwm_key, &next)) != 0)
		return rc;
	store_seq_key(next, key);
	if ((rc = store_put(t, db, key, sizeof(key), val, len, MDB_NOOVERWRITE)) != 0)
		return rc;
	n = snprintf(num, sizeof(num), "%" PRIu64, next);
	if ((rc = store_put(t, DB_META, hwm_key, strlen(hwm_key), num, (size_t)n, 0)) != 0)
		return rc;
	if (seq != NULL)
		*seq = next;
	return 0;
}

struct store_seq_iter {
	int	(*fn)(uint64_t, const void *, size_t, void *);
	void	*arg;
};

static int
store_seq_each_one(const MDB_val *k, const MDB_val *v, void *arg)
{
	struct store_seq_iter *it = arg;
	uint64_t seq;

	if (store_seq_of(k, &seq) != 0)
		return -EBADMSG;
	return it->fn(seq, v->mv_data, v->mv_size, it->arg);
}

static int
store_seq_each(struct store_txn *t, enum store_db db, uint64_t from,
    int (*fn)(uint64_t, const void *, size_t, void *), void *arg)
{
	struct store_seq_iter it = { fn, arg };
	uint8_t key[8];
	MDB_val start = { sizeof(key), key };

	store_seq_key(from, key);
	return store_each(t, db, &start, store_seq_each_one, &it);
}

int
store_outbox_add(struct store_txn *t, const void *val, size_t len, uint64_t *seq)
{
	return store_seq_add(t, DB_OUTBOX, "seq/outbox", val, len, seq);
}

int
store_outbox_put(struct store_txn *t, uint64_t seq, const void *val, size_t len)
{
	uint8_t key[8];

	store_seq_key(seq, key);
	return store_put(t, DB_OUTBOX, key, sizeof(key), val, len, 0);
}

int
store_outbox_get(struct store_txn *t, uint64_t seq, struct buf *out)
{
	uint8_t key[8];

	store_seq_key(seq, key);
	return store_get_buf(t, DB_OUTBOX, key, sizeof(key), out);
}

int
store_outbox_del(struct store_txn *t, uint64_t seq)
{
	uint8_t key[8];

	store_seq_key(seq, key);
	return store_del(t, DB_OUTBOX, key, sizeof(key));
}

int
store_outbox_each(struct store_txn *t,
    int (*fn)(uint64_t seq, const void *val, size_t len, void *arg), void *arg)
{
	return store_seq_each(t, DB_OUTBOX, 0, fn, arg);
}

int
store_request_add(struct store_txn *t, const char *json, uint64_t *seq)
{
	if (json == NULL)
		return store_fail(t, -EINVAL);
	return store_seq_add(t, DB_REQUESTS, "seq/requests", json, strlen(json), seq);
}

int
store_request_del(struct store_txn *t, uint64_t seq)
{
	uint8_t key[8];

	store_seq_key(seq, key);
	return store_del(t, DB_REQUESTS, key, sizeof(key));
}

int
store_request_each(struct store_txn *t,
    int (*fn)(uint64_t seq, const void *val, size_t len, void *arg), void *arg)
{
	return store_seq_each(t, DB_REQUESTS, 0, fn, arg);
}

/* EVP_Digest fails only when libcrypto cannot allocate: abort, as x*alloc do. */
void
store_sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		abort();
}

void
store_sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[32];

	store_sha256(data, len, md);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[64] = '\0';
}

int
store_audit_last(struct store_txn *t, uint64_t *seq, char hash[65])
{
	MDB_val k, v;
	int rc;

	if ((rc = store_last(t, DB_AUDIT, &k, &v)) != 0)
		return rc;
	if (store_seq_of(&k, seq) != 0)
		return store_fail(t, -EBADMSG);
	store_sha256_hex(v.mv_data, v.mv_size, hash);
	return 0;
}

/* The head (last seq and its hash) kept in meta lets verify notice an
 * altered or deleted last entry, which no successor's prev covers. */
static int
store_audit_set_head(struct store_txn *t, uint64_t seq, const struct buf *entry)
{
	char hash[65], head[96];
	int n;

	store_sha256_hex(entry->data, entry->len, hash);
	n = snprintf(head, sizeof(head), "%" PRIu64 " %s", seq, hash);
	return store_put(t, DB_META, STORE_AUDIT_HEAD, strlen(STORE_AUDIT_HEAD), head, (size_t)n, 0);
}

int
store_audit_append(struct store_txn *t, int64_t now, const char *event_json, uint64_t *seq)
{
	json_object *ev = event_json ? util_json_object(event_json, strlen(event_json)) : NULL;
	char prev[65];
	uint64_t last;
	uint8_t key[8];
	struct buf b;
	int rc;

	buf_init(&b);
	if (ev == NULL) {
		rc = store_fail(t, -EINVAL);
		goto out;
	}
	rc = store_audit_last(t, &last, prev);
	if (rc == -ENOENT) {
		last = 0;
		memcpy(prev, store_zero_hash, sizeof(prev));
	} else if (rc != 0)
		goto out;
	buf_addf(&b, "{\"seq\":%" PRIu64 ",\"time\":%" PRId64 ",\"prev\":\"%s\",\"event\":%s}",
	    last + 1, now, prev, event_json);
	store_seq_key(last + 1, key);
	if ((rc = store_put(t, DB_AUDIT, key, sizeof(key), b.data, b.len, MDB_NOOVERWRITE)) != 0 ||
	    (rc = store_audit_set_head(t, last + 1, &b)) != 0)
		goto out;
	if (seq != NULL)
		*seq = last + 1;
out:
	json_object_put(ev);
	buf_free(&b);
	return rc;
}

int
store_audit_each(struct store_txn *t, uint64_t from_seq,
    int (*fn)(uint64_t seq, const void *val, size_t len, void *arg), void *arg)
{
	return store_seq_each(t, DB_AUDIT, from_seq, fn, arg);
}

struct store_audit_walk {
	const char	*dir;
	uint64_t	 expect;
	uint64_t	 checked;
	char		 prev[65];
	char		*cause;
};

/* 0 when entry seq (bytes v) carries seq and the previous entry's hash. */
static int
store_audit_entry_ok(const MDB_val *v, uint64_t seq, const char *prev)
{
	json_object *o = util_json_object(v->mv_data, v->mv_size), *jseq, *jprev, *jev;
	int ok;

	ok = o != NULL && json_object_object_get_ex(o, "seq", &jseq) &&
	    json_object_is_type(jseq, json_type_int) &&
	    json_object_get_uint64(jseq) == seq &&
	    json_object_object_get_ex(o, "prev", &jprev) &&
	    json_object_is_type(jprev, json_type_string) &&
	    strcmp(json_object_get_string(jprev), prev) == 0 &&
	    json_object_object_get_ex(o, "event", &jev);
	json_object_put(o);
	return ok ? 0 : -EBADMSG;
}

static int
store_audit_walk_one(const MDB_val *k, const MDB_val *v, void *arg)
{
	struct store_audit_walk *w = arg;
	uint64_t seq;

	if (store_seq_of(k, &seq) != 0 || seq < w->expect) {
		w->cause = xprintf("audit log in %s has a malformed key after entry %" PRIu64,
		    w->dir, w->expect - 1);
		return -EBADMSG;
	}
	if (seq > w->expect) {
		w->cause = xprintf("audit entry %" PRIu64 " in %s is missing (the next entry is "
		    "%" PRIu64 "): entries were deleted outside imperai-snowd", w->expect,
		    w->dir, seq);
		return -EBADMSG;
	}
	if (store_audit_entry_ok(v, seq, w->prev) != 0) {
		w->cause = xprintf("audit entry %" PRIu64 " in %s does not match the chain "
		    "(altered, or its predecessor was): compare with a backup", seq, w->dir);
		return -EBADMSG;
	}
	store_sha256_hex(v->mv_data, v->mv_size, w->prev);
	w->expect++;
	w->checked++;
	return 0;
}

static int
store_audit_parse_head(const MDB_val *v, uint64_t *seq, char hash[65])
{
	const char *p = v->mv_data, *sp = memchr(p, ' ', v->mv_size);

	if (sp == NULL || v->mv_size - (size_t)(sp + 1 - p) != 64 ||
	    store_parse_u64(p, (size_t)(sp - p), seq) != 0)
		return -EBADMSG;
	memcpy(hash, sp + 1, 64);
	hash[64] = '\0';
	return 0;
}

/* After a clean walk: the last entry must be the head recorded at append. */
static int
store_audit_check_head(struct store_txn *t, struct store_audit_walk *w)
{
	uint64_t last = w->expect - 1, hseq = 0;
	char hash[65] = "";
	MDB_val v;
	int rc;

	rc = store_get(t, DB_META, STORE_AUDIT_HEAD, strlen(STORE_AUDIT_HEAD), &v);
	if (rc == -ENOENT && last == 0)
		return 0;
	if (rc != 0 && rc != -ENOENT)
		return rc;
	if (rc == 0 && store_audit_parse_head(&v, &hseq, hash) != 0)
		hseq = 0;
	if (hseq == last && strcmp(hash, w->prev) == 0)
		return 0;
	w->expect = hseq > last ? last + 1 : hseq == last ? last : hseq + 1;
	w->checked = w->expect - 1;
	if (hseq > last)
		w->cause = xprintf("audit entries %" PRIu64 " to %" PRIu64 " in %s are missing: "
		    "the log was truncated outside imperai-snowd", last + 1, hseq, w->dir);
	else
		w->cause = xprintf("audit entry %" PRIu64 " in %s does not match the head "
		    "recorded at append: the log was altered outside imperai-snowd; compare "
		    "with a backup", w->expect, w->dir);
	return -EBADMSG;
}

int
store_audit_verify(struct store *s, uint64_t *checked, uint64_t *bad_seq, char **cause)
{
	struct store_audit_walk w = { .dir = s->dir, .expect = 1 };
	struct store_txn *t;
	int rc;

	memcpy(w.prev, store_zero_hash, sizeof(w.prev));
	if ((rc = store_begin(s, 1, &t)) != 0) {
		*cause = xprintf("cannot read the audit log in %s: %s", s->dir, store_strerror(rc));
		return rc;
	}
	rc = store_each(t, DB_AUDIT, NULL, store_audit_walk_one, &w);
	if (rc == 0)
		rc = store_audit_check_head(t, &w);
	store_abort(t);
	if (checked != NULL)
		*checked = w.checked;
	if (rc == -EBADMSG && bad_seq != NULL)
		*bad_seq = w.expect;
	if (rc != 0 && w.cause == NULL)
		w.cause = xprintf("cannot read the audit log in %s: %s", s->dir, store_strerror(rc));
	if (rc != 0)
		*cause = w.cause;
	return rc;
}

int
store_stat(struct store *s, struct store_stat *out)
{
	static const enum store_db dbs[] = { DB_TICKETS, DB_VERIFICATIONS, DB_OUTBOX, DB_AUDIT,
	    DB_REQUESTS };
	uint64_t *counts[] = { &out->tickets, &out->verifications, &out->outbox, &out->audit,
	    &out->requests };
	struct store_txn *t;
	MDB_envinfo info;
	MDB_stat st;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if ((rc = store_begin(s, 1, &t)) != 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(dbs) && rc == 0; i++) {
		if ((rc = store_errno(mdb_stat(t->txn, s->dbi[dbs[i]], &st))) == 0)
			*counts[i] = st.ms_entries;
	}
	store_abort(t);
	if (rc != 0)
		return rc;
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &st);
	out->map_size = info.me_mapsize;
	out->used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	return 0;
}
