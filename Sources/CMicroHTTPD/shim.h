#ifndef PAYHOOK_CMICROHTTPD_SHIM_H
#define PAYHOOK_CMICROHTTPD_SHIM_H

/*
 * Non-variadic wrappers around the variadic parts of libmicrohttpd.
 *
 * Swift does not import C variadic functions, and even if it did, the
 * varargs of MHD_start_daemon must be passed with their exact C types:
 * microhttpd.h documents each option as "followed by an `unsigned int`",
 * "a `size_t`", "an `MHD_socket`" or "TWO pointers"; passing an int where a
 * size_t is read (or forgetting the second pointer) makes MHD read garbage
 * off the va_list. Every cast below mirrors the type documented in
 * microhttpd.h for that option.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/x509.h>
#include <time.h>
#include <microhttpd.h>

/* POLLRDHUP ("stream socket peer closed connection, or shut down writing
 * half of connection", poll(2), Linux 2.6.17) is only declared with
 * _GNU_SOURCE; its value is fixed by <asm-generic/poll.h>. */
#if defined(__linux__)
#ifdef POLLRDHUP
#define PAYHOOK_POLLRDHUP POLLRDHUP
#else
#define PAYHOOK_POLLRDHUP 0x2000
#endif
#else
#define PAYHOOK_POLLRDHUP 0
#endif

/* The URI log callback has no typedef in microhttpd.h; this is the shape
 * documented under MHD_OPTION_URI_LOG_CALLBACK. Its return value becomes the
 * initial `*con_cls` of the request. */
typedef void *(*payhook_uri_log_callback)(void *cls,
                                          const char *uri,
                                          struct MHD_Connection *connection);

/* Plain numbers for MHD_start_daemon; converted to the documented C types in
 * payhook_start_daemon. */
typedef struct payhook_daemon_config {
  unsigned int flags;
  unsigned int thread_pool_size;
  unsigned int connection_timeout_seconds;
  unsigned int connection_limit;
  unsigned int per_ip_connection_limit;
  size_t connection_memory_limit;
  int listen_socket;
  /* A GnuTLS priority string for HTTPS, or NULL for plain HTTP. It must stay
   * valid until the daemon has stopped: microhttpd.h does not say that MHD
   * copies it. With HTTPS the certificate comes from the connection's
   * payhook_tls_store (see below), never from MHD_OPTION_HTTPS_MEM_CERT. */
  const char *tls_priorities;
} payhook_daemon_config;

/*
 * The listener's certificate chain and key, replaceable while the daemons
 * run (SIGHUP, docs/reload.md). MHD_OPTION_HTTPS_MEM_CERT/KEY load a pair
 * once, into credentials MHD owns, so a new pair would need a new daemon.
 * MHD_OPTION_HTTPS_CERT_CALLBACK instead asks, at every handshake, a
 * gnutls_certificate_retrieve_function2 for the pair to present; this one
 * hands out the store's current pair under a mutex.
 *
 * A replaced pair is never freed while the store lives: gnutls keeps the
 * pointers the callback returned for the whole session (the callback's
 * pairs are not copied, gnutls-abstract(3) "gnutls_certificate_set_retrieve_
 * function2"), and a session may outlive any number of reloads on a
 * keep-alive connection. The store is freed only after every daemon that
 * used it has stopped, so a retired pair costs a few kilobytes per reload
 * until then.
 */
#define PAYHOOK_TLS_MAX_CHAIN 16

typedef struct payhook_tls_pair {
  gnutls_pcert_st certificates[PAYHOOK_TLS_MAX_CHAIN];
  unsigned int count;
  gnutls_privkey_t key;
  struct payhook_tls_pair *retired; /* the pair this one replaced */
} payhook_tls_pair;

typedef struct payhook_tls_store {
  pthread_mutex_t lock;
  payhook_tls_pair *current;
} payhook_tls_store;

static inline void
payhook_tls_pair_free(payhook_tls_pair *pair)
{
  while (NULL != pair) {
    payhook_tls_pair *older = pair->retired;
    for (unsigned int i = 0; i < pair->count; i++)
      gnutls_pcert_deinit(&pair->certificates[i]);
    if (NULL != pair->key)
      gnutls_privkey_deinit(pair->key);
    free(pair);
    pair = older;
  }
}

/* What payhook_tls_pair_parse refused, in `*stage`. */
#define PAYHOOK_TLS_STAGE_CERTIFICATE 1
#define PAYHOOK_TLS_STAGE_KEY 2
#define PAYHOOK_TLS_STAGE_PAIR 3

