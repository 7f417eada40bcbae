//! The C ABI: a thin layer that only converts between C values and the safe
//! core, inside one panic boundary (`guard`). One module per C type or
//! family of functions; this one holds the codes and the shared helpers.
//!
//! Everything public here is read by cbindgen and becomes `include/heartbeat.h`;
//! the doc comments are the header's documentation.
#![allow(non_camel_case_types)]
// Exported functions take C pointers: the contract that they are NULL or
// valid is the C caller's (documented in the header), not a Rust `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{self, Error, Result};
use crate::sys::set_errno;

/// Success.
pub const HEARTBEAT_OK: c_int = 0;
/// TCP_KEEPIDLE could not be set or read, or `idle` is out of range
/// (errno EINVAL). Same value as the original `heartbeat(fd)` recipe.
///
/// This is also the code for an fd that is not an open TCP socket: every
/// function that takes an fd touches TCP_KEEPIDLE first, so a negative or
/// closed fd fails here with EBADF, a pipe or file with ENOTSOCK, a UDP
/// socket with ENOPROTOOPT (setting, and reading over IPv6) or EOPNOTSUPP
/// (reading over IPv4), a UNIX socket with EOPNOTSUPP, before anything is
/// changed. (`heartbeat_disable()` is the exception: see there.)
pub const HEARTBEAT_ERR_IDLE: c_int = -1;
/// TCP_KEEPINTVL could not be set or read, or `intvl` is out of range
/// (errno EINVAL). Same value as the original recipe.
pub const HEARTBEAT_ERR_INTVL: c_int = -2;
/// TCP_KEEPCNT could not be set or read, or `cnt` is out of range
/// (errno EINVAL). Same value as the original recipe.
pub const HEARTBEAT_ERR_CNT: c_int = -3;
/// SO_KEEPALIVE could not be set or read, or `enabled` is neither 0 nor 1
/// (errno EINVAL). The library never retries a failed call.
pub const HEARTBEAT_ERR_KEEPALIVE: c_int = -4;
/// TCP_USER_TIMEOUT could not be set or read, or `user_timeout_ms` is larger
/// than INT_MAX (errno EINVAL). Also `heartbeat_apply()` (and
/// `heartbeat_within()` without HEARTBEAT_WITHIN_KEEP_SLOW_READERS) of a
/// non-zero `user_timeout_ms` on an MPTCP socket, which has no user timeout
/// (errno EOPNOTSUPP; nothing is changed).
pub const HEARTBEAT_ERR_USER_TIMEOUT: c_int = -5;
/// A NULL pointer or otherwise meaningless argument. errno is EINVAL and
/// nothing was changed.
pub const HEARTBEAT_ERR_INVALID: c_int = -6;
/// A bug in libheartbeat: a Rust panic was caught before it could cross into
/// C. errno is EIO. The socket may be partly configured; please report it.
pub const HEARTBEAT_ERR_INTERNAL: c_int = -7;
/// TCP_INFO or SO_ERROR could not be read by `heartbeat_status()`: the fd is
/// not an open TCP socket (errno EBADF for a negative or closed fd, ENOTSOCK
/// for a pipe or file, EOPNOTSUPP or ENOPROTOOPT for another kind of socket:
/// UDP over IPv4 and UNIX give EOPNOTSUPP, UDP over IPv6 ENOPROTOOPT).
/// Nothing was read or consumed and `*out` is unchanged.
pub const HEARTBEAT_ERR_TCP_INFO: c_int = -8;
/// `heartbeat_monitor_watch()`: the monitor already watches this fd
/// (errno EEXIST). Nothing changed.
pub const HEARTBEAT_ERR_ALREADY_WATCHED: c_int = -9;
/// `heartbeat_monitor_alive()`, `_unwatch()`, `_last_heard_ms()`: the monitor
/// does not watch this fd, or no longer does, for instance because its
/// peer was declared dead (errno ENOENT). Nothing changed.
pub const HEARTBEAT_ERR_NOT_WATCHED: c_int = -10;
/// Memory could not be allocated (errno ENOMEM). Nothing changed.
pub const HEARTBEAT_ERR_NOMEM: c_int = -11;
/// `heartbeat_monitor_new()`: `interval_ms` is 0 (errno EINVAL).
pub const HEARTBEAT_ERR_INTERVAL: c_int = -12;
/// `heartbeat_monitor_new()`: `timeout_ms` is not longer than `interval_ms`
/// (errno EINVAL).
pub const HEARTBEAT_ERR_TIMEOUT: c_int = -13;
/// `heartbeat_monitor_new()`: `dead_cb` is NULL (errno EINVAL).
pub const HEARTBEAT_ERR_DEAD_CALLBACK: c_int = -14;
/// `heartbeat_monitor_new()`: the ping is inconsistent: `ping_len` > 0 with
/// NULL `ping_data`, `ping_len` above HEARTBEAT_PING_MAX, or both ping
/// bytes and `ping_cb` (errno EINVAL).
pub const HEARTBEAT_ERR_PING: c_int = -15;
/// `heartbeat_monitor_new()`: the monitor thread could not be started
/// (errno from pthread_create(), typically EAGAIN).
pub const HEARTBEAT_ERR_THREAD: c_int = -16;
/// A monitor call that does not fit the monitor's mode (errno EINVAL):
/// heartbeat_monitor_process(), _fd() and _timeout_ms() on a monitor made
/// by heartbeat_monitor_new(), which has a thread of its own. Nothing was
/// done.
pub const HEARTBEAT_ERR_MODE: c_int = -19;
/// `heartbeat_monitor_unwatch()` called from a callback of one monitor for
/// an fd whose callback is running on another monitor and is itself waiting
/// (in unwatch() or free() of the first monitor) for the calling callback:
/// waiting would deadlock both threads, so the call did not wait (errno
/// EDEADLK). The fd is no longer watched, but its running callback may
/// still be using it.
pub const HEARTBEAT_ERR_DEADLOCK: c_int = -20;
/// `heartbeat_monitor_new_loop()`: the monitor's timer fd could not be
/// created (errno of timerfd_create(): EMFILE or ENFILE when the process or
/// the system has no fd left, ENOMEM). Nothing was left allocated or open.
pub const HEARTBEAT_ERR_FD: c_int = -21;

