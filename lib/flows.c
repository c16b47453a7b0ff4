/* flows: the verification policy, read from YAML (libyaml) into a small
 * tree first, then checked key by key so that every problem is reported
 * with its file, line and column. */

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "flows.h"
#include "query.h"
#include "record.h"
#include "util.h"

#define FLOWS_MAX_SIZE		(1024 * 1024)
#define FLOWS_MAX_DEPTH		16
#define FLOWS_MAX_AGE_MIN	60
#define FLOWS_MAX_AGE_MAX	(30 * 86400)
#define FLOWS_MAX_AGE_DEFAULT	3600

enum ykind { Y_SCALAR, Y_SEQ, Y_MAP };

/* A YAML node; a mapping's kids alternate key, value. */
struct ynode {
	enum ykind	 kind;
	char		*s;		/* scalar text */
	int		 plain;		/* unquoted scalar: may be null, bool, int */
	int		 line, col;	/* 1-based */
	struct ynode	*kids;
	size_t		 n;
};

struct floader {
	const char	*name;
	struct errlist	*errs;
	size_t		 nerrs0;
	yaml_parser_t	 parser;
};

static void ferr(struct floader *L, int line, int col, const char *path, const char *fmt, ...)
    PRINTFLIKE(5, 6);

static void
ferr(struct floader *L, int line, int col, const char *path, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvprintf(fmt, ap);
	va_end(ap);
	if (path != NULL)
		errlist_add(L->errs, "%s:%d:%d: %s: %s", L->name, line, col, path, msg);
	else
		errlist_add(L->errs, "%s:%d:%d: %s", L->name, line, col, msg);
	free(msg);
}

static void
ynode_free(struct ynode *y)
{
	for (size_t i = 0; i < y->n; i++)
		ynode_free(&y->kids[i]);
	free(y->kids);
	free(y->s);
}

static int
yerr_mark(struct floader *L, const yaml_mark_t *m, const char *what)
{
	ferr(L, (int)m->line + 1, (int)m->column + 1, NULL, "%s", what);
	return -EINVAL;
}

static int
yparse_error(struct floader *L)
{
	yaml_parser_t *p = &L->parser;
	const yaml_mark_t *m = &p->problem_mark;

	if (p->context != NULL)
		ferr(L, (int)m->line + 1, (int)m->column + 1, NULL, "YAML: %s %s", p->context,
		    p->problem ? p->problem : "");
	else
		ferr(L, (int)m->line + 1, (int)m->column + 1, NULL, "YAML: %s",
		    p->problem ? p->problem : "syntax error");
	return -EINVAL;
}

static int
ynext(struct floader *L, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&L->parser, ev))
		return yparse_error(L);
	return 0;
}

/* Anchors, aliases and tags are refused: plain data only, and no
 * exponential alias expansion. */
static int
ycheck_event(struct floader *L, const yaml_event_t *ev)
{
	const yaml_char_t *anchor = NULL, *tag = NULL;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return yerr_mark(L, &ev->start_mark, "YAML aliases (*name) are not supported; "
		    "write the value out");
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	default:
		return 0;
	}
	if (anchor != NULL)
		return yerr_mark(L, &ev->start_mark, "YAML anchors (&name) are not supported; "
		    "write each value out");
	if (tag != NULL)
		return yerr_mark(L, &ev->start_mark, "YAML tags (!tag) are not supported");
	return 0;
}

static int yload(struct floader *L, yaml_event_t *ev, int depth, struct ynode *out);

/* Reads the children of a sequence or mapping up to its end event. */
static int
yload_kids(struct floader *L, yaml_event_type_t end, int depth, struct ynode *out)
{
	yaml_event_t ev;
	int rc;

	for (;;) {
		if ((rc = ynext(L, &ev)) < 0)
			return rc;
		if (ev.type == end) {
			yaml_event_delete(&ev);
			return 0;
		}
		out->kids = xreallocarray(out->kids, out->n + 1, sizeof(*out->kids));
		memset(&out->kids[out->n], 0, sizeof(*out->kids));
		rc = yload(L, &ev, depth + 1, &out->kids[out->n++]);
		yaml_event_delete(&ev);
		if (rc < 0)
			return rc;
	}
}

