/* Heartbeat monitor example, client side: connects to monitor_server, lets
 * the monitor send "PING\n" every 200 ms and reports "alive" for every
 * "PONG\n" read. If the server stops answering for 1 s, the dead callback
 * says so. Usage: monitor_client ADDR PORT SECONDS (exit 0 if pongs came
 * back and the server never died). */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"

static atomic_int server_dead;

/* Runs on the monitor thread. The fd is no longer watched; closing it is
 * ours to do (here the main loop does it when it sees the flag). */
static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int err, void *user)
{
    (void)m, (void)user;
    if (reason == HEARTBEAT_DEAD_SILENCE)
        fprintf(stderr, "client: server on fd %d is dead (silence)\n", fd);
    else
        fprintf(stderr, "client: server on fd %d is dead (ping failed: %s)\n", fd, strerror(err));
    atomic_store(&server_dead, 1);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDR PORT SECONDS\n", argv[0]);
        return 2;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("client: connect");
        return 1;
    }

    struct heartbeat_monitor_options o;
    memset(&o, 0, sizeof o);
    o.interval_ms = 200;        /* a ping every 200 ms */
    o.timeout_ms = 1000;        /* dead after 1 s without a pong */
    o.ping_data = "PING\n";     /* sent by the monitor thread itself */
    o.ping_len = 5;
    o.dead_cb = on_dead;
    int code;
    struct heartbeat_monitor *m = heartbeat_monitor_new(&o, &code);
    if (m == NULL) {
        fprintf(stderr, "client: %s\n", heartbeat_strerror(code));
        return 1;
    }
    heartbeat_monitor_watch(m, fd);

    int pongs = 0;
    time_t end = time(NULL) + atoi(argv[3]);
    char buf[512];
    while (time(NULL) < end && !atomic_load(&server_dead)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i + 5 <= n; i += 5)
            pongs += memcmp(buf + i, "PONG\n", 5) == 0;
        heartbeat_monitor_alive(m, fd); /* we heard from the server */
    }
    unsigned long ms = 0;
    /* After a death the fd is no longer watched: nothing to report then. */
    if (heartbeat_monitor_last_heard_ms(m, fd, &ms) == HEARTBEAT_OK)
        printf("client: %d pongs, server last heard %lu ms ago, server alive\n", pongs, ms);
    else
        printf("client: %d pongs, %s\n", pongs,
               atomic_load(&server_dead) ? "server dead" : "connection ended");
    heartbeat_monitor_unwatch(m, fd); /* after this, nothing touches fd */
    close(fd);
    heartbeat_monitor_free(m);
    return pongs > 0 && !atomic_load(&server_dead) ? 0 : 1;
}