/// `heartbeat_apply()` (and `heartbeat_within()`): the kernel refused an
/// option half way and the socket could not be put back exactly as it was,
/// because a previous value is beyond what setsockopt() accepts (in a
/// network namespace whose net.ipv4.tcp_keepalive_time is 40000, every new
/// socket reads idle 40000, and no setsockopt can set that back) or because
/// a restoring call was refused too. errno is the refused call's (not the
/// rollback's). Each of the five options holds either its previous or its
/// new value: read them with `heartbeat_get()`. When the rollback is exact,
/// the refused option's own code is returned instead.
pub const HEARTBEAT_ERR_ROLLBACK: c_int = -17;
/// `heartbeat_within()`, `heartbeat_config_within()`: `ms` is outside
/// HEARTBEAT_WITHIN_MIN_MS..HEARTBEAT_WITHIN_MAX_MS (errno EINVAL). Nothing
/// was changed and no system call was made.
pub const HEARTBEAT_ERR_WITHIN: c_int = -18;

/// Smallest accepted `idle` (seconds).
pub const HEARTBEAT_IDLE_MIN: c_int = 1;
/// Largest accepted `idle` (seconds; the kernel's MAX_TCP_KEEPIDLE).
pub const HEARTBEAT_IDLE_MAX: c_int = 32767;
/// Smallest accepted `intvl` (seconds).
pub const HEARTBEAT_INTVL_MIN: c_int = 1;
/// Largest accepted `intvl` (seconds; the kernel's MAX_TCP_KEEPINTVL).
pub const HEARTBEAT_INTVL_MAX: c_int = 32767;
/// Smallest accepted `cnt` (probes).
pub const HEARTBEAT_CNT_MIN: c_int = 1;
/// Largest accepted `cnt` (probes; the kernel's MAX_TCP_KEEPCNT).
pub const HEARTBEAT_CNT_MAX: c_int = 127;

