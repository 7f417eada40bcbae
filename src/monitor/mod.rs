//! Application-level heartbeats: one background thread pings any number of
//! connections and declares a peer dead when it stops answering (the death
//! rule is in [`sched`]'s documentation).
//!
//! The application calls [`Core::alive`] whenever it hears from a peer (the
//! pong, or any data); that is one atomic load, one clock read and one
//! atomic store, with no lock. The monitor thread keeps one timer per fd in
//! a millisecond timing wheel, due at the earlier of the next ping and the
//! fd's death deadline, and sleeps until the earliest one: its cost grows
//! with the number of events (pings and deaths), not with the number of fds
//! times ticks.
//!
//! The parts: [`sched`] (what is due when: pure, on an injected clock),
//! [`wheel`] and [`table`] (its data), [`os`] (clock, send, mutex, thread),
//! and here the driver: the monitor thread's loop, which takes due events
//! from the scheduler and runs them without the lock, and the calls of the
//! API.
//!
//! Guarantees (each tested, see c-tests/monitor/test_monitor.c and the
//! model checks in `loom_tests.rs`):
//! - after [`Core::unwatch`] returns (called outside a callback), no callback
//!   for that fd is running or will run, so the fd may be closed at once,
//!   also when its running dead callback watched it again meanwhile;
//! - after the [`Monitor`] is dropped (outside a callback), no callback is
//!   running or will run; dropped from a callback (including a ping
//!   callback that then returns an error), no further callback starts;
//! - calls in progress on other threads when the monitor is dropped (say
//!   `unwatch` waiting for the very callback that drops it) finish safely:
//!   the memory is released by the last of them ([`Core`]'s reference
//!   count);
//! - callbacks may call `watch`, `alive`, `unwatch` and `last_heard_ms` on
//!   the same monitor (the lock is never held while a callback runs);
//! - each death is delivered once, after which the fd is no longer watched;
//! - the monitor never reads, closes or shuts down an fd; it only sends
//!   pings with `send(MSG_NOSIGNAL | MSG_DONTWAIT)` if asked to;
//! - creating a monitor allocates fallibly everywhere ([`Error::NoMem`]),
//!   and its thread starts with every signal blocked.

mod os;
mod sched;
mod table;
mod wheel;

#[cfg(all(test, loom))]
mod loom_tests;

use std::cell::{Cell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;

use os::atomic::{AtomicPtr, AtomicU64, AtomicUsize};
pub use sched::Death;
use sched::{Due, Sched, Sent, MS};
use table::Table;

use crate::error::{Errno, Error, Result};

/// Largest ping the monitor sends itself, in bytes.
pub(crate) const PING_MAX: usize = 4096;

/// Upper bounds (microseconds) of the ping-lateness histogram buckets of
/// [`Stats::ping_late`]; the last bucket counts everything later.
pub(crate) const LATE_BOUNDS_US: [u64; LATE_BUCKETS - 1] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000,
];
/// Number of buckets of the ping-lateness histogram.
pub(crate) const LATE_BUCKETS: usize = 20;

/// Name of the monitor thread (as shown by `top -H` and in
/// /proc/self/task/*/comm), NUL-terminated for prctl.
pub(crate) const THREAD_NAME: &str = "heartbeat-mon\0";

/// What the monitor sends as a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// Nothing: pure silence detection (the application's own traffic, or
    /// pings it sends itself, keep the peer alive).
    None,
    /// These bytes (1..=PING_MAX), sent by the monitor thread with
    /// `send(fd, bytes, MSG_NOSIGNAL | MSG_DONTWAIT)`. Kept as given (no
    /// copy, no reallocation).
    Bytes(Vec<u8>),
    /// [`Handler::ping`] is called and the application sends its own ping
    /// (for protocols that must frame their writes).
    Callback,
}

/// Monitor options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Ping period, milliseconds (> 0; required even without pings).
    pub interval_ms: u32,
    /// A peer not heard from for this long is dead, milliseconds
    /// (> interval_ms; see [`sched`] for the exact rule with pings).
    pub timeout_ms: u32,
    /// What to send every `interval_ms`.
    pub ping: Ping,
}

