/*
 * flushfloor: the latency of a durable store's flushes alone, at a fixed rate, with no HTTP, no
 * parsing and no signature: the floor under the fixed-rate p99 of bench/run.py.
 *
 *   flushfloor [-p] DIR RATE SECONDS WORKERS [BURN]
 *
 * In DIR (which must not exist; it is left in place, as fileceil's files are), events are offered
 * at RATE per second for SECONDS, open loop: event i is due at start + i/RATE whatever happened to
 * the ones before it. Each event goes through the steps of docs/durability.md §3.1, in the same
 * order and with the same sharing as the spool's group commit (§5):
 *   a worker (one of WORKERS) writes 1 KiB to an unnamed file (O_TMPFILE in DIR/tmp) and fsyncs it;
 *   one committer takes every file pending, links each into DIR/new, fsyncs DIR/new, links each
 *   into DIR/ids, fsyncs DIR/ids, and only then counts them done.
 * With -p the two directory flushes are pipelined instead: the committer links a batch into DIR/new,
 * fsyncs DIR/new and hands the batch to a second committer, which links it into DIR/ids and fsyncs
 * DIR/ids while the first already takes the next batch. That is the most overlap the order of
 * docs/durability.md §5 allows (an entry in ids/ only after its new/ entry is durable); the spool
 * does not do it, since it measured no better (bench/README.md, "What the order of flushes allows").
 * An event's latency runs from its due time to the end of its batch's fsync of DIR/ids, so a late
 * start counts against it (no coordinated omission). Prints "achieved_rate X" and the latency
 * percentiles in ms ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"), and "driver_max_lag_ms":
 * how far this program's own timer woke behind the schedule, which is how long the machine did
 * not run it at all.
 *
 * RATE 0 makes it a closed loop instead, as the benchmark's wrk runs are: each of the WORKERS
 * writes its event, waits until that event's batch is durable, and only then starts the next, so
 * WORKERS events are in flight at any time; it prints "closed_rate X" (events made durable per
 * second) and the same percentiles and largest, from each event's start.
 *
 * BURN (default 0) is CPU work to do beside the flushes, in cores: two threads each busy for BURN/2
 * of every millisecond while the events are offered. Given the CPU a server used at the same rate,
 * it shows what the flushes alone would suffer from that much computing on this machine: on the
 * development VM the host takes CPU time away from the whole VM (steal time in /proc/stat) once it
 * both flushes and computes, and the flushes' tail grows by that (bench/README.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static char payload[1024];
static char base[4096];

/* A closed-loop worker waits on this for its event's batch. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
} waiter_t;

typedef struct {
    long index;
    double due;
    int fd;
    waiter_t *waiter; /* closed loop only */
} event_t;

/* A queue of events under one lock: the driver → workers, and the workers → the committer. */
typedef struct {
    event_t *items;
    long head, tail, capacity;
    int closed;
    pthread_mutex_t lock;
    pthread_cond_t ready;
} queue_t;

static void queue_init(queue_t *q, long capacity) {
    q->items = calloc(capacity, sizeof *q->items);
    if (!q->items) fail("calloc");
    q->capacity = capacity;
    q->head = q->tail = 0;
    q->closed = 0;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->ready, NULL);
}

static void queue_push(queue_t *q, event_t e) {
    pthread_mutex_lock(&q->lock);
    if (q->tail == q->capacity) fail("queue full");
    q->items[q->tail++] = e;
    pthread_cond_signal(&q->ready);
    pthread_mutex_unlock(&q->lock);
}

static void queue_close(queue_t *q) {
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->ready);
    pthread_mutex_unlock(&q->lock);
}

/* Takes up to `most` events (waiting for one at least); 0 once closed and empty. */
static long queue_take(queue_t *q, event_t *out, long most) {
    pthread_mutex_lock(&q->lock);
    while (q->head == q->tail && !q->closed) pthread_cond_wait(&q->ready, &q->lock);
    long n = q->tail - q->head;
    if (n > most) n = most;
    memcpy(out, q->items + q->head, n * sizeof *out);
    q->head += n;
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* published: batches whose new/ entries are durable, from the committer to the ids/ committer (-p). */
static queue_t work, written, published;
static int pipelined;
static double *latencies;
static long capacity, next_index, completed;
static int stopping;

static int open_record(void) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/tmp", base);
    int fd = open(tmp, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) fail("open O_TMPFILE");
    if (write(fd, payload, sizeof payload) != (ssize_t)sizeof payload) fail("write");
    if (fsync(fd) < 0) fail("fsync file");
    return fd;
}

