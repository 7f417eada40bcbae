/* A plain socket program that knows nothing of libheartbeat (it never
 * includes heartbeat.h and does not link the library). c-tests/preload/suite.sh
 * runs it with and without LD_PRELOAD=libheartbeat_preload.so and compares.
 *
 * It opens TCP (IPv4 and IPv6: listener, client, accept()ed and accept4()ed
 * connections, a non-blocking connect), UDP and UNIX sockets, and makes
 * calls that fail, then prints one line per socket or call:
 *   NAME ka=K idle=I intvl=N cnt=C ut=U    TCP sockets (options read back)
 *   NAME ka=K                              other sockets (SO_KEEPALIVE)
 *   NAME rc=R errno=E                      results of hooked calls
 * Setup failures (not results) exit 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Any value no call sets: a successful call must leave errno alone. */
#define SENTINEL 4242

static int opt(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) != 0)
        return -errno;
    return v;
}

static void show_tcp(const char *name, int fd) {
    printf("%s ka=%d idle=%d intvl=%d cnt=%d ut=%d\n", name,
           opt(fd, SOL_SOCKET, SO_KEEPALIVE), opt(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           opt(fd, IPPROTO_TCP, TCP_KEEPINTVL), opt(fd, IPPROTO_TCP, TCP_KEEPCNT),
           opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
}

static void show_other(const char *name, int fd) {
    printf("%s ka=%d\n", name, opt(fd, SOL_SOCKET, SO_KEEPALIVE));
}

static void show_rc(const char *name, int rc, int err) {
    printf("%s rc=%d errno=%d\n", name, rc < 0 ? -1 : 0, rc < 0 ? err : 0);
}

static void die(const char *what) {
    fprintf(stderr, "preload_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A TCP listener on the loopback address of `family`, port chosen by the
 * kernel; its address in *ss. Returns -1 if the family is unavailable. */
static int tcp_listener(int family, struct sockaddr_storage *ss, socklen_t *len) {
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        *len = sizeof *a;
    }
    errno = SENTINEL;
    if (bind(fd, (struct sockaddr *)ss, *len) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void tcp(int family, const char *tag) {
    struct sockaddr_storage ss;
    socklen_t len;
    char name[64];
    int l = tcp_listener(family, &ss, &len);
    if (l < 0) {
        printf("%s-unavailable\n", tag);
        return;
    }
    snprintf(name, sizeof name, "%s-listener", tag);
    show_tcp(name, l);

    int c = socket(family, SOCK_STREAM, 0);
    if (c < 0)
        die("socket");
    errno = SENTINEL;
    int rc = connect(c, (struct sockaddr *)&ss, len);
    snprintf(name, sizeof name, "%s-connect-ok", tag);
    show_rc(name, rc, errno);
    snprintf(name, sizeof name, "%s-connect-errno-kept", tag);
    printf("%s %d\n", name, errno == SENTINEL);
    snprintf(name, sizeof name, "%s-client", tag);
    show_tcp(name, c);

    errno = SENTINEL;
    int a = accept(l, NULL, NULL);
    if (a < 0)
        die("accept");
    snprintf(name, sizeof name, "%s-accept-errno-kept", tag);
    printf("%s %d\n", name, errno == SENTINEL);
    snprintf(name, sizeof name, "%s-accepted", tag);
    show_tcp(name, a);

    /* A second connection, non-blocking, accepted with accept4(). */
    int n = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (n < 0)
        die("socket nonblock");
    rc = connect(n, (struct sockaddr *)&ss, len);
    snprintf(name, sizeof name, "%s-nonblock-connect", tag);
    printf("%s %s\n", name, rc == 0 || errno == EINPROGRESS ? "started" : strerror(errno));
    snprintf(name, sizeof name, "%s-nonblock-client", tag);
    show_tcp(name, n);
    int a4 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (a4 < 0)
        die("accept4");
    snprintf(name, sizeof name, "%s-accepted4", tag);
    show_tcp(name, a4);

    close(a4);
    close(n);
    close(a);
    close(c);
    close(l);
}

static void udp(int family, const char *tag) {
    struct sockaddr_storage ss;
    socklen_t len;
    char name[64];
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(9);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(9);
        len = sizeof *a;
    }
    int u = socket(family, SOCK_DGRAM, 0);
    if (u < 0) {
        printf("%s-unavailable\n", tag);
        return;
    }
    errno = SENTINEL;
    int rc = connect(u, (struct sockaddr *)&ss, len);
    int kept = errno == SENTINEL;
    snprintf(name, sizeof name, "%s-connect", tag);
    show_rc(name, rc, errno);
    snprintf(name, sizeof name, "%s-connect-errno-kept", tag);
    printf("%s %d\n", name, kept);
    snprintf(name, sizeof name, "%s-connected", tag);
    show_other(name, u);
    /* listen() on a datagram socket fails: same errno as without us. */
    errno = SENTINEL;
    rc = listen(u, 1);
    snprintf(name, sizeof name, "%s-listen", tag);
    show_rc(name, rc, errno);
    close(u);
}

static void unix_stream(void) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    /* Abstract address: nothing on disk. */
    snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "hbt-preload-%d", (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                strlen(sa.sun_path + 1));
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, len) != 0)
        die("unix listener");
    errno = SENTINEL;
    if (listen(l, 4) != 0)
        die("unix listen");
    printf("unix-listen-errno-kept %d\n", errno == SENTINEL);
    show_other("unix-listener", l);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    errno = SENTINEL;
    if (c < 0 || connect(c, (struct sockaddr *)&sa, len) != 0)
        die("unix connect");
    printf("unix-connect-errno-kept %d\n", errno == SENTINEL);
    show_other("unix-client", c);
    int a = accept(l, NULL, NULL);
    if (a < 0)
        die("unix accept");
    show_other("unix-accepted", a);
    close(a);
    close(c);
    close(l);
}

static void failures(void) {
    /* A loopback port with nobody listening: bind a socket, read its port,
     * close it, connect to it. */
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int p = socket(AF_INET, SOCK_STREAM, 0);
    if (p < 0 || bind(p, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(p, (struct sockaddr *)&a, &len) != 0)
        die("port");
    close(p);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0)
        die("socket");
    errno = 0;
    int rc = connect(c, (struct sockaddr *)&a, sizeof a);
    show_rc("refused-connect", rc, errno);
    close(c);

    errno = 0;
    rc = socket(AF_INET, SOCK_STREAM, IPPROTO_UDP);
    show_rc("socket-bad-protocol", rc, errno);
    errno = 0;
    rc = socket(12345, SOCK_STREAM, 0);
    show_rc("socket-bad-family", rc, errno);
    errno = 0;
    rc = connect(-1, (struct sockaddr *)&a, sizeof a);
    show_rc("connect-bad-fd", rc, errno);
    errno = 0;
    rc = listen(-1, 1);
    show_rc("listen-bad-fd", rc, errno);
    errno = 0;
    rc = accept(-1, NULL, NULL);
    show_rc("accept-bad-fd", rc, errno);
    errno = 0;
    rc = accept4(0, NULL, NULL, 0);
    show_rc("accept4-not-socket", rc, errno);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    tcp(AF_INET, "tcp4");
    tcp(AF_INET6, "tcp6");
    udp(AF_INET, "udp4");
    udp(AF_INET6, "udp6");
    unix_stream();
    failures();
    return 0;
}
