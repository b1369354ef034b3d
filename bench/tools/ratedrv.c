/*
 * ratedrv: a bounded open-loop HTTP/1.1 load driver, for "p99 at N events/s offered".
 *
 *   ratedrv --port P --lines FILE [--post PATH] --rate R --duration S [--conns C]
 *           [--expect BODY] [--drain S] --out RESULT.json --status STATUS.txt
 *
 * Request i (line i of FILE: a GET target, or with --post an XML body POSTed to PATH) is
 * scheduled at t0 + i/R, whatever happened to the requests before it. Its latency is measured
 * from that scheduled time, not from when it could actually be written, so a server stall
 * that holds up later requests shows in their latencies too (no coordinated omission, the
 * reason wrk2 exists; wrk2 is not packaged in Debian). A request goes out on any idle
 * keep-alive connection; when none is idle a new one is opened, up to C, and beyond that it
 * waits in a queue, the wait counting in its latency.
 *
 * After the last scheduled send the driver waits at most --drain seconds for answers; a request
 * not answered by then, or whose connection dropped, counts as infinitely slow, as does any
 * answer other than 200 with exactly --expect as the body (it also counts as bad).
 *
 * Output: RESULT.json (counts, offered and achieved rates, latency percentiles in ms, the
 * driver's own worst lateness in releasing a request at its scheduled time) and STATUS.txt, one letter per scheduled request, in order:
 * o = answered success, b = other answer, f = connection failed, u = never answered. The spool
 * checker reads it to verify exactly that every request answered success was stored.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { CLOSED, CONNECTING, IDLE, WRITING, READING };

typedef struct {
    int fd, state;
    long req;
    size_t woff;
    char *rbuf;
    size_t rlen, rcap;
} conn_t;

static int port;
static const char *lines_path, *post_path, *expect = "success", *out_path, *status_path;
static double rate, duration, drain = 5.0;
static int max_conns = 64;

static char **reqs;
static size_t *req_len;
static double *lat;   /* ms, or -1 while unknown */
static char *status;  /* one letter per request */
static long total;
static double t0;
static conn_t *conns;
static int nopen, peak_open, epfd;
static long *queue;
static long qhead, qtail;
static double max_lag;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double sched(long i) { return t0 + (double)i / rate; }

static void die(const char *msg) {
    perror(msg);
    exit(2);
}

