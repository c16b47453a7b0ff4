/* query: being written (see lib/query.h). */
