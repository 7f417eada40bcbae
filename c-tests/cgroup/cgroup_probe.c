/*
 * cgroup_probe: a plain TCP program for the heartbeat-cgroup tests. It
 * never sets a socket option (it only reads them back with getsockopt()),
 * never includes heartbeat.h and never links the library. Built twice:
 *
 *   cgroup_probe_static   linked statically, libc's socket calls;
 *   cgroup_probe_raw      every socket call made with syscall(SYS_...), as
 *                         Go binaries do (no libc socket wrapper at all).
 *
 * Modes (one line of output per socket: "NAME ka=K idle=I intvl=N cnt=C ut=U"):
 *   pair 4|6              listen on loopback, connect to it, accept: the
 *                         connected socket ("client") and the accepted one
 *                         ("accepted").
 *   connect HOST PORT     connect to a server ("connected"), close.
 *   serve HOST PORT READY listen, create the file READY, accept one
 *                         connection ("served"), close it.
 *   wait HOST PORT BOUND_MS [CUT]
 *                         connect ("connected", then "local port N"),
 *                         wait for the file $HB_GO if HB_GO is set (at
 *                         most 10 s), send one byte, read the server's
 *                         answer and note the time (the last received
 *                         data), run the shell command CUT if given, then
 *                         wait (poll(), at most BOUND_MS) for the
 *                         connection to end:
 *                         "ended errno=NAME after MS ms mono_ns=NS",
 *                         "eof after MS ms", or "not ended within BOUND_MS ms".
 *   loop N                N loopback pairs (IPv4), one after the other, nothing
 *                         printed per pair: "pairs N ns_per_pair X" (the
 *                         benchmark of the per-connection cost).
 * Exit status 0 when the mode ran, 1 when a call failed (with a message).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef HB_RAW
#define SOCKET(d, t, p) ((int)syscall(SYS_socket, (d), (t), (p)))
#define CONNECT(f, a, l) ((int)syscall(SYS_connect, (f), (a), (l)))
#define BIND(f, a, l) ((int)syscall(SYS_bind, (f), (a), (l)))
#define LISTEN(f, n) ((int)syscall(SYS_listen, (f), (n)))
#define ACCEPT(f) ((int)syscall(SYS_accept4, (f), NULL, NULL, 0))
#define GETSOCKOPT(f, l, o, v, n) ((int)syscall(SYS_getsockopt, (f), (l), (o), (v), (n)))
#define GETSOCKNAME(f, a, l) ((int)syscall(SYS_getsockname, (f), (a), (l)))
#else
#define SOCKET socket
#define CONNECT connect
#define BIND bind
#define LISTEN listen
#define ACCEPT(f) accept((f), NULL, NULL)
#define GETSOCKOPT getsockopt
#define GETSOCKNAME getsockname
#endif

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int die(const char *what)
{
    fprintf(stderr, "cgroup_probe: %s: %s\n", what, strerror(errno));
    return 1;
}

static int get(int fd, int level, int name)
{
    int v = -1;
    socklen_t n = sizeof(v);
    if (GETSOCKOPT(fd, level, name, &v, &n) != 0)
        return -1;
    return v;
}

static void show(const char *name, int fd)
{
    printf("%s ka=%d idle=%d intvl=%d cnt=%d ut=%d\n", name, get(fd, SOL_SOCKET, SO_KEEPALIVE),
           get(fd, IPPROTO_TCP, TCP_KEEPIDLE), get(fd, IPPROTO_TCP, TCP_KEEPINTVL),
           get(fd, IPPROTO_TCP, TCP_KEEPCNT), get(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
    fflush(stdout);
}

/* HOST (an IPv4 or IPv6 literal) and PORT into a socket address. */
static int address(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return AF_INET;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return AF_INET6;
    }
    return -1;
}

