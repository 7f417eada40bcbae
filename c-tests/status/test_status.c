/* heartbeat_status() on loopback: argument checks, bad fds, unconnected and
 * listening sockets, a live pair, the peer's orderly close (unread data stays
 * readable), the peer's reset, and exactly what is consumed: the pending
 * error is handed back once; recv() and recv(MSG_PEEK) take it too.
 * The cut-link cases (PROBING, TIMED_OUT, RESET after a restart) are in the
 * network suite (c-tests/net/net_liveness.c, run by c-tests/net/suite.sh). */
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <time.h>

#include "check.h"
#include "heartbeat.h"
#include "sockets.h"
#include "testutil.h"

#define SENTINEL 0x5a


#define CHECK_PEER(st, want)                                                          \
    do {                                                                              \
        if ((st).peer != (want)) {                                                    \
            fprintf(stderr, "  %s:%d: peer %s (tcp_state %d, error %d), expected %s\n", \
                    __FILE__, __LINE__, peer_name((st).peer), (st).tcp_state,         \
                    (st).error, peer_name(want));                                     \
            goto cleanup;                                                             \
        }                                                                             \
    } while (0)

/* Status until it leaves `from`, at most ~2 s (loopback: immediate). */
static int status_leaving(int fd, int from, struct heartbeat_status *st)
{
    for (int i = 0; i < 200; i++) {
        int rc = heartbeat_status(fd, st);
        if (rc != HEARTBEAT_OK || st->peer != from)
            return rc;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return HEARTBEAT_OK;
}

static int rst_close(int fd)
{
    struct linger lg = {1, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        return -1;
    return close(fd);
}

static int untouched(const struct heartbeat_status *st)
{
    const unsigned char *p = (const unsigned char *)st;
    for (size_t i = 0; i < sizeof *st; i++)
        if (p[i] != SENTINEL)
            return 0;
    return 1;
}

static int test_null_out_is_invalid(void)
{
    int c = -1, s = -1, rc = 1;
    CHECK(tcp_pair(0, &c, &s) == 0);
    CHECK_RC_ERRNO(heartbeat_status(c, NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_status(-1, NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

static int test_bad_fds_give_tcp_info_error(void)
{
    int rc = 1, p[2] = {-1, -1}, udp = -1, udp6 = -1, ux = -1, closed = -1;
    struct heartbeat_status st;
    memset(&st, SENTINEL, sizeof st);
    CHECK(pipe(p) == 0);
    CHECK((udp = socket(AF_INET, SOCK_DGRAM, 0)) >= 0);
    CHECK((udp6 = socket(AF_INET6, SOCK_DGRAM, 0)) >= 0);
    CHECK((ux = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
    CHECK((closed = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    close(closed); /* now a closed fd number */
    CHECK_RC_ERRNO(heartbeat_status(-1, &st), HEARTBEAT_ERR_TCP_INFO, EBADF);
    CHECK_RC_ERRNO(heartbeat_status(closed, &st), HEARTBEAT_ERR_TCP_INFO, EBADF);
    CHECK_RC_ERRNO(heartbeat_status(p[0], &st), HEARTBEAT_ERR_TCP_INFO, ENOTSOCK);
    CHECK_RC_ERRNO(heartbeat_status(udp, &st), HEARTBEAT_ERR_TCP_INFO, EOPNOTSUPP);
    CHECK_RC_ERRNO(heartbeat_status(udp6, &st), HEARTBEAT_ERR_TCP_INFO, ENOPROTOOPT);
    CHECK_RC_ERRNO(heartbeat_status(ux, &st), HEARTBEAT_ERR_TCP_INFO, EOPNOTSUPP);
    CHECK(untouched(&st));
    CHECK_STR(heartbeat_strerror(HEARTBEAT_ERR_TCP_INFO),
              "TCP_INFO or SO_ERROR could not be read: the fd is not an open TCP socket");
    rc = 0;
cleanup:
    if (p[0] >= 0) close(p[0]);
    if (p[1] >= 0) close(p[1]);
    if (udp >= 0) close(udp);
    if (udp6 >= 0) close(udp6);
    if (ux >= 0) close(ux);
    return rc;
}

static int test_unconnected_and_listening(void)
{
    int rc = 1, fresh = -1, l = -1;
    struct heartbeat_status st;
    CHECK((fresh = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    CHECK_EQ(heartbeat_status(fresh, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_NOT_CONNECTED);
    CHECK_EQ(st.error, 0);
    CHECK_EQ(st.tcp_state, 7); /* TCP_CLOSE */
    CHECK((l = tcp_listener(0)) >= 0);
    CHECK_EQ(heartbeat(l, 1, 1, 3), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_status(l, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_NOT_CONNECTED);
    CHECK_EQ(st.tcp_state, 10); /* TCP_LISTEN */
    rc = 0;
cleanup:
    if (fresh >= 0) close(fresh);
    if (l >= 0) close(l);
    return rc;
}

static int test_live_pair_is_alive_and_nothing_is_read(void)
{
    int rc = 1, c = -1, s = -1, v6;
    for (v6 = 0; v6 <= 1; v6++) {
        struct heartbeat_status st;
        int avail = -1;
        CHECK(tcp_pair(v6, &c, &s) == 0);
        CHECK_EQ(heartbeat(c, 1, 1, 3), HEARTBEAT_OK);
        CHECK_EQ(send(s, "hello", 5, 0), 5);
        struct pollfd pfd = {c, POLLIN, 0};
        CHECK_EQ(poll(&pfd, 1, 2000), 1);
        for (int i = 0; i < 3; i++) {
            memset(&st, SENTINEL, sizeof st);
            CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK);
            CHECK_PEER(st, HEARTBEAT_PEER_ALIVE);
            CHECK_EQ(st.error, 0);
            CHECK_EQ(st.probes, 0);
            CHECK_EQ(st.retransmits, 0);
            CHECK_EQ(st.tcp_state, 1); /* TCP_ESTABLISHED */
            CHECK(st.last_data_recv_ms < 2000);
            CHECK(st.rtt_us < 1000000);
            CHECK(ioctl(c, FIONREAD, &avail) == 0);
            CHECK_EQ(avail, 5); /* status read nothing */
        }
        tcp_pair_close(&c, &s);
    }
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

static int test_orderly_close_is_closed_and_data_stays_readable(void)
{
    int rc = 1, c = -1, s = -1;
    char buf[16];
    struct heartbeat_status st;
    CHECK(tcp_pair(0, &c, &s) == 0);
    CHECK_EQ(send(s, "last words", 10, 0), 10);
    CHECK_EQ(close(s), 0);
    s = -1;
    CHECK_EQ(status_leaving(c, HEARTBEAT_PEER_ALIVE, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_CLOSED);
    CHECK_EQ(st.error, 0);
    CHECK_EQ(st.tcp_state, 8); /* TCP_CLOSE_WAIT */
    CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK); /* again: same answer */
    CHECK_PEER(st, HEARTBEAT_PEER_CLOSED);
    CHECK_EQ(recv(c, buf, sizeof buf, 0), 10);
    CHECK(memcmp(buf, "last words", 10) == 0);
    CHECK_EQ(recv(c, buf, sizeof buf, 0), 0);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

static int test_reset_hands_the_consumed_error_back(void)
{
    int rc = 1, c = -1, s = -1;
    char buf[16];
    struct heartbeat_status st;
    CHECK(tcp_pair(0, &c, &s) == 0);
    CHECK_EQ(rst_close(s), 0);
    s = -1;
    CHECK_EQ(status_leaving(c, HEARTBEAT_PEER_ALIVE, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_RESET);
    CHECK_EQ(st.error, ECONNRESET);
    CHECK_EQ(st.tcp_state, 7); /* TCP_CLOSE */
    /* The error was consumed by the status call: recv sees end of file. */
    errno = 0;
    CHECK_EQ(recv(c, buf, sizeof buf, MSG_DONTWAIT), 0);
    /* ... and a second status call can only say "over". */
    CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_CLOSED);
    CHECK_EQ(st.error, 0);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

/* recv() (flags 0, or MSG_PEEK) takes the pending error first: afterwards
 * the status call sees a closed socket with no error. */
static int test_recv_and_peek_consume_the_error(void)
{
    int rc = 1, c = -1, s = -1, flags;
    char buf[16];
    struct heartbeat_status st;
    for (int i = 0; i < 2; i++) {
        flags = i == 0 ? 0 : MSG_PEEK;
        CHECK(tcp_pair(0, &c, &s) == 0);
        CHECK_EQ(rst_close(s), 0);
        s = -1;
        struct pollfd pfd = {c, POLLIN, 0};
        CHECK_EQ(poll(&pfd, 1, 2000), 1); /* poll consumes nothing */
        errno = 0;
        CHECK_EQ(recv(c, buf, sizeof buf, flags | MSG_DONTWAIT), -1);
        CHECK_EQ(errno, ECONNRESET);
        CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK);
        CHECK_PEER(st, HEARTBEAT_PEER_CLOSED);
        CHECK_EQ(st.error, 0);
        CHECK_EQ(recv(c, buf, sizeof buf, MSG_DONTWAIT), 0);
        close(c);
        c = -1;
    }
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

/* A non-blocking connect() refused by the peer's kernel (RST to the SYN). */
static int test_refused_connect_is_reset(void)
{
    int rc = 1, l = -1, c = -1;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    struct heartbeat_status st;
    CHECK((l = tcp_listener(0)) >= 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    close(l); /* nobody listens on that port any more */
    l = -1;
    CHECK((c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) >= 0);
    CHECK(connect(c, (struct sockaddr *)&a, len) == 0 || errno == EINPROGRESS);
    CHECK_EQ(status_leaving(c, HEARTBEAT_PEER_NOT_CONNECTED, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_RESET);
    CHECK_EQ(st.error, ECONNREFUSED);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (l >= 0) close(l);
    return rc;
}

/* connect(AF_UNSPEC) disconnects: the kernel sends RST, zeroes the
 * socket's counters and leaves an ECONNRESET of its own pending. The
 * header says NOT_CONNECTED: from the first call on, without consuming
 * that error (the program disconnected; nobody reset it). */
static int test_disconnected_socket_is_not_connected_at_once(void)
{
    int rc = 1, c = -1, s = -1;
    struct heartbeat_status st;
    CHECK(tcp_pair(0, &c, &s) == 0);
    CHECK_EQ(send(c, "x", 1, 0), 1);
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNSPEC;
    CHECK_EQ(connect(c, &sa, sizeof sa), 0);
    for (int i = 0; i < 2; i++) {
        memset(&st, SENTINEL, sizeof st);
        CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK);
        CHECK_PEER(st, HEARTBEAT_PEER_NOT_CONNECTED);
        CHECK_EQ(st.error, 0);
        CHECK_EQ(st.tcp_state, 7); /* TCP_CLOSE */
    }
    /* Nothing was consumed: the kernel's own error is still there. */
    CHECK_EQ(raw_get(c, SOL_SOCKET, SO_ERROR), ECONNRESET);
    /* The other end was reset, and says so. */
    CHECK_EQ(status_leaving(s, HEARTBEAT_PEER_ALIVE, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_RESET);
    CHECK_EQ(st.error, ECONNRESET);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

/* An accepted connection that never sent a segment (its SYN-ACK belongs
 * to the listener) is still a connection when the peer resets it. */
static int test_reset_of_a_silent_accepted_socket_is_reset(void)
{
    int rc = 1, c = -1, s = -1;
    struct heartbeat_status st;
    CHECK(tcp_pair(0, &c, &s) == 0);
    CHECK_EQ(rst_close(c), 0);
    c = -1;
    CHECK_EQ(status_leaving(s, HEARTBEAT_PEER_ALIVE, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_RESET);
    CHECK_EQ(st.error, ECONNRESET);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

/* heartbeat_status_ex(): the same answer as heartbeat_status() in its
 * first seven fields; exactly `size` bytes written (zero beyond the
 * library's struct); a size below struct heartbeat_status or NULL is
 * invalid and writes nothing. */
static int test_status_ex_sizes(void)
{
    int rc = 1, c = -1, s = -1;
    struct heartbeat_status st;
    unsigned char buf[sizeof(struct heartbeat_status_ex) + 16];
    struct heartbeat_status_ex *ex = (struct heartbeat_status_ex *)(void *)buf;
    CHECK(tcp_pair(0, &c, &s) == 0);
    CHECK_EQ(sizeof(struct heartbeat_status), 28);
    CHECK_EQ(sizeof(struct heartbeat_status_ex), 44);
    CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK);
    memset(buf, SENTINEL, sizeof buf);
    CHECK_EQ(heartbeat_status_ex(c, ex, sizeof *ex), HEARTBEAT_OK);
    CHECK_PEER(*ex, HEARTBEAT_PEER_ALIVE);
    CHECK(ex->peer == st.peer && ex->error == st.error && ex->probes == st.probes &&
          ex->tcp_state == st.tcp_state);
    CHECK(ex->peer_window > 0 && ex->peer_window != HEARTBEAT_WINDOW_UNKNOWN);
    CHECK_EQ(ex->notsent_bytes, 0);
    CHECK_EQ(ex->unacked, 0);
    CHECK(ex->last_ack_recv_ms < 10000);
    CHECK_EQ(buf[sizeof *ex], SENTINEL); /* nothing beyond size */
    /* An older caller's size: the seven fields only. */
    memset(buf, SENTINEL, sizeof buf);
    CHECK_EQ(heartbeat_status_ex(c, ex, sizeof st), HEARTBEAT_OK);
    CHECK_PEER(*ex, HEARTBEAT_PEER_ALIVE);
    for (size_t i = sizeof st; i < sizeof buf; i++)
        CHECK_EQ(buf[i], SENTINEL);
    /* A newer caller's size: zero beyond the library's struct. */
    memset(buf, SENTINEL, sizeof buf);
    CHECK_EQ(heartbeat_status_ex(c, ex, sizeof buf - 4), HEARTBEAT_OK);
    for (size_t i = sizeof *ex; i < sizeof buf - 4; i++)
        CHECK_EQ(buf[i], 0);
    for (size_t i = sizeof buf - 4; i < sizeof buf; i++)
        CHECK_EQ(buf[i], SENTINEL);
    /* Invalid: nothing written, nothing read. */
    memset(buf, SENTINEL, sizeof buf);
    CHECK_RC_ERRNO(heartbeat_status_ex(c, ex, sizeof st - 1), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_status_ex(c, ex, 0), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_status_ex(c, NULL, sizeof *ex), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_status_ex(-1, ex, sizeof *ex), HEARTBEAT_ERR_TCP_INFO, EBADF);
    for (size_t i = 0; i < sizeof buf; i++)
        CHECK_EQ(buf[i], SENTINEL);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

/* A reader that stops reading: its window shuts while we have data to
 * send, its kernel answers the window probes. STALLED (not PROBING, not
 * ALIVE) for the whole observation, through both functions; ALIVE again
 * once it reads. On loopback; the cut-link cases are in c-tests/net/. */
static int test_stalled_reader_on_loopback(void)
{
    int rc = 1, c = -1, s = -1, samples = 0, stalled = 0;
    static char chunk[65536];
    struct heartbeat_status_ex ex;
    struct heartbeat_status st;
    CHECK(tcp_pair(0, &c, &s) == 0);
    for (int i = 0; i < 1000; i++) /* bounded: 64 MiB at most */
        if (send(c, chunk, sizeof chunk, MSG_DONTWAIT) < 0)
            break;
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    long long t0 = now_ns();
    while (now_ns() - t0 < 3000000000LL) { /* 3 s: several probe intervals */
        CHECK_EQ(heartbeat_status_ex(c, &ex, sizeof ex), HEARTBEAT_OK);
        samples++;
        if (ex.peer == HEARTBEAT_PEER_STALLED) {
            stalled++;
        } else if (now_ns() - t0 > 500000000LL) { /* after the first ACKs */
            fprintf(stderr, "  at %lld ms: %s probes %u window %u notsent %u unacked %u last ack %u ms\n",
                    (now_ns() - t0) / 1000000, peer_name(ex.peer), ex.probes, ex.peer_window,
                    ex.notsent_bytes, ex.unacked, ex.last_ack_recv_ms);
            CHECK_PEER(ex, HEARTBEAT_PEER_STALLED);
        }
        sleep_ms(10);
    }
    CHECK_EQ(ex.peer_window, 0);
    CHECK(ex.notsent_bytes > 0 || ex.unacked > 0);
    CHECK_EQ(heartbeat_status(c, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_STALLED);
    fprintf(stderr, "  %d of %d samples STALLED; window %u, notsent %u, last ack %u ms ago\n", stalled,
            samples, ex.peer_window, ex.notsent_bytes, ex.last_ack_recv_ms);
    /* The reader reads: the window opens, the data flows. */
    for (int i = 0; i < 100000; i++)
        if (recv(s, chunk, sizeof chunk, MSG_DONTWAIT) <= 0)
            break;
    CHECK_EQ(status_leaving(c, HEARTBEAT_PEER_STALLED, &st), HEARTBEAT_OK);
    CHECK_PEER(st, HEARTBEAT_PEER_ALIVE);
    rc = 0;
cleanup:
    if (c >= 0) close(c);
    if (s >= 0) close(s);
    return rc;
}

int main(void)
{
    RUN(test_null_out_is_invalid);
    RUN(test_bad_fds_give_tcp_info_error);
    RUN(test_unconnected_and_listening);
    RUN(test_live_pair_is_alive_and_nothing_is_read);
    RUN(test_orderly_close_is_closed_and_data_stays_readable);
    RUN(test_reset_hands_the_consumed_error_back);
    RUN(test_recv_and_peek_consume_the_error);
    RUN(test_refused_connect_is_reset);
    RUN(test_disconnected_socket_is_not_connected_at_once);
    RUN(test_reset_of_a_silent_accepted_socket_is_reset);
    RUN(test_status_ex_sizes);
    RUN(test_stalled_reader_on_loopback);
    return CHECK_EXIT();
}
