/* Benchmark of the heartbeat monitor (issue 10), both modes side by side
 * with the baselines, in one run. Every figure the issue names is printed
 * as a line "NAME: VALUE" (ratios "NAME ratio: X.XX"), after tables that
 * show where it comes from. Nothing here passes or fails: figures only.
 *
 * CPU is measured per thread from /proc/self/task/TID/schedstat (on-CPU
 * nanoseconds: steadier than wall time on this shared, noisy 2-core
 * machine), for the thread that does the work: the monitor thread
 * ("heartbeat-mon", found by name), the thread that calls
 * heartbeat_monitor_process() in the thread-free mode (an epoll loop on
 * the monitor's fd), the bare pinger's thread, the naive scanner's thread.
 * Variants run one after the other in rotating order, for HB_BENCH_ROUNDS
 * rounds (default 5); figures are medians over rounds, ratios medians of
 * per-round ratios.
 *
 * 1. alive(): median ns per call, one thread; two threads at once on fds n
 *    and n+1 (false sharing would show), and their ratio. The naive
 *    baseline (one global mutex) beside it.
 * 2. watch() + unwatch() of one fd, with 1000 other fds watched (each
 *    answering its pings, so that they stay watched), at timeouts from
 *    30 ms to 1 h, both modes: the time must not depend on the timeout
 *    (the next due time is found in O(1)). Beside it, the thread-free
 *    mode's one case that costs system calls: the fd watched alone.
 * 3. Bookkeeping without sockets: HB_BENCH_FDS (default 100,000) fds,
 *    interval 1 s, a ping callback that returns at once (so the monitor
 *    never touches the fds), timeout 1 h: driver CPU per ping event, both
 *    modes, and the naive scan (a thread that wakes every millisecond,
 *    scans every entry under one mutex and pings what is due) for scale,
 *    and two floors measured the same way: the wake-up floor (a thread
 *    that only wakes at every millisecond) and the state floor (the same
 *    thread also touches, per event due at the millisecond, that fd's
 *    64-byte entry in a table laid out and spread like the monitor's, and
 *    reads the clock once, as the monitor does): what no per-fd
 *    bookkeeping that looks every millisecond can go below here. The
 *    monitor's figures are printed net of each.
 *    Then, per mode, the deaths: timeout 3 s, the callback answers with
 *    alive() for a while, then stops: every fd must die, and how late
 *    after last-answer + timeout is measured. Ping lateness in the
 *    steady state (the monitor's own histogram) beside the lateness of
 *    the wake-up floor thread (the machine's own timer lateness), and
 *    memory per watched fd (RSS growth).
 * 4. Real sockets: HB_BENCH_CONNS (default 100,000, cut to what
 *    RLIMIT_NOFILE allows) loopback connections, interval 1 s, 1-byte
 *    pings echoed by a peer process (epoll), the echoes read by a thread
 *    of this process (which reports them with alive() to the monitor).
 *    The physical-limit baseline is a bare pinger in C: one thread, the
 *    fds in an array sorted by their phase (spread over the interval like
 *    the monitor's), each due ping sent with one send() at its
 *    millisecond, no liveness bookkeeping at all. Figures: CPU per ping of
 *    the sending thread, threaded/bare and loop/bare ratios; then deaths
 *    at full scale (the peer stops echoing) per mode, ping lateness of
 *    each mode and of the bare pinger (same buckets).
 *
 * Knobs (environment): HB_BENCH_ROUNDS, HB_BENCH_NET_ROUNDS (section 4,
 * default 9: its per-round ratios are the noisiest), HB_BENCH_STEADY (seconds of steady
 * state per variant and round, default 4), HB_BENCH_FDS, HB_BENCH_CONNS
 * (0 skips a section), HB_BENCH_ONLY=alive (section 1 alone). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"
#include "testutil.h"

#define MS 1000000LL
#define INTERVAL_MS 1000

static int ROUNDS = 5, NET_ROUNDS = 9, STEADY_S = 4;

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* ---- common ---------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0)
        return 0;
    double c[64];
    if (n > 64)
        n = 64;
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_d);
    return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

static int gettid_(void) { return (int)syscall(SYS_gettid); }

/* On-CPU nanoseconds of thread `tid` of this process (schedstat). */
static long long cpu_ns(int tid)
{
    char path[64];
    long long v = 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

/* The tid of this process's thread named `comm`, or -1. */
static int find_tid(const char *comm)
{
    char path[300], buf[64];
    int found = -1;
    for (int tries = 0; tries < 200 && found < 0; tries++) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            if (fgets(buf, sizeof buf, f) && strncmp(buf, comm, strlen(comm)) == 0)
                found = atoi(de->d_name);
            fclose(f);
        }
        if (d)
            closedir(d);
        if (found < 0)
            sleep_ms(5); /* the thread names itself when it starts */
    }
    return found;
}

static long rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

/* Same buckets as heartbeat_monitor_stats.ping_late (microseconds). */
static const unsigned long late_bounds_us[HEARTBEAT_LATE_BUCKETS - 1] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
    100000, 200000, 500000, 1000000};

/* The upper bound (ms) of the histogram bucket holding quantile q, or -1. */
static double late_quantile_ms(const unsigned long *hist, double q)
{
    unsigned long total = 0, acc = 0;
    for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
        total += hist[i];
    if (total == 0)
        return -1;
    for (int i = 0; i < HEARTBEAT_LATE_BUCKETS - 1; i++) {
        acc += hist[i];
        if ((double)acc >= q * (double)total)
            return late_bounds_us[i] / 1000.0;
    }
    return 1e9;
}

/* Counts a lateness of `ns` in a histogram with the monitor's buckets
 * (heartbeat_monitor_stats.ping_late), for the baselines' own lateness. */
static void late_add(unsigned long *hist, long long ns)
{
    long long us = ns / 1000;
    int i = 0;
    while (i < HEARTBEAT_LATE_BUCKETS - 1 && us >= (long long)late_bounds_us[i])
        i++;
    hist[i]++;
}

/* p50/p99/max (ms) of n values in ns, sorted in place. */
static void quantiles(long long *v, int n, double *p50, double *p99, double *max)
{
    *p50 = *p99 = *max = -1;
    if (n <= 0)
        return;
    qsort(v, (size_t)n, sizeof *v, cmp_ll);
    *p50 = (double)v[n / 2] / 1e6;
    *p99 = (double)v[(int)((long long)n * 99 / 100)] / 1e6;
    *max = (double)v[n - 1] / 1e6;
}

/* ---- the thread-free monitor's driver: an epoll loop on its fd ------------- */

struct loop_driver {
    struct heartbeat_monitor *m;
    pthread_t th;
    atomic_int tid, stop;
    int ep, wake;
};

static void *loop_main(void *arg)
{
    struct loop_driver *d = arg;
    atomic_store(&d->tid, gettid_());
    prctl(PR_SET_NAME, "bench-loop", 0, 0, 0);
    struct epoll_event evs[2];
    while (!atomic_load(&d->stop)) {
        int n = epoll_wait(d->ep, evs, 2, -1);
        for (int i = 0; i < n; i++)
            if (evs[i].data.u32 == 1)
                heartbeat_monitor_process(d->m);
    }
    return NULL;
}