/* Closed loop: one event at a time, the next only once this one's batch is durable. */
static void *closed_worker(void *arg) {
    waiter_t *w = arg;
    while (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) {
        long i = __atomic_fetch_add(&next_index, 1, __ATOMIC_RELAXED);
        if (i >= capacity) break;
        double started = now_s();
        int fd = open_record();
        pthread_mutex_lock(&w->lock);
        w->done = 0;
        pthread_mutex_unlock(&w->lock);
        queue_push(&written, (event_t){.index = i, .due = started, .fd = fd, .waiter = w});
        pthread_mutex_lock(&w->lock);
        while (!w->done) pthread_cond_wait(&w->done_cond, &w->lock);
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

static void *worker(void *arg) {
    (void)arg;
    event_t e;
    while (queue_take(&work, &e, 1) == 1) {
        e.fd = open_record();
        queue_push(&written, e);
    }
    return NULL;
}

static void link_into(int fd, const char *folder, long index) {
    char from[64], to[4300];
    snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
    snprintf(to, sizeof to, "%s/%s/%ld.json", base, folder, index);
    if (linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW) < 0) fail("linkat");
}

static void sync_folder(const char *folder) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", base, folder);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(path);
    if (fsync(fd) < 0) fail("fsync folder");
    close(fd);
}

/* Counts a batch durable: its latencies, and the closed-loop workers waiting for it. */
static void finish(event_t *batch, long n) {
    double done = now_s();
    for (long i = 0; i < n; i++) {
        close(batch[i].fd);
        latencies[batch[i].index] = done - batch[i].due;
        waiter_t *w = batch[i].waiter;
        if (w) {
            pthread_mutex_lock(&w->lock);
            w->done = 1;
            pthread_cond_signal(&w->done_cond);
            pthread_mutex_unlock(&w->lock);
        }
    }
    if (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) __atomic_fetch_add(&completed, n, __ATOMIC_RELAXED);
}

enum { MAX_BATCH = 128 }; /* the spool writer's own limit (docs/durability.md §5) */

/* The last stage, for a batch whose new/ entries are durable: links into ids/, its fsync, done. */
static void commit_ids(event_t *batch, long n) {
    for (long i = 0; i < n; i++) link_into(batch[i].fd, "ids", batch[i].index);
    sync_folder("ids");
    finish(batch, n);
}

/* -p: the last stage on a thread of its own. */
static void *ids_committer(void *arg) {
    (void)arg;
    event_t batch[MAX_BATCH];
    long n;
    while ((n = queue_take(&published, batch, MAX_BATCH)) > 0) commit_ids(batch, n);
    return NULL;
}

static void *committer(void *arg) {
    (void)arg;
    event_t batch[MAX_BATCH];
    long n;
    pthread_t second;
    if (pipelined && pthread_create(&second, NULL, ids_committer, NULL)) fail("pthread_create");
    while ((n = queue_take(&written, batch, MAX_BATCH)) > 0) {
        for (long i = 0; i < n; i++) link_into(batch[i].fd, "new", batch[i].index);
        sync_folder("new");
        if (pipelined)
            for (long i = 0; i < n; i++) queue_push(&published, batch[i]);
        else
            commit_ids(batch, n);
    }
    if (pipelined) {
        queue_close(&published);
        pthread_join(second, NULL);
    }
    return NULL;
}

static double burn_duty, burn_until;

