//! Linux: option names, their ranges, and the two generic option helpers.

use std::ffi::{c_int, c_void};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::RawFd;

use crate::error::Errno;

/// Largest TCP_KEEPIDLE the kernel accepts (MAX_TCP_KEEPIDLE).
pub(crate) const MAX_KEEPIDLE: c_int = 32767;
/// Largest TCP_KEEPINTVL the kernel accepts (MAX_TCP_KEEPINTVL).
pub(crate) const MAX_KEEPINTVL: c_int = 32767;
/// Largest TCP_KEEPCNT the kernel accepts (MAX_TCP_KEEPCNT).
pub(crate) const MAX_KEEPCNT: c_int = 127;
/// Largest TCP_USER_TIMEOUT the kernel accepts (it takes an int, >= 0).
pub(crate) const MAX_USER_TIMEOUT_MS: u32 = c_int::MAX as u32;

/// Where the kernel's keepalive defaults live (per network namespace).
pub(crate) const PROC_KEEPALIVE_TIME: &str = "/proc/sys/net/ipv4/tcp_keepalive_time";
pub(crate) const PROC_KEEPALIVE_INTVL: &str = "/proc/sys/net/ipv4/tcp_keepalive_intvl";
pub(crate) const PROC_KEEPALIVE_PROBES: &str = "/proc/sys/net/ipv4/tcp_keepalive_probes";

/// The socket options this library manages, as (level, name) pairs.
pub(crate) const SO_KEEPALIVE: (c_int, c_int) = (libc::SOL_SOCKET, libc::SO_KEEPALIVE);
pub(crate) const TCP_KEEPIDLE: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE);
pub(crate) const TCP_KEEPINTVL: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL);
pub(crate) const TCP_KEEPCNT: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_KEEPCNT);
pub(crate) const TCP_USER_TIMEOUT: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT);
/// The protocol of a socket (IPPROTO_TCP, IPPROTO_UDP, 0 for UNIX, ...).
pub(crate) const SO_PROTOCOL: (c_int, c_int) = (libc::SOL_SOCKET, libc::SO_PROTOCOL);
/// Multipath TCP (`socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)`): TCP to the
/// application, but without TCP_USER_TIMEOUT (Linux answers getsockopt with
/// EOPNOTSUPP and setsockopt with ENOPROTOOPT, measured on 6.18).
pub(crate) const IPPROTO_MPTCP: c_int = libc::IPPROTO_MPTCP;

/// The calling thread's `errno`.
pub fn errno() -> Errno {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

/// Stores `e` in the calling thread's `errno`.
pub fn set_errno(e: Errno) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// One `setsockopt` call; -1 becomes the `errno` it left.
///
/// `T` must be a plain C value type (an `int`, a C struct).
pub(crate) fn setsockopt<T: Copy>(fd: RawFd, opt: (c_int, c_int), value: T) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `value`, which lives across the
    // call; the kernel validates `fd` itself.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            opt.0,
            opt.1,
            (&value as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// One `getsockopt` call; -1 becomes the `errno` it left.
///
/// `T` must be a plain C value type for which every bit pattern is valid
/// (an `int`, `struct tcp_info`). Bytes the kernel does not write are zero.
pub(crate) fn getsockopt<T: Copy>(fd: RawFd, opt: (c_int, c_int)) -> Result<T, Errno> {
    getsockopt_len(fd, opt).map(|(v, _)| v)
}

/// [`getsockopt`], also returning how many bytes the kernel wrote (an older
/// kernel writes a shorter `struct tcp_info`).
pub(crate) fn getsockopt_len<T: Copy>(fd: RawFd, opt: (c_int, c_int)) -> Result<(T, usize), Errno> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `value`, which is zeroed, so
    // it is fully initialised whatever the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            opt.0,
            opt.1,
            value.as_mut_ptr().cast::<c_void>(),
            &mut len,
        )
    };
    if rc == -1 {
        Err(errno())
    } else {
        // SAFETY: zero-initialised, and T accepts any bit pattern (see above).
        Ok((unsafe { value.assume_init() }, len as usize))
    }
}

// --- Connection status (heartbeat_status) ---

/// TCP_INFO and SO_ERROR, as (level, name) pairs.
pub(crate) const TCP_INFO: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_INFO);
pub(crate) const SO_ERROR: (c_int, c_int) = (libc::SOL_SOCKET, libc::SO_ERROR);

/// Linux TCP states (`tcpi_state`, include/net/tcp_states.h).
pub(crate) const TCP_ESTABLISHED: u8 = 1;
pub(crate) const TCP_SYN_SENT: u8 = 2;
pub(crate) const TCP_SYN_RECV: u8 = 3;
pub(crate) const TCP_FIN_WAIT1: u8 = 4;
pub(crate) const TCP_FIN_WAIT2: u8 = 5;
pub(crate) const TCP_TIME_WAIT: u8 = 6;
pub(crate) const TCP_CLOSE: u8 = 7;
pub(crate) const TCP_CLOSE_WAIT: u8 = 8;
pub(crate) const TCP_LAST_ACK: u8 = 9;
pub(crate) const TCP_LISTEN: u8 = 10;
pub(crate) const TCP_CLOSING: u8 = 11;
pub(crate) const TCP_NEW_SYN_RECV: u8 = 12;

