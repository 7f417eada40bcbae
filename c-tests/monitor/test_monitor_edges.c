/* The heartbeat monitor's edges (issue 8): each test is the regression test
 * of one defect found by adversarial testing, and fails on the library
 * before the fix.
 *
 *   unwatch_rewatch_fd_reuse    2: unwatch() decides after the running dead
 *                                  callback re-watched the fd: an unrelated
 *                                  connection that reuses the fd number
 *                                  never receives ping bytes
 *   free_in_ping_cb             5: a ping_cb that frees the monitor and
 *                                  returns an errno gets no dead callback
 *   unwatch_while_cb_frees      6: unwatch() waiting for the dead callback
 *                                  that frees the monitor, and unwatch()
 *                                  waiting while another thread frees it,
 *                                  return normally (memcheck: no invalid
 *                                  read)
 *   late_pings                  8: peers answering 19 ms after each ping's
 *                                  actual send (window 20 ms), with pings
 *                                  made late by slow ping callbacks: no
 *                                  death; a silent peer dies in its window
 *   signal_storm               10: no signal handler ever runs on a monitor
 *                                  thread, even while it starts
 *   two_monitors               12: dead callbacks of two monitors that
 *                                  unwatch() (or free()) each other do not
 *                                  deadlock: one gets HEARTBEAT_ERR_DEADLOCK
 *   callback_stack             13: callbacks run on the process's default
 *                                  thread stack (3 MiB of stack use with an
 *                                  8 MiB default; 12 MiB after
 *                                  pthread_setattr_default_np(16 MiB))
 *   ping_cb_codes_and_stats    14: EAGAIN/EINTR from ping_cb are "blocked",
 *                                  not deaths; failed pings are not counted
 *                                  in stats.pings
 *   free_in_forked_child       14: free() in a fork()ed child prints nothing
 *                                  and returns
 *
 * HB_TEST_SLOW=1 (valgrind) widens the timing windows and skips the parts
 * that only timing or huge stacks can show. HB_MONITOR_MODE=loop runs the
 * tests against the thread-free monitor (mon_mode.h), except the two about
 * the monitor thread itself (signals, stack). */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "heartbeat.h"
#include "mon_mode.h"
#include "sockets.h"
#include "testutil.h"

static int slow;

static pid_t my_tid(void) { return (pid_t)syscall(SYS_gettid); }

/* Waits (bounded) until *flag is non-zero; 1 if it became so. */
static int wait_flag(atomic_int *flag, long ms)
{
    long long end = now_ns() + ms * 1000000LL;
    while (!atomic_load(flag)) {
        if (now_ns() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

static struct heartbeat_monitor *new_monitor(unsigned iv, unsigned to, const char *ping,
                                             heartbeat_ping_fn ping_cb, heartbeat_dead_fn dead_cb,
                                             void *user)
{
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = iv;
    o.timeout_ms = to;
    if (ping) {
        o.ping_data = ping;
        o.ping_len = strlen(ping);
    }
    o.ping_cb = ping_cb;
    o.dead_cb = dead_cb;
    o.user = user;
    int code = 1;
    struct heartbeat_monitor *m = mon_new(&o, &code);
    if (!m)
        fprintf(stderr, "  heartbeat_monitor_new: code %d errno %d\n", code, errno);
    return m;
}

/* Runs fn in a child process with a watchdog; returns the child's exit
 * status (0 = passed), or -1 with a message if it was killed (a deadlock
 * ends with SIGALRM, a crash with SIGSEGV or SIGABRT). */
static int in_child(int (*fn)(void), unsigned watchdog_s)
{
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        alarm(watchdog_s);
        _exit(fn());
    }
    int st = 0;
    if (waitpid(p, &st, 0) != p)
        return -1;
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "  child killed by signal %d (%s)\n", WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? "watchdog: it hung" : strsignal(WTERMSIG(st)));
        return -1;
    }
    return WEXITSTATUS(st);
}

/* ---- 2: unwatch after a re-watching dead callback, fd-number reuse ------ */

static struct {
    int fd;
    atomic_int in_dead, calling, rewatched;
} rw;

static void rewatch_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)reason, (void)err, (void)user;
    if (fd != rw.fd)
        return;
    atomic_store(&rw.in_dead, 1);
    /* Wait until the test is about to call unwatch(), then give it time to
     * be inside (waiting for this callback) before re-watching: the
     * documented "start over" pattern. */
    wait_flag(&rw.calling, 5000);
    sleep_ms(slow ? 300 : 30);
    if (heartbeat_monitor_watch(m, fd) == HEARTBEAT_OK)
        atomic_store(&rw.rewatched, 1);
}

