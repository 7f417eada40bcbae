/* Socket helpers shared by libheartbeat's C tests (loopback only).
 * Every helper returns -1 on failure with errno set, and never exits. */
#ifndef HEARTBEAT_SOCKETS_H
#define HEARTBEAT_SOCKETS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listening TCP socket on 127.0.0.1 (or ::1 when v6) with an ephemeral port. */
static inline int tcp_listener(int v6)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* A client connected to listener `lfd` (same family). */
static inline int tcp_connect_to(int lfd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(lfd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* A connected loopback pair: *client and *server (accepted). */
static inline int tcp_pair(int v6, int *client, int *server)
{
    *client = *server = -1;
    int lfd = tcp_listener(v6);
    if (lfd < 0)
        return -1;
    *client = tcp_connect_to(lfd);
    if (*client >= 0)
        *server = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    int e = errno;
    close(lfd);
    if (*client < 0 || *server < 0) {
        if (*client >= 0)
            close(*client);
        *client = *server = -1;
        errno = e;
        return -1;
    }
    return 0;
}

/* Closes both ends of a pair (those that are open) and marks them closed:
 * the cleanup of every test that made one. */
static inline void tcp_pair_close(int *c, int *s)
{
    if (*c >= 0)
        close(*c);
    if (*s >= 0)
        close(*s);
    *c = *s = -1;
}

/* Raw getsockopt of an int option, -1000 on failure (never a real value). */
static inline int raw_get(int fd, int level, int name)
{
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) != 0)
        return -1000;
    return v;
}

/* The five options, read with raw system calls (not through the library). */
struct raw_opts {
    int keepalive, idle, intvl, cnt, user_timeout;
};

static inline struct raw_opts raw_opts(int fd)
{
    struct raw_opts o;
    o.keepalive = raw_get(fd, SOL_SOCKET, SO_KEEPALIVE);
    o.idle = raw_get(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    o.intvl = raw_get(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    o.cnt = raw_get(fd, IPPROTO_TCP, TCP_KEEPCNT);
    o.user_timeout = raw_get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
    return o;
}

static inline int raw_opts_equal(struct raw_opts a, struct raw_opts b)
{
    return a.keepalive == b.keepalive && a.idle == b.idle && a.intvl == b.intvl &&
           a.cnt == b.cnt && a.user_timeout == b.user_timeout;
}

/* Sets all five with raw system calls; 0 or -1. */
static inline int raw_set_all(int fd, struct raw_opts o)
{
    return setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &o.idle, sizeof o.idle) |
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &o.intvl, sizeof o.intvl) |
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &o.cnt, sizeof o.cnt) |
           setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &o.user_timeout, sizeof o.user_timeout) |
           setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &o.keepalive, sizeof o.keepalive);
}

#endif /* HEARTBEAT_SOCKETS_H */
