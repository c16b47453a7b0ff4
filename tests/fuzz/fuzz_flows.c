/* Fuzzes the verification policy: the flows YAML parser with matching of
 * fixed records, the encoded-query compiler and evaluator, and template
 * expansion.  The same input feeds all three. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flows.h"
#include "fuzz.h"
#include "query.h"
#include "record.h"

static const char *const records[][2 * 6] = {
	{ "category", "password_reset", "subcategory", "account", "priority", "2",
	  "state", "1", "caller_id", "681ccaf9c0a8016400b98a06818d57c7",
	  "short_description", "Reset my password" },
	{ "category", "hardware", "subcategory", "", "priority", "5",
	  "state", "7", "assignment_group", "", "short_description",
	  "Caf\xc3\xa9 \xe2\x80\x94 printer LIKE ^OR ^NQ" },
};

static void
make_record(struct snow_record *r, size_t k)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->sys_id, k == 0 ? "9d385017c611228701d22104cc95c371" :
	    "46d44a23a9fe19810012d100cca80666");
	r->mod_count = (int64_t)k + 3;
	r->updated_on = 1700000000 + (int64_t)k;
	for (size_t i = 0; i < ARRAY_SIZE(records[k]); i += 2)
		snow_record_set(r, records[k][i], records[k][i + 1]);
}

static void
free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Whatever matches must be one of the parsed flows and of the table. */
static void
fuzz_flows_file(const char *text, size_t len, struct snow_record *recs, size_t nrecs)
{
	struct flows *f = NULL;
	struct errlist errs = { 0 };
	char **names = NULL;
	size_t n = 0;

	if (flows_parse(text, len, "fuzz.yaml", &f, &errs) != 0) {
		if (errs.n == 0)
			fuzz_fail("flows_parse failed without saying why", NULL);
		goto out;
	}
	for (size_t i = 0; i < nrecs; i++) {
		const struct flow *m = flows_match(f, "incident", &recs[i]);

		if (m != NULL && (m < f->v || m >= f->v + f->n))
			fuzz_fail("flows_match returned a flow outside the set", NULL);
		if (m != NULL && m->table != NULL && strcmp(m->table, "incident") != 0)
			fuzz_fail("flows_match returned a flow of another table", m->table);
		(void)flows_match(f, "sc_req_item", &recs[i]);
	}
	for (size_t i = 0; i < f->n; i++)
		if (f->v[i].name != NULL && flows_find(f, f->v[i].name) == NULL)
			fuzz_fail("flows_find misses a parsed flow", f->v[i].name);
	flows_fields(f, "incident", &names, &n);
	free_names(names, n);
out:
	flows_free(f);
	errlist_free(&errs);
}

static void
fuzz_query(const char *q, struct snow_record *recs, size_t nrecs)
{
	struct query *c = NULL;
	char *cause = NULL, **names = NULL;
	size_t n = 0;

	if (query_compile(q, &c, &cause) != 0) {
		if (cause == NULL)
			fuzz_fail("query_compile failed without a cause", q);
		goto out;
	}
	for (size_t i = 0; i < nrecs; i++)
		(void)query_eval(c, &recs[i]);
	query_fields(c, &names, &n);
	free_names(names, n);
out:
	query_free(c);
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snow_record recs[ARRAY_SIZE(records)];
	char *text = fuzz_cstr(data, size);

	for (size_t k = 0; k < ARRAY_SIZE(recs); k++)
		make_record(&recs[k], k);
	fuzz_flows_file(text, size, recs, ARRAY_SIZE(recs));
	fuzz_query(text, recs, ARRAY_SIZE(recs));
	free(flows_expand(text, "INC0010001", "Abel Tuter", "vr_81", "password_reset"));
	for (size_t k = 0; k < ARRAY_SIZE(recs); k++)
		snow_record_free(&recs[k]);
	free(text);
	return 0;
}
