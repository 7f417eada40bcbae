//! C functions of the keepalive core: `heartbeat()`, `heartbeat_get()`, ...

use std::ffi::{c_char, c_int, c_uint};

use super::{guard, guard_value, message, out_ref};
use crate::error::{Error, Result};
use crate::keepalive::{self, Config, SlowReaders};

/// `heartbeat_within()` flag: keepalive only, no TCP_USER_TIMEOUT. A peer
/// that is alive but has stopped reading (HEARTBEAT_PEER_STALLED) is then
/// never declared dead. The cost: neither is a peer that vanishes while
/// data is unacknowledged or waiting for its window, until the kernel's own
/// retransmission limit (net.ipv4.tcp_retries2: about 15 minutes of
/// retransmissions, or 15 unanswered window probes up to 120 s apart);
/// `heartbeat_status()` reports HEARTBEAT_PEER_PROBING meanwhile. Idle
/// connections are covered exactly as without the flag.
pub const HEARTBEAT_WITHIN_KEEP_SLOW_READERS: c_uint = 1;
/// Smallest `ms` that `heartbeat_within()` accepts: with keepalive's whole
/// seconds (idle 1, intvl 1, cnt 1, user timeout 2000 ms) and every kernel
/// timer at its latest, no smaller deadline can be guaranteed.
pub const HEARTBEAT_WITHIN_MIN_MS: c_uint = 2785;
/// Largest `ms` that `heartbeat_within()` accepts (24 hours).
pub const HEARTBEAT_WITHIN_MAX_MS: c_uint = 86400000;

/// The keepalive settings of one socket, as read by `heartbeat_get()` and
/// written by `heartbeat_apply()`. A plain value: the caller owns it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct heartbeat_config {
    /// SO_KEEPALIVE: 1 if keepalive probes are sent, 0 if not. Nothing else
    /// is accepted.
    pub enabled: c_int,
    /// TCP_KEEPIDLE: seconds without traffic before the first probe,
    /// HEARTBEAT_IDLE_MIN..HEARTBEAT_IDLE_MAX.
    pub idle: c_int,
    /// TCP_KEEPINTVL: seconds between unanswered probes,
    /// HEARTBEAT_INTVL_MIN..HEARTBEAT_INTVL_MAX.
    pub intvl: c_int,
    /// TCP_KEEPCNT: unanswered probes after which the kernel declares the
    /// peer dead, HEARTBEAT_CNT_MIN..HEARTBEAT_CNT_MAX.
    pub cnt: c_int,
    /// TCP_USER_TIMEOUT: milliseconds that sent data may stay unacknowledged
    /// before the connection is failed with ETIMEDOUT, 0..INT_MAX; 0 keeps
    /// the kernel's default (retransmissions, about 15 minutes).
    /// `heartbeat_deadline_ms(idle, intvl, cnt)` is the recommended value.
    /// Caution: when it is non-zero the kernel lets it override TCP_KEEPCNT
    /// for an idle connection too, so a value longer than
    /// `heartbeat_deadline_ms()` delays keepalive's own verdict until the user
    /// timeout has passed, and a shorter one brings it forward.
    pub user_timeout_ms: c_uint,
}

impl From<Config> for heartbeat_config {
    fn from(c: Config) -> Self {
        heartbeat_config {
            enabled: c_int::from(c.enabled),
            idle: c.idle_secs,
            intvl: c.intvl_secs,
            cnt: c.cnt,
            user_timeout_ms: c.user_timeout_ms,
        }
    }
}

impl TryFrom<&heartbeat_config> for Config {
    type Error = Error;
    fn try_from(c: &heartbeat_config) -> Result<Config> {
        let enabled = match c.enabled {
            0 => false,
            1 => true,
            _ => return Err(Error::KeepAlive(libc::EINVAL)),
        };
        Ok(Config {
            enabled,
            idle_secs: c.idle,
            intvl_secs: c.intvl,
            cnt: c.cnt,
            user_timeout_ms: c.user_timeout_ms,
        })
    }
}

