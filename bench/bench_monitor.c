/* Benchmark of the heartbeat monitor against a naive baseline, side by side.
 *
 * 1. alive() cost: median ns per call on one thread, and on two threads
 *    calling it at once on two neighbouring fds (false-sharing check),
 *    for heartbeat_monitor_alive() and for the naive baseline's alive()
 *    (one global mutex). Per-call cost is measured with each thread's own
 *    CPU clock (CLOCK_THREAD_CPUTIME_ID), so time spent descheduled on this
 *    shared 2-core machine does not count; cache-line contention does.
 *
 * 2. Scale: HB_BENCH_CONNS (default 100000) loopback connections in this
 *    process (RLIMIT_NOFILE raised; connections spread over 127.0.0.1-5
 *    because loopback has ~28k ephemeral ports per address pair), interval
 *    1 s, timeout 3 s, real 1-byte pings sent by the monitor thread and
 *    echoed by a peer process (epoll; a separate process so each side needs
 *    only N fds), whose echoes are read by a thread that reports them with
 *    alive(). Per variant: memory per watched
 *    connection (RSS growth while watching all, /proc/self/statm), ping
 *    lateness behind the due time (p50/p99 as histogram bucket bounds, exact
 *    max), CPU of the monitor thread over HB_BENCH_STEADY (default 10) s of
 *    steady state (from /proc/self/task/<tid>/schedstat: on-CPU ns, plus
 *    the user/system split from .../stat; the thread is found by its name,
 *    "heartbeat-mon"), then the peer stops answering and every death is
 *    timed against last alive() + timeout (p50/p99/max).
 *
 *    The naive baseline (below, in C) is what "a thread that keeps
 *    checking" suggests: one mutex around one array; a thread that wakes
 *    every millisecond (the tick needed to meet the 10 ms goals), locks,
 *    scans every entry, sends due pings and reports deaths under the lock;
 *    alive() takes the same mutex. Its first pings are spread over the
 *    interval like the monitor's, so the comparison is about the structure.
 *
 * Figures only: nothing here passes or fails on timing. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"
#include "testutil.h"

#define INTERVAL_MS 1000
#define TIMEOUT_MS 3000
#define MS 1000000LL




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
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

/* ---- the naive baseline ------------------------------------------------ */

/* Same buckets as heartbeat_monitor_stats.ping_late. */
static const unsigned long long late_bounds_us[HEARTBEAT_LATE_BUCKETS - 1] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
    100000, 200000, 500000, 1000000};

static void late_record(unsigned long long *hist, unsigned long long *max, long long late_ns)
{
    unsigned long long us = late_ns > 0 ? (unsigned long long)late_ns / 1000 : 0;
    if (us > *max)
        *max = us;
    int i = 0;
    while (i < HEARTBEAT_LATE_BUCKETS - 1 && us >= late_bounds_us[i])
        i++;
    hist[i]++;
}

struct naive_entry {
    int fd;
    int watched;
    long long last_heard;
    long long next_ping;
};

typedef void (*naive_dead_fn)(int fd, void *user);

struct naive {
    pthread_mutex_t mu;
    struct naive_entry *e;
    int n, cap;
    int *idx_of_fd; /* fd -> entry */
    int max_fd;
    atomic_int stop;
    pthread_t th;
    atomic_int tid;
    naive_dead_fn dead;
    void *user;
    int (*ping)(int fd); /* instead of send(); 1 = answered at once */
    unsigned long long late[HEARTBEAT_LATE_BUCKETS], late_max_us, pings;
};

