/* The keepalive C API, function by function and code by code, on real
 * loopback sockets. Built twice: against libheartbeat.so (test_api) and
 * against libheartbeat.a (api_static). Options are read back with raw
 * getsockopt(), not only through the library. */
#include "heartbeat.h"

#include "check.h"
#include "sockets.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/un.h>
#include <sys/wait.h>

#ifndef HEARTBEAT_EXPECTED_VERSION
#error "build with -DHEARTBEAT_EXPECTED_VERSION=\"x.y.z\" (the Makefile does)"
#endif

static int test_version(void)
{
    int rc = 1;
    CHECK_STR(heartbeat_version(), HEARTBEAT_EXPECTED_VERSION);
    rc = 0;
cleanup:
    return rc;
}

static int test_strerror_every_code(void)
{
    int rc = 1;
    const int codes[] = {HEARTBEAT_OK,           HEARTBEAT_ERR_IDLE,         HEARTBEAT_ERR_INTVL,
                         HEARTBEAT_ERR_CNT,      HEARTBEAT_ERR_KEEPALIVE,    HEARTBEAT_ERR_USER_TIMEOUT,
                         HEARTBEAT_ERR_INVALID,  HEARTBEAT_ERR_INTERNAL,     HEARTBEAT_ERR_TCP_INFO,
                         HEARTBEAT_ERR_ALREADY_WATCHED, HEARTBEAT_ERR_NOT_WATCHED, HEARTBEAT_ERR_NOMEM,
                         HEARTBEAT_ERR_INTERVAL, HEARTBEAT_ERR_TIMEOUT, HEARTBEAT_ERR_DEAD_CALLBACK,
                         HEARTBEAT_ERR_PING, HEARTBEAT_ERR_THREAD, HEARTBEAT_ERR_ROLLBACK,
                         HEARTBEAT_ERR_WITHIN, HEARTBEAT_ERR_MODE, HEARTBEAT_ERR_DEADLOCK,
                         HEARTBEAT_ERR_FD};
    const size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = heartbeat_strerror(INT_MIN);
    CHECK(unknown != NULL && unknown[0] != '\0');
    /* The recipe's values are kept. */
    CHECK_EQ(HEARTBEAT_ERR_IDLE, -1);
    CHECK_EQ(HEARTBEAT_ERR_INTVL, -2);
    CHECK_EQ(HEARTBEAT_ERR_CNT, -3);
    CHECK_EQ(HEARTBEAT_ERR_KEEPALIVE, -4);
    CHECK_EQ(HEARTBEAT_ERR_USER_TIMEOUT, -5);
    CHECK_EQ(HEARTBEAT_ERR_INVALID, -6);
    /* The reserved values. */
    CHECK_EQ(HEARTBEAT_ERR_ROLLBACK, -17);
    CHECK_EQ(HEARTBEAT_ERR_WITHIN, -18);
    CHECK_EQ(HEARTBEAT_ERR_MODE, -19);
    CHECK_EQ(HEARTBEAT_ERR_DEADLOCK, -20);
    CHECK_EQ(HEARTBEAT_ERR_FD, -21);
    for (size_t i = 0; i < n; i++) {
        const char *m = heartbeat_strerror(codes[i]);
        CHECK(m != NULL && strlen(m) > 5);
        CHECK(strcmp(m, unknown) != 0);
        CHECK(codes[i] <= 0);
        for (size_t j = 0; j < i; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(m, heartbeat_strerror(codes[j])) != 0);
        }
    }
    /* Unknown codes: static, never NULL, the same message. */
    const int unknowns[] = {1, 2, 1000, INT_MAX, -1000, INT_MIN};
    for (size_t i = 0; i < sizeof unknowns / sizeof unknowns[0]; i++)
        CHECK_STR(heartbeat_strerror(unknowns[i]), unknown);
    CHECK(heartbeat_strerror(HEARTBEAT_OK) == heartbeat_strerror(HEARTBEAT_OK));
    rc = 0;
cleanup:
    return rc;
}

static int test_deadline_ms(void)
{
    int rc = 1;
    CHECK_EQ(heartbeat_deadline_ms(1, 1, 3), 4000);
    CHECK_EQ(heartbeat_deadline_ms(7200, 75, 9), 7875000);
    CHECK_EQ(heartbeat_deadline_ms(0, 0, 0), 0);
    CHECK_EQ(heartbeat_deadline_ms(-1, -1, -1), 0);
    CHECK_EQ(heartbeat_deadline_ms(INT_MIN, 2, 3), 6000);
    CHECK_EQ(heartbeat_deadline_ms(32767, 32767, 127), 4194176000u); /* the largest valid */
    CHECK_EQ(heartbeat_deadline_ms(INT_MAX, INT_MAX, INT_MAX), UINT_MAX);
    CHECK_EQ(heartbeat_deadline_ms(4294967, 0, 0), 4294967000u);
    CHECK_EQ(heartbeat_deadline_ms(4294967, 0, 1), 4294967000u);
    CHECK_EQ(heartbeat_deadline_ms(4294968, 0, 0), UINT_MAX);
    rc = 0;
cleanup:
    return rc;
}

