//! The scheduler: what is due for which fd, and when. Pure logic over the
//! table and the wheel: every function takes "now" as a parameter, so the
//! whole timing behaviour is tested on a fake clock, without threads.
//!
//! Per watched fd there is exactly one wheel entry, due at
//! `min(next ping, last heard + timeout)`. `alive()` only stores a
//! timestamp in the fd's slot; the deadline is re-read when the entry comes
//! due, so hearing from a peer costs the scheduler nothing.

use std::sync::atomic::Ordering::Relaxed;

use super::table::Table;
use super::wheel::Wheel;
use crate::error::{Errno, Error, Result};

/// Nanoseconds per millisecond.
pub(crate) const MS: u64 = 1_000_000;

/// Why a peer was declared dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Nothing was heard from the peer for `timeout_ms`.
    Silence,
    /// The ping could not be sent: `send()` (or the ping callback) failed
    /// with this errno.
    SendFailed(Errno),
}

/// What the monitor thread must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a ping on `fd`, starting at byte `offset` of the ping (non-zero
    /// when the previous ping was only partly sent); `late_ns` behind its
    /// due time.
    Ping {
        fd: i32,
        generation: u64,
        offset: usize,
        late_ns: u64,
    },
    /// `fd` is dead and already unwatched: deliver the dead callback.
    Dead { fd: i32, why: Death },
}

/// What sending a ping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// This many bytes went out (all of the rest of the ping, or part).
    Bytes(usize),
    /// The send buffer is full (EAGAIN): not a death; the ping is skipped.
    WouldBlock,
    /// The send failed with this errno: the peer is declared dead.
    Failed(Errno),
}

pub(crate) struct Sched {
    interval: u64,
    timeout: u64,
    pings: bool,
    ping_len: usize,
    wheel: Wheel,
    /// Generation of the next watch (never 0, so a zeroed slot is "never").
    next_gen: u64,
    /// Counter of watches, for spreading first pings over the interval.
    seq: u64,
}

/// Milliseconds at or after `ns` (the wheel slot of a due time).
fn ceil_ms(ns: u64) -> u64 {
    ns.div_ceil(MS)
}

impl Sched {
    /// A scheduler for `interval_ms` and `timeout_ms` (already validated);
    /// `ping_len` 0 with `pings` true means the application pings.
    pub(crate) fn new(
        interval_ms: u32,
        timeout_ms: u32,
        pings: bool,
        ping_len: usize,
        now: u64,
    ) -> Result<Sched> {
        let span = u64::from(interval_ms.max(timeout_ms)) + 2;
        Ok(Sched {
            interval: u64::from(interval_ms) * MS,
            timeout: u64::from(timeout_ms) * MS,
            pings,
            ping_len,
            wheel: Wheel::new(span, now / MS)?,
            next_gen: 1,
            seq: 0,
        })
    }

    /// Number of watched fds.
    pub(crate) fn watched(&self) -> usize {
        self.wheel.len()
    }

    /// Offset of the first ping of the `seq`-th watch within the interval:
    /// a Weyl sequence (multiples of the golden ratio modulo 1), so any run
    /// of consecutive watches is spread evenly over the interval.
    fn spread(&self, seq: u64) -> u64 {
        let frac = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        ((u128::from(frac) * u128::from(self.interval)) >> 32) as u64
    }

    fn reschedule(&mut self, t: &Table, fd: i32, heard: u64, now: u64) {
        let node = t.node(fd).expect("watched fd has a chunk");
        let deadline = heard.saturating_add(self.timeout);
        let due = if self.pings {
            deadline.min(node.next_ping.load(Relaxed))
        } else {
            deadline
        };
        // Never in the past: ceil_ms(due) > now / MS whenever due > now, and
        // a due time <= now is handled before rescheduling.
        self.wheel.insert(t, fd, ceil_ms(due).max(now / MS + 1));
    }

    /// Starts watching `fd` at `now`: last heard = now, first ping spread
    /// over the interval, first deadline now + timeout.
    pub(crate) fn watch(&mut self, t: &Table, fd: i32, now: u64) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        t.ensure(fd)?;
        let slot = t.slot(fd).ok_or(Error::Invalid)?;
        if slot.watched() {
            return Err(Error::AlreadyWatched);
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        let first = now + self.spread(self.seq);
        self.seq = self.seq.wrapping_add(1);
        let node = t.node(fd).ok_or(Error::Invalid)?;
        node.next_ping.store(first, Relaxed);
        node.ping_off.store(0, Relaxed);
        slot.touch(now);
        slot.set_state(gen << 1 | 1);
        let due = if self.pings {
            first.min(now + self.timeout)
        } else {
            now + self.timeout
        };
        self.wheel.insert(t, fd, ceil_ms(due));
        Ok(())
    }

