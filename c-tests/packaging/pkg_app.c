/* A program built against an installed libheartbeat only (pkg-config or
 * CMake, shared or static, by c-tests/packaging/suite.sh): the header's
 * version macros agree with each other and with the library actually
 * linked, and the library works on a real socket. Prints "ok - ..." lines;
 * exits 0 only if every check passed. C89, like the oldest users. */
#include <heartbeat.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failed;

static void check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    if (!ok)
        failed = 1;
}

int main(void)
{
    char macros[64];
    struct heartbeat_config cfg;
    int fd, rc;

    sprintf(macros, "%d.%d.%d", HEARTBEAT_VERSION_MAJOR, HEARTBEAT_VERSION_MINOR, HEARTBEAT_VERSION_PATCH);
    check(strncmp(HEARTBEAT_VERSION, macros, strlen(macros)) == 0, "HEARTBEAT_VERSION starts with MAJOR.MINOR.PATCH");
    check(strcmp(heartbeat_version(), HEARTBEAT_VERSION) == 0, "heartbeat_version() is the header's HEARTBEAT_VERSION");

    fd = socket(AF_INET, SOCK_STREAM, 0);
    rc = heartbeat(fd, 10, 5, 3);
    check(fd >= 0 && rc == HEARTBEAT_OK, "heartbeat(fd, 10, 5, 3) on a TCP socket");
    rc = heartbeat_get(fd, &cfg);
    check(rc == HEARTBEAT_OK && cfg.enabled == 1 && cfg.idle == 10 && cfg.intvl == 5 && cfg.cnt == 3,
          "heartbeat_get() reads the settings back");
    errno = 0;
    rc = heartbeat(fd, 0, 5, 3);
    check(rc == HEARTBEAT_ERR_IDLE && errno == EINVAL, "idle 0 is refused with HEARTBEAT_ERR_IDLE, EINVAL");
    check(strlen(heartbeat_strerror(rc)) > 0, "heartbeat_strerror() has a message");
    close(fd);
    return failed;
}
