//! C functions of the heartbeat monitor: `heartbeat_monitor_*()`. Only
//! conversions: the behaviour is in `crate::monitor`.

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

use super::{guard, guard_value, out_ref, HEARTBEAT_OK};
use crate::error::{Errno, Error, Result};
use crate::monitor::{self, Core, CoreRef, Death, Handler, Mode, Monitor, Options, Ping};

/// A heartbeat monitor: it pings watched connections every `interval_ms`
/// and reports a peer dead when it stops answering (see `timeout_ms` for
/// the exact rule). Opaque: created by `heartbeat_monitor_new()` (with a
/// thread of its own) or `heartbeat_monitor_new_loop()` (no thread: the
/// application's event loop drives it), released by
/// `heartbeat_monitor_free()`. All functions taking it are safe to call
/// from any thread, including from the monitor's own callbacks, until
/// free() is called (see there for calls in progress at that moment).
///
/// The thread of a monitor made by heartbeat_monitor_new() (named
/// "heartbeat-mon"): it starts with every signal blocked (signals are
/// blocked in the creating thread for the few microseconds of
/// pthread_create and restored), so the application's signal handlers
/// never run on it; it gets the process's default thread stack size (what
/// pthread_create gives a thread without attributes: RLIMIT_STACK at
/// program start, i.e. `ulimit -s`, typically 8 MiB; 2 MiB if unlimited;
/// changed by pthread_setattr_default_np() before heartbeat_monitor_new()),
/// and the callbacks run on that stack. A monitor made by
/// heartbeat_monitor_new_loop() has no thread: its callbacks run inside
/// heartbeat_monitor_process(), on the thread that calls it, with that
/// thread's stack and signal mask.
///
/// After fork(), the child has a copy of the monitor without its thread:
/// there the monitor does nothing, and heartbeat_monitor_free() in the child
/// does nothing (see there); no other function may be called in the child
/// (a thread-free monitor's timer fd is shared with the parent's: the child
/// must not use it either).
pub struct heartbeat_monitor {
    _private: [u8; 0],
}

/// Reason passed to the dead callback: nothing was heard from the peer for
/// `timeout_ms` (`error` is 0).
pub const HEARTBEAT_DEAD_SILENCE: c_int = 1;
/// Reason passed to the dead callback: the ping could not be sent; `error`
/// is the errno of the failed send() (EPIPE, ECONNRESET, ENOTSOCK, ...) or
/// the value returned by the ping callback.
pub const HEARTBEAT_DEAD_SEND_FAILED: c_int = 2;
/// Largest `ping_len` accepted, in bytes.
pub const HEARTBEAT_PING_MAX: usize = 4096;
/// Number of buckets of `heartbeat_monitor_stats.ping_late`.
pub const HEARTBEAT_LATE_BUCKETS: usize = 20;

// The C constants are literals (cbindgen only exports literal values); they
// must match the core's.
const _: () = assert!(HEARTBEAT_PING_MAX == monitor::PING_MAX);
const _: () = assert!(HEARTBEAT_LATE_BUCKETS == monitor::LATE_BUCKETS);

/// Ping callback: send one ping on `fd` (the application frames and writes
/// it itself, typically with MSG_DONTWAIT). Return 0 if it was sent;
/// EAGAIN, EWOULDBLOCK or EINTR if the send would block: that ping is
/// skipped, which is not a death (counted in `pings_blocked`); any other
/// errno value (> 0, e.g. EPIPE) if the connection is broken: the dead
/// callback then runs with HEARTBEAT_DEAD_SEND_FAILED and that value (a
/// negative return counts as EIO). A callback that frees the monitor may
/// return anything: no callback runs after it. Runs on the monitor thread
/// (or inside heartbeat_monitor_process()); must return normally (no
/// longjmp, no C++ exception).
pub type heartbeat_ping_fn =
    Option<extern "C" fn(monitor: *mut heartbeat_monitor, fd: c_int, user: *mut c_void) -> c_int>;

