//! Where a connection stands, read from the kernel without touching data.
//!
//! [`status`] makes one `getsockopt(TCP_INFO)` call, plus one
//! `getsockopt(SO_ERROR)` only when TCP_INFO says the socket is closed
//! (`TCP_CLOSE`): that is the only state in which the kernel leaves a fatal
//! error pending, and reading SO_ERROR on a live connection would not be
//! harmless: when no fatal error is pending it takes (and clears) the *soft*
//! error the kernel keeps to report if it later gives up (an
//! `EHOSTUNREACH` seen while retransmitting, say), which would change the
//! error that the connection eventually fails with. No application data is
//! read, peeked or consumed; no heap allocation.
//!
//! What is consumed: the pending error of a closed socket. The kernel hands
//! it out once, to whichever of SO_ERROR, `recv()` (even with `MSG_PEEK`),
//! `send()` or `connect()` asks first; afterwards `recv()` returns 0 as if the
//! peer had closed normally. [`status`] therefore returns the error it took
//! in [`Status::error`]: the caller owns it from then on.

use std::ffi::c_int;
use std::os::fd::AsRawFd;

use crate::error::{Errno, Error, Result};
use crate::sys;

/// Where the peer stands, as far as the local kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Connected; no keepalive probe is outstanding.
    Alive,
    /// Connected, but keepalive (or zero-window) probes are going out
    /// unanswered; [`Status::probes`] counts them.
    Probing,
    /// The connection is over without an error pending: the peer closed its
    /// side normally (FIN; unread data stays readable, then `recv()` returns
    /// 0), or both sides closed, or the connection failed and its error was
    /// already taken by someone (an earlier [`status`], `recv()`, SO_ERROR).
    Closed,
    /// The peer's kernel answered with RST (error ECONNRESET, EPIPE, or
    /// ECONNREFUSED for a refused connect()).
    Reset,
    /// The local kernel gave up on a silent peer: keepalive probes or
    /// retransmissions went unanswered (error ETIMEDOUT, or the network
    /// error seen meanwhile, such as EHOSTUNREACH after a carrier loss;
    /// any error that is not a reset is reported here).
    TimedOut,
    /// Not a connection: a listening socket, a socket never connected, or
    /// one whose connect() is still in progress.
    NotConnected,
}

/// A snapshot of one TCP socket (see [`status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Where the peer stands.
    pub peer: Peer,
    /// The pending socket error that this call took from the kernel (0 if
    /// none). Only a closed socket has one; see the module documentation.
    pub error: Errno,
    /// Unanswered keepalive or zero-window probes (`tcpi_probes`).
    pub probes: u32,
    /// Unanswered retransmissions of data in flight (`tcpi_retransmits`).
    pub retransmits: u32,
    /// Milliseconds since data was last received (`tcpi_last_data_recv`).
    pub last_data_recv_ms: u32,
    /// Smoothed round-trip time in microseconds (`tcpi_rtt`).
    pub rtt_us: u32,
    /// The kernel's TCP state (`tcpi_state`: 1 ESTABLISHED, 7 CLOSE,
    /// 8 CLOSE_WAIT, 10 LISTEN, ...), for diagnostics.
    pub tcp_state: u8,
}

/// Errors that mean the peer's kernel answered with RST.
fn is_reset(error: Errno) -> bool {
    matches!(error, libc::ECONNRESET | libc::EPIPE | libc::ECONNREFUSED)
}

/// The pure mapping behind [`status`]: TCP state, the pending error (read
/// only in `TCP_CLOSE`, else 0), unanswered probes, and whether the socket
/// ever sent a segment (`tcpi_segs_out > 0`; a fresh or disconnected socket
/// has not).
pub fn peer_state(tcp_state: u8, error: Errno, probes: u32, ever_sent: bool) -> Peer {
    match tcp_state {
        sys::TCP_ESTABLISHED | sys::TCP_FIN_WAIT1 | sys::TCP_FIN_WAIT2 => {
            if probes > 0 {
                Peer::Probing
            } else {
                Peer::Alive
            }
        }
        sys::TCP_CLOSE_WAIT | sys::TCP_LAST_ACK | sys::TCP_CLOSING | sys::TCP_TIME_WAIT => {
            Peer::Closed
        }
        sys::TCP_CLOSE => match error {
            0 if ever_sent => Peer::Closed,
            0 => Peer::NotConnected,
            e if is_reset(e) => Peer::Reset,
            _ => Peer::TimedOut,
        },
        sys::TCP_LISTEN | sys::TCP_SYN_SENT | sys::TCP_SYN_RECV | sys::TCP_NEW_SYN_RECV => {
            Peer::NotConnected
        }
        _ => Peer::NotConnected,
    }
}