/// The application's callbacks. They run on the monitor thread, one at a
/// time, without any lock held.
pub trait Handler: Send + 'static {
    /// Sends a ping on `fd` (only with [`Ping::Callback`]). `Ok` if it was
    /// sent; `Err(EAGAIN)` (or EWOULDBLOCK, EINTR) if the send would block:
    /// not a death, counted in [`Stats::pings_blocked`]; any other
    /// `Err(errno)` if the connection is broken: the peer is then declared
    /// dead with [`Death::SendFailed`]`(errno)` (a value <= 0 counts as
    /// EIO).
    fn ping(&mut self, monitor: &Core, fd: RawFd) -> std::result::Result<(), Errno> {
        let _ = (monitor, fd);
        Ok(())
    }
    /// `fd`'s peer is dead. Called once per watch; `fd` is no longer
    /// watched when this runs (it may be watched again from here).
    fn dead(&mut self, monitor: &Core, fd: RawFd, why: Death);
}

/// Counters of a monitor, since its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Fds watched now.
    pub watched: u64,
    /// Pings that went out: sends that sent bytes (a whole ping, its rest,
    /// or part of it) and ping callbacks that returned `Ok`.
    pub pings: u64,
    /// Pings skipped because the send would block (EAGAIN, EWOULDBLOCK or
    /// EINTR, from `send()` or returned by the ping callback).
    pub pings_blocked: u64,
    /// Pings whose send (or callback) failed with another error: each is
    /// the peer's death, unless the fd was unwatched during the send.
    pub pings_failed: u64,
    /// Dead callbacks delivered.
    pub deaths: u64,
    /// Times the monitor thread woke up.
    pub wakeups: u64,
    /// Largest lateness of a ping behind its due time, microseconds.
    pub ping_late_max_us: u64,
    /// Histogram of ping lateness: bucket i counts pings less than
    /// `LATE_BOUNDS_US[i]` µs late (and at least the previous bound); the
    /// last bucket counts the rest.
    pub ping_late: [u64; LATE_BUCKETS],
}

impl Stats {
    fn record_late(&mut self, late_ns: u64) {
        let us = late_ns / 1000;
        self.ping_late_max_us = self.ping_late_max_us.max(us);
        let i = LATE_BOUNDS_US
            .iter()
            .position(|&b| us < b)
            .unwrap_or(LATE_BUCKETS - 1);
        self.ping_late[i] += 1;
    }
}

enum PingMode {
    None,
    Bytes(Vec<u8>),
    Callback,
}

struct Inner {
    sched: Sched,
    /// The fd whose ping or callback the monitor thread is running now,
    /// without the lock.
    busy: Option<RawFd>,
    /// Threads waiting in `unwatch` for `busy` to change.
    waiters: usize,
    /// Until when the monitor thread sleeps (ns); 0 while it is awake.
    sleep_until: u64,
    shutdown: bool,
    stats: Stats,
}

/// The shared part of a monitor: what callbacks receive, and what a
/// [`Monitor`] dereferences to.
///
/// Its memory is reference-counted: the owner ([`Monitor`]), the monitor
/// thread, and every call in progress that takes the lock or waits (`watch`,
/// `unwatch`, `stats` through the C API: see [`CoreRef`]) hold one
/// reference each; the last one out releases it. So a call that is in
/// progress when the owner frees the monitor (for instance `unwatch`
/// waiting for the dead callback that calls `free`) never touches freed
/// memory.
pub struct Core {
    refs: AtomicUsize,
    table: Table,
    inner: os::Mutex<Inner>,
    /// Wakes the monitor thread (earlier deadline, shutdown).
    wake: os::Cond,
    /// Signals the end of a ping or callback to `unwatch` waiters.
    done: os::Cond,
    ping: PingMode,
    /// The monitor thread: set once by [`Monitor::new`] before the monitor
    /// is handed out, taken once by [`Monitor::drop`].
    thread: UnsafeCell<Option<os::Thread>>,
    /// The process that created the monitor (see [`Monitor::drop`] on fork).
    pid: u32,
    /// Odd while a callback runs on the monitor thread, even between
    /// callbacks; changed with the lock held. Identifies a running callback
    /// for the wait graph (see [`waits`]).
    cb_seq: AtomicU64,
    /// Which monitor's running callback this monitor's running callback is
    /// waiting for (in `unwatch` or `free` of that monitor), and that
    /// callback's `cb_seq`; null when none. Changed under the wait graph's
    /// lock, by this monitor's thread only.
    waits_on: AtomicPtr<Core>,
    waits_seq: AtomicU64,
    /// Under loom the memory is never released: it is marked released, and
    /// every access checks the mark, which turns a use after free into a
    /// failed assertion that loom reports with its interleaving.
    #[cfg(loom)]
    released: std::sync::atomic::AtomicBool,
}

