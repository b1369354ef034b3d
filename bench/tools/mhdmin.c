/*
 * mhdmin: libmicrohttpd answering "success" to every request and doing nothing else, with the
 * listener flags payhook uses (internal thread pool, poll(2), inter-thread channel). It is the
 * ceiling libmicrohttpd itself sets on this machine, between nginx and payhook: the difference
 * between it and payhook is payhook's own work per request (bench/results/profiles.md).
 *
 *   mhdmin PORT THREADS
 *
 * Build: cc -O2 -o mhdmin mhdmin.c -lmicrohttpd. Stops on SIGINT or SIGTERM.
 */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct MHD_Response *success;

static enum MHD_Result answer(void *cls, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request) {
    static int seen;
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    /* The first call only announces the headers (microhttpd.h); a body, if any, is skipped. */
    if (*request == NULL) {
        *request = &seen;
        return MHD_YES;
    }
    *upload_data_size = 0;
    return MHD_queue_response(connection, MHD_HTTP_OK, success);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mhdmin PORT THREADS\n");
        return 2;
    }
    unsigned port = (unsigned)atoi(argv[1]), threads = (unsigned)atoi(argv[2]);
    success = MHD_create_response_from_buffer(7, "success", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(success, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC, (uint16_t)port, NULL, NULL,
        answer, NULL, MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, 1024u,
        MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "mhdmin: cannot start on port %u\n", port);
        return 1;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    int signal_number;
    sigwait(&stop, &signal_number);
    MHD_stop_daemon(daemon);
    MHD_destroy_response(success);
    return 0;
}
