/* What the runtime asks of the platform. A new chip plugs in by providing these functions in
 * one file (see port_stdlib.c for hosted systems, port_none.c for bare metal). */
#ifndef IE_PORT_H
#define IE_PORT_H

#include <stddef.h>

/* Zeroed memory for a model handle or a session arena when the caller gave none; NULL when the
 * platform has no heap (then only ie_model_load_into and caller arenas work). */
void *ie_port_calloc(size_t bytes);
void ie_port_free(void *p);

/* A monotonic clock in nanoseconds, read only while a session profiles itself (ie_test_profile);
 * 0 where the platform has none (then every profile reads 0). */
unsigned long long ie_port_clock_ns(void);

#endif