// SAFETY: all shared state is atomic or behind the mutex, except `thread`,
// which only the owner touches (set before the monitor is shared, taken in
// Drop), and the ping bytes, which are immutable.
unsafe impl Sync for Core {}
// SAFETY: as above; nothing in Core is tied to a thread.
unsafe impl Send for Core {}

#[cfg(not(loom))]
std::thread_local! {
    /// The Core whose monitor thread this is (address), or 0.
    static OWN_CORE: Cell<usize> = const { Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    static OWN_CORE: Cell<usize> = Cell::new(0);
}

/// One counted reference to a [`Core`]: taken by the monitor thread and by
/// the C API's calls that lock or wait, released on drop.
pub(crate) struct CoreRef {
    p: NonNull<Core>,
}

// SAFETY: a CoreRef is a counted shared reference to a Sync Core.
unsafe impl Send for CoreRef {}

impl CoreRef {
    /// Takes a new reference to the Core at `p`.
    ///
    /// # Safety
    /// `p` must point to a live Core (one whose reference count is not 0),
    /// which holds while the caller's own reference (the handle it was
    /// given, a callback's argument) is valid.
    pub(crate) unsafe fn acquire(p: NonNull<Core>) -> CoreRef {
        // SAFETY: live per the contract. Relaxed suffices, as for Arc::clone:
        // the caller already holds a reference, which orders everything.
        unsafe { p.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
        let r = CoreRef { p };
        r.check_live();
        r
    }

    fn check_live(&self) {
        #[cfg(loom)]
        assert!(
            !self.released.load(Ordering::SeqCst),
            "use of a monitor after its memory was released"
        );
    }
}

impl Deref for CoreRef {
    type Target = Core;
    fn deref(&self) -> &Core {
        // SAFETY: this reference keeps the Core alive.
        unsafe { self.p.as_ref() }
    }
}

impl Drop for CoreRef {
    fn drop(&mut self) {
        self.check_live();
        // Release/Acquire as in Arc: every use of the Core happens before
        // the last decrement, which happens before the release.
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // The acquire half, as a load rather than a fence (as std's Arc
        // does under ThreadSanitizer, which does not model fences): it reads
        // the end of the release sequence of every decrement.
        let _ = self.refs.load(Ordering::Acquire);
        #[cfg(not(loom))]
        // SAFETY: the last reference: nobody else can reach the Core, which
        // was allocated as a Box in Monitor::new.
        drop(unsafe { Box::from_raw(self.p.as_ptr()) });
        #[cfg(loom)]
        self.released.store(true, Ordering::SeqCst);
    }
}

/// The owner of a monitor: dropping it stops the thread (see
/// [`Monitor::drop`]).
pub struct Monitor {
    core: ManuallyDrop<CoreRef>,
}

impl Deref for Monitor {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Monitor {
    /// Validates `options` and starts the monitor thread.
    ///
    /// Every allocation is fallible: a failed one gives [`Error::NoMem`],
    /// with everything allocated so far released.
    ///
    /// Errors: [`Error::Interval`] (interval 0), [`Error::Timeout`] (timeout
    /// not longer than the interval), [`Error::Ping`] (ping bytes empty or
    /// longer than [`PING_MAX`]), [`Error::NoMem`], [`Error::Thread`].
    pub fn new<H: Handler>(options: Options, handler: H) -> Result<Monitor> {
        check_timing(options.interval_ms, options.timeout_ms)?;
        let (ping, len) = match options.ping {
            Ping::None => (PingMode::None, 0),
            Ping::Callback => (PingMode::Callback, 0),
            Ping::Bytes(b) if b.is_empty() || b.len() > PING_MAX => return Err(Error::Ping),
            Ping::Bytes(b) => {
                let n = b.len();
                (PingMode::Bytes(b), n)
            }
        };
        let pings = !matches!(ping, PingMode::None);
        let now = os::now_ns();
        let sched = Sched::new(options.interval_ms, options.timeout_ms, pings, len, now)?;
        let core = os::try_box(Core {
            refs: AtomicUsize::new(1),
            table: Table::new()?,
            inner: os::Mutex::new(Inner {
                sched,
                busy: None,
                waiters: 0,
                sleep_until: 0,
                shutdown: false,
                stats: Stats::default(),
            })?,
            wake: os::Cond::new()?,
            done: os::Cond::new()?,
            ping,
            thread: UnsafeCell::new(None),
            pid: os::pid(),
            cb_seq: AtomicU64::new(0),
            waits_on: AtomicPtr::new(ptr::null_mut()),
            waits_seq: AtomicU64::new(0),
            #[cfg(loom)]
            released: std::sync::atomic::AtomicBool::new(false),
        })?;
        let me = Monitor {
            core: ManuallyDrop::new(CoreRef {
                p: NonNull::from(Box::leak(core)),
            }),
        };
        // SAFETY: `me` holds a reference. If spawn fails, it drops the
        // closure, and with it this reference and the handler.
        let for_thread = unsafe { CoreRef::acquire(me.core.p) };
        let thread = os::spawn(move || run(for_thread, handler))?;
        // SAFETY: nobody else reads `thread` before `me` is returned.
        unsafe { *me.thread.get() = Some(thread) };
        Ok(me)
    }

    /// Gives up ownership: the pointer is the address of the [`Core`], the
    /// same that callbacks receive. Undo with [`Monitor::from_raw`].
    pub fn into_raw(self) -> *const Core {
        let me = ManuallyDrop::new(self);
        me.core.p.as_ptr()
    }

    /// Takes back ownership of a pointer from [`Monitor::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and not have been passed here before.
    pub unsafe fn from_raw(p: *const Core) -> Monitor {
        Monitor {
            core: ManuallyDrop::new(CoreRef {
                // SAFETY: into_raw never returns null.
                p: unsafe { NonNull::new_unchecked(p as *mut Core) },
            }),
        }
    }
}

/// The timing rule of a monitor: a ping period (`interval_ms > 0`, else
/// [`Error::Interval`]) and a silence limit longer than it (else
/// [`Error::Timeout`]). [`Monitor::new`] enforces it; the C layer calls it
/// first so that its documented order of checks holds.
pub fn check_timing(interval_ms: u32, timeout_ms: u32) -> Result<()> {
    if interval_ms == 0 {
        return Err(Error::Interval);
    }
    if timeout_ms <= interval_ms {
        return Err(Error::Timeout);
    }
    Ok(())
}

impl Drop for Monitor {
    /// Stops the monitor: no callback starts after this returns. If a
    /// callback is running on another thread, waits for it and for the
    /// thread's end. Called from one of this monitor's own callbacks, it
    /// cannot wait for itself: the thread then stops as soon as that
    /// callback returns. Called from a callback of another monitor whose
    /// running callback is waiting for the caller's (see [`waits`]), it
    /// does not wait either, as that would deadlock.
    ///
    /// In a child process made by fork() (the monitor's thread does not
    /// exist there, and its mutex may have been copied locked), it does
    /// nothing at all: no lock, no wait, no release (the child's copy of the
    /// memory stays allocated until the child exits or execs).
    fn drop(&mut self) {
        let c: &Core = &self.core;
        if os::pid() != c.pid {
            return;
        }
        let mut g = c.lock();
        g.shutdown = true;
        c.wake.notify_all();
        // SAFETY: the owner takes the thread once, here.
        let thread = unsafe { (*c.thread.get()).take() };
        let registered = if thread.is_some() && g.busy.is_some() {
            Some(waits::wait_for(c))
        } else {
            Some(Ok(waits::Waiting::none()))
        };
        drop(g);
        if let Some(t) = thread {
            match registered {
                Some(Ok(w)) if !c.on_own_thread() => {
                    t.join();
                    drop(w);
                }
                _ => t.detach(),
            }
        }
        // SAFETY: the owner's reference, released once.
        unsafe { ManuallyDrop::drop(&mut self.core) };
    }
}

/// The monitor thread.
fn run<H: Handler>(core: CoreRef, mut handler: H) {
    os::name_thread(THREAD_NAME);
    let c: &Core = &core;
    OWN_CORE.with(|x| x.set(c as *const Core as usize));
    let mut g = c.lock();
    while !g.shutdown {
        let now = os::now_ns();
        match g.sched.poll(&c.table, now) {
            Some(Due::Ping {
                fd,
                generation,
                offset,
                late_ns,
            }) => {
                g.stats.record_late(late_ns);
                c.begin(&mut g, fd);
                drop(g);
                let sent = match &c.ping {
                    PingMode::Bytes(b) => os::send_ping(fd, &b[offset.min(b.len())..]),
                    PingMode::Callback => {
                        match catch_unwind(AssertUnwindSafe(|| handler.ping(c, fd))) {
                            Ok(Ok(())) => Sent::Bytes(0),
                            Ok(Err(e)) => os::classify(if e > 0 { e } else { libc::EIO }),
                            Err(_) => Sent::WouldBlock,
                        }
                    }
                    PingMode::None => Sent::WouldBlock,
                };
                let end = os::now_ns();
                g = c.lock();
                c.end(&mut g);
                match sent {
                    Sent::Bytes(_) => g.stats.pings += 1,
                    Sent::WouldBlock => g.stats.pings_blocked += 1,
                    Sent::Failed(_) => g.stats.pings_failed += 1,
                }
                let death = g
                    .sched
                    .ping_done(&c.table, fd, generation, offset, sent, now, end);
                // A ping callback may have freed the monitor: then no other
                // callback starts, not even this fd's dead callback.
                if let (Some(why), false) = (death, g.shutdown) {
                    g = deliver(c, g, &mut handler, fd, why);
                }
            }
            Some(Due::Dead { fd, why }) => g = deliver(c, g, &mut handler, fd, why),
            None => {
                let wake = g.sched.next_wake(now);
                g.sleep_until = wake.unwrap_or(u64::MAX);
                match wake {
                    Some(t) => c.wake.wait_until(&mut g, t),
                    None => c.wake.wait(&mut g),
                }
                g.sleep_until = 0;
                g.stats.wakeups += 1;
            }
        }
    }
    drop(g);
    OWN_CORE.with(|x| x.set(0));
    // The handler (the application's user data) goes before the Core.
    drop(handler);
}

/// Runs the dead callback for `fd` without the lock; returns with it.
fn deliver<'a, H: Handler>(
    c: &'a Core,
    mut g: os::Guard<'a, Inner>,
    handler: &mut H,
    fd: RawFd,
    why: Death,
) -> os::Guard<'a, Inner> {
    c.begin(&mut g, fd);
    g.stats.deaths += 1;
    drop(g);
    let _ = catch_unwind(AssertUnwindSafe(|| handler.dead(c, fd, why)));
    let mut g = c.lock();
    c.end(&mut g);
    g
}

impl Core {
    fn on_own_thread(&self) -> bool {
        OWN_CORE.with(|c| c.get()) == self as *const Core as usize
    }

    fn lock(&self) -> os::Guard<'_, Inner> {
        #[cfg(loom)]
        assert!(
            !self.released.load(Ordering::SeqCst),
            "monitor used after release"
        );
        self.inner.lock()
    }

    /// Holds the lock: a ping or callback for `fd` starts on the monitor
    /// thread.
    fn begin(&self, g: &mut os::Guard<'_, Inner>, fd: RawFd) {
        g.busy = Some(fd);
        self.cb_seq.fetch_add(1, Ordering::AcqRel);
    }

    /// Holds the lock: the ping or callback on `busy` ended; wake `unwatch`.
    fn end(&self, g: &mut os::Guard<'_, Inner>) {
        g.busy = None;
        self.cb_seq.fetch_add(1, Ordering::AcqRel);
        if g.waiters > 0 {
            self.done.notify_all();
        }
    }

    /// Starts watching `fd`: last heard = now, first ping within one
    /// interval (spread over the interval across fds), death as the
    /// scheduler's rule says. [`Error::AlreadyWatched`] if it is watched,
    /// [`Error::Invalid`] if negative, [`Error::NoMem`] if the table cannot
    /// grow.
    pub fn watch(&self, fd: RawFd) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let mut g = self.lock();
        let now = os::now_ns();
        g.sched.watch(&self.table, fd, now)?;
        // The new timer may be earlier than the thread's sleep.
        if let Some(w) = g.sched.next_wake(now) {
            if w < g.sleep_until {
                self.wake.notify_all();
            }
        }
        Ok(())
    }

    /// The peer of `fd` was heard from now. Lock-free, no allocation, no
    /// system call: one atomic load, a vDSO clock read and one atomic store.
    /// [`Error::NotWatched`] if `fd` is not (or no longer) watched,
    /// [`Error::Invalid`] if negative.
    #[inline]
    pub fn alive(&self, fd: RawFd) -> Result<()> {
        match self.table.slot(fd) {
            Some(s) if s.watched() => {
                s.touch(os::now_ns());
                Ok(())
            }
            _ if fd < 0 => Err(Error::Invalid),
            _ => Err(Error::NotWatched),
        }
    }

    /// Milliseconds since the peer of `fd` was last heard from (or since it
    /// was watched). Lock-free.
    pub fn last_heard_ms(&self, fd: RawFd) -> Result<u64> {
        match self.table.slot(fd) {
            Some(s) if s.watched() => {
                let heard = s.heard();
                Ok(os::now_ns().saturating_sub(heard) / MS)
            }
            _ if fd < 0 => Err(Error::Invalid),
            _ => Err(Error::NotWatched),
        }
    }

    /// Stops watching `fd`. Unless called from one of this monitor's
    /// callbacks, waits for a ping or callback running for `fd` on the
    /// monitor thread, and decides its result after that wait: when this
    /// returns, `fd` is not watched and nothing touches it any more, even if
    /// the running dead callback watched it again meanwhile.
    ///
    /// `Ok` if this call stopped a watch of `fd` (the one found at the call,
    /// or one that `fd`'s running callback started during the wait);
    /// [`Error::NotWatched`] if there was none; [`Error::Invalid`] if `fd`
    /// is negative; [`Error::Deadlock`] (without waiting: the watch, if
    /// any, is stopped, but the running callback may still use the fd) if
    /// called from a callback of another monitor whose running callback is
    /// itself waiting for the caller's (see [`waits`]).
    pub fn unwatch(&self, fd: RawFd) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let mut g = self.lock();
        let mut r = Err(Error::NotWatched);
        loop {
            if g.sched.unwatch(&self.table, fd).is_ok() {
                r = Ok(());
            }
            if g.busy != Some(fd) || self.on_own_thread() {
                return r;
            }
            // A ping or callback for fd is running: wait for it (then look
            // again: it may have watched fd again), unless waiting would
            // deadlock.
            let w = waits::wait_for(self)?;
            g.waiters += 1;
            self.done.wait(&mut g);
            g.waiters -= 1;
            drop(w);
            #[cfg(loom)]
            assert!(
                !self.released.load(Ordering::SeqCst),
                "monitor used after release"
            );
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let g = self.lock();
        let mut s = g.stats;
        s.watched = g.sched.watched() as u64;
        s
    }
}