static void *naive_main(void *arg)
{
    struct naive *nv = arg;
    atomic_store(&nv->tid, (int)syscall(SYS_gettid));
    pthread_setname_np(pthread_self(), "naive-mon");
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
            if (now >= x->last_heard + TIMEOUT_MS * MS) {
                x->watched = 0;
                nv->dead(x->fd, nv->user);
            } else if (now >= x->next_ping) {
                late_record(nv->late, &nv->late_max_us, now - x->next_ping);
                if (nv->ping) {
                    if (nv->ping(x->fd))
                        x->last_heard = now_ns();
                } else {
                    (void)!send(x->fd, "p", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
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

static struct naive *naive_new(int cap, int max_fd, naive_dead_fn dead, void *user)
{
    struct naive *nv = calloc(1, sizeof *nv);
    nv->e = calloc((size_t)cap, sizeof *nv->e);
    nv->idx_of_fd = malloc((size_t)(max_fd + 1) * sizeof(int));
    for (int i = 0; i <= max_fd; i++)
        nv->idx_of_fd[i] = -1;
    nv->cap = cap;
    nv->max_fd = max_fd;
    nv->dead = dead;
    nv->user = user;
    pthread_mutex_init(&nv->mu, NULL);
    pthread_create(&nv->th, NULL, naive_main, nv);
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

/* ---- 1. alive() cost ---------------------------------------------------- */

#define REPS 11
#define CALLS 2000000

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
            for (int i = 0; i < CALLS; i++)
                heartbeat_monitor_alive(a->m, a->fd);
        } else {
            for (int i = 0; i < CALLS; i++)
                naive_alive(a->nv, a->fd);
        }
        a->ns[r] = (double)(thread_cpu_ns() - t0) / CALLS;
    }
    return NULL;
}

static void alive_bench_one(const char *name, struct heartbeat_monitor *m, struct naive *nv,
                            int fd)
{
    struct alive_arg one = {m, nv, fd, NULL, {0}};
    alive_thread(&one);
    double m1 = median(one.ns, REPS);

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
    double m2 = median(both, REPS);
    printf("  %-34s %10.1f %16.1f %10.2fx\n", name, m1, m2, m2 / m1);
}

static void alive_bench(void)
{
    printf("alive() per call, median of %d x %d calls, thread CPU time (ns)\n", REPS, CALLS);
    printf("  %-34s %10s %16s %11s\n", "", "1 thread", "2 threads, fds", "2 vs 1");
    printf("  %-34s %10s %16s\n", "", "", "n and n+1");
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 1000;
    o.timeout_ms = 3600000; /* no death during the run; no pings: fds unused */
    o.dead_cb = (heartbeat_dead_fn)(void (*)(void))abort;
    struct heartbeat_monitor *m = heartbeat_monitor_new(&o, NULL);
    if (!m) {
        perror("heartbeat_monitor_new");
        return;
    }
    heartbeat_monitor_watch(m, 1000);
    heartbeat_monitor_watch(m, 1001);
    alive_bench_one("heartbeat_monitor_alive()", m, NULL, 1000);
    heartbeat_monitor_free(m);

    struct naive *nv = naive_new(2, 2000, NULL, NULL);
    naive_watch(nv, 1000);
    naive_watch(nv, 1001);
    atomic_store(&nv->stop, 1); /* the scanner thread idles: mutex cost only */
    pthread_join(nv->th, NULL);
    atomic_store(&nv->stop, 0);
    pthread_create(&nv->th, NULL, naive_main, nv);
    alive_bench_one("naive alive() (global mutex)", NULL, nv, 1000);
    naive_free(nv);
    printf("\n");
}

/* ---- 2. scale ------------------------------------------------------------ */

#define SRV_BIT 0x80000000u

static int N;
static int *cli, *idx_of_fd, max_fd;
static atomic_llong *last_alive;
static atomic_int net_stop;
static struct heartbeat_monitor *cur_m;
static struct naive *cur_nv;
static long long *death_late;
static atomic_int ndeaths;

/* The peer process: accepts the connections and echoes every byte back,
 * unless told to stop answering ('0' on the control pipe; '1' resumes; EOF
 * ends it). A separate process, so that each side needs only N fds. */
static void peer_main(int l, int ctrl)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    fcntl(l, F_SETFL, fcntl(l, F_GETFL) | O_NONBLOCK);
    int ep = epoll_create1(0), echo = 1;
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = l;
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    ev.data.fd = ctrl;
    epoll_ctl(ep, EPOLL_CTL_ADD, ctrl, &ev);
    struct epoll_event evs[256];
    char buf[256];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int e = 0; e < k; e++) {
            int fd = evs[e].data.fd;
            if (fd == l) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
            } else if (fd == ctrl) {
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

static int ctrl_wr = -1;

static void set_echo(int on)
{
    char b = on ? '1' : '0';
    (void)!write(ctrl_wr, &b, 1);
}

/* Reads the echoes and reports them with alive(). */
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
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            ssize_t got = recv(cli[i], buf, sizeof buf, MSG_DONTWAIT);
            if (got > 0) {
                int rc = cur_m ? heartbeat_monitor_alive(cur_m, cli[i])
                               : cur_nv ? naive_alive(cur_nv, cli[i]) : -1;
                if (rc == 0)
                    atomic_store(&last_alive[i], now_ns());
            }
        }
    }
    close(ep);
    return NULL;
}