/* Builds the node that starts with ev. */
static int
yload(struct floader *L, yaml_event_t *ev, int depth, struct ynode *out)
{
	int rc;

	if ((rc = ycheck_event(L, ev)) < 0)
		return rc;
	out->line = (int)ev->start_mark.line + 1;
	out->col = (int)ev->start_mark.column + 1;
	if (depth > FLOWS_MAX_DEPTH)
		return yerr_mark(L, &ev->start_mark, "nested too deeply (more than 16 levels)");
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		out->kind = Y_SCALAR;
		out->s = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		out->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		if (strlen(out->s) != ev->data.scalar.length)
			return yerr_mark(L, &ev->start_mark, "NUL characters are not allowed");
		return 0;
	case YAML_SEQUENCE_START_EVENT:
		out->kind = Y_SEQ;
		return yload_kids(L, YAML_SEQUENCE_END_EVENT, depth, out);
	case YAML_MAPPING_START_EVENT:
		out->kind = Y_MAP;
		return yload_kids(L, YAML_MAPPING_END_EVENT, depth, out);
	default:
		return yerr_mark(L, &ev->start_mark, "unexpected YAML event");
	}
}

/* Reads the single document of the stream into root (kind Y_MAP with no
 * kids for an empty file). */
static int
yload_document(struct floader *L, struct ynode *root)
{
	yaml_event_t ev;
	int rc, got = 0;

	root->kind = Y_MAP;
	root->line = root->col = 1;
	for (;;) {
		if ((rc = ynext(L, &ev)) < 0)
			return rc;
		if (ev.type == YAML_STREAM_END_EVENT)
			break;
		if (ev.type == YAML_DOCUMENT_START_EVENT && got++) {
			rc = yerr_mark(L, &ev.start_mark, "only one YAML document is allowed");
		} else if (ev.type == YAML_SCALAR_EVENT || ev.type == YAML_ALIAS_EVENT ||
		    ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
			rc = yload(L, &ev, 1, root);
		yaml_event_delete(&ev);
		if (rc < 0)
			return rc;
	}
	yaml_event_delete(&ev);
	return 0;
}

static int
yis_null(const struct ynode *y)
{
	return y->kind == Y_SCALAR && y->plain && (*y->s == '\0' || strcmp(y->s, "~") == 0 ||
	    strcmp(y->s, "null") == 0 || strcmp(y->s, "Null") == 0 || strcmp(y->s, "NULL") == 0);
}

static int
ystr(struct floader *L, const struct ynode *y, const char *path, char **out)
{
	if (y->kind != Y_SCALAR || yis_null(y)) {
		ferr(L, y->line, y->col, path, "expected a string");
		return -EINVAL;
	}
	str_replace(out, y->s);
	return 0;
}

static int
ybool(struct floader *L, const struct ynode *y, const char *path, int *out)
{
	static const char *const t[] = { "true", "True", "TRUE" }, *const f[] = { "false",
	    "False", "FALSE" };

	for (size_t i = 0; y->kind == Y_SCALAR && y->plain && i < ARRAY_SIZE(t); i++) {
		if (strcmp(y->s, t[i]) == 0 || strcmp(y->s, f[i]) == 0) {
			*out = strcmp(y->s, t[i]) == 0;
			return 0;
		}
	}
	ferr(L, y->line, y->col, path, "expected true or false");
	return -EINVAL;
}

static int
ystrlist(struct floader *L, const struct ynode *y, const char *path, char ***out, size_t *n)
{
	if (y->kind != Y_SEQ || y->n == 0) {
		ferr(L, y->line, y->col, path, y->kind == Y_SEQ ? "expected a list of strings, "
		    "not an empty one" : "expected a list of strings, like [a, b]");
		return -EINVAL;
	}
	for (size_t i = 0; i < y->n; i++)
		if (y->kids[i].kind != Y_SCALAR || yis_null(&y->kids[i])) {
			ferr(L, y->kids[i].line, y->kids[i].col, path, "expected a list of strings");
			return -EINVAL;
		}
	*out = xcalloc(y->n, sizeof(char *));
	for (size_t i = 0; i < y->n; i++)
		(*out)[i] = xstrdup(y->kids[i].s);
	*n = y->n;
	return 0;
}

static int
flows_name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 128)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && strchr("_.-", *p) == NULL)
			return 0;
	return 1;
}

