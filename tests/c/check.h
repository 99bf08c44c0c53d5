/* Minimal test harness: CHECK records a failure and goes on; main returns the count. */
#ifndef IE_CHECK_H
#define IE_CHECK_H
#include <stdio.h>
static int check_failures;
static int check_count;
#define CHECK(cond) do { check_count++; if (!(cond)) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_DONE() (printf("%d checks, %d failed\n", check_count, check_failures), check_failures != 0)
#endif
