//! C side of the connection status: `struct heartbeat_status`,
//! `struct heartbeat_status_ex`, `heartbeat_status()`,
//! `heartbeat_status_ex()` and the HEARTBEAT_PEER_* states.

use std::ffi::{c_int, c_uint};
use std::mem::size_of;

use super::guard;
use crate::error::Error;
use crate::status::{self, Peer, Status};

/// `heartbeat_status()`: connected, and no keepalive probe is outstanding
/// (every probe so far was answered, or none was needed).
pub const HEARTBEAT_PEER_ALIVE: c_int = 0;
/// `heartbeat_status()`: connected, but keepalive probes (or zero-window
/// probes) are going out unanswered; `probes` counts them. The peer may be
/// gone: after `cnt` of them the kernel fails the connection with ETIMEDOUT.
/// Any answer from the peer brings the state back to HEARTBEAT_PEER_ALIVE
/// (HEARTBEAT_PEER_STALLED if its window is still shut). When data is in
/// flight while the peer's window is shut, the kernel probes the window by
/// retransmitting it, which `probes` does not count: the state is then
/// PROBING once the last acknowledgement (`last_ack_recv_ms` of
/// `heartbeat_status_ex()`) is older than the probe interval allows.
pub const HEARTBEAT_PEER_PROBING: c_int = 1;
/// `heartbeat_status()`: the connection is over and no error is pending.
/// Either the peer closed its side normally (FIN: TCP state CLOSE_WAIT;
/// data it sent before is still readable, then recv() returns 0), or both
/// sides closed normally, or the connection failed and its error was
/// already taken (by an earlier `heartbeat_status()`, which handed it to
/// you, or by recv(), send() or SO_ERROR): the kernel reports a pending
/// error exactly once, and afterwards the socket looks closed.
pub const HEARTBEAT_PEER_CLOSED: c_int = 2;
/// `heartbeat_status()`: the peer's kernel answered with RST (it crashed and
/// restarted, or aborted the connection). `error` is ECONNRESET (EPIPE if
/// the peer had closed first, ECONNREFUSED for a refused connect()).
pub const HEARTBEAT_PEER_RESET: c_int = 3;
/// `heartbeat_status()`: the local kernel gave up on a silent peer: `cnt`
/// keepalive probes went unanswered, or sent data stayed unacknowledged
/// past TCP_USER_TIMEOUT (or the retransmission limit). `error` is
/// ETIMEDOUT, or the network error the kernel saw meanwhile (EHOSTUNREACH,
/// ENETUNREACH, ... typically after a carrier loss with data in flight). Any
/// pending error that is not a reset is reported as this state.
pub const HEARTBEAT_PEER_TIMED_OUT: c_int = 4;
/// `heartbeat_status()`: not a connection: a listening socket, a socket
/// that was never connected, or one whose connect() is still in progress.
/// A socket disconnected with connect(AF_UNSPEC) is in this state from the
/// first call on: the kernel leaves an ECONNRESET of its own pending on it,
/// which is not the peer's reset and is not read (nothing is consumed).
/// `probes`, `last_data_recv_ms` and `rtt_us` are meaningless in this state.
pub const HEARTBEAT_PEER_NOT_CONNECTED: c_int = 5;
/// `heartbeat_status()`: connected, and the peer is alive but not reading:
/// its kernel advertises a zero receive window while we have data to send
/// (`heartbeat_status_ex()` gives `notsent_bytes`, `unacked`, `peer_window`),
/// and it answers the kernel's window probes: an acknowledgement arrived
/// within the current probe interval (`last_ack_recv_ms`). Not a dead peer,
/// and distinct from HEARTBEAT_PEER_PROBING (probes unanswered), which a
/// peer that vanishes while its window is shut turns into after two
/// unanswered probes, or when its last acknowledgement is older than the
/// probe interval allows. Caution: a TCP_USER_TIMEOUT (and therefore
/// `heartbeat_within()` without HEARTBEAT_WITHIN_KEEP_SLOW_READERS) ends
/// such a connection with ETIMEDOUT about `user_timeout_ms` after the window
/// closed, although the peer is alive. Reported on Linux 5.4 or later (older
/// kernels do not report the peer's window: the state is then
/// HEARTBEAT_PEER_ALIVE). States may be added in later versions: treat an
/// unknown value as connected.
pub const HEARTBEAT_PEER_STALLED: c_int = 6;