static int test_unwatch_rewatch_fd_reuse(void)
{
    int rc = 1;
    int c = -1, s = -1, c2 = -1, s2 = -1;
    struct heartbeat_monitor *m = NULL;
    memset(&rw, 0, sizeof rw);
    CHECK(tcp_pair(0, &c, &s) == 0);
    rw.fd = c;
    /* The peer never answers: dead after 30 ms. */
    m = new_monitor(10, 30, "PING", NULL, rewatch_dead, NULL);
    CHECK(m);
    CHECK_EQ(heartbeat_monitor_watch(m, c), HEARTBEAT_OK);
    CHECK(wait_flag(&rw.in_dead, 5000));
    atomic_store(&rw.calling, 1);
    int u = heartbeat_monitor_unwatch(m, c);
    int still = heartbeat_monitor_alive(m, c);
    struct heartbeat_monitor_stats st;
    CHECK_EQ(heartbeat_monitor_stats(m, &st), HEARTBEAT_OK);
    /* Close at once, as the guarantee allows, and give the number to an
     * unrelated connection. */
    int num = c;
    tcp_pair_close(&c, &s);
    CHECK(tcp_pair(0, &c2, &s2) == 0);
    if (c2 != num) {
        CHECK(dup2(c2, num) == num);
        close(c2);
        c2 = num;
    }
    /* Ten intervals and more: not one byte arrives. */
    char buf[64];
    long long end = now_ns() + (slow ? 1000 : 200) * 1000000LL;
    long got = 0;
    while (now_ns() < end) {
        ssize_t n = recv(s2, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            got += n;
        sleep_ms(2);
    }
    if (got)
        fprintf(stderr, "  the unrelated connection received %ld ping bytes\n", got);
    CHECK_EQ(got, 0);
    /* The callback's new watch was stopped by that very unwatch() call. */
    CHECK(atomic_load(&rw.rewatched));
    CHECK_EQ(u, HEARTBEAT_OK);
    CHECK_EQ(still, HEARTBEAT_ERR_NOT_WATCHED);
    CHECK_EQ(st.watched, 0);
    rc = 0;
cleanup:
    mon_free(m);
    tcp_pair_close(&c, &s);
    tcp_pair_close(&c2, &s2);
    return rc;
}

/* ---- 5: ping_cb frees the monitor, then returns an errno ---------------- */

static atomic_int fp_pings, fp_deaths;

/* Set once the test has stopped calling watch(): the callback must not free
 * the monitor while the test still uses it (with an interval of 5 ms the
 * first ping can come before the last watch()). */
static atomic_int fp_watching_done;

static int free_then_fail_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)fd, (void)user;
    if (atomic_fetch_add(&fp_pings, 1) == 0) {
        wait_flag(&fp_watching_done, 5000);
        mon_free(m);
    }
    return EPIPE;
}

static void count_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
    atomic_fetch_add(&fp_deaths, 1);
}

static int test_free_in_ping_cb(void)
{
    int rc = 1;
    atomic_store(&fp_pings, 0);
    atomic_store(&fp_deaths, 0);
    atomic_store(&fp_watching_done, 0);
    struct heartbeat_monitor *m = new_monitor(5, 1000, NULL, free_then_fail_ping, count_dead, NULL);
    CHECK(m);
    for (int fd = 100; fd < 110; fd++)
        CHECK_EQ(heartbeat_monitor_watch(m, fd), HEARTBEAT_OK);
    m = NULL; /* the ping callback frees it */
    atomic_store(&fp_watching_done, 1);
    long long end = now_ns() + 3000000000LL;
    while (atomic_load(&fp_pings) == 0 && now_ns() < end)
        sleep_ms(1);
    sleep_ms(slow ? 500 : 100);
    CHECK_EQ(atomic_load(&fp_pings), 1);
    CHECK_EQ(atomic_load(&fp_deaths), 0);
    rc = 0;
cleanup:
    return rc;
}

/* ---- 6: unwatch() in progress while the monitor is freed ------------------ */

static struct {
    atomic_int in_dead, calling, freed;
    int free_in_cb;
} uf;

static void slow_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)fd, (void)reason, (void)err, (void)user;
    if (atomic_exchange(&uf.in_dead, 1))
        return;
    wait_flag(&uf.calling, 5000);
    sleep_ms(slow ? 300 : 50); /* the test's unwatch() is waiting for us */
    if (uf.free_in_cb) {
        mon_free(m);
        atomic_store(&uf.freed, 1);
    }
}

struct unwatcher {
    struct heartbeat_monitor *m;
    int fd, rc;
};

static void *unwatch_main(void *arg)
{
    struct unwatcher *u = arg;
    atomic_store(&uf.calling, 1);
    u->rc = heartbeat_monitor_unwatch(u->m, u->fd);
    return NULL;
}

