//! The scheduler: what is due for which fd, and when. Pure logic over the
//! table and the wheel: every function takes "now" as a parameter, so the
//! whole timing behaviour is tested on a fake clock, without threads.
//!
//! Per watched fd there is exactly one wheel entry, due at the earlier of
//! the next ping and the fd's death deadline. `alive()` only stores a
//! timestamp in the fd's slot; the deadline is re-read when the entry comes
//! due, so hearing from a peer costs the scheduler nothing.
//!
//! # The death rule
//!
//! Without pings, a peer is dead at `last_heard + timeout`.
//!
//! With pings, every ping event that does not fail is an *attempt*: a ping
//! sent in full (or the rest of a partly sent one completed), a ping skipped
//! because the send would block, or a ping callback call. A partial send is
//! not an attempt (the peer has no whole ping to answer yet). Let `P` be the
//! first attempt that began after the peer was last heard from, `end(P)` the
//! time its send (or callback) returned, and `W = timeout - interval` the
//! answer window. The peer is dead at
//!
//! ```text
//! max(last_heard + timeout, end(P) + W)
//! ```
//!
//! and not before an attempt `P` exists. Hence:
//! - a peer that answers every attempt within `W` of the attempt's actual
//!   send is never declared dead, however late the attempt is made: an
//!   unanswered `P` never exists for longer than `W` after its end, and
//!   anything heard after an attempt began counts as its answer;
//! - a silent peer is dead at `last_heard + timeout` when the monitor keeps
//!   time (the first attempt after `last_heard` is due at most one interval
//!   later, so `end(P) + W <= last_heard + timeout` up to the send's
//!   duration), and otherwise at `end(P) + W`: later only by as much as `P`
//!   was late. Later attempts never postpone it, so pinging a silent peer
//!   does not make it immortal.

use std::sync::atomic::Ordering::Relaxed;

use super::table::{watched_generation, Node, Slot, Table, DOOMED, NONE_NS, WATCHED};
use super::wheel::{Wheel, MAX_SLOTS};
use crate::error::{Errno, Error, Result};

/// Nanoseconds per millisecond.
pub(crate) const MS: u64 = 1_000_000;

