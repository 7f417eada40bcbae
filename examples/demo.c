/* libheartbeat demo: configure keepalive on a live loopback connection and
 * show what the kernel now holds for it.
 *
 *   make demo
 *   cc demo.c $(pkg-config --cflags --libs heartbeat) -o demo   (installed copy)
 */
#include <heartbeat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void show(const char *what, const struct heartbeat_config *c)
{
    printf("  %-22s keepalive=%d idle=%ds intvl=%ds cnt=%d user_timeout=%ums\n", what, c->enabled, c->idle,
           c->intvl, c->cnt, c->user_timeout_ms);
}

int main(void)
{
    int rc = 1, lfd = -1, cfd = -1, sfd = -1;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    printf("libheartbeat %s\n", heartbeat_version());
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0) {
        perror("listen");
        goto out;
    }
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof a) != 0 || (sfd = accept(lfd, NULL, NULL)) < 0) {
        perror("connect");
        goto out;
    }
    printf("connected 127.0.0.1:%d (fd %d)\n", ntohs(a.sin_port), cfd);

    struct heartbeat_config defaults, now;
    if (heartbeat_system_defaults(&defaults) == HEARTBEAT_OK)
        show("kernel defaults:", &defaults);
    printf("  a dead peer is noticed after %u s with the defaults\n",
           heartbeat_deadline_ms(defaults.idle, defaults.intvl, defaults.cnt) / 1000);

    /* The classic call, fixed: probe after 10 s idle, every 5 s, 3 probes. */
    int r = heartbeat(cfd, 10, 5, 3);
    if (r != HEARTBEAT_OK) {
        fprintf(stderr, "heartbeat: %s (%s)\n", heartbeat_strerror(r), strerror(errno));
        goto out;
    }
    heartbeat_get(cfd, &now);
    show("after heartbeat():", &now);

    /* All or nothing, with a user timeout on the same schedule. */
    struct heartbeat_config cfg = {1, 10, 5, 3, heartbeat_deadline_ms(10, 5, 3)};
    r = heartbeat_apply(cfd, &cfg);
    if (r != HEARTBEAT_OK) {
        fprintf(stderr, "heartbeat_apply: %s (%s)\n", heartbeat_strerror(r), strerror(errno));
        goto out;
    }
    heartbeat_get(cfd, &now);
    show("after heartbeat_apply():", &now);
    printf("  a dead peer is now noticed after %u ms\n", heartbeat_deadline_ms(now.idle, now.intvl, now.cnt));

    /* Where the connection stands, without reading any data. */
    static const char *const peer[] = {"alive", "probing", "closed", "reset", "timed out", "not connected"};
    struct heartbeat_status st;
    if (heartbeat_status(cfd, &st) == HEARTBEAT_OK)
        printf("heartbeat_status(): peer %s, %u unanswered probes, last data %u ms ago, rtt %u us\n",
               st.peer >= 0 && st.peer <= 5 ? peer[st.peer] : "?", st.probes, st.last_data_recv_ms, st.rtt_us);
    close(sfd); /* the peer closes normally */
    sfd = -1;
    usleep(20000);
    if (heartbeat_status(cfd, &st) == HEARTBEAT_OK)
        printf("after the peer closed:  peer %s\n", st.peer >= 0 && st.peer <= 5 ? peer[st.peer] : "?");

    /* Bad input is refused before any system call. */
    errno = 0;
    r = heartbeat(cfd, 0, 5, 3);
    printf("heartbeat(fd, 0, 5, 3) = %d: %s (errno: %s)\n", r, heartbeat_strerror(r), strerror(errno));
    rc = 0;
out:
    if (sfd >= 0)
        close(sfd);
    if (cfd >= 0)
        close(cfd);
    if (lfd >= 0)
        close(lfd);
    return rc;
}
