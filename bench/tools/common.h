/* What the file-system probes (fileceil.c, flushfloor.c) share: a monotonic clock in seconds, and
 * giving up with the failing call's errno. Each tool is still one file for the compiler: the header
 * sits beside them and is found by its quoted include. */
#ifndef PAYHOOK_BENCH_COMMON_H
#define PAYHOOK_BENCH_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void fail(const char *what) {
    perror(what);
    exit(1);
}
#endif
