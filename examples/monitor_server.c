/* Heartbeat monitor example, server side: answers every "PING\n" with
 * "PONG\n", and uses the monitor without pings of its own (pure silence
 * detection): a client that sends nothing for 1.5 s is dead, and its
 * connection is closed. Usage: monitor_server ADDR PORT SECONDS. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"

static int dead_pipe[2]; /* the dead callback hands fds to the main loop */

static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    /* Runs on the monitor thread: do the closing in the event loop. */
    if (write(dead_pipe[1], &fd, sizeof fd) != sizeof fd)
        perror("server: write");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDR PORT SECONDS\n", argv[0]);
        return 2;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 16) != 0 ||
        pipe(dead_pipe) != 0) {
        perror("server");
        return 1;
    }
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 500;  /* unused without pings, but must be > 0 */
    o.timeout_ms = 1500;  /* silent for 1.5 s: dead */
    o.dead_cb = on_dead;  /* no ping_data, no ping_cb: clients ping us */
    int code;
    struct heartbeat_monitor *m = heartbeat_monitor_new(&o, &code);
    if (m == NULL) {
        fprintf(stderr, "server: %s\n", heartbeat_strerror(code));
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = l;
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    ev.data.fd = dead_pipe[0];
    epoll_ctl(ep, EPOLL_CTL_ADD, dead_pipe[0], &ev);

    int pings = 0, deaths = 0;
    time_t end = time(NULL) + atoi(argv[3]);
    while (time(NULL) < end) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) {
                int c = accept(l, NULL, NULL);
                if (c < 0)
                    continue;
                ev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                heartbeat_monitor_watch(m, c);
            } else if (fd == dead_pipe[0]) {
                int d;
                if (read(dead_pipe[0], &d, sizeof d) == sizeof d) {
                    fprintf(stderr, "server: client on fd %d went silent, closing\n", d);
                    epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL);
                    close(d);
                    deaths++;
                }
            } else {
                char buf[512];
                ssize_t got = recv(fd, buf, sizeof buf, 0);
                if (got <= 0) { /* client closed: stop watching, then close */
                    heartbeat_monitor_unwatch(m, fd);
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    continue;
                }
                heartbeat_monitor_alive(m, fd);
                for (ssize_t k = 0; k + 5 <= got; k += 5)
                    if (memcmp(buf + k, "PING\n", 5) == 0) {
                        pings++;
                        send(fd, "PONG\n", 5, MSG_NOSIGNAL);
                    }
            }
        }
    }
    printf("server: answered %d pings, %d silent clients closed\n", pings, deaths);
    heartbeat_monitor_free(m); /* no callback runs after this */
    return pings > 0 ? 0 : 1;
}