/// The C code of an error: one exhaustive match, no wildcard, so a new
/// variant cannot be added without a code. Codes are stable: never renumber,
/// never reuse a retired value.
pub(crate) const fn code_of(e: Error) -> c_int {
    match e {
        Error::Idle(_) => HEARTBEAT_ERR_IDLE,
        Error::Intvl(_) => HEARTBEAT_ERR_INTVL,
        Error::Cnt(_) => HEARTBEAT_ERR_CNT,
        Error::KeepAlive(_) => HEARTBEAT_ERR_KEEPALIVE,
        Error::UserTimeout(_) => HEARTBEAT_ERR_USER_TIMEOUT,
        Error::Invalid => HEARTBEAT_ERR_INVALID,
        Error::Internal => HEARTBEAT_ERR_INTERNAL,
        Error::TcpInfo(_) => HEARTBEAT_ERR_TCP_INFO,
        Error::AlreadyWatched => HEARTBEAT_ERR_ALREADY_WATCHED,
        Error::NotWatched => HEARTBEAT_ERR_NOT_WATCHED,
        Error::NoMem => HEARTBEAT_ERR_NOMEM,
        Error::Interval => HEARTBEAT_ERR_INTERVAL,
        Error::Timeout => HEARTBEAT_ERR_TIMEOUT,
        Error::DeadCallback => HEARTBEAT_ERR_DEAD_CALLBACK,
        Error::Ping => HEARTBEAT_ERR_PING,
        Error::Thread(_) => HEARTBEAT_ERR_THREAD,
        Error::Rollback(_) => HEARTBEAT_ERR_ROLLBACK,
        Error::Within => HEARTBEAT_ERR_WITHIN,
        Error::Deadlock => HEARTBEAT_ERR_DEADLOCK,
        Error::Mode => HEARTBEAT_ERR_MODE,
        Error::Fd(_) => HEARTBEAT_ERR_FD,
    }
}

/// The NUL-terminated message of a code (the same bytes as the error's
/// `Display`, plus the NUL); unknown codes get a generic message.
pub(crate) const fn message(code: c_int) -> &'static str {
    match code {
        HEARTBEAT_OK => error::MSG_OK,
        HEARTBEAT_ERR_IDLE => error::MSG_IDLE,
        HEARTBEAT_ERR_INTVL => error::MSG_INTVL,
        HEARTBEAT_ERR_CNT => error::MSG_CNT,
        HEARTBEAT_ERR_KEEPALIVE => error::MSG_KEEPALIVE,
        HEARTBEAT_ERR_USER_TIMEOUT => error::MSG_USER_TIMEOUT,
        HEARTBEAT_ERR_INVALID => error::MSG_INVALID,
        HEARTBEAT_ERR_INTERNAL => error::MSG_INTERNAL,
        HEARTBEAT_ERR_TCP_INFO => error::MSG_TCP_INFO,
        HEARTBEAT_ERR_ALREADY_WATCHED => error::MSG_ALREADY_WATCHED,
        HEARTBEAT_ERR_NOT_WATCHED => error::MSG_NOT_WATCHED,
        HEARTBEAT_ERR_NOMEM => error::MSG_NOMEM,
        HEARTBEAT_ERR_INTERVAL => error::MSG_INTERVAL,
        HEARTBEAT_ERR_TIMEOUT => error::MSG_TIMEOUT,
        HEARTBEAT_ERR_DEAD_CALLBACK => error::MSG_DEAD_CALLBACK,
        HEARTBEAT_ERR_PING => error::MSG_PING,
        HEARTBEAT_ERR_THREAD => error::MSG_THREAD,
        HEARTBEAT_ERR_ROLLBACK => error::MSG_ROLLBACK,
        HEARTBEAT_ERR_WITHIN => error::MSG_WITHIN,
        HEARTBEAT_ERR_DEADLOCK => error::MSG_DEADLOCK,
        HEARTBEAT_ERR_MODE => error::MSG_MODE,
        HEARTBEAT_ERR_FD => error::MSG_FD,
        _ => error::MSG_UNKNOWN,
    }
}

/// The lowest code in use (for tests that walk every code).
#[cfg(test)]
const LOWEST: c_int = HEARTBEAT_ERR_FD;

