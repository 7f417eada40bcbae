/* Heartbeat monitor example without a thread, client side: one epoll loop
 * that connects to monitor_epoll_server, lets the monitor send "PING\n"
 * every 200 ms and reports "alive" for every "PONG\n" it reads. The monitor
 * (heartbeat_monitor_new_loop) has no thread: its fd sits in the same epoll
 * set as the socket, and heartbeat_monitor_process() runs the pings and the
 * dead callback right here, in the loop. If the server stops answering for
 * 1 s, the dead callback says so.
 *
 * Usage: monitor_epoll_client ADDR PORT SECONDS
 * Exit status: 0 if pongs came back and the server never died, 1 if it died
 * (or the connection broke), 2 on a usage or setup error. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"

static int server_dead;

/* Runs inside heartbeat_monitor_process(), on the loop's thread: no lock
 * needed. The fd is no longer watched; closing it is ours to do (main does,
 * when it sees the flag). */
static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)user;
    if (reason == HEARTBEAT_DEAD_SILENCE)
        fprintf(stderr, "client: server on fd %d is dead (silence)\n", fd);
    else
        fprintf(stderr, "client: server on fd %d is dead (ping failed: %s)\n", fd, strerror(err));
    server_dead = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDR PORT SECONDS\n", argv[0]);
        return 2;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
        fprintf(stderr, "client: bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("client: connect");
        return 2;
    }

    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 200;    /* a ping every 200 ms */
    o.timeout_ms = 1000;    /* dead after 1 s without a pong */
    o.ping_data = "PING\n"; /* sent by heartbeat_monitor_process(), in this loop */
    o.ping_len = 5;
    o.dead_cb = on_dead;
    int code;
    struct heartbeat_monitor *m = heartbeat_monitor_new_loop(&o, &code);
    if (m == NULL) {
        fprintf(stderr, "client: %s\n", heartbeat_strerror(code));
        return 2;
    }
    heartbeat_monitor_watch(m, fd);

    /* One epoll set: the connection and the monitor's fd. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    ev.data.fd = heartbeat_monitor_fd(m);
    epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev);

    int pongs = 0, broken = 0;
    time_t end = time(NULL) + atoi(argv[3]);
    char buf[512];
    while (time(NULL) < end && !server_dead && !broken) {
        struct epoll_event out[2];
        int n = epoll_wait(ep, out, 2, 100);
        for (int i = 0; i < n; i++) {
            if (out[i].data.fd == fd) {
                ssize_t got = recv(fd, buf, sizeof buf, 0);
                if (got <= 0) {
                    broken = 1;
                    break;
                }
                for (ssize_t k = 0; k + 5 <= got; k += 5)
                    pongs += memcmp(buf + k, "PONG\n", 5) == 0;
                heartbeat_monitor_alive(m, fd); /* we heard from the server */
            } else {
                /* Something is due: pings go out, deaths are reported. */
                heartbeat_monitor_process(m);
            }
        }
    }
    unsigned long ms = 0;
    if (heartbeat_monitor_last_heard_ms(m, fd, &ms) == HEARTBEAT_OK)
        printf("client: %d pongs, server last heard %lu ms ago, %s\n", pongs, ms,
               broken ? "connection closed" : "server alive");
    else
        printf("client: %d pongs, server dead\n", pongs);
    heartbeat_monitor_unwatch(m, fd);
    epoll_ctl(ep, EPOLL_CTL_DEL, heartbeat_monitor_fd(m), NULL);
    heartbeat_monitor_free(m); /* closes the monitor's fd */
    close(ep);
    close(fd);
    return pongs > 0 && !server_dead && !broken ? 0 : 1;
}
