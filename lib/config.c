/* config: being written (see lib/config.h). */