/// The wait graph between monitors, to refuse the one wait that would
/// deadlock for sure: monitor A's running callback waiting (in
/// `B.unwatch()` or `free(B)`) for B's running callback, while that
/// callback is itself waiting for A's. (Like two locks taken in opposite
/// orders; the rule for applications: never wait, from a callback of A,
/// for a callback of B whose callbacks wait for A.) Only such two-monitor
/// cycles are detected; longer ones (A waits for B, B for C, C for A) are
/// not, and deadlock.
///
/// Each monitor records, under one process-wide lock taken only when a
/// callback has to wait for another monitor's callback, which monitor's
/// callback its own running callback waits for, with that callback's
/// `cb_seq`. A callback of A about to wait for B's running callback first
/// checks whether B's record names A and A's current `cb_seq`: then B's
/// callback waits for this very callback of A, and the wait is refused.
/// Both records are checked and written under the same lock, so of two
/// callbacks that start waiting for each other at the same time, the second
/// sees the first's record.
mod waits {
    use super::*;

    #[cfg(not(loom))]
    static GRAPH: os::StaticLock = os::StaticLock::new();
    #[cfg(loom)]
    loom::lazy_static! {
        static ref GRAPH: loom::sync::Mutex<()> = loom::sync::Mutex::new(());
    }