/// Dead callback: the peer of `fd` is considered gone. `reason` is
/// HEARTBEAT_DEAD_SILENCE (error 0) or HEARTBEAT_DEAD_SEND_FAILED (error =
/// the errno). Called exactly once per watch; `fd` is no longer watched when
/// it runs, and the monitor never closes it: that is the application's job
/// (here or later). It may call any heartbeat_monitor_* function on the same
/// monitor, including watch(fd) to start over and heartbeat_monitor_free()
/// (then it must not use the monitor again). Runs on the monitor thread
/// (or inside heartbeat_monitor_process()), one callback at a time; must
/// return normally (no longjmp, no C++ exception) and should be short: the
/// next pings wait for it.
///
/// Two monitors: never wait, from a callback of monitor A, for a callback
/// of monitor B whose callbacks wait for A (as with two locks taken in
/// opposite orders): unwatch() and free() of B wait for B's running
/// callback. The direct cycle (A's callback in unwatch() or free() of B for
/// B's running callback, which is itself in unwatch() or free() of A for
/// A's) is detected: unwatch() returns HEARTBEAT_ERR_DEADLOCK instead of
/// waiting, free() returns without waiting. Longer cycles (A, B, C) are not
/// detected and deadlock.
pub type heartbeat_dead_fn = Option<
    extern "C" fn(
        monitor: *mut heartbeat_monitor,
        fd: c_int,
        reason: c_int,
        error: c_int,
        user: *mut c_void,
    ),
>;

/// Options of `heartbeat_monitor_new()` and `heartbeat_monitor_new_loop()`.
/// Zero-initialise, then set fields. Its size and layout never change
/// within a major version (docs/abi.md): the thread-free mode is chosen by
/// calling heartbeat_monitor_new_loop(), not by a field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct heartbeat_monitor_options {
    /// Ping period, milliseconds; must be > 0 (also without pings).
    pub interval_ms: c_uint,
    /// When a peer is dead; must be longer than `interval_ms`. Without
    /// pings, a peer is dead `timeout_ms` after it was last heard from. With
    /// pings, every ping event that does not fail is an attempt (a ping sent
    /// in full or its rest completed, a ping skipped because the send would
    /// block, a ping_cb call; a partial send is not one), and the peer is
    /// dead at max(last heard + timeout_ms, end of P + (timeout_ms -
    /// interval_ms)), where P is the first attempt that began after the peer
    /// was last heard from and "end" is when its send() or ping_cb returned;
    /// never before such an attempt exists. So a peer that answers every
    /// ping within `timeout_ms - interval_ms` of that ping's actual send is
    /// never declared dead, however late the monitor sends it (as long as
    /// no ping is skipped or cut by a full send buffer), and a silent peer
    /// is dead `timeout_ms` after it was last heard from, later only by as
    /// much as the monitor was late with P.
    pub timeout_ms: c_uint,
    /// Bytes the monitor sends itself as the ping (copied at creation), or
    /// NULL. Sent with send(fd, ..., MSG_NOSIGNAL | MSG_DONTWAIT): use them
    /// only if ping bytes may appear between any two of the application's
    /// own writes on the fd. A send that would block skips that ping; a
    /// partial send is completed (before anything else) at the next ping
    /// time.
    pub ping_data: *const c_void,
    /// Length of `ping_data`: 1..HEARTBEAT_PING_MAX, or 0 with NULL data.
    pub ping_len: usize,
    /// Called instead of sending `ping_data` (which must then be NULL), for
    /// protocols that frame their own writes. NULL with NULL `ping_data`:
    /// no pings at all, pure silence detection.
    pub ping_cb: heartbeat_ping_fn,
    /// Called when a peer is dead. Required.
    pub dead_cb: heartbeat_dead_fn,
    /// Passed to both callbacks.
    pub user: *mut c_void,
}

