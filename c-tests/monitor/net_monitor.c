/* Network-namespace test of the heartbeat monitor (run by
 * c-tests/monitor/net_monitor.sh inside namespaces made with c-tests/lib/netns.sh).
 *
 *   net_monitor server ADDR PORT      echo server (one connection, exits on
 *                                     EOF or after 60 s)
 *   net_monitor client ADDR PORT CUT  connects, enables TCP keepalive with a
 *                                     long idle (60 s), watches the connection
 *                                     with the monitor (interval 200 ms,
 *                                     timeout 1000 ms, ping bytes, echoed),
 *                                     then runs the shell command CUT (cuts
 *                                     the link) and checks that the monitor
 *                                     reports the death within its window
 *                                     while keepalive has not noticed.
 * Prints "ok - ..." / "not ok - ..." lines. Every wait is bounded. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"
#include "heartbeat.h"
#include "testutil.h"

#define INTERVAL_MS 200
#define TIMEOUT_MS 1000



static int addr_of(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((unsigned short)port);
        *len = sizeof *a4;
        return AF_INET;
    }
    if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((unsigned short)port);
        *len = sizeof *a6;
        return AF_INET6;
    }
    return -1;
}

static int server(const char *ip, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = addr_of(ip, port, &ss, &len);
    alarm(60);
    int l = socket(fam, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 4) != 0) {
        perror("server");
        return 2;
    }
    int c = accept(l, NULL, NULL);
    char buf[4096];
    ssize_t n;
    while (c >= 0 && (n = recv(c, buf, sizeof buf, 0)) > 0)
        if (send(c, buf, (size_t)n, MSG_NOSIGNAL) < 0)
            break;
    return 0;
}

static atomic_int deaths, death_reason;
static atomic_llong death_at, last_alive;
static atomic_int ka_error_at_death = -1, ka_state_at_death = -1;
static atomic_int stop;
static struct heartbeat_monitor *M;
static int FD = -1;

static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)err, (void)user;
    atomic_store(&death_at, now_ns());
    /* What TCP keepalive knows at this moment. */
    int soerr = -1;
    socklen_t l = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
    struct tcp_info ti;
    l = sizeof ti;
    memset(&ti, 0, sizeof ti);
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l);
    atomic_store(&ka_error_at_death, soerr);
    atomic_store(&ka_state_at_death, ti.tcpi_state);
    atomic_store(&death_reason, reason);
    atomic_fetch_add(&deaths, 1);
}

static void *reader(void *arg)
{
    (void)arg;
    char buf[256];
    while (!atomic_load(&stop)) {
        ssize_t n = recv(FD, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            if (heartbeat_monitor_alive(M, FD) == HEARTBEAT_OK)
                atomic_store(&last_alive, now_ns());
        } else if (n == 0) {
            break;
        } else {
            sleep_ms(2);
        }
    }
    return NULL;
}

static int client(const char *ip, int port, const char *cut)
{
    int rc = 1;
    pthread_t th;
    int started = 0;
    struct sockaddr_storage ss;
    socklen_t len;
    int fam = addr_of(ip, port, &ss, &len);
    alarm(30);
    for (int i = 0; i < 100; i++) { /* the server may still be starting */
        FD = socket(fam, SOCK_STREAM, 0);
        if (FD >= 0 && connect(FD, (struct sockaddr *)&ss, len) == 0)
            break;
        close(FD);
        FD = -1;
        sleep_ms(20);
    }
    CHECK(FD >= 0);
    printf("ok - connected\n");
    /* Keepalive with a long idle: it will not notice within the test. */
    CHECK_EQ(heartbeat(FD, 60, 1, 3), HEARTBEAT_OK);
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = INTERVAL_MS;
    o.timeout_ms = TIMEOUT_MS;
    o.ping_data = "ping";
    o.ping_len = 4;
    o.dead_cb = on_dead;
    M = heartbeat_monitor_new(&o, NULL);
    CHECK(M != NULL);
    atomic_store(&last_alive, now_ns());
    CHECK_EQ(heartbeat_monitor_watch(M, FD), HEARTBEAT_OK);
    CHECK(pthread_create(&th, NULL, reader, NULL) == 0);
    started = 1;
    sleep_ms(2000);
    CHECK_EQ(atomic_load(&deaths), 0);
    unsigned long ms = 0;
    CHECK_EQ(heartbeat_monitor_last_heard_ms(M, FD, &ms), HEARTBEAT_OK);
    CHECK(ms < INTERVAL_MS + 50);
    printf("ok - no death while the peer answers (last heard %lu ms ago)\n", ms);
    long long t_cut = now_ns();
    CHECK(system(cut) == 0);
    long long end = now_ns() + 4000000000LL;
    while (atomic_load(&deaths) == 0 && now_ns() < end)
        sleep_ms(1);
    CHECK_EQ(atomic_load(&deaths), 1);
    CHECK_EQ(atomic_load(&death_reason), HEARTBEAT_DEAD_SILENCE);
    double after_cut = (atomic_load(&death_at) - t_cut) / 1e6;
    double late = (atomic_load(&death_at) - atomic_load(&last_alive)) / 1e6 - TIMEOUT_MS;
    printf("# death %.1f ms after the cut, %.2f ms after last heard + timeout\n", after_cut,
           late);
    CHECK(late >= -1.0 && late <= 20.0);
    CHECK(after_cut <= TIMEOUT_MS + 20.0);
    printf("ok - monitor reported the cut link within its window\n");
    /* Keepalive (idle 60 s) had not noticed: no error, still established. */
    CHECK_EQ(atomic_load(&ka_error_at_death), 0);
    CHECK_EQ(atomic_load(&ka_state_at_death), TCP_ESTABLISHED);
    printf("ok - keepalive with a 60 s idle had not noticed (SO_ERROR 0, ESTABLISHED)\n");
    sleep_ms(500);
    CHECK_EQ(atomic_load(&deaths), 1);
    printf("ok - reported once\n");
    rc = 0;
cleanup:
    atomic_store(&stop, 1);
    if (started)
        pthread_join(th, NULL);
    heartbeat_monitor_free(M);
    if (FD >= 0)
        close(FD);
    if (rc)
        printf("not ok - net_monitor client\n");
    return rc;
}

int main(int argc, char **argv)
{
    (void)check_failures_;
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "server") == 0)
        return server(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return client(argv[2], atoi(argv[3]), argv[4]);
    fprintf(stderr, "usage: %s server ADDR PORT | client ADDR PORT CUTCMD\n", argv[0]);
    return 2;
}
