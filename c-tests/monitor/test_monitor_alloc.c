/* Allocation-failure sweep of the monitor (issue 8, defect 7), run under
 * LD_PRELOAD=failalloc.so HB_FAILALLOC_OBJ=libheartbeat.so (see
 * c-tests/lib/failalloc.c): the N-th allocation that libheartbeat makes
 * fails, for N = 1, 2, 3... until a run needs no more than N - 1.
 *
 *   new:   heartbeat_monitor_new() (with ping bytes: every allocation it
 *          can make) returns NULL with HEARTBEAT_ERR_NOMEM and errno ENOMEM,
 *          and nothing it allocated is left (failalloc_live()); the same
 *          for heartbeat_monitor_new_loop() (the thread-free monitor), which
 *          also leaves no fd open (its timer fd is closed).
 *   watch: heartbeat_monitor_watch() of the first fd of a new table chunk
 *          returns HEARTBEAT_ERR_NOMEM, changes nothing (the fd is not
 *          watched, nothing is left allocated), and a later watch works.
 *
 * Each run is a forked child, so that a library that aborts on a failed
 * allocation ("memory allocation of N bytes failed", SIGABRT) shows up as
 * one failed run instead of ending the test. */
#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "heartbeat.h"

static void (*fa_arm)(long);
static long (*fa_counted)(void), (*fa_failed)(void), (*fa_live)(void);

static void dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)fd, (void)reason, (void)err, (void)user;
}

/* With ping bytes (the most allocations), or none (a silence detector,
 * that never sends anything to the fd numbers the watch sweep uses). */
static int loop; /* make() creates thread-free monitors */

static struct heartbeat_monitor *make(int *code, int bytes)
{
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 1000;
    o.timeout_ms = 3000;
    if (bytes) {
        o.ping_data = "PING\n";
        o.ping_len = 5;
    }
    o.dead_cb = dead;
    return loop ? heartbeat_monitor_new_loop(&o, code) : heartbeat_monitor_new(&o, code);
}

/* The lowest fd number free now: the same before and after a run means no
 * fd was left open. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* Child exit codes. */
enum { DONE_FAILED = 0, DONE_NO_FAILURE = 1, LEAK = 2, WRONG = 3, IGNORED = 4, SETUP = 5 };

static int new_run(long n)
{
    long live0 = fa_live();
    int fd0 = lowest_free_fd();
    int code = 12345;
    fa_arm(n);
    errno = 0;
    struct heartbeat_monitor *m = make(&code, 1);
    int e = errno;
    long failed = fa_failed(), counted = fa_counted();
    fa_arm(0);
    heartbeat_monitor_free(m);
    long live = fa_live();
    fprintf(stderr, "  new, allocation %ld fails: %s code %d errno %d; %ld counted; %ld left\n", n,
            m ? "monitor" : "NULL", code, e, counted, live - live0);
    if (live != live0 || lowest_free_fd() != fd0)
        return LEAK;
    if (failed == 0)
        return m && code == HEARTBEAT_OK ? DONE_NO_FAILURE : WRONG;
    if (m)
        return IGNORED;
    return code == HEARTBEAT_ERR_NOMEM && e == ENOMEM ? DONE_FAILED : WRONG;
}