static void load_requests(void) {
    FILE *f = fopen(lines_path, "r");
    if (!f) die(lines_path);
    reqs = calloc(total, sizeof *reqs);
    req_len = calloc(total, sizeof *req_len);
    char *line = NULL;
    size_t cap = 0;
    long i = 0;
    ssize_t n;
    while (i < total && (n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *r;
        int len;
        if (post_path)
            len = asprintf(&r, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/xml\r\n"
                               "Content-Length: %zd\r\n\r\n%s", post_path, port, n, line);
        else
            len = asprintf(&r, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", line, port);
        if (len < 0) die("asprintf");
        reqs[i] = r;
        req_len[i] = (size_t)len;
        i++;
    }
    free(line);
    fclose(f);
    if (i < total) {
        fprintf(stderr, "ratedrv: %s has %ld lines, %ld needed\n", lines_path, i, total);
        exit(2);
    }
}

static void watch(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void close_conn(conn_t *c) {
    if (c->state == CLOSED) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->req >= 0 && status[c->req] == 'u') status[c->req] = 'f';
    c->req = -1;
    c->state = CLOSED;
    c->rlen = 0;
    nopen--;
}

static int open_conn(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->state = CONNECTING;
    c->req = -1;
    c->rlen = 0;
    nopen++;
    if (nopen > peak_open) peak_open = nopen;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

static void try_write(conn_t *c) {
    while (c->woff < req_len[c->req]) {
        ssize_t w = write(c->fd, reqs[c->req] + c->woff, req_len[c->req] - c->woff);
        if (w < 0) {
            if (errno == EAGAIN) {
                watch(c, EPOLLOUT, EPOLL_CTL_MOD);
                c->state = WRITING;
                return;
            }
            close_conn(c);
            return;
        }
        c->woff += (size_t)w;
    }
    c->state = READING;
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* Hands queued requests to idle connections, opening new ones up to the limit. */
static void dispatch(void) {
    while (qhead < qtail) {
        conn_t *c = NULL;
        for (int k = 0; k < max_conns; k++)
            if (conns[k].state == IDLE) { c = &conns[k]; break; }
        if (!c) {
            for (int k = 0; k < max_conns && !c; k++)
                if (conns[k].state == CLOSED) {
                    if (open_conn(&conns[k]) < 0) return;
                    c = &conns[k];
                }
            if (!c) return;
            c->req = queue[qhead++];
            c->woff = 0;
            continue; /* written once the connect completes */
        }
        c->req = queue[qhead++];
        c->woff = 0;
        try_write(c);
    }
}

static const char *find_header(const char *h, size_t hlen, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = h; p + nl < h + hlen; p++)
        if ((p == h || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 && p[nl] == ':') return p + nl + 1;
    return NULL;
}

/* Parses as many complete responses as the buffer holds (one, without pipelining). */
static void on_readable(conn_t *c) {
    for (;;) {
        if (c->rcap - c->rlen < 4096) {
            c->rcap = c->rcap ? c->rcap * 2 : 16384;
            c->rbuf = realloc(c->rbuf, c->rcap);
        }
        ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen - 1);
        if (r == 0) { close_conn(c); return; }
        if (r < 0) {
            if (errno == EAGAIN) break;
            close_conn(c);
            return;
        }
        c->rlen += (size_t)r;
    }
    c->rbuf[c->rlen] = 0;
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) return;
    size_t hlen = (size_t)(end - c->rbuf) + 4;
    const char *cl = find_header(c->rbuf, hlen, "Content-Length");
    if (!cl || c->req < 0) { close_conn(c); return; } /* not something this driver speaks */
    size_t blen = strtoul(cl, NULL, 10);
    if (c->rlen < hlen + blen) return;
    int code = 0;
    sscanf(c->rbuf, "HTTP/1.%*d %d", &code);
    const char *conn_hdr = find_header(c->rbuf, hlen, "Connection");
    int must_close = conn_hdr && strncasecmp(conn_hdr + strspn(conn_hdr, " "), "close", 5) == 0;
    long i = c->req;
    lat[i] = (now_s() - sched(i)) * 1000.0;
    int good = code == 200 && blen == strlen(expect) && memcmp(c->rbuf + hlen, expect, blen) == 0;
    status[i] = good ? 'o' : 'b';
    c->req = -1;
    memmove(c->rbuf, c->rbuf + hlen + blen, c->rlen - hlen - blen);
    c->rlen -= hlen + blen;
    if (must_close) { close_conn(c); return; }
    c->state = IDLE; /* still watched for EPOLLIN, so a server-side close is noticed */
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void json_ms(FILE *f, const char *name, double v) {
    if (isinf(v)) fprintf(f, "\"%s\": null, ", name);
    else fprintf(f, "\"%s\": %.3f, ", name, v);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--lines")) lines_path = v;
        else if (!strcmp(k, "--post")) post_path = v;
        else if (!strcmp(k, "--rate")) rate = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--conns")) max_conns = atoi(v);
        else if (!strcmp(k, "--expect")) expect = v;
        else if (!strcmp(k, "--drain")) drain = atof(v);
        else if (!strcmp(k, "--out")) out_path = v;
        else if (!strcmp(k, "--status")) status_path = v;
        else { fprintf(stderr, "ratedrv: unknown option %s\n", k); return 2; }
    }
    if (!port || !lines_path || rate <= 0 || duration <= 0 || max_conns < 1 || !out_path || !status_path ||
        duration > 3600 || rate > 1e6) {
        fprintf(stderr, "usage: ratedrv --port P --lines FILE [--post PATH] --rate R --duration S [--conns C] "
                        "[--expect BODY] [--drain S] --out JSON --status FILE\n");
        return 2;
    }
    total = (long)(rate * duration);
    load_requests();
    lat = malloc(total * sizeof *lat);
    status = malloc(total + 1);
    queue = malloc(total * sizeof *queue);
    for (long i = 0; i < total; i++) { lat[i] = -1; status[i] = 'n'; }
    status[total] = 0;
    conns = calloc(max_conns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);

    t0 = now_s() + 0.05;
    double t_end = sched(total);
    long next = 0;
    struct epoll_event evs[256];
    for (;;) {
        double now = now_s();
        while (next < total && sched(next) <= now) {
            /* how late the driver itself released the request: its own timer and loop, not the
               server; a large value would make the measured latencies partly the driver's */
            if (now - sched(next) > max_lag) max_lag = now - sched(next);
            status[next] = 'u';
            queue[qtail++] = next++;
        }
        dispatch();
        int busy = 0;
        for (int k = 0; k < max_conns; k++)
            if (conns[k].req >= 0 && conns[k].state != CLOSED) busy++;
        if (next >= total && qhead == qtail && busy == 0) break;
        if (next >= total && now > t_end + drain) break;
        double wake = next < total ? sched(next) : t_end + drain;
        struct itimerspec its = {0};
        its.it_value.tv_sec = (time_t)wake;
        its.it_value.tv_nsec = (long)((wake - (double)(time_t)wake) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        int n = epoll_wait(epfd, evs, 256, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            conn_t *c = evs[e].data.ptr;
            if (!c) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0) { /* spurious wake-up: nothing to do */ }
                continue;
            }
            if (c->state == CLOSED) continue;
            if (evs[e].events & (EPOLLERR | EPOLLHUP) && !(evs[e].events & EPOLLIN)) { close_conn(c); continue; }
            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) { close_conn(c); continue; }
                c->state = WRITING;
                try_write(c);
            } else if (c->state == WRITING) {
                try_write(c);
            } else {
                on_readable(c);
            }
        }
    }
    double elapsed = now_s() - t0;

    long ok = 0, bad = 0, failed = 0, unanswered = 0, never = 0;
    double *all = malloc(total * sizeof *all);
    double sum = 0;
    long answered = 0;
    for (long i = 0; i < total; i++) {
        switch (status[i]) {
        case 'o': ok++; break;
        case 'b': bad++; break;
        case 'f': failed++; break;
        case 'u': unanswered++; break;
        default: never++;
        }
        all[i] = status[i] == 'o' ? lat[i] : INFINITY;
        if (status[i] == 'o') { sum += lat[i]; answered++; }
    }
    qsort(all, total, sizeof *all, cmp_double);