/// Counters of a monitor since its creation (`heartbeat_monitor_stats()`).
/// `unsigned long` (not `long long`, which C++98 lacks): 64 bits on 64-bit
/// Linux; on 32-bit systems the counters wrap at 2^32. The struct's size is
/// part of the ABI (heartbeat_monitor_stats() fills the caller's struct), so
/// fields are never added to it: failed pings are counted in no field here
/// (each is a death with HEARTBEAT_DEAD_SEND_FAILED, unless the fd was
/// unwatched during the send).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct heartbeat_monitor_stats {
    /// Fds watched now.
    pub watched: c_ulong,
    /// Pings that went out: sends that sent bytes (a whole ping, its rest,
    /// or a part of it) and ping_cb calls that returned 0. Failed sends are
    /// not counted.
    pub pings: c_ulong,
    /// Pings skipped because the send would block: send() failed with
    /// EAGAIN, EWOULDBLOCK or EINTR, or ping_cb returned one of them.
    pub pings_blocked: c_ulong,
    /// Dead callbacks delivered.
    pub deaths: c_ulong,
    /// Times the monitor thread woke up; for a thread-free monitor, the
    /// heartbeat_monitor_process() calls made when its timer fd was
    /// readable (a call made earlier changes nothing, this counter
    /// included).
    pub wakeups: c_ulong,
    /// Largest lateness of a ping behind its due time, microseconds.
    pub ping_late_max_us: c_ulong,
    /// Histogram of ping lateness behind the due time. Bucket i counts pings
    /// less than B(i) microseconds late (and at least B(i-1)), with B = 1, 2,
    /// 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
    /// 100000, 200000, 500000, 1000000; the last bucket counts the rest.
    pub ping_late: [c_ulong; HEARTBEAT_LATE_BUCKETS],
}

struct CHandler {
    ping_cb: heartbeat_ping_fn,
    dead_cb: extern "C" fn(*mut heartbeat_monitor, c_int, c_int, c_int, *mut c_void),
    user: *mut c_void,
}

// SAFETY: the user pointer is handed back to the application's callbacks,
// on the monitor thread or inside heartbeat_monitor_process(); the header
// documents where they run.
unsafe impl Send for CHandler {}

fn handle(m: &Core) -> *mut heartbeat_monitor {
    m as *const Core as *mut heartbeat_monitor
}

impl Handler for CHandler {
    fn ping(&mut self, m: &Core, fd: RawFd) -> std::result::Result<(), Errno> {
        match self.ping_cb {
            Some(f) => match f(handle(m), fd, self.user) {
                0 => Ok(()),
                e => Err(e),
            },
            None => Ok(()),
        }
    }

    fn dead(&mut self, m: &Core, fd: RawFd, why: Death) {
        let (reason, err) = match why {
            Death::Silence => (HEARTBEAT_DEAD_SILENCE, 0),
            Death::SendFailed(e) => (HEARTBEAT_DEAD_SEND_FAILED, e),
        };
        (self.dead_cb)(handle(m), fd, reason, err, self.user);
    }
}

/// The monitor, for the lock-free calls (alive, last_heard_ms), which take
/// no reference: see heartbeat_monitor_free() for why.
fn core<'a>(m: *mut heartbeat_monitor) -> Result<&'a Core> {
    // SAFETY: the caller promised that a non-NULL `m` comes from
    // heartbeat_monitor_new() and that free() has not been called on it.
    unsafe { (m as *const Core).as_ref() }.ok_or(Error::Invalid)
}

/// The monitor, with a counted reference for the duration of a call that
/// locks or waits (watch, unwatch, stats): if free() is called meanwhile,
/// the memory stays until this reference is dropped.
fn enter(m: *mut heartbeat_monitor) -> Result<CoreRef> {
    let p = NonNull::new(m as *mut Core).ok_or(Error::Invalid)?;
    // SAFETY: as in core(): a live monitor, on which free() had not been
    // called when this call began.
    Ok(unsafe { CoreRef::acquire(p) })
}

