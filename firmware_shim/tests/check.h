/* check.h: a minimal test harness: CHECK records a failure and keeps going, so one run
 * reports every broken expectation; main returns non-zero if any failed. */
#ifndef FLEETNODE_CHECK_H
#define FLEETNODE_CHECK_H

#include <stdio.h>

extern int check_failures;
extern int check_count;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        check_count++;                                                                \
        if (!(cond)) {                                                                \
            check_failures++;                                                         \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, #cond); \
        }                                                                             \
    } while (0)

typedef void (*test_fn)(void);
typedef struct {
    const char *name;
    test_fn fn;
} test_case_t;

void run_core_tests(void);
void run_candump_tests(void);
void run_case(const char *name, test_fn fn);

#define RUN(fn) run_case(#fn, fn)

#endif
