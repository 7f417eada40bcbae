/* Heartbeat monitor example without a thread, server side: one epoll loop
 * that answers every "PING\n" with "PONG\n" and uses a thread-free monitor
 * (heartbeat_monitor_new_loop) without pings of its own, as a pure silence
 * detector: a client that sends nothing for 1.5 s is dead, and its
 * connection is closed. Because the dead callback runs inside
 * heartbeat_monitor_process(), in this loop, it closes the connection
 * itself: no pipe back to the loop, no lock (compare monitor_server.c,
 * whose monitor has a thread).
 *
 * Usage: monitor_epoll_server ADDR PORT SECONDS
 * Exit status: 0 if it answered pings, 1 if not, 2 on a setup error. */
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

static int ep;      /* the loop's epoll set */
static int deaths;

/* Runs inside heartbeat_monitor_process(), on the loop's thread. */
static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)reason, (void)err, (void)user;
    fprintf(stderr, "server: client on fd %d went silent, closing\n", fd);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd); /* no longer watched: ours to close, here and now */
    deaths++;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDR PORT SECONDS\n", argv[0]);
        return 2;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
        fprintf(stderr, "server: bad address %s\n", argv[1]);
        return 2;
    }
    int one = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 16) != 0) {
        perror("server");
        return 2;
    }
    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 500; /* unused without pings, but must be > 0 */
    o.timeout_ms = 1500; /* silent for 1.5 s: dead */
    o.dead_cb = on_dead; /* no ping_data, no ping_cb: clients ping us */
    int code;
    struct heartbeat_monitor *m = heartbeat_monitor_new_loop(&o, &code);
    if (m == NULL) {
        fprintf(stderr, "server: %s\n", heartbeat_strerror(code));
        return 2;
    }
    int mfd = heartbeat_monitor_fd(m);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = l;
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    ev.data.fd = mfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, mfd, &ev);

    int pings = 0;
    time_t end = time(NULL) + atoi(argv[3]);
    while (time(NULL) < end) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == mfd) {
                heartbeat_monitor_process(m); /* may close silent clients */
            } else if (fd == l) {
                int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                    continue;
                ev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                heartbeat_monitor_watch(m, c);
            } else {
                char buf[512];
                ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                    /* Client closed: stop watching, then close. (If its death
                     * was reported earlier in this same batch of events, the
                     * callback already closed it and epoll_ctl fails: fine.) */
                    if (heartbeat_monitor_unwatch(m, fd) == HEARTBEAT_OK) {
                        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                        close(fd);
                    }
                    continue;
                }
                if (got < 0)
                    continue;
                heartbeat_monitor_alive(m, fd);
                for (ssize_t k = 0; k + 5 <= got; k += 5)
                    if (memcmp(buf + k, "PING\n", 5) == 0) {
                        pings++;
                        send(fd, "PONG\n", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
                    }
            }
        }
    }
    printf("server: answered %d pings, %d silent clients closed\n", pings, deaths);
    epoll_ctl(ep, EPOLL_CTL_DEL, mfd, NULL);
    heartbeat_monitor_free(m); /* closes mfd; no callback runs after this */
    close(ep);
    return pings > 0 ? 0 : 1;
}
