/* Hosted systems: the C library's heap, and the calling thread's CPU-time clock where POSIX has
 * one (a profile then reads the work done, not the time spent waiting for a core on a shared
 * machine), else the monotonic clock. */
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
#if defined(CLOCK_THREAD_CPUTIME_ID)
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0) return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
#endif
    if (clock_gettime(CLOCK_MONOTONIC, &t) == 0) return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
#endif
    return 0;
}