static int loop_start(struct loop_driver *d, struct heartbeat_monitor *m)
{
    memset(d, 0, sizeof *d);
    d->m = m;
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    d->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.u32 = 1;
    epoll_ctl(d->ep, EPOLL_CTL_ADD, heartbeat_monitor_fd(m), &ev);
    ev.data.u32 = 2;
    epoll_ctl(d->ep, EPOLL_CTL_ADD, d->wake, &ev);
    if (pthread_create(&d->th, NULL, loop_main, d) != 0)
        return -1;
    while (atomic_load(&d->tid) == 0)
        sleep_ms(1);
    return 0;
}

/* Stops the loop (so that no process() call begins after free()), then
 * frees the monitor. */
static void loop_free(struct loop_driver *d)
{
    atomic_store(&d->stop, 1);
    uint64_t one = 1;
    (void)!write(d->wake, &one, sizeof one);
    pthread_join(d->th, NULL);
    heartbeat_monitor_free(d->m);
    close(d->ep);
    close(d->wake);
}

/* ---- the naive baseline ------------------------------------------------------ */

struct naive_entry {
    int fd, watched;
    long long last_heard, next_ping;
};

typedef void (*naive_dead_fn)(int fd);

struct naive {
    pthread_mutex_t mu;
    struct naive_entry *e;
    int n, max_fd;
    int *idx_of_fd;
    long long timeout_ns;
    atomic_int stop, tid;
    pthread_t th;
    naive_dead_fn dead;
    int (*ping)(int fd); /* instead of send(); 1 = answered at once */
    unsigned long pings;
};

static void *naive_main(void *arg)
{
    struct naive *nv = arg;
    atomic_store(&nv->tid, gettid_());
    prctl(PR_SET_NAME, "naive-mon", 0, 0, 0);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&nv->stop)) {
        next.tv_nsec += 1000000;
        if (next.tv_nsec >= 1000000000) {
            next.tv_nsec -= 1000000000;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        pthread_mutex_lock(&nv->mu);
        long long now = now_ns();
        for (int i = 0; i < nv->n; i++) {
            struct naive_entry *x = &nv->e[i];
            if (!x->watched)
                continue;
            if (now >= x->last_heard + nv->timeout_ns) {
                x->watched = 0;
                nv->dead(x->fd);
            } else if (now >= x->next_ping) {
                if (nv->ping(x->fd))
                    x->last_heard = now_ns();
                nv->pings++;
                x->next_ping += INTERVAL_MS * MS;
                if (x->next_ping <= now)
                    x->next_ping = now + INTERVAL_MS * MS;
            }
        }
        pthread_mutex_unlock(&nv->mu);
    }
    return NULL;
}

/* A naive monitor of up to `cap` fds below max_fd; `dead` is required
 * (the old bench passed NULL here and crashed when a run lasted longer than
 * the timeout). */
static struct naive *naive_new(int cap, int max_fd, long long timeout_ms, naive_dead_fn dead,
                               int (*ping)(int))
{
    struct naive *nv = calloc(1, sizeof *nv);
    nv->e = calloc((size_t)cap, sizeof *nv->e);
    nv->idx_of_fd = malloc((size_t)(max_fd + 1) * sizeof(int));
    for (int i = 0; i <= max_fd; i++)
        nv->idx_of_fd[i] = -1;
    nv->max_fd = max_fd;
    nv->timeout_ns = timeout_ms * MS;
    nv->dead = dead;
    nv->ping = ping;
    pthread_mutex_init(&nv->mu, NULL);
    pthread_create(&nv->th, NULL, naive_main, nv);
    while (atomic_load(&nv->tid) == 0)
        sleep_ms(1);
    return nv;
}

static void naive_watch(struct naive *nv, int fd)
{
    pthread_mutex_lock(&nv->mu);
    long long now = now_ns();
    int i = nv->n++;
    uint64_t frac = ((uint64_t)i * 0x9E3779B97F4A7C15ull) >> 32;
    nv->e[i] = (struct naive_entry){fd, 1, now,
                                    now + (long long)((frac * (uint64_t)(INTERVAL_MS * MS)) >> 32)};
    nv->idx_of_fd[fd] = i;
    pthread_mutex_unlock(&nv->mu);
}

static int naive_alive(struct naive *nv, int fd)
{
    int rc = -1;
    pthread_mutex_lock(&nv->mu);
    int i = fd <= nv->max_fd ? nv->idx_of_fd[fd] : -1;
    if (i >= 0 && nv->e[i].watched) {
        nv->e[i].last_heard = now_ns();
        rc = 0;
    }
    pthread_mutex_unlock(&nv->mu);
    return rc;
}

static void naive_free(struct naive *nv)
{
    atomic_store(&nv->stop, 1);
    pthread_join(nv->th, NULL);
    pthread_mutex_destroy(&nv->mu);
    free(nv->e);
    free(nv->idx_of_fd);
    free(nv);
}

/* ---- 1. alive() --------------------------------------------------------------- */

#define REPS 11
static long CALLS = 2000000;

struct alive_arg {
    struct heartbeat_monitor *m;
    struct naive *nv;
    int fd;
    pthread_barrier_t *bar;
    double ns[REPS];
};

static void *alive_thread(void *p)
{
    struct alive_arg *a = p;
    for (int r = 0; r < REPS; r++) {
        if (a->bar)
            pthread_barrier_wait(a->bar);
        long long t0 = thread_cpu_ns();
        if (a->m) {
            for (long i = 0; i < CALLS; i++)
                heartbeat_monitor_alive(a->m, a->fd);
        } else {
            for (long i = 0; i < CALLS; i++)
                naive_alive(a->nv, a->fd);
        }
        a->ns[r] = (double)(thread_cpu_ns() - t0) / (double)CALLS;
    }
    return NULL;
}

/* Median ns per call on one thread, and on two threads (fds fd, fd + 1). */
static void alive_pair(struct heartbeat_monitor *m, struct naive *nv, int fd, double *one_ns,
                       double *two_ns)
{
    struct alive_arg one = {m, nv, fd, NULL, {0}};
    alive_thread(&one);
    *one_ns = median(one.ns, REPS);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct alive_arg two[2] = {{m, nv, fd, &bar, {0}}, {m, nv, fd + 1, &bar, {0}}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        pthread_create(&th[t], NULL, alive_thread, &two[t]);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&bar);
    double both[REPS];
    for (int r = 0; r < REPS; r++)
        both[r] = (two[0].ns[r] + two[1].ns[r]) / 2;
    *two_ns = median(both, REPS);
}

static atomic_int alive_bench_deaths;

static void alive_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
    atomic_fetch_add(&alive_bench_deaths, 1);
}

static void alive_naive_dead(int fd)
{
    (void)fd;
    atomic_fetch_add(&alive_bench_deaths, 1);
}

static int never_answers(int fd)
{
    (void)fd;
    return 0;
}

