/* Runs the monitor tests against either mode of the monitor (suite.sh runs
 * each program twice). With HB_MONITOR_MODE=loop, every monitor the tests
 * create is a thread-free one (heartbeat_monitor_new_loop()), driven by a
 * thread of the test that does what an application's event loop does: a
 * poll() loop on heartbeat_monitor_fd() that calls
 * heartbeat_monitor_process() whenever the fd is readable. The callbacks
 * then run on that thread, inside process(). Without it, the monitors are
 * made by heartbeat_monitor_new() and these helpers are the plain calls.
 *
 * Freeing. No call may begin after free() was called (docs/monitor.md), so
 * the driver thread must not call process() once free() has begun:
 *   mon_free(m)       outside the monitor's callbacks: stops the driver (its
 *                     current process() call returns first), then frees;
 *                     from one of its callbacks (which run on the driver
 *                     thread): tells the driver to end after the process()
 *                     call that runs the callback, then frees;
 *   mon_free_busy(m)  for a test that knows one of the monitor's callbacks
 *                     is running now (so a process() call is in progress):
 *                     frees concurrently with that call, which free() must
 *                     wait for, then lets the driver end. */
#ifndef HB_MON_MODE_H
#define HB_MON_MODE_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "heartbeat.h"

static int loop_mode = -1; /* HB_MONITOR_MODE=loop */

static int mon_loop(void)
{
    if (loop_mode < 0) {
        const char *e = getenv("HB_MONITOR_MODE");
        loop_mode = e && strcmp(e, "loop") == 0;
    }
    return loop_mode;
}

#define MON_DRIVERS 512

struct mon_driver {
    struct heartbeat_monitor *m;
    pthread_t th;
    int wake;          /* eventfd: ends the driver's poll() at once */
    atomic_int stop;   /* call process() no more */
    atomic_long calls; /* process() calls that handled something */
    atomic_int detached; /* nobody joins it: it releases its own slot */
    int used;
};

static struct mon_driver mon_drivers[MON_DRIVERS];
static pthread_mutex_t mon_mu = PTHREAD_MUTEX_INITIALIZER;
static __thread struct mon_driver *mon_self; /* the driver running here */

static void mon_release(struct mon_driver *d);

static void *mon_driver_main(void *arg)
{
    struct mon_driver *d = arg;
    mon_self = d;
    int fd = heartbeat_monitor_fd(d->m);
    while (!atomic_load(&d->stop)) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {d->wake, POLLIN, 0}};
        int n = poll(p, 2, 1000);
        if (atomic_load(&d->stop))
            break;
        if (n > 0 && (p[0].revents & POLLIN)) {
            if (heartbeat_monitor_process(d->m) > 0)
                atomic_fetch_add(&d->calls, 1);
        }
    }
    mon_self = NULL;
    if (atomic_load(&d->detached))
        mon_release(d);
    return NULL;
}

static struct mon_driver *mon_find(struct heartbeat_monitor *m)
{
    struct mon_driver *d = NULL;
    pthread_mutex_lock(&mon_mu);
    for (int i = 0; i < MON_DRIVERS && !d; i++)
        if (mon_drivers[i].used && mon_drivers[i].m == m)
            d = &mon_drivers[i];
    pthread_mutex_unlock(&mon_mu);
    return d;
}

static void mon_release(struct mon_driver *d)
{
    close(d->wake);
    pthread_mutex_lock(&mon_mu);
    d->used = 0;
    d->m = NULL;
    pthread_mutex_unlock(&mon_mu);
}

/* heartbeat_monitor_new(), or in loop mode heartbeat_monitor_new_loop()
 * and a driver thread. */
static struct heartbeat_monitor *mon_new(const struct heartbeat_monitor_options *o, int *code)
{
    if (!mon_loop())
        return heartbeat_monitor_new(o, code);
    struct heartbeat_monitor *m = heartbeat_monitor_new_loop(o, code);
    if (!m)
        return NULL;
    struct mon_driver *d = NULL;
    pthread_mutex_lock(&mon_mu);
    for (int i = 0; i < MON_DRIVERS && !d; i++)
        if (!mon_drivers[i].used)
            d = &mon_drivers[i];
    if (d) {
        d->used = 1;
        d->m = m;
        atomic_store(&d->stop, 0);
        atomic_store(&d->calls, 0);
        atomic_store(&d->detached, 0);
    }
    pthread_mutex_unlock(&mon_mu);
    if (!d || (d->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        pthread_create(&d->th, NULL, mon_driver_main, d) != 0) {
        if (d)
            d->used = 0;
        heartbeat_monitor_free(m);
        if (code)
            *code = HEARTBEAT_ERR_THREAD;
        return NULL;
    }
    return m;
}

static void mon_stop(struct mon_driver *d)
{
    atomic_store(&d->stop, 1);
    uint64_t one = 1;
    (void)!write(d->wake, &one, sizeof one);
}

static void mon_free(struct heartbeat_monitor *m)
{
    struct mon_driver *d = m && mon_loop() ? mon_find(m) : NULL;
    if (!d) {
        heartbeat_monitor_free(m);
        return;
    }
    if (mon_self == d) {
        /* From a callback, on the driver thread: it ends after this
         * process() call, and nobody joins it. */
        atomic_store(&d->detached, 1);
        atomic_store(&d->stop, 1);
        pthread_detach(d->th);
        heartbeat_monitor_free(m);
        return;
    }
    mon_stop(d);
    pthread_join(d->th, NULL);
    heartbeat_monitor_free(m);
    mon_release(d);
}

static inline void mon_free_busy(struct heartbeat_monitor *m)
{
    struct mon_driver *d = m && mon_loop() ? mon_find(m) : NULL;
    if (!d || mon_self == d) {
        mon_free(m);
        return;
    }
    /* A callback of m runs on d's thread: its process() call is in
     * progress, and the driver calls process() no more after it. */
    if (mon_self) {
        /* On another monitor's driver (a callback that frees this one):
         * the driver may still be in a callback waiting for ours. */
        atomic_store(&d->detached, 1);
        atomic_store(&d->stop, 1);
        pthread_detach(d->th);
        heartbeat_monitor_free(m);
        return;
    }
    atomic_store(&d->stop, 1);
    heartbeat_monitor_free(m);
    pthread_join(d->th, NULL);
    mon_release(d);
}

/* "threaded" or "loop", for messages. */
static inline const char *mon_mode_name(void) { return mon_loop() ? "loop" : "threaded"; }

#endif /* HB_MON_MODE_H */
