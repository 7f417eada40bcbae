//! Where a connection stands, read from the kernel without touching data.
//!
//! [`status`] makes one `getsockopt(TCP_INFO)` call, plus one
//! `getsockopt(SO_ERROR)` only when TCP_INFO says the socket is closed
//! (`TCP_CLOSE`) after having exchanged segments: that is the only state in
//! which the kernel leaves a connection's fatal error pending, and reading
//! SO_ERROR on a live connection would not be harmless: when no fatal error
//! is pending it takes (and clears) the *soft* error the kernel keeps to
//! report if it later gives up (an `EHOSTUNREACH` seen while
//! retransmitting, say), which would change the error that the connection
//! eventually fails with. No application data is read, peeked or consumed;
//! no heap allocation.
//!
//! What is consumed: the pending error of a closed connection. The kernel
//! hands it out once, to whichever of SO_ERROR, `recv()` (even with
//! `MSG_PEEK`), `send()` or `connect()` asks first; afterwards `recv()`
//! returns 0 as if the peer had closed normally. [`status`] therefore
//! returns the error it took in [`Status::error`]: the caller owns it from
//! then on. A socket that never exchanged a segment (fresh, or disconnected
//! with `connect(AF_UNSPEC)`, which resets the counters and leaves an
//! ECONNRESET of its own pending) is not a connection: its error is not
//! read.
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use heartbeat::status::{status, Peer};
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let stream = TcpStream::connect(listener.local_addr()?)?;
//! let (_server, _) = listener.accept()?;
//! assert_eq!(status(&stream)?.peer, Peer::Alive);
//! assert_eq!(status(&listener)?.peer, Peer::NotConnected);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use crate::error::{Errno, Error, Result};
use crate::sys;

/// Where the peer stands, as far as the local kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Connected; no keepalive probe is outstanding.
    Alive,
    /// Connected, but keepalive (or zero-window) probes are going out
    /// unanswered; [`Status::probes`] counts them (not the window probes
    /// that the kernel sends as retransmissions of data in flight: then
    /// [`Status::last_ack_recv_ms`] says it).
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
    /// Not a connection: a listening socket, a socket never connected (or
    /// disconnected with `connect(AF_UNSPEC)`), or one whose connect() is
    /// still in progress.
    NotConnected,
    /// Connected, and the peer is alive but not reading: it answers, but
    /// advertises a zero receive window while we have data to send
    /// ([`Status::notsent_bytes`], [`Status::peer_window`]). Not a dead
    /// peer: its kernel acknowledged within the current probe interval
    /// ([`Status::last_ack_recv_ms`]). Needs Linux 5.4 (`tcpi_snd_wnd`).
    Stalled,
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
    /// Bytes the program wrote that the kernel has not sent yet
    /// (`tcpi_notsent_bytes`; sent but unacknowledged bytes are not
    /// included).
    pub notsent_bytes: u32,
    /// Segments sent and not yet acknowledged (`tcpi_unacked`).
    pub unacked_segments: u32,
    /// The peer's receive window in bytes, after scaling (`tcpi_snd_wnd`),
    /// or `None` on a kernel older than 5.4, which does not report it.
    pub peer_window: Option<u32>,
    /// Milliseconds since the last acknowledgement was received
    /// (`tcpi_last_ack_recv`).
    pub last_ack_recv_ms: u32,
}

/// What the state mapping ([`peer_state`]) reads from TCP_INFO: plain
/// numbers, so that every combination is a valid input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// `tcpi_state`.
    pub tcp_state: u8,
    /// `tcpi_probes`: keepalive or zero-window probes unanswered.
    pub probes: u32,
    /// `tcpi_backoff`: exponential backoff of the probe (or retransmission)
    /// timer.
    pub backoff: u32,
    /// `tcpi_rto` in milliseconds (already backed off for retransmissions,
    /// not for zero-window probes).
    pub rto_ms: u32,
    /// `tcpi_unacked`: segments in flight.
    pub unacked_segments: u32,
    /// `tcpi_notsent_bytes`: bytes waiting to be sent.
    pub notsent_bytes: u32,
    /// `tcpi_snd_wnd`, if the kernel reports it.
    pub peer_window: Option<u32>,
    /// `tcpi_last_ack_recv` in milliseconds.
    pub last_ack_recv_ms: u32,
    /// The socket has sent or received a segment (`tcpi_segs_out` or
    /// `tcpi_segs_in` non-zero): false for a fresh socket and for one
    /// disconnected with `connect(AF_UNSPEC)`, which resets both.
    pub ever_exchanged: bool,
}

