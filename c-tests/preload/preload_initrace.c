/* Issue 8, defects 3 and 4: the preload library's one-time initialisation
 * must not make a forked child or a signal handler wait. A plain program
 * (no heartbeat.h), run by c-tests/preload/suite.sh under
 * LD_PRELOAD=libheartbeat_preload.so HEARTBEAT_IDLE=...:
 *
 *   preload_initrace fork RUNS
 *       RUNS runs, each a new process (exec of this program), since the
 *       first socket() of a process is the one that matters: a thread makes
 *       the process's first socket() call while the main thread forks
 *       children (up to 32) for as long as that call has not returned; each
 *       child makes a listening TCP socket and exits. Every child must exit
 *       within 2 s, its listener configured by the library.
 *       Before the fix, a child forked while the other thread was inside
 *       the library's lazy initialisation (a std OnceLock) waited forever.
 *   preload_initrace signal RUNS
 *       RUNS runs: a timer raises SIGALRM 1 to 97 us (a different delay in
 *       each run) after the main thread starts the process's first socket()
 *       call; the handler makes a listening TCP socket (socket, bind, listen,
 *       getsockopt: all async-signal-safe). Every run must finish within
 *       2 s, the handler's listener configured by the library. Before the
 *       fix, the handler's socket() waited for the
 *       initialisation it had interrupted, on the same thread: a deadlock.
 *
 * Prints one ok/not ok line per mode, with how many children or handler
 * runs fell inside the first socket() call (informative: the window is
 * short once nothing is initialised there). Every wait is bounded; a run
 * that does not finish is killed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 32
#define BOUND_MS 2000

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Waits for `pid` until `deadline` (ms); kills it if it is still running.
 * Returns its wait status, or -1 if it had to be killed. */
static int wait_until(pid_t pid, long long deadline) {
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -2;
        if (now_ms() >= deadline)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return -1;
}

static atomic_int go, inside, done;

/* A listening TCP socket on loopback, made with async-signal-safe calls
 * only: 1 if the library configured it (SO_KEEPALIVE on), 0 if not, -1 on
 * error. The library's listen hook (the default) configures it. */
static int listener_configured(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ka = -1;
    socklen_t len = sizeof ka;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &len) != 0)
        ka = -1;
    close(fd);
    return ka;
}

/* ---- fork ---------------------------------------------------------------- */

static void *first_socket(void *arg) {
    (void)arg;
    while (!atomic_load(&go)) {
    }
    atomic_store(&inside, 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    atomic_store(&done, 1);
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* One run: prints "overlapped hung" to `out`; exit 0. */
static int trial_fork(FILE *out) {
    pthread_t t;
    if (pthread_create(&t, NULL, first_socket, NULL) != 0)
        return 1;
    atomic_store(&go, 1);
    while (!atomic_load(&inside)) {
    }
    pid_t kids[MAX_CHILDREN];
    int n = 0, overlapped = 0;
    while (n < MAX_CHILDREN) {
        int during = !atomic_load(&done);
        pid_t p = fork();
        if (p == 0) {
            int ka = listener_configured();
            _exit(ka == 1 ? 0 : ka == 0 ? 3 : 2);
        }
        if (p < 0)
            break;
        kids[n++] = p;
        overlapped += during;
        if (atomic_load(&done))
            break;
    }
    long long deadline = now_ms() + BOUND_MS;
    int hung = 0, unconfigured = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        int st = wait_until(kids[i], deadline);
        if (st < 0)
            hung++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
            unconfigured++;
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed++;
    }
    pthread_join(t, NULL);
    fprintf(out, "%d %d %d\n", overlapped, hung, unconfigured);
    return failed ? 1 : 0;
}

/* ---- signal -------------------------------------------------------------- */

static atomic_int handled_during, handler_unconfigured, handler_failed;

static void on_alarm(int sig) {
    (void)sig;
    if (!atomic_load(&go))
        return;
    int e = errno;
    int during = !atomic_load(&done);
    int ka = listener_configured();
    if (during)
        atomic_fetch_add(&handled_during, 1);
    if (ka == 0)
        atomic_fetch_add(&handler_unconfigured, 1);
    else if (ka < 0)
        atomic_fetch_add(&handler_failed, 1);
    errno = e;
}

/* One SIGALRM, `delay_us` after the main thread starts the first socket()
 * call (run i of the driver uses 1 + 7i mod 97 us, spread over the time
 * the first call took before the fix). */
static int trial_signal(FILE *out, int delay_us) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return 1;
    struct itimerval it = {{0, 0}, {0, delay_us}}, off = {{0, 0}, {0, 0}};
    if (setitimer(ITIMER_REAL, &it, NULL) != 0)
        return 1;
    atomic_store(&go, 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    atomic_store(&done, 1);
    setitimer(ITIMER_REAL, &off, NULL);
    if (fd < 0)
        return 1;
    close(fd);
    /* Let the signal come if the call was shorter than the delay. */
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
    fprintf(out, "%d 0 %d\n", atomic_load(&handled_during), atomic_load(&handler_unconfigured));
    return atomic_load(&handler_failed) ? 1 : 0;
}

/* ---- the driver ---------------------------------------------------------- */

static int drive(const char *self, const char *mode, int runs) {
    char trial[32], delay[16];
    snprintf(trial, sizeof trial, "trial-%s", mode);
    int stuck = 0, failed = 0, overlapped = 0, unconfigured = 0;
    for (int i = 0; i < runs; i++) {
        int p[2];
        if (pipe(p) != 0)
            return 1;
        snprintf(delay, sizeof delay, "%d", 1 + 7 * i % 97);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 3);
            execl(self, self, trial, delay, (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        /* The child of a fork run must finish within BOUND_MS after the
         * run forked it, so the run gets twice that. */
        int st = wait_until(pid, now_ms() + 2 * BOUND_MS);
        char buf[64] = {0};
        ssize_t n = read(p[0], buf, sizeof buf - 1);
        close(p[0]);
        int ov = 0, hung = 0, unconf = 0;
        if (st < 0) {
            stuck++;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || n <= 0 ||
                   sscanf(buf, "%d %d %d", &ov, &hung, &unconf) != 3) {
            failed++;
        } else {
            overlapped += ov;
            stuck += hung > 0;
            unconfigured += unconf > 0;
        }
    }
    const char *what = strcmp(mode, "fork") == 0
                           ? "children forked while the first socket() was in progress"
                           : "handler runs during the first socket()";
    if (stuck == 0 && failed == 0 && unconfigured == 0)
        printf("ok - %s: %d runs, all finished within %d ms, every listener configured (%d %s)\n",
               mode, runs, BOUND_MS, overlapped, what);
    else
        printf("not ok - %s: %d of %d runs did not finish within %d ms, %d had a listener left "
               "unconfigured, %d failed otherwise (%d %s)\n",
               mode, stuck, runs, BOUND_MS, unconfigured, failed, overlapped, what);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && (strcmp(argv[1], "trial-fork") == 0 || strcmp(argv[1], "trial-signal") == 0)) {
        /* The driver kills a run that takes longer than its bound. */
        FILE *out = fdopen(3, "w");
        if (!out)
            return 1;
        int rc = strcmp(argv[1], "trial-fork") == 0 ? trial_fork(out)
                                                     : trial_signal(out, atoi(argv[2]));
        fclose(out);
        return rc;
    }
    if (argc == 3 && (strcmp(argv[1], "fork") == 0 || strcmp(argv[1], "signal") == 0))
        return drive("/proc/self/exe", argv[1], atoi(argv[2]));
    fprintf(stderr, "usage: preload_initrace fork|signal RUNS\n");
    return 2;
}