/// The prefix of Linux's `struct tcp_info` (include/uapi/linux/tcp.h) up
/// to `tcpi_snd_wnd` (Linux 5.4). Defined here rather than taken from
/// `libc`, whose definition differs between C libraries: this layout is the
/// kernel's, and the kernel copies min(its size, ours), so a shorter kernel
/// struct leaves the tail zero ([`getsockopt`] zero-fills) and the length
/// it returns says which fields are real ([`TCP_INFO_HAS_SND_WND`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(dead_code)] // the kernel's full layout; only some fields are read
pub(crate) struct TcpInfo {
    pub tcpi_state: u8,
    pub tcpi_ca_state: u8,
    pub tcpi_retransmits: u8,
    pub tcpi_probes: u8,
    pub tcpi_backoff: u8,
    pub tcpi_options: u8,
    pub tcpi_wscale: u8,
    pub tcpi_flags: u8,
    pub tcpi_rto: u32,
    pub tcpi_ato: u32,
    pub tcpi_snd_mss: u32,
    pub tcpi_rcv_mss: u32,
    pub tcpi_unacked: u32,
    pub tcpi_sacked: u32,
    pub tcpi_lost: u32,
    pub tcpi_retrans: u32,
    pub tcpi_fackets: u32,
    pub tcpi_last_data_sent: u32,
    pub tcpi_last_ack_sent: u32,
    pub tcpi_last_data_recv: u32,
    pub tcpi_last_ack_recv: u32,
    pub tcpi_pmtu: u32,
    pub tcpi_rcv_ssthresh: u32,
    pub tcpi_rtt: u32,
    pub tcpi_rttvar: u32,
    pub tcpi_snd_ssthresh: u32,
    pub tcpi_snd_cwnd: u32,
    pub tcpi_advmss: u32,
    pub tcpi_reordering: u32,
    pub tcpi_rcv_rtt: u32,
    pub tcpi_rcv_space: u32,
    pub tcpi_total_retrans: u32,
    pub tcpi_pacing_rate: u64,
    pub tcpi_max_pacing_rate: u64,
    pub tcpi_bytes_acked: u64,
    pub tcpi_bytes_received: u64,
    pub tcpi_segs_out: u32,
    pub tcpi_segs_in: u32,
    pub tcpi_notsent_bytes: u32, // Linux 4.6
    pub tcpi_min_rtt: u32,
    pub tcpi_data_segs_in: u32,
    pub tcpi_data_segs_out: u32,
    pub tcpi_delivery_rate: u64,
    pub tcpi_busy_time: u64,
    pub tcpi_rwnd_limited: u64,
    pub tcpi_sndbuf_limited: u64,
    pub tcpi_delivered: u32,
    pub tcpi_delivered_ce: u32,
    pub tcpi_bytes_sent: u64,
    pub tcpi_bytes_retrans: u64,
    pub tcpi_dsack_dups: u32,
    pub tcpi_reord_seen: u32,
    pub tcpi_rcv_ooopack: u32,
    pub tcpi_snd_wnd: u32, // Linux 5.4: the peer's window, after scaling (bytes)
}

/// The length of a `struct tcp_info` that includes `tcpi_snd_wnd`: a
/// kernel that returns fewer bytes (before 5.4) does not report the peer's
/// window.
pub(crate) const TCP_INFO_HAS_SND_WND: usize = std::mem::offset_of!(TcpInfo, tcpi_snd_wnd) + 4;

/// TCP_RTO_MIN and TCP_RTO_MAX (include/net/tcp.h), in milliseconds: the
/// zero-window probe timer is max(rto, TCP_RTO_MIN) << backoff, at most
/// TCP_RTO_MAX.
pub(crate) const TCP_RTO_MIN_MS: u32 = 200;
pub(crate) const TCP_RTO_MAX_MS: u32 = 120_000;

// --- Kernel timers (heartbeat_within, heartbeat_status) ---

/// How late, at most, a kernel timer of `len_ms` milliseconds fires, for any
/// HZ from 100 to 1000 (kernel/time/timer.c): the timer wheel has 64 buckets
/// per level and each level is 8 times coarser, and a timer is put in the
/// first level whose range covers it, rounded up to that level's
/// granularity. A timer of L jiffies therefore lands in a bucket at most
/// 8L/63 jiffies wide (a level starts at 63 buckets of the level below), so
/// it fires up to 8/63 of its length late, plus up to two jiffies of
/// rounding (arming within a tick, msecs_to_jiffies rounding up: 20 ms at
/// HZ=100), plus 10 ms for the timer softirq itself. At HZ=250 a 2.048 s
/// timer is measured up to 256 ms late; this bound says 291 ms.
pub(crate) const fn timer_late_ms(len_ms: u32) -> u32 {
    let wheel = (len_ms as u64 * 8).div_ceil(63);
    let late = wheel + TIMER_ROUNDING_MS as u64;
    if late > u32::MAX as u64 {
        u32::MAX
    } else {
        late as u32
    }
}

/// Two jiffies at HZ=100 plus the timer softirq (see [`timer_late_ms`]).
pub(crate) const TIMER_ROUNDING_MS: u32 = 30;
