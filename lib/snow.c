/* snow: being written (see lib/snow.h). */