static const char *const flows_placeholders[] = {
	"number", "requester", "verification_id", "action",
};
/* What a placeholder without a value reads as: a word, never "by  after". */
static const char *const flows_missing[] = {
	"(no number)", "(unknown requester)", "(no verification ID)", "(no action)",
};

static int
flows_placeholder(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(flows_placeholders); i++)
		if (strlen(flows_placeholders[i]) == len &&
		    strncmp(flows_placeholders[i], name, len) == 0)
			return (int)i;
	return -1;
}

/* Length of the {name} starting at p, 0 if p does not start one. */
static size_t
flows_brace(const char *p)
{
	size_t n;

	if (*p != '{')
		return 0;
	n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
	return n > 0 && p[n + 1] == '}' ? n + 2 : 0;
}

static int
flows_check_template(struct floader *L, const struct ynode *y, const char *path)
{
	for (const char *p = y->s; *p; p++) {
		size_t n = flows_brace(p);

		if (n == 0 || flows_placeholder(p + 1, n - 2) >= 0)
			continue;
		ferr(L, y->line, y->col, path, "unknown placeholder %.*s; use {number}, "
		    "{requester}, {verification_id} or {action}", (int)n, p);
		return -EINVAL;
	}
	return 0;
}

struct fctx {
	struct floader	*L;
	struct flow	*f;
	const char	*path;		/* flows[3] */
	const struct ynode *node;	/* the flow's mapping */
	const struct ynode *seen[16];	/* value of each key given, by handler index */
};

struct fkey {
	const char	*name;
	void		(*fn)(struct fctx *, const struct ynode *, const char *path);
};

static void
fk_name(struct fctx *x, const struct ynode *y, const char *path)
{
	if (ystr(x->L, y, path, &x->f->name) == 0 && !flows_name_ok(x->f->name)) {
		ferr(x->L, y->line, y->col, path, "must be letters, digits, '_', '.' and '-'");
		str_replace(&x->f->name, NULL);
	}
}

static void
fk_token(struct fctx *x, const struct ynode *y, const char *path, char **out,
    const char *what)
{
	if (ystr(x->L, y, path, out) == 0 && !util_token_ok(*out, ""))
		ferr(x->L, y->line, y->col, path, "must be %s of a-z, 0-9 and _", what);
}

static void
fk_table(struct fctx *x, const struct ynode *y, const char *path)
{
	fk_token(x, y, path, &x->f->table, "a table name");
}

static void
fk_categories(struct fctx *x, const struct ynode *y, const char *path)
{
	ystrlist(x->L, y, path, &x->f->categories, &x->f->ncategories);
}

static void
fk_subcategories(struct fctx *x, const struct ynode *y, const char *path)
{
	ystrlist(x->L, y, path, &x->f->subcategories, &x->f->nsubcategories);
}

static void
fk_query(struct fctx *x, const struct ynode *y, const char *path)
{
	char *cause = NULL;

	if (ystr(x->L, y, path, &x->f->query) < 0)
		return;
	if (*x->f->query == '\0')
		ferr(x->L, y->line, y->col, path, "must not be empty");
	else if (query_compile(x->f->query, &x->f->compiled, &cause) < 0)
		ferr(x->L, y->line, y->col, path, "%s", cause);
	free(cause);
}

static void
fk_action(struct fctx *x, const struct ynode *y, const char *path)
{
	fk_token(x, y, path, &x->f->action, "an action name");
}

static void
fk_automated(struct fctx *x, const struct ynode *y, const char *path)
{
	ybool(x->L, y, path, &x->f->automated);
}

static void
fk_close(struct fctx *x, const struct ynode *y, const char *path)
{
	ybool(x->L, y, path, &x->f->close);
}

static void
fk_close_code(struct fctx *x, const struct ynode *y, const char *path)
{
	ystr(x->L, y, path, &x->f->close_code);
}

static void
fk_close_notes(struct fctx *x, const struct ynode *y, const char *path)
{
	if (ystr(x->L, y, path, &x->f->close_notes) == 0)
		flows_check_template(x->L, y, path);
}