/* The floor of alive(): it must read the clock (CLOCK_MONOTONIC, through
 * the vDSO) to record when the peer was heard. Median ns per read, thread
 * CPU time, measured the same way as alive(). */
static double clock_read_ns(void)
{
    double r[REPS];
    struct timespec ts;
    for (int i = 0; i < REPS; i++) {
        int tid = (int)syscall(SYS_gettid);
        long long c0 = cpu_ns(tid);
        for (long k = 0; k < CALLS; k++)
            clock_gettime(CLOCK_MONOTONIC, &ts);
        r[i] = (double)(cpu_ns(tid) - c0) / (double)CALLS;
    }
    return median(r, REPS);
}

static void alive_bench(void)
{
    printf("1. alive(): median of %d x %ld calls, thread CPU time (ns per call)\n", REPS, CALLS);
    printf("  %-34s %10s %16s %8s\n", "", "1 thread", "2 threads, fds", "2 vs 1");
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 1000;
    o.timeout_ms = 3600000; /* no death during the run; no pings: fds unused */
    o.dead_cb = alive_dead;
    struct heartbeat_monitor *m = heartbeat_monitor_new(&o, NULL);
    if (!m) {
        perror("heartbeat_monitor_new");
        return;
    }
    heartbeat_monitor_watch(m, 1000);
    heartbeat_monitor_watch(m, 1001);
    double h1, h2, n1, n2;
    alive_pair(m, NULL, 1000, &h1, &h2);
    printf("  %-34s %10.1f %16.1f %7.2fx\n", "heartbeat_monitor_alive()", h1, h2, h2 / h1);
    fflush(stdout);
    heartbeat_monitor_free(m);
    /* The naive baseline, with a timeout far longer than any run (its
     * thread scans every millisecond, taking the mutex alive() needs). */
    struct naive *nv = naive_new(2, 2000, 3600000, alive_naive_dead, never_answers);
    naive_watch(nv, 1000);
    naive_watch(nv, 1001);
    alive_pair(NULL, nv, 1000, &n1, &n2);
    printf("  %-34s %10.1f %16.1f %7.2fx\n", "naive alive() (one global mutex)", n1, n2, n2 / n1);
    naive_free(nv);
    double ck = clock_read_ns();
    printf("  %-34s %10.1f\n", "clock_gettime(CLOCK_MONOTONIC)", ck);
    printf("  (deaths during the alive() runs: %d)\n", atomic_load(&alive_bench_deaths));
    printf("alive ns: %.1f\n", h1);
    printf("clock read ns (the floor of alive()): %.1f\n", ck);
    printf("alive ns beyond the clock read: %.1f\n", h1 - ck);
    printf("alive 2 threads ns: %.1f\n", h2);
    printf("alive 2 threads ratio: %.2f\n", h2 / h1);
    printf("naive alive ns: %.1f\n\n", n1);
}

/* ---- 2. watch + unwatch at any timeout -------------------------------------- */

/* The ping callback of the watch bench: the peer answers at once (the
 * other fds stay watched for the whole run; without an answer they would
 * all die after one timeout, and at 30 ms the pairs would be measured on a
 * monitor with nothing else watched). */
static int cb_pong_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)user;
    heartbeat_monitor_alive(m, fd);
    return 0;
}

static void noop_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
}

/* Median ns per watch() + unwatch() pair of one fd, with `others` other
 * fds watched (answering every ping), pings through a callback (no sends),
 * interval timeout / 3. Sets *deaths to the deaths seen (0 expected). */
static double watch_unwatch_ns(int loop, unsigned timeout_ms, int others, unsigned long *deaths)
{
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = timeout_ms;
    o.interval_ms = timeout_ms / 3 ? timeout_ms / 3 : 1;
    o.ping_cb = cb_pong_ping;
    o.dead_cb = noop_dead;
    struct heartbeat_monitor *m = loop ? heartbeat_monitor_new_loop(&o, NULL)
                                       : heartbeat_monitor_new(&o, NULL);
    struct loop_driver d;
    if (!m)
        return -1;
    if (loop && loop_start(&d, m) != 0)
        return -1;
    for (int fd = 0; fd < others; fd++)
        heartbeat_monitor_watch(m, 100000 + fd);
    const int K = 20000;
    double ns[REPS];
    for (int r = 0; r < REPS; r++) {
        long long t0 = thread_cpu_ns();
        for (int i = 0; i < K; i++) {
            int fd = 200000 + (i & 1023);
            heartbeat_monitor_watch(m, fd);
            heartbeat_monitor_unwatch(m, fd);
        }
        ns[r] = (double)(thread_cpu_ns() - t0) / K;
    }
    struct heartbeat_monitor_stats st;
    heartbeat_monitor_stats(m, &st);
    *deaths = st.deaths;
    if (loop)
        loop_free(&d);
    else
        heartbeat_monitor_free(m);
    return median(ns, REPS);
}

static void watch_bench(void)
{
    static const unsigned timeouts[] = {30, 3000, 60000, 600000, 3600000};
    static const char *names[] = {"30 ms", "3 s", "60 s", "600 s", "1 h"};
    printf("2. watch() + unwatch() of one fd, 1000 other fds watched (answering every ping),\n"
           "   median of %d x 20000 pairs, thread CPU time (ns per pair)\n", REPS);
    printf("  %-10s %12s %12s\n", "timeout", "threaded", "loop");
    double worst = 0, res[5][2];
    unsigned long deaths = 0, d;
    for (int i = 0; i < 5; i++) {
        for (int loop = 0; loop < 2; loop++) {
            res[i][loop] = watch_unwatch_ns(loop, timeouts[i], 1000, &d);
            deaths += d;
            if (res[i][loop] > worst)
                worst = res[i][loop];
        }
        printf("  %-10s %12.0f %12.0f\n", names[i], res[i][0], res[i][1]);
        fflush(stdout);
    }
    /* The thread-free mode's one system-call case: the fd is the only one
     * watched, so watch() arms the timer fd for its first ping and
     * unwatch() disarms it (the fd must not become readable with nothing
     * due): two timerfd_settime() calls per pair. */
    double alone = watch_unwatch_ns(1, 30, 0, &d);
    printf("  %-10s %12s %12.0f   (loop: the only fd watched, two timerfd_settime() per pair)\n",
           "30 ms", "", alone);
    for (int i = 0; i < 5; i++) {
        printf("watch+unwatch ns (threaded, timeout %s): %.0f\n", names[i], res[i][0]);
        printf("watch+unwatch ns (loop, timeout %s): %.0f\n", names[i], res[i][1]);
    }
    printf("watch+unwatch ns (worst of all timeouts and modes): %.0f\n", worst);
    printf("watch+unwatch ns (loop, the only fd watched): %.0f\n", alone);
    printf("deaths among the other fds (0 expected): %lu\n\n", deaths);
}

/* ---- 3. bookkeeping without sockets ----------------------------------------- */

#define CB_BASE 100
static int CBN;
static atomic_int cb_answer;
static long long *cb_last, *cb_late;
static atomic_int cb_deaths;
static struct heartbeat_monitor *cb_m;