static int dial(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = address(host, port, &ss, &len);
    if (fam < 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = SOCKET(fam, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (CONNECT(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int listener(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = address(host, port, &ss, &len);
    if (fam < 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = SOCKET(fam, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (BIND(fd, (struct sockaddr *)&ss, len) != 0 || LISTEN(fd, 8) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int pair(const char *fam)
{
    const char *host = strcmp(fam, "6") == 0 ? "::1" : "127.0.0.1";
    int l = listener(host, 0);
    if (l < 0)
        return die("listen");
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (GETSOCKNAME(l, (struct sockaddr *)&ss, &len) != 0)
        return die("getsockname");
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    int c = dial(host, port);
    if (c < 0)
        return die("connect");
    int a = ACCEPT(l);
    if (a < 0)
        return die("accept");
    show("client", c);
    show("accepted", a);
    close(c);
    close(a);
    close(l);
    return 0;
}

/* Waits (at most ms) for fd to be readable; then reads. Returns what
 * recv() returned (-2: timeout), errno in *err. */
static long wait_end(int fd, int ms, int *err)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r == 0)
        return -2;
    char b[64];
    errno = 0;
    long n = recv(fd, b, sizeof(b), 0);
    *err = errno;
    return n;
}

static int connect_mode(const char *host, int port)
{
    int c = dial(host, port);
    if (c < 0)
        return die("connect");
    show("connected", c);
    close(c);
    return 0;
}

static int serve(const char *host, int port, const char *ready)
{
    int l = listener(host, port);
    if (l < 0)
        return die("listen");
    FILE *f = fopen(ready, "w");
    if (!f)
        return die(ready);
    fclose(f);
    struct pollfd p = {.fd = l, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) {
        fprintf(stderr, "cgroup_probe: no connection within 10 s\n");
        return 1;
    }
    int a = ACCEPT(l);
    if (a < 0)
        return die("accept");
    show("served", a);
    close(a);
    close(l);
    return 0;
}

static const char *errname(int e)
{
    switch (e) {
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    default: return "other";
    }
}

static int wait_mode(const char *host, int port, int bound, const char *cut)
{
    int c = dial(host, port);
    if (c < 0)
        return die("connect");
    show("connected", c);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (GETSOCKNAME(c, (struct sockaddr *)&ss, &len) != 0)
        return die("getsockname");
    printf("local port %d\n", ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                              : ((struct sockaddr_in *)&ss)->sin_port));
    const char *go = getenv("HB_GO");
    if (go && *go) {
        struct stat st;
        for (int i = 0; i < 1000 && stat(go, &st) != 0; i++)
            usleep(10000);
    }
    if (send(c, "x", 1, 0) != 1)
        return die("send");
    int err;
    long n = wait_end(c, 5000, &err);
    if (n <= 0) {
        fprintf(stderr, "cgroup_probe: no answer from the server (%ld)\n", n);
        return 1;
    }
    double t0 = now_ms(); /* the last received data */
    if (cut && *cut && system(cut) != 0) {
        fprintf(stderr, "cgroup_probe: the cut command failed: %s\n", cut);
        return 1;
    }
    printf("cut %.0f ms after the last data\n", now_ms() - t0);
    int left = bound - (int)(now_ms() - t0);
    n = wait_end(c, left > 0 ? left : 0, &err);
    double el = now_ms() - t0;
    long long ns = now_ns();
    if (n == -2)
        printf("not ended within %d ms\n", bound);
    else if (n == 0)
        printf("eof after %.0f ms\n", el);
    else if (n < 0)
        printf("ended errno=%s after %.0f ms mono_ns=%lld\n", errname(err), el, ns);
    else
        printf("data after %.0f ms\n", el);
    fflush(stdout);
    close(c);
    return 0;
}

static int loop(int n)
{
    int l = listener("127.0.0.1", 0);
    if (l < 0)
        return die("listen");
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    if (GETSOCKNAME(l, (struct sockaddr *)&sa, &len) != 0)
        return die("getsockname");
    long long t0 = now_ns();
    for (int i = 0; i < n; i++) {
        int c = dial("127.0.0.1", ntohs(sa.sin_port));
        int a = c >= 0 ? ACCEPT(l) : -1;
        if (a < 0)
            return die("connect/accept");
        close(c);
        close(a);
    }
    printf("pairs %d ns_per_pair %lld\n", n, (now_ns() - t0) / n);
    close(l);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "pair") == 0)
        return pair(argv[2]);
    if (argc == 4 && strcmp(argv[1], "connect") == 0)
        return connect_mode(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], atoi(argv[3]), argv[4]);
    if (argc == 3 && strcmp(argv[1], "loop") == 0)
        return loop(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "wait") == 0)
        return wait_mode(argv[2], atoi(argv[3]), atoi(argv[4]), argc == 6 ? argv[5] : NULL);
    fprintf(stderr, "usage: cgroup_probe pair 4|6 | connect HOST PORT | serve HOST PORT READY | "
                    "wait HOST PORT BOUND_MS [CUT] | loop N\n");
    return 2;
}