static void
fk_max_age(struct fctx *x, const struct ynode *y, const char *path)
{
	int64_t v;

	if (y->kind != Y_SCALAR || !y->plain || util_parse_duration(y->s, &v) < 0 ||
	    v < FLOWS_MAX_AGE_MIN || v > FLOWS_MAX_AGE_MAX) {
		ferr(x->L, y->line, y->col, path, "expected a duration from 1m to 30d, like 30m, "
		    "1h or 2d");
		return;
	}
	x->f->max_age = v;
}

static void
fk_assignment_group(struct fctx *x, const struct ynode *y, const char *path)
{
	ystr(x->L, y, path, &x->f->on_fail.assignment_group);
	x->f->on_fail.line = y->line;
	x->f->on_fail.col = y->col;
}

static void
fk_priority(struct fctx *x, const struct ynode *y, const char *path)
{
	if (y->kind != Y_SCALAR || !y->plain || strlen(y->s) != 1 || *y->s < '1' || *y->s > '5') {
		ferr(x->L, y->line, y->col, path, "expected a priority from 1 to 5");
		return;
	}
	x->f->on_fail.priority = *y->s - '0';
}

static void
fk_work_note(struct fctx *x, const struct ynode *y, const char *path)
{
	ystr(x->L, y, path, &x->f->on_fail.work_note);
}

/* retry.on: the outcomes a new attempt may follow; failed never does. */
static void
fk_retry_on(struct fctx *x, const struct ynode *y, const char *path)
{
	unsigned on = 0;

	if (y->kind != Y_SEQ) {
		ferr(x->L, y->line, y->col, path, "expected a list, like [timed_out, "
		    "not_enough_questions] ([] for none)");
		return;
	}
	for (size_t i = 0; i < y->n; i++) {
		const struct ynode *k = &y->kids[i];

		if (k->kind == Y_SCALAR && strcmp(k->s, "timed_out") == 0)
			on |= FLOW_RETRY_TIMED_OUT;
		else if (k->kind == Y_SCALAR && strcmp(k->s, "not_enough_questions") == 0)
			on |= FLOW_RETRY_NOT_ENOUGH_QUESTIONS;
		else if (k->kind == Y_SCALAR && (strcmp(k->s, "failed") == 0 ||
		    strcmp(k->s, "high_risk") == 0))
			ferr(x->L, k->line, k->col, path, "%s never starts a new attempt: a new "
			    "link after a failure is what an impersonator wants (see on_fail)", k->s);
		else
			ferr(x->L, k->line, k->col, path, "expected timed_out or "
			    "not_enough_questions");
	}
	x->f->retry.on = on;
}

static void
fk_retry_max(struct fctx *x, const struct ynode *y, const char *path)
{
	if (y->kind != Y_SCALAR || !y->plain || strlen(y->s) != 1 || *y->s < '0' ||
	    *y->s > '0' + FLOW_RETRY_MAX) {
		ferr(x->L, y->line, y->col, path, "expected a number of new attempts from 0 to %d",
		    FLOW_RETRY_MAX);
		return;
	}
	x->f->retry.max = *y->s - '0';
}

static void fk_match(struct fctx *x, const struct ynode *y, const char *path);
static void fk_on_fail(struct fctx *x, const struct ynode *y, const char *path);
static void fk_retry(struct fctx *x, const struct ynode *y, const char *path);

static const struct fkey flow_keys[] = {
	{ "name", fk_name }, { "match", fk_match }, { "action", fk_action },
	{ "automated", fk_automated }, { "close", fk_close }, { "close_code", fk_close_code },
	{ "close_notes", fk_close_notes }, { "max_age", fk_max_age }, { "on_fail", fk_on_fail },
	{ "retry", fk_retry }, { NULL, NULL },
};
static const struct fkey match_keys[] = {
	{ "table", fk_table }, { "categories", fk_categories },
	{ "subcategories", fk_subcategories }, { "query", fk_query }, { NULL, NULL },
};
static const struct fkey on_fail_keys[] = {
	{ "assignment_group", fk_assignment_group }, { "priority", fk_priority },
	{ "work_note", fk_work_note }, { NULL, NULL },
};
static const struct fkey retry_keys[] = {
	{ "on", fk_retry_on }, { "max", fk_retry_max }, { NULL, NULL },
};

