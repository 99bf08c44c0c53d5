/* What the runtime asks of the platform. A new chip plugs in by providing these functions in
 * one file (see port_stdlib.c for hosted systems, port_none.c for bare metal). */
#ifndef IE_PORT_H
#define IE_PORT_H

#include <stddef.h>

/* Zeroed memory for a model handle or a session arena when the caller gave none; NULL when the
 * platform has no heap (then only ie_model_load_into and caller arenas work). */
void *ie_port_calloc(size_t bytes);
void ie_port_free(void *p);

#endif
