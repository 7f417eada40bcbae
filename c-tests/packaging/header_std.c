/* The header under every C and C++ standard the library supports (compiled
 * by c-tests/packaging/suite.sh with -std=c89 ... -std=c++20 -Wall -Wextra
 * -Werror -pedantic-errors, as C and as C++): every type, constant and
 * function of the API is used once. Valid C89 and C++98. */
#include "heartbeat.h"

typedef char version_is_a_number[HEARTBEAT_VERSION_MAJOR >= 0 && HEARTBEAT_VERSION_MINOR >= 0 &&
                                          HEARTBEAT_VERSION_PATCH >= 0 ? 1 : -1];

static void on_dead(struct heartbeat_monitor *m, int fd, int reason, int error, void *user)
{
    (void)m;
    (void)fd;
    (void)reason;
    (void)error;
    (void)user;
}

int header_uses_everything(int fd);
int header_uses_everything(int fd)
{
    struct heartbeat_config c = {1, HEARTBEAT_IDLE_MIN, HEARTBEAT_INTVL_MAX, HEARTBEAT_CNT_MAX, 0};
    struct heartbeat_status st;
    struct heartbeat_monitor_options o;
    struct heartbeat_monitor_stats s;
    struct heartbeat_monitor *m;
    heartbeat_ping_fn ping = 0;
    unsigned long ms = 0;
    const char *v = HEARTBEAT_VERSION;
    int code = HEARTBEAT_OK;

    o.interval_ms = 1;
    o.timeout_ms = 2;
    o.ping_data = 0;
    o.ping_len = 0;
    o.ping_cb = ping;
    o.dead_cb = on_dead;
    o.user = 0;
    m = heartbeat_monitor_new(&o, &code);
    code += heartbeat(fd, 1, 1, 1) + heartbeat_disable(fd) + heartbeat_get(fd, &c) + heartbeat_apply(fd, &c) +
            heartbeat_system_defaults(&c) + (int)heartbeat_deadline_ms(1, 1, 1) + heartbeat_status(fd, &st) +
            heartbeat_monitor_watch(m, fd) + heartbeat_monitor_alive(m, fd) +
            heartbeat_monitor_last_heard_ms(m, fd, &ms) + heartbeat_monitor_stats(m, &s) +
            heartbeat_monitor_unwatch(m, fd);
    heartbeat_monitor_free(m);
    return code + (int)s.ping_late[HEARTBEAT_LATE_BUCKETS - 1] + st.peer + (heartbeat_strerror(code)[0] == v[0]) +
           (heartbeat_version()[0] == 0) + HEARTBEAT_PING_MAX + HEARTBEAT_DEAD_SILENCE + HEARTBEAT_PEER_ALIVE;
}
