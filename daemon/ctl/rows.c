/* ctl-rows: the rows of `imperai-snowctl list`: their vocabulary
 * (status and risk names), filters, order and the three output formats.
 * Pure: the rows are built from the store by list.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"
#include "util.h"

/* Indexed by enum imperai_status: the wire name and the agents' label. */
static const struct {
	const char	*name;
	const char	*label;
} ctl_statuses[] = {
	[IMPERAI_PENDING] = { "pending", "Pending" },
	[IMPERAI_LINK_SENT] = { "link_sent", "Link sent" },
	[IMPERAI_IN_PROGRESS] = { "in_progress", "In progress" },
	[IMPERAI_PASSED] = { "passed", "Passed" },
	[IMPERAI_FAILED] = { "failed", "Failed" },
	[IMPERAI_TIMED_OUT] = { "timed_out", "Timed out" },
	[IMPERAI_NOT_ENOUGH_QUESTIONS] = { "not_enough_questions", "Not enough questions" },
	[IMPERAI_CANCELED] = { "canceled", "Canceled" },
};

static const struct {
	const char	*name;
	const char	*label;
} ctl_risks[] = {
	[IMPERAI_RISK_UNKNOWN] = { NULL, "-" },
	[IMPERAI_RISK_VERIFIED] = { "verified", "Verified" },
	[IMPERAI_RISK_MEDIUM] = { "medium", "Medium" },
	[IMPERAI_RISK_HIGH] = { "high", "High" },
};

void
ctl_row_free(struct ctl_row *r)
{
	free(r->ticket);
	free(r->table);
	free(r->sys_id);
	free(r->requester);
	free(r->email);
	free(r->category);
	free(r->initiated_by);
	free(r->verification_id);
	free(r->state);
	memset(r, 0, sizeof(*r));
}

void
ctl_rows_free(struct ctl_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ctl_row_free(&v[i]);
	free(v);
}

const char *
ctl_status_label(int status)
{
	if (status < 0 || (size_t)status >= ARRAY_SIZE(ctl_statuses))
		return "-";
	return ctl_statuses[status].label;
}

const char *
ctl_status_name(int status)
{
	if (status < 0 || (size_t)status >= ARRAY_SIZE(ctl_statuses))
		return NULL;
	return ctl_statuses[status].name;
}

int
ctl_status_parse(const char *s, int *out)
{
	char *n = ctl_normalize(s), *l;
	int rc = -EINVAL;

	for (size_t i = 0; i < ARRAY_SIZE(ctl_statuses) && rc != 0; i++) {
		l = ctl_normalize(ctl_statuses[i].label);
		if (strcmp(n, ctl_statuses[i].name) == 0 || strcmp(n, l) == 0) {
			*out = (int)i;
			rc = 0;
		}
		free(l);
	}
	free(n);
	return rc;
}

const char *
ctl_risk_label(enum imperai_risk r)
{
	return (size_t)r < ARRAY_SIZE(ctl_risks) ? ctl_risks[r].label : "-";
}

const char *
ctl_risk_name(enum imperai_risk r)
{
	return (size_t)r < ARRAY_SIZE(ctl_risks) ? ctl_risks[r].name : NULL;
}

int
ctl_risk_parse(const char *s, enum imperai_risk *out)
{
	for (size_t i = 1; i < ARRAY_SIZE(ctl_risks); i++) {
		if (strcasecmp(s, ctl_risks[i].name) == 0) {
			*out = (enum imperai_risk)i;
			return 0;
		}
	}
	if (strcasecmp(s, "unknown") == 0 || strcmp(s, "-") == 0) {
		*out = IMPERAI_RISK_UNKNOWN;
		return 0;
	}
	return -EINVAL;
}

/* Calls fn for each non-empty item of a comma list; stops at an error. */
static int
ctl_each_item(const char *list, int (*fn)(const char *item, void *arg), void *arg)
{
	char *copy = xstrdup(list), *save = NULL, *item;
	int rc = 0;

	for (item = strtok_r(copy, ",", &save); item && rc == 0; item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		if (*item != '\0')
			rc = fn(item, arg);
	}
	free(copy);
	return rc;
}

static int
ctl_add_status(const char *item, void *arg)
{
	struct ctl_filter *f = arg;
	int s;

	if (ctl_status_parse(item, &s) < 0)
		return -EINVAL;
	f->status_mask |= 1u << (s + 1);
	return 0;
}

int
ctl_filter_status(struct ctl_filter *f, const char *list, char **cause)
{
	struct buf b;

	if (ctl_each_item(list, ctl_add_status, f) == 0)
		return 0;
	buf_init(&b);
	for (size_t i = 0; i < ARRAY_SIZE(ctl_statuses); i++)
		buf_addf(&b, "%s%s", i ? ", " : "", ctl_statuses[i].name);
	*cause = xprintf("--status: unknown status in \"%s\"; one of %s", list, b.data);
	buf_free(&b);
	return -EINVAL;
}