static void record_death(int fd)
{
    long long t = now_ns();
    int i = idx_of_fd[fd];
    int d = atomic_fetch_add(&ndeaths, 1);
    if (d < N)
        death_late[d] = t - (atomic_load(&last_alive[i]) + TIMEOUT_MS * MS);
}

static void mon_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    record_death(fd);
}

static void naive_dead(int fd, void *user)
{
    (void)user;
    record_death(fd);
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

/* The tid of this process's thread named `comm` (the monitor thread is
 * named "heartbeat-mon"). */
static int find_tid(const char *comm)
{
    char path[300], buf[64];
    int found = -1;
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
    return found;
}

struct cpu {
    long long on_cpu_ns;  /* schedstat */
    long long utime, stime; /* clock ticks */
};

static struct cpu thread_cpu(int tid)
{
    struct cpu c = {0, 0, 0};
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lld", &c.on_cpu_ns) != 1)
            c.on_cpu_ns = 0;
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    f = fopen(path, "r");
    if (f) {
        if (fgets(buf, sizeof buf, f)) {
            char *p = strrchr(buf, ')');
            /* fields after ")": state(3) ... utime(14) stime(15) */
            if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
                            &c.utime, &c.stime) != 2)
                c.utime = c.stime = 0;
        }
        fclose(f);
    }
    return c;
}

struct result {
    double mem_per_conn;
    double watch_ns;
    double cpu_pct, user_pct, sys_pct;
    unsigned long long pings, late[HEARTBEAT_LATE_BUCKETS], late_max_us;
    int deaths;
    double death_p50, death_p99, death_max; /* ms after last alive + timeout */
    double wakeups_per_s;
};

static const char *bucket_bound(const unsigned long long *hist, double q, char *out, size_t len)
{
    unsigned long long total = 0, acc = 0;
    for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
        total += hist[i];
    if (total == 0) {
        snprintf(out, len, "-");
        return out;
    }
    for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++) {
        acc += hist[i];
        if (acc >= (unsigned long long)(q * (double)total)) {
            if (i < HEARTBEAT_LATE_BUCKETS - 1) {
                if (late_bounds_us[i] >= 1000)
                    snprintf(out, len, "< %llu ms", late_bounds_us[i] / 1000);
                else
                    snprintf(out, len, "< %llu us", late_bounds_us[i]);
            } else {
                snprintf(out, len, ">= 1 s");
            }
            return out;
        }
    }
    return out;
}