    #[cfg(not(loom))]
    fn graph() -> impl Drop {
        GRAPH.lock()
    }

    #[cfg(loom)]
    fn graph() -> impl Drop {
        GRAPH.lock().unwrap()
    }

    /// A record "this monitor's callback waits for another's"; removed on
    /// drop.
    pub(crate) struct Waiting {
        me: *const Core,
    }

    impl Waiting {
        pub(crate) fn none() -> Waiting {
            Waiting { me: ptr::null() }
        }
    }

    /// Called with `target`'s lock held, while a callback runs on its
    /// thread (so `target.cb_seq` is that callback's and cannot change),
    /// before waiting for that callback: [`Error::Deadlock`] if the waiter
    /// is a callback of another monitor for which that callback is waiting;
    /// otherwise records the wait.
    pub(crate) fn wait_for(target: &Core) -> Result<Waiting> {
        let me = OWN_CORE.with(|c| c.get()) as *const Core;
        if me.is_null() || ptr::eq(me, target) {
            return Ok(Waiting::none());
        }
        // SAFETY: `me` is the Core of the monitor thread we run on, which
        // holds a reference to it while it runs.
        let mine = unsafe { &*me };
        let _g = graph();
        if ptr::eq(target.waits_on.load(Ordering::Acquire), me)
            && target.waits_seq.load(Ordering::Acquire) == mine.cb_seq.load(Ordering::Acquire)
        {
            return Err(Error::Deadlock);
        }
        mine.waits_seq
            .store(target.cb_seq.load(Ordering::Acquire), Ordering::Release);
        mine.waits_on
            .store(target as *const Core as *mut Core, Ordering::Release);
        Ok(Waiting { me })
    }

