/* Records built by hand for the tests of the flows and the query
 * language (test_flows.c, test_query.c). */
#ifndef IMPERAI_TESTREC_H
#define IMPERAI_TESTREC_H

#include "record.h"

/* A record of name, value pairs ended by NULL; free with rec_free. */
struct snow_record *rec(const char *name, ...);
void rec_free(struct snow_record *r);

#endif
