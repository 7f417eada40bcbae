/* Kernel refusals, simulated with the LD_PRELOAD fault injector
 * (c-tests/core/faultinject.c): for every option, the code returned, the errno
 * preserved (the injector clobbers errno after every successful call), and
 * what is left on the socket. Run as:
 *   LD_PRELOAD=build/c-tests/faultinject.so build/c-tests/test_fault */
#include "heartbeat.h"

#include "check.h"
#include "sockets.h"

#include <stdlib.h>

struct opt {
    const char *name;
    int code;
    int err; /* the errno injected for this option: distinct per option */
};

/* heartbeat_apply()/heartbeat_get() order. */
static const struct opt OPTS[5] = {
    {"TCP_KEEPIDLE", HEARTBEAT_ERR_IDLE, EPERM},
    {"TCP_KEEPINTVL", HEARTBEAT_ERR_INTVL, EACCES},
    {"TCP_KEEPCNT", HEARTBEAT_ERR_CNT, ENOBUFS},
    {"TCP_USER_TIMEOUT", HEARTBEAT_ERR_USER_TIMEOUT, EROFS},
    {"SO_KEEPALIVE", HEARTBEAT_ERR_KEEPALIVE, ENOMEM},
};

static void fault(const char *op, const char *opt, int k, int err)
{
    char spec[128];
    snprintf(spec, sizeof spec, "%s:%s:%d:%d", op, opt, k, err);
    setenv("HEARTBEAT_FAULT", spec, 1);
    setenv("HEARTBEAT_FAULT_CLOBBER", "1", 1);
}

static void no_fault(void)
{
    setenv("HEARTBEAT_FAULT", "", 1);
    setenv("HEARTBEAT_FAULT_CLOBBER", "0", 1);
}

static int test_injector_is_loaded(void)
{
    int rc = 1, fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    CHECK(fd >= 0);
    fault("set", "TCP_KEEPIDLE", 1, EPERM);
    errno = 0;
    CHECK_EQ(setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &one, sizeof one), -1);
    CHECK_EQ(errno, EPERM);
    CHECK_EQ(setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &one, sizeof one), 0); /* only the 1st */
    CHECK_EQ(errno, EXDEV);                                                    /* clobbered */
    rc = 0;
cleanup:
    no_fault();
    if (fd >= 0)
        close(fd);
    return rc;
}

/* heartbeat(): a refusal of option i returns its code and errno; options
 * before it stay set (as in the recipe), options after it are untouched. */
static int test_heartbeat_refusals(void)
{
    int rc = 1, c = -1, s = -1;
    /* heartbeat() order: TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, SO_KEEPALIVE. */
    const int order[4] = {0, 1, 2, 4};
    for (int i = 0; i < 4; i++) {
        const struct opt *o = &OPTS[order[i]];
        fprintf(stderr, "  refusing %s\n", o->name);
        no_fault();
        CHECK_EQ(tcp_pair(0, &c, &s), 0);
        struct raw_opts before = raw_opts(c);
        fault("set", o->name, 1, o->err);
        CHECK_RC_ERRNO(heartbeat(c, 11, 12, 13), o->code, o->err);
        no_fault();
        struct raw_opts after = raw_opts(c);
        CHECK_EQ(after.idle, i > 0 ? 11 : before.idle);
        CHECK_EQ(after.intvl, i > 1 ? 12 : before.intvl);
        CHECK_EQ(after.cnt, i > 2 ? 13 : before.cnt);
        CHECK_EQ(after.keepalive, 0);
        CHECK_EQ(after.user_timeout, before.user_timeout);
        tcp_pair_close(&c, &s);
    }
    rc = 0;
cleanup:
    no_fault();
    tcp_pair_close(&c, &s);
    return rc;
}

/* heartbeat_apply(): a refusal of any set, or of any read of the old values,
 * returns that option's code and errno, and leaves the socket exactly as it
 * was (all five options, read back raw). */
