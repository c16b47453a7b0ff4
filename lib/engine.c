/* engine: being written (see lib/engine.h). */
