//! C functions of the heartbeat monitor: `heartbeat_monitor_*()`. Only
//! conversions: the behaviour is in `crate::monitor`.

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::os::fd::RawFd;
use std::ptr;

use super::{guard, guard_value, out_ref, HEARTBEAT_OK};
use crate::error::{Errno, Error, Result};
use crate::monitor::{self, Core, Death, Handler, Monitor, Options, Ping};

/// A heartbeat monitor: one background thread (named "heartbeat-mon")
/// that pings watched connections every `interval_ms` and reports a peer
/// dead after `timeout_ms` without news. Opaque: created by
/// `heartbeat_monitor_new()`, released by `heartbeat_monitor_free()`. All
/// functions taking it are safe to call from any thread at any time,
/// including from the monitor's own callbacks.
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
/// it itself, typically with MSG_DONTWAIT). Return 0 if it was sent or the
/// send would block (not a death); return an errno value (> 0, e.g. EPIPE)
/// if the connection is broken: the dead callback then runs with
/// HEARTBEAT_DEAD_SEND_FAILED and that value (a negative return counts as
/// EIO). Runs on the monitor thread; must return normally (no longjmp, no
/// C++ exception).
pub type heartbeat_ping_fn =
    Option<extern "C" fn(monitor: *mut heartbeat_monitor, fd: c_int, user: *mut c_void) -> c_int>;

/// Dead callback: the peer of `fd` is considered gone. `reason` is
/// HEARTBEAT_DEAD_SILENCE (error 0) or HEARTBEAT_DEAD_SEND_FAILED (error =
/// the errno). Called exactly once per watch; `fd` is no longer watched when
/// it runs, and the monitor never closes it: that is the application's job
/// (here or later). It may call any heartbeat_monitor_* function on the same
/// monitor, including watch(fd) to start over and heartbeat_monitor_free()
/// (then it must not use the monitor again). Runs on the monitor thread,
/// one callback at a time; must return normally (no longjmp, no C++
/// exception) and should be short: the next pings wait for it.
pub type heartbeat_dead_fn = Option<
    extern "C" fn(
        monitor: *mut heartbeat_monitor,
        fd: c_int,
        reason: c_int,
        error: c_int,
        user: *mut c_void,
    ),
>;

/// Options of `heartbeat_monitor_new()`. Zero-initialise, then set fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct heartbeat_monitor_options {
    /// Ping period, milliseconds; must be > 0 (also without pings).
    pub interval_ms: c_uint,
    /// A peer not heard from for this many milliseconds is dead; must be
    /// longer than `interval_ms`. A peer answering every ping within
    /// `timeout_ms - interval_ms` is never declared dead.
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
/// Linux; on 32-bit systems the counters wrap at 2^32.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct heartbeat_monitor_stats {
    /// Fds watched now.
    pub watched: c_ulong,
    /// Pings sent, or ping callbacks called.
    pub pings: c_ulong,
    /// Pings skipped because the send would block.
    pub pings_blocked: c_ulong,
    /// Dead callbacks delivered.
    pub deaths: c_ulong,
    /// Times the monitor thread woke up.
    pub wakeups: c_ulong,
    /// Largest lateness of a ping behind its due time, microseconds.
    pub ping_late_max_us: c_ulong,
    /// Histogram of ping lateness behind the due time. Bucket i counts pings
    /// less than B[i] microseconds late (and at least B[i-1]), with B = 1, 2,
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
// on the monitor thread; the header documents that they run there.
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

fn core<'a>(m: *mut heartbeat_monitor) -> Result<&'a Core> {
    // SAFETY: the caller promised that a non-NULL `m` comes from
    // heartbeat_monitor_new() and has not been freed.
    unsafe { (m as *const Core).as_ref() }.ok_or(Error::Invalid)
}

fn create(o: *const heartbeat_monitor_options) -> Result<Monitor> {
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
            v.extend_from_slice(b);
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
        },
        Box::new(handler),
    )
}

/// Creates a monitor and starts its thread.
///
/// The options are checked in this order, and the first failure is
/// returned: `options` NULL (HEARTBEAT_ERR_INVALID), `interval_ms` 0
/// (HEARTBEAT_ERR_INTERVAL), `timeout_ms <= interval_ms`
/// (HEARTBEAT_ERR_TIMEOUT), `dead_cb` NULL (HEARTBEAT_ERR_DEAD_CALLBACK),
/// an inconsistent ping (HEARTBEAT_ERR_PING); all with errno EINVAL. Then
/// HEARTBEAT_ERR_NOMEM (ENOMEM) or HEARTBEAT_ERR_THREAD (errno of
/// pthread_create) if resources are missing.
///
/// Returns the monitor, or NULL with errno set. If `code` is not NULL,
/// `*code` receives HEARTBEAT_OK or the error code (on failure too: it is an
/// error report, not a result). `*options` is copied, ping bytes included.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_new(
    options: *const heartbeat_monitor_options,
    code: *mut c_int,
) -> *mut heartbeat_monitor {
    let mut out = ptr::null_mut();
    let rc = guard(|| {
        out = Monitor::into_raw(create(options)?) as *mut heartbeat_monitor;
        Ok(())
    });
    if !code.is_null() {
        // SAFETY: the caller promised that a non-NULL `code` is writable.
        unsafe { *code = rc };
    }
    debug_assert_eq!(rc == HEARTBEAT_OK, !out.is_null());
    out
}

/// Starts watching `fd`: it counts as heard from now; its first ping goes
/// out within one interval (spread over the interval across fds, so fds
/// watched together are not pinged together), then one every interval.
/// Nothing is done to the fd now, and the monitor never reads or closes it.
///
/// Returns HEARTBEAT_OK; HEARTBEAT_ERR_ALREADY_WATCHED (errno EEXIST) if
/// `fd` is watched; HEARTBEAT_ERR_INVALID (EINVAL) for a NULL monitor or a
/// negative fd; HEARTBEAT_ERR_NOMEM. The fd is not checked: a closed fd or
/// non-socket is reported dead (HEARTBEAT_DEAD_SEND_FAILED with EBADF or
/// ENOTSOCK) at its first ping if the monitor sends ping bytes. Thread-safe;
/// callable from callbacks.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_watch(monitor: *mut heartbeat_monitor, fd: c_int) -> c_int {
    guard(|| core(monitor)?.watch(fd))
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

/// Stops watching `fd`. Called outside the monitor's callbacks, it first
/// waits for a ping or callback in progress for `fd` (whatever it returns),
/// so that when it returns nothing will touch `fd` any more and the
/// application may close it at once. Called from a callback, it does not
/// wait (the running callback is the caller).
///
/// Returns HEARTBEAT_OK; HEARTBEAT_ERR_NOT_WATCHED (errno ENOENT) if `fd`
/// is not watched (never was, already unwatched, or declared dead);
/// HEARTBEAT_ERR_INVALID (EINVAL) for a NULL monitor or a negative fd.
/// Do not call it while holding a lock that your callbacks take.
#[no_mangle]
pub extern "C" fn heartbeat_monitor_unwatch(monitor: *mut heartbeat_monitor, fd: c_int) -> c_int {
    guard(|| core(monitor)?.unwatch(fd))
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
        let s = core(monitor)?.stats();
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

/// Stops the monitor and releases it; NULL is accepted (no-op). Outside
/// the monitor's callbacks, waits for a callback in progress: when it
/// returns, no callback is running or will run. Called from one of its own
/// callbacks, it returns at once and the monitor is released as soon as that
/// callback returns. Watched fds are left as they are (never closed).
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

#[cfg(test)]
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