static int run_variant(int naive, int steady_s, struct result *res)
{
    memset(res, 0, sizeof *res);
    atomic_store(&ndeaths, 0);
    set_echo(1);
    long long t = now_ns();
    for (int i = 0; i < N; i++)
        atomic_store(&last_alive[i], t);
    long rss0 = rss_bytes();
    int tid;
    long long w0 = now_ns();
    if (!naive) {
        struct heartbeat_monitor_options o;
        memset(&o, 0, sizeof o);
        o.interval_ms = INTERVAL_MS;
        o.timeout_ms = TIMEOUT_MS;
        o.ping_data = "p";
        o.ping_len = 1;
        o.dead_cb = mon_dead;
        int code;
        struct heartbeat_monitor *m = heartbeat_monitor_new(&o, &code);
        if (!m) {
            fprintf(stderr, "heartbeat_monitor_new: %s\n", heartbeat_strerror(code));
            return -1;
        }
        w0 = now_ns();
        for (int i = 0; i < N; i++)
            heartbeat_monitor_watch(m, cli[i]);
        res->watch_ns = (double)(now_ns() - w0) / N;
        cur_m = m;
        tid = find_tid("heartbeat-mon");
        for (int k = 0; k < 100 && tid < 0; k++) { /* it names itself when it starts */
            sleep_ms(10);
            tid = find_tid("heartbeat-mon");
        }
        if (tid < 0)
            fprintf(stderr, "monitor thread not found\n");
    } else {
        struct naive *nv = naive_new(N, max_fd, naive_dead, NULL);
        w0 = now_ns();
        for (int i = 0; i < N; i++)
            naive_watch(nv, cli[i]);
        res->watch_ns = (double)(now_ns() - w0) / N;
        cur_nv = nv;
        while (atomic_load(&nv->tid) == 0)
            sleep_ms(1);
        tid = atomic_load(&nv->tid);
    }
    if (!naive)
        res->mem_per_conn = (double)(rss_bytes() - rss0) / N;
    else /* RSS would reuse what the monitor freed: count its arrays */
        res->mem_per_conn =
            (double)(sizeof(struct naive_entry) * (size_t)N + sizeof(int) * (size_t)(max_fd + 1)) / N;

    sleep_ms(2000); /* warm-up: every connection has been pinged */
    struct heartbeat_monitor_stats s0, s1;
    if (cur_m)
        heartbeat_monitor_stats(cur_m, &s0);
    struct cpu c0 = thread_cpu(tid);
    long long t0 = now_ns();
    sleep_ms(steady_s * 1000L);
    struct cpu c1 = thread_cpu(tid);
    long long t1 = now_ns();
    double wall = (double)(t1 - t0);
    double tick_ns = 1e9 / (double)sysconf(_SC_CLK_TCK);
    res->cpu_pct = 100.0 * (double)(c1.on_cpu_ns - c0.on_cpu_ns) / wall;
    res->user_pct = 100.0 * (double)(c1.utime - c0.utime) * tick_ns / wall;
    res->sys_pct = 100.0 * (double)(c1.stime - c0.stime) * tick_ns / wall;
    if (cur_m) {
        heartbeat_monitor_stats(cur_m, &s1);
        res->wakeups_per_s = (double)(s1.wakeups - s0.wakeups) / (wall / 1e9);
    }
    int early_deaths = atomic_load(&ndeaths);

    /* The peer stops answering: every connection must die. */
    set_echo(0);
    long long end = now_ns() + (TIMEOUT_MS + 3000) * MS;
    while (atomic_load(&ndeaths) < N && now_ns() < end)
        sleep_ms(10);
    res->deaths = atomic_load(&ndeaths);
    if (!naive) {
        struct heartbeat_monitor_stats st;
        heartbeat_monitor_stats(cur_m, &st);
        res->pings = st.pings;
        for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
            res->late[i] = st.ping_late[i];
        res->late_max_us = st.ping_late_max_us;
        struct heartbeat_monitor *m = cur_m;
        cur_m = NULL;
        heartbeat_monitor_free(m);
    } else {
        struct naive *nv = cur_nv;
        pthread_mutex_lock(&nv->mu);
        res->pings = nv->pings;
        memcpy(res->late, nv->late, sizeof res->late);
        res->late_max_us = nv->late_max_us;
        pthread_mutex_unlock(&nv->mu);
        cur_nv = NULL;
        sleep_ms(50); /* the net thread may still be inside naive_alive */
        naive_free(nv);
    }
    int nd = res->deaths < N ? res->deaths : N;
    if (nd > 0) {
        qsort(death_late, (size_t)nd, sizeof *death_late, cmp_ll);
        res->death_p50 = (double)death_late[nd / 2] / 1e6;
        res->death_p99 = (double)death_late[(nd * 99) / 100] / 1e6;
        res->death_max = (double)death_late[nd - 1] / 1e6;
    }
    if (early_deaths)
        printf("  (!) %d false deaths during the steady state\n", early_deaths);
    sleep_ms(500); /* let the echo side drain */
    return 0;
}