static int test_unwatch_while_cb_frees(void)
{
    int rc = 1;
    struct heartbeat_monitor *m = NULL;
    /* (a) The dead callback frees the monitor while unwatch() waits. */
    memset(&uf, 0, sizeof uf);
    uf.free_in_cb = 1;
    m = new_monitor(10, 20, NULL, NULL, slow_dead, NULL);
    CHECK(m);
    CHECK_EQ(heartbeat_monitor_watch(m, 42), HEARTBEAT_OK);
    CHECK(wait_flag(&uf.in_dead, 5000));
    atomic_store(&uf.calling, 1);
    /* fd 42 was declared dead: NOT_WATCHED, after the callback returned. */
    CHECK_RC_ERRNO(heartbeat_monitor_unwatch(m, 42), HEARTBEAT_ERR_NOT_WATCHED, ENOENT);
    CHECK(atomic_load(&uf.freed));
    m = NULL;

    /* (b) Another thread is blocked in unwatch() when free() is called. */
    memset(&uf, 0, sizeof uf);
    m = new_monitor(10, 20, NULL, NULL, slow_dead, NULL);
    CHECK(m);
    CHECK_EQ(heartbeat_monitor_watch(m, 43), HEARTBEAT_OK);
    CHECK(wait_flag(&uf.in_dead, 5000));
    struct unwatcher u = {m, 43, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, unwatch_main, &u) == 0);
    CHECK(wait_flag(&uf.calling, 5000));
    sleep_ms(slow ? 100 : 10); /* the thread is inside unwatch(), waiting */
    mon_free_busy(m);
    m = NULL;
    pthread_join(th, NULL);
    CHECK_EQ(u.rc, HEARTBEAT_ERR_NOT_WATCHED);
    rc = 0;
cleanup:
    mon_free(m);
    return rc;
}

/* The same two cases with the waiting thread kept off the CPU while the
 * monitor is freed, so that it resumes only after the free has completed
 * (the interleaving in which the library before the fix touched freed
 * memory: the waiter then hung on a freed mutex or crashed). The waiter and
 * a SCHED_FIFO hog share CPU 0; the monitor thread and the freeing thread
 * run on CPU 1. Needs two CPUs and SCHED_FIFO (exit 77: skipped). */
static struct {
    sem_t go;
    atomic_int stop;
} hog;

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *hog_main(void *arg)
{
    (void)arg;
    while (sem_wait(&hog.go) == 0 && !atomic_load(&hog.stop)) {
        long long end = now_ns() + 300000000LL; /* owns CPU 0 for 300 ms */
        while (now_ns() < end) {
        }
    }
    return NULL;
}

static struct {
    atomic_int in_dead, waiting, freed;
    int free_in_cb;
} sv;

static void starve_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)fd, (void)reason, (void)err, (void)user;
    if (atomic_exchange(&sv.in_dead, 1))
        return;
    wait_flag(&sv.waiting, 5000);
    sleep_ms(20); /* the waiter is asleep in unwatch() */
    if (sv.free_in_cb) {
        sem_post(&hog.go); /* from now on the waiter cannot run */
        sleep_ms(20);
        mon_free(m);
        atomic_store(&sv.freed, 1);
    } else {
        sleep_ms(60); /* the test frees the monitor meanwhile */
    }
}

static void *starve_waiter(void *arg)
{
    struct unwatcher *u = arg;
    pin(0);
    atomic_store(&sv.waiting, 1);
    u->rc = heartbeat_monitor_unwatch(u->m, u->fd);
    return NULL;
}

static int starve_child(void)
{
    pthread_t h, w;
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || pin(1) != 0)
        return 77;
    sem_init(&hog.go, 0, 0);
    pthread_attr_t a;
    struct sched_param sp = {.sched_priority = 1};
    pthread_attr_init(&a);
    pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&a, SCHED_FIFO);
    pthread_attr_setschedparam(&a, &sp);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    pthread_attr_setaffinity_np(&a, sizeof set, &set);
    if (pthread_create(&h, &a, hog_main, NULL) != 0)
        return 77; /* no SCHED_FIFO here */
    pthread_attr_destroy(&a);
    for (int variant = 0; variant < 2; variant++) {
        memset(&sv, 0, sizeof sv);
        sv.free_in_cb = variant == 0;
        struct heartbeat_monitor *m = new_monitor(10, 20, NULL, NULL, starve_dead, NULL);
        if (!m || heartbeat_monitor_watch(m, 42) != HEARTBEAT_OK)
            return 2;
        if (!wait_flag(&sv.in_dead, 5000))
            return 3;
        struct unwatcher u = {m, 42, 1};
        if (pthread_create(&w, NULL, starve_waiter, &u) != 0)
            return 4;
        if (variant == 1) {
            wait_flag(&sv.waiting, 5000);
            sleep_ms(10);
            sem_post(&hog.go);
            sleep_ms(10);
            mon_free_busy(m); /* the waiter is still in unwatch() */
        }
        pthread_join(w, NULL);
        if (u.rc != HEARTBEAT_ERR_NOT_WATCHED)
            return 10 + variant;
        sleep_ms(300); /* the hog is done */
    }
    atomic_store(&hog.stop, 1);
    sem_post(&hog.go);
    pthread_join(h, NULL);
    return 0;
}