fn create(o: *const heartbeat_monitor_options, mode: Mode) -> Result<Monitor> {
    // SAFETY: the caller promised that a non-NULL pointer points to options.
    let o = unsafe { o.as_ref() }.ok_or(Error::Invalid)?;
    monitor::check_timing(o.interval_ms, o.timeout_ms)?;
    let dead_cb = o.dead_cb.ok_or(Error::DeadCallback)?;
    let ping = match (o.ping_data.is_null(), o.ping_len, o.ping_cb.is_some()) {
        (true, 0, false) => Ping::None,
        (true, 0, true) => Ping::Callback,
        (false, n, false) if (1..=HEARTBEAT_PING_MAX).contains(&n) => {
            // SAFETY: the caller promised `ping_len` readable bytes.
            let b = unsafe { std::slice::from_raw_parts(o.ping_data.cast::<u8>(), n) };
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| Error::NoMem)?;
            v.extend_from_slice(b); // within the capacity: no allocation
            Ping::Bytes(v)
        }
        _ => return Err(Error::Ping),
    };
    let handler = CHandler {
        ping_cb: o.ping_cb,
        dead_cb,
        user: o.user,
    };
    Monitor::new(
        Options {
            interval_ms: o.interval_ms,
            timeout_ms: o.timeout_ms,
            ping,
            mode,
        },
        handler,
    )
}

/// The creation functions' common part: the result, and `*code`.
fn new_monitor(
    options: *const heartbeat_monitor_options,
    code: *mut c_int,
    mode: Mode,
) -> *mut heartbeat_monitor {
    let mut out = ptr::null_mut();
    let rc = guard(|| {
        out = Monitor::into_raw(create(options, mode)?) as *mut heartbeat_monitor;
        Ok(())
    });
    if !code.is_null() {
        // SAFETY: the caller promised that a non-NULL `code` is writable.
        unsafe { *code = rc };
    }
    debug_assert_eq!(rc == HEARTBEAT_OK, !out.is_null());
    out
}

/// A call that returns a value (>= 0) or a code (< 0).
#[inline(always)]
fn value_or_code(f: impl FnOnce() -> Result<c_int>) -> c_int {
    let mut v = 0;
    let rc = guard(|| {
        v = f()?;
        Ok(())
    });
    if rc == HEARTBEAT_OK {
        v
    } else {
        rc
    }
}

/// Creates a monitor and starts its thread.
///
/// The options are checked in this order, and the first failure is
/// returned: `options` NULL (HEARTBEAT_ERR_INVALID), `interval_ms` 0
/// (HEARTBEAT_ERR_INTERVAL), `timeout_ms <= interval_ms`
/// (HEARTBEAT_ERR_TIMEOUT), `dead_cb` NULL (HEARTBEAT_ERR_DEAD_CALLBACK),
/// an inconsistent ping (HEARTBEAT_ERR_PING); all with errno EINVAL. Then
/// HEARTBEAT_ERR_NOMEM (ENOMEM) if any allocation fails (nothing is leaked
/// and nothing aborts: every allocation is checked), or HEARTBEAT_ERR_THREAD
/// (errno of pthread_create) if the thread cannot be started.
///
/// Returns the monitor, or NULL with errno set. If `code` is not NULL,
/// `*code` receives HEARTBEAT_OK or the error code (on failure too: it is an
/// error report, not a result). `*options` is copied, ping bytes included.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_new(
    options: *const heartbeat_monitor_options,
    code: *mut c_int,
) -> *mut heartbeat_monitor {
    new_monitor(options, code, Mode::Thread)
}

