/* Small helpers shared by libheartbeat's C tests and benchmarks: a
 * monotonic clock, a sleep that survives signals, and state names. */
#ifndef HEARTBEAT_TESTUTIL_H
#define HEARTBEAT_TESTUTIL_H

#include <errno.h>
#include <time.h>

#include "heartbeat.h"

/* CLOCK_MONOTONIC in nanoseconds. */
static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The calling thread's CPU time in nanoseconds. */
static inline long long thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps `ms` milliseconds, resuming after signals. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The name of a HEARTBEAT_PEER_* state, for messages. */
static inline const char *peer_name(int p)
{
    switch (p) {
    case HEARTBEAT_PEER_ALIVE: return "ALIVE";
    case HEARTBEAT_PEER_PROBING: return "PROBING";
    case HEARTBEAT_PEER_CLOSED: return "CLOSED";
    case HEARTBEAT_PEER_RESET: return "RESET";
    case HEARTBEAT_PEER_TIMED_OUT: return "TIMED_OUT";
    case HEARTBEAT_PEER_NOT_CONNECTED: return "NOT_CONNECTED";
    case HEARTBEAT_PEER_STALLED: return "STALLED";
    default: return "?";
    }
}

#endif /* HEARTBEAT_TESTUTIL_H */
