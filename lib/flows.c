/* flows: being written (see lib/flows.h). */