/// Errors that mean the peer's kernel answered with RST.
fn is_reset(error: Errno) -> bool {
    matches!(error, libc::ECONNRESET | libc::EPIPE | libc::ECONNREFUSED)
}

impl Facts {
    /// Whether [`status`] must read SO_ERROR: only a closed socket that
    /// exchanged segments can have a connection's error pending.
    pub fn error_pending_possible(&self) -> bool {
        self.tcp_state == sys::TCP_CLOSE && self.ever_exchanged
    }

    /// The peer's window is zero while we have data for it.
    fn window_shut(&self) -> bool {
        self.peer_window == Some(0) && (self.notsent_bytes > 0 || self.unacked_segments > 0)
    }

    /// The peer acknowledged within the current probe interval, allowing
    /// for one answer the peer's kernel did not send and for the timers'
    /// lateness. Zero-window probes are sent every max(rto, 200 ms) <<
    /// backoff (at most 120 s) when nothing is in flight; when a segment is
    /// in flight, its retransmissions probe the window instead, every
    /// (already backed-off) rto. A live peer's kernel answers out-of-window
    /// probes at most once per 500 ms (net.ipv4.tcp_invalid_ratelimit), so
    /// while the interval is short one probe may go unanswered: the last
    /// acknowledgement is then up to 500 ms + one interval old.
    fn peer_answers(&self) -> bool {
        let interval = if self.unacked_segments > 0 {
            u64::from(self.rto_ms)
        } else {
            let base = u64::from(self.rto_ms.max(sys::TCP_RTO_MIN_MS));
            base << self.backoff.min(20)
        }
        .min(u64::from(sys::TCP_RTO_MAX_MS)) as u32;
        let limit = u64::from(interval)
            + u64::from(sys::timer_late_ms(interval))
            + u64::from(ANSWER_RATE_LIMIT_MS + sys::timer_late_ms(ANSWER_RATE_LIMIT_MS));
        self.probes <= 1 && u64::from(self.last_ack_recv_ms) <= limit
    }
}

/// The kernel's default net.ipv4.tcp_invalid_ratelimit: at most one answer
/// per 500 ms to out-of-window segments such as window probes.
const ANSWER_RATE_LIMIT_MS: u32 = 500;

/// The pure mapping behind [`status`]: the facts from TCP_INFO and the
/// pending error (read only when [`Facts::error_pending_possible`], else 0).
pub fn peer_state(f: &Facts, error: Errno) -> Peer {
    match f.tcp_state {
        sys::TCP_ESTABLISHED | sys::TCP_FIN_WAIT1 | sys::TCP_FIN_WAIT2 => {
            if f.window_shut() {
                if f.peer_answers() {
                    Peer::Stalled
                } else {
                    Peer::Probing
                }
            } else if f.probes > 0 {
                Peer::Probing
            } else {
                Peer::Alive
            }
        }
        sys::TCP_CLOSE_WAIT | sys::TCP_LAST_ACK | sys::TCP_CLOSING | sys::TCP_TIME_WAIT => {
            Peer::Closed
        }
        sys::TCP_CLOSE if !f.ever_exchanged => Peer::NotConnected,
        sys::TCP_CLOSE => match error {
            0 => Peer::Closed,
            e if is_reset(e) => Peer::Reset,
            _ => Peer::TimedOut,
        },
        sys::TCP_LISTEN | sys::TCP_SYN_SENT | sys::TCP_SYN_RECV | sys::TCP_NEW_SYN_RECV => {
            Peer::NotConnected
        }
        _ => Peer::NotConnected,
    }
}

