/* LD_PRELOAD fault injector for setsockopt()/getsockopt().
 *
 * HEARTBEAT_FAULT="OP:OPTION:K:ERRNO[,OP:OPTION:K:ERRNO...]" makes the K-th
 * call (counting from 1) of OP ("set" or "get") on OPTION (SO_KEEPALIVE,
 * TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT) fail with -1
 * and errno ERRNO (a number), without calling the kernel. Every other call
 * goes to the real function.
 *
 * HEARTBEAT_FAULT_CLOBBER=1 additionally sets errno to EXDEV after every call
 * that succeeds, so a library that relies on errno surviving its later calls
 * is caught.
 *
 * The variables are read at every call: a test may change them with setenv()
 * between cases; the counters restart whenever HEARTBEAT_FAULT changes.
 * Single-threaded use only (the counters are not atomic). */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_FAULTS 4

struct fault {
    int set; /* 1 set, 0 get */
    int level, name, k, err, seen;
};

static struct fault faults[MAX_FAULTS];
static int nfaults;
static char last_spec[256];

static int option_by_name(const char *s, int *level, int *name)
{
    static const struct {
        const char *s;
        int level, name;
    } opts[] = {
        {"SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE},       {"TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE},
        {"TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL},    {"TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT},
        {"TCP_USER_TIMEOUT", IPPROTO_TCP, TCP_USER_TIMEOUT},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(s, opts[i].s) == 0) {
            *level = opts[i].level;
            *name = opts[i].name;
            return 0;
        }
    return -1;
}

static void reload(void)
{
    const char *spec = getenv("HEARTBEAT_FAULT");
    if (spec == NULL)
        spec = "";
    if (strcmp(spec, last_spec) == 0)
        return;
    snprintf(last_spec, sizeof last_spec, "%s", spec);
    nfaults = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && nfaults < MAX_FAULTS; tok = strtok_r(NULL, ",", &save)) {
        char op[8], opt[32];
        int k, err;
        struct fault f;
        if (sscanf(tok, "%7[a-z]:%31[A-Z_]:%d:%d", op, opt, &k, &err) != 4 ||
            option_by_name(opt, &f.level, &f.name) != 0) {
            fprintf(stderr, "faultinject: bad spec '%s'\n", tok);
            abort(); /* a broken test setup, never reached by the library */
        }
        f.set = strcmp(op, "set") == 0;
        f.k = k;
        f.err = err;
        f.seen = 0;
        faults[nfaults++] = f;
    }
}

/* -1 with errno when this call is the one to fail, 0 otherwise. */
static int inject(int set, int level, int name)
{
    reload();
    for (int i = 0; i < nfaults; i++) {
        struct fault *f = &faults[i];
        if (f->set == set && f->level == level && f->name == name && ++f->seen == f->k) {
            errno = f->err;
            return -1;
        }
    }
    return 0;
}

static void clobber(int rc)
{
    const char *c = getenv("HEARTBEAT_FAULT_CLOBBER");
    if (rc == 0 && c && c[0] == '1')
        errno = EXDEV;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    static int (*real)(int, int, int, const void *, socklen_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "setsockopt");
    if (inject(1, level, name) != 0)
        return -1;
    int rc = real(fd, level, name, val, len);
    clobber(rc);
    return rc;
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    static int (*real)(int, int, int, void *, socklen_t *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "getsockopt");
    if (inject(0, level, name) != 0)
        return -1;
    int rc = real(fd, level, name, val, len);
    clobber(rc);
    return rc;
}