    /// The generation of a watched fd, or None.
    pub(crate) fn generation(&self, t: &Table, fd: i32) -> Option<u64> {
        let s = t.slot(fd)?.state();
        (s & 1 == 1).then_some(s >> 1)
    }

    fn forget(&mut self, t: &Table, fd: i32) {
        if let Some(slot) = t.slot(fd) {
            slot.set_state(slot.state() & !1);
        }
        self.wheel.remove(t, fd);
    }

    /// Stops watching `fd`.
    pub(crate) fn unwatch(&mut self, t: &Table, fd: i32) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        if self.generation(t, fd).is_none() {
            return Err(Error::NotWatched);
        }
        self.forget(t, fd);
        Ok(())
    }

    /// The next thing to do at `now`, if any. A death is final: the fd is
    /// unwatched before this returns, so it is reported exactly once.
    pub(crate) fn poll(&mut self, t: &Table, now: u64) -> Option<Due> {
        while let Some(fd) = self.wheel.pop(t, now / MS) {
            let Some(gen) = self.generation(t, fd) else {
                continue; // cannot happen: unwatched fds leave the wheel
            };
            let slot = t.slot(fd)?;
            let node = t.node(fd)?;
            let heard = slot.heard();
            if now >= heard.saturating_add(self.timeout) {
                self.forget(t, fd);
                return Some(Due::Dead {
                    fd,
                    why: Death::Silence,
                });
            }
            let next_ping = node.next_ping.load(Relaxed);
            if self.pings && now >= next_ping {
                // Keep the phase: skip whole intervals if we fell behind
                // (a stopped process), never send a burst.
                let missed = (now - next_ping) / self.interval + 1;
                node.next_ping
                    .store(next_ping + missed * self.interval, Relaxed);
                self.reschedule(t, fd, heard, now);
                return Some(Due::Ping {
                    fd,
                    generation: gen,
                    offset: node.ping_off.load(Relaxed) as usize,
                    late_ns: now - next_ping,
                });
            }
            self.reschedule(t, fd, heard, now);
        }
        None
    }

    /// Records what a ping sent by `Due::Ping` did. Returns the death to
    /// report if the send failed and the fd is still the same watch
    /// (it may have been unwatched, or re-watched, meanwhile).
    pub(crate) fn ping_done(
        &mut self,
        t: &Table,
        fd: i32,
        generation: u64,
        offset: usize,
        sent: Sent,
    ) -> Option<Death> {
        if self.generation(t, fd) != Some(generation) {
            return None;
        }
        match sent {
            Sent::Bytes(n) => {
                let end = offset + n;
                let off = if self.ping_len == 0 || end >= self.ping_len {
                    0
                } else {
                    end
                };
                t.node(fd)?.ping_off.store(off as u32, Relaxed);
                None
            }
            Sent::WouldBlock => None,
            Sent::Failed(e) => {
                self.forget(t, fd);
                Some(Death::SendFailed(e))
            }
        }
    }

    /// When the monitor thread must wake next (ns), or None if nothing is
    /// watched.
    pub(crate) fn next_wake(&self, now: u64) -> Option<u64> {
        self.wheel.next_due(now / MS).map(|ms| (ms * MS).max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000 * MS;

    fn setup(interval: u32, timeout: u32, pings: bool, n: i32) -> (Table, Sched) {
        let t = Table::new().unwrap();
        let s = Sched::new(interval, timeout, pings, 1, 0).unwrap();
        for fd in 0..n {
            t.ensure(fd).unwrap();
        }
        (t, s)
    }

    fn alive(t: &Table, fd: i32, now: u64) {
        t.slot(fd).unwrap().touch(now);
    }

    /// Runs the scheduler millisecond by millisecond from `from` to `to`,
    /// answering every ping after `rtt` ns unless `silent(fd, now)`.
    /// Returns (time, event) pairs.
    fn run(
        t: &Table,
        s: &mut Sched,
        from: u64,
        to: u64,
        rtt: u64,
        silent: &dyn Fn(i32, u64) -> bool,
    ) -> Vec<(u64, Due)> {
        let mut out = vec![];
        let mut pending: Vec<(u64, i32)> = vec![];
        let mut now = from;
        while now <= to {
            pending.retain(|&(at, fd)| {
                if at <= now {
                    if s.generation(t, fd).is_some() {
                        alive(t, fd, at);
                    }
                    false
                } else {
                    true
                }
            });
            while let Some(d) = s.poll(t, now) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    assert!(s
                        .ping_done(t, fd, generation, offset, Sent::Bytes(1))
                        .is_none());
                    if !silent(fd, now) {
                        pending.push((now + rtt, fd));
                    }
                }
                out.push((now, d));
            }
            now += MS;
        }
        out
    }

    #[test]
    fn pings_every_interval_and_answered_peer_never_dies() {
        let (t, mut s) = setup(1000, 3000, true, 4);
        for fd in 0..4 {
            s.watch(&t, fd, 0).unwrap();
        }
        // Answers take 1999 ms: just inside timeout - interval.
        let ev = run(&t, &mut s, 0, 60 * S, 1999 * MS, &|_, _| false);
        assert!(ev.iter().all(|(_, d)| matches!(d, Due::Ping { .. })));
        for fd in 0..4 {
            let times: Vec<u64> = ev
                .iter()
                .filter(|(_, d)| matches!(d, Due::Ping { fd: f, .. } if *f == fd))
                .map(|(at, _)| *at)
                .collect();
            assert!(times.len() >= 60, "{}", times.len());
            for w in times.windows(2) {
                assert_eq!(w[1] - w[0], S, "fd {fd}: pings exactly one interval apart");
            }
        }
        assert_eq!(s.watched(), 4);
    }

    #[test]
    fn slow_answer_beyond_the_window_is_a_death() {
        // The first answer takes longer than the timeout: the peer is
        // declared dead at exactly watch time + timeout, once.
        let (t, mut s) = setup(1000, 3000, true, 1);
        s.watch(&t, 0, 0).unwrap();
        let ev = run(&t, &mut s, 0, 30 * S, 3001 * MS, &|_, _| false);
        let deaths: Vec<_> = ev
            .iter()
            .filter(|(_, d)| matches!(d, Due::Dead { .. }))
            .collect();
        assert_eq!(deaths.len(), 1);
        assert_eq!(deaths[0].0, 3 * S);
        assert_eq!(s.watched(), 0);
    }

    #[test]
    fn silence_is_reported_once_exactly_at_the_deadline() {
        let (t, mut s) = setup(100, 350, true, 2);
        s.watch(&t, 0, 0).unwrap();
        s.watch(&t, 1, 0).unwrap();
        // fd 1 stops answering at 5 s.
        let ev = run(&t, &mut s, 0, 10 * S, 2 * MS, &|fd, now| {
            fd == 1 && now >= 5 * S
        });
        let deaths: Vec<_> = ev
            .iter()
            .filter(|(_, d)| matches!(d, Due::Dead { .. }))
            .collect();
        assert_eq!(deaths.len(), 1);
        let (at, d) = deaths[0];
        assert_eq!(
            *d,
            Due::Dead {
                fd: 1,
                why: Death::Silence
            }
        );
        // Last answer: to the last ping before 5 s, + 2 ms.
        let last_ping = ev
            .iter()
            .filter(|(at, d)| *at < 5 * S && matches!(d, Due::Ping { fd: 1, .. }))
            .map(|(at, _)| *at)
            .max()
            .unwrap();
        assert_eq!(*at, last_ping + 2 * MS + 350 * MS);
        // No ping after death, fd 0 untouched.
        assert!(!ev
            .iter()
            .any(|(t2, d)| *t2 > *at && matches!(d, Due::Ping { fd: 1, .. })));
        assert!(s.generation(&t, 0).is_some());
        assert!(s.generation(&t, 1).is_none());
    }

    #[test]
    fn alive_from_data_postpones_the_deadline_without_pings() {
        let (t, mut s) = setup(100, 300, false, 1);
        s.watch(&t, 0, 0).unwrap();
        let mut now = 0;
        let mut deaths = vec![];
        while now <= 3 * S {
            if now < S && now % (250 * MS) == 0 {
                alive(&t, 0, now);
            }
            while let Some(d) = s.poll(&t, now) {
                assert!(!matches!(d, Due::Ping { .. }), "no pings configured");
                deaths.push((now, d));
            }
            now += MS;
        }
        // Last alive at 750 ms: dead at 1050 ms.
        assert_eq!(
            deaths,
            vec![(
                1050 * MS,
                Due::Dead {
                    fd: 0,
                    why: Death::Silence
                }
            )]
        );
    }

    #[test]
    fn ten_thousand_fds_watched_at_once_are_spread() {
        let n = 10_000;
        let (t, mut s) = setup(1000, 3000, true, n);
        for fd in 0..n {
            s.watch(&t, fd, 0).unwrap();
        }
        let ev = run(&t, &mut s, 0, 3 * S, MS, &|_, _| false);
        let mut per_ms = std::collections::HashMap::new();
        for (at, d) in &ev {
            if matches!(d, Due::Ping { .. }) {
                *per_ms.entry(*at).or_insert(0) += 1;
            }
        }
        let max = per_ms.values().copied().max().unwrap();
        // 10 per ms on average; the Weyl sequence stays within a few.
        assert!(max <= 13, "{max} pings in one millisecond");
        assert!(per_ms.len() >= 2900, "{}", per_ms.len());
    }

    #[test]
    fn unwatch_and_rewatch_leave_no_stale_event() {
        let (t, mut s) = setup(100, 300, true, 1);
        s.watch(&t, 0, 0).unwrap();
        assert_eq!(s.watch(&t, 0, 0), Err(Error::AlreadyWatched));
        s.unwatch(&t, 0).unwrap();
        assert_eq!(s.unwatch(&t, 0), Err(Error::NotWatched));
        assert_eq!(s.unwatch(&t, 7), Err(Error::NotWatched));
        assert_eq!(s.unwatch(&t, -1), Err(Error::Invalid));
        assert_eq!(s.watch(&t, -1, 0), Err(Error::Invalid));
        assert_eq!(s.poll(&t, S), None);
        s.watch(&t, 0, 2 * S).unwrap();
        let g = s.generation(&t, 0).unwrap();
        assert_eq!(g, 2);
        // One death, at 2 s + 300 ms, after the pings.
        let mut deaths = 0;
        let mut now = 2 * S;
        while now < 4 * S {
            while let Some(d) = s.poll(&t, now) {
                match d {
                    Due::Ping {
                        fd,
                        generation,
                        offset,
                        ..
                    } => {
                        assert_eq!(generation, g);
                        s.ping_done(&t, fd, generation, offset, Sent::WouldBlock);
                    }
                    Due::Dead { .. } => {
                        assert_eq!(now, 2 * S + 300 * MS);
                        deaths += 1
                    }
                }
            }
            now += MS;
        }
        assert_eq!(deaths, 1);
    }

    #[test]
    fn send_failure_is_a_death_unless_unwatched_meanwhile() {
        let (t, mut s) = setup(100, 300, true, 2);
        s.watch(&t, 0, 0).unwrap();
        s.watch(&t, 1, 0).unwrap();
        let mut seen = 0;
        let mut now = 0;
        while seen < 2 {
            while let Some(d) = s.poll(&t, now) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    seen += 1;
                    if fd == 1 {
                        s.unwatch(&t, 1).unwrap(); // raced with the send
                    }
                    let r = s.ping_done(&t, fd, generation, offset, Sent::Failed(libc::EPIPE));
                    if fd == 0 {
                        assert_eq!(r, Some(Death::SendFailed(libc::EPIPE)));
                    } else {
                        assert_eq!(r, None);
                    }
                }
            }
            now += MS;
        }
        assert_eq!(s.watched(), 0);
        assert_eq!(s.generation(&t, 0), None);
    }

    #[test]
    fn partial_ping_is_completed_first() {
        let t = Table::new().unwrap();
        t.ensure(0).unwrap();
        let mut s = Sched::new(100, 1000, true, 8, 0).unwrap();
        s.watch(&t, 0, 0).unwrap();
        let mut offsets = vec![];
        let mut now = 0;
        while offsets.len() < 3 {
            while let Some(d) = s.poll(&t, now) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    offsets.push(offset);
                    alive(&t, fd, now);
                    s.ping_done(&t, fd, generation, offset, Sent::Bytes(3));
                }
            }
            now += MS;
        }
        assert_eq!(offsets, vec![0, 3, 6]);
    }

    #[test]
    fn a_stall_skips_missed_pings_and_keeps_the_phase() {
        let (t, mut s) = setup(100, 10_000, true, 1);
        s.watch(&t, 0, 0).unwrap();
        let first = s.poll(&t, 100 * MS);
        let Some(Due::Ping { late_ns, .. }) = first else {
            panic!("{first:?}")
        };
        let phase = 100 * MS - late_ns;
        // Stopped for 5.05 s: one ping, late, then back on the old phase.
        let p = s.poll(&t, 5150 * MS);
        assert!(matches!(p, Some(Due::Ping { .. })), "{p:?}");
        assert_eq!(s.poll(&t, 5150 * MS), None);
        let next = s.next_wake(5150 * MS).unwrap();
        assert_eq!((next - phase) % (100 * MS), 0);
        assert!(next > 5150 * MS && next <= 5250 * MS);
    }

    #[test]
    fn next_wake_tracks_the_earliest_event() {
        let (t, mut s) = setup(1000, 3000, false, 2);
        assert_eq!(s.next_wake(0), None);
        s.watch(&t, 0, 0).unwrap();
        assert_eq!(s.next_wake(0), Some(3 * S));
        s.watch(&t, 1, 500 * MS).unwrap();
        assert_eq!(s.next_wake(600 * MS), Some(3 * S));
        s.unwatch(&t, 0).unwrap();
        assert_eq!(s.next_wake(600 * MS), Some(3500 * MS));
    }
}