static int cb_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)m, (void)fd, (void)user;
    return 0; /* returns at once */
}

static int cb_answering_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)user;
    if (atomic_load_explicit(&cb_answer, memory_order_relaxed) &&
        heartbeat_monitor_alive(m, fd) == HEARTBEAT_OK)
        cb_last[fd - CB_BASE] = now_ns();
    return 0;
}

static void cb_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    int d = atomic_fetch_add(&cb_deaths, 1);
    if (d < CBN)
        cb_late[d] = now_ns() - (cb_last[fd - CB_BASE] + 3000 * MS);
}

static void cb_naive_dead(int fd) { (void)fd; }

static int cb_naive_ping(int fd)
{
    (void)fd;
    return 0;
}

/* The wake-up floor: a thread that wakes at every millisecond (a timerfd
 * armed at the next millisecond, poll(), read()) and does nothing else.
 * Any driver that looks every millisecond pays at least this; on this
 * virtual machine a wake-up costs about 20 us of the woken thread's CPU
 * (the exit from and re-entry into idle is charged to it), which at
 * 100 events per millisecond is 200 ns per event by itself. */
struct floor_thread {
    pthread_t th;
    atomic_int tid, stop;
    /* The state floor (variant 4): besides waking, per event due at the
     * millisecond, touch the fd's 64-byte entry and read the clock. */
    int state;
    atomic_llong events;
    /* How late each wake-up came after its millisecond: the machine's own
     * timer lateness, beside the monitor's (read after the join). */
    unsigned long late[HEARTBEAT_LATE_BUCKETS];
};

/* The state floor's table: what any per-fd liveness bookkeeping must keep
 * in memory, laid out as the monitor's (src/monitor/table.rs): 64-byte
 * entries indexed by fd, in chunks of 4096 fds, neighbouring fds 128 bytes
 * apart; and, per millisecond of the interval, the fds due then, spread by
 * the monitor's own rule (the i-th watch's first ping at the golden-ratio
 * Weyl sequence's i-th point of the interval), so that the entries an
 * event touches are as scattered in memory as the monitor's. */
struct floor_entry {
    long long heard, state, next, pad[5];
} __attribute__((aligned(64)));
#define FLOOR_CHUNK 4096
static struct floor_entry **floor_chunks;
static int *floor_due, floor_due_at[INTERVAL_MS + 1];

static struct floor_entry *floor_entry(int fd)
{
    int i = fd % FLOOR_CHUNK;
    return &floor_chunks[fd / FLOOR_CHUNK][(i % (FLOOR_CHUNK / 2)) * 2 + i / (FLOOR_CHUNK / 2)];
}

static int floor_state_setup(int base, int n)
{
    int nc = (base + n) / FLOOR_CHUNK + 1;
    floor_chunks = calloc((size_t)nc, sizeof *floor_chunks);
    floor_due = calloc((size_t)n, sizeof *floor_due);
    int *msof = calloc((size_t)n, sizeof *msof);
    if (!floor_chunks || !floor_due || !msof)
        return -1;
    for (int c = base / FLOOR_CHUNK; c < nc; c++)
        if (!(floor_chunks[c] = aligned_alloc(64, FLOOR_CHUNK * sizeof(struct floor_entry))))
            return -1;
        else
            memset(floor_chunks[c], 0, FLOOR_CHUNK * sizeof(struct floor_entry));
    memset(floor_due_at, 0, sizeof floor_due_at);
    for (int i = 0; i < n; i++) {
        uint64_t frac = ((uint64_t)i * 0x9E3779B97F4A7C15ULL) >> 32;
        msof[i] = (int)((frac * INTERVAL_MS) >> 32);
        floor_due_at[msof[i] + 1]++;
    }
    for (int k = 0; k < INTERVAL_MS; k++)
        floor_due_at[k + 1] += floor_due_at[k];
    int fill[INTERVAL_MS];
    memcpy(fill, floor_due_at, sizeof fill);
    for (int i = 0; i < n; i++)
        floor_due[fill[msof[i]]++] = base + i;
    free(msof);
    return 0;
}

static void floor_state_free(int base, int n)
{
    for (int c = base / FLOOR_CHUNK; floor_chunks && c <= (base + n) / FLOOR_CHUNK; c++)
        free(floor_chunks[c]);
    free(floor_chunks);
    free(floor_due);
    floor_chunks = NULL;
    floor_due = NULL;
}

/* The state floor's work at millisecond `ms`: prefetch the entries of the
 * fds due (their misses overlap, as the monitor's do), then per fd one
 * clock read (the monitor reads the clock once per event, see
 * src/monitor/mod.rs, run_batch) and one read and write of its entry. */
static long floor_state_work(long long ms)
{
    int k = (int)(ms % INTERVAL_MS), a = floor_due_at[k], b = floor_due_at[k + 1];
    for (int i = a; i < b; i++)
        __builtin_prefetch(floor_entry(floor_due[i]), 1, 3);
    for (int i = a; i < b; i++) {
        struct floor_entry *e = floor_entry(floor_due[i]);
        long long t = now_ns();
        if (e->heard + 3600000 * MS < t)
            e->state++;
        e->next = t + INTERVAL_MS * MS;
    }
    return b - a;
}

static void *floor_main(void *arg)
{
    struct floor_thread *f = arg;
    atomic_store(&f->tid, (int)syscall(SYS_gettid));
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0)
        return NULL;
    while (!atomic_load(&f->stop)) {
        long long t = (now_ns() / MS + 1) * MS;
        struct itimerspec it = {{0, 0}, {t / 1000000000LL, t % 1000000000LL}};
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
        struct pollfd p = {tfd, POLLIN, 0};
        poll(&p, 1, 100);
        late_add(f->late, now_ns() - t);
        uint64_t x;
        if (read(tfd, &x, sizeof x) < 0)
            continue;
        if (f->state)
            atomic_fetch_add_explicit(&f->events, floor_state_work(t / MS),
                                      memory_order_relaxed);
    }
    close(tfd);
    return NULL;
}

struct run {
    double cpu_ns, events;  /* over the steady state */
    double wall_ns, wakeups;
    double mem_per_fd, watch_ns;
    unsigned long late[HEARTBEAT_LATE_BUCKETS];
};

/* One steady-state measurement of the bookkeeping: variant 0 threaded,
 * 1 loop, 2 naive, 3 the wake-up floor, 4 the state floor. */
