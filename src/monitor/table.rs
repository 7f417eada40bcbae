//! The fd-indexed table: one 64-byte entry per fd number, holding the
//! lock-free [`Slot`] that `alive()` reads and writes without any lock, and
//! the [`Node`] of the scheduler's bookkeeping (touched only with the
//! monitor's mutex held). Slot and node share one cache line, so the
//! driver's work on an event costs one cache miss, not two (and the wheel
//! keeps the fds of each millisecond in arrays, so that the driver can
//! prefetch the entries of a whole batch at once: their misses overlap).
//!
//! Memory is allocated lazily in chunks of [`CHUNK`] fds, so a process that
//! watches fds 0..N pays for about N entries, whatever the fd numbers'
//! spread within a chunk. Chunks are never freed before the table is
//! dropped, so a reference to a slot stays valid for the table's lifetime.
//!
//! False sharing: entries of neighbouring fds (typically connections
//! accepted one after the other and served by different threads) are placed
//! 128 bytes apart (two cache lines: the adjacent-line prefetcher pairs
//! lines), so two threads calling `alive()` on fds `n` and `n + 1` never
//! write the same line or the same pair of lines.
//!
//! # The state word
//!
//! [`Slot`]'s state is `generation << 4 | DOOMED | WAITED | BUSY | WATCHED`:
//! - `WATCHED`: the fd is watched (what `alive()` checks);
//! - `BUSY`: the driver took an event of this fd (a ping or its death) into
//!   the batch it is running, and has not finished it: `unwatch()` waits
//!   for that (the "busy fd" marker);
//! - `WAITED`: an `unwatch()` waits for `BUSY` to clear and must be woken;
//! - `DOOMED`: the fd was declared dead (no longer `WATCHED`) and its dead
//!   callback has not started: `unwatch()` cancels it by clearing the bit,
//!   the driver starts the callback only if it clears the bit itself.
//!
//! `WATCHED`, `DOOMED` and the generation change with the monitor's mutex
//! held (watch, unwatch, death), except that the driver clears `DOOMED`
//! when it starts a dead callback; `BUSY` is set with the mutex held (when
//! the driver takes a batch) and cleared by the driver without it, when the
//! event is done. So the only writes without the mutex are the driver's,
//! while it runs a batch. The writes that can race with them (`unwatch()`
//! and `watch()`, with the mutex held) and the driver's own unlocked ones
//! are atomic read-modify-writes of the one word, so that none is lost.
//! The two that cannot race, `set_busy` and `doom`, are a load and a
//! store: the driver makes them with the mutex held, so no other thread
//! writes the word meanwhile, and every unlocked write of a driver (its
//! own, or in the thread-free mode an earlier caller's of `process()`)
//! happened before it took the mutex. A locked read-modify-write costs
//! about 9 ns on this project's machine, a load and a store about 1 ns,
//! and these run once per event. Because all of it is one location, the
//! protocol between the driver and `unwatch()` needs no ordering between
//! different variables (see `Slot::end_busy`).

#[cfg(not(loom))]
use std::alloc::{alloc_zeroed, Layout};
use std::ptr;
// The node's atomics are only ever accessed with the monitor's mutex held
// (see [`Node`]): they stay std's under loom too, which models the mutex;
// the slot's and the directory's are read without the mutex and are loom's
// there (os::atomic).
use std::sync::atomic::{AtomicU32, AtomicU64 as NodeU64, Ordering};

use super::os::atomic::{AtomicPtr, AtomicU64};
use crate::error::{Error, Result};

/// log2 of the number of fds per chunk (4 fds per chunk under loom, whose
/// atomics are costly objects).
#[cfg(not(loom))]
const CHUNK_BITS: u32 = 12;
#[cfg(loom)]
const CHUNK_BITS: u32 = 2;
/// Fds per chunk.
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;
/// Number of chunk pointers: enough for every non-negative `int` (fds 0..16
/// under loom).
#[cfg(not(loom))]
const DIR_LEN: usize = 1 << (31 - CHUNK_BITS);
#[cfg(loom)]
const DIR_LEN: usize = 4;
/// Entries per 128-byte stride (an entry is 64 bytes).
#[cfg(not(loom))]
const PER_STRIDE: usize = 128 / std::mem::size_of::<Entry>();
/// Number of strides in a chunk.
#[cfg(not(loom))]
const STRIDES: usize = CHUNK / PER_STRIDE;