/*
 * Parses a PEM certificate chain (leaf first) and a PEM private key, and
 * checks that the key belongs to the leaf. On success stores the new pair in
 * `*out` and returns 0; otherwise returns a negative GnuTLS error code
 * (gnutls_strerror names it; neither text is ever part of a message) and
 * sets `*stage` to what was refused: the certificate, the key, or the two
 * together (GNUTLS_E_CERTIFICATE_KEY_MISMATCH: the key is another's).
 */
static inline int
payhook_tls_pair_parse(const char *certificate_pem, size_t certificate_length,
                       const char *key_pem, size_t key_length,
                       payhook_tls_pair **out, int *stage)
{
  *stage = PAYHOOK_TLS_STAGE_CERTIFICATE;
  if (certificate_length > UINT_MAX || key_length > UINT_MAX)
    return GNUTLS_E_INVALID_REQUEST;
  gnutls_datum_t certificate = {(unsigned char *) certificate_pem,
                                (unsigned int) certificate_length};
  gnutls_datum_t key = {(unsigned char *) key_pem, (unsigned int) key_length};

  payhook_tls_pair *pair = (payhook_tls_pair *) calloc(1, sizeof(*pair));
  if (NULL == pair)
    return GNUTLS_E_MEMORY_ERROR;
  unsigned int count = PAYHOOK_TLS_MAX_CHAIN;
  int result = gnutls_pcert_list_import_x509_raw(pair->certificates, &count,
                                                 &certificate,
                                                 GNUTLS_X509_FMT_PEM, 0);
  if (result < 0) {
    free(pair);
    return result;
  }
  pair->count = count;

  *stage = PAYHOOK_TLS_STAGE_KEY;
  result = gnutls_privkey_init(&pair->key);
  if (result >= 0)
    result = gnutls_privkey_import_x509_raw(pair->key, &key,
                                            GNUTLS_X509_FMT_PEM, NULL, 0);
  if (result < 0) {
    payhook_tls_pair_free(pair);
    return result;
  }

  /* The match: gnutls_certificate_set_x509_key_mem verifies that the key
   * belongs to the first certificate (GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
   * unless GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH is set. */
  *stage = PAYHOOK_TLS_STAGE_PAIR;
  gnutls_certificate_credentials_t check = NULL;
  result = gnutls_certificate_allocate_credentials(&check);
  if (result >= 0) {
    result = gnutls_certificate_set_x509_key_mem(check, &certificate, &key,
                                                 GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(check);
  }
  if (result < 0) {
    payhook_tls_pair_free(pair);
    return result;
  }
  *out = pair;
  return 0;
}

/* A store holding `pair`, or NULL when memory ran out. */
static inline payhook_tls_store *
payhook_tls_store_create(payhook_tls_pair *pair)
{
  payhook_tls_store *store = (payhook_tls_store *) calloc(1, sizeof(*store));
  if (NULL == store)
    return NULL;
  if (0 != pthread_mutex_init(&store->lock, NULL)) {
    free(store);
    return NULL;
  }
  store->current = pair;
  return store;
}

/* Makes `pair` the one presented from the next handshake on; the previous
 * one stays allocated (see above). */
static inline void
payhook_tls_store_replace(payhook_tls_store *store, payhook_tls_pair *pair)
{
  pthread_mutex_lock(&store->lock);
  pair->retired = store->current;
  store->current = pair;
  pthread_mutex_unlock(&store->lock);
}

/* Frees the store with every pair it ever held. Only once no daemon that
 * used it runs any more. */
static inline void
payhook_tls_store_free(payhook_tls_store *store)
{
  if (NULL == store)
    return;
  payhook_tls_pair_free(store->current);
  pthread_mutex_destroy(&store->lock);
  free(store);
}

/* The SHA-256 fingerprint of the current leaf certificate (32 bytes into
 * `digest`); 0 on success. For logs and tests: which certificate is served. */
static inline int
payhook_tls_store_fingerprint(payhook_tls_store *store, unsigned char *digest)
{
  pthread_mutex_lock(&store->lock);
  gnutls_datum_t leaf = store->current->certificates[0].cert;
  int result = gnutls_hash_fast(GNUTLS_DIG_SHA256, leaf.data, leaf.size, digest);
  pthread_mutex_unlock(&store->lock);
  return result;
}

/* The end of the current leaf certificate's validity (its notAfter), in
 * Unix seconds; -1 when it cannot be read. For the expiry metric. */
static inline long long
payhook_tls_store_not_after(payhook_tls_store *store)
{
  long long result = -1;
  gnutls_x509_crt_t leaf = NULL;
  pthread_mutex_lock(&store->lock);
  if (gnutls_x509_crt_init(&leaf) >= 0) {
    if (gnutls_x509_crt_import(leaf, &store->current->certificates[0].cert,
                               GNUTLS_X509_FMT_DER) >= 0) {
      time_t end = gnutls_x509_crt_get_expiration_time(leaf);
      if ((time_t) -1 != end)
        result = (long long) end;
    }
    gnutls_x509_crt_deinit(leaf);
  }
  pthread_mutex_unlock(&store->lock);
  return result;
}

/*
 * The gnutls_certificate_retrieve_function2 given as
 * MHD_OPTION_HTTPS_CERT_CALLBACK. It has no closure argument: MHD sets the
 * session's pointer to the MHD_Connection (gnutls_session_set_ptr in
 * daemon.c), and payhook's notify-connection callback sets that
 * connection's socket context to the store when the connection starts,
 * before any handshake. Returns -1 (the handshake fails) if the store is
 * missing.
 */
static inline int
payhook_tls_retrieve(gnutls_session_t session,
                     const gnutls_datum_t *requested_ca_names, int names,
                     const gnutls_pk_algorithm_t *algorithms, int algorithm_count,
                     gnutls_pcert_st **certificates, unsigned int *count,
                     gnutls_privkey_t *key)
{
  (void) requested_ca_names;
  (void) names;
  (void) algorithms;
  (void) algorithm_count;
  struct MHD_Connection *connection =
      (struct MHD_Connection *) gnutls_session_get_ptr(session);
  if (NULL == connection)
    return -1;
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (NULL == info || NULL == info->socket_context)
    return -1;
  payhook_tls_store *store = (payhook_tls_store *) info->socket_context;
  pthread_mutex_lock(&store->lock);
  payhook_tls_pair *pair = store->current;
  *certificates = pair->certificates;
  *count = pair->count;
  *key = pair->key;
  pthread_mutex_unlock(&store->lock);
  return 0;
}

/* 1 when this libmicrohttpd was built with HTTPS support (GnuTLS), else 0. */
static inline int
payhook_tls_supported(void)
{
  return MHD_YES == MHD_is_feature_supported(MHD_FEATURE_TLS) ? 1 : 0;
}

/*
 * Starts a daemon on an already listening socket. The same `cls` is handed
 * to every callback. MHD_OPTION_EXTERNAL_LOGGER comes first because
 * microhttpd.h says it "should be specified as the first option, otherwise
 * some messages may be printed by standard MHD logger during daemon
 * startup". MHD_OPTION_NOTIFY_CONNECTION is "followed by TWO pointers":
 * the MHD_NotifyConnectionCallback and its closure. `accept_policy` may be
 * NULL (no accept policy callback); it is given only when payhook applies
 * the per-IP limit itself (per_ip_connection_limit is then 0), because
 * MHD_OPTION_PER_IP_CONNECTION_LIMIT is checked before the accept policy
 * and cannot exempt a trusted proxy.
 */
static inline struct MHD_Daemon *
payhook_start_daemon(const payhook_daemon_config *config,
                     MHD_AcceptPolicyCallback accept_policy,
                     MHD_AccessHandlerCallback access_handler,
                     MHD_RequestCompletedCallback request_completed,
                     payhook_uri_log_callback uri_log,
                     MHD_NotifyConnectionCallback notify_connection,
                     MHD_LogCallback logger,
                     void *cls)
{
  /* Two calls sharing their options: with TLS, the priorities and the
   * certificate callback (microhttpd.h: "followed by an argument of type
   * `gnutls_certificate_retrieve_function2 *`") follow them. */
  unsigned int flags = config->flags;
#define PAYHOOK_COMMON_OPTIONS                                                  \
      (uint16_t) 0, /* ignored: MHD_OPTION_LISTEN_SOCKET is given */          \
      accept_policy, cls,                                                       \
      access_handler, cls,                                                      \
      MHD_OPTION_EXTERNAL_LOGGER, logger, cls,                                  \
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket) config->listen_socket,             \
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) config->thread_pool_size,     \
      MHD_OPTION_CONNECTION_TIMEOUT,                                            \
      (unsigned int) config->connection_timeout_seconds,                        \
      MHD_OPTION_CONNECTION_LIMIT, (unsigned int) config->connection_limit,     \
      MHD_OPTION_PER_IP_CONNECTION_LIMIT,                                       \
      (unsigned int) config->per_ip_connection_limit,                           \
      MHD_OPTION_CONNECTION_MEMORY_LIMIT,                                       \
      (size_t) config->connection_memory_limit,                                 \
      MHD_OPTION_URI_LOG_CALLBACK, uri_log, cls,                                \
      MHD_OPTION_NOTIFY_COMPLETED, request_completed, cls,                      \
      MHD_OPTION_NOTIFY_CONNECTION, notify_connection, cls
  struct MHD_Daemon *daemon;
  if (NULL != config->tls_priorities) {
    daemon = MHD_start_daemon(
        flags | (unsigned int) MHD_USE_TLS, PAYHOOK_COMMON_OPTIONS,
        MHD_OPTION_HTTPS_PRIORITIES, config->tls_priorities,
        MHD_OPTION_HTTPS_CERT_CALLBACK, &payhook_tls_retrieve,
        MHD_OPTION_END);
  } else {
    daemon = MHD_start_daemon(flags, PAYHOOK_COMMON_OPTIONS, MHD_OPTION_END);
  }
