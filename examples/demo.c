/* libheartbeat demo (make demo): a dead peer being found, twice.
 *
 *   1. TCP keepalive on a loopback connection: what a new socket does, what
 *      heartbeat() and heartbeat_apply() make of it, and a deliberate error.
 *   2. A peer process that hangs (SIGSTOP): its kernel still acknowledges
 *      everything, so TCP sees nothing wrong, but the monitor, which pings
 *      it, reports it dead after its timeout; then the peer is killed and
 *      the connection's heartbeat_status() goes from alive to closed.
 *
 * Unprivileged, a few seconds, and every process it starts is ended. Exits
 * 0 only if everything happened as printed.
 *
 *   cc demo.c $(pkg-config --cflags --libs heartbeat) -o demo   (installed copy)
 */
#include <heartbeat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { INTERVAL_MS = 200, TIMEOUT_MS = 1000, STOP_AT_MS = 600 };

static const char *const PEER[] = {"alive", "probing", "closed", "reset", "timed out", "not connected"};

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static const char *peer_state(int fd)
{
    struct heartbeat_status st;
    if (heartbeat_status(fd, &st) != HEARTBEAT_OK)
        return "?";
    return st.peer >= 0 && st.peer <= 5 ? PEER[st.peer] : "?";
}

static void show(const char *what, const struct heartbeat_config *c)
{
    char settings[64], verdict[64];
    snprintf(settings, sizeof settings, "keepalive %-3s idle %4d s, intvl %2d s, cnt %d", c->enabled ? "on" : "off",
             c->idle, c->intvl, c->cnt);
    if (c->enabled)
        snprintf(verdict, sizeof verdict, "a vanished peer is found after %u s",
                 heartbeat_deadline_ms(c->idle, c->intvl, c->cnt) / 1000);
    else
        snprintf(verdict, sizeof verdict, "a vanished peer is never found");
    printf("  %-26s %-46s %s\n", what, settings, verdict);
}

/* A connected loopback pair: *c the client end, *s the server end. */
static int loopback_pair(int *c, int *s)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *c = *s = -1;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0 || (*c = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        connect(*c, (struct sockaddr *)&a, sizeof a) != 0 || (*s = accept(l, NULL, NULL)) < 0) {
        perror("loopback connection");
        if (l >= 0)
            close(l);
        return -1;
    }
    close(l);
    return 0;
}

static int keepalive_part(void)
{
    struct heartbeat_config now;
    int c, s, r;

    printf("1. TCP keepalive on a loopback connection\n");
    if (loopback_pair(&c, &s) != 0)
        return 1;
    if (heartbeat_get(c, &now) != HEARTBEAT_OK) {
        perror("reading the settings");
        return 1;
    }
    show("a new socket", &now);
    r = heartbeat(c, 10, 5, 3);
    if (r != HEARTBEAT_OK || heartbeat_get(c, &now) != HEARTBEAT_OK) {
        fprintf(stderr, "heartbeat: %s (%s)\n", heartbeat_strerror(r), strerror(errno));
        return 1;
    }
    show("heartbeat(fd, 10, 5, 3)", &now);
    struct heartbeat_config cfg = {1, 2, 1, 3, 0};
    cfg.user_timeout_ms = heartbeat_deadline_ms(cfg.idle, cfg.intvl, cfg.cnt);
    r = heartbeat_apply(c, &cfg);
    if (r != HEARTBEAT_OK || heartbeat_get(c, &now) != HEARTBEAT_OK) {
        fprintf(stderr, "heartbeat_apply: %s (%s)\n", heartbeat_strerror(r), strerror(errno));
        return 1;
    }
    show("heartbeat_apply(fd, &cfg)", &now);
    char ut[32], after[64];
    snprintf(ut, sizeof ut, "user timeout %u ms", now.user_timeout_ms);
    snprintf(after, sizeof after, "unacknowledged data fails it after %u s", now.user_timeout_ms / 1000);
    printf("  %-26s %-46s %s\n", "", ut, after);
    errno = 0;
    r = heartbeat(c, 0, 5, 3);
    printf("  %-26s heartbeat(fd, 0, 5, 3) = %d, errno %s: idle 0 is out of range, nothing changed\n",
           "a deliberate error:", r, errno == EINVAL ? "EINVAL" : strerror(errno));
    printf("  %-26s heartbeat_strerror(%d): \"%s\"\n", "", r, heartbeat_strerror(r));
    close(c);
    close(s);
    return r == HEARTBEAT_ERR_IDLE ? 0 : 1;
}