static int cb_round(int variant, struct run *out)
{
    memset(out, 0, sizeof *out);
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = INTERVAL_MS;
    o.timeout_ms = 3600000;
    o.ping_cb = cb_ping;
    o.dead_cb = noop_dead;
    struct loop_driver d;
    struct naive *nv = NULL;
    struct heartbeat_monitor *m = NULL;
    int tid;
    long rss0 = rss_bytes();
    long long w0 = now_ns();
    struct floor_thread fl;
    atomic_init(&fl.events, 0);
    if (variant >= 3) {
        memset(fl.late, 0, sizeof fl.late);
        fl.state = variant == 4;
        atomic_store(&fl.events, 0);
        if (fl.state && floor_state_setup(CB_BASE, CBN) != 0)
            return -1;
        atomic_store(&fl.tid, 0);
        atomic_store(&fl.stop, 0);
        if (pthread_create(&fl.th, NULL, floor_main, &fl) != 0)
            return -1;
        while (!atomic_load(&fl.tid))
            sleep_ms(1);
        tid = atomic_load(&fl.tid);
    } else if (variant == 2) {
        nv = naive_new(CBN, CB_BASE + CBN, 3600000, cb_naive_dead, cb_naive_ping);
        w0 = now_ns();
        for (int i = 0; i < CBN; i++)
            naive_watch(nv, CB_BASE + i);
        tid = atomic_load(&nv->tid);
        out->mem_per_fd = (double)(sizeof(struct naive_entry) * (size_t)CBN +
                                   sizeof(int) * (size_t)(CB_BASE + CBN + 1)) / CBN;
    } else {
        m = variant ? heartbeat_monitor_new_loop(&o, NULL) : heartbeat_monitor_new(&o, NULL);
        if (!m || (variant == 1 && loop_start(&d, m) != 0))
            return -1;
        w0 = now_ns();
        for (int i = 0; i < CBN; i++)
            heartbeat_monitor_watch(m, CB_BASE + i);
        out->mem_per_fd = (double)(rss_bytes() - rss0) / CBN;
        tid = variant ? atomic_load(&d.tid) : find_tid("heartbeat-mon");
    }
    out->watch_ns = (double)(now_ns() - w0) / CBN;
    sleep_ms(1500); /* every fd has had its first ping */
    struct heartbeat_monitor_stats s0, s1;
    unsigned long np0 = 0;
    if (m)
        heartbeat_monitor_stats(m, &s0);
    else if (nv) {
        pthread_mutex_lock(&nv->mu);
        np0 = nv->pings;
        pthread_mutex_unlock(&nv->mu);
    }
    long long c0 = cpu_ns(tid), t0 = now_ns(), e0 = atomic_load(&fl.events);
    sleep_ms(STEADY_S * 1000L);
    long long c1 = cpu_ns(tid), t1 = now_ns(), e1 = atomic_load(&fl.events);
    out->cpu_ns = (double)(c1 - c0);
    out->wall_ns = (double)(t1 - t0);
    if (m) {
        heartbeat_monitor_stats(m, &s1);
        out->events = (double)(s1.pings - s0.pings);
        out->wakeups = (double)(s1.wakeups - s0.wakeups);
        for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
            out->late[i] = s1.ping_late[i] - s0.ping_late[i];
        if (variant == 1)
            loop_free(&d);
        else
            heartbeat_monitor_free(m);
    } else if (variant >= 3) {
        atomic_store(&fl.stop, 1);
        pthread_join(fl.th, NULL);
        /* the state floor counts what it handled; the wake-up floor is
         * given as many events as the monitor has in that time */
        out->events = fl.state ? (double)(e1 - e0)
                               : (double)CBN * out->wall_ns / (INTERVAL_MS * (double)MS);
        out->wakeups = out->wall_ns / 1e6;
        memcpy(out->late, fl.late, sizeof out->late);
        if (fl.state)
            floor_state_free(CB_BASE, CBN);
    } else {
        pthread_mutex_lock(&nv->mu);
        out->events = (double)(nv->pings - np0);
        pthread_mutex_unlock(&nv->mu);
        out->wakeups = out->wall_ns / 1e6;
        naive_free(nv);
    }
    return 0;
}

/* Deaths at full scale without sockets: timeout 3 s; the callback answers
 * with alive() for 2 s, then stops. */
static int cb_deaths_run(int loop, double *p50, double *p99, double *max, int *n)
{
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = INTERVAL_MS;
    o.timeout_ms = 3000;
    o.ping_cb = cb_answering_ping;
    o.dead_cb = cb_dead;
    atomic_store(&cb_deaths, 0);
    atomic_store(&cb_answer, 1);
    long long t = now_ns();
    for (int i = 0; i < CBN; i++)
        cb_last[i] = t;
    struct loop_driver d;
    cb_m = loop ? heartbeat_monitor_new_loop(&o, NULL) : heartbeat_monitor_new(&o, NULL);
    if (!cb_m || (loop && loop_start(&d, cb_m) != 0))
        return -1;
    for (int i = 0; i < CBN; i++)
        heartbeat_monitor_watch(cb_m, CB_BASE + i);
    sleep_ms(2000);
    atomic_store(&cb_answer, 0);
    long long end = now_ns() + 6000 * MS;
    while (atomic_load(&cb_deaths) < CBN && now_ns() < end)
        sleep_ms(10);
    *n = atomic_load(&cb_deaths);
    if (loop)
        loop_free(&d);
    else
        heartbeat_monitor_free(cb_m);
    cb_m = NULL;
    quantiles(cb_late, *n < CBN ? *n : CBN, p50, p99, max);
    return 0;
}

