//! The safe core: TCP keepalive configuration of one socket.
//!
//! Every function here makes the minimum number of system calls and no heap
//! allocation. A socket is borrowed, never owned or closed: functions take
//! `&impl AsFd` (a `&TcpStream`, a `&socket2::Socket`, a `&BorrowedFd`...),
//! so the compiler refuses a call that would move the caller's socket in
//! (and close it when the call returns).
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use heartbeat::keepalive::{self, Config};
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let stream = TcpStream::connect(listener.local_addr()?)?;
//!
//! // Probe after 10 s of silence, every 5 s; dead after 3 unanswered probes.
//! keepalive::enable(&stream, 10, 5, 3)?;
//! assert_eq!(keepalive::get(&stream)?.idle_secs, 10);
//!
//! // Or say only when you want to know: dead within 10 s, all or nothing.
//! let cfg: Config = keepalive::within(&stream, 10_000, keepalive::SlowReaders::TimeOut)?;
//! assert!(cfg.deadline_ms() <= 10_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Passing the socket itself, which would move it into the call and close
//! it, does not compile:
//!
//! ```compile_fail,E0308
//! # let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! # let stream = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
//! heartbeat::keepalive::enable(stream, 10, 5, 3).unwrap(); // expected `&_`
//! ```
//!
//! The C ABI (`crate::ffi`) receives plain `int` fds. It calls the
//! crate-private `*_raw` functions below, which pass the number to the
//! kernel unchanged: a negative or closed fd is answered with EBADF by the
//! first system call, exactly as before. (It does not build a
//! `BorrowedFd` with `BorrowedFd::borrow_raw`: that requires an fd that is
//! open for the whole borrow and not -1, and panics on -1, which a C caller
//! is free to pass.)

use std::ffi::c_int;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use crate::error::{Errno, Error, Result};
use crate::sys;

/// The five settings that decide when the kernel declares a peer dead.
///
/// Values are in the kernel's units: whole seconds for the keepalive timers,
/// milliseconds for the user timeout (0 = the kernel's default behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// SO_KEEPALIVE: whether keepalive probes are sent at all.
    pub enabled: bool,
    /// TCP_KEEPIDLE: seconds without traffic before the first probe (1..=32767).
    pub idle_secs: c_int,
    /// TCP_KEEPINTVL: seconds between unanswered probes (1..=32767).
    pub intvl_secs: c_int,
    /// TCP_KEEPCNT: unanswered probes before the peer is declared dead (1..=127).
    pub cnt: c_int,
    /// TCP_USER_TIMEOUT: milliseconds that sent data may stay unacknowledged
    /// (0..=INT_MAX; 0 means the kernel's default).
    pub user_timeout_ms: u32,
}

impl Config {
    /// Checks every field against the kernel's ranges; the first bad field
    /// (in the order idle, intvl, cnt, user timeout) names the error.
    pub fn validate(&self) -> Result<()> {
        check(IDLE, self.idle_secs)?;
        check(INTVL, self.intvl_secs)?;
        check(CNT, self.cnt)?;
        if self.user_timeout_ms > sys::MAX_USER_TIMEOUT_MS {
            return Err(Error::UserTimeout(libc::EINVAL));
        }
        Ok(())
    }

    /// When an idle connection with this configuration is declared dead,
    /// in milliseconds after the last received segment.
    pub fn deadline_ms(&self) -> u32 {
        deadline_ms(self.idle_secs, self.intvl_secs, self.cnt)
    }
}

/// One managed option: its (level, name), the error that names it, and the
/// values setsockopt() accepts for it.
#[derive(Clone, Copy)]
struct Opt {
    id: (c_int, c_int),
    err: fn(Errno) -> Error,
    min: c_int,
    max: c_int,
}

const IDLE: Opt = Opt {
    id: sys::TCP_KEEPIDLE,
    err: Error::Idle,
    min: 1,
    max: sys::MAX_KEEPIDLE,
};
const INTVL: Opt = Opt {
    id: sys::TCP_KEEPINTVL,
    err: Error::Intvl,
    min: 1,
    max: sys::MAX_KEEPINTVL,
};
const CNT: Opt = Opt {
    id: sys::TCP_KEEPCNT,
    err: Error::Cnt,
    min: 1,
    max: sys::MAX_KEEPCNT,
};
const USER_TIMEOUT: Opt = Opt {
    id: sys::TCP_USER_TIMEOUT,
    err: Error::UserTimeout,
    min: 0,
    max: sys::MAX_USER_TIMEOUT_MS as c_int,
};
const KEEPALIVE: Opt = Opt {
    id: sys::SO_KEEPALIVE,
    err: Error::KeepAlive,
    min: 0,
    max: 1,
};