static int test_unwatch_waiter_resumes_after_free(void)
{
    int rc = 1;
    int r = in_child(starve_child, 20);
    if (r == 77)
        return 77; /* reported as SKIP by main */
    CHECK_EQ(r, 0);
    rc = 0;
cleanup:
    return rc;
}

/* ---- 8: late pings, answers at the edge of the window ----------------- */

#define LP_FDS 7     /* fds 300..305 answer, 306 is silent */
#define LP_SILENT 306
#define LP_QUEUE 4096

static struct {
    struct heartbeat_monitor *m;
    pthread_mutex_t mu;
    long long q_at[LP_QUEUE];
    int q_fd[LP_QUEUE];
    unsigned head, tail;
    long long answer_ns, window_ns;
    long max_sleep_us;
    unsigned seed;
    atomic_int stop;
    /* Per round (reset by the test): deaths and how the peer did. */
    int round;
    atomic_int deaths[LP_FDS], peer_late[LP_FDS];
    int first_done[LP_FDS];
    long long death_at, silent_first_end;
    atomic_long answers;
} lp;

static int late_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)m, (void)user;
    /* A slow callback: 0..max_sleep_us before the "send" of an fd's first
     * ping of the round (the one that meets the watch time as "last
     * heard"), up to a fifth of that for the others, so this ping and those
     * queued behind it go out late, by varying amounts. */
    pthread_mutex_lock(&lp.mu);
    lp.seed = lp.seed * 1103515245u + 12345u;
    long max = lp.max_sleep_us;
    if (fd >= 300 && fd < 300 + LP_FDS && !lp.first_done[fd - 300])
        lp.first_done[fd - 300] = 1;
    else
        max /= 5;
    long us = (long)((lp.seed >> 16) % (unsigned)(max + 1));
    pthread_mutex_unlock(&lp.mu);
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
    long long sent = now_ns(); /* the actual send */
    pthread_mutex_lock(&lp.mu);
    if (fd != LP_SILENT && lp.tail - lp.head < LP_QUEUE) {
        lp.q_at[lp.tail % LP_QUEUE] = sent;
        lp.q_fd[lp.tail % LP_QUEUE] = fd;
        lp.tail++;
    }
    if (fd == LP_SILENT && lp.silent_first_end == 0)
        lp.silent_first_end = now_ns(); /* <= when the callback returns */
    pthread_mutex_unlock(&lp.mu);
    return 0;
}

static void late_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    if (fd >= 300 && fd < 300 + LP_FDS)
        atomic_fetch_add(&lp.deaths[fd - 300], 1);
    if (fd == LP_SILENT)
        lp.death_at = now_ns();
}

/* The peers: each answer (alive()) at exactly answer_ns after the send. */
static void *late_peer(void *arg)
{
    (void)arg;
    while (!atomic_load(&lp.stop)) {
        pthread_mutex_lock(&lp.mu);
        int have = lp.head != lp.tail;
        long long at = have ? lp.q_at[lp.head % LP_QUEUE] : 0;
        int fd = have ? lp.q_fd[lp.head % LP_QUEUE] : -1;
        if (have)
            lp.head++;
        pthread_mutex_unlock(&lp.mu);
        if (!have) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
            continue;
        }
        long long due = at + lp.answer_ns;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        (void)heartbeat_monitor_alive(lp.m, fd);
        if (now_ns() - at >= lp.window_ns) /* the peer broke its promise */
            atomic_fetch_add(&lp.peer_late[fd - 300], 1);
        atomic_fetch_add(&lp.answers, 1);
    }
    return NULL;
}