/// The state word's bits (see the module's documentation).
pub(crate) const WATCHED: u64 = 1;
/// The driver has an unfinished event of this fd in its batch.
pub(crate) const BUSY: u64 = 2;
/// An `unwatch()` waits for `BUSY` to clear.
pub(crate) const WAITED: u64 = 4;
/// Declared dead; the dead callback has not started.
pub(crate) const DOOMED: u64 = 8;
/// Where the generation starts in the state word.
pub(crate) const GEN_SHIFT: u32 = 4;

/// The part of an fd's entry that `alive()` touches, without any lock.
#[repr(C)]
pub(crate) struct Slot {
    /// `generation << 4 | DOOMED | WAITED | BUSY | WATCHED` (module
    /// documentation).
    state: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds at which the peer was last heard from.
    heard: AtomicU64,
}

// The lock-free accesses (slot atomics, chunk directory) go through these
// few functions, never inlined: the valgrind race check (helgrind) does not
// model atomics, and c-tests/monitor.supp names exactly these functions to
// silence its reports about them, and nothing else. A call costs ~1 ns.
impl Slot {
    /// Whether the fd is watched, by the state word.
    #[inline(never)]
    pub(crate) fn watched(&self) -> bool {
        self.state.load(Ordering::Acquire) & WATCHED != 0
    }

    /// The state word.
    #[inline(never)]
    pub(crate) fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Whether the fd is watched or its death is pending: a new watch is
    /// refused then.
    #[inline(never)]
    pub(crate) fn taken(&self) -> bool {
        self.state.load(Ordering::Acquire) & (WATCHED | DOOMED) != 0
    }

    /// Starts watch `generation` (monitor mutex held; the fd is neither
    /// watched nor doomed): the driver may be clearing `BUSY` meanwhile,
    /// which is kept as it is.
    #[inline(never)]
    pub(crate) fn start_watch(&self, generation: u64) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let new = generation << GEN_SHIFT | WATCHED | (s & (BUSY | WAITED));
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    /// Stops the watch, or cancels a death whose callback has not started
    /// (monitor mutex held); returns the state before (so the caller sees
    /// which of the two it was).
    #[inline(never)]
    pub(crate) fn stop_watch(&self) -> u64 {
        self.state.fetch_and(!(WATCHED | DOOMED), Ordering::AcqRel)
    }

    /// The driver took a ping of this fd into its batch (the driver, with
    /// the monitor's mutex held: no other thread can write the word now,
    /// see the module's documentation).
    #[inline(never)]
    pub(crate) fn set_busy(&self) {
        let s = self.state.load(Ordering::Relaxed);
        self.state.store(s | BUSY, Ordering::Release);
    }

    /// The driver took this fd's death into its batch (the driver, with
    /// the monitor's mutex held, as for `set_busy`; the fd is no longer
    /// watched).
    #[inline(never)]
    pub(crate) fn doom(&self) {
        let s = self.state.load(Ordering::Relaxed);
        self.state.store(s | BUSY | DOOMED, Ordering::Release);
    }

    /// The driver is about to start the dead callback (no lock held): true
    /// if it may, false if an `unwatch()` cancelled the death first.
    #[inline(never)]
    pub(crate) fn start_death(&self) -> bool {
        self.state.fetch_and(!DOOMED, Ordering::AcqRel) & DOOMED != 0
    }

    /// The driver finished (or skipped) the event of this fd (no lock
    /// held). True if an `unwatch()` waits for it: the caller must then
    /// wake the waiters (under the mutex, which the waiter holds from
    /// [`Slot::mark_waited`] until it sleeps, so the wake-up cannot come
    /// too early).
    #[inline(never)]
    pub(crate) fn end_busy(&self) -> bool {
        self.state.fetch_and(!(BUSY | WAITED), Ordering::AcqRel) & WAITED != 0
    }