/// The order of every sequence of calls: the TCP-level options first, so
/// that a closed fd (EBADF), a non-socket (ENOTSOCK) or a socket that is not
/// TCP (UDP: ENOPROTOOPT or EOPNOTSUPP; UNIX: EOPNOTSUPP) fails on the first
/// call, before anything is changed; SO_KEEPALIVE, which every socket
/// accepts, last.
const ORDER: [Opt; 5] = [IDLE, INTVL, CNT, USER_TIMEOUT, KEEPALIVE];
/// The position of TCP_USER_TIMEOUT in [`ORDER`] (absent on MPTCP sockets).
const UT: usize = 3;

/// The kernel's accepted range of `opt`, checked before any system call.
fn check(opt: Opt, v: c_int) -> Result<()> {
    if (opt.min..=opt.max).contains(&v) {
        Ok(())
    } else {
        Err((opt.err)(libc::EINVAL))
    }
}

fn set(fd: RawFd, opt: Opt, v: c_int) -> Result<()> {
    sys::setsockopt(fd, opt.id, v).map_err(opt.err)
}

fn get_one(fd: RawFd, opt: Opt) -> Result<c_int> {
    sys::getsockopt::<c_int>(fd, opt.id).map_err(opt.err)
}

fn values(cfg: &Config) -> [c_int; 5] {
    // user_timeout_ms <= INT_MAX after validate(); saturate all the same.
    let ut = c_int::try_from(cfg.user_timeout_ms).unwrap_or(c_int::MAX);
    [
        cfg.idle_secs,
        cfg.intvl_secs,
        cfg.cnt,
        ut,
        c_int::from(cfg.enabled),
    ]
}

/// The raw fd of a borrowed socket, for the kernel.
fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// Turns keepalive on: probe after `idle_secs` without traffic, every
/// `intvl_secs`, give up after `cnt` unanswered probes.
///
/// Exactly four `setsockopt` calls (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
/// SO_KEEPALIVE, in that order) after the arguments are range-checked. If
/// the kernel refuses a later option, the earlier ones stay set: use
/// [`apply`] for all or nothing.
///
/// ```
/// # let l = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let stream = std::net::TcpStream::connect(l.local_addr()?)?;
/// use heartbeat::{keepalive, Error};
/// keepalive::enable(&stream, 10, 5, 3)?;
/// // Out of range: refused before any system call, nothing changed.
/// assert_eq!(keepalive::enable(&stream, 0, 5, 3), Err(Error::Idle(libc::EINVAL)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn enable(fd: &impl AsFd, idle_secs: c_int, intvl_secs: c_int, cnt: c_int) -> Result<()> {
    enable_raw(raw(fd), idle_secs, intvl_secs, cnt)
}

pub(crate) fn enable_raw(fd: RawFd, idle_secs: c_int, intvl_secs: c_int, cnt: c_int) -> Result<()> {
    check(IDLE, idle_secs)?;
    check(INTVL, intvl_secs)?;
    check(CNT, cnt)?;
    set(fd, IDLE, idle_secs)?;
    set(fd, INTVL, intvl_secs)?;
    set(fd, CNT, cnt)?;
    set(fd, KEEPALIVE, 1)
}

/// Turns keepalive off (one `setsockopt` of SO_KEEPALIVE). The timers keep
/// their values, so a later `SO_KEEPALIVE` on uses them again.
pub fn disable(fd: &impl AsFd) -> Result<()> {
    disable_raw(raw(fd))
}

pub(crate) fn disable_raw(fd: RawFd) -> Result<()> {
    set(fd, KEEPALIVE, 0)
}

/// The five current values, in [`ORDER`], and whether the socket has a
/// TCP_USER_TIMEOUT at all.
struct Current {
    v: [c_int; 5],
    has_user_timeout: bool,
}