static int test_late_pings(void)
{
    int rc = 1;
    pthread_t peer;
    int started = 0;
    const unsigned iv = slow ? 200 : 20, to = slow ? 400 : 40;
    const int rounds = slow ? 3 : 20;
    const long round_ms = slow ? 1500 : 200;
    int unexcused = 0, excused = 0;
    memset(&lp, 0, sizeof lp);
    pthread_mutex_init(&lp.mu, NULL);
    lp.window_ns = (long long)(to - iv) * 1000000LL;
    lp.answer_ns = lp.window_ns - 1000000LL; /* 19 ms after the send */
    lp.max_sleep_us = slow ? 40000 : 8000;
    lp.seed = 12345;
    lp.m = new_monitor(iv, to, NULL, late_ping, late_dead, NULL);
    CHECK(lp.m);
    CHECK(pthread_create(&peer, NULL, late_peer, NULL) == 0);
    started = 1;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < LP_FDS; i++) {
            atomic_store(&lp.deaths[i], 0);
            atomic_store(&lp.peer_late[i], 0);
        }
        lp.death_at = 0;
        pthread_mutex_lock(&lp.mu);
        lp.silent_first_end = 0;
        memset(lp.first_done, 0, sizeof lp.first_done);
        pthread_mutex_unlock(&lp.mu);
        long long w0 = now_ns();
        for (int fd = 300; fd < 300 + LP_FDS; fd++)
            CHECK_EQ(heartbeat_monitor_watch(lp.m, fd), HEARTBEAT_OK);
        long long w1 = now_ns();
        sleep_ms(round_ms);
        for (int fd = 300; fd < 300 + LP_FDS; fd++)
            (void)heartbeat_monitor_unwatch(lp.m, fd);
        for (int i = 0; i < LP_FDS - 1; i++) {
            if (atomic_load(&lp.deaths[i]) == 0)
                continue;
            if (atomic_load(&lp.peer_late[i]))
                excused++; /* our peer thread answered late: a fair death */
            else {
                fprintf(stderr, "  round %d: fd %d answered in time and was declared dead\n", r,
                        300 + i);
                unexcused++;
            }
        }
        /* The silent peer: dead once, at max(w + timeout, end(P) + window)
         * or later by what the monitor thread was busy with (callbacks of
         * up to max_sleep_us for the other fds, the 1 ms wheel). */
        CHECK_EQ(atomic_load(&lp.deaths[LP_FDS - 1]), 1);
        pthread_mutex_lock(&lp.mu);
        long long first_end = lp.silent_first_end;
        pthread_mutex_unlock(&lp.mu);
        CHECK(first_end > 0);
        long long lo = w0 + to * 1000000LL;
        if (first_end + lp.window_ns > lo)
            lo = first_end + lp.window_ns;
        long long hi = (w1 + to * 1000000LL > lo ? w1 + to * 1000000LL : lo) +
                       (slow ? 500 : 20) * 1000000LL;
        if (lp.death_at < lo || lp.death_at > hi)
            fprintf(stderr, "  round %d: silent peer dead %.3f ms after its earliest time (allowed 0..%.0f)\n",
                    r, (lp.death_at - lo) / 1e6, (hi - lo) / 1e6);
        CHECK(lp.death_at >= lo && lp.death_at <= hi);
    }
    struct heartbeat_monitor_stats st;
    CHECK_EQ(heartbeat_monitor_stats(lp.m, &st), HEARTBEAT_OK);
    fprintf(stderr, "  %ld answers; %d deaths excused (peer thread late); ping lateness max %lu us\n",
            atomic_load(&lp.answers), excused, st.ping_late_max_us);
    CHECK_EQ(unexcused, 0);
    /* The pings were late (the point of the test), and the peer mostly kept
     * its promise (a loaded machine may make it late now and then). */
    CHECK(slow || st.ping_late_max_us >= 2000);
    CHECK(excused <= rounds);
    rc = 0;
cleanup:
    atomic_store(&lp.stop, 1);
    if (started)
        pthread_join(peer, NULL);
    mon_free(lp.m);
    lp.m = NULL;
    pthread_mutex_destroy(&lp.mu);
    return rc;
}

/* ---- 10: a signal storm while monitors are created ----------------------- */

static pid_t storm_tid; /* the only thread allowed to run the handler */
static atomic_int storm_stop, storm_handled, storm_wrong;

static void storm_handler(int sig)
{
    (void)sig;
    int e = errno;
    if (my_tid() != storm_tid)
        atomic_fetch_add(&storm_wrong, 1);
    atomic_fetch_add(&storm_handled, 1);
    errno = e;
}

static void *storm_sender(void *arg)
{
    (void)arg;
    while (!atomic_load(&storm_stop))
        kill(getpid(), SIGUSR1); /* process-directed: any thread that allows it */
    return NULL;
}

static void *storm_creator(void *arg)
{
    int n = *(int *)arg, bad = 0;
    storm_tid = my_tid();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    for (int i = 0; i < n; i++) {
        struct heartbeat_monitor *m = new_monitor(1, 2, NULL, NULL, count_dead, NULL);
        if (!m) {
            bad++;
            continue;
        }
        (void)heartbeat_monitor_watch(m, 1000 + i);
        mon_free(m);
    }
    *(int *)arg = bad;
    return NULL;
}

static int test_signal_storm(void)
{
    int rc = 1;
    pthread_t senders[2], creator;
    int nsend = 0, ncreator = 0;
    int n = slow ? 30 : 400;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = storm_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, &old) == 0);
    /* Every thread of the test blocks SIGUSR1 but the creator: the kernel
     * delivers the storm to the creator, or to a thread that does not
     * block it: a monitor thread, if it ever lets one in. */
    sigset_t set, prev;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &prev);
    atomic_store(&storm_stop, 0);
    atomic_store(&storm_handled, 0);
    atomic_store(&storm_wrong, 0);
    for (; nsend < 2; nsend++)
        CHECK(pthread_create(&senders[nsend], NULL, storm_sender, NULL) == 0);
    int arg = n;
    CHECK(pthread_create(&creator, NULL, storm_creator, &arg) == 0);
    ncreator = 1;
    pthread_join(creator, NULL);
    ncreator = 0;
    atomic_store(&storm_stop, 1);
    for (int i = 0; i < nsend; i++)
        pthread_join(senders[i], NULL);
    nsend = 0;
    fprintf(stderr, "  %d monitors, %d signals handled, %d on a monitor thread\n", n,
            atomic_load(&storm_handled), atomic_load(&storm_wrong));
    CHECK_EQ(arg, 0);
    CHECK(atomic_load(&storm_handled) > 0);
    CHECK_EQ(atomic_load(&storm_wrong), 0);
    rc = 0;