static int
ctl_add_risk(const char *item, void *arg)
{
	struct ctl_filter *f = arg;
	enum imperai_risk r;

	if (ctl_risk_parse(item, &r) < 0)
		return -EINVAL;
	f->risk_mask |= 1u << r;
	return 0;
}

int
ctl_filter_risk(struct ctl_filter *f, const char *list, char **cause)
{
	if (ctl_each_item(list, ctl_add_risk, f) == 0)
		return 0;
	*cause = xprintf("--risk: unknown risk level in \"%s\"; one of verified, medium, high, "
	    "unknown", list);
	return -EINVAL;
}

static int
ctl_add_category(const char *item, void *arg)
{
	struct ctl_filter *f = arg;

	f->categories = xreallocarray(f->categories, f->ncategories + 1, sizeof(*f->categories));
	f->categories[f->ncategories++] = xstrdup(item);
	return 0;
}

void
ctl_filter_category(struct ctl_filter *f, const char *list)
{
	ctl_each_item(list, ctl_add_category, f);
}

void
ctl_filter_free(struct ctl_filter *f)
{
	for (size_t i = 0; i < f->ncategories; i++)
		free(f->categories[i]);
	free(f->categories);
	free(f->agent);
	free(f->ticket);
	memset(f, 0, sizeof(*f));
}

static int
ctl_contains_nocase(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; hay && *hay; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return 1;
	return n == 0;
}

static int
ctl_category_matches(const struct ctl_filter *f, const char *category)
{
	if (f->ncategories == 0)
		return 1;
	for (size_t i = 0; i < f->ncategories; i++)
		if (category && strcasecmp(category, f->categories[i]) == 0)
			return 1;
	return 0;
}

int
ctl_row_matches(const struct ctl_filter *f, const struct ctl_row *r)
{
	if (f->status_mask && !(f->status_mask & (1u << (r->status + 1))))
		return 0;
	if (f->risk_mask && !(f->risk_mask & (1u << r->risk)))
		return 0;
	if (!ctl_category_matches(f, r->category))
		return 0;
	if (f->agent && !ctl_contains_nocase(r->initiated_by, f->agent))
		return 0;
	if (f->ticket && (r->ticket == NULL || strcasecmp(r->ticket, f->ticket) != 0))
		return 0;
	if (f->since && r->time < f->since)
		return 0;
	if (f->until && r->time > f->until)
		return 0;
	return 1;
}

int
ctl_sort_parse(const char *s, enum ctl_sort *out)
{
	static const char *names[] = { "time", "ticket", "risk", "status" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum ctl_sort)i;
			return 0;
		}
	}
	return -EINVAL;
}

static enum ctl_sort ctl_sort_key;
static int ctl_sort_reverse;

static int
ctl_cmp_int64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

/* Unknown risk sorts after every known one. */
static int
ctl_risk_rank(enum imperai_risk r)
{
	return r == IMPERAI_RISK_UNKNOWN ? 0 : (int)r;
}

static int
ctl_row_cmp(const void *pa, const void *pb)
{
	const struct ctl_row *a = pa, *b = pb;
	int d = 0;

	switch (ctl_sort_key) {
	case CTL_SORT_TICKET:
		d = strcmp(a->ticket ? a->ticket : "", b->ticket ? b->ticket : "");
		break;
	case CTL_SORT_RISK:
		d = ctl_risk_rank(b->risk) - ctl_risk_rank(a->risk);
		if (d == 0)
			d = b->risk_score - a->risk_score;
		break;
	case CTL_SORT_STATUS:
		d = a->status - b->status;
		break;
	case CTL_SORT_TIME:
		break;
	}
	if (d == 0)
		d = ctl_cmp_int64(b->time, a->time);
	if (d == 0)
		d = strcmp(a->verification_id ? a->verification_id : "",
		    b->verification_id ? b->verification_id : "");
	return ctl_sort_reverse ? -d : d;
}

void
ctl_rows_sort(struct ctl_row *v, size_t n, enum ctl_sort key, int reverse)
{
	ctl_sort_key = key;
	ctl_sort_reverse = reverse;
	if (n > 1)
		qsort(v, n, sizeof(*v), ctl_row_cmp);
}

static const char *const ctl_list_head[] = { "TICKET", "REQUESTER", "EMAIL", "RISK", "STATUS",
	"CATEGORY", "INITIATED BY", "TIME" };
static const size_t ctl_list_max[] = { 0, 24, 28, 0, 0, 20, 20, 0 };
#define CTL_LIST_COLS ARRAY_SIZE(ctl_list_head)

static const char *
ctl_dash(const char *s)
{
	return s && *s ? s : "-";
}

