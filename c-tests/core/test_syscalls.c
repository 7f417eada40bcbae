/* The exact cost of each call: run under strace by c-tests/core/suite.sh,
 * which counts the system calls between the markers (close() of a negative
 * fd, which the kernel rejects at once). This program itself checks that
 * no call allocates heap memory, by interposing malloc and friends. */
#include "heartbeat.h"

#include "check.h"
#include "sockets.h"

#include <poll.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile long allocations;

void *malloc(size_t n)
{
    allocations++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    allocations++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    allocations++;
    return __libc_realloc(p, n);
}
void *memalign(size_t a, size_t n)
{
    allocations++;
    return __libc_memalign(a, n);
}
int posix_memalign(void **p, size_t a, size_t n)
{
    allocations++;
    *p = __libc_memalign(a, n);
    return *p ? 0 : ENOMEM;
}
void *aligned_alloc(size_t a, size_t n)
{
    allocations++;
    return __libc_memalign(a, n);
}
void free(void *p)
{
    __libc_free(p);
}

static void marker(int n) { (void)close(-n); }

static int test_calls_make_no_heap_allocation(void)
{
    int rc = 1, c = -1, s = -1, fresh = -1, reset = -1, rs = -1, mptcp = -1;
    struct heartbeat_config cfg = {1, 3, 4, 5, 6000}, got;
    CHECK_EQ(tcp_pair(0, &c, &s), 0);
    CHECK((fresh = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    mptcp = socket(AF_INET, SOCK_STREAM, 262 /* IPPROTO_MPTCP */);
    printf("# %s\n", mptcp >= 0 ? "mptcp" : "no-mptcp");
    /* A connection reset by its peer, the reset already processed. */
    CHECK_EQ(tcp_pair(0, &reset, &rs), 0);
    struct linger lg = {1, 0};
    CHECK_EQ(setsockopt(rs, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(rs);
    rs = -1;
    {
        struct pollfd p = {reset, POLLIN, 0};
        CHECK_EQ(poll(&p, 1, 2000), 1); /* the RST arrived (poll consumes nothing) */
    }
    long before = allocations;
    marker(100);
    int r1 = heartbeat(c, 10, 5, 3);
    marker(101);
    int r2 = heartbeat_apply(c, &cfg);
    marker(102);
    int r3 = heartbeat_get(c, &got);
    marker(103);
    int r4 = heartbeat_disable(c);
    marker(104);
    unsigned d = heartbeat_deadline_ms(1, 1, 3);
    const char *m = heartbeat_strerror(-1);
    const char *v = heartbeat_version();
    marker(105);
    /* Failure paths: bad input makes no system call at all; a refused
     * option stops at the first call. */
    int r5 = heartbeat(c, 0, 1, 1);
    marker(106);
    int r6 = heartbeat(-1, 1, 1, 1);
    marker(107);
    struct heartbeat_status st;
    struct heartbeat_status_ex ex;
    int r7 = heartbeat_status(c, &st);
    marker(108);
    int r8 = heartbeat_status_ex(c, &ex, sizeof ex);
    marker(109);
    int r9 = heartbeat_status(fresh, &st); /* never connected: no SO_ERROR */
    marker(110);
    int r10 = heartbeat_within(c, 10000, 0);
    marker(111);
    int r11 = heartbeat_config_within(10000, 0, &got);
    int r12 = heartbeat_within(c, 1000, 0); /* out of range */
    int r13 = heartbeat_within(c, 10000, 2); /* unknown flag */
    marker(112);
    int r14 = heartbeat_status(reset, &st); /* reset by the peer: SO_ERROR too */
    marker(113);
    /* MPTCP: TCP_USER_TIMEOUT refused, SO_PROTOCOL read once more. */
    int r15 = HEARTBEAT_OK, r16 = HEARTBEAT_OK;
    const struct heartbeat_config no_ut = {1, 3, 4, 5, 0};
    if (mptcp >= 0)
        r15 = heartbeat_get(mptcp, &got);
    marker(114);
    if (mptcp >= 0)
        r16 = heartbeat_apply(mptcp, &no_ut);
    marker(115);
    long after = allocations;
    CHECK_EQ(r15, HEARTBEAT_OK);
    CHECK_EQ(r16, HEARTBEAT_OK);
    CHECK_EQ(r7, HEARTBEAT_OK);
    CHECK_EQ(r8, HEARTBEAT_OK);
    CHECK_EQ(r9, HEARTBEAT_OK);
    CHECK_EQ(st.peer, HEARTBEAT_PEER_RESET);
    CHECK_EQ(r10, HEARTBEAT_OK);
    CHECK_EQ(r11, HEARTBEAT_OK);
    CHECK_EQ(r12, HEARTBEAT_ERR_WITHIN);
    CHECK_EQ(r13, HEARTBEAT_ERR_INVALID);
    CHECK_EQ(r14, HEARTBEAT_OK);
    CHECK_EQ(r1, HEARTBEAT_OK);
    CHECK_EQ(r2, HEARTBEAT_OK);
    CHECK_EQ(r3, HEARTBEAT_OK);
    CHECK_EQ(r4, HEARTBEAT_OK);
    CHECK_EQ(r5, HEARTBEAT_ERR_IDLE);
    CHECK_EQ(r6, HEARTBEAT_ERR_IDLE);
    CHECK_EQ(d, 4000);
    CHECK(m != NULL && v != NULL);
    CHECK_EQ(after - before, 0);
    /* The counter works: a real allocation is seen. */
    void *p = malloc(16);
    CHECK_EQ(allocations - after, 1);
    free(p);
    rc = 0;
cleanup:
    tcp_pair_close(&c, &s);
    tcp_pair_close(&reset, &rs);
    if (fresh >= 0)
        close(fresh);
    if (mptcp >= 0)
        close(mptcp);
    return rc;
}

int main(void)
{
    RUN(test_calls_make_no_heap_allocation);
    return CHECK_EXIT();
}