cleanup:
    atomic_store(&storm_stop, 1);
    if (ncreator)
        pthread_join(creator, NULL);
    for (int i = 0; i < nsend; i++)
        pthread_join(senders[i], NULL);
    /* Pending storm signals are discarded with the handler still set. */
    signal(SIGUSR1, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    sigaction(SIGUSR1, &old, NULL);
    return rc;
}

/* ---- 12: two monitors whose dead callbacks wait for each other ----------- */

static struct {
    struct heartbeat_monitor *a, *b;
    atomic_int a_in, b_in, a_rc, b_rc, b_freed;
    int a_frees_b;
} tm;

static void a_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
    atomic_store(&tm.a_in, 1);
    wait_flag(&tm.b_in, 5000);
    if (tm.a_frees_b) {
        mon_free_busy(tm.b);
        atomic_store(&tm.b_freed, 1);
        atomic_store(&tm.a_rc, HEARTBEAT_OK);
    } else {
        errno = 0;
        int r = heartbeat_monitor_unwatch(tm.b, 20);
        if (r == HEARTBEAT_ERR_DEADLOCK && errno != EDEADLK)
            r = 1;
        atomic_store(&tm.a_rc, r);
    }
}

static void b_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
    atomic_store(&tm.b_in, 1);
    wait_flag(&tm.a_in, 5000);
    errno = 0;
    int r = heartbeat_monitor_unwatch(tm.a, 10);
    if (r == HEARTBEAT_ERR_DEADLOCK && errno != EDEADLK)
        r = 1;
    atomic_store(&tm.b_rc, r);
}

static int two_monitors_child(void)
{
    for (int variant = 0; variant < 2; variant++) {
        memset(&tm, 0, sizeof tm);
        atomic_store(&tm.a_rc, 99);
        atomic_store(&tm.b_rc, 99);
        tm.a_frees_b = variant;
        tm.a = new_monitor(10, 20, NULL, NULL, a_dead, NULL);
        tm.b = new_monitor(10, 20, NULL, NULL, b_dead, NULL);
        if (!tm.a || !tm.b)
            return 2;
        if (heartbeat_monitor_watch(tm.a, 10) || heartbeat_monitor_watch(tm.b, 20))
            return 3;
        long long end = now_ns() + 5000000000LL;
        while ((atomic_load(&tm.a_rc) == 99 || atomic_load(&tm.b_rc) == 99) && now_ns() < end)
            sleep_ms(1);
        int a = atomic_load(&tm.a_rc), b = atomic_load(&tm.b_rc);
        fprintf(stderr, "  variant %d: A's callback got %d, B's got %d\n", variant, a, b);
        if (variant == 0) {
            /* One of them could not wait (it would have deadlocked); the
             * other waited for it and found its fd declared dead. */
            int ok = (a == HEARTBEAT_ERR_DEADLOCK && b == HEARTBEAT_ERR_NOT_WATCHED) ||
                     (b == HEARTBEAT_ERR_DEADLOCK && a == HEARTBEAT_ERR_NOT_WATCHED);
            if (!ok)
                return 4;
            mon_free(tm.b);
        } else {
            /* A's free(B) returned; B's unwatch(A) returned either code. */
            if (a != HEARTBEAT_OK || !atomic_load(&tm.b_freed))
                return 5;
            if (b != HEARTBEAT_ERR_DEADLOCK && b != HEARTBEAT_ERR_NOT_WATCHED)
                return 6;
            sleep_ms(50); /* B's thread ends after its callback */
        }
        mon_free(tm.a);
    }
    return 0;
}

static int test_two_monitors(void)
{
    int rc = 1;
    CHECK_EQ(in_child(two_monitors_child, slow ? 60 : 10), 0);
    rc = 0;
cleanup:
    return rc;
}

/* ---- 13: the callbacks' stack ------------------------------------------------ */

static struct {
    size_t use, stack;
    atomic_int done;
} sk;

/* Uses `n` bytes of stack (touched, so that the pages are really used). */
static __attribute__((noinline)) unsigned use_stack(size_t n)
{
    volatile unsigned char big[n];
    for (size_t i = 0; i < n; i += 512)
        big[i] = (unsigned char)i;
    unsigned s = 0;
    for (size_t i = 0; i < n; i += 4096)
        s += big[i];
    return s;
}

static void stack_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, &sk.stack);
        pthread_attr_destroy(&a);
    }
    (void)use_stack(sk.use);
    atomic_store(&sk.done, 1);
}

