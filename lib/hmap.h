/* hmap: a hash table from strings to pointers, chained, growing by
 * doubling.  The one table of the daemon: the step's ticket cache and the
 * outbox index both keep their tickets in one.  Keys are copied; values
 * belong to the caller. */
#ifndef IMPERAI_HMAP_H
#define IMPERAI_HMAP_H

#include <stddef.h>

struct hmap;

/* An empty table (never NULL: allocation failure aborts). */
struct hmap *hmap_new(void);
/* Frees the table; each value goes to free_val first (NULL: kept). */
void hmap_free(struct hmap *m, void (*free_val)(void *));
/* Empties the table, each value to free_val (NULL: kept). */
void hmap_clear(struct hmap *m, void (*free_val)(void *));
/* The value of key, NULL if absent. */
void *hmap_get(const struct hmap *m, const char *key);
/* Sets key to val (replacing any value, which is returned; else NULL). */
void *hmap_put(struct hmap *m, const char *key, void *val);
/* Removes key: its value, NULL if absent. */
void *hmap_del(struct hmap *m, const char *key);
/* Entries in the table. */
size_t hmap_count(const struct hmap *m);

/* Walks the table in no particular order; the table must not change
 * during the walk.  Zero-initialise it, then call hmap_next until 0. */
struct hmap_iter {
	size_t		 bucket;
	const void	*node;
};
/* 1 with the next entry's key and value (either may be NULL), 0 at the end. */
int hmap_next(const struct hmap *m, struct hmap_iter *it, const char **key, void **val);

#endif
