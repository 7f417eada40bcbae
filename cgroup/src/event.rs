//! One connection end, as `watch` prints it: a line of text, or one JSON
//! object per line.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bpf::Event;

/// How the connection ended: `closed` (sk_err 0: an orderly close, or
/// closed by this side), or the error the kernel gave it.
pub fn end_name(err: i32) -> String {
    match err {
        0 => "closed".into(),
        libc::ETIMEDOUT => "ETIMEDOUT".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::EPIPE => "EPIPE".into(),
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::ECONNABORTED => "ECONNABORTED".into(),
        libc::EHOSTUNREACH => "EHOSTUNREACH".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::EPROTO => "EPROTO".into(),
        n => format!("errno{n}"),
    }
}

/// BPF_TCP_* (the kernel's TCP states).
pub fn state_name(s: u32) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

fn addr(family: u32, ip: &[u32; 4]) -> IpAddr {
    // The words hold network-order bytes as the kernel stored them.
    let bytes = |w: u32| w.to_ne_bytes();
    if family == libc::AF_INET6 as u32 {
        let mut b = [0u8; 16];
        for (i, w) in ip.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&bytes(*w));
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(bytes(ip[0])))
    }
}

fn endpoint(ip: IpAddr, port: u32) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `2026-01-02T03:04:05.678901Z` for nanoseconds since the epoch.
pub fn utc(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let micros = (ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The event as one line; `wall_offset_ns` turns CLOCK_MONOTONIC into
/// CLOCK_REALTIME.
pub fn text(e: &Event, wall_offset_ns: i128) -> String {
    format!(
        "{} {} {} {} retransmits={} probes={} state={}",
        utc(i128::from(e.mono_ns) + wall_offset_ns),
        endpoint(addr(e.family, &e.local_ip), e.local_port),
        endpoint(addr(e.family, &e.remote_ip), e.remote_port),
        end_name(e.err),
        e.total_retrans,
        e.probes,
        state_name(e.old_state)
    )
}

/// The event as one JSON object (every string here is plain ASCII with
/// nothing to escape).
pub fn json(e: &Event, wall_offset_ns: i128) -> String {
    let mut s = String::with_capacity(320);
    let _ =
        write!(
        s,
        "{{\"time\":\"{}\",\"mono_ns\":{},\"family\":\"{}\",\"local\":\"{}\",\"local_port\":{},\
         \"remote\":\"{}\",\"remote_port\":{},\"end\":\"{}\",\"errno\":{},\"retransmits\":{},\
         \"probes\":{},\"state\":\"{}\",\"bytes_received\":{},\"bytes_acked\":{}}}",
        utc(i128::from(e.mono_ns) + wall_offset_ns),
        e.mono_ns,
        if e.family == libc::AF_INET6 as u32 { "ipv6" } else { "ipv4" },
        addr(e.family, &e.local_ip),
        e.local_port,
        addr(e.family, &e.remote_ip),
        e.remote_port,
        end_name(e.err),
        e.err,
        e.total_retrans,
        e.probes,
        state_name(e.old_state),
        e.bytes_received,
        e.bytes_acked
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            utc(1_767_225_600_123_456_789),
            "2026-01-01T00:00:00.123456Z"
        );
        assert_eq!(
            utc(4_102_444_799_999_999_000),
            "2099-12-31T23:59:59.999999Z"
        );
        assert_eq!(utc(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn lines() {
        let e = Event {
            mono_ns: 5_000_000_000,
            family: libc::AF_INET as u32,
            local_ip: v4([192, 0, 2, 1]),
            remote_ip: v4([192, 0, 2, 2]),
            local_port: 40000,
            remote_port: 5000,
            err: libc::ETIMEDOUT,
            old_state: 1,
            total_retrans: 2,
            probes: 3,
            bytes_received: 6,
            bytes_acked: 7,
            ..Event::default()
        };
        assert_eq!(
            text(&e, 0),
            "1970-01-01T00:00:05.000000Z 192.0.2.1:40000 192.0.2.2:5000 ETIMEDOUT retransmits=2 probes=3 state=ESTABLISHED"
        );
        assert_eq!(
            json(&e, 1_000_000),
            "{\"time\":\"1970-01-01T00:00:05.001000Z\",\"mono_ns\":5000000000,\"family\":\"ipv4\",\
             \"local\":\"192.0.2.1\",\"local_port\":40000,\"remote\":\"192.0.2.2\",\"remote_port\":5000,\
             \"end\":\"ETIMEDOUT\",\"errno\":110,\"retransmits\":2,\"probes\":3,\"state\":\"ESTABLISHED\",\
             \"bytes_received\":6,\"bytes_acked\":7}"
        );
        let mut b = [0u8; 16];
        b[0] = 0x20;
        b[1] = 0x01;
        b[2] = 0x0d;
        b[3] = 0xb8;
        b[15] = 2;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let e6 = Event {
            family: libc::AF_INET6 as u32,
            remote_ip: [w(0), w(4), w(8), w(12)],
            remote_port: 443,
            err: libc::ECONNRESET,
            old_state: 1,
            ..e
        };
        assert!(
            text(&e6, 0).contains(" [2001:db8::2]:443 ECONNRESET "),
            "{}",
            text(&e6, 0)
        );
        assert_eq!(end_name(0), "closed");
        assert_eq!(end_name(9999), "errno9999");
        assert_eq!(state_name(9), "LAST_ACK");
    }
}