/// Creates a monitor without a thread, for an event loop: nothing happens
/// until the application calls heartbeat_monitor_process(), which runs
/// the pings and callbacks that are due on the calling thread. The loop
/// learns when to call it from heartbeat_monitor_fd() (an fd for
/// epoll/poll/select, uv_poll_t, event_new(), asyncio's add_reader) or
/// heartbeat_monitor_timeout_ms(). Same options, same checks in the same
/// order and same codes as heartbeat_monitor_new(), with
/// HEARTBEAT_ERR_FD (errno of timerfd_create(), e.g. EMFILE) instead of
/// HEARTBEAT_ERR_THREAD; every other function works as with a threaded
/// monitor, from any thread, and every guarantee holds the same way (no
/// callback after unwatch() or free() returns, one death per watch, the
/// death rule of `timeout_ms`), with "the monitor thread" read as "the
/// thread inside heartbeat_monitor_process()".
///
/// A separate function rather than an option because the options struct
/// never changes size (docs/abi.md); a program that uses it needs
/// libheartbeat 0.2 or later (symbol version HEARTBEAT_0.2), and an older
/// library refuses to start it with a clear message.
///
/// Returns the monitor, or NULL with errno set; `*code` as for
/// heartbeat_monitor_new().
#[no_mangle]
pub extern "C" fn heartbeat_monitor_new_loop(
    options: *const heartbeat_monitor_options,
    code: *mut c_int,
) -> *mut heartbeat_monitor {
    new_monitor(options, code, Mode::Loop)
}

/// The fd of a thread-free monitor, for the application's event loop:
/// readable when something is due, then heartbeat_monitor_process() must be
/// called. A timerfd on CLOCK_MONOTONIC, close-on-exec and non-blocking,
/// owned by the monitor: never read it, write it or close it (free()
/// closes it: remove it from the loop before, e.g. epoll_ctl(EPOLL_CTL_DEL)
/// or uv_poll_stop()).
///
/// The contract, for any loop:
/// - Level-triggered: the fd becomes readable at the due time of the
///   monitor's first event (a ping, or a deadline: milliseconds, rounded up)
///   and stays readable until heartbeat_monitor_process() has handled it.
///   So nothing is ever handled late for want of readiness. Edge-triggered
///   waits (EPOLLET) work too: each arming is a new expiry.
/// - heartbeat_monitor_process() re-arms it: when it returns, the fd is
///   readable if and only if something is due again (events that came due
///   while it ran: then call it again; the loop's next wait returns at once).
/// - heartbeat_monitor_watch() from any thread, of an fd whose first event
///   is earlier than the one the fd is armed for, re-arms it for the earlier
///   time; unwatch() of the first due fd re-arms it later (or disarms it),
///   so that the fd does not become readable for a watch that is gone.
/// - A spurious call is harmless: heartbeat_monitor_process() with nothing
///   due handles nothing, changes nothing and returns 0. The fd can also be
///   readable with nothing to report: without pings a peer heard from by
///   heartbeat_monitor_alive() has its deadline moved without touching the
///   timer (alive() stays lock-free), and the timer still expires at the
///   old deadline; process() then finds the peer alive and returns 0.
///
/// Returns the fd (>= 0); HEARTBEAT_ERR_INVALID (errno EINVAL) for NULL;
/// HEARTBEAT_ERR_MODE (EINVAL) for a monitor made by
/// heartbeat_monitor_new(), which has no such fd.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_fd(monitor: *mut heartbeat_monitor) -> c_int {
    value_or_code(|| core(monitor)?.fd())
}

/// Milliseconds until the next event of a thread-free monitor is due,
/// rounded up (so that a wait of that long ends at or after the due time):
/// 0 if something is due now, -1 if nothing is watched (both as poll()'s
/// timeout expects: -1 waits forever). For loops that prefer a timeout to
/// an fd: wait at most that long, then call heartbeat_monitor_process().
/// Call it again after every process() or watch() (a watch() from another
/// thread cannot shorten a wait already begun: use the fd for that).
/// Values above INT_MAX are returned as INT_MAX (the wait then ends early,
/// and process() handles nothing).
///
/// Returns the milliseconds (>= 0) or -1; on error another negative code:
/// HEARTBEAT_ERR_INVALID (errno EINVAL) for NULL, HEARTBEAT_ERR_MODE
/// (EINVAL) for a monitor made by heartbeat_monitor_new().
#[no_mangle]
pub extern "C" fn heartbeat_monitor_timeout_ms(monitor: *mut heartbeat_monitor) -> c_int {
    value_or_code(|| {
        Ok(match enter(monitor)?.timeout_ms()? {
            None => -1,
            Some(ms) => ms.min(c_int::MAX as u64) as c_int,
        })
    })
}

