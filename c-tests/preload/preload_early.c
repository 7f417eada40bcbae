/* Prints what the constructor of preload_early_lib.so saw (its calls ran
 * before libheartbeat_preload.so's constructor), then does the same in
 * main(): "early listen=RC keepalive=K handler=H" (H: -1 no signal asked
 * for, 0 none came, 1 after the first socket() returned, 2 during it) and
 * "main listen=RC keepalive=K". */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern int early_listen_rc, early_keepalive, early_handler;

int main(void) {
    printf("early listen=%d keepalive=%d handler=%d\n", early_listen_rc, early_keepalive,
           early_handler);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 ? listen(fd, 1) : -3;
    int ka = -2;
    socklen_t len = sizeof ka;
    getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &len);
    printf("main listen=%d keepalive=%d\n", rc, ka);
    close(fd);
    return 0;
}