#undef PAYHOOK_COMMON_OPTIONS
  return daemon;
}

/* The daemon flags this server always uses; MHD_USE_ITC is required by
 * MHD_quiesce_daemon when MHD runs its own threads (see microhttpd.h), and
 * MHD_ALLOW_SUSPEND_RESUME by MHD_suspend_connection: a request waiting for
 * its store's commit parks its connection instead of its thread.
 * poll(2), not epoll: with MHD_USE_EPOLL and a thread pool, 0.9.75's
 * MHD_quiesce_daemon removes the listen socket from each worker's epoll set
 * while the worker may be doing the same (it drops the socket when its
 * connection share is full), and MHD_PANICs on the resulting epoll_ctl error
 * ("Failed to remove listen FD from epoll set", daemon.c) — an abort on
 * SIGTERM. In poll mode quiescing only sets flags. Each worker polls at most
 * its share of max_connections, so poll's linear scan stays small. */
static inline unsigned int
payhook_daemon_flags(void)
{
  return (unsigned int) (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                         MHD_USE_ITC | MHD_USE_ERROR_LOG |
                         MHD_ALLOW_SUSPEND_RESUME);
}

/*
 * Writes the numeric IP of the connection's peer (no port) into `buffer`.
 * Returns 0 on success, -1 when MHD has no address or the family is not
 * IPv4/IPv6.
 */