/// Enables TCP keepalive on `fd`: after `idle` seconds without traffic a
/// probe is sent, repeated every `intvl` seconds; after `cnt` unanswered
/// probes the kernel declares the peer dead and fails the socket with
/// ETIMEDOUT (a blocked recv() returns -1; see `heartbeat_deadline_ms()`).
///
/// The arguments are range-checked before any system call: idle 1..32767,
/// intvl 1..32767, cnt 1..127 (HEARTBEAT_*_MIN/MAX). An out-of-range value
/// returns that option's code with errno EINVAL and changes nothing.
///
/// Then exactly four setsockopt() calls are made, in the order TCP_KEEPIDLE,
/// TCP_KEEPINTVL, TCP_KEEPCNT, SO_KEEPALIVE. A negative or closed fd, a
/// non-socket, or a socket that is not TCP fails on the first with
/// HEARTBEAT_ERR_IDLE (errno EBADF, ENOTSOCK, ENOPROTOOPT or EOPNOTSUPP) and
/// nothing is changed. If the kernel refuses a later option (only possible
/// under a policy that filters socket options), that option's code is
/// returned and the options before it stay set; use `heartbeat_apply()` for
/// all or nothing. Works on listening and unconnected TCP sockets too:
/// connections accepted from a listening socket inherit the settings.
///
/// Returns HEARTBEAT_OK, or a negative HEARTBEAT_ERR_* code with errno set.
/// Never retries, never blocks. Thread-safe. The fd is borrowed, never closed.
#[no_mangle]
pub extern "C" fn heartbeat(fd: c_int, idle: c_int, intvl: c_int, cnt: c_int) -> c_int {
    guard(|| keepalive::enable_raw(fd, idle, intvl, cnt))
}

/// Turns TCP keepalive off on `fd` (one setsockopt() of SO_KEEPALIVE = 0).
/// The timer values stay as they were.
///
/// Returns HEARTBEAT_OK, or HEARTBEAT_ERR_KEEPALIVE with errno set (EBADF for
/// a negative or closed fd, ENOTSOCK for a non-socket). The kernel accepts
/// SO_KEEPALIVE on every socket type, so a UDP or UNIX socket succeeds and
/// keeps keepalive off. Thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_disable(fd: c_int) -> c_int {
    guard(|| keepalive::disable_raw(fd))
}

/// Reads the five keepalive settings of `fd` into `*out` (five getsockopt()
/// calls: TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT,
/// SO_KEEPALIVE). Values never set on the socket read as the kernel's
/// defaults, which may be beyond what `heartbeat_apply()` accepts (a
/// namespace's net.ipv4.tcp_keepalive_time can be 40000): applying such a
/// result fails with that field's code and changes nothing.
///
/// An MPTCP socket (IPPROTO_MPTCP) has no TCP_USER_TIMEOUT: the kernel
/// refuses it with EOPNOTSUPP, the library then reads SO_PROTOCOL (a sixth
/// call) and reports `user_timeout_ms` 0, the kernel's default behaviour,
/// which is what such a socket has.
///
/// `*out` is written only on success. Returns HEARTBEAT_OK;
/// HEARTBEAT_ERR_INVALID if `out` is NULL; otherwise the code of the option
/// that could not be read, with errno set (a non-TCP fd: HEARTBEAT_ERR_IDLE).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_get(fd: c_int, out: *mut heartbeat_config) -> c_int {
    guard(|| {
        let out = out_ref(out)?;
        *out = keepalive::get_raw(fd)?.into();
        Ok(())
    })
}

