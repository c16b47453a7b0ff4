/* query: ServiceNow encoded queries, compiled once and evaluated locally on
 * records, so a flow's query decides exactly as the instance would. */

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "record.h"
#include "util.h"

enum qop {
	Q_EQ, Q_NE, Q_LT, Q_LE, Q_GT, Q_GE, Q_IN, Q_NOTIN, Q_LIKE, Q_NOTLIKE,
	Q_STARTSWITH, Q_ENDSWITH, Q_ISEMPTY, Q_ISNOTEMPTY, Q_BETWEEN,
};

/* Longest spellings first where one is a prefix of another. */
static const struct {
	const char	*tok;
	enum qop	 op;
} query_ops[] = {
	{ "ISNOTEMPTY", Q_ISNOTEMPTY }, { "ISEMPTY", Q_ISEMPTY },
	{ "NOT IN", Q_NOTIN }, { "NOT LIKE", Q_NOTLIKE }, { "NOTLIKE", Q_NOTLIKE },
	{ "STARTSWITH", Q_STARTSWITH }, { "ENDSWITH", Q_ENDSWITH },
	{ "BETWEEN", Q_BETWEEN }, { "LIKE", Q_LIKE }, { "IN", Q_IN },
	{ "!=", Q_NE }, { "<=", Q_LE }, { ">=", Q_GE }, { "=", Q_EQ }, { "<", Q_LT },
	{ ">", Q_GT },
};

struct qterm {
	char		*field;
	enum qop	 op;
	char		**vals;		/* IN: the list; BETWEEN: low, high */
	size_t		 nvals;
};

/* Terms joined by ^OR. */
struct qclause {
	struct qterm	*v;
	size_t		 n;
};

/* Clauses joined by ^. */
struct qgroup {
	struct qclause	*v;
	size_t		 n;
};

/* Groups joined by ^NQ. */
struct query {
	struct qgroup	*v;
	size_t		 n;
};

/* The record's value of a field, "" when absent (or no record). */
static const char *
query_get(const struct snow_record *r, const char *name)
{
	const char *v = r != NULL ? snow_record_get(r, name) : NULL;

	return v != NULL ? v : "";
}

static void
query_term_free(struct qterm *t)
{
	free(t->field);
	for (size_t i = 0; i < t->nvals; i++)
		free(t->vals[i]);
	free(t->vals);
}

void
query_free(struct query *q)
{
	if (q == NULL)
		return;
	for (size_t g = 0; g < q->n; g++) {
		for (size_t c = 0; c < q->v[g].n; c++) {
			for (size_t t = 0; t < q->v[g].v[c].n; t++)
				query_term_free(&q->v[g].v[c].v[t]);
			free(q->v[g].v[c].v);
		}
		free(q->v[g].v);
	}
	free(q->v);
	free(q);
}

static void
query_add_val(struct qterm *t, const char *s, size_t len)
{
	t->vals = xreallocarray(t->vals, t->nvals + 1, sizeof(*t->vals));
	t->vals[t->nvals++] = xstrndup(s, len);
}

/* Splits the value of an IN or BETWEEN term on sep. */
static void
query_split(struct qterm *t, const char *v, char sep)
{
	const char *p = v, *e;

	for (;;) {
		e = strchr(p, sep);
		query_add_val(t, p, e ? (size_t)(e - p) : strlen(p));
		if (e == NULL)
			break;
		p = e + 1;
	}
}

static int
query_bad(char **cause, size_t pos, const char *what, const char *near)
{
	*cause = xprintf("position %zu: %s near \"%.16s%s\"", pos, what, near,
	    strlen(near) > 16 ? "..." : "");
	return -EINVAL;
}

