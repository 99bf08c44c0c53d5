/* Hosted systems: the C library's heap, and the POSIX monotonic clock where there is one (a
 * thread's CPU-time clock would ignore time spent waiting for a core, but it is a system call:
 * 3 us a reading here against 0.1 us, which distorts a profile of fine-grained work). */
#if defined(__unix__) || defined(__APPLE__)
#define _POSIX_C_SOURCE 199309L
#include <time.h>
#endif
#include <stdlib.h>

#include "ie_port.h"

void *ie_port_calloc(size_t bytes) { return calloc(1, bytes); }
void ie_port_free(void *p) { free(p); }

unsigned long long ie_port_clock_ns(void) {
#if defined(__unix__) || defined(__APPLE__)
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) == 0) return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
#endif
    return 0;
}
