//! Fuzzes `heartbeat::status::peer_state`, the pure mapping behind
//! `heartbeat_status()` (a thin caller: the mapping may gain states).
//!
//! The input is up to 32 bytes (fuzz/corpus/peer_state/ holds such files;
//! shorter inputs are padded with zeros, longer ones cut), read in this
//! order, integers little-endian: the TCP state (u8), the error (i32), the
//! probes (u32), the backoff (u8), the rto in ms (u32), the segments in
//! flight (u32), the bytes not sent (u32), whether the peer's window is
//! known (low bit of a u8) and its value (u32), the ms since the last ACK
//! (u32), and whether a segment was ever exchanged (low bit of a u8).
//!
//! Properties, for any facts and error:
//! - it never panics, and gives the same answer twice;
//! - the pending error only matters in TCP_CLOSE (the only state in which
//!   `status()` reads SO_ERROR): elsewhere the answer does not depend on it;
//! - in TCP_CLOSE, a socket that never exchanged a segment is NotConnected;
//!   otherwise an error gives Reset (ECONNRESET, EPIPE, ECONNREFUSED) or
//!   TimedOut (any other), and no error Closed; Reset and TimedOut come from
//!   nowhere else;
//! - Alive, Probing and Stalled come only from established (or FIN_WAIT)
//!   states; Alive only with no probe out and the window not shut on our
//!   data; Stalled only with the peer's window known to be 0, data waiting
//!   or in flight, and at most one probe unanswered; Probing only with a
//!   probe out or the window shut;
//! - states the kernel does not have are NotConnected.
#![no_main]

use heartbeat::status::{peer_state, Facts};
use heartbeat::Peer;
use libfuzzer_sys::fuzz_target;

// tcpi_state values (include/net/tcp_states.h).
const ESTABLISHED: u8 = 1;
const FIN_WAIT1: u8 = 4;
const FIN_WAIT2: u8 = 5;
const TIME_WAIT: u8 = 6;
const CLOSE: u8 = 7;
const CLOSE_WAIT: u8 = 8;
const LAST_ACK: u8 = 9;
const CLOSING: u8 = 11;
const NEW_SYN_RECV: u8 = 12;

fn is_reset(e: i32) -> bool {
    matches!(e, libc::ECONNRESET | libc::EPIPE | libc::ECONNREFUSED)
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Input(&data[..data.len().min(32)]);
    let tcp_state = r.u8();
    let error = r.u32() as i32;
    let probes = r.u32();
    let backoff = u32::from(r.u8());
    let rto_ms = r.u32();
    let unacked_segments = r.u32();
    let notsent_bytes = r.u32();
    let known = r.u8() & 1 == 1;
    let window = r.u32();
    let last_ack_recv_ms = r.u32();
    let ever_exchanged = r.u8() & 1 == 1;
    let f = Facts {
        tcp_state,
        probes,
        backoff,
        rto_ms,
        unacked_segments,
        notsent_bytes,
        peer_window: known.then_some(window),
        last_ack_recv_ms,
        ever_exchanged,
    };
    let p = peer_state(&f, error);
    assert_eq!(p, peer_state(&f, error));

    let state = tcp_state;
    if state != CLOSE {
        assert_eq!(p, peer_state(&f, 0), "error read outside TCP_CLOSE");
    } else {
        let want = match error {
            _ if !ever_exchanged => Peer::NotConnected,
            0 => Peer::Closed,
            e if is_reset(e) => Peer::Reset,
            _ => Peer::TimedOut,
        };
        assert_eq!(p, want, "TCP_CLOSE error {error} exchanged {ever_exchanged}");
    }
    let live = matches!(state, ESTABLISHED | FIN_WAIT1 | FIN_WAIT2);
    let shut = f.peer_window == Some(0) && (notsent_bytes > 0 || unacked_segments > 0);
    match p {
        Peer::Reset | Peer::TimedOut => assert_eq!(state, CLOSE),
        Peer::Alive => assert!(live && probes == 0 && !shut, "Alive from {state}"),
        Peer::Probing => assert!(live && (probes > 0 || shut), "Probing from {state}"),
        Peer::Stalled => assert!(live && shut && probes <= 1, "Stalled from {state}"),
        Peer::Closed => assert!(
            matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING | TIME_WAIT)
                || (state == CLOSE && ever_exchanged),
            "Closed from state {state}"
        ),
        Peer::NotConnected => assert!(!live, "NotConnected from a live state"),
    }
    if state == 0 || state > NEW_SYN_RECV {
        assert_eq!(p, Peer::NotConnected, "unknown state {state}");
    }
});