/// Why a peer was declared dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Nothing was heard from the peer in time (see the module's death rule).
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
    /// due time. The attempt begins at the `now` given to `poll`.
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
    /// `timeout - interval`: how long an attempt may stay unanswered.
    window: u64,
    pings: bool,
    ping_len: usize,
    wheel: Wheel,
    /// Generation of the next watch (never 0, so a zeroed slot is "never").
    next_gen: u64,
    /// Counter of watches, for spreading first pings over the interval.
    seq: u64,
    /// Whether entries can be due beyond the wheel's turn (the period is
    /// longer than the largest wheel): `watch()` then reserves the wheel's
    /// far heap, so that scheduling never allocates.
    far: bool,
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
        // How far ahead an entry can be due: with pings, the next ping is
        // at most one interval away (the death deadline matters only when
        // it is earlier); without, the deadline is at most one timeout
        // away. Two more milliseconds for rounding up and for a clock read
        // by alive() a little after the driver's.
        let period = if pings { interval_ms } else { timeout_ms };
        let span = u64::from(period) + 2;
        let interval = u64::from(interval_ms) * MS;
        let timeout = u64::from(timeout_ms) * MS;
        Ok(Sched {
            interval,
            timeout,
            window: timeout - interval,
            pings,
            ping_len,
            wheel: Wheel::new(span, now / MS)?,
            next_gen: 1,
            seq: 0,
            far: span > MAX_SLOTS,
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

    /// When the peer is dead if nothing more is heard (the module's death
    /// rule), given it was last heard at `heard`; `None` while no attempt
    /// is unanswered (with pings: it cannot die before the next attempt).
    fn deadline(&self, node: &Node, heard: u64) -> Option<u64> {
        let silence = heard.saturating_add(self.timeout);
        if !self.pings {
            return Some(silence);
        }
        let start = node.pend_start.load(Relaxed);
        if start == NONE_NS || heard >= start {
            return None; // no attempt, or answered (heard after it began)
        }
        let end = node.pend_end.load(Relaxed);
        Some(silence.max(end.saturating_add(self.window)))
    }

    /// The wheel time of `fd`: its next ping or its deadline, whichever is
    /// first; never in the past (`ceil_ms(due) > now / MS` whenever `due >
    /// now`, and a due time `<= now` is handled before rescheduling).
    fn due_ms(&self, node: &Node, heard: u64, now: u64) -> u64 {
        self.due_ms_of(
            self.deadline(node, heard),
            node.next_ping.load(Relaxed),
            now,
        )
    }

    /// [`Sched::due_ms`] from the deadline and the next ping, already known.
    fn due_ms_of(&self, deadline: Option<u64>, next_ping: u64, now: u64) -> u64 {
        let due = match (deadline, self.pings) {
            (Some(d), true) => d.min(next_ping),
            (Some(d), false) => d,
            (None, _) => next_ping,
        };
        ceil_ms(due).max(now / MS + 1)
    }

    /// Starts watching `fd` at `now`: last heard = now, first ping spread
    /// over the interval, first deadline now + timeout. Returns when the
    /// new watch's first event is due (ns), for the driver's wake-up.
    pub(crate) fn watch(&mut self, t: &Table, fd: i32, now: u64) -> Result<u64> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        t.ensure(fd)?;
        let slot = t.slot(fd).ok_or(Error::Invalid)?;
        if slot.taken() {
            return Err(Error::AlreadyWatched);
        }
        self.wheel.reserve(self.wheel.len() + 1, self.far)?;
        let gen = self.next_gen;
        self.next_gen += 1;
        let first = now + self.spread(self.seq);
        self.seq = self.seq.wrapping_add(1);
        let node = t.node_locked(fd).ok_or(Error::Invalid)?;
        node.next_ping.store(first, Relaxed);
        node.ping_off.store(0, Relaxed);
        node.pend_start.store(NONE_NS, Relaxed);
        slot.touch(now);
        slot.start_watch(gen);
        let due = if self.pings {
            first
        } else {
            now + self.timeout
        };
        let due_ms = ceil_ms(due);
        self.wheel.insert(t, fd, due_ms, now / MS);
        Ok(due_ms * MS)
    }

    /// The generation of a watched fd, or None (for the tests; the driver
    /// reads the state word of the slot it already has).
    #[cfg(test)]
    pub(crate) fn generation(&self, t: &Table, fd: i32) -> Option<u64> {
        watched_generation(t.slot_locked(fd)?.state())
    }

    fn forget(&mut self, t: &Table, fd: i32) {
        if let Some(slot) = t.slot(fd) {
            slot.stop_watch();
        }
        self.wheel.remove(t, fd);
    }

    /// Stops watching `fd`, or cancels its death if its dead callback has
    /// not started (the driver then skips it).
    pub(crate) fn unwatch(&mut self, t: &Table, fd: i32) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let Some(slot) = t.slot(fd) else {
            return Err(Error::NotWatched);
        };
        let was = slot.stop_watch();
        if was & WATCHED != 0 {
            self.wheel.remove(t, fd);
            Ok(())
        } else if was & DOOMED != 0 {
            Ok(())
        } else {
            Err(Error::NotWatched)
        }
    }

    /// The next thing to do at `now`, if any. A death is final: the fd is
    /// unwatched before this returns, so it is reported exactly once.
    /// With `sweep`, everything due by `now` is considered; without, only
    /// what an earlier call with `sweep` found due (a driver that handles
    /// only what was due when it started, see the wheel's `pop`).
    pub(crate) fn poll(&mut self, t: &Table, now: u64, sweep: bool) -> Option<Due> {
        while let Some(fd) = self.wheel.pop(t, now / MS, sweep) {
            // (Neither `continue` can happen: unwatched fds leave the
            // wheel, and only fds with a chunk enter it.)
            let Some((slot, node)) = t.get_locked(fd) else {
                continue;
            };
            let Some(gen) = watched_generation(slot.state()) else {
                continue;
            };
            let heard = slot.heard();
            let deadline = self.deadline(node, heard);
            if deadline.is_some_and(|d| now >= d) {
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
                let behind = now - next_ping;
                let missed = if behind < self.interval {
                    1 // the common case, without a division
                } else {
                    behind / self.interval + 1
                };
                let next = next_ping + missed * self.interval;
                node.next_ping.store(next, Relaxed);
                let due = self.due_ms_of(deadline, next, now);
                self.wheel.insert_node(t, node, fd, due, now / MS);
                return Some(Due::Ping {
                    fd,
                    generation: gen,
                    offset: node.ping_off.load(Relaxed) as usize,
                    late_ns: now - next_ping,
                });
            }
            let due = self.due_ms_of(deadline, next_ping, now);
            self.wheel.insert_node(t, node, fd, due, now / MS);
        }
        None
    }

    /// Moves everything due by `now` to the ready list (what `poll` with
    /// `sweep` does first), and prefetches the entries of the first `n`
    /// fds there, so that the `poll` calls that follow do not wait for
    /// their cache misses one after the other.
    pub(crate) fn prepare(&mut self, t: &Table, now: u64, n: usize) {
        self.wheel.sweep(now / MS);
        self.wheel.prefetch_due(t, n);
    }

    /// Prefetches the entries of the first `n` fds of the ready list.
    pub(crate) fn prepare_no_sweep(&self, t: &Table, n: usize) {
        self.wheel.prefetch_due(t, n);
    }

    /// Records what a ping handed out by `poll` at `start` did, its send (or
    /// callback) having returned at `end`. Returns the death to report if
    /// the send failed and the fd is still the same watch (it may have been
    /// unwatched, or re-watched, meanwhile).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ping_done(
        &mut self,
        t: &Table,
        fd: i32,
        generation: u64,
        offset: usize,
        sent: Sent,
        start: u64,
        end: u64,
    ) -> Option<Death> {
        let (slot, node) = t.get_locked(fd)?;
        if watched_generation(slot.state()) != Some(generation) {
            return None;
        }
        match sent {
            Sent::Bytes(n) => {
                let done = offset + n;
                let complete = self.ping_len == 0 || done >= self.ping_len;
                node.ping_off
                    .store(if complete { 0 } else { done as u32 }, Relaxed);
                if complete {
                    self.attempt(t, fd, slot, node, start, end);
                }
                None
            }
            Sent::WouldBlock => {
                self.attempt(t, fd, slot, node, start, end);
                None
            }
            Sent::Failed(e) => {
                self.forget(t, fd);
                Some(Death::SendFailed(e))
            }
        }
    }

    /// An attempt on `fd` began at `start` and ended at `end`: it becomes
    /// the pending one unless an earlier attempt is still unanswered. The
    /// deadline may now be earlier than the wheel time: reschedule then.
    fn attempt(&mut self, t: &Table, fd: i32, slot: &Slot, node: &Node, start: u64, end: u64) {
        let heard = slot.heard();
        if self.deadline(node, heard).is_none() {
            let (s, e) = if heard >= start {
                (NONE_NS, 0) // already answered (heard after it began)
            } else {
                (start, end)
            };
            node.pend_start.store(s, Relaxed);
            node.pend_end.store(e, Relaxed);
        }
        let due = self.due_ms(node, heard, end);
        if due < node.due_ms.load(Relaxed) {
            self.wheel.remove(t, fd);
            self.wheel.insert(t, fd, due, end / MS);
        }
    }

    /// When the driver must look next (ns): the exact time at which the
    /// first entry comes due (not before `now`), or None if nothing is
    /// watched. O(1).
    pub(crate) fn next_wake(&self, t: &Table, now: u64) -> Option<u64> {
        self.wheel
            .next_due(t, now / MS)
            .map(|ms| (ms * MS).max(now))
    }
}