/// `struct heartbeat_status_ex`: `peer_window` when the kernel does not
/// report the peer's window (Linux before 5.4).
pub const HEARTBEAT_WINDOW_UNKNOWN: c_uint = 0xFFFF_FFFF;

/// Where a TCP connection stands, as filled in by `heartbeat_status()`.
/// A plain value: the caller owns it. All figures are the kernel's
/// (Linux TCP_INFO) at the moment of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct heartbeat_status {
    /// One of HEARTBEAT_PEER_ALIVE, _PROBING, _CLOSED, _RESET, _TIMED_OUT,
    /// _NOT_CONNECTED, _STALLED (treat a value added later as connected).
    pub peer: c_int,
    /// The pending socket error that this call took from the kernel, or 0.
    /// Only a closed socket (HEARTBEAT_PEER_RESET or _TIMED_OUT) has one.
    /// The kernel reports it once: after this call, recv() on the socket
    /// returns 0 instead of -1 with this errno, so this field is now the
    /// only record of why the connection ended.
    pub error: c_int,
    /// Keepalive (or zero-window) probes sent and not yet answered
    /// (tcpi_probes). Rises by one every `intvl` seconds while the peer is
    /// silent; back to 0 as soon as the peer answers.
    pub probes: c_uint,
    /// Consecutive unanswered retransmissions of sent data
    /// (tcpi_retransmits): non-zero while data in flight is not
    /// acknowledged, the case that TCP_USER_TIMEOUT bounds.
    pub retransmits: c_uint,
    /// Milliseconds since data was last received from the peer
    /// (tcpi_last_data_recv).
    pub last_data_recv_ms: c_uint,
    /// Smoothed round-trip time in microseconds (tcpi_rtt).
    pub rtt_us: c_uint,
    /// The Linux TCP state (tcpi_state: 1 ESTABLISHED, 7 CLOSE,
    /// 8 CLOSE_WAIT, 10 LISTEN, ...), for diagnostics.
    pub tcp_state: c_int,
}

/// Everything `heartbeat_status_ex()` reports: the seven fields of
/// `struct heartbeat_status`, at the same offsets, then what a program
/// needs to tell a stalled reader from a dead peer. Pass its size to
/// `heartbeat_status_ex()`: fields may be added at the end in later
/// versions, and the size says how many the caller knows. A plain value:
/// the caller owns it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct heartbeat_status_ex {
    /// As in `struct heartbeat_status`.
    pub peer: c_int,
    /// As in `struct heartbeat_status`.
    pub error: c_int,
    /// As in `struct heartbeat_status`.
    pub probes: c_uint,
    /// As in `struct heartbeat_status`.
    pub retransmits: c_uint,
    /// As in `struct heartbeat_status`.
    pub last_data_recv_ms: c_uint,
    /// As in `struct heartbeat_status`.
    pub rtt_us: c_uint,
    /// As in `struct heartbeat_status`.
    pub tcp_state: c_int,
    /// Bytes the program wrote that the kernel has not sent yet
    /// (tcpi_notsent_bytes): waiting for the peer's window or congestion
    /// window. Bytes sent but not yet acknowledged are not included
    /// (ioctl(SIOCOUTQ) counts both, at the cost of another system call).
    pub notsent_bytes: c_uint,
    /// Segments sent and not yet acknowledged (tcpi_unacked).
    pub unacked: c_uint,
    /// The peer's receive window in bytes, after scaling (tcpi_snd_wnd): 0
    /// when the peer's receive buffer is full. HEARTBEAT_WINDOW_UNKNOWN on
    /// a kernel older than 5.4, which does not report it.
    pub peer_window: c_uint,
    /// Milliseconds since the last acknowledgement was received from the
    /// peer (tcpi_last_ack_recv): it stays small while a stalled peer
    /// answers the window probes, and grows when the peer is gone.
    pub last_ack_recv_ms: c_uint,
}

impl From<Peer> for c_int {
    fn from(p: Peer) -> c_int {
        match p {
            Peer::Alive => HEARTBEAT_PEER_ALIVE,
            Peer::Probing => HEARTBEAT_PEER_PROBING,
            Peer::Closed => HEARTBEAT_PEER_CLOSED,
            Peer::Reset => HEARTBEAT_PEER_RESET,
            Peer::TimedOut => HEARTBEAT_PEER_TIMED_OUT,
            Peer::NotConnected => HEARTBEAT_PEER_NOT_CONNECTED,
            Peer::Stalled => HEARTBEAT_PEER_STALLED,
        }
    }
}