/* Checks the value of a term against what its operator takes. */
static int
query_value(struct qterm *t, const char *v, size_t pos, char **cause)
{
	if (strncmp(v, "javascript:", 11) == 0)
		return query_bad(cause, pos, "javascript: values cannot be evaluated locally", v);
	switch (t->op) {
	case Q_ISEMPTY:
	case Q_ISNOTEMPTY:
		if (*v != '\0')
			return query_bad(cause, pos, "ISEMPTY and ISNOTEMPTY take no value", v);
		return 0;
	case Q_IN:
	case Q_NOTIN:
		if (*v == '\0')
			return query_bad(cause, pos, "IN needs a list of values as a,b,c", v);
		query_split(t, v, ',');
		return 0;
	case Q_BETWEEN:
		if (strchr(v, '@') == NULL || strchr(v, '@') != strrchr(v, '@'))
			return query_bad(cause, pos, "BETWEEN takes two values as low@high", v);
		query_split(t, v, '@');
		return 0;
	default:
		query_add_val(t, v, strlen(v));
		return 0;
	}
}

/* Parses "fieldOPvalue"; pos is the 1-based position of s in the query. */
static int
query_term(const char *s, size_t pos, struct qterm *t, char **cause)
{
	size_t flen = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.");
	const char *p = s + flen;

	memset(t, 0, sizeof(*t));
	if (flen == 0)
		return query_bad(cause, pos, "expected a field name", s);
	for (size_t i = 0; i < ARRAY_SIZE(query_ops); i++) {
		size_t olen = strlen(query_ops[i].tok);

		if (strncmp(p, query_ops[i].tok, olen) != 0)
			continue;
		t->field = xstrndup(s, flen);
		t->op = query_ops[i].op;
		return query_value(t, p + olen, pos + flen + olen, cause);
	}
	return query_bad(cause, pos + flen, *p ? "unknown operator" : "missing operator",
	    *p ? p : s);
}

static struct qgroup *
query_new_group(struct query *q)
{
	q->v = xreallocarray(q->v, q->n + 1, sizeof(*q->v));
	memset(&q->v[q->n], 0, sizeof(q->v[q->n]));
	return &q->v[q->n++];
}

static struct qclause *
query_new_clause(struct qgroup *g)
{
	g->v = xreallocarray(g->v, g->n + 1, sizeof(*g->v));
	memset(&g->v[g->n], 0, sizeof(g->v[g->n]));
	return &g->v[g->n++];
}

static void
query_add_term(struct qclause *c, const struct qterm *t)
{
	c->v = xreallocarray(c->v, c->n + 1, sizeof(*c->v));
	c->v[c->n++] = *t;
}

/* One ^-separated segment: [NQ|OR]term, ORDERBY..., EQ or empty. */
static int
query_segment(struct query *q, const char *seg, size_t pos, char **cause)
{
	struct qgroup *g = q->n ? &q->v[q->n - 1] : NULL;
	struct qterm t;
	int or = 0;

	if (strncmp(seg, "ORDERBY", 7) == 0 || strcmp(seg, "EQ") == 0 || *seg == '\0')
		return 0;	/* sorting and the end marker do not filter */
	if (strncmp(seg, "NQ", 2) == 0) {
		g = query_new_group(q);
		seg += 2;
		pos += 2;
		if (strncmp(seg, "ORDERBY", 7) == 0 || *seg == '\0')
			return 0;
	} else if (strncmp(seg, "OR", 2) == 0) {
		if (g == NULL || g->n == 0)
			return query_bad(cause, pos, "^OR without a condition before it", seg);
		or = 1;
		seg += 2;
		pos += 2;
	}
	if (query_term(seg, pos, &t, cause) < 0) {
		query_term_free(&t);
		return -EINVAL;
	}
	if (g == NULL)
		g = query_new_group(q);
	query_add_term(or ? &g->v[g->n - 1] : query_new_clause(g), &t);
	return 0;
}

/* Drops the groups left empty by ^NQ followed by nothing. */
static void
query_compact(struct query *q)
{
	size_t k = 0;

	for (size_t i = 0; i < q->n; i++) {
		if (q->v[i].n == 0)
			free(q->v[i].v);
		else
			q->v[k++] = q->v[i];
	}
	q->n = k;
}

