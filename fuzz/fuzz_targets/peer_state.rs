//! Fuzzes `heartbeat::status::peer_state`, the pure mapping behind
//! `heartbeat_status()` (a thin caller: the mapping may gain states).
//!
//! The input is 10 bytes (fuzz/corpus/peer_state/ holds such files): the
//! TCP state, the error (i32, little-endian), the probes (u32,
//! little-endian), and whether a segment was ever sent (the low bit);
//! shorter inputs are padded with zeros, longer ones cut.
//!
//! Properties, for any TCP state byte, error, probe count and history:
//! - it never panics, and gives the same answer twice;
//! - the pending error only matters in TCP_CLOSE (the only state in which
//!   `status()` reads SO_ERROR): elsewhere the answer does not depend on it;
//! - in TCP_CLOSE an error gives Reset (ECONNRESET, EPIPE, ECONNREFUSED) or
//!   TimedOut (any other), and no error gives Closed or NotConnected by
//!   whether the socket ever sent a segment; Reset and TimedOut come from
//!   nowhere else;
//! - Alive and Probing come only from established (or FIN_WAIT) states,
//!   Probing only with unanswered probes, Alive only without;
//! - states the kernel does not have are NotConnected.
#![no_main]

use heartbeat::status::peer_state;
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

fuzz_target!(|data: &[u8]| {
    let mut b = [0u8; 10];
    let n = data.len().min(10);
    b[..n].copy_from_slice(&data[..n]);
    let state = b[0];
    let error = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let probes = u32::from_le_bytes([b[5], b[6], b[7], b[8]]);
    let ever_sent = b[9] & 1 == 1;
    let p = peer_state(state, error, probes, ever_sent);
    assert_eq!(p, peer_state(state, error, probes, ever_sent));

    if state != CLOSE {
        assert_eq!(
            p,
            peer_state(state, 0, probes, ever_sent),
            "error read outside TCP_CLOSE"
        );
    } else {
        let want = match error {
            0 if ever_sent => Peer::Closed,
            0 => Peer::NotConnected,
            e if is_reset(e) => Peer::Reset,
            _ => Peer::TimedOut,
        };
        assert_eq!(p, want, "TCP_CLOSE error {error} ever_sent {ever_sent}");
    }
    match p {
        Peer::Reset | Peer::TimedOut => assert_eq!(state, CLOSE),
        Peer::Alive => {
            assert!(matches!(state, ESTABLISHED | FIN_WAIT1 | FIN_WAIT2));
            assert_eq!(probes, 0);
        }
        Peer::Probing => {
            assert!(matches!(state, ESTABLISHED | FIN_WAIT1 | FIN_WAIT2));
            assert!(probes > 0);
        }
        Peer::Closed => assert!(
            matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING | TIME_WAIT)
                || (state == CLOSE && ever_sent),
            "Closed from state {state}"
        ),
        _ => {}
    }
    if state == 0 || state > NEW_SYN_RECV {
        assert_eq!(p, Peer::NotConnected, "unknown state {state}");
    }
});
