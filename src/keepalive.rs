//! The safe core: TCP keepalive configuration of one socket.
//!
//! Every function here makes the minimum number of system calls and no heap
//! allocation. A socket is borrowed, never owned or closed: functions take
//! anything with a raw fd (a `BorrowedFd`, a `&TcpStream`, or a plain
//! `RawFd`, which the kernel itself checks: a closed fd gives EBADF).

use std::ffi::c_int;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};

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

/// The kernel's accepted ranges, checked before any system call.
fn check_idle(v: c_int) -> Result<()> {
    range(v, sys::MAX_KEEPIDLE).map_err(Error::Idle)
}
fn check_intvl(v: c_int) -> Result<()> {
    range(v, sys::MAX_KEEPINTVL).map_err(Error::Intvl)
}
fn check_cnt(v: c_int) -> Result<()> {
    range(v, sys::MAX_KEEPCNT).map_err(Error::Cnt)
}
fn range(v: c_int, max: c_int) -> std::result::Result<(), Errno> {
    if (1..=max).contains(&v) {
        Ok(())
    } else {
        Err(libc::EINVAL)
    }
}

impl Config {
    /// Checks every field against the kernel's ranges; the first bad field
    /// (in the order idle, intvl, cnt, user timeout) names the error.
    pub fn validate(&self) -> Result<()> {
        check_idle(self.idle_secs)?;
        check_intvl(self.intvl_secs)?;
        check_cnt(self.cnt)?;
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

/// One managed option: its (level, name) and the error that names it.
#[derive(Clone, Copy)]
struct Opt {
    id: (c_int, c_int),
    err: fn(Errno) -> Error,
}

const IDLE: Opt = Opt {
    id: sys::TCP_KEEPIDLE,
    err: Error::Idle,
};
const INTVL: Opt = Opt {
    id: sys::TCP_KEEPINTVL,
    err: Error::Intvl,
};
const CNT: Opt = Opt {
    id: sys::TCP_KEEPCNT,
    err: Error::Cnt,
};
const USER_TIMEOUT: Opt = Opt {
    id: sys::TCP_USER_TIMEOUT,
    err: Error::UserTimeout,
};
const KEEPALIVE: Opt = Opt {
    id: sys::SO_KEEPALIVE,
    err: Error::KeepAlive,
};

/// The order of every sequence of calls: the TCP-level options first, so
/// that a closed fd (EBADF), a non-socket (ENOTSOCK) or a socket that is not
/// TCP (UDP: ENOPROTOOPT; UNIX: EOPNOTSUPP) fails on the first call, before
/// anything is changed; SO_KEEPALIVE, which every socket accepts, last.
const ORDER: [Opt; 5] = [IDLE, INTVL, CNT, USER_TIMEOUT, KEEPALIVE];

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

/// Turns keepalive on: probe after `idle_secs` without traffic, every
/// `intvl_secs`, give up after `cnt` unanswered probes.
///
/// Exactly four `setsockopt` calls (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
/// SO_KEEPALIVE, in that order) after the arguments are range-checked. If
/// the kernel refuses a later option, the earlier ones stay set: use
/// [`apply`] for all or nothing.
pub fn enable(fd: impl AsRawFd, idle_secs: c_int, intvl_secs: c_int, cnt: c_int) -> Result<()> {
    check_idle(idle_secs)?;
    check_intvl(intvl_secs)?;
    check_cnt(cnt)?;
    let fd = fd.as_raw_fd();
    set(fd, IDLE, idle_secs)?;
    set(fd, INTVL, intvl_secs)?;
    set(fd, CNT, cnt)?;
    set(fd, KEEPALIVE, 1)
}

/// Turns keepalive off (one `setsockopt` of SO_KEEPALIVE). The timers keep
/// their values, so a later `SO_KEEPALIVE` on uses them again.
pub fn disable(fd: impl AsRawFd) -> Result<()> {
    set(fd.as_raw_fd(), KEEPALIVE, 0)
}

/// Reads the five settings from the socket (five `getsockopt` calls).
pub fn get(fd: impl AsRawFd) -> Result<Config> {
    get_raw(fd.as_raw_fd())
}

fn get_raw(fd: RawFd) -> Result<Config> {
    let mut v = [0 as c_int; 5];
    for (slot, opt) in v.iter_mut().zip(ORDER) {
        *slot = get_one(fd, opt)?;
    }
    Ok(Config {
        idle_secs: v[0],
        intvl_secs: v[1],
        cnt: v[2],
        // The kernel stores a non-negative int.
        user_timeout_ms: u32::try_from(v[3]).unwrap_or(0),
        enabled: v[4] != 0,
    })
}

/// Sets all five settings, all or nothing.
///
/// Reads the five current values, then sets the five new ones. If the kernel
/// refuses one, the options already changed are set back to their old values
/// (newest first) and the error of the refused option is returned, with the
/// `errno` of the refused call.
pub fn apply(fd: impl AsRawFd, cfg: &Config) -> Result<()> {
    cfg.validate()?;
    let fd = fd.as_raw_fd();
    let old = values(&get_raw(fd)?);
    let new = values(cfg);
    for (i, opt) in ORDER.iter().enumerate() {
        if let Err(e) = set(fd, *opt, new[i]) {
            for j in (0..i).rev() {
                // Best effort: the socket accepted these options a moment
                // ago; the caller learns about the first failure only.
                let _ = set(fd, ORDER[j], old[j]);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The socket's protocol (SO_PROTOCOL: `IPPROTO_TCP` for TCP,
/// `IPPROTO_UDP`, 0 for UNIX sockets, ...): one `getsockopt`, or the errno
/// it failed with (EBADF, ENOTSOCK). For callers that must tell TCP sockets
/// from others before configuring them (the preload library); [`apply`]
/// itself already refuses every non-TCP socket on its first call.
pub fn protocol(fd: impl AsRawFd) -> std::result::Result<c_int, Errno> {
    sys::getsockopt::<c_int>(fd.as_raw_fd(), sys::SO_PROTOCOL)
}

/// `(idle + intvl * cnt) * 1000`: the milliseconds after the last received
/// segment at which an idle connection is declared dead. Negative arguments
/// count as 0; the result saturates at `u32::MAX`.
pub fn deadline_ms(idle_secs: c_int, intvl_secs: c_int, cnt: c_int) -> u32 {
    let f = |v: c_int| u64::from(v.max(0).unsigned_abs());
    let secs = f(idle_secs) + f(intvl_secs) * f(cnt);
    u32::try_from(secs.saturating_mul(1000)).unwrap_or(u32::MAX)
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
    use std::os::fd::AsFd;

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
        enable(c.as_fd(), 11, 7, 5).unwrap();
        assert_eq!(raw_get(fd, sys::SO_KEEPALIVE), 1);
        assert_eq!(raw_get(fd, sys::TCP_KEEPIDLE), 11);
        assert_eq!(raw_get(fd, sys::TCP_KEEPINTVL), 7);
        assert_eq!(raw_get(fd, sys::TCP_KEEPCNT), 5);
        disable(c.as_fd()).unwrap();
        assert_eq!(raw_get(fd, sys::SO_KEEPALIVE), 0);
        assert_eq!(raw_get(fd, sys::TCP_KEEPIDLE), 11);
    }

    #[test]
    fn out_of_range_changes_nothing() {
        let (_l, c) = pair();
        let before = get(c.as_fd()).unwrap();
        for (args, want) in [
            ((0, 1, 1), Error::Idle(libc::EINVAL)),
            ((32768, 1, 1), Error::Idle(libc::EINVAL)),
            ((1, 0, 1), Error::Intvl(libc::EINVAL)),
            ((1, 32768, 1), Error::Intvl(libc::EINVAL)),
            ((1, 1, 0), Error::Cnt(libc::EINVAL)),
            ((1, 1, 128), Error::Cnt(libc::EINVAL)),
        ] {
            assert_eq!(enable(c.as_fd(), args.0, args.1, args.2), Err(want));
            assert_eq!(get(c.as_fd()).unwrap(), before);
        }
        let bad = Config {
            user_timeout_ms: u32::MAX,
            ..before
        };
        assert_eq!(
            apply(c.as_fd(), &bad),
            Err(Error::UserTimeout(libc::EINVAL))
        );
        assert_eq!(get(c.as_fd()).unwrap(), before);
    }

    #[test]
    fn limits_are_accepted_by_the_kernel() {
        let (_l, c) = pair();
        enable(c.as_fd(), 32767, 32767, 127).unwrap();
        let cfg = Config {
            enabled: true,
            idle_secs: 1,
            intvl_secs: 1,
            cnt: 1,
            user_timeout_ms: c_int::MAX as u32,
        };
        apply(c.as_fd(), &cfg).unwrap();
        assert_eq!(get(c.as_fd()).unwrap(), cfg);
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
            apply(c.as_fd(), &cfg).unwrap();
            assert_eq!(get(c.as_fd()).unwrap(), cfg);
            assert_eq!(
                raw_get(c.as_raw_fd(), sys::TCP_USER_TIMEOUT) as u32,
                cfg.user_timeout_ms
            );
        }
    }

    #[test]
    fn udp_fails_first_with_idle_and_is_untouched() {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            enable(u.as_fd(), 1, 1, 1),
            Err(Error::Idle(libc::ENOPROTOOPT))
        );
        assert_eq!(raw_get(u.as_raw_fd(), sys::SO_KEEPALIVE), 0);
        assert!(matches!(get(u.as_fd()), Err(Error::Idle(_))));
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
}