static size_t default_stack(void)
{
    pthread_attr_t a;
    size_t s = 0;
    if (pthread_getattr_default_np(&a) == 0) {
        pthread_attr_getstacksize(&a, &s);
        pthread_attr_destroy(&a);
    }
    return s;
}

static int stack_round(size_t use)
{
    memset(&sk, 0, sizeof sk);
    sk.use = use;
    struct heartbeat_monitor *m = new_monitor(10, 20, NULL, NULL, stack_dead, NULL);
    if (!m || heartbeat_monitor_watch(m, 5) != HEARTBEAT_OK)
        return 2;
    if (!wait_flag(&sk.done, 5000))
        return 3;
    mon_free(m);
    size_t want = default_stack();
    if (sk.stack != want) {
        fprintf(stderr, "  callback stack %zu bytes, process default %zu\n", sk.stack, want);
        return 4;
    }
    return 0;
}

static int stack_child(void)
{
    /* 3 MiB under the default (8 MiB here). */
    int r = stack_round(3u << 20);
    if (r)
        return r;
    /* The default follows pthread_setattr_default_np. */
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 16u << 20);
    if (pthread_setattr_default_np(&a) != 0)
        return 5;
    pthread_attr_destroy(&a);
    return stack_round(12u << 20) ? 6 : 0;
}

static int test_callback_stack(void)
{
    int rc = 1;
    CHECK_EQ(in_child(stack_child, 20), 0);
    rc = 0;
cleanup:
    return rc;
}

/* ---- 14: ping_cb codes and the stats ------------------------------------ */

static struct {
    atomic_int dead_fd[8], dead_err[8];
} pc;

static int code_ping(struct heartbeat_monitor *m, int fd, void *user)
{
    (void)m, (void)user;
    switch (fd) {
    case 401: return EAGAIN;
    case 402: return EINTR;
    case 403: return EWOULDBLOCK;
    case 404: return EPIPE;
    default: return -5;
    }
}

static void code_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)user;
    if (fd >= 401 && fd <= 405) {
        atomic_store(&pc.dead_fd[fd - 400], reason);
        atomic_store(&pc.dead_err[fd - 400], err);
    }
}

static int test_ping_cb_codes_and_stats(void)
{
    int rc = 1;
    memset(&pc, 0, sizeof pc);
    struct heartbeat_monitor *m = new_monitor(10, slow ? 3000 : 300, NULL, code_ping, code_dead, NULL);
    CHECK(m);
    for (int fd = 401; fd <= 405; fd++)
        CHECK_EQ(heartbeat_monitor_watch(m, fd), HEARTBEAT_OK);
    /* Keep 401..403 alive by hand for a while: their pings "would block". */
    for (int i = 0; i < (slow ? 40 : 20); i++) {
        for (int fd = 401; fd <= 403; fd++)
            CHECK_EQ(heartbeat_monitor_alive(m, fd), HEARTBEAT_OK);
        sleep_ms(10);
    }
    for (int fd = 401; fd <= 403; fd++)
        CHECK_EQ(atomic_load(&pc.dead_fd[fd - 400]), 0);
    CHECK_EQ(atomic_load(&pc.dead_fd[4]), HEARTBEAT_DEAD_SEND_FAILED);
    CHECK_EQ(atomic_load(&pc.dead_err[4]), EPIPE);
    CHECK_EQ(atomic_load(&pc.dead_fd[5]), HEARTBEAT_DEAD_SEND_FAILED);
    CHECK_EQ(atomic_load(&pc.dead_err[5]), EIO);
    struct heartbeat_monitor_stats st;
    CHECK_EQ(heartbeat_monitor_stats(m, &st), HEARTBEAT_OK);
    fprintf(stderr, "  pings %lu, blocked %lu, deaths %lu\n", st.pings, st.pings_blocked, st.deaths);
    CHECK_EQ(st.pings, 0);      /* nothing went out: two failed, the rest blocked */
    CHECK(st.pings_blocked >= 3 * 5);
    CHECK_EQ(st.deaths, 2);
    CHECK_EQ(st.watched, 3);
    rc = 0;
cleanup:
    mon_free(m);
    return rc;
}

/* ---- 14: free() in a forked child ---------------------------------------- */

/* The children fork while another thread keeps the monitor's mutex held
 * most of the time (watch() and unwatch() in a tight loop: little happens
 * outside the mutex), so many children get a copy of the mutex locked:
 * free() there must not touch it (it would wait forever). */
static struct {
    struct heartbeat_monitor *m;
    atomic_int stop;
} fk;

static void *fork_hammer(void *arg)
{
    (void)arg;
    while (!atomic_load(&fk.stop)) {
        (void)heartbeat_monitor_watch(fk.m, 7000);
        (void)heartbeat_monitor_unwatch(fk.m, 7000);
    }
    return NULL;
}