/* Busy for burn_duty of every millisecond until burn_until. */
static void *burner(void *arg) {
    (void)arg;
    while (now_s() < burn_until) {
        double started = now_s();
        while (now_s() - started < burn_duty * 1e-3) {}
        struct timespec pause = {.tv_sec = 0, .tv_nsec = (long)((1 - burn_duty) * 1e6)};
        if (pause.tv_nsec > 0) nanosleep(&pause, NULL);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts the first `count` latencies and prints their percentiles in ms, then the largest. */
static void print_latencies(long count) {
    qsort(latencies, count, sizeof *latencies, by_value);
    const struct { const char *name; double q; } marks[] = {
        {"p50_ms", 0.50}, {"p90_ms", 0.90}, {"p99_ms", 0.99}, {"p999_ms", 0.999}};
    for (int i = 0; i < 4; i++) printf("%s %.3f\n", marks[i].name, 1000 * latencies[(long)(marks[i].q * (count - 1))]);
    printf("max_ms %.3f\n", 1000 * latencies[count - 1]);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-p") == 0) {
        pipelined = 1;
        argc--;
        argv++;
    }
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: flushfloor [-p] DIR RATE SECONDS WORKERS [BURN]\n");
        return 2;
    }
    snprintf(base, sizeof base, "%s", argv[1]);
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    int workers = atoi(argv[4]);
    double burn = argc == 6 ? atof(argv[5]) : 0;
    if (rate < 0 || rate > 100000 || seconds <= 0 || seconds > 120 || workers < 1 || workers > 256 || burn < 0 ||
        burn > 2)
        return 2;
    memset(payload, 'x', sizeof payload);
    if (mkdir(base, 0755) < 0) fail(base);
    const char *folders[] = {"tmp", "new", "ids"};
    for (int i = 0; i < 3; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", base, folders[i]);
        if (mkdir(path, 0755) < 0) fail(path);
    }
    sync_folder(".");

    int closed = rate == 0;
    /* Closed loop: room for far more events than this disk makes durable in SECONDS. */
    long total = closed ? (long)(50000 * seconds) + workers : (long)(rate * seconds);
    capacity = total;
    latencies = calloc(total, sizeof *latencies);
    if (!latencies) fail("calloc");
    queue_init(&work, total);
    queue_init(&written, total);
    queue_init(&published, total);
    pthread_t *threads = calloc(workers + 1, sizeof *threads);
    waiter_t *waiters = calloc(workers, sizeof *waiters);
    if (!threads || !waiters) fail("calloc");
    if (pthread_create(&threads[workers], NULL, committer, NULL)) fail("pthread_create");
    if (closed) {
        double begun = now_s();
        for (int t = 0; t < workers; t++) {
            pthread_mutex_init(&waiters[t].lock, NULL);
            pthread_cond_init(&waiters[t].done_cond, NULL);
            if (pthread_create(&threads[t], NULL, closed_worker, &waiters[t])) fail("pthread_create");
        }
        struct timespec span = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9)};
        while (nanosleep(&span, &span) == -1 && errno == EINTR) {}
        __atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
        long made = __atomic_load_n(&completed, __ATOMIC_RELAXED);
        double elapsed = now_s() - begun;
        for (int t = 0; t < workers; t++) pthread_join(threads[t], NULL);
        queue_close(&written);
        pthread_join(threads[workers], NULL);
        /* Every index handed out below the capacity was written and committed: a worker finishes its event
           before it looks at `stopping` again, and the committer drains the queue before it exits. */
        printf("closed_rate %.0f\n", made / elapsed);
        print_latencies(next_index < capacity ? next_index : capacity);
        return 0;
    }
    for (int t = 0; t < workers; t++)
        if (pthread_create(&threads[t], NULL, worker, NULL)) fail("pthread_create");

    double start = now_s() + 0.01, max_lag = 0;
    enum { BURNERS = 2 };
    pthread_t burners[BURNERS];
    burn_duty = burn / BURNERS;
    burn_until = start + seconds;
    if (burn > 0)
        for (int t = 0; t < BURNERS; t++)
            if (pthread_create(&burners[t], NULL, burner, NULL)) fail("pthread_create");
    for (long i = 0; i < total; i++) {
        double due = start + i / rate;
        struct timespec ts = {.tv_sec = (time_t)due, .tv_nsec = (long)((due - (time_t)due) * 1e9)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        double lag = now_s() - due;
        if (lag > max_lag) max_lag = lag;
        queue_push(&work, (event_t){.index = i, .due = due, .fd = -1});
    }
    queue_close(&work);
    if (burn > 0)
        for (int t = 0; t < BURNERS; t++) pthread_join(burners[t], NULL);
    for (int t = 0; t < workers; t++) pthread_join(threads[t], NULL);
    queue_close(&written);
    pthread_join(threads[workers], NULL);
    double elapsed = now_s() - start;

    printf("achieved_rate %.0f\n", total / elapsed);
    print_latencies(total);
    printf("driver_max_lag_ms %.3f\n", 1000 * max_lag);
    return 0;
}