static int test_apply_all_or_nothing(void)
{
    int rc = 1, c = -1, s = -1;
    const struct heartbeat_config start = {1, 31, 32, 33, 34000};
    const struct heartbeat_config cfg = {0, 41, 42, 43, 44000};
    const char *ops[2] = {"set", "get"};
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    for (int op = 0; op < 2; op++) {
        for (int i = 0; i < 5; i++) {
            const struct opt *o = &OPTS[i];
            fprintf(stderr, "  refusing %s of %s\n", ops[op], o->name);
            no_fault();
            CHECK_EQ(heartbeat_apply(c, &start), HEARTBEAT_OK);
            struct raw_opts before = raw_opts(c);
            fault(ops[op], o->name, 1, o->err);
            CHECK_RC_ERRNO(heartbeat_apply(c, &cfg), o->code, o->err);
            no_fault();
            CHECK(raw_opts_equal(before, raw_opts(c)));
        }
    }
    /* And with no fault it does apply (the cases above were not vacuous). */
    struct heartbeat_config got;
    CHECK_EQ(heartbeat_apply(c, &cfg), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_get(c, &got), HEARTBEAT_OK);
    CHECK(memcmp(&got, &cfg, sizeof got) == 0);
    rc = 0;
cleanup:
    no_fault();
    tcp_pair_close(&c, &s);
    return rc;
}

/* When the rollback itself is refused, the socket is not as before: the
 * call says so with HEARTBEAT_ERR_ROLLBACK and the errno of the first
 * failure (not the rollback's); it does not stop at the refused rollback,
 * and each option has its old or its new value. */
static int test_apply_refused_rollback_is_reported(void)
{
    int rc = 1, c = -1, s = -1;
    const struct heartbeat_config start = {0, 31, 32, 33, 34000};
    const struct heartbeat_config cfg = {1, 41, 42, 43, 44000};
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    CHECK_EQ(heartbeat_apply(c, &start), HEARTBEAT_OK);
    /* 1st set of TCP_KEEPCNT fails with ENOBUFS; the rollback (newest
     * first) then sets TCP_KEEPINTVL back, which fails with EIO, and
     * TCP_KEEPIDLE back. */
    setenv("HEARTBEAT_FAULT", "set:TCP_KEEPCNT:1:105,set:TCP_KEEPINTVL:2:5", 1);
    setenv("HEARTBEAT_FAULT_CLOBBER", "1", 1);
    CHECK_EQ(ENOBUFS, 105);
    CHECK_EQ(EIO, 5);
    CHECK_RC_ERRNO(heartbeat_apply(c, &cfg), HEARTBEAT_ERR_ROLLBACK, ENOBUFS);
    no_fault();
    /* TCP_KEEPIDLE was rolled back even though TCP_KEEPINTVL's rollback
     * failed (the rollback does not stop at its first failure); only the
     * refused rollback is left behind. */
    struct raw_opts o = raw_opts(c);
    CHECK_EQ(o.idle, 31);
    CHECK_EQ(o.intvl, 42);
    CHECK_EQ(o.cnt, 33);
    CHECK_EQ(o.user_timeout, 34000);
    CHECK_EQ(o.keepalive, 0);
    rc = 0;
cleanup:
    no_fault();
    tcp_pair_close(&c, &s);
    return rc;
}

/* heartbeat_within() is all or nothing through the same mechanism: each
 * option's set or get refused in turn gives that option's code and errno,
 * and the socket is exactly as before. */