static void cb_bench(void)
{
    printf("3. Bookkeeping without sockets: %d fds, interval %d ms, a ping callback that returns\n"
           "   at once; %d rounds x %d s steady state per variant (CPU of the driver thread)\n",
           CBN, INTERVAL_MS, ROUNDS, STEADY_S);
    static const char *vname[] = {"threaded", "loop", "naive scan", "wake-ups only",
                                  "state floor"};
    double ns_ev[5][64], cpu_pct[5][64], wk[5][64], mem[5] = {0, 0, 0, 0, 0},
        wns[5] = {0, 0, 0, 0, 0}, net[2][64], over[2][64];
    unsigned long late[5][HEARTBEAT_LATE_BUCKETS];
    memset(late, 0, sizeof late);
    int nr = 0;
    for (int r = 0; r < ROUNDS && r < 64; r++, nr++) {
        for (int k = 0; k < 5; k++) {
            int v = (k + r) % 5;
            struct run x;
            if (cb_round(v, &x) != 0) {
                printf("  (round %d, %s: failed)\n", r, vname[v]);
                return;
            }
            ns_ev[v][r] = x.events > 0 ? x.cpu_ns / x.events : 0;
            cpu_pct[v][r] = 100.0 * x.cpu_ns / x.wall_ns;
            wk[v][r] = x.wakeups / (x.wall_ns / 1e9);
            if (r == 0) {
                mem[v] = x.mem_per_fd;
                wns[v] = x.watch_ns;
            }
            for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
                late[v][i] += x.late[i];
            sleep_ms(200);
        }
        for (int v = 0; v < 2; v++) {
            net[v][r] = ns_ev[v][r] - ns_ev[3][r];
            over[v][r] = ns_ev[v][r] - ns_ev[4][r];
        }
    }
    printf("  %-38s %12s %12s %12s %14s %12s\n", "", vname[0], vname[1], vname[2], vname[3],
           vname[4]);
    printf("  %-38s %12.1f %12.1f %12.1f %14.1f %12.1f\n", "CPU per ping event (ns, median)",
           median(ns_ev[0], nr), median(ns_ev[1], nr), median(ns_ev[2], nr), median(ns_ev[3], nr),
           median(ns_ev[4], nr));
    printf("  %-38s %12.1f %12.1f\n", "  the same, net of the wake-up floor", median(net[0], nr),
           median(net[1], nr));
    printf("  %-38s %12.1f %12.1f\n", "  the same, net of the state floor", median(over[0], nr),
           median(over[1], nr));
    printf("  %-38s %12.2f %12.2f %12.2f %14.2f %12.2f\n", "driver CPU (% of one core, median)",
           median(cpu_pct[0], nr), median(cpu_pct[1], nr), median(cpu_pct[2], nr),
           median(cpu_pct[3], nr), median(cpu_pct[4], nr));
    printf("  %-38s %12.0f %12.0f %12.0f %14.0f %12.0f\n", "wake-ups per second",
           median(wk[0], nr), median(wk[1], nr), median(wk[2], nr), median(wk[3], nr),
           median(wk[4], nr));
    printf("  %-38s %12.1f %12.1f %12.1f\n", "memory per watched fd (B; naive: arrays)", mem[0],
           mem[1], mem[2]);
    printf("  %-38s %12.0f %12.0f %12.0f\n", "watch() per fd (ns, wall)", wns[0], wns[1], wns[2]);
    printf("  %-38s %12.2f %12.2f %12s %14.2f\n", "lateness p99 (ms, bucket bound)",
           late_quantile_ms(late[0], 0.99), late_quantile_ms(late[1], 0.99), "",
           late_quantile_ms(late[3], 0.99));
    printf("  per-round ns per ping event:");
    for (int r = 0; r < nr; r++)
        printf(" %.0f/%.0f/%.0f/%.0f/%.0f", ns_ev[0][r], ns_ev[1][r], ns_ev[2][r], ns_ev[3][r],
               ns_ev[4][r]);
    printf("\n");
    fflush(stdout);
    double dp[2][3];
    int dn[2];
    for (int loop = 0; loop < 2; loop++)
        if (cb_deaths_run(loop, &dp[loop][0], &dp[loop][1], &dp[loop][2], &dn[loop]) != 0)
            dn[loop] = -1;
    printf("  deaths (timeout 3 s; callback stops answering): reported / p50 / p99 / max ms after\n"
           "  last answer + timeout: threaded %d / %.2f / %.2f / %.2f, loop %d / %.2f / %.2f / %.2f\n",
           dn[0], dp[0][0], dp[0][1], dp[0][2], dn[1], dp[1][0], dp[1][1], dp[1][2]);
    printf("threaded ns per ping event: %.0f\n", median(ns_ev[0], nr));
    printf("loop ns per ping event: %.0f\n", median(ns_ev[1], nr));
    printf("naive scan ns per ping event: %.0f\n", median(ns_ev[2], nr));
    printf("wake-up floor ns per ping event: %.0f\n", median(ns_ev[3], nr));
    printf("threaded ns per ping event net of wake-ups: %.0f\n", median(net[0], nr));
    printf("loop ns per ping event net of wake-ups: %.0f\n", median(net[1], nr));
    printf("state floor ns per ping event: %.0f\n", median(ns_ev[4], nr));
    printf("threaded ns per ping event net of the state floor: %.0f\n", median(over[0], nr));
    printf("loop ns per ping event net of the state floor: %.0f\n", median(over[1], nr));
    printf("threaded/naive ns per ping event ratio: %.2f\n",
           median(ns_ev[0], nr) / median(ns_ev[2], nr));
    printf("memory per watched fd (bytes, threaded, %d fds): %.1f\n", CBN, mem[0]);
    printf("memory per watched fd (bytes, loop, %d fds): %.1f\n", CBN, mem[1]);
    printf("threaded ping lateness p99 ms (no sockets): %.3g\n", late_quantile_ms(late[0], 0.99));
    printf("loop ping lateness p99 ms (no sockets): %.3g\n", late_quantile_ms(late[1], 0.99));
    printf("wake-up floor lateness p99 ms (no sockets): %.3g\n", late_quantile_ms(late[3], 0.99));
    printf("threaded death p99 ms after timeout (no sockets): %.2f\n", dp[0][1]);
    printf("loop death p99 ms after timeout (no sockets): %.2f\n\n", dp[1][1]);
}

/* ---- 4. real sockets ---------------------------------------------------------- */

#define NADDR 5
static int N;
static int *cli, *idx_of_fd, max_fd;
static atomic_llong *last_alive;
static atomic_int net_stop;
static struct heartbeat_monitor *_Atomic cur_m;
static long long *death_late;
static atomic_int ndeaths;
static int ctrl_wr = -1;

/* The peer process: accepts the connections and echoes every byte back,
 * unless told to stop answering ('0' on the control pipe; '1' resumes; EOF
 * ends it). A separate process, so that each side needs only N fds. */
static void peer_main(int *l, int nl, int ctrl)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int ep = epoll_create1(0), echo = 1;
    struct epoll_event ev = {.events = EPOLLIN};
    for (int i = 0; i < nl; i++) {
        fcntl(l[i], F_SETFL, fcntl(l[i], F_GETFL) | O_NONBLOCK);
        ev.data.u64 = (uint64_t)l[i] | 1ull << 32;
        epoll_ctl(ep, EPOLL_CTL_ADD, l[i], &ev);
    }
    ev.data.u64 = (uint64_t)ctrl | 2ull << 32;
    epoll_ctl(ep, EPOLL_CTL_ADD, ctrl, &ev);
    struct epoll_event evs[256];
    char buf[256];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int e = 0; e < k; e++) {
            int fd = (int)(evs[e].data.u64 & 0xffffffff), kind = (int)(evs[e].data.u64 >> 32);
            if (kind == 1) {
                int c;
                while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    ev.data.u64 = (uint64_t)c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
            } else if (kind == 2) {
                char b;
                if (read(ctrl, &b, 1) != 1)
                    _exit(0);
                echo = b == '1';
            } else {
                ssize_t got = recv(fd, buf, sizeof buf, 0);
                if (got > 0 && echo)
                    (void)!send(fd, buf, (size_t)got, MSG_NOSIGNAL | MSG_DONTWAIT);
                else if (got == 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                }
            }
        }
    }
}

static void set_echo(int on)
{
    char b = on ? '1' : '0';
    (void)!write(ctrl_wr, &b, 1);
}

/* Reads the echoes; reports them with alive() when a monitor runs. */
static void *net_main(void *arg)
{
    (void)arg;
    int ep = epoll_create1(0);
    for (int i = 0; i < N; i++) {
        struct epoll_event ev = {.events = EPOLLIN};
        ev.data.u32 = (unsigned)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, cli[i], &ev);
    }
    struct epoll_event evs[256];
    char buf[256];
    while (!atomic_load(&net_stop)) {
        int k = epoll_wait(ep, evs, 256, 20);
        struct heartbeat_monitor *m = atomic_load(&cur_m);
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            ssize_t got = recv(cli[i], buf, sizeof buf, MSG_DONTWAIT);
            if (got > 0 && m && heartbeat_monitor_alive(m, cli[i]) == HEARTBEAT_OK)
                atomic_store(&last_alive[i], now_ns());
        }
    }
    close(ep);
    return NULL;
}

