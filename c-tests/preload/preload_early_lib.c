/* A library whose constructor makes socket calls, for the preload suite:
 * a program linking it (preload_early) runs this constructor before
 * libheartbeat_preload.so's own (the dynamic loader initialises a preloaded
 * library after the libraries the program links), so the first of these
 * calls reaches the hooks before the library has read its settings, and
 * builds them itself. They must work, and configure the socket as later
 * calls would.
 *
 * With PRELOAD_EARLY_SIGNAL_US=D, a SIGALRM arrives D us after that first
 * socket() call starts, and its handler calls socket() too: if it lands
 * while the library is building its state, it must not wait for it. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int early_listen_rc = -2, early_keepalive = -2, early_handler = -1;
static volatile sig_atomic_t first_done, handler_ran;

static void on_alarm(int sig) {
    (void)sig;
    int e = errno;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0)
        close(fd);
    handler_ran = first_done ? 1 : 2; /* 2: during the first socket() */
    errno = e;
}

__attribute__((constructor)) static void early(void) {
    const char *d = getenv("PRELOAD_EARLY_SIGNAL_US");
    if (d) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = {{0, 0}, {0, atoi(d)}};
        setitimer(ITIMER_REAL, &it, NULL);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    first_done = 1;
    if (d) {
        struct timespec ts = {0, 200000};
        while (!handler_ran && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        early_handler = handler_ran;
    }
    if (fd < 0)
        return;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    early_listen_rc = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 ? listen(fd, 1) : -3;
    socklen_t len = sizeof early_keepalive;
    getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &early_keepalive, &len);
    close(fd);
}
