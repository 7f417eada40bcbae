/* LD_PRELOAD fault injector for the preload tests: setsockopt() of
 * TCP_KEEPCNT fails with EPERM, as under a policy that filters socket
 * options. libheartbeat_preload.so must then roll the socket back, and the
 * intercepted call must still return what the real call returned, with the
 * errno the real call left. Only for c-tests/preload/suite.sh. */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    if (level == IPPROTO_TCP && name == TCP_KEEPCNT) {
        errno = EPERM;
        return -1;
    }
    setsockopt_fn real = NULL;
    *(void **)&real = dlsym(RTLD_NEXT, "setsockopt");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd, level, name, value, len);
}
