//! A timing wheel with millisecond slots, linked through the table's nodes
//! (no allocation per event; O(1) insert, remove and pop), that knows its
//! earliest due time exactly, in O(1).
//!
//! - Slot `t % len` holds the fds due at millisecond `t`, and only those:
//!   every entry of the wheel is due within one turn of the cursor
//!   (`cursor <= t < cursor + len`), so the first non-empty slot after the
//!   cursor *is* the next due time. A three-level bitmap of the non-empty
//!   slots (64-bit words, find-first-set) finds it in constant time,
//!   whatever the wheel's size and the timeouts.
//! - The ready list holds the fds found due and not yet handed out, in due
//!   order (whole slots are appended to it as the cursor passes them).
//! - Entries due a turn or more ahead (only possible when the period the
//!   monitor needs, `interval` with pings or `timeout` without, is longer
//!   than the largest wheel, 65.5 s) go to a binary min-heap of fds keyed
//!   by due time (O(log n) insert and remove, O(1) minimum); its storage is
//!   reserved by [`Wheel::reserve_far`] (from `watch()`, which may fail
//!   with NoMem), so inserting never allocates.
//!
//! All functions take the current time as a parameter: the wheel never
//! reads a clock, so it is tested on a fake one.

use std::sync::atomic::Ordering::Relaxed;

use super::table::{Node, Table};
use crate::error::{Error, Result};

const NONE: i32 = -1;
/// `Node::list` of an fd in the far heap.
const HEAP: u32 = u32::MAX;
/// Largest number of slots.
pub(crate) const MAX_SLOTS: u64 = 1 << 16;

/// A hierarchical bitmap: bit i of level k+1 is set when word i of level k
/// is not zero. Three levels cover 2^18 bits; set, clear and "first set bit
/// at or after i" touch at most one word per level.
pub(crate) struct Bitmap {
    levels: Vec<Vec<u64>>,
}

fn try_zeroed(n: usize) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::NoMem)?;
    v.resize(n, 0);
    Ok(v)
}

impl Bitmap {
    /// A bitmap of `bits` bits (a power of two, at least 64), all clear.
    pub(crate) fn new(bits: usize) -> Result<Bitmap> {
        let mut levels = Vec::new();
        levels.try_reserve_exact(3).map_err(|_| Error::NoMem)?;
        let mut words = bits.div_ceil(64);
        loop {
            levels.push(try_zeroed(words)?);
            if words == 1 {
                break;
            }
            words = words.div_ceil(64);
        }
        Ok(Bitmap { levels })
    }

    pub(crate) fn set(&mut self, mut i: usize) {
        for level in self.levels.iter_mut() {
            let w = &mut level[i >> 6];
            let was = *w;
            *w |= 1 << (i & 63);
            if was != 0 {
                return; // the levels above already say so
            }
            i >>= 6;
        }
    }