    /// Called by `unwatch()` with the monitor's mutex held: if the driver
    /// has an unfinished event of this fd, records that a waiter must be
    /// woken when it ends and returns true (the caller then sleeps on the
    /// condition variable without releasing the mutex in between);
    /// otherwise false. One location: either this sees `BUSY` and sets
    /// `WAITED` before the driver's [`Slot::end_busy`] (which then sees
    /// `WAITED`), or it sees `BUSY` already cleared.
    #[inline(never)]
    pub(crate) fn mark_waited(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & BUSY == 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s | WAITED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Whether the driver has an unfinished event of this fd.
    #[inline(never)]
    pub(crate) fn busy(&self) -> bool {
        self.state.load(Ordering::Acquire) & BUSY != 0
    }

    /// When the peer was last heard from (ns).
    #[inline(never)]
    pub(crate) fn heard(&self) -> u64 {
        self.heard.load(Ordering::Acquire)
    }

    /// The peer was heard from at `now` (ns).
    #[inline(never)]
    pub(crate) fn touch(&self, now: u64) {
        self.heard.store(now, Ordering::Release);
    }
}

/// The generation of a watched fd, from its state word, or None.
pub(crate) fn watched_generation(state: u64) -> Option<u64> {
    (state & WATCHED != 0).then_some(state >> GEN_SHIFT)
}

/// The scheduler's entry for an fd. Only ever accessed with the monitor's
/// mutex held: the atomics are there so that the table can be shared safely
/// without `unsafe`; with Relaxed ordering they compile to plain moves.
#[derive(Default)]
pub(crate) struct Node {
    /// Where the fd is in the wheel: 0 = nowhere, 1 = in a list (`pos` is
    /// block << 4 | index), 2 = in the far heap (`pos` is the heap index).
    pub(crate) list: AtomicU32,
    /// See `list`.
    pub(crate) pos: AtomicU32,
    /// Bytes of the current ping already sent (0: no partial ping pending).
    pub(crate) ping_off: AtomicU32,
    /// Wheel due time, milliseconds.
    pub(crate) due_ms: NodeU64,
    /// When the next ping is due, nanoseconds.
    pub(crate) next_ping: NodeU64,
    /// The first ping attempt that began after the peer was last heard
    /// from, as far as the scheduler knows: when it began (ns; `NONE_NS`:
    /// none)...
    pub(crate) pend_start: NodeU64,
    /// ... and when its send (or ping callback) returned (ns).
    pub(crate) pend_end: NodeU64,
}

/// "No time" in [`Node::pend_start`].
pub(crate) const NONE_NS: u64 = u64::MAX;

/// One fd's entry: 64 bytes, one cache line.
#[repr(C, align(64))]
struct Entry {
    slot: Slot,
    node: Node,
}

struct Chunk {
    entries: [Entry; CHUNK],
}

/// The table: a fixed directory of lazily allocated chunks.
pub(crate) struct Table {
    dir: Dir,
    /// One past the highest directory index with a chunk (written by
    /// `ensure`, under the monitor's mutex): dropping the table looks at
    /// the directory up to there only, not at all of its 4 MiB (which
    /// would take about 10 ms and bring every page of it into memory).
    used: AtomicU32,
}

/// The directory: `n` null chunk pointers in a private anonymous mapping
/// of its own, not from the allocator. The kernel hands out its pages
/// zeroed on first touch, so the untouched part costs no memory; and it
/// keeps the monitor out of malloc's way: through calloc, the 4 MiB block
/// would be mapped the first time, but freeing it raises glibc's dynamic
/// mmap threshold to 4 MiB, after which every later monitor's directory
/// (and any large allocation of the program) comes from the heap and must
/// be cleared there: measured, 3 ms and 4 MiB of memory per
/// `heartbeat_monitor_new()` from the third monitor on.
#[cfg(not(loom))]
struct Dir {
    p: ptr::NonNull<AtomicPtr<Chunk>>,
    n: usize,
}

// SAFETY: the directory is a slice of atomics, shared as such.
#[cfg(not(loom))]
unsafe impl Send for Dir {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for Dir {}

/// A directory of `n` null chunk pointers, or None.
#[cfg(not(loom))]
fn new_dir(n: usize) -> Option<Dir> {
    let bytes = n.checked_mul(std::mem::size_of::<AtomicPtr<Chunk>>())?;
    let p = super::os::map_zeroed(bytes)?.cast::<AtomicPtr<Chunk>>();
    Some(Dir { p, n })
}

#[cfg(not(loom))]
impl std::ops::Deref for Dir {
    type Target = [AtomicPtr<Chunk>];
    fn deref(&self) -> &[AtomicPtr<Chunk>] {
        // SAFETY: `n` pointers, mapped (zeroed: null, a valid AtomicPtr)
        // for as long as the Dir lives, and page-aligned.
        unsafe { std::slice::from_raw_parts(self.p.as_ptr(), self.n) }
    }
}

#[cfg(not(loom))]
impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the mapping made by Dir::new, released once; nothing
        // borrows it any more (`&mut self`).
        unsafe {
            super::os::unmap(
                self.p.cast(),
                self.n * std::mem::size_of::<AtomicPtr<Chunk>>(),
            )
        };
    }
}