/* ---- 3. scale without sockets: the ping callback answers itself --------- */

/* In ping-callback mode the monitor never touches the fds, so any number of
 * fd numbers can be watched whatever RLIMIT_NOFILE says: this measures the
 * scheduling cost of both designs at full scale, without the kernel's send
 * path (which is the same for both). The callback "answers" at once by
 * calling alive() (the monitor) or by refreshing the entry (the naive scan,
 * which holds its mutex there). */
#define CB_BASE 100
static int CBN;
static atomic_int cb_answer;
static struct heartbeat_monitor *cb_m;
static long long *cb_last, *cb_late;
static atomic_int cb_deaths;

static int cb_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)user;
    if (atomic_load_explicit(&cb_answer, memory_order_relaxed) &&
        heartbeat_monitor_alive(m, fd) == HEARTBEAT_OK)
        cb_last[fd - CB_BASE] = now_ns();
    return 0;
}

static int cb_naive_ping(int fd)
{
    if (!atomic_load_explicit(&cb_answer, memory_order_relaxed))
        return 0;
    cb_last[fd - CB_BASE] = now_ns();
    return 1;
}

static void cb_record(int fd)
{
    int d = atomic_fetch_add(&cb_deaths, 1);
    if (d < CBN)
        cb_late[d] = now_ns() - (cb_last[fd - CB_BASE] + TIMEOUT_MS * MS);
}

static void cb_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    cb_record(fd);
}

static void cb_naive_dead(int fd, void *user)
{
    (void)user;
    cb_record(fd);
}