/// Where the connection on `fd` stands, without reading any data.
///
/// One `getsockopt(TCP_INFO)`; a second, `getsockopt(SO_ERROR)`, only when
/// the socket is in `TCP_CLOSE`, in which case the error it took is in
/// [`Status::error`]. Fails with [`Error::TcpInfo`] when `fd` is not an open
/// TCP socket (EBADF, ENOTSOCK, or EOPNOTSUPP / ENOPROTOOPT for UDP and UNIX
/// sockets).
pub fn status(fd: impl AsRawFd) -> Result<Status> {
    let fd = fd.as_raw_fd();
    let info: sys::TcpInfo = sys::getsockopt(fd, sys::TCP_INFO).map_err(Error::TcpInfo)?;
    let error = if info.tcpi_state == sys::TCP_CLOSE {
        sys::getsockopt::<c_int>(fd, sys::SO_ERROR).map_err(Error::TcpInfo)?
    } else {
        0
    };
    let probes = u32::from(info.tcpi_probes);
    Ok(Status {
        peer: peer_state(info.tcpi_state, error, probes, info.tcpi_segs_out > 0),
        error,
        probes,
        retransmits: u32::from(info.tcpi_retransmits),
        last_data_recv_ms: info.tcpi_last_data_recv,
        rtt_us: info.tcpi_rtt,
        tcp_state: info.tcpi_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    const LIVE: [u8; 3] = [sys::TCP_ESTABLISHED, sys::TCP_FIN_WAIT1, sys::TCP_FIN_WAIT2];

    #[test]
    fn live_states_are_alive_or_probing() {
        for s in LIVE {
            assert_eq!(peer_state(s, 0, 0, true), Peer::Alive, "state {s}");
            assert_eq!(peer_state(s, 0, 1, true), Peer::Probing, "state {s}");
            assert_eq!(peer_state(s, 0, 127, true), Peer::Probing, "state {s}");
        }
    }

    #[test]
    fn peer_fin_states_are_closed_even_while_probing() {
        for s in [
            sys::TCP_CLOSE_WAIT,
            sys::TCP_LAST_ACK,
            sys::TCP_CLOSING,
            sys::TCP_TIME_WAIT,
        ] {
            assert_eq!(peer_state(s, 0, 0, true), Peer::Closed, "state {s}");
            assert_eq!(peer_state(s, 0, 3, true), Peer::Closed, "state {s}");
        }
    }

    #[test]
    fn closed_socket_is_classified_by_its_error() {
        let c = sys::TCP_CLOSE;
        assert_eq!(peer_state(c, libc::ETIMEDOUT, 3, true), Peer::TimedOut);
        assert_eq!(peer_state(c, libc::EHOSTUNREACH, 0, true), Peer::TimedOut);
        assert_eq!(peer_state(c, libc::ENETUNREACH, 0, true), Peer::TimedOut);
        assert_eq!(peer_state(c, libc::ECONNRESET, 0, true), Peer::Reset);
        assert_eq!(peer_state(c, libc::ECONNRESET, 2, true), Peer::Reset);
        assert_eq!(peer_state(c, libc::EPIPE, 0, true), Peer::Reset);
        assert_eq!(peer_state(c, libc::ECONNREFUSED, 0, true), Peer::Reset);
        // The error was consumed earlier: only "over" is left to report.
        assert_eq!(peer_state(c, 0, 3, true), Peer::Closed);
        // Never sent a segment: a fresh (or disconnected) socket.
        assert_eq!(peer_state(c, 0, 0, false), Peer::NotConnected);
    }

    #[test]
    fn unconnected_states() {
        for s in [
            sys::TCP_LISTEN,
            sys::TCP_SYN_SENT,
            sys::TCP_SYN_RECV,
            sys::TCP_NEW_SYN_RECV,
            0,
            13,
            255,
        ] {
            assert_eq!(peer_state(s, 0, 0, true), Peer::NotConnected, "state {s}");
        }
    }

    #[test]
    fn tcp_info_prefix_matches_the_c_library() {
        use std::mem::offset_of;
        assert_eq!(
            offset_of!(sys::TcpInfo, tcpi_probes),
            offset_of!(libc::tcp_info, tcpi_probes)
        );
        assert_eq!(
            offset_of!(sys::TcpInfo, tcpi_rto),
            offset_of!(libc::tcp_info, tcpi_rto)
        );
        assert_eq!(
            offset_of!(sys::TcpInfo, tcpi_last_data_recv),
            offset_of!(libc::tcp_info, tcpi_last_data_recv)
        );
        assert_eq!(
            offset_of!(sys::TcpInfo, tcpi_rtt),
            offset_of!(libc::tcp_info, tcpi_rtt)
        );
        assert_eq!(
            offset_of!(sys::TcpInfo, tcpi_pacing_rate),
            offset_of!(libc::tcp_info, tcpi_pacing_rate)
        );
        assert_eq!(
            offset_of!(sys::TcpInfo, tcpi_segs_out),
            offset_of!(libc::tcp_info, tcpi_segs_out)
        );
    }

    #[test]
    fn loopback_lifecycle() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(status(l.as_raw_fd()).unwrap().peer, Peer::NotConnected);
        let st = status(c.as_raw_fd()).unwrap();
        assert_eq!((st.peer, st.error, st.probes), (Peer::Alive, 0, 0));
        assert_eq!(st.tcp_state, sys::TCP_ESTABLISHED);
        s.write_all(b"bye").unwrap();
        drop(s);
        // Bounded wait for the FIN to be processed (loopback: immediate).
        let mut st = status(c.as_raw_fd()).unwrap();
        for _ in 0..100 {
            if st.peer != Peer::Alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            st = status(c.as_raw_fd()).unwrap();
        }
        assert_eq!((st.peer, st.error), (Peer::Closed, 0));
        let mut buf = [0u8; 8];
        let mut r = &c;
        assert_eq!(r.read(&mut buf).unwrap(), 3, "data must still be readable");
        assert_eq!(&buf[..3], b"bye");
    }

    #[test]
    fn fresh_socket_and_bad_fds() {
        // SAFETY: plain socket(2); closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        let st = status(fd).unwrap();
        assert_eq!((st.peer, st.error), (Peer::NotConnected, 0));
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd) };
        assert_eq!(status(-1), Err(Error::TcpInfo(libc::EBADF)));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(status(u.as_raw_fd()), Err(Error::TcpInfo(libc::EOPNOTSUPP)));
    }
}