#define PCT(q) all[(long)ceil((q) * total) - 1 < 0 ? 0 : (long)ceil((q) * total) - 1]
    FILE *f = fopen(out_path, "w");
    if (!f) die(out_path);
    fprintf(f, "{\"scheduled\": %ld, \"ok\": %ld, \"bad\": %ld, \"failed\": %ld, \"unanswered\": %ld, "
               "\"never_sent\": %ld, \"offered_rate\": %.1f, \"achieved_rate\": %.1f, \"peak_connections\": %d, ",
            total, ok, bad, failed, unanswered, never, rate, ok / (t_end - t0 > 0 ? t_end - t0 : 1), peak_open);
    json_ms(f, "p50_ms", PCT(0.50));
    json_ms(f, "p90_ms", PCT(0.90));
    json_ms(f, "p99_ms", PCT(0.99));
    json_ms(f, "p999_ms", PCT(0.999));
    json_ms(f, "max_ms", all[total - 1]);
    fprintf(f, "\"mean_ms\": %.3f, \"driver_max_lag_ms\": %.3f, \"elapsed_s\": %.3f}\n",
            answered ? sum / answered : 0.0, max_lag * 1000.0, elapsed);
    fclose(f);
    f = fopen(status_path, "w");
    if (!f) die(status_path);
    fprintf(f, "%s\n", status);
    fclose(f);
    return 0;
}