static void
fkeys_list(const struct fkey *keys, struct buf *b)
{
	for (const struct fkey *k = keys; k->name; k++)
		buf_addf(b, "%s%s", k == keys ? "" : ", ", k->name);
}

static const struct fkey *
fkeys_find(const struct fkey *keys, const char *name)
{
	for (const struct fkey *k = keys; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* Checks one key: known, not given twice; runs its handler. */
static void
fkeys_one(struct fctx *x, const struct fkey *keys, const struct ynode *key,
    const struct ynode *val, const char *path, const struct ynode **seen)
{
	const struct fkey *k = key->kind == Y_SCALAR ? fkeys_find(keys, key->s) : NULL;
	char *kpath = xprintf("%s.%s", path, key->kind == Y_SCALAR ? key->s : "?");
	struct buf known;

	if (k == NULL) {
		buf_init(&known);
		fkeys_list(keys, &known);
		ferr(x->L, key->line, key->col, kpath, "unknown key; known keys: %s", known.data);
		buf_free(&known);
	} else if (seen[k - keys] != NULL)
		ferr(x->L, key->line, key->col, kpath, "given twice (first at line %d)",
		    seen[k - keys]->line);
	else {
		seen[k - keys] = val;
		k->fn(x, val, kpath);
	}
	free(kpath);
}

static int
fkeys_walk(struct fctx *x, const struct fkey *keys, const struct ynode *map, const char *path,
    const struct ynode **seen)
{
	if (map->kind != Y_MAP) {
		ferr(x->L, map->line, map->col, path, "expected a mapping of key: value");
		return -EINVAL;
	}
	for (size_t i = 0; i + 1 < map->n; i += 2)
		fkeys_one(x, keys, &map->kids[i], &map->kids[i + 1], path, seen);
	return 0;
}

static void
fk_match(struct fctx *x, const struct ynode *y, const char *path)
{
	const struct ynode *seen[ARRAY_SIZE(match_keys)] = { NULL };

	if (fkeys_walk(x, match_keys, y, path, seen) < 0)
		return;
	if (seen[0] == NULL)
		ferr(x->L, y->line, y->col, path, "table is required, e.g. table: incident");
	if (seen[1] == NULL && seen[2] == NULL && seen[3] == NULL)
		ferr(x->L, y->line, y->col, path, "give categories, subcategories or query: "
		    "a flow for a whole table would verify every ticket in it");
}

static void
fk_on_fail(struct fctx *x, const struct ynode *y, const char *path)
{
	const struct ynode *seen[ARRAY_SIZE(on_fail_keys)] = { NULL };

	fkeys_walk(x, on_fail_keys, y, path, seen);
}

static void
fk_retry(struct fctx *x, const struct ynode *y, const char *path)
{
	const struct ynode *seen[ARRAY_SIZE(retry_keys)] = { NULL };

	fkeys_walk(x, retry_keys, y, path, seen);
}

static const struct ynode *
fseen(const struct fctx *x, const char *key)
{
	return x->seen[fkeys_find(flow_keys, key) - flow_keys];
}

/* The rules between keys: automation needs an action and a way to close. */
static void
flow_check_automation(struct fctx *x)
{
	const struct ynode *at = fseen(x, "automated"), *cl = fseen(x, "close");
	const struct flow *f = x->f;
	char *p;

	if (f->automated && strcmp(f->action, "none") == 0) {
		p = xprintf("%s.automated", x->path);
		ferr(x->L, at->line, at->col, p, "needs an action: automated resolution happens "
		    "only when the action has completed");
		free(p);
	}
	if (f->close && !f->automated) {
		p = xprintf("%s.close", x->path);
		ferr(x->L, cl->line, cl->col, p, "needs automated: true");
		free(p);
	}
	if (f->automated && fseen(x, "close_code") == NULL)
		ferr(x->L, x->node->line, x->node->col, x->path, "close_code is required with "
		    "automated: true, e.g. close_code: \"Solution provided\"");
	if (f->automated && fseen(x, "close_notes") == NULL)
		ferr(x->L, x->node->line, x->node->col, x->path, "close_notes is required with "
		    "automated: true");
}

static void
flow_check(struct fctx *x)
{
	if (fseen(x, "name") == NULL)
		ferr(x->L, x->node->line, x->node->col, x->path, "name is required");
	if (fseen(x, "match") == NULL)
		ferr(x->L, x->node->line, x->node->col, x->path, "match is required, e.g. "
		    "match: { table: incident, categories: [password_reset] }");
	flow_check_automation(x);
}

static void
flow_init(struct flow *f, int line)
{
	memset(f, 0, sizeof(*f));
	f->line = line;
	f->action = xstrdup("none");
	f->max_age = FLOWS_MAX_AGE_DEFAULT;
	f->retry.on = FLOW_RETRY_TIMED_OUT | FLOW_RETRY_NOT_ENOUGH_QUESTIONS;
	f->retry.max = 2;
}

static void
flow_free(struct flow *f)
{
	free(f->name);
	free(f->table);
	for (size_t i = 0; i < f->ncategories; i++)
		free(f->categories[i]);
	free(f->categories);
	for (size_t i = 0; i < f->nsubcategories; i++)
		free(f->subcategories[i]);
	free(f->subcategories);
	free(f->query);
	query_free(f->compiled);
	free(f->action);
	free(f->close_code);
	free(f->close_notes);
	free(f->on_fail.assignment_group);
	free(f->on_fail.assignment_group_name);
	free(f->on_fail.work_note);
}

static void
flows_one(struct floader *L, struct flows *fl, const struct ynode *y, size_t i)
{
	struct fctx x;
	char *path = xprintf("flows[%zu]", i);

	memset(&x, 0, sizeof(x));
	x.L = L;
	x.f = &fl->v[fl->n++];
	x.path = path;
	x.node = y;
	flow_init(x.f, y->line);
	if (fkeys_walk(&x, flow_keys, y, path, x.seen) == 0)
		flow_check(&x);
	for (size_t j = 0; x.f->name != NULL && j + 1 < fl->n; j++)
		if (str_eq(fl->v[j].name, x.f->name)) {
			const struct ynode *n = fseen(&x, "name");
			char *p = xprintf("%s.name", path);
			ferr(L, n->line, n->col, p, "flow \"%s\" is defined twice (first at line "
			    "%d); names must be unique", x.f->name, fl->v[j].line);
			free(p);
			break;
		}
	free(path);
}

/* The top level: a mapping with the single key flows, a list. */
static void
flows_root(struct floader *L, const struct ynode *root, struct flows *fl)
{
	const struct ynode *list = NULL;

	if (root->kind != Y_MAP && !yis_null(root)) {
		ferr(L, root->line, root->col, NULL, "expected a mapping with the key flows:");
		return;
	}
	for (size_t i = 0; i + 1 < root->n; i += 2) {
		const struct ynode *k = &root->kids[i];
		if (k->kind == Y_SCALAR && strcmp(k->s, "flows") == 0 && list == NULL)
			list = &root->kids[i + 1];
		else
			ferr(L, k->line, k->col, k->kind == Y_SCALAR ? k->s : "?",
			    list && k->kind == Y_SCALAR && strcmp(k->s, "flows") == 0 ?
			    "given twice" : "unknown key; the top level has only flows:");
	}
	if (list == NULL) {
		ferr(L, root->line, root->col, "flows", "required key missing; see "
		    "imperai-snow-flows(5)");
		return;
	}
	if (list->kind != Y_SEQ && !yis_null(list)) {
		ferr(L, list->line, list->col, "flows", "expected a list of flows");
		return;
	}
	fl->v = xcalloc(list->n ? list->n : 1, sizeof(*fl->v));
	for (size_t i = 0; i < list->n; i++)
		flows_one(L, fl, &list->kids[i], i);
}

int
flows_parse(const char *text, size_t len, const char *name, struct flows **out,
    struct errlist *errs)
{
	struct floader L;
	struct errlist local = { NULL, 0 };
	struct ynode root;
	struct flows *fl = xcalloc(1, sizeof(*fl));
	int rc = -EINVAL;

	memset(&L, 0, sizeof(L));
	memset(&root, 0, sizeof(root));
	L.name = name;
	L.errs = errs ? errs : &local;
	L.nerrs0 = L.errs->n;
	fl->path = xstrdup(name);
	*out = NULL;
	if (len > FLOWS_MAX_SIZE) {
		ferr(&L, 1, 1, NULL, "larger than 1 MiB; a policy is a few dozen flows");
		goto out;
	}
	if (!yaml_parser_initialize(&L.parser))
		abort();
	yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
	if (yload_document(&L, &root) == 0)
		flows_root(&L, &root, fl);
	yaml_parser_delete(&L.parser);
	if (L.errs->n == L.nerrs0) {
		*out = fl;
		fl = NULL;
		rc = 0;
	}
out:
	ynode_free(&root);
	flows_free(fl);
	errlist_free(&local);
	return rc;
}

/* A file refused for its kind or size is placed at 1:1, like a parse error. */
static int
flows_read(const char *path, char **text, size_t *len, struct errlist *errs)
{
	char *cause = NULL;
	int rc;

	if ((rc = util_read_file(path, FLOWS_MAX_SIZE, text, len, &cause)) < 0) {
		errlist_add(errs, "%s%s: %s", path, rc == -EFBIG || rc == -EINVAL ? ":1:1" : "",
		    cause);
		free(cause);
	}
	return rc;
}

int
flows_load(const char *path, struct flows **out, struct errlist *errs)
{
	struct errlist local = { NULL, 0 };
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = flows_read(path, &text, &len, errs ? errs : &local);
	if (rc == 0)
		rc = flows_parse(text, len, path, out, errs);
	free(text);
	errlist_free(&local);
	return rc;
}

void
flows_free(struct flows *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		flow_free(&f->v[i]);
	free(f->v);
	free(f->path);
	free(f);
}

/* The record's value of a field, NULL when absent (or no record). */
static const char *
flows_get(const struct snow_record *r, const char *name)
{
	return r != NULL ? snow_record_get(r, name) : NULL;
}

static int
flows_in(char *const *list, size_t n, const char *v)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		if (strcmp(list[i], v) == 0)
			return 1;
	return 0;
}

static int
flow_matches(const struct flow *f, const char *table, const struct snow_record *r)
{
	if (!str_eq(f->table, table))
		return 0;
	if (f->ncategories && !flows_in(f->categories, f->ncategories, flows_get(r, "category")))
		return 0;
	if (f->nsubcategories &&
	    !flows_in(f->subcategories, f->nsubcategories, flows_get(r, "subcategory")))
		return 0;
	return f->compiled == NULL || query_eval(f->compiled, r);
}

const struct flow *
flows_match(const struct flows *f, const char *table, const struct snow_record *r)
{
	for (size_t i = 0; f != NULL && i < f->n; i++)
		if (flow_matches(&f->v[i], table, r))
			return &f->v[i];
	return NULL;
}

const struct flow *
flows_find(const struct flows *f, const char *name)
{
	for (size_t i = 0; f != NULL && i < f->n; i++)
		if (str_eq(f->v[i].name, name))
			return &f->v[i];
	return NULL;
}

static void
flows_add_name(char ***names, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0)
			return;
	*names = xreallocarray(*names, *n + 1, sizeof(**names));
	(*names)[(*n)++] = xstrdup(name);
}

void
flows_fields(const struct flows *f, const char *table, char ***names, size_t *n)
{
	for (size_t i = 0; f != NULL && i < f->n; i++) {
		const struct flow *fl = &f->v[i];

		if (!str_eq(fl->table, table))
			continue;
		if (fl->ncategories)
			flows_add_name(names, n, "category");
		if (fl->nsubcategories)
			flows_add_name(names, n, "subcategory");
		if (fl->compiled)
			query_fields(fl->compiled, names, n);
	}
}

char *
flows_expand(const char *tmpl, const char *number, const char *requester,
    const char *verification_id, const char *action)
{
	const char *vals[] = { number, requester, verification_id, action };
	struct buf b;

	_Static_assert(ARRAY_SIZE(vals) == ARRAY_SIZE(flows_placeholders), "one value each");
	buf_init(&b);
	for (const char *p = tmpl ? tmpl : ""; *p; p++) {
		size_t n = flows_brace(p);
		int i = n ? flows_placeholder(p + 1, n - 2) : -1;

		if (i < 0) {
			buf_addc(&b, *p);
			continue;
		}
		buf_adds(&b, vals[i] && *vals[i] ? vals[i] : flows_missing[i]);
		p += n - 1;
	}
	return buf_detach(&b);
}