/// Runs every ping and death of a thread-free monitor that is due, on the
/// calling thread: the ping_cb and dead_cb callbacks run inside this call
/// (one at a time, without any lock held; they may call every
/// heartbeat_monitor_* function, including unwatch() and free()). Then it
/// re-arms heartbeat_monitor_fd(): readable afterwards exactly when
/// something is due again.
///
/// Everything that was due when it was called is handled (in batches: one
/// lock acquisition per batch of up to 256 events, none per event), plus
/// the deaths of pings that failed meanwhile; what comes due while it runs
/// is left for the next call (the fd is then readable at once), so one call
/// does a bounded amount of work however slow the callbacks are.
///
/// Call it from one thread at a time. A call made while another runs (on
/// another thread, or from one of this monitor's callbacks) does nothing and
/// returns 0, as does a call with nothing due. If a callback frees the
/// monitor, this returns when that callback has returned, handling nothing
/// more, and the monitor must not be used again.
///
/// Returns the number of pings sent (or ping_cb calls) and dead callbacks
/// run (>= 0); HEARTBEAT_ERR_INVALID (errno EINVAL) for NULL;
/// HEARTBEAT_ERR_MODE (EINVAL) for a monitor made by heartbeat_monitor_new(),
/// whose thread does this itself (nothing is done).
#[no_mangle]
pub extern "C" fn heartbeat_monitor_process(monitor: *mut heartbeat_monitor) -> c_int {
    value_or_code(|| {
        let n = enter(monitor)?.process()?;
        Ok(n.min(c_int::MAX as usize) as c_int)
    })
}

/// Starts watching `fd`: it counts as heard from now; its first ping goes
/// out within one interval (spread over the interval across fds, so fds
/// watched together are not pinged together), then one every interval.
/// Nothing is done to the fd now, and the monitor never reads or closes it.
///
/// Returns HEARTBEAT_OK; HEARTBEAT_ERR_ALREADY_WATCHED (errno EEXIST) if
/// `fd` is watched; HEARTBEAT_ERR_INVALID (EINVAL) for a NULL monitor or a
/// negative fd; HEARTBEAT_ERR_NOMEM (ENOMEM) if the fd table cannot grow
/// (the first fd of each block of 4096 fd numbers allocates one; nothing
/// changed). The fd is not checked: a closed fd or
/// non-socket is reported dead (HEARTBEAT_DEAD_SEND_FAILED with EBADF or
/// ENOTSOCK) at its first ping if the monitor sends ping bytes. Thread-safe;
/// callable from callbacks.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_watch(monitor: *mut heartbeat_monitor, fd: c_int) -> c_int {
    guard(|| enter(monitor)?.watch(fd))
}

/// Records that the peer of `fd` was heard from now (the pong, or any
/// data). Cheap enough for every read: no lock, no system call, no
/// allocation (an atomic load, a vDSO CLOCK_MONOTONIC read, an atomic
/// store).
///
/// Returns HEARTBEAT_OK; HEARTBEAT_ERR_NOT_WATCHED (errno ENOENT) if `fd`
/// is not watched, e.g. because it was already declared dead;
/// HEARTBEAT_ERR_INVALID (EINVAL) for a NULL monitor or a negative fd.
/// Thread-safe; callable from callbacks.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_alive(monitor: *mut heartbeat_monitor, fd: c_int) -> c_int {
    guard(|| core(monitor)?.alive(fd))
}

