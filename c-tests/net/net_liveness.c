/* Network liveness tests of libheartbeat, on a real cut link.
 *
 * Run inside the "user" namespace of a pair made by c-tests/lib/netns.sh (see
 * c-tests/net/suite.sh):
 *
 *   ip netns exec USER_NS net_liveness CASE [args]
 *
 * Environment: HB_PEER_NS (name of the peer namespace), HB_CUT (shell command
 * that cuts the path), HB_RESTORE (command that restores it), HB_FAMILY (4 or
 * 6). The peer is a child process (fork) that moves itself into HB_PEER_NS
 * with setns() and obeys one-byte commands sent over a socketpair; the
 * library's user is this process. Every wait is bounded; the peer dies with
 * this process (PR_SET_PDEATHSIG) or when its command channel closes.
 *
 * Cases (each prints "ok - ..." / "not ok - ..." and "# measured ..." lines):
 *   idle        case 1/7: heartbeat(fd,1,1,3); blocked recv fails ETIMEDOUT at
 *               0.9x-1.1x heartbeat_deadline_ms(1,1,3) after the last received
 *               segment; status PROBING with rising probes, TIMED_OUT after.
 *   control     case 2: same connection without heartbeat(): still open at
 *               1.5x the deadline.
 *   unacked     case 3: data in flight never acknowledged: with user_timeout
 *               = deadline it fails within the deadline; without, it is still
 *               open at 2x the deadline.
 *   restart     case 4: the peer's socket vanishes while the link is down;
 *               link back; the next probe is answered by RST: ECONNRESET and
 *               HEARTBEAT_PEER_RESET.
 *   fin         case 5: orderly close: CLOSED while unread data stays readable.
 *   listener    case 6: heartbeat() once on a listening socket; accepted
 *               connections inherit it and detect the cut on their own.
 *   detect I N C K   benchmark: K connections with heartbeat(I,N,C); prints
 *               "DETECT I N C measured_ms deadline_ms ETIMEDOUT|other errno"
 *               per connection (measured_ms -1: not detected in 1.5x).
 *   within MS idle|unacked   issue 11: heartbeat_within(fd, MS, 0) on one
 *               connection, with HEARTBEAT_WITHIN_KEEP_SLOW_READERS on a
 *               second; idle: both dead at most MS after the last received
 *               data and not before user_timeout_ms; unacked (data sent
 *               right after the cut, never acknowledged): the first dead
 *               within the same bounds, the second still open at 1.5 x MS
 *               (the documented cost of keeping slow readers).
 *   detectw MS idle|unacked K   benchmark: K connections with
 *               heartbeat_within(fd, MS, 0); prints "DETECTW MS MODE
 *               measured_ms lower_ms errno" per connection (-1: not in 1.5x).
 *   stall MS    a peer that stops reading (alive): STALLED, never PROBING,
 *               through the whole wait; with KEEP_SLOW_READERS it survives
 *               3 x MS, then reads and is ALIVE again; with the default it
 *               times out, measured from the window closing.
 *   stallcut MS  the same peer vanishes while its window is shut: the
 *               default connection is dead at most MS after the last
 *               acknowledgement; the KEEP_SLOW_READERS one is PROBING and
 *               still open at 2 x MS (the cost).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"
#include "testutil.h"

#define PEER_PORT 7000 /* the peer listens here (peer namespace) */
#define USER_PORT 7001 /* the user listens here (case listener) */
#define MAXC 8

static int family = AF_INET;
static const char *cut_cmd, *restore_cmd, *peer_ns;
static int failures;

/* ---------------------------------------------------------------- utils */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void sleep_msf(double ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (time_t)(ms / 1000) * 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void result(int ok, const char *name)
{
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
    fflush(stdout);
    if (!ok)
        failures++;
}

#define EXPECT(cond)                                                                  \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stdout, "#   %s:%d: expected %s\n", __FILE__, __LINE__, #cond);   \
            ok = 0;                                                                   \
        }                                                                             \
    } while (0)


static socklen_t make_addr(struct sockaddr_storage *ss, int user_side, int port)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, user_side ? "2001:db8::1" : "2001:db8::2", &a->sin6_addr);
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, user_side ? "192.0.2.1" : "192.0.2.2", &a->sin_addr);
    return sizeof *a;
}

static int listen_on(int user_side, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(&ss, user_side, port);
    int one = 1, fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_to(int user_side, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(&ss, user_side, port);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0}; /* bounded connect */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int accept_bounded(int lfd, int ms)
{
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return -1;
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static int set_rcvtimeo(int fd, double ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms - (time_t)(ms / 1000) * 1000) * 1000)};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static int run_cmd(const char *what, const char *cmd)
{
    if (cmd == NULL || *cmd == '\0') {
        printf("#   no %s command given\n", what);
        return -1;
    }
    int rc = system(cmd);
    if (rc != 0)
        printf("#   %s command failed (%d): %s\n", what, rc, cmd);
    return rc == 0 ? 0 : -1;
}

/* ----------------------------------------------------------------- peer */

static pid_t peer_pid = -1;
static int peer_ctl = -1;

