/* Hosted systems: the C library's heap. */
#include <stdlib.h>

#include "ie_port.h"

void *ie_port_calloc(size_t bytes) { return calloc(1, bytes); }
void ie_port_free(void *p) { free(p); }
