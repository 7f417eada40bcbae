//! A hashed timing wheel with millisecond slots, linked through the table's
//! nodes (no allocation per event, O(1) insert, remove and pop).
//!
//! Slot `t % len` holds the fds due at millisecond `t` (or `t + k * len`,
//! for delays longer than the wheel). A separate "ready" list holds the fds
//! found due and not yet handed out. All functions take the current time as
//! a parameter: the wheel never reads a clock, so it is tested on a fake one.

use std::sync::atomic::Ordering::Relaxed;

use super::table::{Node, Table};
use crate::error::{Error, Result};

const NONE: i32 = -1;

pub(crate) struct Wheel {
    /// Heads of the lists: `len` slots, then the ready list.
    heads: Vec<i32>,
    /// Number of slots (a power of two).
    len: u64,
    /// Every slot for a millisecond before `cursor` has been swept.
    cursor: u64,
    /// Number of linked fds.
    count: usize,
}

impl Wheel {
    /// A wheel with at least `span_ms` slots (rounded up to a power of two,
    /// 64..=65536), whose sweeping starts at `now_ms`.
    pub(crate) fn new(span_ms: u64, now_ms: u64) -> Result<Wheel> {
        let len = span_ms.clamp(64, 1 << 16).next_power_of_two();
        let mut heads = Vec::new();
        heads
            .try_reserve_exact(len as usize + 1)
            .map_err(|_| Error::NoMem)?;
        heads.resize(len as usize + 1, NONE);
        Ok(Wheel {
            heads,
            len,
            cursor: now_ms,
            count: 0,
        })
    }

    fn ready(&self) -> usize {
        self.len as usize
    }

