/* http: being written (see lib/http.h). */
