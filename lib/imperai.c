/* imperai: being written (see lib/imperai.h). */
