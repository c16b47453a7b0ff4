/* audit_tamper: test helper for tests/integration/test_ctl.py.
 *
 *   audit_tamper DIR SEQ
 *
 * Opens the LMDB environment in DIR directly (the daemon must be stopped)
 * and alters audit entry SEQ in place, keeping it valid JSON: the first
 * digit of its "time" is changed.  imperai-snowctl audit verify must then
 * report the chain broken.  Exit 0 done, 1 error, 64 usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

/* Audit keys are the seq as 8 bytes, big-endian (lib/store.c). */
static void
tamper_key(uint64_t seq, unsigned char key[8])
{
	for (int i = 0; i < 8; i++)
		key[i] = (unsigned char)(seq >> (56 - 8 * i));
}

static int
tamper_value(const MDB_val *v, MDB_val *out)
{
	char *p = malloc(v->mv_size), *t;

	if (p == NULL)
		return -ENOMEM;
	memcpy(p, v->mv_data, v->mv_size);
	t = memmem(p, v->mv_size, "\"time\":", 7);
	if (t == NULL || t + 7 >= p + v->mv_size || t[7] < '0' || t[7] > '9') {
		free(p);
		return -EBADMSG;
	}
	t[7] = t[7] == '9' ? '1' : (char)(t[7] + 1);
	out->mv_data = p;
	out->mv_size = v->mv_size;
	return 0;
}

static int
tamper(const char *dir, uint64_t seq)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k, v, nv = { 0, NULL };
	unsigned char key[8];
	int rc;

	tamper_key(seq, key);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 16)) ||
	    (rc = mdb_env_open(env, dir, MDB_NOTLS, 0600)) ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, "audit", 0, &dbi)) || (rc = mdb_get(txn, dbi, &k, &v)))
		goto out;
	if ((rc = tamper_value(&v, &nv)) != 0) {
		fprintf(stderr, "audit_tamper: entry %" PRIu64 " has no \"time\" to alter\n", seq);
		goto out;
	}
	if ((rc = mdb_put(txn, dbi, &k, &nv, 0)) == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
out:
	if (rc != 0 && rc != -EBADMSG)
		fprintf(stderr, "audit_tamper: %s: %s\n", dir, mdb_strerror(rc));
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	free(nv.mv_data);
	return rc == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	char *end;
	unsigned long long seq;

	if (argc != 3) {
		fprintf(stderr, "usage: audit_tamper DIR SEQ\n");
		return 64;
	}
	seq = strtoull(argv[2], &end, 10);
	if (*end || seq == 0) {
		fprintf(stderr, "audit_tamper: SEQ must be a number > 0\n");
		return 64;
	}
	return tamper(argv[1], seq);
}