static void mon_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    long long t = now_ns();
    int d = atomic_fetch_add(&ndeaths, 1);
    if (d < N)
        death_late[d] = t - (atomic_load(&last_alive[idx_of_fd[fd]]) + 3000 * MS);
}

/* The bare pinger: the physical limit. */
struct bare {
    pthread_t th;
    atomic_int tid, stop;
    int *order;         /* connection indices, by phase */
    long long *phase;   /* ns within the interval, sorted */
    atomic_ulong sent;  /* stored (a plain move), never incremented atomically */
    /* How late each ping went out after its due time (read after the
     * join): the physical limit's lateness, beside the monitor's. */
    unsigned long late[HEARTBEAT_LATE_BUCKETS];
};

static void *bare_main(void *arg)
{
    struct bare *b = arg;
    atomic_store(&b->tid, gettid_());
    prctl(PR_SET_NAME, "bare-pinger", 0, 0, 0);
    long long base = now_ns();
    unsigned long sent = atomic_load(&b->sent);
    int k = 0;
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        long long due = base + b->phase[k];
        long long at = (due + MS - 1) / MS * MS; /* its millisecond */
        struct timespec ts = {at / 1000000000LL, at % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        long long now = now_ns();
        while (base + b->phase[k] <= now) {
            late_add(b->late, now - (base + b->phase[k]));
            (void)!send(cli[b->order[k]], "p", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            sent++;
            if (++k == N) {
                k = 0;
                base += INTERVAL_MS * MS;
            }
        }
        atomic_store_explicit(&b->sent, sent, memory_order_relaxed);
    }
    return NULL;
}

static int cmp_phase_idx(const void *a, const void *b, void *ctx)
{
    const long long *ph = ctx;
    long long x = ph[*(const int *)a], y = ph[*(const int *)b];
    return (x > y) - (x < y);
}

static struct bare bare_state;

static void bare_setup(void)
{
    struct bare *b = &bare_state;
    long long *ph = malloc((size_t)N * sizeof *ph);
    b->order = malloc((size_t)N * sizeof *b->order);
    b->phase = malloc((size_t)N * sizeof *b->phase);
    for (int i = 0; i < N; i++) {
        uint64_t frac = ((uint64_t)i * 0x9E3779B97F4A7C15ull) >> 32; /* as the monitor */
        ph[i] = (long long)((frac * (uint64_t)(INTERVAL_MS * MS)) >> 32);
        b->order[i] = i;
    }
    qsort_r(b->order, (size_t)N, sizeof *b->order, cmp_phase_idx, ph);
    for (int i = 0; i < N; i++)
        b->phase[i] = ph[b->order[i]];
    free(ph);
}

/* One steady-state measurement with real sockets: 0 threaded, 1 loop,
 * 2 bare. CPU and pings of the sending thread. */
static int net_round(int variant, struct run *out, unsigned timeout_ms)
{
    memset(out, 0, sizeof *out);
    set_echo(1);
    long long t = now_ns();
    for (int i = 0; i < N; i++)
        atomic_store(&last_alive[i], t);
    struct loop_driver d;
    struct heartbeat_monitor *m = NULL;
    int tid;
    if (variant == 2) {
        atomic_store(&bare_state.tid, 0);
        atomic_store(&bare_state.stop, 0);
        atomic_store(&bare_state.sent, 0);
        memset(bare_state.late, 0, sizeof bare_state.late);
        pthread_create(&bare_state.th, NULL, bare_main, &bare_state);
        while (atomic_load(&bare_state.tid) == 0)
            sleep_ms(1);
        tid = atomic_load(&bare_state.tid);
    } else {
        struct heartbeat_monitor_options o;
        memset(&o, 0, sizeof o);
        o.interval_ms = INTERVAL_MS;
        o.timeout_ms = timeout_ms;
        o.ping_data = "p";
        o.ping_len = 1;
        o.dead_cb = mon_dead;
        m = variant ? heartbeat_monitor_new_loop(&o, NULL) : heartbeat_monitor_new(&o, NULL);
        if (!m || (variant == 1 && loop_start(&d, m) != 0))
            return -1;
        long long w0 = now_ns();
        for (int i = 0; i < N; i++)
            heartbeat_monitor_watch(m, cli[i]);
        out->watch_ns = (double)(now_ns() - w0) / N;
        atomic_store(&cur_m, m);
        tid = variant ? atomic_load(&d.tid) : find_tid("heartbeat-mon");
    }
    sleep_ms(1500); /* every connection has been pinged */
    struct heartbeat_monitor_stats s0, s1;
    unsigned long b0 = atomic_load(&bare_state.sent);
    if (m)
        heartbeat_monitor_stats(m, &s0);
    long long c0 = cpu_ns(tid), t0 = now_ns();
    sleep_ms(STEADY_S * 1000L);
    long long c1 = cpu_ns(tid), t1 = now_ns();
    out->cpu_ns = (double)(c1 - c0);
    out->wall_ns = (double)(t1 - t0);
    if (m) {
        heartbeat_monitor_stats(m, &s1);
        out->events = (double)(s1.pings - s0.pings);
        for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
            out->late[i] = s1.ping_late[i] - s0.ping_late[i];
    } else {
        out->events = (double)(atomic_load(&bare_state.sent) - b0);
        atomic_store(&bare_state.stop, 1);
        pthread_join(bare_state.th, NULL);
        memcpy(out->late, bare_state.late, sizeof out->late);
    }
    if (m && timeout_ms == 3000) {
        /* The deaths: the peer stops answering. */
        atomic_store(&ndeaths, 0);
        set_echo(0);
        long long end = now_ns() + 7000 * MS;
        while (atomic_load(&ndeaths) < N && now_ns() < end)
            sleep_ms(10);
        out->wakeups = atomic_load(&ndeaths); /* deaths reported */
    }
    if (m) {
        atomic_store(&cur_m, NULL);
        sleep_ms(30); /* the reader may still be inside alive() */
        if (variant == 1)
            loop_free(&d);
        else
            heartbeat_monitor_free(m);
    }
    set_echo(1);
    sleep_ms(300); /* the echoes drain */
    return 0;
}

/* Raises RLIMIT_NOFILE as far as allowed; how many connections fit. */
static int fd_budget(int want)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)want + 256;
    if (rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return want;
    }
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    long can = (long)rl.rlim_cur - 256;
    return can < want ? (int)can : want;
}

/* N connections to a peer process, over 127.0.0.1-5 (loopback has about
 * 28,000 ephemeral ports per address pair): one listener per address, each
 * on a port the system picks. */
