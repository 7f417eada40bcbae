//! A timing wheel with millisecond slots (no allocation per event; O(1)
//! insert, remove and pop) that knows its earliest due time exactly, in
//! O(1).
//!
//! - Each list (a slot, or the ready list) is an array of fds stored in a
//!   chain of 64-byte blocks of 12 fds, from a pool: the driver reads the
//!   fds due at a millisecond a block at a time, and can ask for all their
//!   table entries at once (their cache misses overlap), where a linked
//!   list through the entries would wait for each miss in turn. Each fd's
//!   node records where it is (block, index), so removal is O(1): the
//!   list's last fd moves into the hole. The pool's storage is reserved by
//!   [`Wheel::reserve`] (from `watch()`, which may fail with NoMem), so
//!   inserting never allocates.
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
//!   reserved by [`Wheel::reserve`] too.
//!
//! All functions take the current time as a parameter: the wheel never
//! reads a clock, so it is tested on a fake one.

use std::sync::atomic::Ordering::Relaxed;

use super::table::{Node, Table};
use crate::error::{Error, Result};

/// `Node::list`: 0 = not in the wheel, `u32::MAX` = in the far heap, else
/// list index + 1.
const OUT: u32 = 0;
const HEAP: u32 = u32::MAX;
/// No block.
const NIL: u32 = u32::MAX;
/// Fds per block.
const PER_BLOCK: usize = 12;

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

/// A piece of a list: fds at `fds[start..used]`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block {
    fds: [i32; PER_BLOCK],
    start: u8,
    used: u8,
    prev: u32,
    next: u32,
}

const EMPTY_BLOCK: Block = Block {
    fds: [-1; PER_BLOCK],
    start: 0,
    used: 0,
    prev: NIL,
    next: NIL,
};

/// The first and last block of a list (NIL: empty).
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

pub(crate) struct Wheel {
    /// The lists: `len` slots, then the ready list (fds inserted with a due
    /// time already passed).
    lists: Vec<List>,
    /// Which slots are not empty.
    bits: Bitmap,
    /// The block pool (capacity reserved ahead: never grown here), and its
    /// free list (through `next`).
    blocks: Vec<Block>,
    free: u32,
    /// The far heap (fds, by `due_ms`; an fd's index is its node's `pos`).
    far: Vec<i32>,
    /// Number of slots (a power of two).
    len: u64,
    /// Every slot for a millisecond before `cursor` is empty (its fds were
    /// handed out); every fd in a slot is due at `cursor + k` for k < len.
    cursor: u64,
    /// The last millisecond swept: slots up to it are due, and are handed
    /// out in place, in time order.
    due_to: u64,
    /// Number of fds in the wheel (slots, ready list and heap).
    count: usize,
}

