//! The error type of the safe core and its one-to-one mapping to the C codes.
//!
//! Every variant carries the `errno` of the system call that failed (or
//! `EINVAL` for arguments rejected before any system call). The FFI layer
//! stores that value in `errno` as its very last action, so cleanup calls made
//! after the failure can never clobber it.

use std::ffi::c_int;

/// An `errno` value, as the failing call left it.
pub type Errno = c_int;

/// What failed. Each variant maps to exactly one C return code (the one
/// exhaustive match in `ffi::code_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// TCP_KEEPIDLE could not be set or read, or the idle time is out of range.
    #[error("{}", msg(MSG_IDLE))]
    Idle(Errno),
    /// TCP_KEEPINTVL could not be set or read, or the interval is out of range.
    #[error("{}", msg(MSG_INTVL))]
    Intvl(Errno),
    /// TCP_KEEPCNT could not be set or read, or the count is out of range.
    #[error("{}", msg(MSG_CNT))]
    Cnt(Errno),
    /// SO_KEEPALIVE could not be set or read, or `enabled` is not 0 or 1.
    #[error("{}", msg(MSG_KEEPALIVE))]
    KeepAlive(Errno),
    /// TCP_USER_TIMEOUT could not be set or read, or the value is out of range.
    #[error("{}", msg(MSG_USER_TIMEOUT))]
    UserTimeout(Errno),
    /// A NULL pointer or otherwise meaningless argument (errno EINVAL).
    #[error("{}", msg(MSG_INVALID))]
    Invalid,
    /// A bug in the library: a panic was caught at the C boundary.
    #[error("{}", msg(MSG_INTERNAL))]
    Internal,
    /// TCP_INFO or SO_ERROR could not be read (status of a connection).
    #[error("{}", msg(MSG_TCP_INFO))]
    TcpInfo(Errno),
    /// The monitor already watches this fd (errno EEXIST).
    #[error("{}", msg(MSG_ALREADY_WATCHED))]
    AlreadyWatched,
    /// The monitor does not watch this fd (errno ENOENT).
    #[error("{}", msg(MSG_NOT_WATCHED))]
    NotWatched,
    /// Memory could not be allocated (errno ENOMEM).
    #[error("{}", msg(MSG_NOMEM))]
    NoMem,
    /// Monitor options: the ping interval is 0 (errno EINVAL).
    #[error("{}", msg(MSG_INTERVAL))]
    Interval,
    /// Monitor options: the timeout is not longer than the interval
    /// (errno EINVAL).
    #[error("{}", msg(MSG_TIMEOUT))]
    Timeout,
    /// Monitor options: no dead-peer callback (errno EINVAL).
    #[error("{}", msg(MSG_DEAD_CALLBACK))]
    DeadCallback,
    /// Monitor options: the ping is inconsistent (errno EINVAL).
    #[error("{}", msg(MSG_PING))]
    Ping,
    /// The monitor thread could not be started (errno from pthread_create).
    #[error("{}", msg(MSG_THREAD))]
    Thread(Errno),
    /// `apply` was refused half way and the socket could not be put back
    /// exactly (a previous value beyond setsockopt's range, or a refused
    /// restoring call); the errno is the refused call's. Each option holds
    /// its old or its new value.
    #[error("{}", msg(MSG_ROLLBACK))]
    Rollback(Errno),
    /// `within`: the deadline is out of range (errno EINVAL).
    #[error("{}", msg(MSG_WITHIN))]
    Within,
    /// A monitor's callback would wait for another monitor's callback that
    /// is waiting for it (errno EDEADLK).
    #[error("{}", msg(MSG_DEADLOCK))]
    Deadlock,
    /// A monitor call that does not fit the monitor's mode: process(),
    /// fd() or timeout_ms() on a monitor with a thread (errno EINVAL).
    #[error("{}", msg(MSG_MODE))]
    Mode,
    /// The thread-free monitor's timer fd could not be created (errno of
    /// timerfd_create).
    #[error("{}", msg(MSG_FD))]
    Fd(Errno),
}

/// The result type of the safe core.
pub type Result<T> = std::result::Result<T, Error>;

// Message texts: each is stored once, NUL-terminated, so that the same bytes
// serve `Display` (without the NUL) and `heartbeat_strerror` (as a C string,
// with no copy and no allocation).
pub(crate) const MSG_OK: &str = "success\0";
pub(crate) const MSG_IDLE: &str = "TCP_KEEPIDLE (idle time before the first probe) could not be set or read, or is out of range\0";
pub(crate) const MSG_INTVL: &str =
    "TCP_KEEPINTVL (interval between probes) could not be set or read, or is out of range\0";
pub(crate) const MSG_CNT: &str = "TCP_KEEPCNT (unanswered probes before the peer is declared dead) could not be set or read, or is out of range\0";
pub(crate) const MSG_KEEPALIVE: &str =
    "SO_KEEPALIVE could not be set or read, or enabled is not 0 or 1\0";
