/* hmap: strings to pointers (see hmap.h). */
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "util.h"

#define HMAP_FIRST_SIZE	256

struct hnode {
	struct hnode	*next;
	size_t		 hash;
	void		*val;
	char		 key[];
};

struct hmap {
	struct hnode	**tbl;
	size_t		  size;
	size_t		  count;
};

/* djb2: short keys ("incident/<32 hex>"), cheap and spread well enough. */
static size_t
hmap_hash(const char *s)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

struct hmap *
hmap_new(void)
{
	return xcalloc(1, sizeof(struct hmap));
}

void
hmap_clear(struct hmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->size; i++) {
		for (struct hnode *n = m->tbl[i], *nn; n; n = nn) {
			nn = n->next;
			if (free_val)
				free_val(n->val);
			free(n);
		}
		m->tbl[i] = NULL;
	}
	m->count = 0;
}

void
hmap_free(struct hmap *m, void (*free_val)(void *))
{
	if (m == NULL)
		return;
	hmap_clear(m, free_val);
	free(m->tbl);
	free(m);
}

static struct hnode **
hmap_slot(const struct hmap *m, const char *key, size_t hash)
{
	struct hnode **pp = &m->tbl[hash % m->size];

	while (*pp && ((*pp)->hash != hash || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

void *
hmap_get(const struct hmap *m, const char *key)
{
	struct hnode *n;

	if (m->size == 0)
		return NULL;
	n = *hmap_slot(m, key, hmap_hash(key));
	return n ? n->val : NULL;
}

static void
hmap_grow(struct hmap *m)
{
	size_t nsize = m->size ? m->size * 2 : HMAP_FIRST_SIZE;
	struct hnode **ntbl = xcalloc(nsize, sizeof(*ntbl));

	for (size_t i = 0; i < m->size; i++) {
		for (struct hnode *n = m->tbl[i], *nn; n; n = nn) {
			nn = n->next;
			n->next = ntbl[n->hash % nsize];
			ntbl[n->hash % nsize] = n;
		}
	}
	free(m->tbl);
	m->tbl = ntbl;
	m->size = nsize;
}

void *
hmap_put(struct hmap *m, const char *key, void *val)
{
	size_t hash = hmap_hash(key), len = strlen(key);
	struct hnode **pp, *n;
	void *old;

	if (m->count >= m->size)
		hmap_grow(m);
	pp = hmap_slot(m, key, hash);
	if (*pp != NULL) {
		old = (*pp)->val;
		(*pp)->val = val;
		return old;
	}
	n = xmalloc(sizeof(*n) + len + 1);
	memcpy(n->key, key, len + 1);
	n->hash = hash;
	n->val = val;
	n->next = NULL;
	*pp = n;
	m->count++;
	return NULL;
}

void *
hmap_del(struct hmap *m, const char *key)
{
	struct hnode **pp, *n;
	void *val;

	if (m->size == 0)
		return NULL;
	pp = hmap_slot(m, key, hmap_hash(key));
	if ((n = *pp) == NULL)
		return NULL;
	*pp = n->next;
	val = n->val;
	free(n);
	m->count--;
	return val;
}

size_t
hmap_count(const struct hmap *m)
{
	return m->count;
}

int
hmap_next(const struct hmap *m, struct hmap_iter *it, const char **key, void **val)
{
	const struct hnode *n = it->node ? ((const struct hnode *)it->node)->next : NULL;

	if (it->node == NULL)
		it->bucket = 0;
	else if (n == NULL)
		it->bucket++;
	for (; n == NULL && it->bucket < m->size; it->bucket++)
		if ((n = m->tbl[it->bucket]) != NULL)
			break;
	if (n == NULL) {
		it->bucket = m->size;
		return 0;
	}
	it->node = n;
	if (key)
		*key = n->key;
	if (val)
		*val = n->val;
	return 1;
}