#[cfg(all(test, not(loom)))]
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
            while let Some(d) = s.poll(t, now, true) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    assert!(s
                        .ping_done(t, fd, generation, offset, Sent::Bytes(1), now, now)
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
            while let Some(d) = s.poll(&t, now, true) {
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
        assert_eq!(s.poll(&t, S, true), None);
        s.watch(&t, 0, 2 * S).unwrap();
        let g = s.generation(&t, 0).unwrap();
        assert_eq!(g, 2);
        // One death, at 2 s + 300 ms, after the pings.
        let mut deaths = 0;
        let mut now = 2 * S;
        while now < 4 * S {
            while let Some(d) = s.poll(&t, now, true) {
                match d {
                    Due::Ping {
                        fd,
                        generation,
                        offset,
                        ..
                    } => {
                        assert_eq!(generation, g);
                        s.ping_done(&t, fd, generation, offset, Sent::WouldBlock, now, now);
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
            while let Some(d) = s.poll(&t, now, true) {
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
                    let r = s.ping_done(
                        &t,
                        fd,
                        generation,
                        offset,
                        Sent::Failed(libc::EPIPE),
                        now,
                        now,
                    );
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
            while let Some(d) = s.poll(&t, now, true) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    offsets.push(offset);
                    alive(&t, fd, now);
                    s.ping_done(&t, fd, generation, offset, Sent::Bytes(3), now, now);
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
        let first = s.poll(&t, 100 * MS, true);
        let Some(Due::Ping { late_ns, .. }) = first else {
            panic!("{first:?}")
        };
        let phase = 100 * MS - late_ns;
        // Stopped for 5.05 s: one ping, late, then back on the old phase.
        let p = s.poll(&t, 5150 * MS, true);
        assert!(matches!(p, Some(Due::Ping { .. })), "{p:?}");
        assert_eq!(s.poll(&t, 5150 * MS, true), None);
        let next = s.next_wake(&t, 5150 * MS).unwrap();
        assert_eq!((next - phase) % (100 * MS), 0);
        assert!(next > 5150 * MS && next <= 5250 * MS);
    }

    #[test]
    fn next_wake_tracks_the_earliest_event() {
        let (t, mut s) = setup(1000, 3000, false, 2);
        assert_eq!(s.next_wake(&t, 0), None);
        s.watch(&t, 0, 0).unwrap();
        assert_eq!(s.next_wake(&t, 0), Some(3 * S));
        s.watch(&t, 1, 500 * MS).unwrap();
        assert_eq!(s.next_wake(&t, 600 * MS), Some(3 * S));
        s.unwatch(&t, 0).unwrap();
        assert_eq!(s.next_wake(&t, 600 * MS), Some(3500 * MS));
    }

    /// A small deterministic PRNG for the lateness simulations.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// One thread driving the scheduler as the monitor thread does, made
    /// late on purpose: it looks at the wheel only every 1 ms plus a random
    /// delay up to `max_step_us`, and each ping's send takes a random time
    /// (up to 100 µs, and 5 ms once in 50: a slow ping callback; the driver
    /// is busy meanwhile, so later pings are late too). The peer of every fd
    /// but `silent` answers each ping `answer_ns` after the ping's actual
    /// send (a random moment within the send). Every `rewatch_ms` all fds
    /// are unwatched and watched again (first pings: the watch counts as
    /// heard, the first ping comes up to one interval later).
    struct Late {
        /// Deaths: (time, fd).
        deaths: Vec<(u64, i32)>,
        /// When each round's watches were made.
        rounds: Vec<u64>,
        /// The largest ping lateness seen (ns).
        worst_late: u64,
        /// How many times an answering fd was watched and not heard from
        /// for `timeout` at one of the driver's looks: what the old rule
        /// (death at last heard + timeout) would have declared dead.
        old_rule_deaths: usize,
    }

    fn late_driver(
        (interval, timeout): (u32, u32),
        n: i32,
        silent: Option<i32>,
        answer_ns: u64,
        max_step_us: u64,
        rewatch_ms: u64,
        until: u64,
    ) -> Late {
        let (t, mut s) = setup(interval, timeout, true, n);
        let mut rng = Lcg(7);
        let mut answers: Vec<(u64, i32, u64)> = vec![]; // (at, fd, generation)
        let mut out = Late {
            deaths: vec![],
            rounds: vec![],
            worst_late: 0,
            old_rule_deaths: 0,
        };
        let mut old_dead = vec![false; n as usize];
        let mut now = 0;
        let mut next_rewatch = 0;
        let apply = |answers: &mut Vec<(u64, i32, u64)>, s: &Sched, now: u64| {
            answers.retain(|&(at, fd, gen)| {
                if at > now {
                    return true;
                }
                if s.generation(&t, fd) == Some(gen) {
                    alive(&t, fd, at); // alive() called at the answer's arrival
                }
                false
            });
        };
        while now < until {
            if now >= next_rewatch {
                for fd in 0..n {
                    let _ = s.unwatch(&t, fd);
                    s.watch(&t, fd, now).unwrap();
                    old_dead[fd as usize] = false;
                }
                out.rounds.push(now);
                next_rewatch = now + rewatch_ms * MS;
            }
            apply(&mut answers, &s, now);
            for fd in 0..n {
                let heard = t.slot(fd).unwrap().heard();
                if Some(fd) != silent
                    && s.generation(&t, fd).is_some()
                    && now >= heard + s.timeout
                    && !old_dead[fd as usize]
                {
                    old_dead[fd as usize] = true;
                    out.old_rule_deaths += 1;
                }
            }
            while let Some(d) = s.poll(&t, now, true) {
                match d {
                    Due::Ping {
                        fd,
                        generation,
                        offset,
                        late_ns,
                    } => {
                        out.worst_late = out.worst_late.max(late_ns);
                        let start = now;
                        let us = if rng.below(50) == 0 {
                            5000
                        } else {
                            rng.below(100)
                        };
                        let end = start + us * 1000;
                        let actual = start + rng.below(end - start + 1);
                        if Some(fd) != silent {
                            answers.push((actual + answer_ns, fd, generation));
                        }
                        now = end; // the driver was busy sending
                        apply(&mut answers, &s, now);
                        let r = s.ping_done(&t, fd, generation, offset, Sent::Bytes(1), start, end);
                        assert_eq!(r, None);
                    }
                    Due::Dead { fd, .. } => out.deaths.push((now, fd)),
                }
            }
            now += MS + rng.below(max_step_us) * 1000;
        }
        out
    }

    #[test]
    fn late_pings_answered_within_the_window_never_die() {
        // interval 20 ms, timeout 40 ms: the window is 20 ms, and every
        // answer comes 19.999 ms after its ping's actual send. The driver
        // looks up to 8 ms late and some sends take 5 ms, so pings go out
        // many milliseconds late, by varying amounts.
        let r = late_driver((20, 40), 50, None, 20 * MS - 1000, 8000, 230, 60 * S);
        assert!(
            r.worst_late > 5 * MS,
            "pings were not late: {} ns",
            r.worst_late
        );
        // The old rule would have killed answering peers here...
        assert!(r.old_rule_deaths > 10, "{}", r.old_rule_deaths);
        // ...the rule does not.
        assert_eq!(r.deaths, vec![], "answered peers declared dead");
    }

    #[test]
    fn a_silent_peer_among_late_ones_dies_within_its_window() {
        // fd 3 never answers; it is re-watched every 230 ms and must die in
        // each round, at least `timeout` after the watch and at most the
        // first attempt's lateness later: its first ping is due at most
        // one interval after the watch, the driver adds up to 4 ms per look
        // and a few sends (5 ms for a slow one) before it.
        let r = late_driver((20, 40), 8, Some(3), 19 * MS, 3000, 230, 10 * S);
        assert!(r.deaths.iter().all(|&(_, fd)| fd == 3), "{:?}", r.deaths);
        // One death per round (the last round may end before its death).
        let n = r.deaths.len();
        assert!(
            n + 1 >= r.rounds.len() && n <= r.rounds.len(),
            "{:?}",
            r.deaths
        );
        for (&(at, _), &w) in r.deaths.iter().zip(&r.rounds) {
            let after = at - w;
            assert!((40 * MS..=60 * MS).contains(&after), "{after}");
        }
    }

    /// Polls every millisecond from `from` to `to` (sends take no time),
    /// applying `sent` to every ping of `fd`; returns the first death.
    fn first_death(
        t: &Table,
        s: &mut Sched,
        from: u64,
        to: u64,
        sent: &mut dyn FnMut(u64) -> Sent,
    ) -> Option<u64> {
        let mut now = from;
        while now <= to {
            while let Some(d) = s.poll(t, now, true) {
                match d {
                    Due::Ping {
                        fd,
                        generation,
                        offset,
                        ..
                    } => {
                        s.ping_done(t, fd, generation, offset, sent(now), now, now);
                    }
                    Due::Dead { .. } => return Some(now),
                }
            }
            now += MS;
        }
        None
    }

    #[test]
    fn the_deadline_is_max_of_silence_and_first_unanswered_attempt() {
        // interval 20, timeout 40. Watched at 0 (seq 0: first ping at 0,
        // which ties with the watch time and so counts as answered), the
        // next attempts at 20, 40, ... The peer is silent: the attempt at
        // 20 is the first unanswered one, its end + 20 = 40 = heard +
        // timeout: dead at 40 exactly.
        let (t, mut s) = setup(20, 40, true, 1);
        s.watch(&t, 0, 0).unwrap();
        let d = first_death(&t, &mut s, 0, S, &mut |_| Sent::Bytes(1));
        assert_eq!(d, Some(40 * MS));

        // The attempt at 20 takes 7 ms (a slow ping callback): end 27,
        // dead at max(40, 27 + 20) = 47.
        let (t, mut s) = setup(20, 40, true, 1);
        s.watch(&t, 0, 0).unwrap();
        let mut now = 0;
        let mut death = None;
        while now <= S && death.is_none() {
            while let Some(d) = s.poll(&t, now, true) {
                match d {
                    Due::Ping {
                        fd,
                        generation,
                        offset,
                        ..
                    } => {
                        let end = if now == 20 * MS { now + 7 * MS } else { now };
                        s.ping_done(&t, fd, generation, offset, Sent::Bytes(1), now, end);
                    }
                    Due::Dead { .. } => death = Some(now),
                }
            }
            now += MS;
        }
        assert_eq!(death, Some(47 * MS));
    }

    #[test]
    fn pinging_a_silent_peer_does_not_postpone_its_death() {
        // Pings every 10 ms, timeout 100 ms (window 90 ms): nine attempts
        // are made while the peer is silent, none moves the deadline.
        let (t, mut s) = setup(10, 100, true, 1);
        s.watch(&t, 0, 0).unwrap();
        let d = first_death(&t, &mut s, 0, S, &mut |_| Sent::Bytes(1));
        assert_eq!(d, Some(100 * MS));
        // Heard at 250 ms: dead at 350 ms, whatever the pings in between.
        s.watch(&t, 0, 200 * MS).unwrap();
        let mut now = 200 * MS;
        let mut death = None;
        while now <= S && death.is_none() {
            if now == 250 * MS {
                alive(&t, 0, now);
            }
            while let Some(d) = s.poll(&t, now, true) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    s.ping_done(&t, fd, generation, offset, Sent::Bytes(1), now, now);
                } else {
                    death = Some(now);
                }
            }
            now += MS;
        }
        assert_eq!(death, Some(350 * MS));
    }

    #[test]
    fn a_partial_send_is_not_an_attempt_but_would_block_is() {
        // Ping of 8 bytes, interval 100, timeout 300 (window 200). The
        // second watch has its first ping at 61.8 ms (seq 1).
        let t = Table::new().unwrap();
        t.ensure(0).unwrap();
        let mut s = Sched::new(100, 300, true, 8, 0).unwrap();
        s.watch(&t, 0, 0).unwrap();
        s.unwatch(&t, 0).unwrap();
        s.watch(&t, 0, 0).unwrap();
        // 3 bytes at 62 ms (not an attempt), the other 5 at 162: the
        // attempt at 162 is the first, dead at 162 + 200 = 362.
        let mut first = true;
        let d = first_death(&t, &mut s, 0, 2 * S, &mut |_| {
            let n = if first { 3 } else { 8 };
            first = false;
            Sent::Bytes(n)
        });
        assert_eq!(d, Some(362 * MS));
        // The same with EAGAIN at 62 ms: that is an attempt, dead at
        // max(0 + 300, 62 + 200) = 300.
        let t = Table::new().unwrap();
        t.ensure(0).unwrap();
        let mut s = Sched::new(100, 300, true, 8, 0).unwrap();
        s.watch(&t, 0, 0).unwrap();
        s.unwatch(&t, 0).unwrap();
        s.watch(&t, 0, 0).unwrap();
        let d = first_death(&t, &mut s, 0, 2 * S, &mut |_| Sent::WouldBlock);
        assert_eq!(d, Some(300 * MS));
    }

    #[test]
    fn something_heard_during_the_send_answers_the_attempt() {
        // The attempt at 20 ms lasts until 30 ms; the peer is heard at
        // 25 ms (after the attempt began): answered. The next attempt (40)
        // is then the first unanswered one: dead at max(25 + 40, 40 + 20)
        // = 65 ms.
        let (t, mut s) = setup(20, 40, true, 1);
        s.watch(&t, 0, 0).unwrap();
        let mut now = 0;
        let mut death = None;
        while now <= S && death.is_none() {
            while let Some(d) = s.poll(&t, now, true) {
                if let Due::Ping {
                    fd,
                    generation,
                    offset,
                    ..
                } = d
                {
                    let end = if now == 20 * MS {
                        alive(&t, 0, 25 * MS);
                        30 * MS
                    } else {
                        now
                    };
                    s.ping_done(&t, fd, generation, offset, Sent::Bytes(1), now, end);
                    now = now.max(end);
                } else {
                    death = Some(now);
                }
            }
            now += MS;
        }
        assert_eq!(death, Some(65 * MS));
    }

    /// Cost of the scheduler's work per ping event at 100,000 fds, without
    /// threads or wake-ups (the driver's loop, on a simulated clock that
    /// moves 1 ms a step). Not a test: run with
    /// `cargo test --release --lib sched_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sched_cost() {
        let n = 100_000;
        let (t, mut s) = setup(1000, 3_600_000, true, 0);
        for fd in 0..n {
            t.ensure(fd).unwrap();
            s.watch(&t, fd, 0).unwrap();
        }
        let mut now = 0;
        let mut events = 0u64;
        let mut batch = Vec::with_capacity(256);
        let t0 = std::time::Instant::now();
        for step in 0..5000u64 {
            if step == 1000 {
                events = 0;
            }
            let started = if step == 1000 {
                Some(std::time::Instant::now())
            } else {
                None
            };
            let _ = started;
            s.prepare(&t, now, 256);
            loop {
                batch.clear();
                while batch.len() < 256 {
                    match s.poll(&t, now, false) {
                        Some(d) => {
                            if let Due::Ping { fd, .. } = d {
                                t.slot(fd).unwrap().set_busy();
                            }
                            batch.push(d)
                        }
                        None => break,
                    }
                }
                if batch.is_empty() {
                    break;
                }
                for d in &batch {
                    if let Due::Ping {
                        fd,
                        generation,
                        offset,
                        ..
                    } = *d
                    {
                        t.slot(fd).unwrap().end_busy();
                        s.ping_done(&t, fd, generation, offset, Sent::Bytes(0), now, now);
                        events += 1;
                    }
                }
            }
            now += MS;
        }
        let el = t0.elapsed();
        println!(
            "{events} events after warm-up; {:.1} ns per event overall",
            el.as_nanos() as f64 / (events as f64 * 5.0 / 4.0)
        );
    }
}