    impl Drop for Waiting {
        fn drop(&mut self) {
            if self.me.is_null() {
                return;
            }
            let _g = graph();
            // SAFETY: as in wait_for: our own monitor, alive while we run.
            unsafe { &*self.me }
                .waits_on
                .store(ptr::null_mut(), Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct H(mpsc::Sender<(RawFd, Death)>);
    impl Handler for H {
        fn dead(&mut self, m: &Core, fd: RawFd, why: Death) {
            assert_eq!(m.alive(fd), Err(Error::NotWatched));
            self.0.send((fd, why)).unwrap();
        }
    }

    fn opts(ping: Ping) -> Options {
        Options {
            interval_ms: 20,
            timeout_ms: 60,
            ping,
        }
    }

    #[test]
    fn bad_options_are_refused() {
        let (tx, _rx) = mpsc::channel();
        let mk = |o| Monitor::new(o, H(tx.clone())).err();
        let mut o = opts(Ping::None);
        o.interval_ms = 0;
        assert_eq!(mk(o), Some(Error::Interval));
        let mut o = opts(Ping::None);
        o.timeout_ms = 20;
        assert_eq!(mk(o), Some(Error::Timeout));
        assert_eq!(mk(opts(Ping::Bytes(vec![]))), Some(Error::Ping));
        assert_eq!(
            mk(opts(Ping::Bytes(vec![0; PING_MAX + 1]))),
            Some(Error::Ping)
        );
    }

    #[test]
    fn silence_kills_once_and_alive_keeps_alive() {
        let (tx, rx) = mpsc::channel();
        let m = Monitor::new(opts(Ping::Callback), H(tx)).unwrap();
        // fds are never touched with Ping::Callback and the default ping().
        m.watch(100).unwrap();
        m.watch(101).unwrap();
        assert_eq!(m.watch(100), Err(Error::AlreadyWatched));
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_millis(200) {
            m.alive(101).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (fd, why) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!((fd, why), (100, Death::Silence));
        assert!(rx.try_recv().is_err());
        assert!(m.last_heard_ms(101).unwrap() < 60);
        assert_eq!(m.last_heard_ms(100), Err(Error::NotWatched));
        m.unwatch(101).unwrap();
        assert_eq!(m.unwatch(101), Err(Error::NotWatched));
        assert_eq!(m.alive(-1), Err(Error::Invalid));
        let s = m.stats();
        assert_eq!((s.watched, s.deaths), (0, 1));
        assert!(s.pings > 0);
        drop(m);
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
    }

    #[test]
    fn lateness_buckets() {
        let mut s = Stats::default();
        s.record_late(0);
        s.record_late(1_500);
        s.record_late(2_000_000_000);
        assert_eq!(s.ping_late[0], 1);
        assert_eq!(s.ping_late[1], 1);
        assert_eq!(s.ping_late[LATE_BUCKETS - 1], 1);
        assert_eq!(s.ping_late_max_us, 2_000_000);
    }

    /// Dead callback that re-watches its fd once after `pause` (the
    /// documented "start over" pattern), telling the test when it runs.
    struct Rewatch {
        started: mpsc::Sender<()>,
        pause: std::time::Duration,
        done: bool,
    }
    impl Handler for Rewatch {
        fn dead(&mut self, m: &Core, fd: RawFd, _: Death) {
            self.started.send(()).unwrap();
            std::thread::sleep(self.pause);
            if !self.done {
                self.done = true;
                m.watch(fd).unwrap();
            }
        }
    }

    #[test]
    fn unwatch_decides_after_the_running_dead_callback_rewatched() {
        let (tx, rx) = mpsc::channel();
        let m = Monitor::new(
            opts(Ping::None),
            Rewatch {
                started: tx,
                pause: std::time::Duration::from_millis(50),
                done: false,
            },
        )
        .unwrap();
        m.watch(7).unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        // The dead callback is running (and will re-watch 7): unwatch waits
        // for it, then stops the new watch.
        assert_eq!(m.unwatch(7), Ok(()));
        assert_eq!(m.alive(7), Err(Error::NotWatched));
        assert_eq!(m.stats().watched, 0);
    }

    struct Failing;
    impl Handler for Failing {
        fn ping(&mut self, _: &Core, fd: RawFd) -> std::result::Result<(), Errno> {
            match fd {
                1 => Err(libc::EAGAIN),
                2 => Err(libc::EINTR),
                _ => Err(libc::EPIPE),
            }
        }
        fn dead(&mut self, _: &Core, _: RawFd, _: Death) {}
    }

    #[test]
    fn failed_pings_are_not_counted_as_sent() {
        let m = Monitor::new(opts(Ping::Callback), Failing).unwrap();
        m.watch(1).unwrap();
        m.watch(2).unwrap();
        m.watch(3).unwrap();
        let t0 = std::time::Instant::now();
        while m.stats().deaths == 0 && t0.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // fd 3's first ping failed (a death); 1 and 2 only ever block.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let s = m.stats();
        assert_eq!((s.pings, s.pings_failed), (0, 1), "{s:?}");
        assert!(s.pings_blocked >= 2 && s.deaths >= 1, "{s:?}");
    }
}
