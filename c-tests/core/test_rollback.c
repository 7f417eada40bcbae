/* heartbeat_apply()'s rollback when the previous values are beyond what
 * setsockopt() accepts (issue 8, defect 11).
 *
 * Run by c-tests/core/suite.sh in a private network namespace (unshare -n)
 * whose defaults are net.ipv4.tcp_keepalive_time = 40000 and
 * tcp_keepalive_probes = 200, under the fault injector
 * (LD_PRELOAD=faultinject.so): a new socket there reads idle 40000 and cnt
 * 200, which setsockopt() refuses (at most 32767 and 127), so a rollback
 * cannot put them back. The library must then say so
 * (HEARTBEAT_ERR_ROLLBACK, with the refused call's errno) instead of
 * returning the refused option's code as if nothing had changed; and
 * heartbeat_get() then heartbeat_apply() of what it returned must fail
 * clearly and change nothing. Prints SKIP when not run in such a
 * namespace. */
#include "heartbeat.h"

#include "check.h"
#include "sockets.h"

#include <stdlib.h>

#define NS_IDLE 40000
#define NS_CNT 200

static int read_proc(const char *path)
{
    FILE *f = fopen(path, "r");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void fault(const char *spec)
{
    setenv("HEARTBEAT_FAULT", spec, 1);
    setenv("HEARTBEAT_FAULT_CLOBBER", "1", 1);
}

static void no_fault(void)
{
    setenv("HEARTBEAT_FAULT", "", 1);
    setenv("HEARTBEAT_FAULT_CLOBBER", "0", 1);
}

/* Each option of `after` is either its value in `before` or in `cfg`. */
static int old_or_new(struct raw_opts before, struct raw_opts after, const struct heartbeat_config *cfg)
{
    return (after.idle == before.idle || after.idle == cfg->idle) &&
           (after.intvl == before.intvl || after.intvl == cfg->intvl) &&
           (after.cnt == before.cnt || after.cnt == cfg->cnt) &&
           (after.user_timeout == before.user_timeout || after.user_timeout == (int)cfg->user_timeout_ms) &&
           (after.keepalive == before.keepalive || after.keepalive == cfg->enabled);
}

/* A fresh TCP socket (kind 0) or a connected loopback client (kind 1). */
static int make_socket(int kind, int *extra)
{
    *extra = -1;
    if (kind == 0)
        return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int c = -1;
    if (tcp_pair(0, &c, extra) != 0)
        return -1;
    return c;
}

static int test_new_sockets_read_the_namespace_defaults(void)
{
    int rc = 1, fd = -1, extra = -1;
    for (int kind = 0; kind < 2; kind++) {
        fd = make_socket(kind, &extra);
        CHECK(fd >= 0);
        struct heartbeat_config got;
        CHECK_EQ(heartbeat_get(fd, &got), HEARTBEAT_OK);
        CHECK_EQ(got.idle, NS_IDLE);
        CHECK_EQ(got.cnt, NS_CNT);
        /* ... which setsockopt() itself refuses. */
        int v = NS_IDLE;
        CHECK(setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof v) == -1 && errno == EINVAL);
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

/* get() then apply() of what it returned: the range code, nothing changed,
 * no setsockopt at all. */
static int test_get_then_apply_fails_clearly(void)
{
    int rc = 1, fd = -1, extra = -1;
    for (int kind = 0; kind < 2; kind++) {
        fd = make_socket(kind, &extra);
        CHECK(fd >= 0);
        struct heartbeat_config got;
        CHECK_EQ(heartbeat_get(fd, &got), HEARTBEAT_OK);
        struct raw_opts before = raw_opts(fd);
        /* Any setsockopt would fail: none may be made. */
        fault("set:TCP_KEEPIDLE:1:1,set:TCP_KEEPCNT:1:1,set:SO_KEEPALIVE:1:1");
        CHECK_RC_ERRNO(heartbeat_apply(fd, &got), HEARTBEAT_ERR_IDLE, EINVAL);
        no_fault();
        CHECK(raw_opts_equal(before, raw_opts(fd)));
        /* With idle in range, cnt 200 is the next to be refused. */
        got.idle = 30;
        CHECK_RC_ERRNO(heartbeat_apply(fd, &got), HEARTBEAT_ERR_CNT, EINVAL);
        CHECK(raw_opts_equal(before, raw_opts(fd)));
        close(fd);
        if (extra >= 0)
            close(extra);
        fd = extra = -1;
    }
    rc = 0;
cleanup:
    no_fault();
    if (fd >= 0)
        close(fd);
    if (extra >= 0)
        close(extra);
    return rc;
}

/* The defect: SO_KEEPALIVE (the last option) refused. idle 40000 and cnt
 * 200 cannot be set back: HEARTBEAT_ERR_ROLLBACK with the refused call's
 * errno, and every option old or new; what could be restored is. */
static int test_refused_keepalive_is_a_visible_rollback_failure(void)
{
    int rc = 1, fd = -1, extra = -1;
    const struct heartbeat_config cfg = {1, 11, 12, 13, 14000};
    for (int kind = 0; kind < 2; kind++) {
        fd = make_socket(kind, &extra);
        CHECK(fd >= 0);
        struct raw_opts before = raw_opts(fd);
        CHECK_EQ(before.idle, NS_IDLE);
        fault("set:SO_KEEPALIVE:1:12"); /* ENOMEM */
        CHECK_RC_ERRNO(heartbeat_apply(fd, &cfg), HEARTBEAT_ERR_ROLLBACK, ENOMEM);
        no_fault();
        struct raw_opts after = raw_opts(fd);
        fprintf(stderr, "  after: idle %d intvl %d cnt %d user_timeout %d keepalive %d\n",
                after.idle, after.intvl, after.cnt, after.user_timeout, after.keepalive);
        CHECK(old_or_new(before, after, &cfg));
        CHECK_EQ(after.intvl, before.intvl);               /* restored */
        CHECK_EQ(after.user_timeout, before.user_timeout); /* restored */
        CHECK_EQ(after.keepalive, before.keepalive);       /* never changed */
        CHECK_EQ(after.idle, cfg.idle);                    /* not restorable */
        CHECK_EQ(after.cnt, cfg.cnt);                      /* not restorable */
        close(fd);
        if (extra >= 0)
            close(extra);
        fd = extra = -1;
    }
    rc = 0;
cleanup:
    no_fault();
    if (fd >= 0)
        close(fd);
    if (extra >= 0)
        close(extra);
    return rc;
}

/* Every refusal point: exact when nothing unrestorable was changed yet
 * (TCP_KEEPIDLE refused first: the option's code, socket untouched),
 * HEARTBEAT_ERR_ROLLBACK otherwise; always old-or-new. */
static int test_every_refusal_point(void)
{
    int rc = 1, fd = -1;
    const struct heartbeat_config cfg = {1, 21, 22, 23, 24000};
    static const struct {
        const char *opt;
        int exact_code; /* the code if the rollback were exact */
        int err;
    } pts[5] = {
        {"TCP_KEEPIDLE", HEARTBEAT_ERR_IDLE, EPERM},
        {"TCP_KEEPINTVL", HEARTBEAT_ERR_INTVL, EACCES},
        {"TCP_KEEPCNT", HEARTBEAT_ERR_CNT, ENOBUFS},
        {"TCP_USER_TIMEOUT", HEARTBEAT_ERR_USER_TIMEOUT, EROFS},
        {"SO_KEEPALIVE", HEARTBEAT_ERR_KEEPALIVE, ENOMEM},
    };
    for (int i = 0; i < 5; i++) {
        CHECK((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
        struct raw_opts before = raw_opts(fd);
        char spec[64];
        snprintf(spec, sizeof spec, "set:%s:1:%d", pts[i].opt, pts[i].err);
        fault(spec);
        int want = i == 0 ? pts[i].exact_code : HEARTBEAT_ERR_ROLLBACK;
        fprintf(stderr, "  refusing %s\n", pts[i].opt);
        CHECK_RC_ERRNO(heartbeat_apply(fd, &cfg), want, pts[i].err);
        no_fault();
        struct raw_opts after = raw_opts(fd);
        CHECK(old_or_new(before, after, &cfg));
        if (i == 0)
            CHECK(raw_opts_equal(before, after));
        close(fd);
        fd = -1;
    }
    rc = 0;
cleanup:
    no_fault();
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Control: once the values are in range (set by the library), the same
 * refusal is rolled back exactly and gets the option's own code. */
static int test_in_range_values_roll_back_exactly(void)
{
    int rc = 1, fd = -1;
    const struct heartbeat_config start = {0, 31, 32, 33, 34000};
    const struct heartbeat_config cfg = {1, 11, 12, 13, 14000};
    CHECK((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    CHECK_EQ(heartbeat_apply(fd, &start), HEARTBEAT_OK);
    struct raw_opts before = raw_opts(fd);
    fault("set:SO_KEEPALIVE:1:12");
    CHECK_RC_ERRNO(heartbeat_apply(fd, &cfg), HEARTBEAT_ERR_KEEPALIVE, ENOMEM);
    no_fault();
    CHECK(raw_opts_equal(before, raw_opts(fd)));
    rc = 0;
cleanup:
    no_fault();
    if (fd >= 0)
        close(fd);
    return rc;
}

/* heartbeat_within() goes through the same mechanism. */
static int test_within_reports_the_rollback_too(void)
{
    int rc = 1, fd = -1;
    struct heartbeat_config want;
    CHECK((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    CHECK_EQ(heartbeat_config_within(10000, 0, &want), HEARTBEAT_OK);
    struct raw_opts before = raw_opts(fd);
    fault("set:SO_KEEPALIVE:1:12");
    CHECK_RC_ERRNO(heartbeat_within(fd, 10000, 0), HEARTBEAT_ERR_ROLLBACK, ENOMEM);
    no_fault();
    CHECK(old_or_new(before, raw_opts(fd), &want));
    /* Without a fault it applies, and then the socket rolls back exactly. */
    CHECK_EQ(heartbeat_within(fd, 10000, 0), HEARTBEAT_OK);
    before = raw_opts(fd);
    fault("set:SO_KEEPALIVE:1:12");
    CHECK_RC_ERRNO(heartbeat_within(fd, 5000, HEARTBEAT_WITHIN_KEEP_SLOW_READERS),
                   HEARTBEAT_ERR_KEEPALIVE, ENOMEM);
    no_fault();
    CHECK(raw_opts_equal(before, raw_opts(fd)));
    rc = 0;
cleanup:
    no_fault();
    if (fd >= 0)
        close(fd);
    return rc;
}

int main(void)
{
    int idle = read_proc("/proc/sys/net/ipv4/tcp_keepalive_time");
    int cnt = read_proc("/proc/sys/net/ipv4/tcp_keepalive_probes");
    if (idle != NS_IDLE || cnt != NS_CNT) {
        printf("SKIP - not in a namespace with tcp_keepalive_time=%d, tcp_keepalive_probes=%d "
               "(found %d, %d)\n", NS_IDLE, NS_CNT, idle, cnt);
        return 0;
    }
    if (getenv("LD_PRELOAD") == NULL || strstr(getenv("LD_PRELOAD"), "faultinject") == NULL) {
        printf("not ok - run under LD_PRELOAD=faultinject.so\n");
        return 1;
    }
    RUN(test_new_sockets_read_the_namespace_defaults);
    RUN(test_get_then_apply_fails_clearly);
    RUN(test_refused_keepalive_is_a_visible_rollback_failure);
    RUN(test_every_refusal_point);
    RUN(test_in_range_values_roll_back_exactly);
    RUN(test_within_reports_the_rollback_too);
    return CHECK_EXIT();
}