static int watch_run(long n)
{
    long live0 = fa_live();
    int code;
    struct heartbeat_monitor *m = make(&code, 0);
    if (!m || heartbeat_monitor_watch(m, 3) != HEARTBEAT_OK)
        return SETUP;
    const int fd = 4096 * 5 + 7; /* the first fd of a chunk not yet allocated */
    long before = fa_live();
    fa_arm(n);
    errno = 0;
    int rc = heartbeat_monitor_watch(m, fd);
    int e = errno;
    long failed = fa_failed(), counted = fa_counted();
    fa_arm(0);
    long after = fa_live();
    int result;
    fprintf(stderr, "  watch, allocation %ld fails: rc %d errno %d; %ld counted; %ld new\n", n, rc,
            e, counted, after - before);
    if (failed == 0) {
        result = rc == HEARTBEAT_OK ? DONE_NO_FAILURE : WRONG;
    } else if (rc == HEARTBEAT_OK) {
        result = IGNORED;
    } else if (rc != HEARTBEAT_ERR_NOMEM || e != ENOMEM || after != before) {
        result = after != before ? LEAK : WRONG;
    } else if (heartbeat_monitor_alive(m, fd) != HEARTBEAT_ERR_NOT_WATCHED ||
               heartbeat_monitor_alive(m, 3) != HEARTBEAT_OK ||
               heartbeat_monitor_watch(m, fd) != HEARTBEAT_OK) {
        result = WRONG; /* nothing changed, and it works once memory is back */
    } else {
        result = DONE_FAILED;
    }
    heartbeat_monitor_free(m);
    if (fa_live() != live0)
        return LEAK;
    return result;
}

/* Sweeps N = 1.. over `run`; 0 if every run was clean. */
static int sweep(const char *what, int (*run)(long))
{
    for (long n = 1; n < 200; n++) {
        fflush(stdout);
        fflush(stderr);
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p == 0)
            _exit(run(n));
        int st = 0;
        if (waitpid(p, &st, 0) != p)
            return 1;
        if (WIFSIGNALED(st)) {
            fprintf(stderr, "  %s: the run failing allocation %ld was killed by signal %d (%s)\n",
                    what, n, WTERMSIG(st), strsignal(WTERMSIG(st)));
            return 1;
        }
        switch (WEXITSTATUS(st)) {
        case DONE_FAILED:
            continue;
        case DONE_NO_FAILURE:
            fprintf(stderr, "  %s: %ld allocations, each failure handled\n", what, n - 1);
            return n > 1 ? 0 : 1; /* it must allocate something to be swept */
        default:
            fprintf(stderr, "  %s: allocation %ld: %s\n", what, n,
                    (const char *[]){"", "", "leak", "wrong code or state",
                                     "failure ignored", "setup failed"}[WEXITSTATUS(st) % 6]);
            return 1;
        }
    }
    fprintf(stderr, "  %s: never finished\n", what);
    return 1;
}

static int test_alloc_sweep_new(void)
{
    loop = 0;
    return sweep("heartbeat_monitor_new", new_run);
}

static int test_alloc_sweep_watch(void)
{
    loop = 0;
    return sweep("heartbeat_monitor_watch", watch_run);
}

static int test_alloc_sweep_new_loop(void)
{
    loop = 1;
    return sweep("heartbeat_monitor_new_loop", new_run);
}

static int test_alloc_sweep_watch_loop(void)
{
    loop = 1;
    return sweep("heartbeat_monitor_watch (thread-free monitor)", watch_run);
}

int main(void)
{
    /* POSIX: dlsym's result is copied into the function pointer. */
    void *p;
    p = dlsym(RTLD_DEFAULT, "failalloc_arm");
    memcpy(&fa_arm, &p, sizeof p);
    p = dlsym(RTLD_DEFAULT, "failalloc_counted");
    memcpy(&fa_counted, &p, sizeof p);
    p = dlsym(RTLD_DEFAULT, "failalloc_failed");
    memcpy(&fa_failed, &p, sizeof p);
    p = dlsym(RTLD_DEFAULT, "failalloc_live");
    memcpy(&fa_live, &p, sizeof p);
    if (!fa_arm || !fa_counted || !fa_failed || !fa_live || !getenv("HB_FAILALLOC_OBJ")) {
        printf("not ok - the injector is not loaded: run with LD_PRELOAD=failalloc.so "
               "HB_FAILALLOC_OBJ=libheartbeat.so\n");
        return 1;
    }
    RUN(test_alloc_sweep_new);
    RUN(test_alloc_sweep_watch);
    RUN(test_alloc_sweep_new_loop);
    RUN(test_alloc_sweep_watch_loop);
    return CHECK_EXIT();
}