impl From<Status> for heartbeat_status_ex {
    fn from(s: Status) -> Self {
        heartbeat_status_ex {
            peer: s.peer.into(),
            error: s.error,
            probes: s.probes,
            retransmits: s.retransmits,
            last_data_recv_ms: s.last_data_recv_ms,
            rtt_us: s.rtt_us,
            tcp_state: c_int::from(s.tcp_state),
            notsent_bytes: s.notsent_bytes,
            unacked: s.unacked_segments,
            peer_window: s.peer_window.unwrap_or(HEARTBEAT_WINDOW_UNKNOWN),
            last_ack_recv_ms: s.last_ack_recv_ms,
        }
    }
}

/// Reads the status of `fd` and writes the first `size` bytes of a
/// `heartbeat_status_ex` to `out` (zero beyond the struct's own size).
/// `struct heartbeat_status` is the first seven fields, so it is the
/// prefix: one conversion serves both functions.
fn status_into(fd: c_int, out: *mut u8, size: usize) -> c_int {
    guard(|| {
        if out.is_null() || size < size_of::<heartbeat_status>() {
            return Err(Error::Invalid);
        }
        let st = heartbeat_status_ex::from(status::status_raw(fd)?);
        let n = size.min(size_of::<heartbeat_status_ex>());
        // SAFETY: the caller promised that `out` points to `size` writable
        // bytes (a struct of that size); `st` is a plain repr(C) value
        // without padding (eleven 4-byte fields), read as bytes.
        unsafe {
            std::ptr::copy_nonoverlapping((&st as *const heartbeat_status_ex).cast::<u8>(), out, n);
            std::ptr::write_bytes(out.add(n), 0, size - n);
        }
        Ok(())
    })
}

/// Tells where the TCP connection on `fd` stands, without reading, peeking
/// or consuming any application data: fills `*out` (see
/// `struct heartbeat_status` and HEARTBEAT_PEER_*).
///
/// System calls: one getsockopt(TCP_INFO); plus one getsockopt(SO_ERROR)
/// only when the socket is closed (TCP state CLOSE) after having exchanged
/// segments, the only state in which a connection's fatal error is pending.
/// No allocation, never blocks.
///
/// What is consumed: on a closed connection, the pending error (ETIMEDOUT,
/// ECONNRESET, ...). The kernel reports it once, to whichever asks first:
/// SO_ERROR, recv() (MSG_PEEK too: a peek consumes a pending error as well),
/// send() or connect(). This call returns it in `out->error`; after it,
/// recv() returns 0 (end of file) instead of -1 with that errno. Conversely,
/// if recv() took the error first, this call can only report
/// HEARTBEAT_PEER_CLOSED with `error` 0. On a live connection nothing at all
/// is consumed: SO_ERROR is not read (doing so would also clear the soft
/// error, such as EHOSTUNREACH, that the kernel keeps to report if it later
/// gives up). Nor on a socket that never exchanged a segment (fresh, or
/// disconnected with connect(AF_UNSPEC)). Unread data is never touched:
/// after the peer's orderly close (HEARTBEAT_PEER_CLOSED) everything it
/// sent stays readable. To learn whether data is waiting without consuming
/// an error, use poll() or ioctl(FIONREAD), not recv(MSG_PEEK).
///
/// `*out` is written only on success. Returns HEARTBEAT_OK;
/// HEARTBEAT_ERR_INVALID (errno EINVAL) if `out` is NULL, and then nothing
/// is read or consumed; HEARTBEAT_ERR_TCP_INFO if `fd` is not an open TCP
/// socket (errno EBADF for a negative or closed fd, ENOTSOCK for a pipe or
/// file, EOPNOTSUPP or ENOPROTOOPT for another kind of socket: UDP, UNIX).
/// Thread-safe; the fd is borrowed, never closed.
#[no_mangle]
pub extern "C" fn heartbeat_status(fd: c_int, out: *mut heartbeat_status) -> c_int {
    status_into(fd, out.cast::<u8>(), size_of::<heartbeat_status>())
}