static int setup_conns(int n)
{
    int l[NADDR], ctrl[2];
    struct sockaddr_in a[NADDR];
    for (int i = 0; i < NADDR; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].sin_family = AF_INET;
        a[i].sin_addr.s_addr = htonl(0x7f000001u + (unsigned)i);
        socklen_t alen = sizeof a[i];
        l[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l[i] < 0 || bind(l[i], (struct sockaddr *)&a[i], sizeof a[i]) != 0 ||
            listen(l[i], 4096) != 0 || getsockname(l[i], (struct sockaddr *)&a[i], &alen) != 0) {
            perror("listen");
            return -1;
        }
    }
    if (pipe(ctrl) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(ctrl[1]);
        peer_main(l, NADDR, ctrl[0]);
        _exit(0);
    }
    for (int i = 0; i < NADDR; i++)
        close(l[i]);
    close(ctrl[0]);
    ctrl_wr = ctrl[1];
    cli = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&a[i % NADDR], sizeof a[0]) != 0) {
            fprintf(stderr, "connection %d: %s\n", i, strerror(errno));
            return -1;
        }
        if (cli[i] > max_fd)
            max_fd = cli[i];
    }
    idx_of_fd = malloc((size_t)(max_fd + 1) * sizeof(int));
    for (int i = 0; i < n; i++)
        idx_of_fd[cli[i]] = i;
    last_alive = calloc((size_t)n, sizeof *last_alive);
    death_late = calloc((size_t)n, sizeof *death_late);
    sleep_ms(300); /* the peer accepts the last ones */
    return 0;
}

static void net_bench(int want)
{
    N = fd_budget(want);
    if (N < want)
        printf("NOTE: RLIMIT_NOFILE cannot be raised above %d here (no CAP_SYS_RESOURCE):\n"
               "      running %d connections instead of %d.\n", N + 256, N, want);
    long long t0 = now_ns();
    if (setup_conns(N) != 0)
        return;
    bare_setup();
    printf("4. Real sockets: %d loopback connections (set up in %.1f s), interval %d ms, 1-byte\n"
           "   pings echoed by a peer process; %d rounds x %d s steady state per variant\n",
           N, (double)(now_ns() - t0) / 1e9, INTERVAL_MS, NET_ROUNDS, STEADY_S);
    fflush(stdout);
    pthread_t net;
    pthread_create(&net, NULL, net_main, NULL);
    static const char *vname[] = {"threaded", "loop", "bare pinger"};
    double per_ping[3][64], cpu_pct[3][64], r_thr[64], r_loop[64];
    unsigned long late[3][HEARTBEAT_LATE_BUCKETS];
    memset(late, 0, sizeof late);
    int nr = 0;
    for (int r = 0; r < NET_ROUNDS && r < 64; r++, nr++) {
        for (int k = 0; k < 3; k++) {
            int v = (k + r) % 3;
            struct run x;
            if (net_round(v, &x, 3600000) != 0) {
                printf("  (round %d, %s: failed)\n", r, vname[v]);
                return;
            }
            per_ping[v][r] = x.events > 0 ? x.cpu_ns / x.events : 0;
            cpu_pct[v][r] = 100.0 * x.cpu_ns / x.wall_ns;
            for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
                late[v][i] += x.late[i];
        }
        r_thr[r] = per_ping[0][r] / per_ping[2][r];
        r_loop[r] = per_ping[1][r] / per_ping[2][r];
    }
    printf("  %-40s %12s %12s %12s\n", "", vname[0], vname[1], vname[2]);
    printf("  %-40s %12.0f %12.0f %12.0f\n", "sending thread CPU per ping (ns, median)",
           median(per_ping[0], nr), median(per_ping[1], nr), median(per_ping[2], nr));
    printf("  %-40s %12.2f %12.2f %12.2f\n", "sending thread CPU (% of one core)",
           median(cpu_pct[0], nr), median(cpu_pct[1], nr), median(cpu_pct[2], nr));
    /* (No memory figure here: the fd table's chunks for these fd numbers
     * were already allocated by section 3 in this process, so RSS barely
     * grows; memory per watched fd is section 3's figure.) */
    printf("  %-40s %12.2f %12.2f %12.2f\n", "ping lateness p99 (ms, bucket bound)",
           late_quantile_ms(late[0], 0.99), late_quantile_ms(late[1], 0.99),
           late_quantile_ms(late[2], 0.99));
    printf("  per-round ratios to the bare pinger (threaded, loop):");
    for (int r = 0; r < nr; r++)
        printf(" %.3f/%.3f", r_thr[r], r_loop[r]);
    printf("\n");
    fflush(stdout);
    /* Deaths at full scale, per mode: timeout 3 s, the peer stops echoing. */
    double dp[2][3];
    int dn[2];
    for (int v = 0; v < 2; v++) {
        struct run x;
        dn[v] = -1;
        if (net_round(v, &x, 3000) == 0) {
            dn[v] = (int)x.wakeups;
            quantiles(death_late, dn[v] < N ? dn[v] : N, &dp[v][0], &dp[v][1], &dp[v][2]);
        }
    }
    atomic_store(&net_stop, 1);
    pthread_join(net, NULL);
    printf("  deaths (timeout 3 s; the peer stops echoing): reported / p50 / p99 / max ms after\n"
           "  last alive() + timeout: threaded %d / %.2f / %.2f / %.2f, loop %d / %.2f / %.2f / %.2f\n",
           dn[0], dp[0][0], dp[0][1], dp[0][2], dn[1], dp[1][0], dp[1][1], dp[1][2]);
    printf("threaded ns per ping (sockets): %.0f\n", median(per_ping[0], nr));
    printf("loop ns per ping (sockets): %.0f\n", median(per_ping[1], nr));
    printf("bare pinger ns per ping (sockets): %.0f\n", median(per_ping[2], nr));
    printf("threaded/bare ratio: %.3f\n", median(r_thr, nr));
    printf("loop/bare ratio: %.3f\n", median(r_loop, nr));
    printf("threaded ping lateness p99 ms (sockets): %.3g\n", late_quantile_ms(late[0], 0.99));
    printf("loop ping lateness p99 ms (sockets): %.3g\n", late_quantile_ms(late[1], 0.99));
    printf("bare pinger ping lateness p99 ms (sockets): %.3g\n", late_quantile_ms(late[2], 0.99));
    printf("threaded death p99 ms after timeout (sockets): %.2f\n", dp[0][1]);
    printf("loop death p99 ms after timeout (sockets): %.2f\n", dp[1][1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    ROUNDS = env_int("HB_BENCH_ROUNDS", 5);
    /* The socket section's per-round ratios spread by about +-10 % on this
     * machine (where the peer process and the loopback wake-ups land):
     * more rounds, so that the median is steadier. */
    NET_ROUNDS = env_int("HB_BENCH_NET_ROUNDS", 9);
    STEADY_S = env_int("HB_BENCH_STEADY", 4);
    CALLS = env_int("HB_BENCH_ALIVE_CALLS", 2000000);
    const char *only = getenv("HB_BENCH_ONLY");
    alive_bench();
    if (only && strcmp(only, "alive") == 0)
        return 0;
    watch_bench();
    CBN = env_int("HB_BENCH_FDS", 100000);
    if (CBN > 0) {
        cb_last = calloc((size_t)CBN, sizeof *cb_last);
        cb_late = calloc((size_t)CBN, sizeof *cb_late);
        cb_bench();
    }
    int conns = env_int("HB_BENCH_CONNS", 100000);
    if (conns > 0)
        net_bench(conns);
    return 0;
}
