/* Heartbeat monitor in a libuv loop (the event loop of Node.js and many C
 * servers): the thread-free monitor's fd goes into a uv_poll_t, whose
 * callback calls heartbeat_monitor_process(); pings go out and dead peers
 * are reported inside the loop, on its thread, with no thread of the
 * library's.
 *
 * The program is self-contained: one loop holds a TCP server on
 * 127.0.0.1 (a port the system picks) that answers "PING\n" with "PONG\n"
 * and goes silent after SILENT_AFTER_MS (it keeps the connection open and
 * reads, but answers nothing: a hung peer), and a client connected to it,
 * watched by the monitor (a ping every 100 ms, dead after 500 ms without a
 * pong). The client reports the pongs with heartbeat_monitor_alive().
 *
 * It checks that the silent peer is reported on the loop's thread, within
 * its window: at least timeout_ms (500 ms) after the last pong, and at most
 * timeout_ms + one interval + a tolerance for a loaded machine (the death
 * rule of docs/monitor.md: the first unanswered ping may come up to one
 * interval after the last pong), and that no death came while pongs
 * flowed.
 *
 * Usage: monitor_uv [SILENT_AFTER_MS]   (default 1000)
 * Exit status: 0 if the death came in its window, 1 otherwise. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "heartbeat.h"

#define INTERVAL_MS 100
#define TIMEOUT_MS 500
#define TOLERANCE_MS 150 /* wake-up latency of a busy 2-core machine */

static uv_loop_t *loop;
static struct heartbeat_monitor *mon;
static uv_tcp_t server, client, peer; /* peer: the server's end */
static uv_poll_t mon_poll;
static uv_timer_t silence, guard;
static uv_os_fd_t client_fd = -1;
static int peer_silent, pongs, result = 1;
static double last_pong_ms, start_ms, silent_at_ms;
static pthread_t loop_thread;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    static char mem[4096];
    (void)h, (void)size;
    *buf = uv_buf_init(mem, sizeof mem);
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

/* The peer: answers pings until it goes silent. */
static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        uv_close((uv_handle_t *)s, NULL);
        return;
    }
    for (ssize_t k = 0; k + 5 <= n && !peer_silent; k += 5) {
        if (memcmp(buf->base + k, "PING\n", 5) != 0)
            continue;
        uv_write_t *w = malloc(sizeof *w);
        uv_buf_t pong = uv_buf_init("PONG\n", 5);
        if (w)
            uv_write(w, s, &pong, 1, write_done);
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    uv_tcp_init(loop, &peer);
    if (uv_accept(srv, (uv_stream_t *)&peer) == 0)
        uv_read_start((uv_stream_t *)&peer, alloc_cb, peer_read);
}

/* The client: every pong is news from the peer. */
static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    if (n <= 0)
        return;
    for (ssize_t k = 0; k + 5 <= n; k += 5)
        if (memcmp(buf->base + k, "PONG\n", 5) == 0) {
            pongs++;
            last_pong_ms = now_ms();
        }
    heartbeat_monitor_alive(mon, client_fd);
}

static void stop_all(void)
{
    uv_poll_stop(&mon_poll); /* before free(), which closes the fd */
    uv_timer_stop(&guard);
    uv_timer_stop(&silence);
    uv_read_stop((uv_stream_t *)&client);
    uv_stop(loop);
}

/* Runs inside heartbeat_monitor_process(), inside the uv_poll_t callback. */
static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)user;
    double at = now_ms();
    double silent_for = at - (last_pong_ms > 0 ? last_pong_ms : start_ms);
    int on_loop = pthread_equal(pthread_self(), loop_thread);
    printf("uv: peer on fd %d dead (%s%s) %.1f ms after its last pong, %.1f ms after it went "
           "silent; %d pongs before; on the loop's thread: %s\n",
           fd, reason == HEARTBEAT_DEAD_SILENCE ? "silence" : "send failed: ",
           reason == HEARTBEAT_DEAD_SILENCE ? "" : strerror(err), silent_for, at - silent_at_ms,
           pongs, on_loop ? "yes" : "NO");
    int in_window = reason == HEARTBEAT_DEAD_SILENCE && peer_silent && silent_for >= TIMEOUT_MS - 1 &&
                    silent_for <= TIMEOUT_MS + INTERVAL_MS + TOLERANCE_MS;
    if (!peer_silent)
        printf("uv: FAIL: declared dead while the peer was answering\n");
    else if (!in_window)
        printf("uv: FAIL: outside the window [%d, %d] ms\n", TIMEOUT_MS,
               TIMEOUT_MS + INTERVAL_MS + TOLERANCE_MS);
    result = in_window && on_loop && pongs > 0 ? 0 : 1;
    stop_all();
}

/* The monitor's fd is readable: something is due. */
static void on_monitor(uv_poll_t *p, int status, int events)
{
    (void)p, (void)events;
    if (status == 0)
        heartbeat_monitor_process(mon);
}

static void go_silent(uv_timer_t *t)
{
    (void)t;
    peer_silent = 1;
    silent_at_ms = now_ms();
}

static void give_up(uv_timer_t *t)
{
    (void)t;
    printf("uv: FAIL: no death reported\n");
    result = 1;
    stop_all();
}

static void connected(uv_connect_t *req, int status)
{
    (void)req;
    if (status < 0 || uv_fileno((uv_handle_t *)&client, &client_fd) != 0) {
        fprintf(stderr, "uv: connect: %s\n", uv_strerror(status));
        stop_all();
        return;
    }
    uv_read_start((uv_stream_t *)&client, alloc_cb, client_read);
    start_ms = now_ms();
    heartbeat_monitor_watch(mon, client_fd);
}

int main(int argc, char **argv)
{
    long silent_after = argc > 1 ? atol(argv[1]) : 1000;
    loop = uv_default_loop();
    loop_thread = pthread_self();

    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = INTERVAL_MS;
    o.timeout_ms = TIMEOUT_MS;
    o.ping_data = "PING\n"; /* sent inside heartbeat_monitor_process() */
    o.ping_len = 5;
    o.dead_cb = on_dead;
    int code;
    mon = heartbeat_monitor_new_loop(&o, &code);
    if (!mon) {
        fprintf(stderr, "uv: %s\n", heartbeat_strerror(code));
        return 1;
    }
    uv_poll_init(loop, &mon_poll, heartbeat_monitor_fd(mon));
    uv_poll_start(&mon_poll, UV_READABLE, on_monitor);

    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &server);
    uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (uv_listen((uv_stream_t *)&server, 8, on_connection) != 0) {
        fprintf(stderr, "uv: listen failed\n");
        return 1;
    }
    int len = sizeof addr;
    uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
    uv_tcp_init(loop, &client);
    uv_connect_t req;
    uv_tcp_connect(&req, &client, (const struct sockaddr *)&addr, connected);

    uv_timer_init(loop, &silence);
    uv_timer_start(&silence, go_silent, (uint64_t)silent_after, 0);
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, give_up, (uint64_t)silent_after + 5000, 0);

    uv_run(loop, UV_RUN_DEFAULT);

    heartbeat_monitor_free(mon);
    uv_close((uv_handle_t *)&mon_poll, NULL);
    uv_close((uv_handle_t *)&client, NULL);
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&silence, NULL);
    uv_close((uv_handle_t *)&guard, NULL);
    if (!uv_is_closing((uv_handle_t *)&peer) && peer.type == UV_TCP)
        uv_close((uv_handle_t *)&peer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    printf("uv: %s\n", result == 0 ? "silent peer reported inside the loop, in its window"
                                   : "FAILED");
    return result;
}