/// Sets all five settings of `*cfg` on `fd`, all or nothing.
///
/// `cfg` is validated first (enabled 0 or 1, idle, intvl and cnt in range,
/// user_timeout_ms at most INT_MAX): a bad field returns that field's code
/// with errno EINVAL and nothing changes; a NULL `cfg` returns
/// HEARTBEAT_ERR_INVALID. Then the five current values are read and the five
/// new ones set (ten system calls; the reads are what makes all-or-nothing
/// possible). If the kernel refuses any option, the options already changed
/// are set back to their previous values, and the refused option's code is
/// returned with the errno of the refused call. If they cannot all be set
/// back exactly (a previous value beyond setsockopt()'s range, such as idle
/// 40000 inherited from a namespace's sysctl, or a restoring call refused
/// too), HEARTBEAT_ERR_ROLLBACK is returned instead, with the refused
/// call's errno: each option then has its previous or its new value. After
/// HEARTBEAT_OK, `heartbeat_get()` returns exactly `*cfg`. `*cfg` is not
/// modified. Thread-safe (but two threads configuring the same fd at once
/// race, as with setsockopt() itself).
///
/// MPTCP sockets have no TCP_USER_TIMEOUT: with `user_timeout_ms` 0 the
/// other four options are set, all or nothing (six reads, four writes);
/// any other value returns HEARTBEAT_ERR_USER_TIMEOUT with errno EOPNOTSUPP
/// and changes nothing.
#[no_mangle]
pub extern "C" fn heartbeat_apply(fd: c_int, cfg: *const heartbeat_config) -> c_int {
    guard(|| {
        // SAFETY: the caller promised that a non-NULL `cfg` points to a config.
        let c = unsafe { cfg.as_ref() }.ok_or(Error::Invalid)?;
        keepalive::apply_raw(fd, &Config::try_from(c)?)
    })
}

/// The configuration that `heartbeat_within(fd, ms, flags)` applies, in
/// `*out`; pure function, no system call. Keepalive (enabled 1, idle,
/// intvl, cnt) and `user_timeout_ms` = `heartbeat_deadline_ms(idle, intvl,
/// cnt)` (0 with HEARTBEAT_WITHIN_KEEP_SLOW_READERS), chosen so that a peer
/// that vanishes is declared dead no later than `ms` after the last segment
/// received from it (or after the send of the oldest data it left
/// unacknowledged), and never earlier than `user_timeout_ms` after it. The
/// deadline is the largest whole number of seconds that meets `ms` with
/// every kernel timer at its latest; it never decreases when `ms` grows.
/// Examples: 3000 gives 1/1/1 and 2000 ms, 5000 gives 1/1/3 and 4000 ms,
/// 10000 gives 5/1/3 and 8000 ms.
///
/// `*out` is written only on success. Returns HEARTBEAT_OK;
/// HEARTBEAT_ERR_INVALID (errno EINVAL) if `out` is NULL or `flags` has a
/// bit other than HEARTBEAT_WITHIN_KEEP_SLOW_READERS; HEARTBEAT_ERR_WITHIN
/// (errno EINVAL) if `ms` is outside
/// HEARTBEAT_WITHIN_MIN_MS..HEARTBEAT_WITHIN_MAX_MS. Thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_config_within(
    ms: c_uint,
    flags: c_uint,
    out: *mut heartbeat_config,
) -> c_int {
    guard(|| {
        let out = out_ref(out)?;
        *out = keepalive::config_within(ms, slow_readers(flags)?)?.into();
        Ok(())
    })
}