static int test_within_all_or_nothing(void)
{
    int rc = 1, c = -1, s = -1;
    const struct heartbeat_config start = {1, 31, 32, 33, 34000};
    const char *ops[2] = {"set", "get"};
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    for (int op = 0; op < 2; op++) {
        for (int i = 0; i < 5; i++) {
            const struct opt *o = &OPTS[i];
            fprintf(stderr, "  within: refusing %s of %s\n", ops[op], o->name);
            no_fault();
            CHECK_EQ(heartbeat_apply(c, &start), HEARTBEAT_OK);
            struct raw_opts before = raw_opts(c);
            fault(ops[op], o->name, 1, o->err);
            CHECK_RC_ERRNO(heartbeat_within(c, 10000, 0), o->code, o->err);
            no_fault();
            CHECK(raw_opts_equal(before, raw_opts(c)));
        }
    }
    /* Bad input: no system call at all (every call would be refused). */
    no_fault();
    struct raw_opts before = raw_opts(c);
    setenv("HEARTBEAT_FAULT", "get:TCP_KEEPIDLE:1:1,set:TCP_KEEPIDLE:1:1", 1);
    CHECK_RC_ERRNO(heartbeat_within(c, 1000, 0), HEARTBEAT_ERR_WITHIN, EINVAL);
    CHECK_RC_ERRNO(heartbeat_within(c, 10000, 8), HEARTBEAT_ERR_INVALID, EINVAL);
    no_fault();
    CHECK(raw_opts_equal(before, raw_opts(c)));
    rc = 0;
cleanup:
    no_fault();
    tcp_pair_close(&c, &s);
    return rc;
}

/* heartbeat_get(): a refused read returns its code and errno and leaves
 * *out untouched. */
static int test_get_refusals(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    for (int i = 0; i < 5; i++) {
        const struct opt *o = &OPTS[i];
        struct heartbeat_config out, sentinel;
        memset(&out, 0x3c, sizeof out);
        sentinel = out;
        fault("get", o->name, 1, o->err);
        CHECK_RC_ERRNO(heartbeat_get(c, &out), o->code, o->err);
        CHECK(memcmp(&out, &sentinel, sizeof out) == 0);
    }
    rc = 0;
cleanup:
    no_fault();
    tcp_pair_close(&c, &s);
    return rc;
}

/* heartbeat_disable(): one call, never retried. */
static int test_disable_refused_once(void)
{
    int rc = 1, c = -1, s = -1;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    CHECK_EQ(heartbeat(c, 5, 5, 5), HEARTBEAT_OK);
    /* If the library retried, the 2nd attempt would fail with EACCES (or
     * the 3rd succeed): the first refusal must be what comes back. */
    setenv("HEARTBEAT_FAULT", "set:SO_KEEPALIVE:1:12,set:SO_KEEPALIVE:2:13", 1);
    setenv("HEARTBEAT_FAULT_CLOBBER", "1", 1);
    CHECK_RC_ERRNO(heartbeat_disable(c), HEARTBEAT_ERR_KEEPALIVE, ENOMEM);
    no_fault();
    CHECK_EQ(raw_get(c, SOL_SOCKET, SO_KEEPALIVE), 1);
    /* Same for heartbeat()'s SO_KEEPALIVE (the recipe looped forever here). */
    CHECK_EQ(heartbeat_disable(c), HEARTBEAT_OK);
    setenv("HEARTBEAT_FAULT", "set:SO_KEEPALIVE:1:12,set:SO_KEEPALIVE:2:13", 1);
    CHECK_RC_ERRNO(heartbeat(c, 5, 5, 5), HEARTBEAT_ERR_KEEPALIVE, ENOMEM);
    no_fault();
    CHECK_EQ(raw_get(c, SOL_SOCKET, SO_KEEPALIVE), 0);
    rc = 0;
cleanup:
    no_fault();
    tcp_pair_close(&c, &s);
    return rc;
}

int main(void)
{
    RUN(test_injector_is_loaded);
    RUN(test_heartbeat_refusals);
    RUN(test_apply_all_or_nothing);
    RUN(test_apply_refused_rollback_is_reported);
    RUN(test_within_all_or_nothing);
    RUN(test_get_refusals);
    RUN(test_disable_refused_once);
    return CHECK_EXIT();
}