static void peer_main(int ctl)
{
    char path[512];
    int lfd = -1, conns[MAXC], n = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1);
    snprintf(path, sizeof path, "/run/netns/%s", peer_ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
        perror("peer: setns");
        _exit(1);
    }
    close(nsfd);
    for (;;) {
        char cmd, reply = 'E';
        struct pollfd p = {ctl, POLLIN, 0};
        if (poll(&p, 1, 60000) != 1 || read(ctl, &cmd, 1) != 1)
            _exit(0); /* the user is gone, or 60 s of silence */
        switch (cmd) {
        case 'L': /* listen */
            lfd = listen_on(0, PEER_PORT);
            reply = lfd >= 0 ? 'l' : 'E';
            break;
        case 'A': /* accept one */
            if (n < MAXC && (conns[n] = accept_bounded(lfd, 5000)) >= 0) {
                n++;
                reply = 'a';
            }
            break;
        case 'N': /* connect to the user's listener */
            if (n < MAXC && (conns[n] = connect_to(1, USER_PORT)) >= 0) {
                n++;
                reply = 'n';
            }
            break;
        case 'D': /* one byte of data on every connection */
            reply = 'd';
            for (int i = 0; i < n; i++)
                if (send(conns[i], "x", 1, MSG_NOSIGNAL) != 1)
                    reply = 'E';
            break;
        case 'B': /* last words, then an orderly close */
            reply = 'b';
            for (int i = 0; i < n; i++) {
                if (send(conns[i], "bye", 3, MSG_NOSIGNAL) != 3)
                    reply = 'E';
                close(conns[i]);
            }
            n = 0;
            break;
        case 'R': { /* read everything waiting on every connection */
            static char sink[65536];
            reply = 'r';
            for (int i = 0; i < n; i++)
                for (int k = 0; k < 100000; k++) /* bounded */
                    if (recv(conns[i], sink, sizeof sink, MSG_DONTWAIT) <= 0)
                        break;
            break;
        }
        case 'K': { /* crash: the sockets vanish (RST, no lingering state) */
            struct linger lg = {1, 0};
            reply = 'k';
            for (int i = 0; i < n; i++) {
                setsockopt(conns[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(conns[i]);
            }
            n = 0;
            break;
        }
        default:
            break;
        }
        if (write(ctl, &reply, 1) != 1)
            _exit(0);
    }
}

static int peer_start(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    fflush(stdout);
    peer_pid = fork();
    if (peer_pid < 0)
        return -1;
    if (peer_pid == 0) {
        close(sv[0]);
        peer_main(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    peer_ctl = sv[0];
    return 0;
}

/* One command; 0 if the peer acknowledged it within 10 s. */
static int peer(char cmd)
{
    char r = 0;
    struct pollfd p = {peer_ctl, POLLIN, 0};
    if (write(peer_ctl, &cmd, 1) != 1 || poll(&p, 1, 10000) != 1 || read(peer_ctl, &r, 1) != 1)
        return -1;
    if (r == 'E' || r != (char)(cmd | 0x20)) {
        printf("#   peer command %c failed\n", cmd);
        return -1;
    }
    return 0;
}

static void peer_stop(void)
{
    if (peer_ctl >= 0)
        close(peer_ctl);
    if (peer_pid > 0) {
        for (int i = 0; i < 100; i++) { /* bounded: 1 s, then kill */
            if (waitpid(peer_pid, NULL, WNOHANG) == peer_pid)
                return;
            sleep_msf(10);
        }
        kill(peer_pid, SIGKILL);
        waitpid(peer_pid, NULL, 0);
    }
}

/* Connections from this process to the peer (n of them), or accepted from
 * the peer's connections to our listener `lfd` when lfd >= 0. */
static int open_conns(int *fds, int n, int lfd)
{
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    if (lfd < 0 && peer('L') != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (lfd >= 0) {
            if (peer('N') != 0 || (fds[i] = accept_bounded(lfd, 5000)) < 0)
                return -1;
        } else if ((fds[i] = connect_to(0, PEER_PORT)) < 0 || peer('A') != 0) {
            return -1;
        }
    }
    return 0;
}

/* The peer sends one byte on every connection; we read it. The returned
 * times are taken right after each recv: the last segment received. */
static int last_data(int *fds, int n, double *t0)
{
    char b;
    if (peer('D') != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        set_rcvtimeo(fds[i], 5000);
        if (recv(fds[i], &b, 1, 0) != 1)
            return -1;
        t0[i] = now_ms();
    }
    return 0;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* --------------------------------------------------------------- sampler */

/* Samples heartbeat_status() of fds[0] (the one blocked in recv()) and of
 * fds[1] (never read: its first terminal state and error are kept) every
 * 20 ms until fds[1] is terminal or `until`. fds[0] is sampled only until
 * `sample0_until`, safely before it can fail: on a failed connection the
 * status call takes the pending error, and the blocked recv() would then
 * return 0 instead of the error (whoever asks first gets it). */
struct sampler {
    int fds[2];
    double t0, until;
    double sample0_until; /* fds[0] is sampled only before this time: see below */
    double probe_first_ms[8]; /* when probes == k was first seen (fds[0]) */
    int max_probes, probing_seen, bad_state_seen;
    struct heartbeat_status final; /* of fds[1] */
    double final_ms;
    int status_errors;
};

static void *sampler_run(void *arg)
{
    struct sampler *s = arg;
    for (int i = 0; i < 8; i++)
        s->probe_first_ms[i] = -1;
    s->final.peer = -1;
    while (now_ms() < s->until) {
        struct heartbeat_status st;
        if (now_ms() >= s->sample0_until) {
            /* not any more */
        } else if (heartbeat_status(s->fds[0], &st) != HEARTBEAT_OK) {
            s->status_errors++;
        } else if (st.tcp_state == 1) { /* still established */
            if (st.probes > 0 && st.peer != HEARTBEAT_PEER_PROBING)
                s->bad_state_seen++;
            if (st.peer == HEARTBEAT_PEER_PROBING)
                s->probing_seen++;
            if (st.probes < 8 && s->probe_first_ms[st.probes] < 0)
                s->probe_first_ms[st.probes] = now_ms() - s->t0;
            if ((int)st.probes > s->max_probes)
                s->max_probes = (int)st.probes;
        }
        if (heartbeat_status(s->fds[1], &st) != HEARTBEAT_OK) {
            s->status_errors++;
        } else if (st.peer != HEARTBEAT_PEER_ALIVE && st.peer != HEARTBEAT_PEER_PROBING) {
            s->final = st;
            s->final_ms = now_ms() - s->t0;
            break;
        }
        sleep_msf(20);
    }
    return NULL;
}

/* ------------------------------------------------------------------ cases */

/* Cases 1, 2, 6 and 7: an idle connection, the link is cut. */
static void case_idle(int with_heartbeat, int via_listener, const char *name)
{
    int ok = 1, fds[2] = {-1, -1}, lfd = -1;
    double t0[2], d = heartbeat_deadline_ms(1, 1, 3);
    struct sampler s;
    pthread_t th;
    int started = 0;
    memset(&s, 0, sizeof s);

    if (via_listener) {
        EXPECT((lfd = listen_on(1, USER_PORT)) >= 0);
        /* Configured once, on the listener only. */
        EXPECT(lfd >= 0 && heartbeat(lfd, 1, 1, 3) == HEARTBEAT_OK);
    }
    if (!ok || open_conns(fds, 2, lfd) != 0) {
        printf("#   setup failed: %s\n", strerror(errno));
        ok = 0;
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        if (via_listener) {
            struct heartbeat_config c;
            EXPECT(heartbeat_get(fds[i], &c) == HEARTBEAT_OK);
            printf("# accepted fd %d inherited: enabled %d idle %d intvl %d cnt %d\n", i,
                   c.enabled, c.idle, c.intvl, c.cnt);
            EXPECT(c.enabled == 1 && c.idle == 1 && c.intvl == 1 && c.cnt == 3);
        } else if (with_heartbeat) {
            EXPECT(heartbeat(fds[i], 1, 1, 3) == HEARTBEAT_OK);
        }
    }
    if (!ok || last_data(fds, 2, t0) != 0 || run_cmd("cut", cut_cmd) != 0) {
        ok = 0;
        goto out;
    }
    double cut_at = now_ms() - t0[0];
    /* With heartbeat(): the bound of the wait; without: the control's horizon. */
    double wait = 1.5 * d;
    s.fds[0] = fds[0];
    s.fds[1] = fds[1];
    s.t0 = t0[0];
    s.until = t0[0] + wait;
    s.sample0_until = t0[0] + 0.85 * d; /* after the 3rd probe (3 s), before the end (4 s) */
    started = pthread_create(&th, NULL, sampler_run, &s) == 0;
    EXPECT(started);

    /* The blocked recv(), bounded by SO_RCVTIMEO. */
    char b;
    set_rcvtimeo(fds[0], wait - (now_ms() - t0[0]));
    errno = 0;
    ssize_t r = recv(fds[0], &b, 1, 0);
    int e = errno;
    double el = now_ms() - t0[0];
    if (started)
        pthread_join(th, NULL);
    started = 0;

    if (with_heartbeat) {
        printf("# measured %s: recv() -> %zd %s after %.0f ms (deadline %.0f ms, ratio %.3f; "
               "cut %.0f ms after last data)\n",
               name, r, strerror(e), el, d, el / d, cut_at);
        printf("# measured %s: probes first seen at", name);
        for (int k = 1; k <= 3; k++)
            printf(" %d:%.0fms", k, s.probe_first_ms[k]);
        printf("; second connection: %s error %s after %.0f ms\n", peer_name(s.final.peer),
               strerror(s.final.error), s.final_ms);
        EXPECT(r == -1 && e == ETIMEDOUT);
        EXPECT(el >= 0.9 * d && el <= 1.1 * d);
        /* PROBING, with a rising count, while the recv() was blocked. */
        EXPECT(s.probing_seen > 0 && s.bad_state_seen == 0 && s.status_errors == 0);
        EXPECT(s.probe_first_ms[1] > 0 && s.probe_first_ms[2] > s.probe_first_ms[1] &&
               s.probe_first_ms[3] > s.probe_first_ms[2]);
        /* TIMED_OUT after, with the consumed error handed back... */
        EXPECT(s.final.peer == HEARTBEAT_PEER_TIMED_OUT && s.final.error == ETIMEDOUT);
        EXPECT(s.final_ms >= 0.9 * d && s.final_ms <= 1.1 * d);
        /* ... so recv() on that connection now sees end of file. */
        errno = 0;
        EXPECT(recv(fds[1], &b, 1, MSG_DONTWAIT) == 0);
    } else {
        struct heartbeat_status st;
        printf("# measured %s: no heartbeat(): recv() -> %zd %s after %.0f ms "
               "(deadline %.0f ms, ratio %.3f)\n",
               name, r, strerror(e), el, d, el / d);
        EXPECT(r == -1 && (e == EAGAIN || e == EWOULDBLOCK)); /* our own bound */
        EXPECT(el >= 1.5 * d - 50);
        EXPECT(s.final.peer == -1); /* the second one never ended either */
        EXPECT(heartbeat_status(fds[0], &st) == HEARTBEAT_OK);
        printf("# measured %s: status %s, probes %u, tcp_state %d at %.0f ms\n", name,
               peer_name(st.peer), st.probes, st.tcp_state, now_ms() - t0[0]);
        EXPECT(st.peer == HEARTBEAT_PEER_ALIVE && st.tcp_state == 1 && st.probes == 0);
    }
out:
    close_all(fds, 2);
    if (lfd >= 0)
        close(lfd);
    result(ok, name);
}

/* Case 3: sent data is never acknowledged. fds[0] has user_timeout_ms =
 * deadline, fds[1] has 0 (keepalive alone). */
static void case_unacked(const char *name)
{
    int ok = 1, fds[2] = {-1, -1};
    double t0[2], d = heartbeat_deadline_ms(1, 1, 3);
    struct heartbeat_config cfg = {1, 1, 1, 3, heartbeat_deadline_ms(1, 1, 3)};
    char buf[1000];
    memset(buf, 'u', sizeof buf);

    if (open_conns(fds, 2, -1) != 0) {
        ok = 0;
        goto out;
    }
    EXPECT(heartbeat_apply(fds[0], &cfg) == HEARTBEAT_OK);
    cfg.user_timeout_ms = 0;
    EXPECT(heartbeat_apply(fds[1], &cfg) == HEARTBEAT_OK);
    if (!ok || last_data(fds, 2, t0) != 0 || run_cmd("cut", cut_cmd) != 0) {
        ok = 0;
        goto out;
    }
    double ts = now_ms();
    EXPECT(send(fds[0], buf, sizeof buf, MSG_NOSIGNAL) == (ssize_t)sizeof buf);
    EXPECT(send(fds[1], buf, sizeof buf, MSG_NOSIGNAL) == (ssize_t)sizeof buf);

    /* Every 20 ms (bounded: 2x the deadline after the send): the status of
     * both. The kernel starts TCP_USER_TIMEOUT's clock at the first
     * retransmission (after a tail-loss probe and one RTO, 200 ms each at
     * least), so that moment is recorded too. */
    double failed_at = -1, first_unanswered = -1;
    int e = 0;
    struct heartbeat_status st, st1;
    while (now_ms() - ts < 2 * d) {
        if (failed_at < 0) {
            EXPECT(heartbeat_status(fds[0], &st) == HEARTBEAT_OK);
            if (st.peer == HEARTBEAT_PEER_TIMED_OUT || st.peer == HEARTBEAT_PEER_RESET ||
                st.peer == HEARTBEAT_PEER_CLOSED) {
                failed_at = now_ms() - ts;
                e = st.error;
                printf("# measured %s: with user_timeout_ms=%.0f: %s, error %s\n", name, d,
                       peer_name(st.peer), strerror(e));
                EXPECT(st.peer == HEARTBEAT_PEER_TIMED_OUT);
            } else if (first_unanswered < 0 && (st.retransmits > 0 || st.probes > 0)) {
                first_unanswered = now_ms() - ts;
            }
        }
        EXPECT(heartbeat_status(fds[1], &st1) == HEARTBEAT_OK);
        if (st1.peer != HEARTBEAT_PEER_ALIVE && st1.peer != HEARTBEAT_PEER_PROBING) {
            printf("#   the connection without user timeout failed: %s\n", peer_name(st1.peer));
            ok = 0;
            break;
        }
        sleep_msf(20);
    }
    printf("# measured %s: with user_timeout_ms=%.0f: failed %.0f ms after the send "
           "(ratio %.3f), %.0f ms after the first unanswered retransmission or probe (%.0f ms; "
           "ratio %.3f)\n",
           name, d, failed_at, failed_at / d, failed_at - first_unanswered, first_unanswered,
           (failed_at - first_unanswered) / d);
    printf("# measured %s: without: at %.0f ms after the send: %s, tcp_state %d, retransmits %u, "
           "probes %u\n",
           name, now_ms() - ts, peer_name(st1.peer), st1.tcp_state, st1.retransmits, st1.probes);
    EXPECT(failed_at > 0 && first_unanswered > 0);
    /* Within the deadline, counted as the kernel counts it... */
    EXPECT(failed_at - first_unanswered >= 0.9 * d && failed_at - first_unanswered <= 1.1 * d);
    /* ... and, from the send, at most one tail-loss probe + initial RTO later. */
    EXPECT(failed_at <= d + 1000);
    EXPECT(e == ETIMEDOUT || e == EHOSTUNREACH);
    /* Keepalive alone: still open, its data unanswered. */
    EXPECT(st1.tcp_state == 1 && st1.error == 0 && (st1.retransmits > 0 || st1.probes > 0));
    EXPECT(now_ms() - ts >= 2 * d - 50);
out:
    close_all(fds, 2);
    result(ok, name);
}

/* Case 4: the peer restarts while the link is down. */
static void case_restart(const char *name)
{
    int ok = 1, fds[2] = {-1, -1};
    double t0[2], d = heartbeat_deadline_ms(1, 1, 3);
    struct sampler s;
    pthread_t th;
    int started = 0;
    memset(&s, 0, sizeof s);

    if (open_conns(fds, 2, -1) != 0) {
        ok = 0;
        goto out;
    }
    EXPECT(heartbeat(fds[0], 1, 1, 3) == HEARTBEAT_OK);
    EXPECT(heartbeat(fds[1], 1, 1, 3) == HEARTBEAT_OK);
    if (!ok || last_data(fds, 2, t0) != 0 || run_cmd("cut", cut_cmd) != 0) {
        ok = 0;
        goto out;
    }
    /* The peer's sockets vanish; their RSTs cannot get through. */
    EXPECT(peer('K') == 0);
    s.fds[0] = fds[0];
    s.fds[1] = fds[1];
    s.t0 = t0[0];
    s.until = t0[0] + 1.5 * d;
    s.sample0_until = t0[0] + 1400; /* after the first probe, before the RST can come */
    started = pthread_create(&th, NULL, sampler_run, &s) == 0;
    EXPECT(started);
    /* Link back between the first probe (1 s, lost) and the second (2 s). */
    sleep_msf(1500 - (now_ms() - t0[0]));
    double restored = now_ms() - t0[0];
    EXPECT(run_cmd("restore", restore_cmd) == 0);

    char b;
    set_rcvtimeo(fds[0], 1.5 * d - (now_ms() - t0[0]));
    errno = 0;
    ssize_t r = recv(fds[0], &b, 1, 0);
    int e = errno;
    double el = now_ms() - t0[0];
    if (started)
        pthread_join(th, NULL);
    printf("# measured %s: link restored at %.0f ms; recv() -> %zd %s after %.0f ms "
           "(keepalive deadline %.0f ms); probes before: %d; second connection: %s %s at %.0f ms\n",
           name, restored, r, strerror(e), el, d, s.max_probes, peer_name(s.final.peer),
           strerror(s.final.error), s.final_ms);
    EXPECT(r == -1 && e == ECONNRESET);
    EXPECT(el > restored && el < d); /* the RST, not the timeout */
    EXPECT(s.probing_seen > 0 && s.max_probes >= 1);
    EXPECT(s.final.peer == HEARTBEAT_PEER_RESET && s.final.error == ECONNRESET);
    errno = 0;
    EXPECT(recv(fds[1], &b, 1, MSG_DONTWAIT) == 0); /* the error was handed back */
out:
    close_all(fds, 2);
    result(ok, name);
}

/* Case 5: orderly close; the unread data stays readable. */
static void case_fin(const char *name)
{
    int ok = 1, fd = -1;
    struct heartbeat_status st;
    char buf[8];
    if (open_conns(&fd, 1, -1) != 0) {
        ok = 0;
        goto out;
    }
    EXPECT(heartbeat(fd, 1, 1, 3) == HEARTBEAT_OK);
    EXPECT(peer('B') == 0);
    double t = now_ms();
    st.peer = HEARTBEAT_PEER_ALIVE;
    while (now_ms() - t < 2000 && heartbeat_status(fd, &st) == HEARTBEAT_OK &&
           st.peer == HEARTBEAT_PEER_ALIVE)
        sleep_msf(5);
    printf("# measured %s: %s (tcp_state %d, error %d) %.1f ms after the peer's close\n", name,
           peer_name(st.peer), st.tcp_state, st.error, now_ms() - t);
    EXPECT(st.peer == HEARTBEAT_PEER_CLOSED && st.error == 0 && st.tcp_state == 8);
    EXPECT(recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 3 && memcmp(buf, "bye", 3) == 0);
    EXPECT(recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 0);
out:
    if (fd >= 0)
        close(fd);
    result(ok, name);
}

/* Benchmark: K connections with heartbeat(I, N, C); detection times. */
static void detect(int idle, int intvl, int cnt, int k)
{
    int fds[MAXC];
    double t0[MAXC], got[MAXC], d = heartbeat_deadline_ms(idle, intvl, cnt);
    int err[MAXC], left = k;
    if (k > MAXC || open_conns(fds, k, -1) != 0) {
        printf("# setup failed\n");
        return;
    }
    for (int i = 0; i < k; i++) {
        heartbeat(fds[i], idle, intvl, cnt);
        got[i] = -1;
        err[i] = 0;
    }
    if (last_data(fds, k, t0) != 0 || run_cmd("cut", cut_cmd) != 0)
        goto out;
    while (left > 0 && now_ms() - t0[0] < 1.5 * d) {
        struct pollfd p[MAXC];
        for (int i = 0; i < k; i++) {
            p[i].fd = fds[i];
            p[i].events = got[i] < 0 ? POLLIN : 0;
            p[i].revents = 0;
        }
        poll(p, k, 50);
        for (int i = 0; i < k; i++) {
            if (got[i] < 0 && p[i].revents) {
                char b;
                double t = now_ms();
                errno = 0;
                if (recv(fds[i], &b, 1, MSG_DONTWAIT) == -1)
                    err[i] = errno;
                got[i] = t - t0[i];
                left--;
            }
        }
    }
    for (int i = 0; i < k; i++)
        printf("DETECT %d %d %d %.0f %.0f %s %d\n", idle, intvl, cnt, got[i], d,
               err[i] == ETIMEDOUT ? "ETIMEDOUT" : "other", err[i]);
out:
    close_all(fds, k);
}

/* ------------------------------------------------- heartbeat_within() */

/* Writes until the socket's buffer is full (non-blocking, bounded): with a
 * peer that does not read, its window shuts. Returns the bytes written. */
static long fill(int fd)
{
    static char chunk[65536];
    long total = 0;
    memset(chunk, 'z', sizeof chunk);
    for (int i = 0; i < 2000; i++) {
        ssize_t r = send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0)
            break;
        total += r;
    }
    return total;
}

/* Waits (poll, bounded by `until`, relative to t0) until each fd fails;
 * dead_ms[i] = time of the failure after t0[i] (-1: not by then), err[i]
 * the errno recv() reports. */
static void wait_dead(int *fds, int n, const double *t0, double until, double *dead_ms, int *err)
{
    int left = n;
    for (int i = 0; i < n; i++) {
        dead_ms[i] = -1;
        err[i] = 0;
    }
    while (left > 0 && now_ms() - t0[0] < until) {
        struct pollfd p[MAXC];
        for (int i = 0; i < n; i++) {
            p[i].fd = fds[i];
            p[i].events = dead_ms[i] < 0 ? POLLIN : 0;
            p[i].revents = 0;
        }
        poll(p, n, 10);
        for (int i = 0; i < n; i++) {
            if (dead_ms[i] < 0 && p[i].revents) {
                char b;
                double t = now_ms();
                errno = 0;
                ssize_t r = recv(fds[i], &b, 1, MSG_DONTWAIT);
                err[i] = r == -1 ? errno : 0;
                dead_ms[i] = t - t0[i];
                left--;
            }
        }
    }
}

/* heartbeat_within(ms): idle or unacknowledged, cut by a blackhole. */
static void case_within(unsigned ms, int unacked, const char *name)
{
    int ok = 1, fds[2] = {-1, -1}, err[2];
    double t0[2], dead[2];
    struct heartbeat_config cfg, keep;
    const char *mode = unacked ? "unacked" : "idle";
    EXPECT(heartbeat_config_within(ms, 0, &cfg) == HEARTBEAT_OK);
    EXPECT(heartbeat_config_within(ms, HEARTBEAT_WITHIN_KEEP_SLOW_READERS, &keep) == HEARTBEAT_OK);
    if (!ok || open_conns(fds, 2, -1) != 0) {
        ok = 0;
        goto out;
    }
    EXPECT(heartbeat_within(fds[0], ms, 0) == HEARTBEAT_OK);
    EXPECT(heartbeat_within(fds[1], ms, HEARTBEAT_WITHIN_KEEP_SLOW_READERS) == HEARTBEAT_OK);
    if (!ok || last_data(fds, 2, t0) != 0 || run_cmd("cut", cut_cmd) != 0) {
        ok = 0;
        goto out;
    }
    double cut_ms = now_ms() - t0[0], sent_at = -1;
    if (unacked) {
        char buf[1000];
        memset(buf, 'u', sizeof buf);
        sent_at = now_ms() - t0[0];
        EXPECT(send(fds[0], buf, sizeof buf, MSG_NOSIGNAL) == (ssize_t)sizeof buf);
        EXPECT(send(fds[1], buf, sizeof buf, MSG_NOSIGNAL) == (ssize_t)sizeof buf);
    }
    wait_dead(fds, 2, t0, 1.5 * ms, dead, err);
    double lower = cfg.user_timeout_ms;
    printf("# measured within %u %s: config %d/%d/%d user_timeout_ms %u; cut %.0f ms, send %.0f ms "
           "after the last data\n",
           ms, mode, cfg.idle, cfg.intvl, cfg.cnt, cfg.user_timeout_ms, cut_ms, sent_at);
    printf("# measured within %u %s: dead after %.0f ms (%s): ratio %.3f of ms, %.3f of the lower "
           "bound %.0f ms\n",
           ms, mode, dead[0], strerror(err[0]), dead[0] / ms, dead[0] / lower, lower);
    printf("# measured within %u %s, keep slow readers: %s after %.0f ms (%s)\n", ms, mode,
           dead[1] < 0 ? "still open" : "dead", dead[1] < 0 ? 1.5 * ms : dead[1], strerror(err[1]));
    EXPECT(dead[0] > 0 && dead[0] <= ms);
    EXPECT(dead[0] >= lower);
    EXPECT(err[0] == ETIMEDOUT);
    if (unacked) {
        /* The cost of keeping slow readers: data in flight is not covered. */
        struct heartbeat_status st;
        EXPECT(dead[1] < 0);
        EXPECT(heartbeat_status(fds[1], &st) == HEARTBEAT_OK && st.tcp_state == 1);
    } else {
        /* Idle connections are covered either way. */
        EXPECT(dead[1] > 0 && dead[1] <= ms && dead[1] >= keep.idle * 1000.0 + keep.intvl * 1000.0 * keep.cnt);
        EXPECT(err[1] == ETIMEDOUT);
    }
out:
    close_all(fds, 2);
    result(ok, name);
}

/* Benchmark: K connections with heartbeat_within(ms). */
static void detect_within(unsigned ms, int unacked, int k)
{
    int fds[MAXC], err[MAXC];
    double t0[MAXC], dead[MAXC];
    struct heartbeat_config cfg;
    if (k > MAXC || heartbeat_config_within(ms, 0, &cfg) != HEARTBEAT_OK || open_conns(fds, k, -1) != 0) {
        printf("# setup failed\n");
        return;
    }
    for (int i = 0; i < k; i++)
        heartbeat_within(fds[i], ms, 0);
    if (last_data(fds, k, t0) != 0 || run_cmd("cut", cut_cmd) != 0)
        goto out;
    if (unacked) {
        char buf[1000];
        memset(buf, 'u', sizeof buf);
        for (int i = 0; i < k; i++)
            send(fds[i], buf, sizeof buf, MSG_NOSIGNAL);
    }
    wait_dead(fds, k, t0, 1.5 * ms, dead, err);
    for (int i = 0; i < k; i++)
        printf("DETECTW %u %s %.0f %u %d\n", ms, unacked ? "unacked" : "idle", dead[i],
               cfg.user_timeout_ms, err[i]);
out:
    close_all(fds, k);
}

/* A peer that stops reading (alive), and optionally vanishes after its
 * window shut. fds[0]: heartbeat_within(ms) (default: slow readers time
 * out); fds[1]: with HEARTBEAT_WITHIN_KEEP_SLOW_READERS. */
static void case_stall(unsigned ms, int cut, const char *name)
{
    int ok = 1, fds[2] = {-1, -1};
    double t0[2];
    struct heartbeat_config cfg;
    EXPECT(heartbeat_config_within(ms, 0, &cfg) == HEARTBEAT_OK);
    if (!ok || open_conns(fds, 2, -1) != 0) {
        ok = 0;
        goto out;
    }
    EXPECT(heartbeat_within(fds[0], ms, 0) == HEARTBEAT_OK);
    EXPECT(heartbeat_within(fds[1], ms, HEARTBEAT_WITHIN_KEEP_SLOW_READERS) == HEARTBEAT_OK);
    if (!ok || last_data(fds, 2, t0) != 0) {
        ok = 0;
        goto out;
    }
    long filled[2] = {fill(fds[0]), fill(fds[1])};
    double start = now_ms();
    /* Every 20 ms: both statuses. shut[i]: when the window was first seen
     * shut; dead[i]: when the connection was first seen over. */
    double shut[2] = {-1, -1}, dead[2] = {-1, -1}, cut_at = -1, last_ack_at = -1, probing_at = -1;
    int counts[2][8], bad[2] = {0, 0}, err0 = 0;
    struct heartbeat_status_ex ex[2], last[2];
    memset(counts, 0, sizeof counts);
    double horizon = cut ? 2.0 * ms : 3.0 * ms; /* after the window shut (or the cut) */
    for (;;) {
        double t = now_ms();
        for (int i = 0; i < 2; i++) {
            if (dead[i] >= 0)
                continue;
            if (heartbeat_status_ex(fds[i], &ex[i], sizeof ex[i]) != HEARTBEAT_OK) {
                bad[i]++;
                continue;
            }
            if (ex[i].peer_window == 0 && shut[i] < 0)
                shut[i] = t;
            if (ex[i].peer >= 0 && ex[i].peer < 8 && shut[i] >= 0)
                counts[i][ex[i].peer]++;
            if (ex[i].tcp_state != 1) {
                dead[i] = t;
                if (i == 0)
                    err0 = ex[i].error;
                continue;
            }
            last[i] = ex[i];
            if (i == 1 && cut_at >= 0 && probing_at < 0 && ex[i].peer == HEARTBEAT_PEER_PROBING)
                probing_at = t;
            /* Before the cut, a shut window of a live peer is STALLED. */
            if (shut[i] >= 0 && cut_at < 0 && ex[i].peer != HEARTBEAT_PEER_STALLED) {
                printf("#   fd %d at %.0f ms after the window shut: %s, probes %u, window %u, notsent %u, "
                       "unacked %u, last ack %u ms\n",
                       i, t - shut[i], peer_name(ex[i].peer), ex[i].probes, ex[i].peer_window,
                       ex[i].notsent_bytes, ex[i].unacked, ex[i].last_ack_recv_ms);
                bad[i]++;
            }
        }
        if (cut && cut_at < 0 && shut[0] >= 0 && shut[1] >= 0 && t - shut[0] > 500) {
            if (run_cmd("cut", cut_cmd) != 0) {
                ok = 0;
                break;
            }
            cut_at = now_ms();
            /* The last acknowledgement received before the cut. */
            struct heartbeat_status_ex e;
            if (heartbeat_status_ex(fds[0], &e, sizeof e) == HEARTBEAT_OK)
                last_ack_at = now_ms() - e.last_ack_recv_ms;
        }
        double from = cut ? cut_at : shut[1];
        if (from >= 0 && t - from >= horizon)
            break;
        if (t - start > 4.0 * ms + 10000) { /* bounded, whatever happens */
            printf("#   the window never shut (filled %ld / %ld bytes)\n", filled[0], filled[1]);
            ok = 0;
            break;
        }
        sleep_msf(20);
    }
    printf("# measured %s: filled %ld and %ld bytes; window shut %.0f ms after the fill\n", name, filled[0],
           filled[1], shut[0] - start);
    for (int i = 0; i < 2; i++)
        printf("# measured %s: fd %d (%s): samples STALLED %d PROBING %d ALIVE %d TIMED_OUT %d; %s\n", name, i,
               i == 0 ? "default" : "keep slow readers", counts[i][HEARTBEAT_PEER_STALLED],
               counts[i][HEARTBEAT_PEER_PROBING], counts[i][HEARTBEAT_PEER_ALIVE],
               counts[i][HEARTBEAT_PEER_TIMED_OUT], dead[i] < 0 ? "still open" : "over");
    EXPECT(shut[0] >= 0 && shut[1] >= 0);
    if (!cut) {
        /* The default: the live slow reader times out, about the user
         * timeout after its window shut (never before it). */
        printf("# measured %s: default: %s (%s) %.0f ms after the window shut (user_timeout_ms %u, ms %u)\n",
               name, dead[0] < 0 ? "still open" : "timed out", strerror(err0), dead[0] - shut[0],
               cfg.user_timeout_ms, ms);
        EXPECT(dead[0] >= 0 && err0 == ETIMEDOUT);
        EXPECT(dead[0] - shut[0] >= cfg.user_timeout_ms && dead[0] - shut[0] <= ms);
        /* Keep slow readers: STALLED throughout, alive after 3 x ms. */
        EXPECT(dead[1] < 0 && now_ms() - shut[1] >= 3.0 * ms);
        EXPECT(bad[0] == 0 && bad[1] == 0);
        EXPECT(counts[1][HEARTBEAT_PEER_STALLED] > 0 && counts[0][HEARTBEAT_PEER_STALLED] > 0);
        /* The peer reads: the window opens, ALIVE again. */
        EXPECT(peer('R') == 0);
        struct heartbeat_status st = {0};
        for (int i = 0; i < 200; i++) { /* 2 s */
            if (heartbeat_status(fds[1], &st) != HEARTBEAT_OK || st.peer != HEARTBEAT_PEER_STALLED)
                break;
            sleep_msf(10);
        }
        printf("# measured %s: after the peer read: %s\n", name, peer_name(st.peer));
        EXPECT(st.peer == HEARTBEAT_PEER_ALIVE);
    } else {
        /* Vanished while its window was shut. The default: dead at most
         * ms after the last acknowledgement it sent. */
        printf("# measured %s: default: %s (%s) %.0f ms after the last acknowledgement, %.0f ms after "
               "the cut (ms %u)\n",
               name, dead[0] < 0 ? "still open" : "dead", strerror(err0), dead[0] - last_ack_at,
               dead[0] - cut_at, ms);
        printf("# measured %s: keep slow readers: PROBING from %.0f ms after the cut; %s, %s, probes %u, "
               "last ack %u ms, %.0f ms after the cut\n",
               name, probing_at - cut_at, dead[1] < 0 ? "still open" : "over", peer_name(last[1].peer),
               last[1].probes, last[1].last_ack_recv_ms, now_ms() - cut_at);
        EXPECT(cut_at > 0 && last_ack_at > 0);
        EXPECT(dead[0] >= 0 && err0 == ETIMEDOUT && dead[0] - last_ack_at <= ms);
        EXPECT(bad[0] == 0 && bad[1] == 0); /* STALLED until the cut */
        /* The cost: not detected in 2 x ms, reported as PROBING. */
        EXPECT(dead[1] < 0 && last[1].peer == HEARTBEAT_PEER_PROBING);
    }
out:
    close_all(fds, 2);
    result(ok, name);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: net_liveness CASE [args]\n");
        return 2;
    }
    const char *fam = getenv("HB_FAMILY");
    family = fam && strcmp(fam, "6") == 0 ? AF_INET6 : AF_INET;
    cut_cmd = getenv("HB_CUT");
    restore_cmd = getenv("HB_RESTORE");
    peer_ns = getenv("HB_PEER_NS");
    if (peer_ns == NULL) {
        fprintf(stderr, "HB_PEER_NS is not set\n");
        return 2;
    }
    const char *c = argv[1];
    char name[128];
    const char *mode = getenv("HB_MODE") ? getenv("HB_MODE") : "cut";
    if (argc >= 3 && strcmp(c, "detect") != 0 && strcmp(c, "detectw") != 0)
        snprintf(name, sizeof name, "net_%s%s%s%s_v%d_%s", c, argv[2], argc >= 4 ? "_" : "",
                 argc >= 4 ? argv[3] : "", family == AF_INET6 ? 6 : 4, mode);
    else
        snprintf(name, sizeof name, "net_%s_v%d_%s", c, family == AF_INET6 ? 6 : 4, mode);
    if (peer_start() != 0) {
        result(0, "peer process");
        return 1;
    }
    if (strcmp(c, "idle") == 0)
        case_idle(1, 0, name);
    else if (strcmp(c, "control") == 0)
        case_idle(0, 0, name);
    else if (strcmp(c, "listener") == 0)
        case_idle(1, 1, name);
    else if (strcmp(c, "unacked") == 0)
        case_unacked(name);
    else if (strcmp(c, "restart") == 0)
        case_restart(name);
    else if (strcmp(c, "fin") == 0)
        case_fin(name);
    else if (strcmp(c, "detect") == 0 && argc == 6)
        detect(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    else if (strcmp(c, "within") == 0 && argc == 4)
        case_within((unsigned)atoi(argv[2]), strcmp(argv[3], "unacked") == 0, name);
    else if (strcmp(c, "detectw") == 0 && argc == 5)
        detect_within((unsigned)atoi(argv[2]), strcmp(argv[3], "unacked") == 0, atoi(argv[4]));
    else if (strcmp(c, "stall") == 0 && argc == 3)
        case_stall((unsigned)atoi(argv[2]), 0, name);
    else if (strcmp(c, "stallcut") == 0 && argc == 3)
        case_stall((unsigned)atoi(argv[2]), 1, name);
    else {
        fprintf(stderr, "unknown case %s\n", c);
        failures++;
    }
    peer_stop();
    return failures ? 1 : 0;
}
