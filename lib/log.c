/* log: being written (see lib/log.h). */
