/* Issue 8, defect 1: the preload library's diagnostics never reach a
 * socket, never raise SIGPIPE, never change what the program does. A plain
 * program (no heartbeat.h); c-tests/preload/suite.sh runs its roles with
 * and without LD_PRELOAD=libheartbeat_preload.so:
 *
 *   preload_quiet client PORT [closefrom]
 *       Closes its stderr (with `closefrom`: makes one socket, then closes
 *       every fd from 3 up instead, as daemons do), so that its socket is
 *       fd 2 (or the number the library's log file had), connects to 127.0.0.1:PORT, sends
 *       PROGRAM_BYTES, and waits for the peer to close. Exit 0 if all of
 *       that worked.
 *   preload_quiet server PORTFILE
 *       Listens on 127.0.0.1 (port written to PORTFILE), then closes its
 *       stderr, so that the connection it accepts is fd 2, sends
 *       PROGRAM_BYTES on it and closes it. Exit 0 if that worked.
 *   preload_quiet sink PORTFILE       (run without the library)
 *       Accepts one connection and prints every byte it receives.
 *   preload_quiet peer PORT           (run without the library)
 *       Connects and prints every byte it receives.
 *   preload_quiet sigpipe pending|clear
 *       With SIGPIPE blocked (and, for `pending`, already pending, raised by
 *       the program itself), makes one socket call; prints whether SIGPIPE
 *       is pending afterwards. The library must neither leave its own
 *       SIGPIPE pending nor take the program's.
 *   preload_quiet fds OUTFILE
 *       Reports in OUTFILE whether fds 0, 1 and 2, closed when the program
 *       was started, are still closed when main() runs (a log file the
 *       library opened must not have taken them), and which fd its first
 *       socket gets.
 *
 * Every wait is bounded (SO_RCVTIMEO, alarm). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROGRAM_BYTES "the program's own bytes\n"

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    return a;
}

static void bound(int fd) {
    struct timeval tv = {10, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Sends the program's bytes on `fd`, then waits for the peer to close. */
static int talk(int fd) {
    bound(fd);
    size_t n = strlen(PROGRAM_BYTES);
    if (send(fd, PROGRAM_BYTES, n, MSG_NOSIGNAL) != (ssize_t)n)
        return 1;
    if (shutdown(fd, SHUT_WR) != 0)
        return 1;
    char buf[256];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    return r == 0 ? 0 : 1;
}

static int listener(const char *portfile) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0)
        return -1;
    /* Written to a temporary name, then renamed: readers never see half. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", ntohs(a.sin_port));
    if (fclose(f) != 0 || rename(tmp, portfile) != 0)
        return -1;
    return l;
}

/* Prints everything `fd` receives until the peer closes. */
static int dump(int fd) {
    bound(fd);
    char buf[4096];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf, 0)) > 0)
        fwrite(buf, 1, (size_t)r, stdout);
    return r == 0 ? 0 : 1;
}

static int client(int port, int closefrom) {
    if (closefrom) {
        /* A socket call first, while the library's log is still open. */
        int pre = socket(AF_INET, SOCK_STREAM, 0);
        if (pre < 0)
            return 1;
        syscall(SYS_close_range, 3U, ~0U, 0U);
    } else {
        close(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 1;
    struct sockaddr_in a = loopback(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return 1;
    return talk(fd);
}

static int server(const char *portfile) {
    int l = listener(portfile);
    if (l < 0)
        return 1;
    close(2);
    alarm(10);
    int fd = accept(l, NULL, NULL);
    if (fd < 0)
        return 1;
    return talk(fd);
}

static int sink(const char *portfile) {
    int l = listener(portfile);
    if (l < 0)
        return 1;
    alarm(5); /* a client killed before it connects */
    int fd = accept(l, NULL, NULL);
    return fd < 0 ? 1 : dump(fd);
}

static int peer(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return 1;
    shutdown(fd, SHUT_WR);
    return dump(fd);
}

static int sigpipe(int pending) {
    sigset_t s, p;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &s, NULL) != 0)
        return 1;
    if (pending)
        raise(SIGPIPE);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 1;
    close(fd);
    sigemptyset(&p);
    if (sigpending(&p) != 0)
        return 1;
    printf("SIGPIPE %s\n", sigismember(&p, SIGPIPE) ? "pending" : "not pending");
    return 0;
}

static int fds(const char *out) {
    int closed[3];
    for (int i = 0; i < 3; i++)
        closed[i] = fcntl(i, F_GETFD) == -1 && errno == EBADF;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0)
        close(fd);
    FILE *f = fopen(out, "w");
    if (!f)
        return 1;
    fprintf(f, "fd0 %s fd1 %s fd2 %s socket %d\n", closed[0] ? "closed" : "open",
            closed[1] ? "closed" : "open", closed[2] ? "closed" : "open", fd);
    return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "client") == 0)
        return client(atoi(argv[2]), argc >= 4 && strcmp(argv[3], "closefrom") == 0);
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return server(argv[2]);
    if (argc == 3 && strcmp(argv[1], "sink") == 0)
        return sink(argv[2]);
    if (argc == 3 && strcmp(argv[1], "peer") == 0)
        return peer(atoi(argv[2]));
    if (argc == 3 && strcmp(argv[1], "sigpipe") == 0)
        return sigpipe(strcmp(argv[2], "pending") == 0);
    if (argc == 3 && strcmp(argv[1], "fds") == 0)
        return fds(argv[2]);
    fprintf(stderr, "usage: preload_quiet client|server|sink|peer|sigpipe|fds ARG\n");
    return 2;
}