/// "Tell me within `ms` milliseconds that the peer is gone": configures
/// keepalive and TCP_USER_TIMEOUT on `fd`, all or nothing, exactly as
/// `heartbeat_apply()` of what `heartbeat_config_within(ms, flags, ...)`
/// returns (five getsockopt() and five setsockopt() calls; on failure the
/// socket is as before, or HEARTBEAT_ERR_ROLLBACK says it could not be).
///
/// What it guarantees (Linux, measured on a cut link in `make test`): a
/// peer that vanishes is declared dead (ETIMEDOUT: a blocked recv()
/// returns -1, poll() reports POLLERR) no later than `ms` after the last
/// segment received from it when the connection was idle, and no later
/// than `ms` after the send of the oldest unacknowledged data when data was
/// in flight (for a peer that vanished right after its last answer, the
/// same moment). Never earlier than `user_timeout_ms` (see
/// `heartbeat_config_within()`) after it. The in-flight case assumes steady
/// round trips of at most 20 ms and the default minimum RTO; longer paths
/// add about three round trips.
///
/// The price of the user timeout: a peer that is alive but stops reading
/// while you have data to send (zero window, HEARTBEAT_PEER_STALLED) is
/// declared dead too, about `user_timeout_ms` after its window closed. With
/// HEARTBEAT_WITHIN_KEEP_SLOW_READERS it is not (see there for the cost).
///
/// Returns HEARTBEAT_OK; HEARTBEAT_ERR_WITHIN (errno EINVAL) for an `ms`
/// out of range and HEARTBEAT_ERR_INVALID (errno EINVAL) for an unknown
/// flag, both before any system call; otherwise as `heartbeat_apply()` (a
/// non-TCP fd: HEARTBEAT_ERR_IDLE; an MPTCP socket without
/// HEARTBEAT_WITHIN_KEEP_SLOW_READERS: HEARTBEAT_ERR_USER_TIMEOUT, errno
/// EOPNOTSUPP, nothing changed). Thread-safe; the fd is borrowed.
#[no_mangle]
pub extern "C" fn heartbeat_within(fd: c_int, ms: c_uint, flags: c_uint) -> c_int {
    guard(|| keepalive::within_raw(fd, ms, slow_readers(flags)?).map(|_| ()))
}

/// The flags of `heartbeat_within()`: an unknown bit is invalid, so that a
/// program written for a later version fails clearly here.
fn slow_readers(flags: c_uint) -> Result<SlowReaders> {
    match flags {
        0 => Ok(SlowReaders::TimeOut),
        HEARTBEAT_WITHIN_KEEP_SLOW_READERS => Ok(SlowReaders::Keep),
        _ => Err(Error::Invalid),
    }
}

/// Reads the kernel's keepalive defaults for new sockets into `*out`:
/// idle from /proc/sys/net/ipv4/tcp_keepalive_time, intvl from
/// tcp_keepalive_intvl, cnt from tcp_keepalive_probes (all of the calling
/// thread's network namespace), with enabled = 0 and user_timeout_ms = 0.
///
/// `*out` is written only on success. Returns HEARTBEAT_OK;
/// HEARTBEAT_ERR_INVALID if `out` is NULL; HEARTBEAT_ERR_IDLE, _INTVL or
/// _CNT if the matching file cannot be read (errno from open()/read()) or
/// does not hold a number (errno EINVAL). Thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_system_defaults(out: *mut heartbeat_config) -> c_int {
    guard(|| {
        let out = out_ref(out)?;
        *out = keepalive::system_defaults()?.into();
        Ok(())
    })
}

/// (idle + intvl * cnt) * 1000: the milliseconds after the last segment
/// received from the peer at which an idle connection with these settings is
/// declared dead. Negative arguments count as 0; the result saturates at
/// UINT_MAX and never overflows.
///
/// It is also the recommended TCP_USER_TIMEOUT (`user_timeout_ms`), so that
/// a connection whose sent data is never acknowledged dies on the same
/// schedule as an idle one. Pure function; thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_deadline_ms(idle: c_int, intvl: c_int, cnt: c_int) -> c_uint {
    guard_value(c_uint::MAX, || keepalive::deadline_ms(idle, intvl, cnt))
}

/// A static, NUL-terminated English message for any return code, never NULL;
/// unknown codes get "unknown libheartbeat error code". The caller must not
/// free or modify it. For the reason behind a failure, see errno
/// (strerror(errno)). Thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_strerror(code: c_int) -> *const c_char {
    message(code).as_ptr().cast()
}

/// The library's version, "MAJOR.MINOR.PATCH" (static, never NULL), equal to
/// the version in Cargo.toml at build time. Thread-safe.
#[no_mangle]
pub extern "C" fn heartbeat_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