/* heartbeat() sets the four options (read back raw); disable() clears only
 * SO_KEEPALIVE; errno is left alone on success. */
static int test_heartbeat_get_set_get(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    struct raw_opts before = raw_opts(c);
    CHECK_EQ(before.keepalive, 0);
    errno = 12345;
    CHECK_EQ(heartbeat(c, 11, 7, 5), HEARTBEAT_OK);
    CHECK_EQ(errno, 12345);
    struct raw_opts after = raw_opts(c);
    CHECK_EQ(after.keepalive, 1);
    CHECK_EQ(after.idle, 11);
    CHECK_EQ(after.intvl, 7);
    CHECK_EQ(after.cnt, 5);
    CHECK_EQ(after.user_timeout, before.user_timeout);
    CHECK_EQ(heartbeat_disable(c), HEARTBEAT_OK);
    after = raw_opts(c);
    CHECK_EQ(after.keepalive, 0);
    CHECK_EQ(after.idle, 11);
    CHECK_EQ(after.cnt, 5);
    /* Calling twice is fine (idempotent, no retry loop). */
    CHECK_EQ(heartbeat(c, 1, 1, 1), HEARTBEAT_OK);
    CHECK_EQ(heartbeat(c, 1, 1, 1), HEARTBEAT_OK);
    CHECK_EQ(raw_get(c, SOL_SOCKET, SO_KEEPALIVE), 1);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    return rc;
}

/* Every parameter at 0, -1, max, max+1, INT_MIN, INT_MAX: max works, the
 * others return that parameter's code with EINVAL and change nothing. */
static int test_heartbeat_parameter_ranges(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    const int maxes[3] = {HEARTBEAT_IDLE_MAX, HEARTBEAT_INTVL_MAX, HEARTBEAT_CNT_MAX};
    const int codes[3] = {HEARTBEAT_ERR_IDLE, HEARTBEAT_ERR_INTVL, HEARTBEAT_ERR_CNT};
    CHECK_EQ(HEARTBEAT_IDLE_MAX, 32767);
    CHECK_EQ(HEARTBEAT_INTVL_MAX, 32767);
    CHECK_EQ(HEARTBEAT_CNT_MAX, 127);
    CHECK_EQ(HEARTBEAT_IDLE_MIN, 1);
    CHECK_EQ(HEARTBEAT_INTVL_MIN, 1);
    CHECK_EQ(HEARTBEAT_CNT_MIN, 1);
    for (int p = 0; p < 3; p++) {
        const int bad[5] = {0, -1, maxes[p] + 1, INT_MIN, INT_MAX};
        for (int k = 0; k < 5; k++) {
            int a[3] = {2, 3, 4};
            a[p] = bad[k];
            struct raw_opts before = raw_opts(c);
            CHECK_RC_ERRNO(heartbeat(c, a[0], a[1], a[2]), codes[p], EINVAL);
            CHECK(raw_opts_equal(before, raw_opts(c)));
        }
        int a[3] = {2, 3, 4};
        a[p] = maxes[p];
        CHECK_EQ(heartbeat(c, a[0], a[1], a[2]), HEARTBEAT_OK);
        struct raw_opts o = raw_opts(c);
        CHECK_EQ(o.idle, a[0]);
        CHECK_EQ(o.intvl, a[1]);
        CHECK_EQ(o.cnt, a[2]);
        CHECK_EQ(heartbeat_disable(c), HEARTBEAT_OK);
    }
    /* A bad value anywhere means no system call at all: the socket stays
     * untouched even when the first parameter is fine. */
    CHECK_EQ(heartbeat_disable(c), HEARTBEAT_OK);
    CHECK_RC_ERRNO(heartbeat(c, 9, 9, 0), HEARTBEAT_ERR_CNT, EINVAL);
    CHECK(raw_get(c, IPPROTO_TCP, TCP_KEEPIDLE) != 9);
    CHECK_EQ(raw_get(c, SOL_SOCKET, SO_KEEPALIVE), 0);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    return rc;
}

/* heartbeat_apply(): every field's range, including enabled and the user
 * timeout, and NULL. */