/// The facts of one TCP_INFO, of which the kernel wrote `len` bytes.
pub(crate) fn facts(info: &sys::TcpInfo, len: usize) -> Facts {
    Facts {
        tcp_state: info.tcpi_state,
        probes: u32::from(info.tcpi_probes),
        backoff: u32::from(info.tcpi_backoff),
        rto_ms: info.tcpi_rto / 1000,
        unacked_segments: info.tcpi_unacked,
        notsent_bytes: info.tcpi_notsent_bytes,
        peer_window: (len >= sys::TCP_INFO_HAS_SND_WND).then_some(info.tcpi_snd_wnd),
        last_ack_recv_ms: info.tcpi_last_ack_recv,
        ever_exchanged: info.tcpi_segs_out > 0 || info.tcpi_segs_in > 0,
    }
}

/// Where the connection on `fd` stands, without reading any data.
///
/// One `getsockopt(TCP_INFO)`; a second, `getsockopt(SO_ERROR)`, only when
/// the socket is in `TCP_CLOSE` after having exchanged segments, in which
/// case the error it took is in [`Status::error`]. Fails with
/// [`Error::TcpInfo`] when `fd` is not an open TCP socket (EBADF, ENOTSOCK,
/// or EOPNOTSUPP / ENOPROTOOPT for UDP and UNIX sockets).
pub fn status(fd: &impl AsFd) -> Result<Status> {
    status_raw(fd.as_fd().as_raw_fd())
}