#[cfg(not(loom))]
fn zeroed_chunk() -> Option<Box<Chunk>> {
    let layout = Layout::new::<Chunk>();
    // SAFETY: Chunk has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) }.cast::<Chunk>();
    if p.is_null() {
        return None;
    }
    // SAFETY: fresh allocation with Chunk's layout (64-byte aligned); Chunk
    // is made only of atomics, for which all-zero is a valid value.
    Some(unsafe { Box::from_raw(p) })
}

/// loom's atomics are not valid when all-zero: chunks are built value by
/// value there.
#[cfg(loom)]
fn zeroed_chunk() -> Option<Box<Chunk>> {
    super::os::try_box(Chunk {
        entries: std::array::from_fn(|_| Entry {
            slot: Slot {
                state: AtomicU64::new(0),
                heard: AtomicU64::new(0),
            },
            node: Node::default(),
        }),
    })
    .ok()
}

#[cfg(loom)]
type Dir = Box<[AtomicPtr<Chunk>]>;

#[cfg(loom)]
fn new_dir(n: usize) -> Option<Dir> {
    Some((0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect())
}

/// Where fd `i` of a chunk lives in the chunk's entry array.
#[cfg(not(loom))]
#[inline]
fn swizzle(i: usize) -> usize {
    (i % STRIDES) * PER_STRIDE + i / STRIDES
}

#[cfg(loom)]
#[inline]
fn swizzle(i: usize) -> usize {
    i
}

impl Table {
    /// An empty table; only the directory (4 MiB of address space, touched
    /// lazily) is allocated.
    pub(crate) fn new() -> Result<Table> {
        Ok(Table {
            dir: new_dir(DIR_LEN).ok_or(Error::NoMem)?,
            used: AtomicU32::new(0),
        })
    }

    #[inline(never)]
    fn chunk(&self, fd: i32) -> Option<&Chunk> {
        let fd = usize::try_from(fd).ok()?;
        let p = self.dir.get(fd >> CHUNK_BITS)?.load(Ordering::Acquire);
        // SAFETY: a non-null pointer was published (Release) by `ensure` from
        // a live Box that is freed only in Drop, which needs `&mut self`.
        unsafe { p.as_ref() }
    }

    #[inline]
    fn entry(&self, fd: i32) -> Option<&Entry> {
        let c = self.chunk(fd)?;
        Some(&c.entries[swizzle(fd as usize & (CHUNK - 1))])
    }

    /// The same lookup, inlined: for the scheduler, which holds the
    /// monitor's mutex, as does `ensure` (the only writer of the
    /// directory), so the race check needs no suppression for it.
    #[inline(always)]
    fn entry_locked(&self, fd: i32) -> Option<&Entry> {
        let i = usize::try_from(fd).ok()?;
        let p = self.dir.get(i >> CHUNK_BITS)?.load(Ordering::Acquire);
        // SAFETY: as in `chunk`.
        let c = unsafe { p.as_ref() }?;
        Some(&c.entries[swizzle(i & (CHUNK - 1))])
    }

    /// [`Table::get`] for the scheduler (monitor mutex held).
    #[inline]
    pub(crate) fn get_locked(&self, fd: i32) -> Option<(&Slot, &Node)> {
        self.entry_locked(fd).map(|e| (&e.slot, &e.node))
    }

    /// [`Table::node`] for the scheduler (monitor mutex held).
    #[inline]
    pub(crate) fn node_locked(&self, fd: i32) -> Option<&Node> {
        self.entry_locked(fd).map(|e| &e.node)
    }

    /// [`Table::slot`] for the scheduler (monitor mutex held).
    #[inline]
    pub(crate) fn slot_locked(&self, fd: i32) -> Option<&Slot> {
        self.entry_locked(fd).map(|e| &e.slot)
    }

    /// The slot of `fd`, if its chunk exists (None for negative fds).
    #[inline]
    pub(crate) fn slot(&self, fd: i32) -> Option<&Slot> {
        self.entry(fd).map(|e| &e.slot)
    }

    /// Asks the CPU to bring `fd`'s entry into the cache (no effect on
    /// what the program computes; a no-op where there is no such hint).
    #[inline]
    pub(crate) fn prefetch(&self, fd: i32) {
        if let Some(e) = self.entry_locked(fd) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is only a hint: it reads nothing the
            // program sees and cannot fault; `e` is a valid address anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    e as *const Entry as *const i8,
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = e;
        }
    }

    /// Makes sure the chunk of `fd` exists. Called with the monitor's mutex
    /// held, so only one thread ever allocates a given chunk.
    pub(crate) fn ensure(&self, fd: i32) -> Result<()> {
        let i = usize::try_from(fd).map_err(|_| Error::Invalid)? >> CHUNK_BITS;
        let cell = self.dir.get(i).ok_or(Error::Invalid)?;
        if cell.load(Ordering::Acquire).is_null() {
            let c = zeroed_chunk().ok_or(Error::NoMem)?;
            cell.store(Box::into_raw(c), Ordering::Release);
            // i < DIR_LEN <= 2^19: fits.
            self.used.fetch_max(i as u32 + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Bytes of one chunk (the memory test checks the per-fd cost).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn chunk_bytes() -> usize {
        std::mem::size_of::<Chunk>()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let used = self.used.load(Ordering::Relaxed) as usize;
        for cell in self.dir[..used].iter() {
            let p = cell.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from Box::into_raw in `ensure` and is
                // released exactly once, here.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn swizzle_is_a_permutation_that_spreads_neighbours() {
        let mut seen = vec![false; CHUNK];
        for i in 0..CHUNK {
            let p = swizzle(i);
            assert!(!seen[p]);
            seen[p] = true;
            if i + 1 < CHUNK {
                let q = swizzle(i + 1);
                // 64-byte entries: at least 128 bytes apart.
                assert!(p.abs_diff(q) * 64 >= 128, "{i}");
            }
        }
    }

    #[test]
    fn entries_are_one_cache_line_each() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(std::mem::align_of::<Entry>(), 64);
        assert_eq!(Table::chunk_bytes(), CHUNK * 64);
        let t = Table::new().unwrap();
        t.ensure(0).unwrap();
        let (s, n) = t.get_locked(5).unwrap();
        let (a, b) = (s as *const Slot as usize, n as *const Node as usize);
        assert_eq!(a % 64, 0);
        assert_eq!(b - a, 16, "slot and node share the line");
    }

    #[test]
    fn lazy_chunks() {
        let t = Table::new().unwrap();
        assert!(t.slot(5).is_none());
        assert!(t.slot(-1).is_none());
        assert_eq!(t.ensure(-1), Err(Error::Invalid));
        t.ensure(5).unwrap();
        assert!(t.slot(5).is_some());
        assert!(t.slot(CHUNK as i32).is_none());
        t.ensure(i32::MAX).unwrap();
        let s = t.slot(i32::MAX).unwrap();
        assert!(!s.watched());
        s.start_watch(1);
        assert!(s.watched());
        assert_eq!(watched_generation(s.state()), Some(1));
    }

    #[test]
    fn the_busy_protocol_keeps_every_bit() {
        let t = Table::new().unwrap();
        t.ensure(0).unwrap();
        let s = t.slot(0).unwrap();
        s.start_watch(7);
        // Nothing running: unwatch does not wait.
        assert!(!s.mark_waited());
        s.set_busy();
        // The driver has an event of fd 0: unwatch stops the watch and
        // waits; the driver's end says someone waits.
        assert_ne!(s.stop_watch() & WATCHED, 0);
        assert_eq!(s.stop_watch() & WATCHED, 0);
        assert!(s.mark_waited());
        assert!(s.busy());
        // A watch started meanwhile (the dead callback's re-watch) keeps
        // the busy and waited bits until the driver ends.
        s.start_watch(8);
        assert_eq!(s.state(), 8 << GEN_SHIFT | WATCHED | BUSY | WAITED);
        assert!(s.end_busy());
        assert_eq!(s.state(), 8 << GEN_SHIFT | WATCHED);
        // Without a waiter, the end says so.
        s.set_busy();
        assert!(!s.end_busy());
        assert_eq!(watched_generation(s.state()), Some(8));
        // A death: doomed until the driver starts it, or unwatch cancels.
        s.stop_watch();
        s.doom();
        assert!(s.taken() && !s.watched());
        assert!(s.start_death());
        assert!(!s.start_death());
        assert!(!s.end_busy());
        s.doom();
        assert_ne!(s.stop_watch() & DOOMED, 0, "unwatch cancels");
        assert!(!s.start_death(), "the driver then skips it");
        assert!(!s.taken());
    }
}
