/* Loads libheartbeat with dlopen() (no header, no link-time dependency),
 * resolves every function with dlsym() and configures a real socket.
 * Usage: dlopen PATH-TO-libheartbeat.so.0 EXPECTED-VERSION */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct config { /* mirrors struct heartbeat_config */
    int enabled, idle, intvl, cnt;
    unsigned int user_timeout_ms;
};

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1000;
}

#define SYM(var, name)                                                          \
    do {                                                                        \
        *(void **)&(var) = dlsym(lib, name);                                    \
        if ((var) == NULL) {                                                    \
            printf("not ok - dlsym %s: %s\n", name, dlerror());                 \
            failures++;                                                         \
        } else {                                                                \
            printf("ok - dlsym %s\n", name);                                    \
        }                                                                       \
    } while (0)

#define EXPECT(cond, what)                                                      \
    do {                                                                        \
        if (cond) {                                                             \
            printf("ok - %s\n", what);                                          \
        } else {                                                                \
            printf("not ok - %s (line %d, errno %d)\n", what, __LINE__, errno); \
            failures++;                                                         \
        }                                                                       \
    } while (0)

int main(int argc, char **argv)
{
    int failures = 0;
    if (argc != 3) {
        printf("not ok - usage: dlopen LIB VERSION\n");
        return 1;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("not ok - dlopen %s: %s\n", argv[1], dlerror());
        return 1;
    }
    int (*hb)(int, int, int, int);
    int (*hb_disable)(int);
    int (*hb_get)(int, struct config *);
    int (*hb_apply)(int, const struct config *);
    int (*hb_defaults)(struct config *);
    unsigned (*hb_deadline)(int, int, int);
    const char *(*hb_strerror)(int);
    const char *(*hb_version)(void);
    SYM(hb, "heartbeat");
    SYM(hb_disable, "heartbeat_disable");
    SYM(hb_get, "heartbeat_get");
    SYM(hb_apply, "heartbeat_apply");
    SYM(hb_defaults, "heartbeat_system_defaults");
    SYM(hb_deadline, "heartbeat_deadline_ms");
    SYM(hb_strerror, "heartbeat_strerror");
    SYM(hb_version, "heartbeat_version");
    if (failures)
        return 1;

    EXPECT(strcmp(hb_version(), argv[2]) == 0, "version matches");
    EXPECT(hb_deadline(1, 1, 3) == 4000, "deadline_ms(1,1,3) == 4000");
    EXPECT(strlen(hb_strerror(-1)) > 0, "strerror(-1)");

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int c = -1;
    if (l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
        getsockname(l, (struct sockaddr *)&a, &len) == 0) {
        c = socket(AF_INET, SOCK_STREAM, 0);
        if (c >= 0 && connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
            close(c);
            c = -1;
        }
    }
    EXPECT(c >= 0, "connected a loopback socket");
    if (c >= 0) {
        EXPECT(hb(c, 6, 3, 2) == 0, "heartbeat(fd, 6, 3, 2)");
        EXPECT(get_int(c, SOL_SOCKET, SO_KEEPALIVE) == 1 && get_int(c, IPPROTO_TCP, TCP_KEEPIDLE) == 6 &&
                   get_int(c, IPPROTO_TCP, TCP_KEEPINTVL) == 3 && get_int(c, IPPROTO_TCP, TCP_KEEPCNT) == 2,
               "options read back raw");
        struct config cfg = {1, 9, 8, 7, 6000}, got;
        memset(&got, 0, sizeof got);
        EXPECT(hb_apply(c, &cfg) == 0 && hb_get(c, &got) == 0 && memcmp(&cfg, &got, sizeof got) == 0,
               "apply/get round trip");
        EXPECT(hb_disable(c) == 0 && get_int(c, SOL_SOCKET, SO_KEEPALIVE) == 0, "disable");
        errno = 0;
        EXPECT(hb(c, 0, 1, 1) == -1 && errno == EINVAL, "idle 0 gives -1 and EINVAL");
        struct config d;
        EXPECT(hb_defaults(&d) == 0 && d.idle > 0, "system defaults");
        close(c);
    }
    if (l >= 0)
        close(l);
    EXPECT(dlclose(lib) == 0, "dlclose");
    return failures ? 1 : 0;
}
