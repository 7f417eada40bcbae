// A C++ program that includes the header and uses every keepalive function.
#include "heartbeat.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures = 0;

static void expect(bool ok, const std::string &what)
{
    std::printf("%s - %s\n", ok ? "ok" : "not ok", what.c_str());
    if (!ok)
        failures++;
}

int main()
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    expect(fd >= 0, "socket");
    expect(heartbeat(fd, 4, 5, 6) == HEARTBEAT_OK, "heartbeat()");
    heartbeat_config cfg = {1, 7, 8, 9, 10000};
    heartbeat_config got;
    std::memset(&got, 0, sizeof got);
    expect(heartbeat_apply(fd, &cfg) == HEARTBEAT_OK, "heartbeat_apply()");
    expect(heartbeat_get(fd, &got) == HEARTBEAT_OK && std::memcmp(&got, &cfg, sizeof got) == 0,
           "heartbeat_get() round trip");
    expect(heartbeat_disable(fd) == HEARTBEAT_OK, "heartbeat_disable()");
    errno = 0;
    expect(heartbeat_get(fd, nullptr) == HEARTBEAT_ERR_INVALID && errno == EINVAL, "NULL is invalid");
    heartbeat_config d;
    expect(heartbeat_system_defaults(&d) == HEARTBEAT_OK && d.enabled == 0, "system defaults");
    expect(heartbeat_deadline_ms(1, 1, 3) == 4000u, "deadline");
    expect(std::string(heartbeat_strerror(HEARTBEAT_ERR_IDLE)).find("TCP_KEEPIDLE") != std::string::npos,
           "strerror names the option");
    expect(heartbeat_version() != nullptr, "version");
    if (fd >= 0)
        close(fd);
    return failures ? 1 : 0;
}
