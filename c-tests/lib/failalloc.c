/* failalloc.so: an LD_PRELOAD allocation-failure injector for the tests
 * (SQLite's method: fail the 1st, 2nd, 3rd... allocation of an operation in
 * turn, until one run needs no more, and check each run for a clean error
 * and no leak).
 *
 * It interposes malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign and free. Only allocations whose immediate caller lies in the
 * shared object named by HB_FAILALLOC_OBJ (a substring of its path, e.g.
 * "libheartbeat.so" or "libheartbeat_preload.so") are counted; the Rust
 * standard library is linked into those objects, so every allocation the
 * library makes is called from inside them. Everything else (libc, the test
 * program) is passed through untouched.
 *
 * Control, from the environment (for code that runs before main, such as a
 * preload library's constructor):
 *   HB_FAILALLOC_OBJ=name     which object's allocations count (required)
 *   HB_FAILALLOC_NTH=N        fail the N-th counted allocation (1-based)
 *                             with ENOMEM; 0 or unset: never fail, only count
 *   HB_FAILALLOC_REPORT=path  at exit, write "counted=C failed=F live=L\n"
 *                             (L: counted allocations not freed)
 * or from a test program, through dlsym(RTLD_DEFAULT, ...) so that it also
 * runs without the injector:
 *   void failalloc_arm(long n)      reset the counters; fail the n-th counted
 *                                   allocation from now (0: never)
 *   long failalloc_counted(void)    counted allocations since the last arm
 *   long failalloc_failed(void)     failures injected since the last arm
 *   long failalloc_live(void)       counted allocations not yet freed
 *
 * The real allocator is glibc's __libc_* entry points (no dlsym, which
 * itself allocates). Live pointers are kept in a fixed table (no
 * allocation); if it fills up, failalloc_live() returns -1. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define LIVE_SLOTS 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *obj_name;
static uintptr_t obj_lo, obj_hi; /* address range of the object, once found */
static long nth, counted, failed, live;
static int overflow;
static void *live_tab[LIVE_SLOTS];
static __thread int inside; /* dl_iterate_phdr may allocate: do not recurse */

static int find_obj(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, obj_name))
        return 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        if (p->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + p->p_vaddr;
        if (a < lo)
            lo = a;
        if (a + p->p_memsz > hi)
            hi = a + p->p_memsz;
    }
    obj_lo = lo;
    obj_hi = hi;
    return 1;
}

/* Whether an allocation called from `ra` counts. */
static int counts(void *ra) {
    if (!obj_name || inside)
        return 0;
    uintptr_t a = (uintptr_t)ra;
    if (obj_hi == 0) {
        /* Not found yet (or not loaded yet): look again. */
        inside = 1;
        dl_iterate_phdr(find_obj, NULL);
        inside = 0;
    }
    return a >= obj_lo && a < obj_hi;
}

static size_t slot_of(void *p) { return ((uintptr_t)p >> 4) * 2654435761u % LIVE_SLOTS; }

static void live_add(void *p) {
    size_t i = slot_of(p);
    for (size_t k = 0; k < LIVE_SLOTS; k++, i = (i + 1) % LIVE_SLOTS)
        if (!live_tab[i]) {
            live_tab[i] = p;
            live++;
            return;
        }
    overflow = 1;
}

static void live_del(void *p) {
    size_t i = slot_of(p);
    for (size_t k = 0; k < LIVE_SLOTS && live_tab[i]; k++, i = (i + 1) % LIVE_SLOTS)
        if (live_tab[i] == p) {
            /* Backward-shift deletion keeps probe chains intact. */
            size_t j = i;
            for (;;) {
                live_tab[i] = NULL;
                for (;;) {
                    j = (j + 1) % LIVE_SLOTS;
                    if (!live_tab[j])
                        goto done;
                    size_t h = slot_of(live_tab[j]);
                    if (i <= j ? (h <= i || h > j) : (h <= i && h > j))
                        break;
                }
                live_tab[i] = live_tab[j];
                i = j;
            }
        done:
            live--;
            return;
        }
}

/* Decides, under the lock, whether this counted allocation fails. */
static int should_fail(void) {
    counted++;
    if (nth > 0 && counted == nth) {
        failed++;
        return 1;
    }
    return 0;
}

#define COUNTED_ALLOC(call)                                                    \
    do {                                                                       \
        if (!counts(__builtin_return_address(0)))                              \
            return call;                                                       \
        pthread_mutex_lock(&lock);                                             \
        if (should_fail()) {                                                   \
            pthread_mutex_unlock(&lock);                                       \
            errno = ENOMEM;                                                    \
            return NULL;                                                       \
        }                                                                      \
        void *p_ = call;                                                       \
        if (p_)                                                                \
            live_add(p_);                                                      \
        pthread_mutex_unlock(&lock);                                           \
        return p_;                                                             \
    } while (0)

void *malloc(size_t n) { COUNTED_ALLOC(__libc_malloc(n)); }
void *calloc(size_t a, size_t b) { COUNTED_ALLOC(__libc_calloc(a, b)); }
void *memalign(size_t al, size_t n) { COUNTED_ALLOC(__libc_memalign(al, n)); }
void *aligned_alloc(size_t al, size_t n) { COUNTED_ALLOC(__libc_memalign(al, n)); }

int posix_memalign(void **out, size_t al, size_t n) {
    if (al < sizeof(void *) || (al & (al - 1)))
        return EINVAL;
    void *p;
    if (!counts(__builtin_return_address(0))) {
        p = __libc_memalign(al, n);
    } else {
        pthread_mutex_lock(&lock);
        if (should_fail()) {
            pthread_mutex_unlock(&lock);
            return ENOMEM;
        }
        p = __libc_memalign(al, n);
        if (p)
            live_add(p);
        pthread_mutex_unlock(&lock);
    }
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *realloc(void *old, size_t n) {
    int c = counts(__builtin_return_address(0));
    if (!c && !obj_name)
        return __libc_realloc(old, n);
    pthread_mutex_lock(&lock);
    if (c && should_fail()) {
        pthread_mutex_unlock(&lock);
        errno = ENOMEM;
        return NULL; /* the old block stays valid, as realloc() promises */
    }
    void *p = __libc_realloc(old, n);
    if (p && old)
        live_del(old);
    if (p && c)
        live_add(p);
    pthread_mutex_unlock(&lock);
    return p;
}

void free(void *p) {
    if (!p)
        return;
    if (obj_name) {
        pthread_mutex_lock(&lock);
        live_del(p);
        pthread_mutex_unlock(&lock);
    }
    __libc_free(p);
}

void failalloc_arm(long n) {
    pthread_mutex_lock(&lock);
    nth = n;
    counted = 0;
    failed = 0;
    pthread_mutex_unlock(&lock);
}
long failalloc_counted(void) { return counted; }
long failalloc_failed(void) { return failed; }
long failalloc_live(void) { return overflow ? -1 : live; }

__attribute__((constructor)) static void failalloc_init(void) {
    const char *o = getenv("HB_FAILALLOC_OBJ");
    const char *n = getenv("HB_FAILALLOC_NTH");
    if (n)
        nth = strtol(n, NULL, 10);
    if (o && *o)
        obj_name = o;
}

__attribute__((destructor)) static void failalloc_report(void) {
    const char *path = getenv("HB_FAILALLOC_REPORT");
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char buf[128];
    int len = snprintf(buf, sizeof buf, "counted=%ld failed=%ld live=%ld\n", counted, failed,
                       overflow ? -1L : live);
    if (len > 0)
        (void)!write(fd, buf, (size_t)len);
    close(fd);
}