pub(crate) const MSG_USER_TIMEOUT: &str =
    "TCP_USER_TIMEOUT could not be set or read, or is out of range\0";
pub(crate) const MSG_INVALID: &str =
    "invalid argument (NULL pointer or meaningless value); nothing was changed\0";
pub(crate) const MSG_INTERNAL: &str = "internal error in libheartbeat (a bug: please report it)\0";
pub(crate) const MSG_TCP_INFO: &str =
    "TCP_INFO or SO_ERROR could not be read: the fd is not an open TCP socket\0";
pub(crate) const MSG_ALREADY_WATCHED: &str = "the monitor already watches this fd\0";
pub(crate) const MSG_NOT_WATCHED: &str = "the monitor does not watch this fd\0";
pub(crate) const MSG_NOMEM: &str = "out of memory\0";
pub(crate) const MSG_INTERVAL: &str = "monitor options: interval_ms must be greater than 0\0";
pub(crate) const MSG_TIMEOUT: &str =
    "monitor options: timeout_ms must be longer than interval_ms\0";
pub(crate) const MSG_DEAD_CALLBACK: &str = "monitor options: dead_cb must not be NULL\0";
pub(crate) const MSG_PING: &str = "monitor options: ping_data/ping_len/ping_cb are inconsistent (NULL data with a length, a length above HEARTBEAT_PING_MAX, or both bytes and a callback)\0";
pub(crate) const MSG_THREAD: &str = "the monitor thread could not be started\0";
pub(crate) const MSG_ROLLBACK: &str = "an option was refused and the socket could not be put back exactly: each option has its old or its new value (read them with heartbeat_get)\0";
pub(crate) const MSG_WITHIN: &str = "heartbeat_within: ms is out of range (HEARTBEAT_WITHIN_MIN_MS..HEARTBEAT_WITHIN_MAX_MS); nothing was changed\0";
pub(crate) const MSG_DEADLOCK: &str = "unwatch from a callback: the fd's callback on the other monitor is waiting for this callback, so waiting for it would deadlock (not waited for)\0";
pub(crate) const MSG_MODE: &str = "the call does not fit the monitor's mode: process(), fd() and timeout_ms() need a monitor made by heartbeat_monitor_new_loop()\0";
pub(crate) const MSG_FD: &str =
    "the thread-free monitor's timer fd could not be created (timerfd_create failed)\0";
pub(crate) const MSG_UNKNOWN: &str = "unknown libheartbeat error code\0";

/// The text of a message without its terminating NUL.
pub(crate) const fn msg(s: &'static str) -> &'static str {
    // `split_at` is not const on the MSRV; build the slice by hand.
    let bytes = s.as_bytes();
    let (head, _) = bytes.split_at(bytes.len() - 1);
    match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(_) => s,
    }
}

impl Error {
    /// The `errno` that explains this error.
    pub const fn errno(self) -> Errno {
        match self {
            Error::Idle(e)
            | Error::Intvl(e)
            | Error::Cnt(e)
            | Error::KeepAlive(e)
            | Error::UserTimeout(e)
            | Error::TcpInfo(e)
            | Error::Thread(e)
            | Error::Rollback(e)
            | Error::Fd(e) => e,
            Error::Invalid => libc::EINVAL,
            Error::Internal => libc::EIO,
            Error::AlreadyWatched => libc::EEXIST,
            Error::NotWatched => libc::ENOENT,
            Error::NoMem => libc::ENOMEM,
            Error::Deadlock => libc::EDEADLK,
            Error::Interval | Error::Timeout | Error::DeadCallback | Error::Ping => libc::EINVAL,
            Error::Within | Error::Mode => libc::EINVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_carried() {
        assert_eq!(Error::Idle(libc::EBADF).errno(), libc::EBADF);
        assert_eq!(Error::UserTimeout(libc::EPERM).errno(), libc::EPERM);
        assert_eq!(Error::Invalid.errno(), libc::EINVAL);
        assert_eq!(Error::Internal.errno(), libc::EIO);
    }

    #[test]
    fn messages_are_single_nul_terminated() {
        for m in [
            MSG_OK,
            MSG_IDLE,
            MSG_INTVL,
            MSG_CNT,
            MSG_KEEPALIVE,
            MSG_USER_TIMEOUT,
            MSG_INVALID,
            MSG_INTERNAL,
            MSG_ROLLBACK,
            MSG_WITHIN,
            MSG_MODE,
            MSG_FD,
            MSG_UNKNOWN,
        ] {
            assert!(m.ends_with('\0'), "{m:?}");
            assert_eq!(m.matches('\0').count(), 1, "interior NUL in {m:?}");
            assert_eq!(msg(m).len(), m.len() - 1);
        }
    }
}