impl Wheel {
    /// A wheel with at least `span_ms` slots (rounded up to a power of two,
    /// 64..=65536), whose sweeping starts at `now_ms`.
    pub(crate) fn new(span_ms: u64, now_ms: u64) -> Result<Wheel> {
        let len = span_ms.clamp(64, MAX_SLOTS).next_power_of_two();
        let n = len as usize + 1;
        let mut lists = Vec::new();
        lists.try_reserve_exact(n).map_err(|_| Error::NoMem)?;
        lists.resize(n, EMPTY_LIST);
        Ok(Wheel {
            lists,
            bits: Bitmap::new(len as usize)?,
            blocks: Vec::new(),
            free: NIL,
            far: Vec::new(),
            len,
            cursor: now_ms,
            due_to: now_ms.saturating_sub(1),
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

    /// Makes room for `n` fds: blocks enough for any arrangement of them
    /// (each block in use holds at least one fd, and every list's blocks
    /// are full but its first and its last), and with `far`, heap room for
    /// all of them, so that inserting never allocates. [`Error::NoMem`] if
    /// it cannot.
    pub(crate) fn reserve(&mut self, n: usize, far: bool) -> Result<()> {
        let want = n.min(n.div_ceil(PER_BLOCK) + 2 * self.lists.len());
        let more = want.saturating_sub(self.blocks.len());
        self.blocks.try_reserve(more).map_err(|_| Error::NoMem)?;
        if far {
            let more = n.saturating_sub(self.far.len());
            self.far.try_reserve(more).map_err(|_| Error::NoMem)?;
        }
        Ok(())
    }

    #[inline]
    fn node(t: &Table, fd: i32) -> &Node {
        // Only fds whose chunk exists are ever linked (watch ensures it).
        t.node_locked(fd).expect("linked fd without a chunk")
    }

    /// A block, from the free list or the reserved room.
    fn alloc(&mut self) -> u32 {
        let b = if self.free != NIL {
            let b = self.free;
            self.free = self.blocks[b as usize].next;
            b
        } else {
            // Within the capacity `reserve` made: no allocation (the bound
            // is checked by the tests).
            debug_assert!(self.blocks.len() < self.blocks.capacity());
            self.blocks.push(EMPTY_BLOCK);
            (self.blocks.len() - 1) as u32
        };
        self.blocks[b as usize] = EMPTY_BLOCK;
        b
    }

    /// Unlinks block `b` (empty) from list `l` and frees it.
    fn drop_block(&mut self, l: usize, b: u32) {
        let Block { prev, next, .. } = self.blocks[b as usize];
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.blocks[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.blocks[next as usize].prev = prev;
        }
        self.blocks[b as usize].next = self.free;
        self.free = b;
        if self.lists[l].head == NIL && l != self.ready() {
            self.bits.clear(l);
        }
    }

    /// Appends `fd` (whose node is `n`) to list `list`.
    fn push(&mut self, n: &Node, fd: i32, list: usize) {
        let tail = self.lists[list].tail;
        let b = if tail != NIL && (self.blocks[tail as usize].used as usize) < PER_BLOCK {
            tail
        } else {
            let b = self.alloc();
            self.blocks[b as usize].prev = tail;
            if tail == NIL {
                self.lists[list].head = b;
                if list != self.ready() {
                    self.bits.set(list);
                }
            } else {
                self.blocks[tail as usize].next = b;
            }
            self.lists[list].tail = b;
            b
        };
        let blk = &mut self.blocks[b as usize];
        let i = blk.used as usize;
        blk.fds[i] = fd;
        blk.used += 1;
        n.pos.store(b << 4 | i as u32, Relaxed);
        n.list.store(list as u32 + 1, Relaxed);
        self.count += 1;
    }

    /// Takes `fd` (node `n`, in list `list`) out: the list's last fd moves
    /// into its place.
    fn unlist(&mut self, t: &Table, n: &Node, list: usize) {
        let pos = n.pos.load(Relaxed);
        let (b, i) = (pos >> 4, (pos & 15) as usize);
        let tail = self.lists[list].tail;
        let last_i = self.blocks[tail as usize].used as usize - 1;
        if (tail, last_i) != (b, i) {
            let last = self.blocks[tail as usize].fds[last_i];
            self.blocks[b as usize].fds[i] = last;
            Self::node(t, last).pos.store(b << 4 | i as u32, Relaxed);
        }
        let tb = &mut self.blocks[tail as usize];
        tb.used -= 1;
        if tb.used == tb.start {
            self.drop_block(list, tail);
        }
    }

    /// Removes `fd` from whatever list (or the heap) it is in; no-op if it
    /// is in none.
    pub(crate) fn remove(&mut self, t: &Table, fd: i32) {
        let Some(n) = t.node_locked(fd) else { return };
        match n.list.load(Relaxed) {
            OUT => return,
            HEAP => self.far_remove(t, n.pos.load(Relaxed) as usize),
            l => self.unlist(t, n, l as usize - 1),
        }
        n.list.store(OUT, Relaxed);
        self.count -= 1;
    }

    /// The first fd of list `l` (not empty), taken out, and its due time.
    fn pop_front(&mut self, t: &Table, l: usize) -> (i32, u64) {
        let h = self.lists[l].head;
        let blk = &mut self.blocks[h as usize];
        let fd = blk.fds[blk.start as usize];
        blk.start += 1;
        if blk.start == blk.used {
            self.drop_block(l, h);
        }
        let n = Self::node(t, fd);
        n.list.store(OUT, Relaxed);
        self.count -= 1;
        (fd, n.due_ms.load(Relaxed))
    }

    /// Schedules `fd` (not linked) at millisecond `due_ms`, the time being
    /// `now_ms`. A time already passed goes to the ready list.
    pub(crate) fn insert(&mut self, t: &Table, fd: i32, due_ms: u64, now_ms: u64) {
        self.insert_node(t, Self::node(t, fd), fd, due_ms, now_ms);
    }

    /// [`Wheel::insert`] of `fd` whose node `n` the caller already has.
    pub(crate) fn insert_node(&mut self, t: &Table, n: &Node, fd: i32, due_ms: u64, now_ms: u64) {
        n.due_ms.store(due_ms, Relaxed);
        if due_ms >= self.cursor + self.len && now_ms >= self.cursor {
            // The cursor is behind the clock (the driver has not looked for
            // a while): bring it to now first, so that the new entry fits
            // in the current turn.
            self.catch_up(t, now_ms);
        }
        if due_ms < self.cursor {
            let r = self.ready();
            self.push(n, fd, r);
        } else if due_ms < self.cursor + self.len {
            self.push(n, fd, (due_ms & (self.len - 1)) as usize);
        } else if self.far.len() < self.far.capacity() {
            self.far_push(t, fd);
        } else {
            // Unreachable when watch() reserved the heap (it does whenever
            // the period exceeds the wheel): never allocate here. The last
            // slot of this turn: the entry comes up early and pop() puts
            // it back, so it is never late.
            let s = ((self.cursor + self.len - 1) & (self.len - 1)) as usize;
            self.push(n, fd, s);
        }
    }

    /// Moves the fds of every slot due by `now_ms` to the ready list and
    /// the cursor past them (O(fds moved): only after the driver has not
    /// looked for most of a turn).
    fn catch_up(&mut self, t: &Table, now_ms: u64) {
        let r = self.ready();
        while let Some((s, m)) = self.first_slot() {
            if m > now_ms {
                break;
            }
            let mut b = self.lists[s].head;
            while b != NIL {
                let blk = self.blocks[b as usize];
                for &fd in &blk.fds[blk.start as usize..blk.used as usize] {
                    Self::node(t, fd).list.store(r as u32 + 1, Relaxed);
                }
                b = blk.next;
            }
            let List { head, tail } = self.lists[s];
            let rt = self.lists[r].tail;
            if rt == NIL {
                self.lists[r].head = head;
            } else {
                self.blocks[rt as usize].next = head;
                self.blocks[head as usize].prev = rt;
            }
            self.lists[r].tail = tail;
            self.lists[s] = EMPTY_LIST;
            self.bits.clear(s);
        }
        self.cursor = now_ms + 1;
        self.due_to = self.due_to.max(now_ms);
    }

    /// The first non-empty slot at or after the cursor, and its millisecond.
    fn first_slot(&self) -> Option<(usize, u64)> {
        let from = (self.cursor & (self.len - 1)) as usize;
        let s = self.bits.next_set(from).or_else(|| self.bits.next_set(0))?;
        let d = if s >= from {
            s - from
        } else {
            s + self.len as usize - from
        };
        Some((s, self.cursor + d as u64))
    }

    /// Everything due by `now_ms` becomes due (handed out by `pop`).
    pub(crate) fn sweep(&mut self, now_ms: u64) {
        self.due_to = self.due_to.max(now_ms);
    }

    /// Prefetches the entries of the next `n` fds `pop` would hand out:
    /// the blocks are read in order, the entries' misses overlap.
    pub(crate) fn prefetch_due(&self, t: &Table, n: usize) {
        let mut left = n;
        let visit = |mut b: u32, left: &mut usize| {
            while b != NIL && *left > 0 {
                let blk = &self.blocks[b as usize];
                for &fd in &blk.fds[blk.start as usize..blk.used as usize] {
                    t.prefetch(fd);
                }
                *left = left.saturating_sub((blk.used - blk.start) as usize);
                b = blk.next;
            }
        };
        visit(self.lists[self.ready()].head, &mut left);
        let mut from = (self.cursor & (self.len - 1)) as usize;
        let mut ms = self.cursor;
        while left > 0 && ms <= self.due_to {
            let Some(s) = self.bits.next_set(from) else {
                break; // (a wrap-around is rare: left for the next batch)
            };
            ms += (s - from) as u64;
            if ms > self.due_to {
                break;
            }
            visit(self.lists[s].head, &mut left);
            from = s + 1;
            ms += 1;
        }
    }

    /// Unlinks and returns one fd due at or before `now_ms`, or None: the
    /// ready list's first, else the first of the earliest slot due (by the
    /// last sweep, or by `now_ms` with `sweep`), else a due one of the far
    /// heap.
    pub(crate) fn pop(&mut self, t: &Table, now_ms: u64, sweep: bool) -> Option<i32> {
        if sweep {
            self.sweep(now_ms);
        }
        let r = self.ready();
        while self.lists[r].head != NIL {
            let (fd, due) = self.pop_front(t, r);
            if due <= now_ms {
                return Some(fd);
            }
            // Only after the heap could not take an entry (insert's last
            // resort): not due yet, back in the wheel (in a slot: due >
            // now_ms >= cursor - 1).
            self.insert(t, fd, due, now_ms);
        }
        loop {
            // The cursor's own slot, when not empty, is the first (every
            // slot before it is empty): no bitmap search per fd.
            let c = (self.cursor & (self.len - 1)) as usize;
            let first = if self.lists[c].head != NIL {
                Some((c, self.cursor))
            } else {
                self.first_slot()
            };
            match first {
                Some((s, m)) if m <= self.due_to => {
                    self.cursor = m; // every slot before it is empty
                    let (fd, due) = self.pop_front(t, s);
                    if due <= now_ms.max(m) {
                        return Some(fd);
                    }
                    // Insert's last resort again (a later turn): back.
                    self.insert(t, fd, due, now_ms);
                }
                Some((_, m)) => {
                    self.cursor = self.cursor.max(m.min(self.due_to + 1));
                    break;
                }
                None => {
                    self.cursor = self.cursor.max(self.due_to + 1);
                    break;
                }
            }
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
        if self.lists[self.ready()].head != NIL {
            return Some(now_ms);
        }
        let slot = self.first_slot().map(|(_, m)| m);
        let far = self
            .far
            .first()
            .map(|&fd| Self::node(t, fd).due_ms.load(Relaxed));
        match (slot, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Blocks in the pool (for the tests of the reservation).
    #[cfg(test)]
    fn pool(&self) -> (usize, usize) {
        (self.blocks.len(), self.blocks.capacity())
    }

    // --- the far heap -------------------------------------------------------

    fn far_due(&self, t: &Table, i: usize) -> u64 {
        Self::node(t, self.far[i]).due_ms.load(Relaxed)
    }

    fn far_place(&mut self, t: &Table, i: usize, fd: i32) {
        self.far[i] = fd;
        Self::node(t, fd).pos.store(i as u32, Relaxed);
    }

    /// Pushes `fd` (capacity reserved by the caller: no allocation).
    fn far_push(&mut self, t: &Table, fd: i32) {
        Self::node(t, fd).list.store(HEAP, Relaxed);
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
        let i = Self::node(t, last).pos.load(Relaxed) as usize;
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

    /// A wheel with room for 1000 fds.
    fn wheel(span: u64, now: u64) -> Result<Wheel> {
        let mut w = Wheel::new(span, now)?;
        w.reserve(1000, false)?;
        Ok(w)
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
        let mut w = wheel(100, 1000).unwrap();
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
        let mut w = wheel(64, 0).unwrap();
        for fd in 0..5 {
            w.insert(&t, fd, 10, 0);
        }
        w.remove(&t, 2);
        w.remove(&t, 4); // the tail
        w.remove(&t, 0); // the head
        w.remove(&t, 0); // not linked: no-op
        w.remove(&t, 9); // never linked
        let mut got = drain(&mut w, &t, 10);
        got.sort(); // removal moves the list's last fd into the hole
        assert_eq!(got, vec![1, 3]);
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
        let mut w = wheel(64, 0).unwrap();
        for fd in (0..50).rev() {
            w.insert(&t, fd, fd as u64, 0); // 0..49: within the turn
        }
        assert_eq!(drain(&mut w, &t, 350), (0..50).collect::<Vec<_>>());
        // Inserted while the cursor is far behind the clock: the cursor
        // catches up, so the entry fits in the turn and the due time is
        // exact.
        let mut w = wheel(64, 0).unwrap();
        w.insert(&t, 1, 10, 0);
        w.insert(&t, 2, 1030, 1000);
        assert_eq!(w.next_due(&t, 1000), Some(1000)); // fd 1 is ready
        assert_eq!(w.pop(&t, 1000, true), Some(1));
        assert_eq!(w.next_due(&t, 1000), Some(1030));
    }

    #[test]
    fn without_sweep_only_the_ready_list_is_handed_out() {
        let t = table(10);
        let mut w = wheel(64, 0).unwrap();
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
        let mut w = wheel(1 << 16, 0).unwrap();
        w.reserve(200, true).unwrap();
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
        let mut w = wheel(1 << 16, 0).unwrap();
        w.reserve(50, true).unwrap();
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
        let mut w = wheel(64, 0).unwrap();
        w.insert(&t, 1, 1000, 0); // beyond the turn, no heap reserved
        let mut now = 0;
        let mut popped = None;
        while popped.is_none() && now <= 2000 {
            popped = w.pop(&t, now, true).map(|fd| (fd, now));
            now += 1;
        }
        assert_eq!(popped, Some((1, 1000)));
    }

    #[test]
    fn inserting_never_grows_the_reserved_pool() {
        // Random inserts, removals, sweeps and pops of 300 fds (many per
        // slot, alone in slots, stalls longer than the wheel): the pool
        // reserved for 300 fds is never outgrown (no allocation while
        // scheduling), and every fd is found where its node says.
        let n = 300;
        let t = table(n);
        for seed in 1..30u64 {
            let mut w = Wheel::new(64, 0).unwrap();
            w.reserve(n as usize, false).unwrap();
            let cap = w.pool().1;
            let mut rng = seed;
            let mut next = || {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                rng >> 33
            };
            let mut now = 0u64;
            let mut inside = vec![false; n as usize];
            for _ in 0..5000 {
                let fd = (next() % n as u64) as i32;
                match next() % 5 {
                    0 | 1 if !inside[fd as usize] => {
                        let due = now + next() % 70;
                        w.insert(&t, fd, due, now);
                        inside[fd as usize] = true;
                    }
                    2 if inside[fd as usize] => {
                        w.remove(&t, fd);
                        inside[fd as usize] = false;
                    }
                    3 => {
                        now += if next() % 20 == 0 { 500 } else { next() % 3 };
                        while let Some(fd) = w.pop(&t, now, next() % 2 == 0) {
                            assert!(inside[fd as usize]);
                            inside[fd as usize] = false;
                        }
                    }
                    _ => {}
                }
                let (len, c) = w.pool();
                assert!(
                    len <= cap && c == cap,
                    "pool grew: {len} of {cap}, capacity {c}"
                );
                assert_eq!(w.len(), inside.iter().filter(|&&x| x).count());
            }
            // Everything left comes out, each fd once.
            now += 1000;
            while let Some(fd) = w.pop(&t, now, true) {
                assert!(inside[fd as usize]);
                inside[fd as usize] = false;
            }
            assert!(inside.iter().all(|&x| !x));
        }
    }
}