/* The row's cells as shown in the table and in CSV. */
static void
ctl_row_cells(const struct ctl_row *r, char **cells)
{
	char when[17];

	ctl_format_minute(r->time, when);
	cells[0] = xstrdup(ctl_dash(r->ticket));
	cells[1] = xstrdup(ctl_dash(r->requester));
	cells[2] = xstrdup(ctl_dash(r->email));
	cells[3] = xstrdup(ctl_risk_label(r->risk));
	cells[4] = xstrdup(ctl_status_label(r->status));
	cells[5] = xstrdup(ctl_dash(r->category));
	cells[6] = xstrdup(ctl_dash(r->initiated_by));
	cells[7] = xstrdup(when);
}

static const char *
ctl_status_colour(int status)
{
	switch (status) {
	case IMPERAI_PASSED:
		return CTL_GREEN;
	case IMPERAI_FAILED:
		return CTL_RED;
	case IMPERAI_TIMED_OUT:
	case IMPERAI_NOT_ENOUGH_QUESTIONS:
		return CTL_YELLOW;
	default:
		return NULL;
	}
}

static const char *
ctl_risk_colour(enum imperai_risk r)
{
	return r == IMPERAI_RISK_VERIFIED ? CTL_GREEN : r == IMPERAI_RISK_MEDIUM ? CTL_YELLOW :
	    r == IMPERAI_RISK_HIGH ? CTL_RED : NULL;
}

static void
ctl_rows_table(FILE *f, const struct ctl_row *v, size_t n, int colour)
{
	char **cells = xcalloc(n * CTL_LIST_COLS + 1, sizeof(*cells));
	const char **colours = xcalloc(n * CTL_LIST_COLS + 1, sizeof(*colours));
	struct ctl_table t = { CTL_LIST_COLS, ctl_list_head, ctl_list_max, cells, colours, n };

	for (size_t i = 0; i < n; i++) {
		ctl_row_cells(&v[i], cells + i * CTL_LIST_COLS);
		colours[i * CTL_LIST_COLS + 3] = ctl_risk_colour(v[i].risk);
		colours[i * CTL_LIST_COLS + 4] = ctl_status_colour(v[i].status);
	}
	ctl_table_print(f, &t, colour);
	for (size_t i = 0; i < n * CTL_LIST_COLS; i++)
		free(cells[i]);
	free(cells);
	free(colours);
}

static void
ctl_rows_csv(FILE *f, const struct ctl_row *v, size_t n)
{
	char *cells[CTL_LIST_COLS];
	struct buf b;

	buf_init(&b);
	ctl_csv_record(&b, ctl_list_head, CTL_LIST_COLS);
	for (size_t i = 0; i < n; i++) {
		ctl_row_cells(&v[i], cells);
		ctl_csv_record(&b, (const char *const *)cells, CTL_LIST_COLS);
		for (size_t k = 0; k < CTL_LIST_COLS; k++)
			free(cells[k]);
	}
	fwrite(b.data, 1, b.len, f);
	buf_free(&b);
}

json_object *
ctl_row_json(const struct ctl_row *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ticket", ctl_json_str(r->ticket));
	json_object_object_add(o, "table", ctl_json_str(r->table));
	json_object_object_add(o, "sys_id", ctl_json_str(r->sys_id));
	json_object_object_add(o, "requester", ctl_json_str(r->requester));
	json_object_object_add(o, "email", ctl_json_str(r->email));
	json_object_object_add(o, "risk_level", ctl_json_str(ctl_risk_name(r->risk)));
	json_object_object_add(o, "risk_score",
	    r->risk_score >= 0 ? json_object_new_int(r->risk_score) : NULL);
	json_object_object_add(o, "status", ctl_json_str(ctl_status_name(r->status)));
	json_object_object_add(o, "category", ctl_json_str(r->category));
	json_object_object_add(o, "initiated_by", ctl_json_str(r->initiated_by));
	json_object_object_add(o, "time", ctl_json_time(r->time));
	json_object_object_add(o, "verification_id", ctl_json_str(r->verification_id));
	json_object_object_add(o, "state", ctl_json_str(r->state));
	return o;
}

static void
ctl_rows_json(FILE *f, const struct ctl_row *v, size_t n)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, ctl_row_json(&v[i]));
	fprintf(f, "%s\n", json_object_to_json_string_ext(a,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(a);
}

void
ctl_rows_print(FILE *f, const struct ctl_row *v, size_t n, enum ctl_format fmt, int colour)
{
	switch (fmt) {
	case CTL_FMT_TABLE:
		ctl_rows_table(f, v, n, colour);
		break;
	case CTL_FMT_JSON:
		ctl_rows_json(f, v, n);
		break;
	case CTL_FMT_CSV:
		ctl_rows_csv(f, v, n);
		break;
	}
}
