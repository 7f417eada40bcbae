//! The fd-indexed table: one lock-free [`Slot`] per fd (read by `alive()`
//! without any lock) and one [`Node`] per fd (the scheduler's bookkeeping,
//! touched only with the monitor's mutex held).
//!
//! Memory is allocated lazily in chunks of [`CHUNK`] fds, so a process that
//! watches fds 0..N pays for about N entries, whatever the fd numbers'
//! spread within a chunk. Chunks are never freed before the table is
//! dropped, so a reference to a slot stays valid for the table's lifetime.
//!
//! False sharing: slots of neighbouring fds (typically connections accepted
//! one after the other and served by different threads) are placed 128 bytes
//! apart (two cache lines: the adjacent-line prefetcher pairs lines), so two
//! threads calling `alive()` on fds `n` and `n + 1` never write the same line.

#[cfg(not(loom))]
use std::alloc::{alloc_zeroed, Layout};
use std::ptr;
// The node's atomics are only ever accessed with the monitor's mutex held
// (see [`Node`]): they stay std's under loom too, which models the mutex;
// the slot's and the directory's are read without the mutex and are loom's
// there (os::atomic).
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64 as NodeU64, Ordering};

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
/// Slots per 128-byte stride (a slot is 16 bytes).
#[cfg(not(loom))]
const PER_STRIDE: usize = 128 / std::mem::size_of::<Slot>();
/// Number of strides in a chunk.
#[cfg(not(loom))]
const STRIDES: usize = CHUNK / PER_STRIDE;

/// The part of an fd's entry that `alive()` touches, without any lock.
#[repr(C)]
pub(crate) struct Slot {
    /// `generation << 1 | watched`. Written only with the monitor's mutex
    /// held (watch, unwatch, death); read by anyone.
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
        self.state.load(Ordering::Acquire) & 1 == 1
    }

    /// The state word (`generation << 1 | watched`).
    #[inline(never)]
    pub(crate) fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// Sets the state word (monitor mutex held).
    #[inline(never)]
    pub(crate) fn set_state(&self, v: u64) {
        self.state.store(v, Ordering::Release);
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

/// The scheduler's entry for an fd. Only ever accessed with the monitor's
/// mutex held: the atomics are there so that the table can be shared safely
/// without `unsafe`; with Relaxed ordering they compile to plain moves.
#[derive(Default)]
pub(crate) struct Node {
    /// Previous fd in the same wheel list (-1: none).
    pub(crate) prev: AtomicI32,
    /// Next fd in the same wheel list (-1: none).
    pub(crate) next: AtomicI32,
    /// Which list the node is in: 0 = none, k + 1 = list k.
    pub(crate) list: AtomicU32,
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

struct Chunk {
    slots: [Slot; CHUNK],
    nodes: [Node; CHUNK],
}

/// The table: a fixed directory of lazily allocated chunks.
pub(crate) struct Table {
    dir: Box<[AtomicPtr<Chunk>]>,
}

/// Allocates `n` zeroed values of `T` as a boxed slice, or `None`.
#[cfg(not(loom))]
///
/// `T` must be valid when all-zero (atomics and null pointers are).
fn zeroed_slice<T>(n: usize) -> Option<Box<[T]>> {
    let layout = Layout::array::<T>(n).ok()?;
    // SAFETY: the layout has a non-zero size (n > 0 and T is not zero-sized
    // for every caller); alloc_zeroed goes to calloc, which for large sizes
    // maps zero pages lazily, so an untouched part of the directory costs no
    // memory.
    let p = unsafe { alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh allocation of exactly `n` Ts with the global
    // allocator's layout for `[T; n]`, and all-zero is a valid T.
    Some(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, n)) })
}

#[cfg(not(loom))]
fn zeroed_chunk() -> Option<Box<Chunk>> {
    let layout = Layout::new::<Chunk>();
    // SAFETY: Chunk has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) }.cast::<Chunk>();
    if p.is_null() {
        return None;
    }
    // SAFETY: fresh allocation with Chunk's layout; Chunk is made only of
    // atomics, for which all-zero is a valid value.
    Some(unsafe { Box::from_raw(p) })
}

/// loom's atomics are not valid when all-zero: chunks are built value by
/// value there.
#[cfg(loom)]
fn zeroed_chunk() -> Option<Box<Chunk>> {
    super::os::try_box(Chunk {
        slots: std::array::from_fn(|_| Slot {
            state: AtomicU64::new(0),
            heard: AtomicU64::new(0),
        }),
        nodes: std::array::from_fn(|_| Node::default()),
    })
    .ok()
}

#[cfg(loom)]
fn zeroed_slice<T>(n: usize) -> Option<Box<[AtomicPtr<T>]>> {
    Some((0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect())
}

/// Where fd `i` of a chunk lives in the chunk's slot array.
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
            dir: zeroed_slice(DIR_LEN).ok_or(Error::NoMem)?,
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

    /// The slot of `fd`, if its chunk exists (None for negative fds).
    #[inline]
    pub(crate) fn slot(&self, fd: i32) -> Option<&Slot> {
        let c = self.chunk(fd)?;
        Some(&c.slots[swizzle(fd as usize & (CHUNK - 1))])
    }

    /// The node of `fd`, if its chunk exists.
    #[inline]
    pub(crate) fn node(&self, fd: i32) -> Option<&Node> {
        let c = self.chunk(fd)?;
        Some(&c.nodes[fd as usize & (CHUNK - 1)])
    }

    /// Makes sure the chunk of `fd` exists. Called with the monitor's mutex
    /// held, so only one thread ever allocates a given chunk.
    pub(crate) fn ensure(&self, fd: i32) -> Result<()> {
        let i = usize::try_from(fd).map_err(|_| Error::Invalid)? >> CHUNK_BITS;
        let cell = self.dir.get(i).ok_or(Error::Invalid)?;
        if cell.load(Ordering::Acquire).is_null() {
            let c = zeroed_chunk().ok_or(Error::NoMem)?;
            cell.store(Box::into_raw(c), Ordering::Release);
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
        for cell in self.dir.iter() {
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
                // 16-byte slots: at least 128 bytes apart.
                assert!(p.abs_diff(q) * 16 >= 128, "{i}");
            }
        }
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
        s.set_state(3);
        assert!(s.watched());
        assert_eq!(s.state(), 3);
        assert_eq!(Table::chunk_bytes(), CHUNK * (16 + 48));
    }
}