static int test_free_in_forked_child(void)
{
    int rc = 1;
    int err[2] = {-1, -1};
    pthread_t th;
    int started = 0;
    struct heartbeat_monitor *m = new_monitor(1000, 60000, NULL, NULL, count_dead, NULL);
    CHECK(m);
    for (int fd = 600; fd < 700; fd++)
        CHECK_EQ(heartbeat_monitor_watch(m, fd), HEARTBEAT_OK);
    CHECK(pipe(err) == 0);
    fk.m = m;
    atomic_store(&fk.stop, 0);
    CHECK(pthread_create(&th, NULL, fork_hammer, NULL) == 0);
    started = 1;
    int bad = 0;
    for (int i = 0; i < (slow ? 3 : 30); i++) {
        fflush(stdout);
        fflush(stderr);
        pid_t p = fork();
        CHECK(p >= 0);
        if (p == 0) {
            alarm(slow ? 20 : 2); /* a free() that waits would hang here */
            dup2(err[1], 2);
            heartbeat_monitor_free(m);
            /* As documented, the child's copy stays allocated until it
             * execs (or exits): exec, as children usually do (and so that
             * memcheck's leak check of the child does not count it). */
            execl("/bin/true", "true", (char *)NULL);
            _exit(0);
        }
        int st = 0;
        CHECK(waitpid(p, &st, 0) == p);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad++;
        sleep_ms(1);
    }
    atomic_store(&fk.stop, 1);
    pthread_join(th, NULL);
    started = 0;
    close(err[1]);
    err[1] = -1;
    char buf[512];
    ssize_t n = read(err[0], buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        fprintf(stderr, "  the child printed: %s\n", buf);
    }
    CHECK_EQ(n, 0);
    if (bad)
        fprintf(stderr, "  %d children did not return from free() (hung or crashed)\n", bad);
    CHECK_EQ(bad, 0);
    /* The parent's monitor is not affected. */
    struct heartbeat_monitor_stats st;
    CHECK_EQ(heartbeat_monitor_stats(m, &st), HEARTBEAT_OK);
    CHECK_EQ(st.watched, 100);
    CHECK_EQ(st.deaths, 0);
    CHECK_EQ(heartbeat_monitor_watch(m, 7001), HEARTBEAT_OK);
    CHECK_EQ(heartbeat_monitor_unwatch(m, 7001), HEARTBEAT_OK);
    rc = 0;
cleanup:
    if (started) {
        atomic_store(&fk.stop, 1);
        pthread_join(th, NULL);
    }
    mon_free(m);
    if (err[0] >= 0)
        close(err[0]);
    if (err[1] >= 0)
        close(err[1]);
    return rc;
}

/* HB_TEST_ONLY=name runs only that test (for debugging one of them). */
#define RUN_SELECTED(t)                                                        \
    do {                                                                       \
        const char *only_ = getenv("HB_TEST_ONLY");                            \
        if (only_ && strcmp(only_, #t) != 0)                                   \
            break;                                                             \
        int r_ = t();                                                          \
        if (r_ == 77) {                                                        \
            SKIP(t, "needs 2 CPUs and SCHED_FIFO");                            \
            break;                                                             \
        }                                                                      \
        printf("%s - %s\n", r_ == 0 ? "ok" : "not ok", #t);                    \
        fflush(stdout);                                                        \
        if (r_ != 0)                                                           \
            check_failures_++;                                                 \
    } while (0)

int main(void)
{
    slow = getenv("HB_TEST_SLOW") != NULL;
    signal(SIGPIPE, SIG_IGN);
    printf("# monitor mode: %s\n", mon_mode_name());
    RUN_SELECTED(test_unwatch_rewatch_fd_reuse);
    RUN_SELECTED(test_free_in_ping_cb);
    RUN_SELECTED(test_unwatch_while_cb_frees);
    if (slow) /* valgrind runs one thread at a time: no starving there */
        SKIP(test_unwatch_waiter_resumes_after_free,
             "HB_TEST_SLOW (valgrind serialises threads; deep.sh runs it alone at full speed)");
    else
        RUN_SELECTED(test_unwatch_waiter_resumes_after_free);
    RUN_SELECTED(test_late_pings);
    if (mon_loop())
        SKIP(test_signal_storm, "a thread-free monitor starts no thread (its callbacks run on "
                                "the thread that calls process(), with that thread's mask)");
    else
        RUN_SELECTED(test_signal_storm);
    RUN_SELECTED(test_two_monitors);
    if (mon_loop())
        SKIP(test_callback_stack, "a thread-free monitor's callbacks run on the stack of the "
                                  "thread that calls process()");
    else if (default_stack() < (4u << 20))
        SKIP(test_callback_stack, "default thread stack below 4 MiB (ulimit -s)");
    else if (slow)
        SKIP(test_callback_stack, "HB_TEST_SLOW (to valgrind, megabyte stack frames look like "
                                  "stack switches; deep.sh runs it alone at full speed)");
    else
        RUN_SELECTED(test_callback_stack);
    RUN_SELECTED(test_ping_cb_codes_and_stats);
    RUN_SELECTED(test_free_in_forked_child);
    return CHECK_EXIT();
}