/// `heartbeat_status()` with the fields a program needs to act on
/// HEARTBEAT_PEER_STALLED: fills the first `size` bytes of `*out` (see
/// `struct heartbeat_status_ex`). Same system calls, same cost, same rules
/// as `heartbeat_status()`; the same states.
///
/// Pass `sizeof *out`. This keeps old programs working when fields are
/// added: the library writes exactly `size` bytes, never more; a `size`
/// smaller than the library's struct (a program built against an older
/// header) gets the fields it knows, and bytes beyond the library's own
/// struct (a newer header) are set to 0. `struct heartbeat_status` itself
/// never changes size.
///
/// `*out` is written only on success. Returns HEARTBEAT_OK;
/// HEARTBEAT_ERR_INVALID (errno EINVAL), with nothing read or consumed, if
/// `out` is NULL or `size` is smaller than `sizeof(struct
/// heartbeat_status)`; HEARTBEAT_ERR_TCP_INFO as `heartbeat_status()`.
/// Thread-safe; the fd is borrowed, never closed.
#[no_mangle]
pub extern "C" fn heartbeat_status_ex(
    fd: c_int,
    out: *mut heartbeat_status_ex,
    size: usize,
) -> c_int {
    status_into(fd, out.cast::<u8>(), size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{HEARTBEAT_ERR_INVALID, HEARTBEAT_ERR_TCP_INFO};

    #[test]
    fn null_out_reads_nothing() {
        assert_eq!(
            heartbeat_status(-1, std::ptr::null_mut()),
            HEARTBEAT_ERR_INVALID
        );
    }

    #[test]
    fn bad_fd_leaves_out_untouched() {
        let mut st = heartbeat_status {
            peer: 99,
            error: 99,
            probes: 99,
            retransmits: 99,
            last_data_recv_ms: 99,
            rtt_us: 99,
            tcp_state: 99,
        };
        let before = st;
        assert_eq!(heartbeat_status(-1, &mut st), HEARTBEAT_ERR_TCP_INFO);
        assert_eq!(st, before);
    }

    #[test]
    fn states_are_distinct() {
        let all = [
            Peer::Alive,
            Peer::Probing,
            Peer::Closed,
            Peer::Reset,
            Peer::TimedOut,
            Peer::NotConnected,
            Peer::Stalled,
        ];
        let codes: Vec<c_int> = all.iter().map(|p| c_int::from(*p)).collect();
        assert_eq!(codes, (0..=6).collect::<Vec<c_int>>());
    }

    #[test]
    fn the_small_struct_is_the_prefix_of_the_large_one() {
        use std::mem::offset_of;
        macro_rules! same {
            ($($f:ident),*) => {$(
                assert_eq!(offset_of!(heartbeat_status, $f), offset_of!(heartbeat_status_ex, $f));
            )*};
        }
        same!(
            peer,
            error,
            probes,
            retransmits,
            last_data_recv_ms,
            rtt_us,
            tcp_state
        );
        assert_eq!(size_of::<heartbeat_status>(), 28);
        assert_eq!(size_of::<heartbeat_status_ex>(), 44); // no padding
    }

    #[test]
    fn ex_writes_exactly_size_bytes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        let fd = l.as_raw_fd();
        let mut buf = [0xa5u8; 64];
        let p = buf.as_mut_ptr().cast::<heartbeat_status_ex>();
        assert_eq!(heartbeat_status_ex(fd, p, 27), HEARTBEAT_ERR_INVALID);
        assert!(buf.iter().all(|&b| b == 0xa5));
        assert_eq!(
            heartbeat_status_ex(fd, std::ptr::null_mut(), 44),
            HEARTBEAT_ERR_INVALID
        );
        // The old size: the seven fields, nothing after them.
        assert_eq!(heartbeat_status_ex(fd, p, 28), crate::ffi::HEARTBEAT_OK);
        assert_eq!(&buf[..4], &HEARTBEAT_PEER_NOT_CONNECTED.to_ne_bytes());
        assert!(buf[28..].iter().all(|&b| b == 0xa5));
        // A newer, larger struct: zero beyond ours, nothing beyond size.
        assert_eq!(heartbeat_status_ex(fd, p, 60), crate::ffi::HEARTBEAT_OK);
        assert!(buf[44..60].iter().all(|&b| b == 0));
        assert!(buf[60..].iter().all(|&b| b == 0xa5));
        assert_eq!(&buf[24..28], &10i32.to_ne_bytes()); // tcp_state LISTEN
    }
}
