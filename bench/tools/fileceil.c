/*
 * fileceil: how many durable small files per second this file system takes, the ceiling any
 * durable spool on it works under.
 *
 *   fileceil DIR SECONDS BATCH THREADS
 *
 * Two measurements, SECONDS each, in fresh subfolders of DIR (left in place: deleting many files
 * on this machine's ext4 slows file creation for minutes, so run.py deletes them at the end):
 *   single:  one file at a time: write 1 KiB, fsync, rename into place, fsync the directory
 *   batched: THREADS threads, each writing BATCH files (write, fsync each), renaming them all,
 *            then one fsync of the directory: what a group-committing writer could reach
 *   concurrent: 32 threads, each writing one file at a time (write, fsync) and nothing else: how
 *            many file fsyncs the device completes when many writers wait at once, as payhook's
 *            listener threads do, and how long each one waits
 * Prints "single FILES_PER_S", "batched FILES_PER_S", "concurrent FILES_PER_S", and the latency
 * percentiles of the fsync calls in milliseconds: "single_file_fsync_p50_ms X", "..._p99_ms",
 * "single_dir_fsync_p50_ms", "..._p99_ms", "concurrent_fsync_p50_ms", "..._p99_ms". A durable
 * store needs several flushes one after the other, so these bound its latency from below.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static const char *base;
static double seconds;
static int batch, nthreads;
static char payload[1024];

/* Fsync latencies in seconds, appended by whoever measures them (one list per measurement). */
typedef struct {
    double *values;
    long count, capacity;
    pthread_mutex_t lock;
} samples_t;

static samples_t file_fsyncs = {.lock = PTHREAD_MUTEX_INITIALIZER};
static samples_t dir_fsyncs = {.lock = PTHREAD_MUTEX_INITIALIZER};
static samples_t concurrent_fsyncs = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record(samples_t *s, double value) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    if (s->count == s->capacity) {
        s->capacity = s->capacity ? 2 * s->capacity : 4096;
        s->values = realloc(s->values, s->capacity * sizeof *s->values);
        if (!s->values) fail("realloc");
    }
    s->values[s->count++] = value;
    pthread_mutex_unlock(&s->lock);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_percentiles(const char *name, samples_t *s) {
    if (s->count == 0) return;
    qsort(s->values, s->count, sizeof *s->values, by_value);
    printf("%s_p50_ms %.3f\n", name, 1000 * s->values[s->count / 2]);
    printf("%s_p99_ms %.3f\n", name, 1000 * s->values[(long)(0.99 * (s->count - 1))]);
}

static void timed_fsync(int fd, samples_t *s, const char *what) {
    double started = now_s();
    if (fsync(fd) < 0) fail(what);
    record(s, now_s() - started);
}

static void write_file_timed(const char *path, samples_t *s) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail(path);
    if (write(fd, payload, sizeof payload) != (ssize_t)sizeof payload) fail("write");
    timed_fsync(fd, s, "fsync");
    close(fd);
}

static void write_file(const char *path) {
    write_file_timed(path, NULL);
}

static void sync_dir(int dfd) {
    if (fsync(dfd) < 0) fail("fsync dir");
}

typedef struct {
    int id;
    char dir[4096];
    long files;
    double until;
} job_t;

static void *batched(void *arg) {
    job_t *j = arg;
    char tmp[4200], dst[4200];
    int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail(j->dir);
    long n = 0;
    while (now_s() < j->until) {
        for (int b = 0; b < batch; b++) {
            snprintf(tmp, sizeof tmp, "%s/.t%d.%ld", j->dir, j->id, n + b);
            write_file(tmp);
        }
        for (int b = 0; b < batch; b++) {
            snprintf(tmp, sizeof tmp, "%s/.t%d.%ld", j->dir, j->id, n + b);
            snprintf(dst, sizeof dst, "%s/%d.%ld", j->dir, j->id, n + b);
            if (rename(tmp, dst) < 0) fail("rename");
        }
        sync_dir(dfd);
        n += batch;
    }
    close(dfd);
    j->files = n;
    return NULL;
}

/* One of the concurrent writers: a file at a time, each fsynced, nothing shared. */
static void *concurrent(void *arg) {
    job_t *j = arg;
    char path[4200];
    long n = 0;
    while (now_s() < j->until) {
        snprintf(path, sizeof path, "%s/%d.%ld", j->dir, j->id, n++);
        write_file_timed(path, &concurrent_fsyncs);
    }
    j->files = n;
    return NULL;
}

/* Runs `count` threads of `body` for `seconds` in a new directory `dir`; returns files per second. */
static double run_writers(const char *dir, int count, void *(*body)(void *)) {
    if (mkdir(dir, 0755) < 0) fail(dir);
    job_t *jobs = calloc(count, sizeof *jobs);
    pthread_t *tids = calloc(count, sizeof *tids);
    if (!jobs || !tids) fail("calloc");
    double start = now_s();
    for (int t = 0; t < count; t++) {
        jobs[t].id = t;
        jobs[t].until = start + seconds;
        snprintf(jobs[t].dir, sizeof jobs[t].dir, "%s", dir);
        if (pthread_create(&tids[t], NULL, body, &jobs[t])) fail("pthread_create");
    }
    long total = 0;
    for (int t = 0; t < count; t++) {
        pthread_join(tids[t], NULL);
        total += jobs[t].files;
    }
    free(jobs);
    free(tids);
    return total / (now_s() - start);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: fileceil DIR SECONDS BATCH THREADS\n");
        return 2;
    }
    base = argv[1];
    seconds = atof(argv[2]);
    batch = atoi(argv[3]);
    nthreads = atoi(argv[4]);
    if (seconds <= 0 || seconds > 60 || batch < 1 || nthreads < 1 || nthreads > 64) return 2;
    memset(payload, 'x', sizeof payload);

    char dir[4096], tmp[4200], dst[4200];
    snprintf(dir, sizeof dir, "%s/single", base);
    if (mkdir(dir, 0755) < 0) fail(dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail(dir);
    double start = now_s(), until = start + seconds;
    long n = 0;
    while (now_s() < until) {
        snprintf(tmp, sizeof tmp, "%s/.t%ld", dir, n);
        snprintf(dst, sizeof dst, "%s/%ld", dir, n);
        write_file_timed(tmp, &file_fsyncs);
        if (rename(tmp, dst) < 0) fail("rename");
        timed_fsync(dfd, &dir_fsyncs, "fsync dir");
        n++;
    }
    close(dfd);
    printf("single %.0f\n", n / (now_s() - start));

    snprintf(dir, sizeof dir, "%s/batched", base);
    printf("batched %.0f\n", run_writers(dir, nthreads, batched));
    enum { CONCURRENT_WRITERS = 32 };
    snprintf(dir, sizeof dir, "%s/concurrent", base);
    printf("concurrent %.0f\n", run_writers(dir, CONCURRENT_WRITERS, concurrent));
    print_percentiles("single_file_fsync", &file_fsyncs);
    print_percentiles("single_dir_fsync", &dir_fsyncs);
    print_percentiles("concurrent_fsync", &concurrent_fsyncs);
    return 0;
}