/// Stops watching `fd`. Called outside the monitor's callbacks, it waits for
/// a ping or callback in progress for `fd` and decides its result after
/// that wait, so that when it returns `fd` is not watched and nothing will
/// touch it any more: the application may close it at once, even if the
/// running dead callback watched `fd` again meanwhile (that new watch is
/// stopped too). Called from one of this monitor's callbacks, it does not
/// wait (the running callback is the caller).
///
/// Returns HEARTBEAT_OK if this call stopped a watch of `fd` (the one it
/// found, or one that `fd`'s running callback started while it waited);
/// HEARTBEAT_ERR_NOT_WATCHED (errno ENOENT) if there was none (never
/// watched, already unwatched, or declared dead); HEARTBEAT_ERR_INVALID
/// (EINVAL) for a NULL monitor or a negative fd; HEARTBEAT_ERR_DEADLOCK
/// (EDEADLK), without waiting, if called from another monitor's callback
/// that the running callback for `fd` is itself waiting for (see
/// heartbeat_dead_fn). Do not call it while holding a lock that your
/// callbacks take.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_unwatch(monitor: *mut heartbeat_monitor, fd: c_int) -> c_int {
    guard(|| enter(monitor)?.unwatch(fd))
}

/// Writes to `*out` how many milliseconds ago the peer of `fd` was last
/// heard from (or, if never, since `fd` was watched). Lock-free.
///
/// Returns HEARTBEAT_OK; HEARTBEAT_ERR_NOT_WATCHED (errno ENOENT);
/// HEARTBEAT_ERR_INVALID (EINVAL) for a NULL monitor or `out`, or a
/// negative fd. `*out` is written only on success.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_last_heard_ms(
    monitor: *mut heartbeat_monitor,
    fd: c_int,
    out: *mut c_ulong,
) -> c_int {
    guard(|| {
        let out = out_ref(out)?;
        *out = core(monitor)?.last_heard_ms(fd)? as c_ulong;
        Ok(())
    })
}

/// Copies the monitor's counters to `*out`. Returns HEARTBEAT_OK, or
/// HEARTBEAT_ERR_INVALID (EINVAL) for a NULL argument.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_stats(
    monitor: *mut heartbeat_monitor,
    out: *mut heartbeat_monitor_stats,
) -> c_int {
    guard(|| {
        let out = out_ref(out)?;
        let s = enter(monitor)?.stats();
        *out = heartbeat_monitor_stats {
            watched: s.watched as c_ulong,
            pings: s.pings as c_ulong,
            pings_blocked: s.pings_blocked as c_ulong,
            deaths: s.deaths as c_ulong,
            wakeups: s.wakeups as c_ulong,
            ping_late_max_us: s.ping_late_max_us as c_ulong,
            ping_late: s.ping_late.map(|v| v as c_ulong),
        };
        Ok(())
    })
}

