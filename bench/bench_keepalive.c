/* Per-call cost of heartbeat() and heartbeat_apply() against the same
 * system calls written in raw C, measured side by side on one connected
 * loopback socket. Each round runs every variant once (a batch of CALLS
 * calls) in a rotating order; figures are medians over ROUNDS rounds, and
 * ratios are medians of the per-round ratios (paired, so slow phases of a
 * noisy machine cancel out). Heap allocations are counted by interposing
 * malloc and friends. */
#include "heartbeat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static volatile long allocations;
void *malloc(size_t n) { allocations++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { allocations++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { allocations++; return __libc_realloc(p, n); }

#define CALLS 2000
#define ROUNDS 41
#define VARIANTS 6

static int fd;
static const struct heartbeat_config CFG = {1, 10, 5, 3, 25000};

static int raw_recipe(void)
{
    int idle = 10, intvl = 5, cnt = 3, on = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0)
        return -1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) != 0)
        return -2;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) != 0)
        return -3;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0)
        return -4;
    return 0;
}

static int lib_heartbeat(void) { return heartbeat(fd, 10, 5, 3); }

/* What all-or-nothing costs at least: read the five, write the five. */
static int raw_get_set(void)
{
    int old[5], v[5] = {CFG.idle, CFG.intvl, CFG.cnt, (int)CFG.user_timeout_ms, CFG.enabled};
    static const int lvl[5] = {IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, SOL_SOCKET};
    static const int opt[5] = {TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, SO_KEEPALIVE};
    for (int i = 0; i < 5; i++) {
        socklen_t len = sizeof old[i];
        if (getsockopt(fd, lvl[i], opt[i], &old[i], &len) != 0)
            return -1;
    }
    for (int i = 0; i < 5; i++)
        if (setsockopt(fd, lvl[i], opt[i], &v[i], sizeof v[i]) != 0)
            return -1;
    return 0;
}

static int lib_apply(void) { return heartbeat_apply(fd, &CFG); }

static int raw_get5(void)
{
    static const int lvl[5] = {IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, SOL_SOCKET};
    static const int opt[5] = {TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, SO_KEEPALIVE};
    int v;
    for (int i = 0; i < 5; i++) {
        socklen_t len = sizeof v;
        if (getsockopt(fd, lvl[i], opt[i], &v, &len) != 0)
            return -1;
    }
    return 0;
}

static int lib_get(void)
{
    struct heartbeat_config c;
    return heartbeat_get(fd, &c);
}

static const struct {
    const char *name;
    int (*fn)(void);
} V[VARIANTS] = {
    {"raw recipe (4 setsockopt, C)", raw_recipe},
    {"heartbeat()", lib_heartbeat},
    {"raw 5 get + 5 set (C)", raw_get_set},
    {"heartbeat_apply()", lib_apply},
    {"raw 5 getsockopt (C)", raw_get5},
    {"heartbeat_get()", lib_get},
};

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), s;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len))
        return 1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) || (s = accept(l, NULL, NULL)) < 0)
        return 1;

    static double ns[VARIANTS][ROUNDS];
    long allocs[VARIANTS] = {0};
    for (int v = 0; v < VARIANTS; v++) /* warm up */
        for (int i = 0; i < CALLS; i++)
            if (V[v].fn() != 0)
                return 1;
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < VARIANTS; k++) {
            int v = (k + r) % VARIANTS;
            long a0 = allocations;
            double t0 = now_ns();
            for (int i = 0; i < CALLS; i++)
                V[v].fn();
            ns[v][r] = (now_ns() - t0) / CALLS;
            allocs[v] += allocations - a0;
        }
    }
    double ratio_hb[ROUNDS], ratio_apply_floor[ROUNDS], ratio_apply_recipe[ROUNDS], ratio_get[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        ratio_hb[r] = ns[1][r] / ns[0][r];
        ratio_apply_floor[r] = ns[3][r] / ns[2][r];
        ratio_apply_recipe[r] = ns[3][r] / ns[0][r];
        ratio_get[r] = ns[5][r] / ns[4][r];
    }
    printf("## Per-call cost on a connected loopback socket (%d rounds x %d calls, medians)\n\n", ROUNDS, CALLS);
    printf("| variant | ns/call (median) | ns/call (min) | heap allocations/call |\n|---|---:|---:|---:|\n");
    for (int v = 0; v < VARIANTS; v++) {
        double copy[ROUNDS];
        memcpy(copy, ns[v], sizeof copy);
        double med = median(copy, ROUNDS);
        printf("| %s | %.0f | %.0f | %.3f |\n", V[v].name, med, copy[0], (double)allocs[v] / (ROUNDS * CALLS));
    }
    printf("\n| ratio (median of per-round ratios) | value | goal |\n|---|---:|---|\n");
    printf("| heartbeat() / raw recipe | %.3f | <= 1.05 |\n", median(ratio_hb, ROUNDS));
    printf("| heartbeat_apply() / raw 5 get + 5 set | %.3f | <= 1.05 |\n", median(ratio_apply_floor, ROUNDS));
    printf("| heartbeat_apply() / raw recipe | %.3f | (for scale) |\n", median(ratio_apply_recipe, ROUNDS));
    printf("| heartbeat_get() / raw 5 getsockopt | %.3f | (for scale) |\n", median(ratio_get, ROUNDS));
    close(fd);
    close(s);
    close(l);
    return 0;
}
