/* sha256: being written (see lib/sha256.h). */