static int run_cb_variant(int naive, int steady_s, struct result *res)
{
    memset(res, 0, sizeof *res);
    atomic_store(&cb_deaths, 0);
    atomic_store(&cb_answer, 1);
    long long t = now_ns();
    for (int i = 0; i < CBN; i++)
        cb_last[i] = t;
    struct naive *nv = NULL;
    long rss0 = rss_bytes();
    long long w0;
    int tid;
    if (!naive) {
        struct heartbeat_monitor_options o;
        memset(&o, 0, sizeof o);
        o.interval_ms = INTERVAL_MS;
        o.timeout_ms = TIMEOUT_MS;
        o.ping_cb = cb_ping;
        o.dead_cb = cb_dead;
        cb_m = heartbeat_monitor_new(&o, NULL);
        if (!cb_m)
            return -1;
        w0 = now_ns();
        for (int i = 0; i < CBN; i++)
            heartbeat_monitor_watch(cb_m, CB_BASE + i);
        res->watch_ns = (double)(now_ns() - w0) / CBN;
        res->mem_per_conn = (double)(rss_bytes() - rss0) / CBN;
        tid = -1;
        for (int k = 0; k < 100 && tid < 0; k++) {
            tid = find_tid("heartbeat-mon");
            if (tid < 0)
                sleep_ms(10);
        }
    } else {
        nv = naive_new(CBN, CB_BASE + CBN, cb_naive_dead, NULL);
        nv->ping = cb_naive_ping;
        w0 = now_ns();
        for (int i = 0; i < CBN; i++)
            naive_watch(nv, CB_BASE + i);
        res->watch_ns = (double)(now_ns() - w0) / CBN;
        res->mem_per_conn = (double)(sizeof(struct naive_entry) * (size_t)CBN +
                                     sizeof(int) * (size_t)(CB_BASE + CBN + 1)) / CBN;
        while (atomic_load(&nv->tid) == 0)
            sleep_ms(1);
        tid = atomic_load(&nv->tid);
    }
    sleep_ms(2000);
    struct heartbeat_monitor_stats s0, s1;
    if (cb_m)
        heartbeat_monitor_stats(cb_m, &s0);
    struct cpu c0 = thread_cpu(tid);
    long long t0 = now_ns();
    sleep_ms(steady_s * 1000L);
    struct cpu c1 = thread_cpu(tid);
    double wall = (double)(now_ns() - t0);
    res->cpu_pct = 100.0 * (double)(c1.on_cpu_ns - c0.on_cpu_ns) / wall;
    if (cb_m) {
        heartbeat_monitor_stats(cb_m, &s1);
        res->wakeups_per_s = (double)(s1.wakeups - s0.wakeups) / (wall / 1e9);
    }
    int early = atomic_load(&cb_deaths);
    atomic_store(&cb_answer, 0);
    long long end = now_ns() + (TIMEOUT_MS + 3000) * MS;
    while (atomic_load(&cb_deaths) < CBN && now_ns() < end)
        sleep_ms(10);
    res->deaths = atomic_load(&cb_deaths);
    if (cb_m) {
        struct heartbeat_monitor_stats st;
        heartbeat_monitor_stats(cb_m, &st);
        res->pings = st.pings;
        for (int i = 0; i < HEARTBEAT_LATE_BUCKETS; i++)
            res->late[i] = st.ping_late[i];
        res->late_max_us = st.ping_late_max_us;
        heartbeat_monitor_free(cb_m);
        cb_m = NULL;
    } else {
        pthread_mutex_lock(&nv->mu);
        res->pings = nv->pings;
        memcpy(res->late, nv->late, sizeof res->late);
        res->late_max_us = nv->late_max_us;
        pthread_mutex_unlock(&nv->mu);
        naive_free(nv);
    }
    int nd = res->deaths < CBN ? res->deaths : CBN;
    if (nd > 0) {
        qsort(cb_late, (size_t)nd, sizeof *cb_late, cmp_ll);
        res->death_p50 = (double)cb_late[nd / 2] / 1e6;
        res->death_p99 = (double)cb_late[(nd * 99) / 100] / 1e6;
        res->death_max = (double)cb_late[nd - 1] / 1e6;
    }
    if (early)
        printf("  (!) %d false deaths during the steady state\n", early);
    return 0;
}

/* Raises RLIMIT_NOFILE as far as allowed; returns how many connections
 * this process can hold (it needs one fd per connection). */
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

static int setup_conns(int n)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t alen = sizeof a;
    int ctrl[2];
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4096) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0 || pipe(ctrl) != 0) {
        perror("listen");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        close(ctrl[1]);
        peer_main(l, ctrl[0]);
        _exit(0);
    }
    close(l);
    close(ctrl[0]);
    ctrl_wr = ctrl[1];
    cli = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        struct sockaddr_in d = a;
        d.sin_addr.s_addr = htonl(0x7f000001u + (unsigned)(i % 5)); /* 127.0.0.1-5 */
        cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&d, sizeof d) != 0) {
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
    sleep_ms(200); /* the peer accepts the last ones */
    return 0;
}

