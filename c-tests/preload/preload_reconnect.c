/* Issue 8, defect 9: the preload library configures a socket once, before
 * its first connection attempt, and never again: the connect() calls a
 * program makes to complete or check a non-blocking connection, and a
 * second listen(), leave the options the program set in between alone. A
 * plain program (no heartbeat.h), run by c-tests/preload/suite.sh under
 * LD_PRELOAD=libheartbeat_preload.so with HEARTBEAT_IDLE=IDLE:
 *
 *   preload_reconnect IDLE     ok/not ok lines, one per case
 *   preload_reconnect cost     the calls whose system calls the suite
 *                              counts with strace, each after a marker
 *                              write(-1, "MARK name") (EBADF, no effect)
 *
 * In each case the library's configuration is checked first (idle = IDLE
 * after the first attempt), so that a run without the library fails
 * instead of passing for nothing; then the program sets idle 600 and
 * SO_KEEPALIVE 0 itself, makes the call again, and reads them back. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int failures;

static int get(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) != 0)
        return -errno;
    return v;
}

static void set(int fd, int level, int name, int v) {
    if (setsockopt(fd, level, name, &v, sizeof v) != 0) {
        perror("setsockopt");
        exit(1);
    }
}

static void die(const char *what) {
    fprintf(stderr, "preload_reconnect: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void report(int ok, const char *fmt, const char *name, int a, int b) {
    printf("%s - %s: ", ok ? "ok" : "not ok", name);
    printf(fmt, a, b);
    printf("\n");
    failures += !ok;
}

/* The library configured `fd` (idle = want, keepalive on). */
static int configured(const char *name, int fd, int want) {
    int idle = get(fd, IPPROTO_TCP, TCP_KEEPIDLE), ka = get(fd, SOL_SOCKET, SO_KEEPALIVE);
    int ok = idle == want && ka == 1;
    if (!ok)
        report(0, "not configured by the library first (idle %d keepalive %d)", name, idle, ka);
    return ok;
}

/* The program's own values, then the check that they stayed. */
static void program_sets(int fd) {
    set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 600);
    set(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
}
static void kept(const char *name, int fd) {
    int idle = get(fd, IPPROTO_TCP, TCP_KEEPIDLE), ka = get(fd, SOL_SOCKET, SO_KEEPALIVE);
    report(idle == 600 && ka == 0, "the program's idle 600 and keepalive 0 stay (idle %d keepalive %d)",
           name, idle, ka);
}

static struct sockaddr_in loopback(void) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A listener with `backlog`; its address in *a. */
static int listener(int backlog, struct sockaddr_in *a) {
    *a = loopback();
    socklen_t len = sizeof *a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)a, sizeof *a) != 0 || listen(l, backlog) != 0 ||
        getsockname(l, (struct sockaddr *)a, &len) != 0)
        die("listener");
    return l;
}

/* An address nobody listens on. */
static struct sockaddr_in closed_port(void) {
    struct sockaddr_in a = loopback();
    socklen_t len = sizeof a;
    int p = socket(AF_INET, SOCK_STREAM, 0);
    if (p < 0 || bind(p, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(p, (struct sockaddr *)&a, &len) != 0)
        die("port");
    close(p);
    return a;
}

static int connect_to(int fd, const struct sockaddr_in *a) {
    return connect(fd, (const struct sockaddr *)a, sizeof *a);
}

static void wait_writable(int fd) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 5000) != 1)
        die("poll");
}

/* Non-blocking connect completed, then connect() again (0 once, then
 * EISCONN, as programs check completion). */
static void eisconn(int want) {
    const char *name = "non-blocking connect, completed, connect() again (EISCONN)";
    struct sockaddr_in a;
    int l = listener(8, &a);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c < 0)
        die("socket");
    int rc = connect_to(c, &a);
    if (rc != 0 && errno != EINPROGRESS)
        die("connect");
    if (configured(name, c, want)) {
        program_sets(c);
        wait_writable(c);
        rc = connect_to(c, &a); /* completes: 0, or EISCONN if already done */
        int e = errno;
        int rc2 = connect_to(c, &a);
        int e2 = errno;
        if (!(rc == 0 || e == EISCONN) || rc2 != -1 || e2 != EISCONN)
            report(0, "unexpected connect() results (errno %d, then %d)", name, rc ? e : 0, e2);
        else
            kept(name, c);
    }
    close(c);
    close(l);
}

/* Still connecting (the listener's queue is full, so the SYN is dropped):
 * connect() again gives EALREADY. */