/* The peer: answers every "PING\n" with "PONG\n" until the connection ends. */
static void peer_process(int fd)
{
    char buf[64];
    ssize_t n;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the demo */
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        for (ssize_t i = 0; i + 5 <= n; i += 5)
            if (send(fd, "PONG\n", 5, MSG_NOSIGNAL) != 5)
                _exit(1);
    _exit(0);
}

static atomic_long dead_at_ms;  /* set by the dead callback, 0 until then */
static atomic_int dead_reason;

static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int error, void *user)
{
    (void)m, (void)fd, (void)error, (void)user;
    atomic_store(&dead_reason, reason);
    atomic_store(&dead_at_ms, now_ms());
}

static int monitor_part(void)
{
    struct heartbeat_monitor_options o;
    struct heartbeat_monitor *m;
    long t0, last_pong = 0, stopped_at = 0;
    int c, s, code, ok = 1;
    pid_t pid;

    printf("\n2. A peer process that hangs: the monitor pings it every %d ms and gives up after %d ms of\n"
           "   silence; heartbeat_status() shows what TCP knows\n",
           INTERVAL_MS, TIMEOUT_MS);
    if (loopback_pair(&c, &s) != 0)
        return 1;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(c);
        peer_process(s);
    }
    close(s); /* the peer process holds the only copy of its end */

    memset(&o, 0, sizeof o);
    o.interval_ms = INTERVAL_MS;
    o.timeout_ms = TIMEOUT_MS;
    o.ping_data = "PING\n";
    o.ping_len = 5;
    o.dead_cb = on_dead;
    m = heartbeat_monitor_new(&o, &code);
    if (m == NULL || heartbeat_monitor_watch(m, c) != HEARTBEAT_OK) {
        fprintf(stderr, "monitor: %s (%s)\n", heartbeat_strerror(code), strerror(errno));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 1;
    }
    t0 = now_ms();
    printf("  %7s  %-46s %s\n", "time", "what happened", "heartbeat_status()");
    printf("  %4ld ms  %-46s %s\n", 0L, "peer process answers every ping", peer_state(c));

    /* Read pongs until the monitor gives up (bounded: timeout + 2 s). */
    while (atomic_load(&dead_at_ms) == 0 && now_ms() - t0 < STOP_AT_MS + TIMEOUT_MS + 2000) {
        struct pollfd p = {c, POLLIN, 0};
        char buf[256];
        if (stopped_at == 0 && now_ms() - t0 >= STOP_AT_MS) {
            kill(pid, SIGSTOP);
            stopped_at = now_ms();
            printf("  %4ld ms  %-46s %s\n", stopped_at - t0, "peer process stopped with SIGSTOP", peer_state(c));
            printf("  %7s  %s\n", "", "(its kernel still acknowledges: TCP sees");
            printf("  %7s  %s\n", "", " nothing wrong, keepalive would not either)");
        }
        if (poll(&p, 1, 10) == 1 && recv(c, buf, sizeof buf, MSG_DONTWAIT) > 0) {
            heartbeat_monitor_alive(m, c);
            last_pong = now_ms();
        }
    }
    long dead = atomic_load(&dead_at_ms);
    if (dead == 0 || atomic_load(&dead_reason) != HEARTBEAT_DEAD_SILENCE) {
        printf("  the monitor did not report the peer dead\n");
        ok = 0;
    } else {
        char what[96];
        snprintf(what, sizeof what, "monitor: peer dead (silence), %ld ms after", dead - last_pong);
        printf("  %4ld ms  %-46s %s\n", dead - t0, what, peer_state(c));
        printf("  %7s  %s\n", "", "its last pong (the timeout is 1000 ms)");
        ok = dead - last_pong >= TIMEOUT_MS && dead - last_pong < TIMEOUT_MS + 500;
    }

    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    long killed = now_ms();
    const char *state = peer_state(c);
    while (strcmp(state, "closed") != 0 && now_ms() - killed < 1000) {
        usleep(1000);
        state = peer_state(c);
    }
    printf("  %4ld ms  %-46s %s\n", now_ms() - t0, "peer process killed (SIGKILL): its kernel", state);
    printf("  %7s  %s\n", "", "closed the connection (FIN)");
    ok = ok && strcmp(state, "closed") == 0;

    heartbeat_monitor_free(m);
    close(c);
    return ok ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("libheartbeat %s demo: finding a dead peer\n\n", heartbeat_version());
    int rc = keepalive_part();
    rc |= monitor_part();
    printf("\n%s\n", rc == 0 ? "demo: everything happened as shown" : "demo: FAILED, something did not happen as shown");
    return rc;
}