/// Stops the monitor and releases it; NULL is accepted (no-op). Watched
/// fds are left as they are (never closed).
///
/// Outside the monitor's callbacks, it waits for a callback in progress and
/// for the thread's end: when it returns, no callback is running or will
/// run. Called from one of its own callbacks (dead_cb or ping_cb), it
/// returns at once and no further callback starts: not even the dead
/// callback of a ping_cb that frees the monitor and then returns an errno;
/// the thread ends as soon as that callback returns. Called from a callback
/// of another monitor whose running callback waits for the caller's (see
/// heartbeat_dead_fn), it does not wait either (that would deadlock): the
/// monitor stops when its running callback returns.
///
/// Calls in progress: free() may be called while other threads are inside
/// heartbeat_monitor_watch(), _unwatch() or _stats() on the same monitor,
/// for instance a thread blocked in unwatch() waiting for the very callback
/// that calls free(). Those calls finish safely with their usual result
/// (the waiting unwatch() returns when that callback has returned), and the
/// monitor's memory is released when the last of them returns. The
/// lock-free calls heartbeat_monitor_alive() and _last_heard_ms() take no
/// reference (so that they stay one atomic load and store, with no shared
/// write): they must not overlap free(). No call may begin after free() was
/// called: as with free(3), the application orders its calls before it.
///
/// After fork(), in the child: does nothing (takes no lock, waits for
/// nothing, prints nothing, releases nothing: the child's copy of the
/// monitor's memory stays allocated until the child exits or execs); the
/// parent's monitor is not affected.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_free(monitor: *mut heartbeat_monitor) {
    if monitor.is_null() {
        return;
    }
    guard_value((), || {
        // SAFETY: the caller promised a pointer from heartbeat_monitor_new()
        // that is not used again.
        drop(unsafe { Monitor::from_raw(monitor as *const Core) });
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ffi::*;

    extern "C" fn ping(_: *mut heartbeat_monitor, _: c_int, _: *mut c_void) -> c_int {
        0
    }

    extern "C" fn dead(_: *mut heartbeat_monitor, _: c_int, _: c_int, _: c_int, _: *mut c_void) {}

    fn opts() -> heartbeat_monitor_options {
        heartbeat_monitor_options {
            interval_ms: 10,
            timeout_ms: 30,
            ping_data: ptr::null(),
            ping_len: 0,
            ping_cb: None,
            dead_cb: Some(dead),
            user: ptr::null_mut(),
        }
    }

    fn new_code(o: *const heartbeat_monitor_options) -> c_int {
        let mut c = 12345;
        let m = heartbeat_monitor_new(o, &mut c);
        assert_eq!(m.is_null(), c != HEARTBEAT_OK);
        heartbeat_monitor_free(m);
        c
    }

    #[test]
    fn options_are_checked_in_order() {
        assert_eq!(new_code(ptr::null()), HEARTBEAT_ERR_INVALID);
        let mut o = opts();
        o.interval_ms = 0;
        o.dead_cb = None;
        assert_eq!(new_code(&o), HEARTBEAT_ERR_INTERVAL);
        let mut o = opts();
        o.timeout_ms = 10;
        assert_eq!(new_code(&o), HEARTBEAT_ERR_TIMEOUT);
        let mut o = opts();
        o.dead_cb = None;
        assert_eq!(new_code(&o), HEARTBEAT_ERR_DEAD_CALLBACK);
        let mut o = opts();
        o.ping_len = 1;
        assert_eq!(new_code(&o), HEARTBEAT_ERR_PING);
        let b = [0u8; HEARTBEAT_PING_MAX + 1];
        o.ping_data = b.as_ptr().cast();
        o.ping_len = 0;
        assert_eq!(new_code(&o), HEARTBEAT_ERR_PING);
        o.ping_len = HEARTBEAT_PING_MAX + 1;
        assert_eq!(new_code(&o), HEARTBEAT_ERR_PING);
        o.ping_len = HEARTBEAT_PING_MAX;
        assert_eq!(new_code(&o), HEARTBEAT_OK);
        o.ping_cb = Some(ping);
        assert_eq!(new_code(&o), HEARTBEAT_ERR_PING);
        assert_eq!(new_code(&opts()), HEARTBEAT_OK);
        assert_eq!(code_of(Error::Ping), HEARTBEAT_ERR_PING);
        heartbeat_monitor_free(ptr::null_mut());
    }

    #[test]
    fn null_monitor_and_out_are_invalid() {
        let n = ptr::null_mut();
        assert_eq!(heartbeat_monitor_watch(n, 1), HEARTBEAT_ERR_INVALID);
        assert_eq!(heartbeat_monitor_alive(n, 1), HEARTBEAT_ERR_INVALID);
        assert_eq!(heartbeat_monitor_unwatch(n, 1), HEARTBEAT_ERR_INVALID);
        let mut v = 0;
        assert_eq!(
            heartbeat_monitor_last_heard_ms(n, 1, &mut v),
            HEARTBEAT_ERR_INVALID
        );
        let m = heartbeat_monitor_new(&opts(), ptr::null_mut());
        assert!(!m.is_null());
        assert_eq!(
            heartbeat_monitor_last_heard_ms(m, 1, ptr::null_mut()),
            HEARTBEAT_ERR_INVALID
        );
        assert_eq!(
            heartbeat_monitor_stats(m, ptr::null_mut()),
            HEARTBEAT_ERR_INVALID
        );
        heartbeat_monitor_free(m);
    }
}