/// The panic boundary: runs `f`, turns its error into (code, errno) and a
/// panic into HEARTBEAT_ERR_INTERNAL. errno is written last, so nothing the
/// library did after the failing call can clobber it; on success errno is
/// left alone.
///
/// Always inlined into the exported function, so that the function's own
/// symbol is the frame tools see (valgrind suppressions name it; without
/// this, an exported function may tail-call a shared instantiation and
/// vanish from stack traces).
#[inline(always)]
pub(crate) fn guard<F: FnOnce() -> Result<()>>(f: F) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(Error::Internal));
    match r {
        Ok(()) => HEARTBEAT_OK,
        Err(e) => {
            set_errno(e.errno());
            code_of(e)
        }
    }
}

/// Like [`guard`] for functions that cannot fail: a panic gives `fallback`.
pub(crate) fn guard_value<T, F: FnOnce() -> T>(fallback: T, f: F) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The C caller's out pointer, checked for NULL (HEARTBEAT_ERR_INVALID)
/// before any work is done, so that a NULL `out` reads, changes and
/// consumes nothing. Assign through it last: outputs are written only on
/// success.
pub(crate) fn out_ref<'a, T>(out: *mut T) -> Result<&'a mut T> {
    // SAFETY: the caller promised that a non-NULL `out` points to a writable
    // T that stays valid for the call.
    unsafe { out.as_mut() }.ok_or(Error::Invalid)
}

mod keepalive;
pub use keepalive::*;
mod status;
pub use status::*;
mod monitor;
pub use monitor::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalive::Config;
    use std::ffi::CStr;

    #[test]
    fn guard_catches_panics() {
        let rc = guard(|| panic!("boom"));
        assert_eq!(rc, HEARTBEAT_ERR_INTERNAL);
        // SAFETY: errno location is valid.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::EIO);
        assert_eq!(guard_value(7, || -> i32 { panic!("boom") }), 7);
    }

    #[test]
    fn strerror_never_null_and_version_matches() {
        for c in (LOWEST - 3)..=3 {
            let p = heartbeat_strerror(c);
            assert!(!p.is_null());
            // SAFETY: static NUL-terminated string.
            assert!(!unsafe { CStr::from_ptr(p) }.to_bytes().is_empty());
        }
        // SAFETY: static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(heartbeat_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn null_pointers_are_invalid() {
        assert_eq!(
            heartbeat_get(0, std::ptr::null_mut()),
            HEARTBEAT_ERR_INVALID
        );
        assert_eq!(heartbeat_apply(0, std::ptr::null()), HEARTBEAT_ERR_INVALID);
        assert_eq!(
            heartbeat_system_defaults(std::ptr::null_mut()),
            HEARTBEAT_ERR_INVALID
        );
    }

    #[test]
    fn codes_are_distinct_stable_and_match_display() {
        let all = [
            Error::Idle(1),
            Error::Intvl(2),
            Error::Cnt(3),
            Error::KeepAlive(4),
            Error::UserTimeout(5),
            Error::Invalid,
            Error::Internal,
            Error::TcpInfo(6),
            Error::AlreadyWatched,
            Error::NotWatched,
            Error::NoMem,
            Error::Interval,
            Error::Timeout,
            Error::DeadCallback,
            Error::Ping,
            Error::Thread(7),
            Error::Rollback(8),
            Error::Within,
            Error::Mode,
            Error::Deadlock,
            Error::Fd(9),
        ];
        let codes: Vec<c_int> = all.iter().map(|e| code_of(*e)).collect();
        let want: Vec<c_int> = (-21..=-1).rev().collect();
        assert_eq!(codes, want);
        assert_eq!(LOWEST, -21);
        for e in all {
            let m = message(code_of(e));
            assert_ne!(m, error::MSG_UNKNOWN);
            assert_eq!(e.to_string(), &m[..m.len() - 1]);
        }
        assert_eq!(message(1), error::MSG_UNKNOWN);
        assert_eq!(message(LOWEST - 1), error::MSG_UNKNOWN);
        assert_eq!(message(c_int::MIN), error::MSG_UNKNOWN);
    }

    #[test]
    fn enabled_must_be_zero_or_one() {
        let c = heartbeat_config {
            enabled: 2,
            idle: 1,
            intvl: 1,
            cnt: 1,
            user_timeout_ms: 0,
        };
        assert_eq!(Config::try_from(&c), Err(Error::KeepAlive(libc::EINVAL)));
    }
}
