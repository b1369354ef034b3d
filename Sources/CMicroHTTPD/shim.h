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
  /* NUL-terminated PEM texts and a GnuTLS priority string, all three given
   * or all three NULL (plain HTTP). They must stay valid until the daemon
   * has stopped: microhttpd.h does not say that MHD copies them. */
  const char *tls_cert_pem;
  const char *tls_key_pem;
  const char *tls_priorities;
} payhook_daemon_config;

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
  /* The TLS options go through MHD_OPTION_ARRAY so that one call serves both
   * plain HTTP and HTTPS; microhttpd.h: pointer options take `ptr_value`,
   * and the array ends with MHD_OPTION_END. */
  struct MHD_OptionItem tls_options[4];
  unsigned int flags = config->flags;
  size_t count = 0;
  if (NULL != config->tls_cert_pem && NULL != config->tls_key_pem &&
      NULL != config->tls_priorities) {
    flags |= (unsigned int) MHD_USE_TLS;
    tls_options[count].option = MHD_OPTION_HTTPS_MEM_CERT;
    tls_options[count].value = 0;
    tls_options[count].ptr_value = (void *) config->tls_cert_pem;
    count++;
    tls_options[count].option = MHD_OPTION_HTTPS_MEM_KEY;
    tls_options[count].value = 0;
    tls_options[count].ptr_value = (void *) config->tls_key_pem;
    count++;
    tls_options[count].option = MHD_OPTION_HTTPS_PRIORITIES;
    tls_options[count].value = 0;
    tls_options[count].ptr_value = (void *) config->tls_priorities;
    count++;
  }
  tls_options[count].option = MHD_OPTION_END;
  tls_options[count].value = 0;
  tls_options[count].ptr_value = NULL;
  return MHD_start_daemon(
      flags,
      (uint16_t) 0, /* ignored: MHD_OPTION_LISTEN_SOCKET is given */
      accept_policy, cls,
      access_handler, cls,
      MHD_OPTION_EXTERNAL_LOGGER, logger, cls,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket) config->listen_socket,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) config->thread_pool_size,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) config->connection_timeout_seconds,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned int) config->connection_limit,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) config->per_ip_connection_limit,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) config->connection_memory_limit,
      MHD_OPTION_URI_LOG_CALLBACK, uri_log, cls,
      MHD_OPTION_NOTIFY_COMPLETED, request_completed, cls,
      MHD_OPTION_NOTIFY_CONNECTION, notify_connection, cls,
      MHD_OPTION_ARRAY, tls_options,
      MHD_OPTION_END);
}

/* The daemon flags this server always uses; MHD_USE_ITC is required by
 * MHD_quiesce_daemon when MHD runs its own threads (see microhttpd.h).
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
                         MHD_USE_ITC | MHD_USE_ERROR_LOG);
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