pub(crate) fn status_raw(fd: RawFd) -> Result<Status> {
    let (info, len) =
        sys::getsockopt_len::<sys::TcpInfo>(fd, sys::TCP_INFO).map_err(Error::TcpInfo)?;
    let f = facts(&info, len);
    let error = if f.error_pending_possible() {
        sys::getsockopt::<c_int>(fd, sys::SO_ERROR).map_err(Error::TcpInfo)?
    } else {
        0
    };
    Ok(Status {
        peer: peer_state(&f, error),
        error,
        probes: f.probes,
        retransmits: u32::from(info.tcpi_retransmits),
        last_data_recv_ms: info.tcpi_last_data_recv,
        rtt_us: info.tcpi_rtt,
        tcp_state: info.tcpi_state,
        notsent_bytes: f.notsent_bytes,
        unacked_segments: f.unacked_segments,
        peer_window: f.peer_window,
        last_ack_recv_ms: f.last_ack_recv_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    const LIVE: [u8; 3] = [sys::TCP_ESTABLISHED, sys::TCP_FIN_WAIT1, sys::TCP_FIN_WAIT2];

    /// A connected socket with nothing special going on.
    fn conn(tcp_state: u8, probes: u32) -> Facts {
        Facts {
            tcp_state,
            probes,
            rto_ms: 204,
            peer_window: Some(65535),
            ever_exchanged: true,
            ..Facts::default()
        }
    }

    /// Zero window with data waiting, nothing in flight (probe timer).
    fn shut(probes: u32, backoff: u32, last_ack_recv_ms: u32) -> Facts {
        Facts {
            backoff,
            rto_ms: 212,
            notsent_bytes: 33624,
            peer_window: Some(0),
            last_ack_recv_ms,
            ..conn(sys::TCP_ESTABLISHED, probes)
        }
    }

    #[test]
    fn live_states_are_alive_or_probing() {
        for s in LIVE {
            assert_eq!(peer_state(&conn(s, 0), 0), Peer::Alive, "state {s}");
            assert_eq!(peer_state(&conn(s, 1), 0), Peer::Probing, "state {s}");
            assert_eq!(peer_state(&conn(s, 127), 0), Peer::Probing, "state {s}");
        }
    }

    #[test]
    fn zero_window_answered_is_stalled_unanswered_is_probing() {
        for s in LIVE {
            let f = Facts {
                tcp_state: s,
                ..shut(0, 0, 10)
            };
            assert_eq!(peer_state(&f, 0), Peer::Stalled, "state {s}");
        }
        // Measured on a veth pair (peer alive, not reading): probes 0/1,
        // backoff rising, the last ACK at most one interval (+500 ms when
        // one answer was rate-limited) old.
        assert_eq!(peer_state(&shut(0, 1, 192), 0), Peer::Stalled);
        assert_eq!(peer_state(&shut(1, 2, 1192), 0), Peer::Stalled);
        assert_eq!(peer_state(&shut(0, 4, 3404), 0), Peer::Stalled);
        assert_eq!(peer_state(&shut(0, 5, 3164), 0), Peer::Stalled);
        // Two probes unanswered: not the rate limit, the peer is silent.
        assert_eq!(peer_state(&shut(2, 3, 1700), 0), Peer::Probing);
        // The last ACK is older than the interval allows.
        // interval 212 << 2 = 848 ms; limit 848 + 138 + 500 + 94 = 1580 ms.
        assert_eq!(peer_state(&shut(1, 2, 1580), 0), Peer::Stalled);
        assert_eq!(peer_state(&shut(1, 2, 1581), 0), Peer::Probing);
        assert_eq!(peer_state(&shut(0, 2, 5000), 0), Peer::Probing);
        // A segment in flight probes the window: its (backed-off) rto is
        // the interval.
        let rtx = |lar: u32| Facts {
            unacked_segments: 1,
            notsent_bytes: 0,
            rto_ms: 3264,
            backoff: 4,
            ..shut(0, 4, lar)
        };
        assert_eq!(peer_state(&rtx(3000), 0), Peer::Stalled);
        assert_eq!(peer_state(&rtx(20_000), 0), Peer::Probing);
        // Huge backoff or rto: capped at TCP_RTO_MAX, no overflow.
        assert_eq!(peer_state(&shut(0, 255, 100_000), 0), Peer::Stalled);
        assert_eq!(peer_state(&shut(0, 255, 200_000), 0), Peer::Probing);
        let f = Facts {
            rto_ms: u32::MAX,
            ..shut(0, 255, u32::MAX)
        };
        assert_eq!(peer_state(&f, 0), Peer::Probing);
    }

    #[test]
    fn zero_window_needs_data_and_a_known_window() {
        // Nothing to send: the closed window does not matter.
        let f = Facts {
            notsent_bytes: 0,
            ..shut(0, 0, 10)
        };
        assert_eq!(peer_state(&f, 0), Peer::Alive);
        // A kernel older than 5.4 does not report the window: never stalled.
        let f = Facts {
            peer_window: None,
            ..shut(0, 0, 10)
        };
        assert_eq!(peer_state(&f, 0), Peer::Alive);
        // An open window with probes out is keepalive probing.
        let f = Facts {
            peer_window: Some(1),
            ..shut(1, 0, 10)
        };
        assert_eq!(peer_state(&f, 0), Peer::Probing);
    }

    #[test]
    fn peer_fin_states_are_closed_even_while_probing() {
        for s in [
            sys::TCP_CLOSE_WAIT,
            sys::TCP_LAST_ACK,
            sys::TCP_CLOSING,
            sys::TCP_TIME_WAIT,
        ] {
            assert_eq!(peer_state(&conn(s, 0), 0), Peer::Closed, "state {s}");
            assert_eq!(peer_state(&conn(s, 3), 0), Peer::Closed, "state {s}");
            let f = Facts {
                tcp_state: s,
                ..shut(0, 0, 10)
            };
            assert_eq!(peer_state(&f, 0), Peer::Closed, "state {s}");
        }
    }

    #[test]
    fn closed_socket_is_classified_by_its_error() {
        let c = conn(sys::TCP_CLOSE, 0);
        assert!(c.error_pending_possible());
        assert_eq!(
            peer_state(&conn(sys::TCP_CLOSE, 3), libc::ETIMEDOUT),
            Peer::TimedOut
        );
        assert_eq!(peer_state(&c, libc::EHOSTUNREACH), Peer::TimedOut);
        assert_eq!(peer_state(&c, libc::ENETUNREACH), Peer::TimedOut);
        assert_eq!(peer_state(&c, libc::ECONNRESET), Peer::Reset);
        assert_eq!(
            peer_state(&conn(sys::TCP_CLOSE, 2), libc::ECONNRESET),
            Peer::Reset
        );
        assert_eq!(peer_state(&c, libc::EPIPE), Peer::Reset);
        assert_eq!(peer_state(&c, libc::ECONNREFUSED), Peer::Reset);
        // The error was consumed earlier: only "over" is left to report.
        assert_eq!(peer_state(&conn(sys::TCP_CLOSE, 3), 0), Peer::Closed);
    }

    #[test]
    fn never_exchanged_is_not_connected_whatever_the_error() {
        // A fresh socket, or one disconnected with connect(AF_UNSPEC): the
        // kernel leaves ECONNRESET pending after the disconnect, and zeroes
        // the segment counters. Not a reset by the peer.
        let f = Facts {
            ever_exchanged: false,
            ..conn(sys::TCP_CLOSE, 0)
        };
        assert!(!f.error_pending_possible());
        for e in [0, libc::ECONNRESET, libc::ETIMEDOUT] {
            assert_eq!(peer_state(&f, e), Peer::NotConnected, "error {e}");
        }
        // Only TCP_CLOSE may have an error pending.
        assert!(!conn(sys::TCP_ESTABLISHED, 0).error_pending_possible());
        assert!(!conn(sys::TCP_TIME_WAIT, 0).error_pending_possible());
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
            assert_eq!(peer_state(&conn(s, 0), 0), Peer::NotConnected, "state {s}");
            let f = Facts {
                tcp_state: s,
                ..shut(0, 0, 10)
            };
            assert_eq!(peer_state(&f, 0), Peer::NotConnected, "state {s}");
        }
    }

    #[test]
    fn tcp_info_prefix_matches_the_c_library() {
        use std::mem::offset_of;
        macro_rules! same {
            ($($f:ident),*) => {$(
                assert_eq!(
                    offset_of!(sys::TcpInfo, $f),
                    offset_of!(libc::tcp_info, $f),
                    stringify!($f)
                );
            )*};
        }
        same!(
            tcpi_probes,
            tcpi_backoff,
            tcpi_rto,
            tcpi_unacked,
            tcpi_last_data_recv,
            tcpi_last_ack_recv,
            tcpi_rtt,
            tcpi_pacing_rate,
            tcpi_segs_out,
            tcpi_segs_in,
            tcpi_notsent_bytes,
            tcpi_delivery_rate,
            tcpi_bytes_sent,
            tcpi_rcv_ooopack,
            tcpi_snd_wnd
        );
        assert_eq!(
            sys::TCP_INFO_HAS_SND_WND,
            offset_of!(libc::tcp_info, tcpi_rcv_wnd)
        );
    }

    #[test]
    fn a_short_tcp_info_has_no_window() {
        let info = sys::TcpInfo {
            tcpi_state: sys::TCP_ESTABLISHED,
            tcpi_segs_out: 1,
            tcpi_notsent_bytes: 100,
            ..Default::default()
        };
        // A 5.3 kernel stops before tcpi_snd_wnd: the zero there is not a
        // zero window.
        let f = facts(&info, sys::TCP_INFO_HAS_SND_WND - 4);
        assert_eq!(f.peer_window, None);
        assert_eq!(peer_state(&f, 0), Peer::Alive);
        let f = facts(&info, sys::TCP_INFO_HAS_SND_WND);
        assert_eq!(f.peer_window, Some(0));
        assert_eq!(peer_state(&f, 0), Peer::Stalled);
    }

    #[test]
    fn this_kernel_reports_the_window() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let st = status(&c).unwrap();
        assert!(st.peer_window.unwrap_or(0) > 0, "{st:?}");
        assert_eq!(st.notsent_bytes, 0);
    }

    #[test]
    fn loopback_lifecycle() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(status(&l).unwrap().peer, Peer::NotConnected);
        let st = status(&c).unwrap();
        assert_eq!((st.peer, st.error, st.probes), (Peer::Alive, 0, 0));
        assert_eq!(st.tcp_state, sys::TCP_ESTABLISHED);
        s.write_all(b"bye").unwrap();
        drop(s);
        // Bounded wait for the FIN to be processed (loopback: immediate).
        let mut st = status(&c).unwrap();
        for _ in 0..100 {
            if st.peer != Peer::Alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            st = status(&c).unwrap();
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
        let st = status_raw(fd).unwrap();
        assert_eq!((st.peer, st.error), (Peer::NotConnected, 0));
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd) };
        assert_eq!(status_raw(-1), Err(Error::TcpInfo(libc::EBADF)));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(status(&u), Err(Error::TcpInfo(libc::EOPNOTSUPP)));
    }
}