static inline int
payhook_connection_peer_ip(struct MHD_Connection *connection,
                           char *buffer,
                           size_t buffer_size)
{
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (NULL == info || NULL == info->client_addr || 0 == buffer_size)
    return -1;
  const struct sockaddr *address = info->client_addr;
  const void *raw = NULL;
  if (AF_INET == address->sa_family && buffer_size >= 16)
  {
    /* Dotted decimal by hand: glibc's inet_ntop formats IPv4 with sprintf, and this runs for every
     * request. The same text as inet_ntop(3) gives: four decimal octets, no leading zeros. */
    const unsigned char *octet = (const unsigned char *)
        &((const struct sockaddr_in *) (const void *) address)->sin_addr;
    char *out = buffer;
    for (int i = 0; i < 4; i++)
    {
      unsigned value = octet[i];
      if (value >= 100)
        *out++ = (char) ('0' + value / 100);
      if (value >= 10)
        *out++ = (char) ('0' + value / 10 % 10);
      *out++ = (char) ('0' + value % 10);
      *out++ = (3 == i) ? '\0' : '.';
    }
    return 0;
  }
  if (AF_INET == address->sa_family)
    raw = &((const struct sockaddr_in *) (const void *) address)->sin_addr;
  else if (AF_INET6 == address->sa_family)
    raw = &((const struct sockaddr_in6 *) (const void *) address)->sin6_addr;
  else
    return -1;
  if (NULL == inet_ntop(address->sa_family, raw, buffer,
                        (socklen_t) buffer_size))
    return -1;
  return 0;
}

/*
 * The connection's socket (MHD_CONNECTION_INFO_CONNECTION_FD, "MHD sockets
 * are always in non-blocking mode"), or -1 when MHD gives none. The
 * descriptor stays MHD's: the caller may shutdown() it to make MHD see an
 * end of stream, but must never close() it.
 */
static inline int
payhook_connection_fd(struct MHD_Connection *connection)
{
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (NULL == info)
    return -1;
  return (int) info->connect_fd;
}

/*
 * 1 when the peer of connected socket `fd` has finished sending (it shut
 * down its writing half, closed, or the socket is in error: POLLRDHUP,
 * POLLHUP or POLLERR) and every byte it sent has already been read from the
 * socket (FIONREAD is 0); 0 otherwise, or when that cannot be told. Never
 * blocks: poll() with a zero timeout.
 */
static inline int
payhook_peer_finished_sending(int fd)
{
  struct pollfd descriptor;
  descriptor.fd = fd;
  descriptor.events = (short) (PAYHOOK_POLLRDHUP | POLLIN);
  descriptor.revents = 0;
  if (poll(&descriptor, 1, 0) <= 0)
    return 0;
  if (0 == (descriptor.revents & (PAYHOOK_POLLRDHUP | POLLHUP | POLLERR)))
    return 0;
  int pending = 0;
  if (0 != ioctl(fd, FIONREAD, &pending))
    return 0;
  return 0 == pending;
}

#endif /* PAYHOOK_CMICROHTTPD_SHIM_H */
