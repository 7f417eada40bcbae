/* Tiny test helpers for libheartbeat's C tests.
 *
 * Each test is a function returning 0 (pass) or 1 (fail) with one
 * `goto cleanup` exit. CHECK* macros print the failing expression, file:line
 * and both values, then jump to cleanup. RUN() prints one TAP-like line per
 * test ("ok - name" / "not ok - name"), which c-tests/run.sh counts. */
#ifndef HEARTBEAT_CHECK_H
#define HEARTBEAT_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #cond);                                                    \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                          \
    do {                                                                        \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);         \
        if (check_a_ != check_b_) {                                             \
            fprintf(stderr, "  %s:%d: CHECK_EQ(%s, %s): got %lld, expected %lld\n", \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);            \
            goto cleanup;                                                       \
        }                                                                       \
    } while (0)

/* A call returning a code, and the errno it must leave. */
#define CHECK_RC_ERRNO(call, want_rc, want_errno)                                   \
    do {                                                                            \
        errno = 0;                                                                  \
        int check_rc_ = (call);                                                     \
        int check_e_ = errno;                                                       \
        if (check_rc_ != (want_rc) || check_e_ != (want_errno)) {                   \
            fprintf(stderr,                                                         \
                    "  %s:%d: %s: got rc %d errno %d (%s), expected rc %d errno %d (%s)\n", \
                    __FILE__, __LINE__, #call, check_rc_, check_e_, strerror(check_e_), \
                    (int)(want_rc), (int)(want_errno), strerror(want_errno));      \
            goto cleanup;                                                           \
        }                                                                           \
    } while (0)

#define CHECK_STR(a, b)                                                         \
    do {                                                                        \
        const char *check_sa_ = (a), *check_sb_ = (b);                          \
        if (check_sa_ == NULL || check_sb_ == NULL || strcmp(check_sa_, check_sb_) != 0) { \
            fprintf(stderr, "  %s:%d: CHECK_STR(%s, %s): got \"%s\", expected \"%s\"\n", \
                    __FILE__, __LINE__, #a, #b, check_sa_ ? check_sa_ : "(null)",    \
                    check_sb_ ? check_sb_ : "(null)");                          \
            goto cleanup;                                                       \
        }                                                                       \
    } while (0)

#define RUN(test)                                                              \
    do {                                                                       \
        int run_rc_ = test();                                                  \
        printf("%s - %s\n", run_rc_ == 0 ? "ok" : "not ok", #test);           \
        fflush(stdout);                                                        \
        if (run_rc_ != 0)                                                      \
            check_failures_++;                                                 \
    } while (0)

#define SKIP(test, why)                                                        \
    do {                                                                       \
        printf("SKIP - %s: %s\n", #test, why);                                 \
        fflush(stdout);                                                        \
    } while (0)

#define CHECK_EXIT() (check_failures_ ? 1 : 0)

#endif /* HEARTBEAT_CHECK_H */