int
query_compile(const char *text, struct query **out, char **cause)
{
	struct query *q = xcalloc(1, sizeof(*q));
	const char *p = text;
	int rc = 0;

	*out = NULL;
	while (rc == 0) {
		const char *e = strchr(p, '^');
		char *seg = xstrndup(p, e ? (size_t)(e - p) : strlen(p));

		rc = query_segment(q, seg, (size_t)(p - text) + 1, cause);
		free(seg);
		if (e == NULL)
			break;
		p = e + 1;
	}
	if (rc < 0) {
		query_free(q);
		return rc;
	}
	query_compact(q);
	*out = q;
	return 0;
}

static int
query_int(const char *s, long long *out)
{
	char *end;

	if (*s == '\0' || (!isdigit((unsigned char)*s) && !(*s == '-' &&
	    isdigit((unsigned char)s[1]))))
		return 0;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return *end == '\0' && errno == 0;
}

/* Numeric order when both sides are integers, else byte order. */
static int
query_cmp(const char *a, const char *b)
{
	long long x, y;

	if (query_int(a, &x) && query_int(b, &y))
		return (x > y) - (x < y);
	return strcmp(a, b);
}

static int
query_in(const struct qterm *t, const char *v)
{
	for (size_t i = 0; i < t->nvals; i++)
		if (query_cmp(v, t->vals[i]) == 0)
			return 1;
	return 0;
}

static int
query_ends(const char *v, const char *suffix)
{
	size_t lv = strlen(v), ls = strlen(suffix);

	return lv >= ls && strcmp(v + lv - ls, suffix) == 0;
}

static int
query_term_eval(const struct qterm *t, const struct snow_record *r)
{
	const char *v = query_get(r, t->field);
	const char *a = t->nvals ? t->vals[0] : "";

	switch (t->op) {
	case Q_EQ:		return query_cmp(v, a) == 0;
	case Q_NE:		return query_cmp(v, a) != 0;
	case Q_LT:		return query_cmp(v, a) < 0;
	case Q_LE:		return query_cmp(v, a) <= 0;
	case Q_GT:		return query_cmp(v, a) > 0;
	case Q_GE:		return query_cmp(v, a) >= 0;
	case Q_IN:		return query_in(t, v);
	case Q_NOTIN:		return !query_in(t, v);
	case Q_LIKE:		return strstr(v, a) != NULL;
	case Q_NOTLIKE:		return strstr(v, a) == NULL;
	case Q_STARTSWITH:	return strncmp(v, a, strlen(a)) == 0;
	case Q_ENDSWITH:	return query_ends(v, a);
	case Q_ISEMPTY:		return *v == '\0';
	case Q_ISNOTEMPTY:	return *v != '\0';
	case Q_BETWEEN:		return query_cmp(v, a) >= 0 && query_cmp(v, t->vals[1]) <= 0;
	}
	return 0;
}

static int
query_group_eval(const struct qgroup *g, const struct snow_record *r)
{
	for (size_t c = 0; c < g->n; c++) {
		int any = 0;

		for (size_t t = 0; t < g->v[c].n && !any; t++)
			any = query_term_eval(&g->v[c].v[t], r);
		if (!any)
			return 0;
	}
	return 1;
}

/* 1 when r matches; a query of only ORDERBY terms matches everything. */
int
query_eval(const struct query *q, const struct snow_record *r)
{
	if (q->n == 0)
		return 1;
	for (size_t g = 0; g < q->n; g++)
		if (query_group_eval(&q->v[g], r))
			return 1;
	return 0;
}

static void
query_add_name(char ***names, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0)
			return;
	*names = xreallocarray(*names, *n + 1, sizeof(**names));
	(*names)[(*n)++] = xstrdup(name);
}

void
query_fields(const struct query *q, char ***names, size_t *n)
{
	for (size_t g = 0; g < q->n; g++)
		for (size_t c = 0; c < q->v[g].n; c++)
			for (size_t t = 0; t < q->v[g].v[c].n; t++)
				query_add_name(names, n, q->v[g].v[c].v[t].field);
}