    pub(crate) fn clear(&mut self, mut i: usize) {
        for level in self.levels.iter_mut() {
            let w = &mut level[i >> 6];
            *w &= !(1 << (i & 63));
            if *w != 0 {
                return;
            }
            i >>= 6;
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, i: usize) -> bool {
        self.levels[0][i >> 6] & (1 << (i & 63)) != 0
    }

    /// The first set bit at index `i` or later, if any.
    pub(crate) fn next_set(&self, i: usize) -> Option<usize> {
        self.find(0, i)
    }

    fn find(&self, level: usize, i: usize) -> Option<usize> {
        let words = &self.levels[level];
        let w = i >> 6;
        if w >= words.len() {
            return None;
        }
        let m = words[w] & (u64::MAX << (i & 63));
        if m != 0 {
            return Some(w << 6 | m.trailing_zeros() as usize);
        }
        if level + 1 == self.levels.len() {
            return None; // the top level is one word
        }
        let next = self.find(level + 1, w + 1)?;
        Some(next << 6 | words[next].trailing_zeros() as usize)
    }
}

pub(crate) struct Wheel {
    /// Heads of the lists: `len` slots, then the ready list.
    heads: Vec<i32>,
    /// Their tails.
    tails: Vec<i32>,
    /// Which slots are not empty.
    bits: Bitmap,
    /// The far heap (fds, by `due_ms`; an fd's index is in its `prev`).
    far: Vec<i32>,
    /// Number of slots (a power of two).
    len: u64,
    /// Every slot for a millisecond before `cursor` has been swept.
    cursor: u64,
    /// Number of fds in the wheel (slots, ready list and heap).
    count: usize,
}

impl Wheel {
    /// A wheel with at least `span_ms` slots (rounded up to a power of two,
    /// 64..=65536), whose sweeping starts at `now_ms`.
    pub(crate) fn new(span_ms: u64, now_ms: u64) -> Result<Wheel> {
        let len = span_ms.clamp(64, MAX_SLOTS).next_power_of_two();
        let n = len as usize + 1;
        let mut heads = Vec::new();
        heads.try_reserve_exact(n).map_err(|_| Error::NoMem)?;
        heads.resize(n, NONE);
        let mut tails = Vec::new();
        tails.try_reserve_exact(n).map_err(|_| Error::NoMem)?;
        tails.resize(n, NONE);
        Ok(Wheel {
            heads,
            tails,
            bits: Bitmap::new(len as usize)?,
            far: Vec::new(),
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

    /// Number of slots.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> u64 {
        self.len
    }

    /// Makes room in the far heap for `n` entries, so that inserting never
    /// allocates ([`Error::NoMem`] if it cannot).
    pub(crate) fn reserve_far(&mut self, n: usize) -> Result<()> {
        let more = n.saturating_sub(self.far.len());
        self.far.try_reserve(more).map_err(|_| Error::NoMem)
    }

    fn node(t: &Table, fd: i32) -> &Node {
        // Only fds whose chunk exists are ever linked (watch ensures it).
        t.node(fd).expect("linked fd without a chunk")
    }

    /// Appends `fd` to list `list` (a slot or the ready list).
    fn link(&mut self, t: &Table, fd: i32, list: usize) {
        let n = Self::node(t, fd);
        let tail = self.tails[list];
        n.prev.store(tail, Relaxed);
        n.next.store(NONE, Relaxed);
        n.list.store(list as u32 + 1, Relaxed);
        if tail == NONE {
            self.heads[list] = fd;
            if list != self.ready() {
                self.bits.set(list);
            }
        } else {
            Self::node(t, tail).next.store(fd, Relaxed);
        }
        self.tails[list] = fd;
        self.count += 1;
    }

    /// Removes `fd` from whatever list (or the heap) it is in; no-op if it
    /// is in none.
    pub(crate) fn remove(&mut self, t: &Table, fd: i32) {
        let Some(n) = t.node(fd) else { return };
        let list = n.list.load(Relaxed);
        if list == 0 {
            return;
        }
        n.list.store(0, Relaxed);
        self.count -= 1;
        if list == HEAP {
            self.far_remove(t, n.prev.load(Relaxed) as usize);
            return;
        }
        // Nodes moved to the ready list keep the number of the slot they
        // came from: the ready list's ends are checked first (a slot's ends
        // never name an fd that sits in the ready list).
        let (prev, next) = (n.prev.load(Relaxed), n.next.load(Relaxed));
        let r = self.ready();
        let l = if self.heads[r] == fd || self.tails[r] == fd {
            r
        } else {
            list as usize - 1
        };
        if prev == NONE {
            self.heads[l] = next;
        } else {
            Self::node(t, prev).next.store(next, Relaxed);
        }
        if next == NONE {
            self.tails[l] = prev;
        } else {
            Self::node(t, next).prev.store(prev, Relaxed);
        }
        if self.heads[l] == NONE && l != r {
            self.bits.clear(l);
        }
    }

    /// Schedules `fd` (not linked) at millisecond `due_ms`, the time being
    /// `now_ms`. A time already swept goes straight to the ready list.
    pub(crate) fn insert(&mut self, t: &Table, fd: i32, due_ms: u64, now_ms: u64) {
        Self::node(t, fd).due_ms.store(due_ms, Relaxed);
        if due_ms >= self.cursor + self.len && now_ms >= self.cursor {
            // The cursor is behind the clock (the driver has not looked for
            // a while): bring it to now first, so that the new entry fits
            // in the current turn.
            self.advance(t, now_ms);
        }
        if due_ms < self.cursor {
            let r = self.ready();
            self.link(t, fd, r);
        } else if due_ms < self.cursor + self.len {
            self.link(t, fd, (due_ms & (self.len - 1)) as usize);
        } else if self.far.len() < self.far.capacity() {
            self.far_push(t, fd);
        } else {
            // Unreachable when watch() reserved the heap (it does whenever
            // the period exceeds the wheel): never allocate here. The last
            // slot of this turn: the entry comes up early and pop() puts
            // it back, so it is never late.
            let s = ((self.cursor + self.len - 1) & (self.len - 1)) as usize;
            self.link(t, fd, s);
        }
    }

    /// Moves every slot due by `now_ms` to the end of the ready list.
    fn advance(&mut self, t: &Table, now_ms: u64) {
        if self.cursor > now_ms {
            return;
        }
        let mask = (self.len - 1) as usize;
        let span = now_ms - self.cursor + 1; // milliseconds to sweep
        let from = (self.cursor & (self.len - 1)) as usize;
        if span >= self.len {
            // A stall longer than the wheel: everything in it is due.
            let mut s = self.bits.next_set(0);
            while let Some(i) = s {
                self.splice(t, i);
                s = self.bits.next_set(i + 1);
            }
        } else {
            let to = from + span as usize; // exclusive, may wrap
            let mut s = self.bits.next_set(from);
            while let Some(i) = s.filter(|&i| i < to.min(mask + 1)) {
                self.splice(t, i);
                s = self.bits.next_set(i + 1);
            }
            if to > mask + 1 {
                let mut s = self.bits.next_set(0);
                while let Some(i) = s.filter(|&i| i < to - (mask + 1)) {
                    self.splice(t, i);
                    s = self.bits.next_set(i + 1);
                }
            }
        }
        self.cursor = now_ms + 1;
    }

    /// Appends slot `s`'s list to the ready list, in O(1).
    fn splice(&mut self, t: &Table, s: usize) {
        let r = self.ready();
        let (head, tail) = (self.heads[s], self.tails[s]);
        if head == NONE {
            return;
        }
        if self.tails[r] == NONE {
            self.heads[r] = head;
        } else {
            Self::node(t, self.tails[r]).next.store(head, Relaxed);
            Self::node(t, head).prev.store(self.tails[r], Relaxed);
        }
        self.tails[r] = tail;
        self.heads[s] = NONE;
        self.tails[s] = NONE;
        self.bits.clear(s);
    }

    /// Unlinks and returns one fd due at or before `now_ms`, or None.
    /// With `sweep`, first moves the slots due by `now_ms` to the ready
    /// list; without, only hands out what is ready already or due in the
    /// far heap (a driver that handles only what was due when it started).
    pub(crate) fn pop(&mut self, t: &Table, now_ms: u64, sweep: bool) -> Option<i32> {
        if sweep {
            self.advance(t, now_ms);
        }
        let r = self.ready();
        loop {
            let head = self.heads[r];
            if head == NONE {
                break;
            }
            self.remove(t, head);
            let due = Self::node(t, head).due_ms.load(Relaxed);
            if due <= now_ms {
                return Some(head);
            }
            // Only after the heap could not take an entry (insert's last
            // resort): not due yet, back in the wheel (in a slot: due >
            // now_ms >= cursor - 1, so not in the ready list again).
            self.insert(t, head, due, now_ms);
        }
        if let Some(&fd) = self.far.first() {
            if Self::node(t, fd).due_ms.load(Relaxed) <= now_ms {
                self.remove(t, fd);
                return Some(fd);
            }
        }
        None
    }

    /// The earliest millisecond at which `pop` returns something: `now_ms`
    /// if something is ready, else the exact due time of the first entry.
    /// None if the wheel is empty. O(1): one bitmap search and the heap's
    /// top.
    pub(crate) fn next_due(&self, t: &Table, now_ms: u64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if self.heads[self.ready()] != NONE {
            return Some(now_ms);
        }
        let from = (self.cursor & (self.len - 1)) as usize;
        let slot = match self.bits.next_set(from) {
            Some(s) => Some(s - from),
            None => self.bits.next_set(0).map(|s| s + self.len as usize - from),
        }
        .map(|d| self.cursor + d as u64);
        let far = self
            .far
            .first()
            .map(|&fd| Self::node(t, fd).due_ms.load(Relaxed));
        match (slot, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // --- the far heap -------------------------------------------------------

    fn far_due(&self, t: &Table, i: usize) -> u64 {
        Self::node(t, self.far[i]).due_ms.load(Relaxed)
    }

    fn far_place(&mut self, t: &Table, i: usize, fd: i32) {
        self.far[i] = fd;
        Self::node(t, fd).prev.store(i as i32, Relaxed);
    }

    /// Pushes `fd` (capacity reserved by the caller: no allocation).
    fn far_push(&mut self, t: &Table, fd: i32) {
        let n = Self::node(t, fd);
        n.list.store(HEAP, Relaxed);
        n.next.store(NONE, Relaxed);
        debug_assert!(self.far.len() < self.far.capacity());
        self.far.push(fd);
        self.count += 1;
        let i = self.far.len() - 1;
        self.far_place(t, i, fd);
        self.sift_up(t, i);
    }

    /// Removes the entry at index `i` (its node is already unlinked).
    fn far_remove(&mut self, t: &Table, i: usize) {
        let last = self.far.pop().expect("heap entry");
        if i == self.far.len() {
            return; // it was the last one
        }
        self.far_place(t, i, last);
        self.sift_up(t, i);
        let i = Self::node(t, last).prev.load(Relaxed) as usize;
        self.sift_down(t, i);
    }

    fn sift_up(&mut self, t: &Table, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if self.far_due(t, p) <= self.far_due(t, i) {
                break;
            }
            let (a, b) = (self.far[p], self.far[i]);
            self.far_place(t, p, b);
            self.far_place(t, i, a);
            i = p;
        }
    }

    fn sift_down(&mut self, t: &Table, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.far.len() && self.far_due(t, l) < self.far_due(t, m) {
                m = l;
            }
            if r < self.far.len() && self.far_due(t, r) < self.far_due(t, m) {
                m = r;
            }
            if m == i {
                return;
            }
            let (a, b) = (self.far[m], self.far[i]);
            self.far_place(t, m, b);
            self.far_place(t, i, a);
            i = m;
        }
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

    fn drain(w: &mut Wheel, t: &Table, now: u64) -> Vec<i32> {
        let mut got = vec![];
        while let Some(fd) = w.pop(t, now, true) {
            got.push(fd);
        }
        got
    }

    #[test]
    fn bitmap_finds_the_next_set_bit_at_every_level() {
        let mut b = Bitmap::new(1 << 16).unwrap();
        assert_eq!(b.levels.len(), 3);
        assert_eq!(b.next_set(0), None);
        for i in [0, 63, 64, 4095, 4096, 40000, 65535] {
            b.set(i);
        }
        assert_eq!(b.next_set(0), Some(0));
        assert_eq!(b.next_set(1), Some(63));
        assert_eq!(b.next_set(65), Some(4095));
        assert_eq!(b.next_set(4097), Some(40000));
        assert_eq!(b.next_set(40001), Some(65535));
        assert_eq!(b.next_set(65536), None);
        b.clear(40000);
        assert!(!b.get(40000));
        assert_eq!(b.next_set(4097), Some(65535));
        for i in [0, 63, 64, 4095, 4096, 65535] {
            b.clear(i);
        }
        assert!(b.levels.iter().all(|l| l.iter().all(|&w| w == 0)));
        let small = Bitmap::new(64).unwrap();
        assert_eq!(small.levels.len(), 1);
        assert_eq!(small.next_set(3), None);
    }

    #[test]
    fn pops_in_time_order_by_millisecond() {
        let t = table(10);
        let mut w = Wheel::new(100, 1000).unwrap();
        assert_eq!(w.slots(), 128);
        w.insert(&t, 3, 1005, 1000);
        w.insert(&t, 4, 1002, 1000);
        w.insert(&t, 5, 1002 + 100, 1000); // same slot as nothing; this turn
        assert_eq!(w.len(), 3);
        assert_eq!(w.next_due(&t, 1000), Some(1002));
        assert_eq!(w.pop(&t, 1001, true), None);
        assert_eq!(w.pop(&t, 1002, true), Some(4));
        assert_eq!(w.pop(&t, 1002, true), None);
        assert_eq!(w.next_due(&t, 1002), Some(1005));
        assert_eq!(w.pop(&t, 1010, true), Some(3));
        assert_eq!(w.pop(&t, 1010, true), None);
        assert_eq!(w.next_due(&t, 1010), Some(1102));
        assert_eq!(w.pop(&t, 1101, true), None);
        assert_eq!(w.pop(&t, 1102, true), Some(5));
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_due(&t, 2000), None);
    }

    #[test]
    fn remove_from_any_position_and_past_times() {
        let t = table(10);
        let mut w = Wheel::new(64, 0).unwrap();
        for fd in 0..5 {
            w.insert(&t, fd, 10, 0);
        }
        w.remove(&t, 2);
        w.remove(&t, 4); // the tail
        w.remove(&t, 0); // the head
        w.remove(&t, 0); // not linked: no-op
        w.remove(&t, 9); // never linked
        assert_eq!(drain(&mut w, &t, 10), vec![1, 3]);
        // Already swept: ready at once.
        w.insert(&t, 7, 5, 11);
        assert_eq!(w.next_due(&t, 11), Some(11));
        assert_eq!(w.pop(&t, 11, true), Some(7));
        // Removing every entry of a slot clears its bit: nothing is due.
        w.insert(&t, 1, 30, 11);
        w.insert(&t, 2, 30, 11);
        w.remove(&t, 2);
        w.remove(&t, 1);
        assert_eq!(w.next_due(&t, 11), None);
        w.insert(&t, 3, 40, 11);
        assert_eq!(w.next_due(&t, 11), Some(40));
    }

    #[test]
    fn long_stall_finds_everything_due_in_order() {
        let t = table(100);
        let mut w = Wheel::new(64, 0).unwrap();
        for fd in (0..50).rev() {
            w.insert(&t, fd, fd as u64, 0); // 0..49: within the turn
        }
        assert_eq!(drain(&mut w, &t, 350), (0..50).collect::<Vec<_>>());
        // Inserted while the cursor is far behind the clock: the cursor
        // catches up, so the entry fits in the turn and the due time is
        // exact.
        let mut w = Wheel::new(64, 0).unwrap();
        w.insert(&t, 1, 10, 0);
        w.insert(&t, 2, 1030, 1000);
        assert_eq!(w.next_due(&t, 1000), Some(1000)); // fd 1 is ready
        assert_eq!(w.pop(&t, 1000, true), Some(1));
        assert_eq!(w.next_due(&t, 1000), Some(1030));
    }

    #[test]
    fn without_sweep_only_the_ready_list_is_handed_out() {
        let t = table(10);
        let mut w = Wheel::new(64, 0).unwrap();
        w.insert(&t, 1, 5, 0);
        w.insert(&t, 2, 6, 0);
        assert_eq!(w.pop(&t, 5, true), Some(1));
        // fd 2 came due after the sweep at 5: not handed out without one.
        assert_eq!(w.pop(&t, 6, false), None);
        assert_eq!(w.pop(&t, 6, true), Some(2));
    }

    #[test]
    fn next_due_is_exact_at_any_distance_in_constant_time() {
        // Entries at every distance the wheel covers, and beyond it (the
        // far heap): the next due time is always the true minimum.
        let t = table(200);
        let mut w = Wheel::new(1 << 16, 0).unwrap();
        w.reserve_far(200).unwrap();
        let mut dues: Vec<u64> = (0..200u64)
            .map(|i| 1 + i.wrapping_mul(0x9E37_79B9) % 3_000_000)
            .collect();
        for (fd, &d) in dues.iter().enumerate() {
            w.insert(&t, fd as i32, d, 0);
        }
        assert!(!w.far.is_empty() && w.far.len() < 200);
        let mut now = 0;
        let mut order = vec![];
        while let Some(next) = w.next_due(&t, now) {
            let want = *dues.iter().filter(|&&d| d != u64::MAX).min().unwrap();
            assert_eq!(next.max(now), want.max(now));
            now = next;
            while let Some(fd) = w.pop(&t, now, true) {
                assert_eq!(dues[fd as usize], now, "handed out at its due time");
                order.push(dues[fd as usize]);
                dues[fd as usize] = u64::MAX;
            }
        }
        assert_eq!(order.len(), 200);
        assert!(order.windows(2).all(|p| p[0] <= p[1]), "in due order");
        // Removal from the heap keeps it a heap.
        let mut w = Wheel::new(1 << 16, 0).unwrap();
        w.reserve_far(50).unwrap();
        for fd in 0..50 {
            w.insert(&t, fd, 100_000 + (fd as u64 * 7919) % 1000, 0);
        }
        for fd in (0..50).step_by(3) {
            w.remove(&t, fd);
        }
        let mut last = 0;
        let mut n = 0;
        while let Some(next) = w.next_due(&t, 0) {
            assert!(next >= last);
            last = next;
            let fd = w.pop(&t, next, true).unwrap();
            assert!(fd % 3 != 0);
            n += 1;
        }
        assert_eq!(n, 50 - 17);
    }

    #[test]
    fn without_heap_room_a_far_entry_is_never_late() {
        let t = table(4);
        let mut w = Wheel::new(64, 0).unwrap();
        w.insert(&t, 1, 1000, 0); // beyond the turn, no heap reserved
        let mut now = 0;
        let mut popped = None;
        while popped.is_none() && now <= 2000 {
            popped = w.pop(&t, now, true).map(|fd| (fd, now));
            now += 1;
        }
        assert_eq!(popped, Some((1, 1000)));
    }
}
