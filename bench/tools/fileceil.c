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
 * Prints "single FILES_PER_S" and "batched FILES_PER_S".
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

static const char *base;
static double seconds;
static int batch, nthreads;
static char payload[1024];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static void write_file(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail(path);
    if (write(fd, payload, sizeof payload) != (ssize_t)sizeof payload) fail("write");
    if (fsync(fd) < 0) fail("fsync");
    close(fd);
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
        write_file(tmp);
        if (rename(tmp, dst) < 0) fail("rename");
        sync_dir(dfd);
        n++;
    }
    close(dfd);
    printf("single %.0f\n", n / (now_s() - start));

    snprintf(dir, sizeof dir, "%s/batched", base);
    if (mkdir(dir, 0755) < 0) fail(dir);
    job_t *jobs = calloc(nthreads, sizeof *jobs);
    pthread_t *tids = calloc(nthreads, sizeof *tids);
    start = now_s();
    for (int t = 0; t < nthreads; t++) {
        jobs[t].id = t;
        jobs[t].until = start + seconds;
        snprintf(jobs[t].dir, sizeof jobs[t].dir, "%s", dir);
        if (pthread_create(&tids[t], NULL, batched, &jobs[t])) fail("pthread_create");
    }
    long total = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(tids[t], NULL);
        total += jobs[t].files;
    }
    printf("batched %.0f\n", total / (now_s() - start));
    return 0;
}
