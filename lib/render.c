/* render: being written (see lib/render.h). */