static void print_table(const struct result *r)
{
    char a[32], b[32];
    printf("  %-40s %16s %16s\n", "", "monitor", "naive baseline");
    printf("  %-40s %16.1f %16.1f\n", "memory per connection (RSS / arrays, B)", r[0].mem_per_conn,
           r[1].mem_per_conn);
    printf("  %-40s %16.0f %16.0f\n", "watch() per connection (ns)", r[0].watch_ns, r[1].watch_ns);
    printf("  %-40s %16llu %16llu\n", "pings sent", r[0].pings, r[1].pings);
    printf("  %-40s %16s %16s\n", "ping lateness p50", bucket_bound(r[0].late, 0.50, a, sizeof a),
           bucket_bound(r[1].late, 0.50, b, sizeof b));
    printf("  %-40s %16s %16s\n", "ping lateness p99", bucket_bound(r[0].late, 0.99, a, sizeof a),
           bucket_bound(r[1].late, 0.99, b, sizeof b));
    printf("  %-40s %16.2f %16.2f\n", "ping lateness max (ms)", r[0].late_max_us / 1e3,
           r[1].late_max_us / 1e3);
    printf("  %-40s %16d %16d\n", "deaths reported (of N)", r[0].deaths, r[1].deaths);
    printf("  %-40s %16.2f %16.2f\n", "death after timeout p50 (ms)", r[0].death_p50, r[1].death_p50);
    printf("  %-40s %16.2f %16.2f\n", "death after timeout p99 (ms)", r[0].death_p99, r[1].death_p99);
    printf("  %-40s %16.2f %16.2f\n", "death after timeout max (ms)", r[0].death_max, r[1].death_max);
    printf("  %-40s %16.1f %16s\n", "monitor thread wake-ups per second", r[0].wakeups_per_s, "1000");
    printf("  %-40s %16.1f %16.1f\n", "monitor thread CPU, % of one core", r[0].cpu_pct, r[1].cpu_pct);
    printf("  %-40s %16.1fx\n", "CPU ratio naive / monitor", r[1].cpu_pct / r[0].cpu_pct);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    alive_bench();

    CBN = getenv("HB_BENCH_FDS") ? atoi(getenv("HB_BENCH_FDS")) : 100000;
    int steady0 = getenv("HB_BENCH_STEADY") ? atoi(getenv("HB_BENCH_STEADY")) : 10;
    if (CBN > 0) {
        cb_last = calloc((size_t)CBN, sizeof *cb_last);
        cb_late = calloc((size_t)CBN, sizeof *cb_late);
        printf("%d watched fds, no sockets: the ping callback answers at once (scheduling cost\n"
               "only); interval %d ms, timeout %d ms; %d s steady state per variant\n\n",
               CBN, INTERVAL_MS, TIMEOUT_MS, steady0);
        struct result rc[2];
        if (run_cb_variant(0, steady0, &rc[0]) == 0 && run_cb_variant(1, steady0, &rc[1]) == 0)
            print_table(rc);
        printf("\n");
    }

    N = getenv("HB_BENCH_CONNS") ? atoi(getenv("HB_BENCH_CONNS")) : 100000;
    int steady = getenv("HB_BENCH_STEADY") ? atoi(getenv("HB_BENCH_STEADY")) : 10;
    if (N <= 0)
        return 0;
    int want = N;
    N = fd_budget(want);
    if (N < want)
        printf("NOTE: RLIMIT_NOFILE cannot be raised above %d here (no CAP_SYS_RESOURCE):\n"
               "      running %d connections instead of %d.\n\n", N + 256, N, want);
    long long t0 = now_ns();
    if (setup_conns(N) != 0)
        return 1;
    printf("%d loopback connections (127.0.0.1-5) set up in %.1f s; interval %d ms, timeout %d ms,\n"
           "1-byte pings echoed by an epoll peer process; %d s steady state per variant\n\n",
           N, (double)(now_ns() - t0) / 1e9, INTERVAL_MS, TIMEOUT_MS, steady);
    pthread_t net;
    pthread_create(&net, NULL, net_main, NULL);

    struct result r[2];
    if (run_variant(0, steady, &r[0]) != 0 || run_variant(1, steady, &r[1]) != 0)
        return 1;
    atomic_store(&net_stop, 1);
    pthread_join(net, NULL);

    print_table(r);
    return 0;
}
