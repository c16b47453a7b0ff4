/* store: being written (see lib/store.h). */
