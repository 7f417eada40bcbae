//! C side of the connection status: `struct heartbeat_status`,
//! `heartbeat_status()` and the HEARTBEAT_PEER_* states.

use std::ffi::{c_int, c_uint};

use super::{guard, out_ref};
use crate::status::{self, Peer, Status};

/// `heartbeat_status()`: connected, and no keepalive probe is outstanding
/// (every probe so far was answered, or none was needed).
pub const HEARTBEAT_PEER_ALIVE: c_int = 0;
/// `heartbeat_status()`: connected, but keepalive probes (or zero-window
/// probes) are going out unanswered; `probes` counts them. The peer may be
/// gone: after `cnt` of them the kernel fails the connection with ETIMEDOUT.
/// Any answer from the peer brings the state back to HEARTBEAT_PEER_ALIVE.
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
/// that was never connected (or was disconnected), or one whose connect()
/// is still in progress. `probes`, `last_data_recv_ms` and `rtt_us` are
/// meaningless in this state.
pub const HEARTBEAT_PEER_NOT_CONNECTED: c_int = 5;

/// Where a TCP connection stands, as filled in by `heartbeat_status()`.
/// A plain value: the caller owns it. All figures are the kernel's
/// (Linux TCP_INFO) at the moment of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct heartbeat_status {
    /// One of HEARTBEAT_PEER_ALIVE, _PROBING, _CLOSED, _RESET, _TIMED_OUT,
    /// _NOT_CONNECTED.
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

impl From<Peer> for c_int {
    fn from(p: Peer) -> c_int {
        match p {
            Peer::Alive => HEARTBEAT_PEER_ALIVE,
            Peer::Probing => HEARTBEAT_PEER_PROBING,
            Peer::Closed => HEARTBEAT_PEER_CLOSED,
            Peer::Reset => HEARTBEAT_PEER_RESET,
            Peer::TimedOut => HEARTBEAT_PEER_TIMED_OUT,
            Peer::NotConnected => HEARTBEAT_PEER_NOT_CONNECTED,
        }
    }
}

impl From<Status> for heartbeat_status {
    fn from(s: Status) -> Self {
        heartbeat_status {
            peer: s.peer.into(),
            error: s.error,
            probes: s.probes,
            retransmits: s.retransmits,
            last_data_recv_ms: s.last_data_recv_ms,
            rtt_us: s.rtt_us,
            tcp_state: c_int::from(s.tcp_state),
        }
    }
}

/// Tells where the TCP connection on `fd` stands, without reading, peeking
/// or consuming any application data: fills `*out` (see
/// `struct heartbeat_status` and HEARTBEAT_PEER_*).
///
/// System calls: one getsockopt(TCP_INFO); plus one getsockopt(SO_ERROR)
/// only when the socket is closed (TCP state CLOSE), the only state in which
/// a connection's fatal error is pending. No allocation, never blocks.
///
/// What is consumed: on a closed socket, the pending error (ETIMEDOUT,
/// ECONNRESET, ...). The kernel reports it once, to whichever asks first:
/// SO_ERROR, recv() (MSG_PEEK too: a peek consumes a pending error as well),
/// send() or connect(). This call returns it in `out->error`; after it,
/// recv() returns 0 (end of file) instead of -1 with that errno. Conversely,
/// if recv() took the error first, this call can only report
/// HEARTBEAT_PEER_CLOSED with `error` 0. On a live connection nothing at all
/// is consumed: SO_ERROR is not read (doing so would also clear the soft
/// error, such as EHOSTUNREACH, that the kernel keeps to report if it later
/// gives up). Unread data is never touched: after the peer's orderly close
/// (HEARTBEAT_PEER_CLOSED) everything it sent stays readable. To learn
/// whether data is waiting without consuming an error, use poll() or
/// ioctl(FIONREAD), not recv(MSG_PEEK).
///
/// `*out` is written only on success. Returns HEARTBEAT_OK;
/// HEARTBEAT_ERR_INVALID (errno EINVAL) if `out` is NULL, and then nothing
/// is read or consumed; HEARTBEAT_ERR_TCP_INFO if `fd` is not an open TCP
/// socket (errno EBADF for a negative or closed fd, ENOTSOCK for a pipe or
/// file, EOPNOTSUPP or ENOPROTOOPT for another kind of socket: UDP, UNIX).
/// Thread-safe; the fd is borrowed, never closed.
#[no_mangle]
pub extern "C" fn heartbeat_status(fd: c_int, out: *mut heartbeat_status) -> c_int {
    guard(|| {
        let out = out_ref(out)?;
        *out = status::status(fd)?.into();
        Ok(())
    })
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
        ];
        let codes: Vec<c_int> = all.iter().map(|p| c_int::from(*p)).collect();
        assert_eq!(codes, (0..=5).collect::<Vec<c_int>>());
    }
}