static int test_apply_field_ranges(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    const struct heartbeat_config good = {1, 5, 6, 7, 8000};
    struct {
        struct heartbeat_config cfg;
        int code;
    } cases[] = {
        {{0, 0, 6, 7, 0}, HEARTBEAT_ERR_IDLE},
        {{0, -1, 6, 7, 0}, HEARTBEAT_ERR_IDLE},
        {{0, 32768, 6, 7, 0}, HEARTBEAT_ERR_IDLE},
        {{0, INT_MIN, 6, 7, 0}, HEARTBEAT_ERR_IDLE},
        {{0, INT_MAX, 6, 7, 0}, HEARTBEAT_ERR_IDLE},
        {{0, 5, 0, 7, 0}, HEARTBEAT_ERR_INTVL},
        {{0, 5, -1, 7, 0}, HEARTBEAT_ERR_INTVL},
        {{0, 5, 32768, 7, 0}, HEARTBEAT_ERR_INTVL},
        {{0, 5, INT_MIN, 7, 0}, HEARTBEAT_ERR_INTVL},
        {{0, 5, INT_MAX, 7, 0}, HEARTBEAT_ERR_INTVL},
        {{0, 5, 6, 0, 0}, HEARTBEAT_ERR_CNT},
        {{0, 5, 6, -1, 0}, HEARTBEAT_ERR_CNT},
        {{0, 5, 6, 128, 0}, HEARTBEAT_ERR_CNT},
        {{0, 5, 6, INT_MIN, 0}, HEARTBEAT_ERR_CNT},
        {{0, 5, 6, INT_MAX, 0}, HEARTBEAT_ERR_CNT},
        {{0, 5, 6, 7, (unsigned)INT_MAX + 1u}, HEARTBEAT_ERR_USER_TIMEOUT},
        {{0, 5, 6, 7, UINT_MAX}, HEARTBEAT_ERR_USER_TIMEOUT},
        {{2, 5, 6, 7, 0}, HEARTBEAT_ERR_KEEPALIVE},
        {{-1, 5, 6, 7, 0}, HEARTBEAT_ERR_KEEPALIVE},
        {{INT_MIN, 5, 6, 7, 0}, HEARTBEAT_ERR_KEEPALIVE},
        {{INT_MAX, 5, 6, 7, 0}, HEARTBEAT_ERR_KEEPALIVE},
    };
    CHECK_EQ(heartbeat_apply(c, &good), HEARTBEAT_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct raw_opts before = raw_opts(c);
        struct heartbeat_config copy = cases[i].cfg;
        CHECK_RC_ERRNO(heartbeat_apply(c, &cases[i].cfg), cases[i].code, EINVAL);
        CHECK(raw_opts_equal(before, raw_opts(c)));
        CHECK(memcmp(&copy, &cases[i].cfg, sizeof copy) == 0); /* const */
    }
    CHECK_RC_ERRNO(heartbeat_apply(c, NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    /* The limits themselves are accepted. */
    const struct heartbeat_config maxes = {1, 32767, 32767, 127, INT_MAX};
    const struct heartbeat_config mins = {0, 1, 1, 1, 0};
    struct heartbeat_config got;
    CHECK_EQ(heartbeat_apply(c, &maxes), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_get(c, &got), HEARTBEAT_OK);
    CHECK(memcmp(&got, &maxes, sizeof got) == 0);
    CHECK_EQ(heartbeat_apply(c, &mins), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_get(c, &got), HEARTBEAT_OK);
    CHECK(memcmp(&got, &mins, sizeof got) == 0);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    return rc;
}

static int test_null_outputs(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    CHECK_RC_ERRNO(heartbeat_get(c, NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_system_defaults(NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_get(-1, NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    return rc;
}

/* Round trips: apply then get returns exactly the applied config, and the
 * raw options agree. */
static int test_apply_get_round_trip(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    const struct heartbeat_config cfgs[] = {
        {1, 1, 1, 1, 4000}, {0, 60, 10, 6, 0}, {1, 7200, 75, 9, 0}, {1, 3, 2, 4, 123456},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        struct heartbeat_config got;
        memset(&got, 0xa5, sizeof got);
        CHECK_EQ(heartbeat_apply(c, &cfgs[i]), HEARTBEAT_OK);
        CHECK_EQ(heartbeat_get(c, &got), HEARTBEAT_OK);
        CHECK(memcmp(&got, &cfgs[i], sizeof got) == 0);
        struct raw_opts o = raw_opts(c);
        CHECK_EQ(o.keepalive, cfgs[i].enabled);
        CHECK_EQ(o.idle, cfgs[i].idle);
        CHECK_EQ(o.intvl, cfgs[i].intvl);
        CHECK_EQ(o.cnt, cfgs[i].cnt);
        CHECK_EQ(o.user_timeout, (int)cfgs[i].user_timeout_ms);
    }
    /* heartbeat_get reads options set with raw calls too. */
    struct raw_opts want = {1, 42, 13, 17, 999};
    struct heartbeat_config got;
    CHECK_EQ(raw_set_all(c, want), 0);
    CHECK_EQ(heartbeat_get(c, &got), HEARTBEAT_OK);
    CHECK_EQ(got.enabled, 1);
    CHECK_EQ(got.idle, 42);
    CHECK_EQ(got.intvl, 13);
    CHECK_EQ(got.cnt, 17);
    CHECK_EQ(got.user_timeout_ms, 999);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    return rc;
}

/* fds that are not TCP sockets: every function fails on its first call
 * with a documented code and errno, and nothing is changed. */
enum fdkind { FD_MINUS1, FD_CLOSED, FD_FILE, FD_PIPE, FD_UDP, FD_UDP6, FD_UNIX, FD_KINDS };
static const char *const fdkind_name[FD_KINDS] = {"-1", "closed", "file", "pipe", "udp", "udp6", "unix"};

static int make_fd(enum fdkind k, int *extra)
{
    int fd = -1, p[2];
    *extra = -1;
    switch (k) {
    case FD_MINUS1:
        return -1;
    case FD_CLOSED:
        fd = socket(AF_INET, SOCK_STREAM, 0);
        close(fd);
        return fd;
    case FD_FILE:
        return open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    case FD_PIPE:
        if (pipe(p) != 0)
            return -2;
        *extra = p[1];
        return p[0];
    case FD_UDP:
        return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    case FD_UDP6:
        return socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    case FD_UNIX:
        return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    default:
        return -2;
    }
}

static int test_non_tcp_fds(void)
{
    int rc = 1, fd = -1, extra = -1;
    const int want_errno[FD_KINDS] = {EBADF, EBADF, ENOTSOCK, ENOTSOCK, ENOPROTOOPT, ENOPROTOOPT, EOPNOTSUPP};
    /* The kernel answers getsockopt(IPPROTO_TCP) on UDP over IPv4 with
     * EOPNOTSUPP, over IPv6 with ENOPROTOOPT (as docs/keepalive.md says). */
    const int want_get_errno[FD_KINDS] = {EBADF, EBADF, ENOTSOCK, ENOTSOCK, EOPNOTSUPP, ENOPROTOOPT, EOPNOTSUPP};
    const int disable_rc[FD_KINDS] = {HEARTBEAT_ERR_KEEPALIVE, HEARTBEAT_ERR_KEEPALIVE,
                                      HEARTBEAT_ERR_KEEPALIVE, HEARTBEAT_ERR_KEEPALIVE,
                                      HEARTBEAT_OK, HEARTBEAT_OK, HEARTBEAT_OK};
    const int disable_errno[FD_KINDS] = {EBADF, EBADF, ENOTSOCK, ENOTSOCK, 0, 0, 0};
    const struct heartbeat_config cfg = {1, 5, 5, 5, 5000};
    for (int k = 0; k < FD_KINDS; k++) {
        fd = make_fd((enum fdkind)k, &extra);
        if (k >= FD_FILE)
            CHECK(fd >= 0);
        fprintf(stderr, "  fd kind %s\n", fdkind_name[k]);
        struct heartbeat_config out;
        memset(&out, 0x5a, sizeof out);
        struct heartbeat_config sentinel = out;
        CHECK_RC_ERRNO(heartbeat(fd, 1, 1, 1), HEARTBEAT_ERR_IDLE, want_errno[k]);
        CHECK_RC_ERRNO(heartbeat_apply(fd, &cfg), HEARTBEAT_ERR_IDLE, want_get_errno[k]);
        CHECK_RC_ERRNO(heartbeat_get(fd, &out), HEARTBEAT_ERR_IDLE, want_get_errno[k]);
        CHECK(memcmp(&out, &sentinel, sizeof out) == 0); /* written only on success */
        CHECK_RC_ERRNO(heartbeat_within(fd, 10000, 0), HEARTBEAT_ERR_IDLE, want_get_errno[k]);
        if (k == FD_UDP || k == FD_UDP6 || k == FD_UNIX) /* nothing was changed */
            CHECK_EQ(raw_get(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
        CHECK_RC_ERRNO(heartbeat_disable(fd), disable_rc[k], disable_errno[k]);
        if (fd >= 0 && k != FD_CLOSED)
            close(fd);
        if (extra >= 0)
            close(extra);
        fd = extra = -1;
    }
    rc = 0;
cleanup:
    if (fd >= 0)
        close(fd);
    if (extra >= 0)
        close(extra);
    return rc;
}

/* TCP sockets in other states: IPv6, listening, unconnected (v4 and v6). */
static int test_tcp_socket_kinds(void)
{
    int rc = 1, fds[6] = {-1, -1, -1, -1, -1, -1};
    const char *names[6] = {"ipv6 client", "ipv6 server", "listening v4", "listening v6",
                            "unconnected v4", "unconnected v6"};
    CHECK_EQ(tcp_pair(1, &fds[0], &fds[1]), 0);
    fds[2] = tcp_listener(0);
    fds[3] = tcp_listener(1);
    fds[4] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    fds[5] = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    for (int i = 0; i < 6; i++) {
        fprintf(stderr, "  %s\n", names[i]);
        CHECK(fds[i] >= 0);
        CHECK_EQ(heartbeat(fds[i], 3, 4, 5), HEARTBEAT_OK);
        struct raw_opts o = raw_opts(fds[i]);
        CHECK_EQ(o.keepalive, 1);
        CHECK_EQ(o.idle, 3);
        CHECK_EQ(o.intvl, 4);
        CHECK_EQ(o.cnt, 5);
        const struct heartbeat_config cfg = {1, 9, 8, 7, 6000};
        struct heartbeat_config got;
        CHECK_EQ(heartbeat_apply(fds[i], &cfg), HEARTBEAT_OK);
        CHECK_EQ(heartbeat_get(fds[i], &got), HEARTBEAT_OK);
        CHECK(memcmp(&got, &cfg, sizeof got) == 0);
        CHECK_EQ(heartbeat_disable(fds[i]), HEARTBEAT_OK);
        CHECK_EQ(raw_get(fds[i], SOL_SOCKET, SO_KEEPALIVE), 0);
    }
    rc = 0;
cleanup:
    for (int i = 0; i < 6; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

/* Options set on a listening socket are inherited by connections whose
 * handshake completes afterwards (all five, v4 and v6), not by connections
 * already established (waiting in the accept queue) when they were set. */
static int inherit(int v6)
{
    int rc = 1, lfd = -1, early_c = -1, early_s = -1, late_c = -1, late_s = -1;
    const struct heartbeat_config cfg = {1, 21, 22, 23, 24000};
    struct heartbeat_config defaults, got;
    lfd = tcp_listener(v6);
    CHECK(lfd >= 0);
    CHECK_EQ(heartbeat_get(lfd, &defaults), HEARTBEAT_OK);
    /* Early: handshake completes, and the child socket exists (the listener
     * is readable), before the options are set. */
    early_c = tcp_connect_to(lfd);
    CHECK(early_c >= 0);
    struct pollfd pfd = {lfd, POLLIN, 0};
    CHECK_EQ(poll(&pfd, 1, 2000), 1);
    CHECK_EQ(heartbeat_apply(lfd, &cfg), HEARTBEAT_OK);
    late_c = tcp_connect_to(lfd);
    CHECK(late_c >= 0);
    early_s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    late_s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(early_s >= 0 && late_s >= 0);
    CHECK_EQ(heartbeat_get(late_s, &got), HEARTBEAT_OK);
    CHECK(memcmp(&got, &cfg, sizeof got) == 0);
    struct raw_opts o = raw_opts(late_s); /* raw, all five */
    CHECK_EQ(o.keepalive, 1);
    CHECK_EQ(o.idle, 21);
    CHECK_EQ(o.intvl, 22);
    CHECK_EQ(o.cnt, 23);
    CHECK_EQ(o.user_timeout, 24000);
    CHECK_EQ(heartbeat_get(early_s, &got), HEARTBEAT_OK);
    CHECK(memcmp(&got, &defaults, sizeof got) == 0);
    CHECK_EQ(raw_get(early_s, SOL_SOCKET, SO_KEEPALIVE), 0);
    /* The connecting side is not affected either way. */
    CHECK_EQ(raw_get(late_c, SOL_SOCKET, SO_KEEPALIVE), 0);
    rc = 0;
cleanup:
    if (lfd >= 0)
        close(lfd);
    if (early_c >= 0)
        close(early_c);
    if (early_s >= 0)
        close(early_s);
    if (late_c >= 0)
        close(late_c);
    if (late_s >= 0)
        close(late_s);
    return rc;
}

static int test_inherit_through_accept_v4(void) { return inherit(0); }
static int test_inherit_through_accept_v6(void) { return inherit(1); }

static int read_proc_int(const char *path)
{
    FILE *f = fopen(path, "r");
    int v = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%d", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

static int test_system_defaults_equal_proc(void)
{
    int rc = 1;
    struct heartbeat_config d;
    memset(&d, 0x77, sizeof d);
    CHECK_EQ(heartbeat_system_defaults(&d), HEARTBEAT_OK);
    CHECK_EQ(d.enabled, 0);
    CHECK_EQ(d.user_timeout_ms, 0);
    CHECK_EQ(d.idle, read_proc_int("/proc/sys/net/ipv4/tcp_keepalive_time"));
    CHECK_EQ(d.intvl, read_proc_int("/proc/sys/net/ipv4/tcp_keepalive_intvl"));
    CHECK_EQ(d.cnt, read_proc_int("/proc/sys/net/ipv4/tcp_keepalive_probes"));
    /* A fresh socket reads the same defaults. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct heartbeat_config s;
    CHECK(fd >= 0);
    int grc = heartbeat_get(fd, &s);
    close(fd);
    CHECK_EQ(grc, HEARTBEAT_OK);
    CHECK(memcmp(&s, &d, sizeof s) == 0);
    rc = 0;
cleanup:
    return rc;
}

/* In a private mount namespace, hide one /proc file (or all of them) and
 * report heartbeat_system_defaults()'s code and errno through a pipe. */
static int defaults_with_hidden(const char *hide, int tmpfs, int *code, int *err)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int r[2] = {99, 0};
        close(p[0]);
        if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
            (tmpfs ? mount("none", hide, "tmpfs", 0, NULL) : mount("/dev/null", hide, NULL, MS_BIND, NULL)) == 0) {
            struct heartbeat_config d;
            errno = 0;
            r[0] = heartbeat_system_defaults(&d);
            r[1] = errno;
        } else {
            r[1] = errno;
        }
        if (write(p[1], r, sizeof r) != (ssize_t)sizeof r)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    int r[2] = {0, 0};
    ssize_t n = read(p[0], r, sizeof r);
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (n != (ssize_t)sizeof r)
        return -1;
    *code = r[0];
    *err = r[1];
    return 0;
}

static int test_system_defaults_unreadable(void)
{
    int rc = 1, code = 0, err = 0;
    if (geteuid() != 0) {
        SKIP(test_system_defaults_unreadable, "needs root for a private mount namespace");
        return 0;
    }
    /* Not a number (an empty file): EINVAL, named by the file's option. */
    CHECK_EQ(defaults_with_hidden("/proc/sys/net/ipv4/tcp_keepalive_intvl", 0, &code, &err), 0);
    CHECK_EQ(code, HEARTBEAT_ERR_INTVL);
    CHECK_EQ(err, EINVAL);
    CHECK_EQ(defaults_with_hidden("/proc/sys/net/ipv4/tcp_keepalive_probes", 0, &code, &err), 0);
    CHECK_EQ(code, HEARTBEAT_ERR_CNT);
    CHECK_EQ(err, EINVAL);
    CHECK_EQ(defaults_with_hidden("/proc/sys/net/ipv4/tcp_keepalive_time", 0, &code, &err), 0);
    CHECK_EQ(code, HEARTBEAT_ERR_IDLE);
    CHECK_EQ(err, EINVAL);
    /* Missing files: the open() errno, the first file's option. */
    CHECK_EQ(defaults_with_hidden("/proc/sys/net/ipv4", 1, &code, &err), 0);
    CHECK_EQ(code, HEARTBEAT_ERR_IDLE);
    CHECK_EQ(err, ENOENT);
    rc = 0;
cleanup:
    return rc;
}

/* Many threads configuring distinct sockets at once. */
#define THREADS 16
#define ROUNDS 300
static void *thread_main(void *arg)
{
    long id = (long)arg, bad = 0;
    int c = -1, s = -1;
    if (tcp_pair(id & 1, &c, &s) != 0)
        return (void *)1L;
    for (int i = 0; i < ROUNDS; i++) {
        const struct heartbeat_config cfg = {i & 1, 1 + (int)id, 1 + i % 100, 1 + (i + (int)id) % 127,
                                             (unsigned)(i * 7 + id)};
        struct heartbeat_config got;
        if (heartbeat_apply(c, &cfg) != HEARTBEAT_OK || heartbeat_get(c, &got) != HEARTBEAT_OK ||
            memcmp(&got, &cfg, sizeof got) != 0)
            bad++;
        if (heartbeat(s, 1 + (int)id, 2, 3) != HEARTBEAT_OK || raw_get(s, IPPROTO_TCP, TCP_KEEPIDLE) != 1 + id)
            bad++;
    }
    close(c);
    close(s);
    return (void *)bad;
}

/* heartbeat_config_within(): the documented examples, the range, the
 * flags, NULL; and what the function promises over the whole range
 * (deadline <= ms, user timeout = deadline, monotonic): the Rust unit tests
 * walk every value, this walks a sample through the C ABI. */
static int test_config_within(void)
{
    int rc = 1;
    struct heartbeat_config c, sentinel;
    static const struct {
        unsigned ms;
        struct heartbeat_config want;
    } ex[] = {
        {HEARTBEAT_WITHIN_MIN_MS, {1, 1, 1, 1, 2000}},
        {3000, {1, 1, 1, 1, 2000}},
        {5000, {1, 1, 1, 3, 4000}},
        {10000, {1, 5, 1, 3, 8000}},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        CHECK_EQ(heartbeat_config_within(ex[i].ms, 0, &c), HEARTBEAT_OK);
        fprintf(stderr, "  within %u: %d/%d/%d user timeout %u\n", ex[i].ms, c.idle, c.intvl, c.cnt,
                c.user_timeout_ms);
        CHECK(memcmp(&c, &ex[i].want, sizeof c) == 0);
        CHECK_EQ(heartbeat_config_within(ex[i].ms, HEARTBEAT_WITHIN_KEEP_SLOW_READERS, &c), HEARTBEAT_OK);
        CHECK_EQ(c.user_timeout_ms, 0);
        CHECK_EQ(c.idle, ex[i].want.idle);
        CHECK_EQ(c.cnt, ex[i].want.cnt);
    }
    memset(&c, 0x5a, sizeof c);
    sentinel = c;
    const unsigned bad[] = {0, 1, 1000, 2000, HEARTBEAT_WITHIN_MIN_MS - 1, HEARTBEAT_WITHIN_MAX_MS + 1,
                            UINT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC_ERRNO(heartbeat_config_within(bad[i], 0, &c), HEARTBEAT_ERR_WITHIN, EINVAL);
        CHECK_RC_ERRNO(heartbeat_config_within(bad[i], HEARTBEAT_WITHIN_KEEP_SLOW_READERS, &c),
                       HEARTBEAT_ERR_WITHIN, EINVAL);
    }
    CHECK_RC_ERRNO(heartbeat_config_within(10000, 2, &c), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_config_within(10000, 0x80000000u, &c), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_config_within(10000, UINT_MAX, &c), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK(memcmp(&c, &sentinel, sizeof c) == 0);
    CHECK_RC_ERRNO(heartbeat_config_within(10000, 0, NULL), HEARTBEAT_ERR_INVALID, EINVAL);
    unsigned prev = 0;
    for (unsigned ms = HEARTBEAT_WITHIN_MIN_MS; ms <= HEARTBEAT_WITHIN_MAX_MS; ms += ms / 50 + 1) {
        CHECK_EQ(heartbeat_config_within(ms, 0, &c), HEARTBEAT_OK);
        unsigned d = heartbeat_deadline_ms(c.idle, c.intvl, c.cnt);
        CHECK(d <= ms && d >= prev);
        CHECK_EQ(c.user_timeout_ms, d);
        CHECK(c.enabled == 1 && c.idle >= 1 && c.intvl >= 1 && c.cnt >= 1);
        prev = d;
    }
    CHECK_EQ(heartbeat_config_within(HEARTBEAT_WITHIN_MAX_MS, 0, &c), HEARTBEAT_OK);
    rc = 0;
cleanup:
    return rc;
}

/* heartbeat_within(): applies what heartbeat_config_within() says; bad
 * input changes nothing (read back raw). */
static int test_within_applies_or_changes_nothing(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    struct heartbeat_config want, got;
    CHECK_EQ(heartbeat_within(c, 10000, 0), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_config_within(10000, 0, &want), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_get(c, &got), HEARTBEAT_OK);
    CHECK(memcmp(&got, &want, sizeof got) == 0);
    struct raw_opts o = raw_opts(c);
    CHECK(o.keepalive == 1 && o.idle == want.idle && o.intvl == want.intvl && o.cnt == want.cnt &&
          o.user_timeout == (int)want.user_timeout_ms);
    struct raw_opts before = raw_opts(c);
    const unsigned bad[] = {0, HEARTBEAT_WITHIN_MIN_MS - 1, HEARTBEAT_WITHIN_MAX_MS + 1, UINT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_RC_ERRNO(heartbeat_within(c, bad[i], 0), HEARTBEAT_ERR_WITHIN, EINVAL);
    CHECK_RC_ERRNO(heartbeat_within(c, 5000, 4), HEARTBEAT_ERR_INVALID, EINVAL);
    CHECK_RC_ERRNO(heartbeat_within(-1, 0, 0), HEARTBEAT_ERR_WITHIN, EINVAL); /* range first */
    CHECK(raw_opts_equal(before, raw_opts(c)));
    CHECK_EQ(heartbeat_within(c, 5000, HEARTBEAT_WITHIN_KEEP_SLOW_READERS), HEARTBEAT_OK);
    CHECK_EQ(raw_get(c, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
    CHECK_EQ(raw_get(c, IPPROTO_TCP, TCP_KEEPCNT), 3);
    /* Listening and IPv6 sockets too. */
    int l = tcp_listener(1);
    CHECK(l >= 0);
    int r = heartbeat_within(l, 3000, 0);
    int ut = raw_get(l, IPPROTO_TCP, TCP_USER_TIMEOUT);
    close(l);
    CHECK_EQ(r, HEARTBEAT_OK);
    CHECK_EQ(ut, 2000);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    return rc;
}

/* MPTCP is TCP to the application, without TCP_USER_TIMEOUT (the kernel
 * refuses it): heartbeat() works; get() reads user_timeout_ms 0; apply()
 * of what get() returned round-trips; a user timeout is refused with
 * HEARTBEAT_ERR_USER_TIMEOUT/EOPNOTSUPP and nothing changes; within()
 * needs HEARTBEAT_WITHIN_KEEP_SLOW_READERS. On a loopback MPTCP pair and
 * on an unconnected socket. */
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
static int mptcp_pair(int *c, int *s)
{
    *c = *s = -1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
    if (l < 0)
        return -1;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0 ||
        (*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP)) < 0 ||
        connect(*c, (struct sockaddr *)&a, sizeof a) != 0 || (*s = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        close(l);
        return -1;
    }
    close(l);
    return 0;
}

static int test_mptcp(void)
{
    int rc = 1, fds[3] = {-1, -1, -1};
    int probe = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
    if (probe < 0) {
        printf("SKIP - MPTCP is not available here (%s)\n", strerror(errno));
        return 0;
    }
    close(probe);
    CHECK_EQ(mptcp_pair(&fds[0], &fds[1]), 0);
    CHECK((fds[2] = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP)) >= 0);
    for (int i = 0; i < 3; i++) {
        int fd = fds[i];
        fprintf(stderr, "  mptcp fd %d\n", i);
        CHECK_EQ(raw_get(fd, SOL_SOCKET, SO_PROTOCOL), IPPROTO_MPTCP);
        CHECK_EQ(heartbeat(fd, 7, 6, 5), HEARTBEAT_OK);
        struct heartbeat_config got;
        /* The refused TCP_USER_TIMEOUT read leaves no errno behind. */
        errno = EXDEV;
        CHECK_EQ(heartbeat_get(fd, &got), HEARTBEAT_OK);
        CHECK_EQ(errno, EXDEV);
        CHECK(got.enabled == 1 && got.idle == 7 && got.intvl == 6 && got.cnt == 5 && got.user_timeout_ms == 0);
        CHECK_EQ(heartbeat_apply(fd, &got), HEARTBEAT_OK); /* round trip */
        const struct heartbeat_config cfg = {0, 9, 8, 4, 0};
        CHECK_EQ(heartbeat_apply(fd, &cfg), HEARTBEAT_OK);
        CHECK_EQ(heartbeat_get(fd, &got), HEARTBEAT_OK);
        CHECK(memcmp(&got, &cfg, sizeof got) == 0);
        struct raw_opts before = raw_opts(fd);
        CHECK_EQ(before.keepalive, 0);
        CHECK_EQ(before.idle, 9);
        const struct heartbeat_config with_ut = {1, 3, 2, 1, 5000};
        CHECK_RC_ERRNO(heartbeat_apply(fd, &with_ut), HEARTBEAT_ERR_USER_TIMEOUT, EOPNOTSUPP);
        CHECK_RC_ERRNO(heartbeat_within(fd, 10000, 0), HEARTBEAT_ERR_USER_TIMEOUT, EOPNOTSUPP);
        CHECK(raw_opts_equal(before, raw_opts(fd)));
        struct heartbeat_config want;
        CHECK_EQ(heartbeat_within(fd, 10000, HEARTBEAT_WITHIN_KEEP_SLOW_READERS), HEARTBEAT_OK);
        CHECK_EQ(heartbeat_config_within(10000, HEARTBEAT_WITHIN_KEEP_SLOW_READERS, &want), HEARTBEAT_OK);
        CHECK_EQ(heartbeat_get(fd, &got), HEARTBEAT_OK);
        CHECK(memcmp(&got, &want, sizeof got) == 0);
        CHECK_EQ(heartbeat_disable(fd), HEARTBEAT_OK);
        CHECK_EQ(raw_get(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    }
    rc = 0;
cleanup:
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

static int test_threads_distinct_sockets(void)
{
    int rc = 1, started = 0;
    pthread_t t[THREADS];
    long total = 0;
    for (long i = 0; i < THREADS; i++) {
        CHECK_EQ(pthread_create(&t[i], NULL, thread_main, (void *)i), 0);
        started++;
    }
    rc = 0;
cleanup:
    for (int i = 0; i < started; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    if (total != 0) {
        fprintf(stderr, "  %ld mismatches across threads\n", total);
        rc = 1;
    }
    return rc;
}

int main(void)
{
    RUN(test_version);
    RUN(test_strerror_every_code);
    RUN(test_deadline_ms);
    RUN(test_heartbeat_get_set_get);
    RUN(test_heartbeat_parameter_ranges);
    RUN(test_apply_field_ranges);
    RUN(test_null_outputs);
    RUN(test_apply_get_round_trip);
    RUN(test_non_tcp_fds);
    RUN(test_tcp_socket_kinds);
    RUN(test_inherit_through_accept_v4);
    RUN(test_inherit_through_accept_v6);
    RUN(test_system_defaults_equal_proc);
    RUN(test_system_defaults_unreadable);
    RUN(test_config_within);
    RUN(test_within_applies_or_changes_nothing);
    RUN(test_mptcp);
    RUN(test_threads_distinct_sockets);
    return CHECK_EXIT();
}