/// Reads the five options: five `getsockopt` calls on a TCP socket. An
/// MPTCP socket refuses TCP_USER_TIMEOUT with EOPNOTSUPP; only then is
/// SO_PROTOCOL read (a sixth call) to tell it from a refusal on a TCP
/// socket (a seccomp policy, say), which stays an error.
fn read_current(fd: RawFd) -> Result<Current> {
    let mut cur = Current {
        v: [0; 5],
        has_user_timeout: true,
    };
    // The expected refusal must not leave its errno behind on success.
    let caller_errno = sys::errno();
    for (i, opt) in ORDER.iter().enumerate() {
        match get_one(fd, *opt) {
            Ok(v) => cur.v[i] = v,
            Err(Error::UserTimeout(libc::EOPNOTSUPP))
                if sys::getsockopt::<c_int>(fd, sys::SO_PROTOCOL) == Ok(sys::IPPROTO_MPTCP) =>
            {
                cur.has_user_timeout = false;
                sys::set_errno(caller_errno);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Reads the five settings from the socket (five `getsockopt` calls).
///
/// An MPTCP socket has no TCP_USER_TIMEOUT: `user_timeout_ms` reads 0 (the
/// kernel's default behaviour, which is what it has), at the cost of one
/// more call (SO_PROTOCOL).
pub fn get(fd: &impl AsFd) -> Result<Config> {
    get_raw(raw(fd))
}

pub(crate) fn get_raw(fd: RawFd) -> Result<Config> {
    let v = read_current(fd)?.v;
    Ok(Config {
        idle_secs: v[0],
        intvl_secs: v[1],
        cnt: v[2],
        // The kernel stores a non-negative int (0 when there is none).
        user_timeout_ms: u32::try_from(v[UT]).unwrap_or(0),
        enabled: v[4] != 0,
    })
}

/// Sets all five settings, all or nothing.
///
/// Reads the five current values, then sets the five new ones. If the kernel
/// refuses one, the options already changed are set back to their old values
/// (newest first) and the error of the refused option is returned, with the
/// `errno` of the refused call.
///
/// If the socket cannot be put back exactly, [`Error::Rollback`] is
/// returned instead (with the refused call's errno): a previous value was
/// outside what setsockopt() accepts (a namespace whose
/// `net.ipv4.tcp_keepalive_time` is 40000 gives every new socket idle
/// 40000, which no setsockopt can restore), or a restoring call was refused
/// too. Each option then holds either its old or its new value.
///
/// MPTCP sockets have no TCP_USER_TIMEOUT: a configuration with
/// `user_timeout_ms` 0 sets the other four (one more read, SO_PROTOCOL,
/// four writes); any other value is refused with
/// `Error::UserTimeout(EOPNOTSUPP)` before anything is changed.
pub fn apply(fd: &impl AsFd, cfg: &Config) -> Result<()> {
    apply_raw(raw(fd), cfg)
}

pub(crate) fn apply_raw(fd: RawFd, cfg: &Config) -> Result<()> {
    cfg.validate()?;
    let cur = read_current(fd)?;
    if !cur.has_user_timeout && cfg.user_timeout_ms != 0 {
        return Err(Error::UserTimeout(libc::EOPNOTSUPP));
    }
    let managed = |i: usize| i != UT || cur.has_user_timeout;
    let new = values(cfg);
    for (i, opt) in ORDER.iter().enumerate() {
        if !managed(i) {
            continue;
        }
        if let Err(e) = set(fd, *opt, new[i]) {
            // Newest first; past a failure too, so that as much as possible
            // is put back. The caller learns about the first failure.
            let mut exact = true;
            for j in (0..i).rev().filter(|&j| managed(j)) {
                let (opt, old) = (ORDER[j], cur.v[j]);
                if check(opt, old).is_err() || set(fd, opt, old).is_err() {
                    exact = false;
                }
            }
            return Err(if exact { e } else { Error::Rollback(e.errno()) });
        }
    }
    Ok(())
}

/// The socket's protocol (SO_PROTOCOL: `IPPROTO_TCP` for TCP,
/// `IPPROTO_UDP`, `IPPROTO_MPTCP`, 0 for UNIX sockets, ...): one
/// `getsockopt`, or the errno it failed with (EBADF, ENOTSOCK). For callers
/// that must tell TCP sockets from others before configuring them (the
/// preload library); [`apply`] itself already refuses every socket that is
/// neither TCP nor MPTCP on its first call.
pub fn protocol(fd: &impl AsFd) -> std::result::Result<c_int, Errno> {
    sys::getsockopt::<c_int>(raw(fd), sys::SO_PROTOCOL)
}

/// `(idle + intvl * cnt) * 1000`: the milliseconds after the last received
/// segment at which an idle connection is declared dead. Negative arguments
/// count as 0; the result saturates at `u32::MAX`.
pub fn deadline_ms(idle_secs: c_int, intvl_secs: c_int, cnt: c_int) -> u32 {
    let f = |v: c_int| u64::from(v.max(0).unsigned_abs());
    let secs = f(idle_secs) + f(intvl_secs) * f(cnt);
    u32::try_from(secs.saturating_mul(1000)).unwrap_or(u32::MAX)
}

// --- "Dead within T": heartbeat_within() -----------------------------------

/// What [`within`] and [`config_within`] do about a peer that is alive but
/// has stopped reading (its receive window is zero while we have data for
/// it: [`Peer::Stalled`](crate::status::Peer::Stalled)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowReaders {
    /// The default: keepalive for idle connections and TCP_USER_TIMEOUT for
    /// data in flight, so a vanished peer is declared dead within the
    /// deadline in both cases; a peer that is alive but stops reading while
    /// you have data to send times out too, about `user_timeout_ms` after
    /// its window closed.
    #[default]
    TimeOut,
    /// Keepalive only, no TCP_USER_TIMEOUT (`user_timeout_ms` 0): a peer
    /// that is alive but stops reading is never declared dead, but neither
    /// is a vanished peer while data is unacknowledged or waiting for its
    /// window, until the kernel's own retransmission limit
    /// (net.ipv4.tcp_retries2: about 15 minutes of retransmissions, or 15
    /// unanswered window probes up to 120 s apart). Idle connections are
    /// covered as with [`SlowReaders::TimeOut`]. The C flag
    /// HEARTBEAT_WITHIN_KEEP_SLOW_READERS.
    Keep,
}

/// The smallest `ms` that [`config_within`] accepts: the latest verdict of
/// the smallest configuration (idle 1 s, interval 1 s, 1 probe, user timeout
/// 2000 ms) with every kernel timer at its latest (see [`config_within`]).
pub const WITHIN_MIN_MS: u32 = 2785;
/// The largest `ms` that [`config_within`] accepts (24 hours).
pub const WITHIN_MAX_MS: u32 = 86_400_000;

/// TCP_USER_TIMEOUT's clock starts at the first retransmission, which the
/// kernel sends after a tail-loss probe (2 RTT + 200 ms with one segment in
/// flight) and one RTO (RTT + 200 ms): 0.42 s after the send on a LAN
/// (measured). This budget, 600 ms, covers both timers at their latest
/// (460 + 119 ms) for steady round trips up to 20 ms and the default
/// minimum RTO (200 ms). A zero-window probe timer starts after one RTO.
const INFLIGHT_START_MS: u64 = 600;
/// The first backed-off RTO of a path within that budget (2 x 220 ms): the
/// retransmission timers double from it, so the last one, clamped to the
/// user timeout, is at most (user timeout + this) / 2 long.
const INFLIGHT_FIRST_BACKOFF_MS: u64 = 440;

/// Keepalive settings for a deadline of `d` whole seconds (2..): idle,
/// interval and probe count with `idle + cnt * intvl == d` (or just below,
/// when idle is capped at 32767 s). Three probes from 5 s on, spread over
/// the second half, so that an idle live connection sends one probe per
/// `idle` (about d/2) seconds; below 5 s, 1 s apart.
fn split(d: u32) -> (c_int, c_int, c_int) {
    let d = d.clamp(2, 3 * sys::MAX_KEEPINTVL as u32 + sys::MAX_KEEPIDLE as u32) as c_int;
    if d <= 4 {
        return (1, 1, d - 1);
    }
    let intvl = (d / 6).max(1);
    let idle = d - 3 * intvl;
    if idle <= sys::MAX_KEEPIDLE {
        (idle, intvl, 3)
    } else {
        (sys::MAX_KEEPIDLE, (d - sys::MAX_KEEPIDLE) / 3, 3)
    }
}

/// The latest moment, in ms, at which a vanished peer is declared dead
/// with keepalive (idle, intvl, cnt) and a user timeout equal to their
/// deadline, every kernel timer at its latest ([`sys::timer_late_ms`]):
///
/// * idle connection, counted from the last segment received: the idle
///   timer and `cnt` interval timers, each late;
/// * data in flight (or waiting for a zero window), counted from the send:
///   [`INFLIGHT_START_MS`], then the user timeout, whose last
///   retransmission (or window-probe) timer may be late.
pub(crate) fn latest_ms(idle: c_int, intvl: c_int, cnt: c_int) -> u64 {
    let ut = u64::from(deadline_ms(idle, intvl, cnt));
    let late = |ms: u64| u64::from(sys::timer_late_ms(u32::try_from(ms).unwrap_or(u32::MAX)));
    let secs = |s: c_int| u64::from(s.max(0).unsigned_abs()) * 1000;
    let idle_case =
        ut + late(secs(idle)) + u64::from(cnt.max(0).unsigned_abs()) * late(secs(intvl));
    let last_timer = ((ut + INFLIGHT_FIRST_BACKOFF_MS) / 2).min(u64::from(sys::TCP_RTO_MAX_MS));
    let inflight_case = INFLIGHT_START_MS + ut + late(last_timer);
    idle_case.max(inflight_case)
}

/// The configuration that [`within`] applies: keepalive and a user timeout
/// such that a peer that vanishes is declared dead no later than `ms` after
/// the last segment received from it (idle connection), or after the send
/// of the oldest unacknowledged data (data in flight; the same point when
/// the peer vanished right after its last answer), and never before
/// `user_timeout_ms` (= the keepalive deadline) after it.
///
/// Pure function. `ms` must be `WITHIN_MIN_MS..=WITHIN_MAX_MS`, otherwise
/// [`Error::Within`]. The deadline is the largest whole number of seconds
/// whose latest verdict is at most `ms`, every kernel timer counted at its
/// latest (a timer of L ms fires up to 8L/63 + 30 ms late, whatever the
/// kernel's HZ; data in flight starts the user timeout's clock up to 600 ms
/// after the send); it is non-decreasing in `ms`. With [`SlowReaders::Keep`] the
/// keepalive settings are the same and `user_timeout_ms` is 0.
///
/// ```
/// use heartbeat::keepalive::{config_within, Config, SlowReaders};
/// let cfg = config_within(10_000, SlowReaders::TimeOut)?;
/// assert_eq!(cfg, Config { enabled: true, idle_secs: 5, intvl_secs: 1, cnt: 3, user_timeout_ms: 8000 });
/// assert_eq!(config_within(10_000, SlowReaders::Keep)?.user_timeout_ms, 0);
/// assert!(config_within(1000, SlowReaders::TimeOut).is_err());
/// # Ok::<(), heartbeat::Error>(())
/// ```
pub fn config_within(ms: u32, slow: SlowReaders) -> Result<Config> {
    if !(WITHIN_MIN_MS..=WITHIN_MAX_MS).contains(&ms) {
        return Err(Error::Within);
    }
    let fits = |d: u32| {
        let (i, n, c) = split(d);
        latest_ms(i, n, c) <= u64::from(ms)
    };
    // The largest d in 2..=ms/1000 that fits: latest_ms(split(d)) is
    // non-decreasing in d (unit-tested over the whole range), and d = 2
    // fits because ms >= WITHIN_MIN_MS. At most 17 halvings.
    let (mut lo, mut hi) = (2, ms / 1000);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let (idle_secs, intvl_secs, cnt) = split(lo);
    let user_timeout_ms = if slow == SlowReaders::Keep {
        0
    } else {
        deadline_ms(idle_secs, intvl_secs, cnt)
    };
    Ok(Config {
        enabled: true,
        idle_secs,
        intvl_secs,
        cnt,
        user_timeout_ms,
    })
}

/// "Tell me within `ms` that the peer is gone": applies
/// [`config_within`]`(ms, slow)` with [`apply`] (all or nothing: five reads,
/// five writes) and returns the configuration it set.
///
/// An `ms` out of range gives [`Error::Within`] before any system call. An
/// MPTCP socket has no user timeout: use
/// [`SlowReaders::Keep`] there, otherwise the call fails with
/// `Error::UserTimeout(EOPNOTSUPP)` and changes nothing.
///
/// ```
/// # let l = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let stream = std::net::TcpStream::connect(l.local_addr()?)?;
/// use heartbeat::keepalive::{self, SlowReaders};
/// let cfg = keepalive::within(&stream, 5_000, SlowReaders::TimeOut)?;
/// assert_eq!(keepalive::get(&stream)?, cfg);
/// assert_eq!(cfg.user_timeout_ms, cfg.deadline_ms());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn within(fd: &impl AsFd, ms: u32, slow: SlowReaders) -> Result<Config> {
    within_raw(raw(fd), ms, slow)
}

pub(crate) fn within_raw(fd: RawFd, ms: u32, slow: SlowReaders) -> Result<Config> {
    let cfg = config_within(ms, slow)?;
    apply_raw(fd, &cfg)?;
    Ok(cfg)
}

/// The kernel's defaults for new sockets, from
/// `/proc/sys/net/ipv4/tcp_keepalive_{time,intvl,probes}` of the caller's
/// network namespace (`enabled` false, `user_timeout_ms` 0).
pub fn system_defaults() -> Result<Config> {
    system_defaults_from(
        sys::PROC_KEEPALIVE_TIME,
        sys::PROC_KEEPALIVE_INTVL,
        sys::PROC_KEEPALIVE_PROBES,
    )
}

pub(crate) fn system_defaults_from(time: &str, intvl: &str, probes: &str) -> Result<Config> {
    Ok(Config {
        enabled: false,
        idle_secs: read_int(time).map_err(Error::Idle)?,
        intvl_secs: read_int(intvl).map_err(Error::Intvl)?,
        cnt: read_int(probes).map_err(Error::Cnt)?,
        user_timeout_ms: 0,
    })
}

/// Reads one small decimal integer file into a stack buffer.
fn read_int(path: &str) -> std::result::Result<c_int, Errno> {
    let os = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let mut f = std::fs::File::open(path).map_err(os)?;
    let mut buf = [0u8; 32];
    let mut n = 0;
    loop {
        // Bounded: at most buf.len() bytes are accepted.
        let r = f.read(&mut buf[n..]).map_err(os)?;
        if r == 0 {
            break;
        }
        n += r;
        if n == buf.len() {
            return Err(libc::EINVAL);
        }
    }
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.trim().parse::<c_int>().ok())
        .ok_or(libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

    fn pair() -> (TcpListener, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l, c)
    }

    fn raw_get(fd: RawFd, opt: (c_int, c_int)) -> c_int {
        sys::getsockopt::<c_int>(fd, opt).unwrap()
    }

    #[test]
    fn deadline_is_exact_and_saturates() {
        assert_eq!(deadline_ms(1, 1, 3), 4000);
        assert_eq!(deadline_ms(7200, 75, 9), 7_875_000);
        assert_eq!(deadline_ms(0, 0, 0), 0);
        assert_eq!(deadline_ms(-5, 2, -1), 0);
        assert_eq!(deadline_ms(c_int::MAX, c_int::MAX, c_int::MAX), u32::MAX);
        assert_eq!(deadline_ms(c_int::MIN, 1, 1), 1000);
        // 4294967 s fits, 4294968 s does not.
        assert_eq!(deadline_ms(4_294_967, 0, 0), 4_294_967_000);
        assert_eq!(deadline_ms(4_294_968, 0, 0), u32::MAX);
    }

    #[test]
    fn enable_sets_four_options_get_set_get() {
        let (_l, c) = pair();
        let fd = c.as_raw_fd();
        assert_eq!(raw_get(fd, sys::SO_KEEPALIVE), 0);
        enable(&c, 11, 7, 5).unwrap();
        assert_eq!(raw_get(fd, sys::SO_KEEPALIVE), 1);
        assert_eq!(raw_get(fd, sys::TCP_KEEPIDLE), 11);
        assert_eq!(raw_get(fd, sys::TCP_KEEPINTVL), 7);
        assert_eq!(raw_get(fd, sys::TCP_KEEPCNT), 5);
        disable(&c).unwrap();
        assert_eq!(raw_get(fd, sys::SO_KEEPALIVE), 0);
        assert_eq!(raw_get(fd, sys::TCP_KEEPIDLE), 11);
    }

    #[test]
    fn out_of_range_changes_nothing() {
        let (_l, c) = pair();
        let before = get(&c).unwrap();
        for (args, want) in [
            ((0, 1, 1), Error::Idle(libc::EINVAL)),
            ((32768, 1, 1), Error::Idle(libc::EINVAL)),
            ((1, 0, 1), Error::Intvl(libc::EINVAL)),
            ((1, 32768, 1), Error::Intvl(libc::EINVAL)),
            ((1, 1, 0), Error::Cnt(libc::EINVAL)),
            ((1, 1, 128), Error::Cnt(libc::EINVAL)),
        ] {
            assert_eq!(enable(&c, args.0, args.1, args.2), Err(want));
            assert_eq!(get(&c).unwrap(), before);
        }
        let bad = Config {
            user_timeout_ms: u32::MAX,
            ..before
        };
        assert_eq!(apply(&c, &bad), Err(Error::UserTimeout(libc::EINVAL)));
        assert_eq!(get(&c).unwrap(), before);
    }

    #[test]
    fn limits_are_accepted_by_the_kernel() {
        let (_l, c) = pair();
        enable(&c, 32767, 32767, 127).unwrap();
        let cfg = Config {
            enabled: true,
            idle_secs: 1,
            intvl_secs: 1,
            cnt: 1,
            user_timeout_ms: c_int::MAX as u32,
        };
        apply(&c, &cfg).unwrap();
        assert_eq!(get(&c).unwrap(), cfg);
    }

    #[test]
    fn apply_then_get_round_trips() {
        let (_l, c) = pair();
        for cfg in [
            Config {
                enabled: true,
                idle_secs: 3,
                intvl_secs: 2,
                cnt: 4,
                user_timeout_ms: 10_000,
            },
            Config {
                enabled: false,
                idle_secs: 60,
                intvl_secs: 10,
                cnt: 6,
                user_timeout_ms: 0,
            },
        ] {
            apply(&c, &cfg).unwrap();
            assert_eq!(get(&c).unwrap(), cfg);
            assert_eq!(
                raw_get(c.as_raw_fd(), sys::TCP_USER_TIMEOUT) as u32,
                cfg.user_timeout_ms
            );
        }
    }

    #[test]
    fn udp_fails_first_with_idle_and_is_untouched() {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(enable(&u, 1, 1, 1), Err(Error::Idle(libc::ENOPROTOOPT)));
        assert_eq!(raw_get(u.as_raw_fd(), sys::SO_KEEPALIVE), 0);
        assert!(matches!(get(&u), Err(Error::Idle(_))));
    }

    #[test]
    fn system_defaults_match_proc_and_report_unreadable_files() {
        let d = system_defaults().unwrap();
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap()
                .trim()
                .parse::<c_int>()
                .unwrap()
        };
        assert_eq!(d.idle_secs, read(sys::PROC_KEEPALIVE_TIME));
        assert_eq!(d.intvl_secs, read(sys::PROC_KEEPALIVE_INTVL));
        assert_eq!(d.cnt, read(sys::PROC_KEEPALIVE_PROBES));
        assert!(!d.enabled);
        assert_eq!(d.user_timeout_ms, 0);
        let t = sys::PROC_KEEPALIVE_TIME;
        let i = sys::PROC_KEEPALIVE_INTVL;
        let p = sys::PROC_KEEPALIVE_PROBES;
        let missing = "/nonexistent/heartbeat-test";
        assert_eq!(
            system_defaults_from(missing, i, p),
            Err(Error::Idle(libc::ENOENT))
        );
        assert_eq!(
            system_defaults_from(t, missing, p),
            Err(Error::Intvl(libc::ENOENT))
        );
        assert_eq!(
            system_defaults_from(t, i, missing),
            Err(Error::Cnt(libc::ENOENT))
        );
        // Readable but not a number.
        assert_eq!(
            system_defaults_from(t, i, "/dev/null"),
            Err(Error::Cnt(libc::EINVAL))
        );
        // A directory cannot be read.
        assert_eq!(
            system_defaults_from("/", i, p),
            Err(Error::Idle(libc::EISDIR))
        );
    }

    #[test]
    fn borrowed_and_owned_fds_and_references_all_work() {
        let (_l, c) = pair();
        let b: BorrowedFd<'_> = c.as_fd();
        enable(&b, 2, 3, 4).unwrap();
        enable(&&c, 2, 3, 4).unwrap();
        let owned: OwnedFd = c.try_clone().unwrap().into();
        disable(&owned).unwrap();
        // The socket is still open and usable after every call.
        assert!(!get(&c).unwrap().enabled);
        assert_eq!(protocol(&c), Ok(libc::IPPROTO_TCP));
    }

    #[test]
    fn raw_paths_pass_bad_fds_to_the_kernel() {
        assert_eq!(enable_raw(-1, 1, 1, 1), Err(Error::Idle(libc::EBADF)));
        assert_eq!(get_raw(-7), Err(Error::Idle(libc::EBADF)));
        assert_eq!(disable_raw(-1), Err(Error::KeepAlive(libc::EBADF)));
        assert_eq!(
            within_raw(-1, 10_000, SlowReaders::TimeOut),
            Err(Error::Idle(libc::EBADF))
        );
    }

    #[test]
    fn udp_over_ipv6_refuses_reads_with_enoprotoopt() {
        let u = UdpSocket::bind("[::1]:0").unwrap();
        assert_eq!(get(&u), Err(Error::Idle(libc::ENOPROTOOPT)));
        let cfg = config_within(5000, SlowReaders::TimeOut).unwrap();
        assert_eq!(apply(&u, &cfg), Err(Error::Idle(libc::ENOPROTOOPT)));
        let u4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(get(&u4), Err(Error::Idle(libc::EOPNOTSUPP)));
    }

    /// An MPTCP socket, or None if this kernel has no MPTCP.
    fn mptcp() -> Option<OwnedFd> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, sys::IPPROTO_MPTCP) };
        // SAFETY: a fresh fd that nothing else owns.
        (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    #[test]
    fn mptcp_has_no_user_timeout_and_the_rest_is_all_or_nothing() {
        let Some(m) = mptcp() else {
            eprintln!("no MPTCP in this kernel: skipped");
            return;
        };
        assert_eq!(protocol(&m), Ok(sys::IPPROTO_MPTCP));
        let got = get(&m).unwrap();
        assert_eq!(got.user_timeout_ms, 0);
        // Round trip: what get() returns, apply() accepts.
        apply(&m, &got).unwrap();
        let cfg = Config {
            enabled: true,
            idle_secs: 4,
            intvl_secs: 3,
            cnt: 2,
            user_timeout_ms: 0,
        };
        apply(&m, &cfg).unwrap();
        assert_eq!(get(&m).unwrap(), cfg);
        // A user timeout cannot be honoured: refused, nothing changed.
        let with_ut = Config {
            idle_secs: 9,
            user_timeout_ms: 1000,
            ..cfg
        };
        assert_eq!(
            apply(&m, &with_ut),
            Err(Error::UserTimeout(libc::EOPNOTSUPP))
        );
        assert_eq!(get(&m).unwrap(), cfg);
        assert_eq!(
            within(&m, 10_000, SlowReaders::TimeOut),
            Err(Error::UserTimeout(libc::EOPNOTSUPP))
        );
        assert_eq!(get(&m).unwrap(), cfg);
        let w = within(&m, 10_000, SlowReaders::Keep).unwrap();
        assert_eq!(get(&m).unwrap(), w);
    }

    #[test]
    fn timer_late_bound() {
        // The wheel's worst case is 8/63 of the length (a timer just past
        // a level's start), plus rounding: at HZ=250, 2.016 s (504
        // jiffies, level 2, 64-jiffy buckets) may fire 256 ms late.
        assert!(sys::timer_late_ms(2016) >= 256);
        assert_eq!(sys::timer_late_ms(2048), 291); // as sys/linux.rs says
        assert!(sys::timer_late_ms(252) >= 32); // level 1 at HZ=250
        assert!(sys::timer_late_ms(630) >= 80); // level 1 at HZ=100
        assert!(sys::timer_late_ms(4032) >= 512); // level 3 at HZ=1000
        assert_eq!(sys::timer_late_ms(0), sys::TIMER_ROUNDING_MS);
        // No overflow at the end of the range.
        assert!(sys::timer_late_ms(u32::MAX) > u32::MAX / 8);
    }

    #[test]
    fn within_floor_and_ceiling() {
        let min = config_within(WITHIN_MIN_MS, SlowReaders::TimeOut).unwrap();
        assert_eq!(
            min,
            Config {
                enabled: true,
                idle_secs: 1,
                intvl_secs: 1,
                cnt: 1,
                user_timeout_ms: 2000
            }
        );
        // The floor is exactly the latest verdict of the smallest setting.
        assert_eq!(u64::from(WITHIN_MIN_MS), latest_ms(1, 1, 1));
        for bad in [
            0,
            1,
            1000,
            2000,
            WITHIN_MIN_MS - 1,
            WITHIN_MAX_MS + 1,
            u32::MAX,
        ] {
            assert_eq!(
                config_within(bad, SlowReaders::TimeOut),
                Err(Error::Within),
                "{bad}"
            );
            assert_eq!(config_within(bad, SlowReaders::Keep), Err(Error::Within));
        }
        let max = config_within(WITHIN_MAX_MS, SlowReaders::TimeOut).unwrap();
        max.validate().unwrap();
        assert!(max.deadline_ms() <= WITHIN_MAX_MS);
        // The C constants are the same numbers.
        assert_eq!(crate::ffi::HEARTBEAT_WITHIN_MIN_MS, WITHIN_MIN_MS);
        assert_eq!(crate::ffi::HEARTBEAT_WITHIN_MAX_MS, WITHIN_MAX_MS);
    }

    #[test]
    fn within_examples() {
        let c = |ms| {
            let c = config_within(ms, SlowReaders::TimeOut).unwrap();
            (c.idle_secs, c.intvl_secs, c.cnt, c.user_timeout_ms)
        };
        assert_eq!(c(3000), (1, 1, 1, 2000));
        assert_eq!(c(5000), (1, 1, 3, 4000));
        assert_eq!(c(10_000), (5, 1, 3, 8000));
        assert_eq!(c(60_000), (29, 8, 3, 53_000));
    }

    #[test]
    fn latest_verdict_is_non_decreasing_in_the_deadline() {
        // What config_within()'s bisection relies on, over every deadline
        // it can choose.
        let mut prev = 0;
        for d in 2..=WITHIN_MAX_MS / 1000 {
            let (i, n, c) = split(d);
            let l = latest_ms(i, n, c);
            assert!(l >= prev, "d {d}: {l} < {prev}");
            prev = l;
        }
    }

    #[test]
    fn within_over_the_whole_range() {
        // Every ms from the floor to 200 s, then a sparse walk to 24 h:
        // valid, deadline <= ms, user timeout = deadline, the latest
        // verdict <= ms, the next second would not fit (the largest
        // deadline is chosen), and everything non-decreasing in ms.
        let mut prev = 0;
        let mut ms = WITHIN_MIN_MS;
        while ms <= WITHIN_MAX_MS {
            let cfg = config_within(ms, SlowReaders::TimeOut).unwrap();
            cfg.validate().unwrap();
            assert!(cfg.enabled);
            let d = cfg.deadline_ms();
            assert!(d <= ms, "{ms}: {cfg:?}");
            assert_eq!(cfg.user_timeout_ms, d, "{ms}");
            assert!(latest_ms(cfg.idle_secs, cfg.intvl_secs, cfg.cnt) <= u64::from(ms));
            // The next whole second is not a better deadline that fits
            // (when idle is capped at 32767 s, it may give the same one).
            let (i, n, c) = split(d / 1000 + 1);
            assert!(
                latest_ms(i, n, c) > u64::from(ms) || deadline_ms(i, n, c) <= d,
                "{ms}"
            );
            assert!(d >= prev, "{ms}: deadline decreased");
            // What docs/keepalive.md says of the margin.
            let floor = match ms {
                0..=4999 => 0.5,
                5000..=9999 => 0.66,
                10_000..=59_999 => 0.77,
                _ => 0.86,
            };
            assert!(f64::from(d) >= floor * f64::from(ms), "{ms}: deadline {d}");
            prev = d;
            let keep = config_within(ms, SlowReaders::Keep).unwrap();
            assert_eq!(
                keep,
                Config {
                    user_timeout_ms: 0,
                    ..cfg
                }
            );
            ms = if ms < 200_000 { ms + 1 } else { ms + 997 };
        }
    }

    #[test]
    fn within_applies_all_or_nothing() {
        let (_l, c) = pair();
        let before = get(&c).unwrap();
        assert_eq!(within(&c, 1000, SlowReaders::TimeOut), Err(Error::Within));
        assert_eq!(get(&c).unwrap(), before);
        let cfg = within(&c, 10_000, SlowReaders::TimeOut).unwrap();
        assert_eq!(get(&c).unwrap(), cfg);
        let keep = within(&c, 10_000, SlowReaders::Keep).unwrap();
        assert_eq!(get(&c).unwrap(), keep);
        assert_eq!(keep.user_timeout_ms, 0);
    }
}