    /// Number of fds in the wheel.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn node(t: &Table, fd: i32) -> &Node {
        // Only fds whose chunk exists are ever linked (watch ensures it).
        t.node(fd).expect("linked fd without a chunk")
    }

    fn link(&mut self, t: &Table, fd: i32, list: usize) {
        let n = Self::node(t, fd);
        let head = self.heads[list];
        n.prev.store(NONE, Relaxed);
        n.next.store(head, Relaxed);
        n.list.store(list as u32 + 1, Relaxed);
        if head != NONE {
            Self::node(t, head).prev.store(fd, Relaxed);
        }
        self.heads[list] = fd;
        self.count += 1;
    }

    /// Removes `fd` from whatever list it is in; no-op if it is in none.
    pub(crate) fn remove(&mut self, t: &Table, fd: i32) {
        let Some(n) = t.node(fd) else { return };
        let list = n.list.load(Relaxed);
        if list == 0 {
            return;
        }
        let (prev, next) = (n.prev.load(Relaxed), n.next.load(Relaxed));
        if prev == NONE {
            // The head of its list: a slot's, or the ready list's (whose
            // nodes keep the number of the slot they were detached from).
            let r = self.ready();
            if self.heads[r] == fd {
                self.heads[r] = next;
            } else {
                self.heads[list as usize - 1] = next;
            }
        } else {
            Self::node(t, prev).next.store(next, Relaxed);
        }
        if next != NONE {
            Self::node(t, next).prev.store(prev, Relaxed);
        }
        n.list.store(0, Relaxed);
        self.count -= 1;
    }

    /// Schedules `fd` (not linked) at millisecond `due_ms`. A time already
    /// swept goes straight to the ready list.
    pub(crate) fn insert(&mut self, t: &Table, fd: i32, due_ms: u64) {
        Self::node(t, fd).due_ms.store(due_ms, Relaxed);
        let list = if due_ms < self.cursor {
            self.ready()
        } else {
            (due_ms & (self.len - 1)) as usize
        };
        self.link(t, fd, list);
    }

    /// Moves the fds of one slot that are due by `now_ms` to the ready list.
    fn sweep(&mut self, t: &Table, slot: usize, now_ms: u64) {
        let mut fd = self.heads[slot];
        while fd != NONE {
            let n = Self::node(t, fd);
            let next = n.next.load(Relaxed);
            if n.due_ms.load(Relaxed) <= now_ms {
                self.remove(t, fd);
                let r = self.ready();
                self.link(t, fd, r);
            }
            fd = next;
        }
    }

    /// Unlinks and returns one fd due at or before `now_ms`, or None.
    ///
    /// A slot reached by the cursor is moved to the ready list whole, in
    /// O(1) (when the ready list is empty, which is when slots are
    /// reached); an entry of a later turn of the wheel found there is put
    /// back when popped. So each event touches its own node and its
    /// neighbour only.
    pub(crate) fn pop(&mut self, t: &Table, now_ms: u64) -> Option<i32> {
        let r = self.ready();
        loop {
            let head = self.heads[r];
            if head != NONE {
                self.remove(t, head);
                let due = Self::node(t, head).due_ms.load(Relaxed);
                if due <= now_ms {
                    return Some(head);
                }
                self.insert(t, head, due); // a later turn
                continue;
            }
            if self.cursor > now_ms {
                return None;
            }
            if now_ms - self.cursor >= self.len {
                // A stall longer than the wheel: one full sweep finds
                // everything that is due.
                for s in 0..self.len as usize {
                    self.sweep(t, s, now_ms);
                }
                self.cursor = now_ms + 1;
            } else {
                let s = (self.cursor & (self.len - 1)) as usize;
                self.heads[r] = self.heads[s];
                self.heads[s] = NONE;
                self.cursor += 1;
            }
        }
    }

    /// The earliest millisecond at which `pop` may return something: `now_ms`
    /// if something is ready, else the time of the next non-empty slot (an
    /// entry there may belong to a later turn of the wheel: waking for it is
    /// harmless). None if the wheel is empty.
    pub(crate) fn next_due(&self, now_ms: u64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if self.heads[self.ready()] != NONE {
            return Some(now_ms);
        }
        (0..self.len)
            .map(|k| self.cursor + k)
            .find(|&m| self.heads[(m & (self.len - 1)) as usize] != NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: i32) -> Table {
        let t = Table::new().unwrap();
        for fd in 0..n {
            t.ensure(fd).unwrap();
        }
        t
    }

    #[test]
    fn pops_in_time_order_by_millisecond() {
        let t = table(10);
        let mut w = Wheel::new(100, 1000).unwrap();
        assert_eq!(w.len, 128);
        w.insert(&t, 3, 1005);
        w.insert(&t, 4, 1002);
        w.insert(&t, 5, 1002 + 128); // next turn, same slot as fd 4
        assert_eq!(w.len(), 3);
        assert_eq!(w.next_due(1000), Some(1002));
        assert_eq!(w.pop(&t, 1001), None);
        assert_eq!(w.pop(&t, 1002), Some(4));
        assert_eq!(w.pop(&t, 1002), None);
        assert_eq!(w.next_due(1002), Some(1005));
        assert_eq!(w.pop(&t, 1010), Some(3));
        assert_eq!(w.pop(&t, 1010), None);
        // fd 5 is in a slot already passed in this turn.
        assert_eq!(w.next_due(1010), Some(1130));
        assert_eq!(w.pop(&t, 1129), None);
        assert_eq!(w.pop(&t, 1130), Some(5));
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_due(2000), None);
    }

    #[test]
    fn remove_from_any_position_and_past_times() {
        let t = table(10);
        let mut w = Wheel::new(64, 0).unwrap();
        for fd in 0..5 {
            w.insert(&t, fd, 10);
        }
        w.remove(&t, 2);
        w.remove(&t, 4);
        w.remove(&t, 0);
        w.remove(&t, 0); // not linked: no-op
        w.remove(&t, 9); // never linked
        let mut got = vec![];
        while let Some(fd) = w.pop(&t, 10) {
            got.push(fd);
        }
        got.sort();
        assert_eq!(got, vec![1, 3]);
        // Already swept: ready at once.
        w.insert(&t, 7, 5);
        assert_eq!(w.next_due(11), Some(11));
        assert_eq!(w.pop(&t, 11), Some(7));
    }

    #[test]
    fn long_stall_finds_everything_due() {
        let t = table(100);
        let mut w = Wheel::new(64, 0).unwrap();
        for fd in 0..100 {
            w.insert(&t, fd, fd as u64 * 7);
        }
        let mut got = vec![];
        while let Some(fd) = w.pop(&t, 350) {
            got.push(fd);
        }
        got.sort();
        assert_eq!(got, (0..=50).collect::<Vec<_>>());
        assert_eq!(w.len(), 49);
        // Entries of later turns may make the wake-up early, never late.
        let n = w.next_due(350).unwrap();
        assert!(n > 350 && n <= 357, "{n}");
    }
}