static void ealready(int want) {
    const char *name = "non-blocking connect in progress, connect() again (EALREADY)";
    struct sockaddr_in a;
    int l = listener(0, &a);
    /* Fill the accept queue (never accepted). */
    int f = socket(AF_INET, SOCK_STREAM, 0);
    if (f < 0 || connect_to(f, &a) != 0)
        die("filler");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c < 0)
        die("socket");
    int rc = connect_to(c, &a);
    if (rc == 0 || errno != EINPROGRESS)
        die("connect did not stay in progress");
    if (configured(name, c, want)) {
        program_sets(c);
        rc = connect_to(c, &a);
        int e = errno;
        if (rc != -1 || e != EALREADY)
            report(0, "connect() again gave rc %d errno %d, expected EALREADY", name, rc, e);
        else
            kept(name, c);
    }
    close(c);
    close(f);
    close(l);
}

/* listen() twice (a program changing its backlog). */
static void listen_twice(int want) {
    const char *name = "listen() again";
    struct sockaddr_in a;
    int l = listener(8, &a);
    if (configured(name, l, want)) {
        program_sets(l);
        if (listen(l, 16) != 0)
            die("listen again");
        kept(name, l);
    }
    close(l);
}

/* A non-blocking connect refused: the connect() that checks it reports
 * ECONNREFUSED and changes nothing; the kernel then resets the socket, and
 * the next connect() is a new first attempt, configured again. */
static void refused(int want) {
    const char *name = "non-blocking connect refused, connect() again (ECONNREFUSED)";
    struct sockaddr_in dead = closed_port();
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c < 0)
        die("socket");
    int rc = connect_to(c, &dead);
    if (rc == 0 || errno != EINPROGRESS) {
        /* Refused at once (no check call to make): nothing to test. */
        printf("ok - %s: refused at once (errno %d), no second call to check\n", name, errno);
        close(c);
        return;
    }
    if (configured(name, c, want)) {
        program_sets(c);
        wait_writable(c);
        rc = connect_to(c, &dead);
        int e = errno;
        if (rc != -1 || e != ECONNREFUSED)
            report(0, "connect() again gave rc %d errno %d, expected ECONNREFUSED", name, rc, e);
        else
            kept(name, c);
        /* A new attempt on the reset socket is configured like a new one. */
        struct sockaddr_in a;
        int l = listener(8, &a);
        rc = connect_to(c, &a);
        if (rc != 0 && errno != EINPROGRESS)
            die("connect after the refusal");
        int idle = get(c, IPPROTO_TCP, TCP_KEEPIDLE), ka = get(c, SOL_SOCKET, SO_KEEPALIVE);
        report(idle == want && ka == 1,
               "a new attempt after the refusal is configured again (idle %d keepalive %d)",
               "connect() after a refused attempt", idle, ka);
        close(l);
    }
    close(c);
}

static void mark(const char *name) {
    char buf[64];
    int n = snprintf(buf, sizeof buf, "MARK %s", name);
    (void)!write(-1, buf, (size_t)n);
}

/* The calls the suite counts (see suite.sh, preload-syscall-cost): each
 * hooked call after its own marker. */
static void cost(void) {
    mark("socket-tcp");
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback();
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0)
        die("bind");
    mark("listen-new");
    listen(l, 8);
    mark("listen-again");
    listen(l, 8);
    mark("socket-tcp-2");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    mark("connect-new");
    connect_to(c, &a);
    wait_writable(c);
    mark("connect-again");
    connect_to(c, &a);
    mark("accept");
    int n = accept(l, NULL, NULL);
    mark("socket-udp");
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    mark("connect-udp");
    connect_to(u, &a);
    /* A UNIX stream listener, client and accepted connection. */
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "hbt-cost-%d", (int)getpid());
    socklen_t unlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(un.sun_path + 1));
    int ul = socket(AF_UNIX, SOCK_STREAM, 0), uc = socket(AF_UNIX, SOCK_STREAM, 0);
    if (ul < 0 || uc < 0 || bind(ul, (struct sockaddr *)&un, unlen) != 0)
        die("unix");
    mark("listen-unix");
    listen(ul, 1);
    mark("connect-unix");
    connect(uc, (struct sockaddr *)&un, unlen);
    mark("accept-unix");
    int ua = accept(ul, NULL, NULL);
    close(ua);
    close(uc);
    close(ul);
    /* MPTCP, if the kernel has it: the suite expects its cost only then. */
    int m = socket(AF_INET, SOCK_STREAM, 262 /* IPPROTO_MPTCP */);
    printf("mptcp %s\n", m >= 0 ? "available" : "unavailable");
    mark("connect-mptcp");
    if (m >= 0)
        connect_to(m, &a);
    mark("end");
    if (m >= 0)
        close(m);
    close(u);
    close(n);
    close(c);
    close(l);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "cost") == 0) {
        cost();
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: preload_reconnect IDLE|cost\n");
        return 2;
    }
    int want = atoi(argv[1]);
    eisconn(want);
    ealready(want);
    listen_twice(want);
    refused(want);
    return failures ? 1 : 0;
}
