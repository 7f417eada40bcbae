//! Application-level heartbeats: a monitor pings any number of connections
//! and declares a peer dead when it stops answering (the death rule is in
//! `sched`'s documentation).
//!
//! The application calls [`Core::alive`] whenever it hears from a peer (the
//! pong, or any data); that is one atomic load, one clock read and one
//! atomic store, with no lock. The monitor keeps one timer per fd in a
//! millisecond timing wheel, due at the earlier of the next ping and the
//! fd's death deadline, and knows the earliest one in O(1): its cost grows
//! with the number of events (pings and deaths), not with the number of fds
//! times ticks, and `watch()` costs the same at any timeout.
//!
//! Two modes, one mechanism ([`Mode`]):
//! - [`Mode::Thread`]: a thread of the monitor's own ("heartbeat-mon")
//!   sleeps until the next event and handles it;
//! - [`Mode::Loop`]: no thread; the application's event loop waits for the
//!   monitor's fd ([`Core::fd`], readable when something is due) or for
//!   [`Core::timeout_ms`], and calls [`Core::process`], which handles what
//!   is due on the caller's thread.
//!
//! Both are drivers of the same code (`Core::drive`): it takes every event
//! that is due, in batches, under one lock acquisition per batch (not one
//! per event), runs the pings and callbacks of the batch without the lock,
//! and records what they did at the next acquisition.
//!
//! The parts: `sched` (what is due when: pure, on an injected clock),
//! `wheel` and `table` (its data), `os` (clock, send, mutex, thread,
//! timer fd), and here the drivers and the calls of the API.
//!
//! Guarantees, in both modes (each tested, see c-tests/monitor/ and the
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
//!   and its thread (if any) starts with every signal blocked.

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
use std::sync::atomic::{AtomicI32, Ordering};

use os::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
use os::NEVER;
pub use sched::Death;
use sched::{Due, Sched, Sent, MS};
use table::{watched_generation, Table};

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

/// Events taken under one lock acquisition (the batch's storage is
/// allocated once, at creation).
pub(crate) const BATCH: usize = 256;

/// What the monitor sends as a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// Nothing: pure silence detection (the application's own traffic, or
    /// pings it sends itself, keep the peer alive).
    None,
    /// These bytes (1..=PING_MAX), sent by the driver with
    /// `send(fd, bytes, MSG_NOSIGNAL | MSG_DONTWAIT)`. Kept as given (no
    /// copy, no reallocation).
    Bytes(Vec<u8>),
    /// [`Handler::ping`] is called and the application sends its own ping
    /// (for protocols that must frame their writes).
    Callback,
}

/// Who runs the pings and callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A thread of the monitor's own, started at creation.
    Thread,
    /// No thread: the application calls [`Core::process`] when the fd of
    /// [`Core::fd`] is readable (or [`Core::timeout_ms`] has passed).
    Loop,
}

/// Monitor options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Ping period, milliseconds (> 0; required even without pings).
    pub interval_ms: u32,
    /// A peer not heard from for this long is dead, milliseconds
    /// (> interval_ms; see `sched` for the exact rule with pings).
    pub timeout_ms: u32,
    /// What to send every `interval_ms`.
    pub ping: Ping,
    /// Thread or event loop.
    pub mode: Mode,
}

/// The application's callbacks. They run on the driver (the monitor thread,
/// or the thread inside [`Core::process`]), one at a time, without any lock
/// held.
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
    /// Times the monitor thread woke up; in the thread-free mode, the calls
    /// of [`Core::process`] made when its timer had expired.
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

/// What an event of a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// A ping of watch `generation`, from byte `offset` of the ping.
    Ping { generation: u64, offset: usize },
    /// The fd's death.
    Dead(Death),
}

/// One event of a batch, and what running it did.
#[derive(Debug, Clone, Copy)]
struct Event {
    fd: RawFd,
    what: What,
    /// The send or callback ran (false: skipped, the fd was unwatched, or
    /// the monitor is being freed).
    ran: bool,
    /// For a ping: what the send did, when it began and when it returned.
    sent: Sent,
    start: u64,
    end: u64,
}

impl Event {
    fn new(fd: RawFd, what: What) -> Event {
        Event {
            fd,
            what,
            ran: false,
            sent: Sent::WouldBlock,
            start: 0,
            end: 0,
        }
    }
}

struct Inner {
    sched: Sched,
    /// The batch's storage (capacity [`BATCH`]), lent to the driver while
    /// it runs a batch.
    batch: Vec<Event>,
    /// A driver is running: the thread (for good), or a `process()` call.
    driving: bool,
    /// When the driver looks next (ns): what the thread sleeps until, or
    /// what the timer fd is armed at; [`NEVER`] when nothing is due; 0
    /// while the driver runs (it will look again before it sleeps).
    armed: u64,
    shutdown: bool,
    stats: Stats,
}

/// The shared part of a monitor: what callbacks receive, and what a
/// [`Monitor`] dereferences to.
///
/// Its memory is reference-counted: the owner ([`Monitor`]), the monitor
/// thread, and every call in progress that takes the lock or waits (`watch`,
/// `unwatch`, `stats`, `process` through the C API: see `CoreRef`) hold
/// one reference each; the last one out releases it. So a call that is in
/// progress when the owner frees the monitor (for instance `unwatch`
/// waiting for the dead callback that calls `free`) never touches freed
/// memory.
pub struct Core {
    refs: AtomicUsize,
    table: Table,
    inner: os::Mutex<Inner>,
    /// Wakes the monitor thread (earlier deadline, shutdown).
    wake: os::Cond,
    /// Signals the end of an fd's event to `unwatch` waiters, and the end
    /// of a `process()` call to a `free()` waiting for it.
    done: os::Cond,
    ping: PingMode,
    /// The callbacks. Only the driver uses them: `Inner::driving` (set
    /// under the lock) says who that is.
    handler: UnsafeCell<Option<Box<dyn Handler>>>,
    /// The thread-free mode's timer fd (None: the monitor has a thread).
    timer: Option<os::Timer>,
    /// The monitor thread: set once by [`Monitor::new`] before the monitor
    /// is handed out, taken once by [`Monitor::drop`].
    thread: UnsafeCell<Option<os::Thread>>,
    /// The process that created the monitor (see [`Monitor::drop`] on fork).
    pid: u32,
    /// Set by `free()`: the driver starts no further callback.
    stopping: AtomicBool,
    /// Which monitor this monitor's running callback is waiting for (in
    /// `unwatch` or `free` of that monitor), and for which of its fds (-1:
    /// for its driver, in `free`); null when none. Changed under the wait
    /// graph's lock, by this monitor's driver only.
    waits_on: AtomicPtr<Core>,
    waits_fd: AtomicI32,
    /// Under loom the memory is never released: it is marked released, and
    /// every access checks the mark, which turns a use after free into a
    /// failed assertion that loom reports with its interleaving.
    #[cfg(loom)]
    released: std::sync::atomic::AtomicBool,
}

// SAFETY: all shared state is atomic or behind the mutex, except `thread`,
// which only the owner touches (set before the monitor is shared, taken in
// Drop), `handler`, which only the driver touches (see `Inner::driving`),
// and the ping bytes and the timer, which are immutable.
unsafe impl Sync for Core {}
// SAFETY: as above; nothing in Core is tied to a thread (the handler is
// Send).
unsafe impl Send for Core {}

/// A driver's record on its thread: "this thread runs `core`'s callbacks",
/// linked to the record of an outer driver (a callback of one monitor that
/// calls another's `process()`).
struct Frame {
    core: *const Core,
    prev: usize,
}

#[cfg(not(loom))]
std::thread_local! {
    /// The innermost driver record of this thread (address), or 0.
    static DRIVING: Cell<usize> = const { Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    static DRIVING: Cell<usize> = Cell::new(0);
}

/// Runs `f` as `core`'s driver on this thread: from inside it (the
/// callbacks), this monitor's `unwatch()` and `free()` know not to wait for
/// the callback that is calling them.
fn as_driver<R>(core: &Core, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            DRIVING.with(|d| d.set(self.0));
        }
    }
    let frame = Frame {
        core,
        prev: DRIVING.with(|d| d.get()),
    };
    // The frame stays where it is until `_restore` has unlinked it.
    DRIVING.with(|d| d.set(&frame as *const Frame as usize));
    let _restore = Restore(frame.prev);
    f()
}

/// The monitor whose callback is running on this thread (the innermost
/// driver), or null.
fn driving_core() -> *const Core {
    let f = DRIVING.with(|d| d.get()) as *const Frame;
    // SAFETY: a non-zero value is the address of a live Frame (as_driver
    // unlinks it before it goes).
    unsafe { f.as_ref() }.map_or(ptr::null(), |f| f.core)
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

/// The owner of a monitor: dropping it stops the monitor (see
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
    /// Validates `options` and starts the monitor: its thread
    /// ([`Mode::Thread`]) or its timer fd ([`Mode::Loop`]).
    ///
    /// Every allocation is fallible: a failed one gives [`Error::NoMem`],
    /// with everything allocated so far released.
    ///
    /// Errors: [`Error::Interval`] (interval 0), [`Error::Timeout`] (timeout
    /// not longer than the interval), [`Error::Ping`] (ping bytes empty or
    /// longer than `PING_MAX`), `Error::NoMem`, `Error::Thread`,
    /// [`Error::Fd`].
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
        let mut batch = Vec::new();
        batch.try_reserve_exact(BATCH).map_err(|_| Error::NoMem)?;
        let handler: Box<dyn Handler> = os::try_box(handler)?;
        let threaded = options.mode == Mode::Thread;
        let timer = if threaded {
            None
        } else {
            Some(os::Timer::new()?)
        };
        let core = os::try_box(Core {
            refs: AtomicUsize::new(1),
            table: Table::new()?,
            inner: os::Mutex::new(Inner {
                sched,
                batch,
                driving: threaded,
                armed: NEVER,
                shutdown: false,
                stats: Stats::default(),
            })?,
            wake: os::Cond::new()?,
            done: os::Cond::new()?,
            ping,
            handler: UnsafeCell::new(Some(handler)),
            timer,
            thread: UnsafeCell::new(None),
            pid: os::pid(),
            stopping: AtomicBool::new(false),
            waits_on: AtomicPtr::new(ptr::null_mut()),
            waits_fd: AtomicI32::new(-1),
            #[cfg(loom)]
            released: std::sync::atomic::AtomicBool::new(false),
        })?;
        let me = Monitor {
            core: ManuallyDrop::new(CoreRef {
                p: NonNull::from(Box::leak(core)),
            }),
        };
        if threaded {
            // SAFETY: `me` holds a reference. If spawn fails, it drops the
            // closure, and with it this reference; `me` then releases the
            // rest (its drop finds no thread and drops the handler).
            let for_thread = unsafe { CoreRef::acquire(me.core.p) };
            let thread = match os::spawn(move || run(for_thread)) {
                Ok(t) => t,
                Err(e) => {
                    me.lock().driving = false; // nobody drives: drop takes the handler
                    return Err(e);
                }
            };
            // SAFETY: nobody else reads `thread` before `me` is returned.
            unsafe { *me.thread.get() = Some(thread) };
        }
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
    /// callback is running on another thread (the monitor thread, or a
    /// thread inside `process()`), waits for it: for the thread's end, or
    /// for the `process()` call to return. Called from one of this
    /// monitor's own callbacks, it cannot wait for itself: the driver then
    /// stops as soon as that callback returns. Called from a callback of
    /// another monitor whose running callback is waiting for the caller's
    /// (see `waits`), it does not wait either, as that would deadlock.
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
        c.set_stopping();
        let own = c.drives();
        // SAFETY: the owner takes the thread once, here.
        let thread = unsafe { (*c.thread.get()).take() };
        let mut handler = None;
        if let Some(t) = thread {
            c.wake.notify_all();
            let waiting = if own {
                None
            } else {
                waits::wait_for(c, -1).ok()
            };
            drop(g);
            match waiting {
                Some(w) => {
                    t.join();
                    drop(w);
                }
                None => t.detach(),
            }
        } else {
            if g.driving && !own {
                if let Ok(w) = waits::wait_for(c, -1) {
                    while g.driving {
                        c.done.wait(&mut g);
                    }
                    drop(w);
                }
            }
            if !g.driving {
                // Nobody drives (any more): the callbacks are ours to drop.
                // SAFETY: `driving` is false under the lock, and shutdown
                // keeps it so: no driver can start.
                handler = unsafe { (*c.handler.get()).take() };
            }
            drop(g);
        }
        // The handler (the application's user data) goes before the Core.
        drop(handler);
        // SAFETY: the owner's reference, released once.
        unsafe { ManuallyDrop::drop(&mut self.core) };
    }
}

/// The monitor thread: one more driver of [`Core::drive`], which sleeps
/// until the next event between batches.
fn run(core: CoreRef) {
    os::name_thread(THREAD_NAME);
    let c: &Core = &core;
    as_driver(c, || {
        let mut g = c.lock();
        // SAFETY: the thread is the driver for good (`driving` was set at
        // creation and only the thread's end clears it).
        let mut handler = unsafe { (*c.handler.get()).take() };
        while !g.shutdown {
            let Some(h) = handler.as_deref_mut() else {
                break;
            };
            let now = os::now_ns();
            g = c.drive(g, h, now).0;
            if g.shutdown {
                break;
            }
            let now = os::now_ns();
            let wake = g.sched.next_wake(&c.table, now);
            if wake.is_some_and(|t| t <= now) {
                continue; // came due while the batch ran
            }
            g.armed = wake.unwrap_or(NEVER);
            match wake {
                Some(t) => c.wake.wait_until(&mut g, t),
                None => c.wake.wait(&mut g),
            }
            g.armed = 0;
            g.stats.wakeups += 1;
        }
        g.driving = false;
        drop(g);
        // The handler (the application's user data) goes before the Core.
        drop(handler);
    });
}

impl Core {
    /// Whether this thread is running one of this monitor's callbacks
    /// (possibly with another monitor's `process()` nested inside it).
    fn drives(&self) -> bool {
        let mut f = DRIVING.with(|d| d.get()) as *const Frame;
        // SAFETY: the chain of live Frames (see as_driver).
        while let Some(frame) = unsafe { f.as_ref() } {
            if ptr::eq(frame.core, self) {
                return true;
            }
            f = frame.prev as *const Frame;
        }
        false
    }

    fn lock(&self) -> os::Guard<'_, Inner> {
        #[cfg(loom)]
        assert!(
            !self.released.load(Ordering::SeqCst),
            "monitor used after release"
        );
        self.inner.lock()
    }

    // The stop flag is read by the driver without the lock, before each
    // event; like the slot accessors, these two are never inlined, so that
    // the valgrind race check's suppressions (c-tests/monitor/monitor.supp)
    // can name them.

    /// Whether `free()` was called: the driver starts no further callback.
    #[inline(never)]
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// `free()` was called (the caller holds the lock).
    #[inline(never)]
    fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// The driver's work: takes every event due at `now` (in batches of up
    /// to [`BATCH`], one lock acquisition each), runs each batch without
    /// the lock, and records what it did at the next acquisition (which
    /// also takes the next batch: the deaths of pings that failed, then
    /// what is still due of what was due at `now`). Returns with the lock,
    /// and the number of pings and callbacks run.
    fn drive<'a>(
        &'a self,
        mut g: os::Guard<'a, Inner>,
        h: &mut dyn Handler,
        now: u64,
    ) -> (os::Guard<'a, Inner>, usize) {
        let mut batch = std::mem::take(&mut g.batch);
        let mut handled = 0;
        let mut sweep = true;
        let mut now = now;
        loop {
            // What the last batch did; deaths of failed sends become the
            // start of the next one.
            let mut keep = 0;
            for i in 0..batch.len() {
                let e = batch[i];
                if !e.ran {
                    continue;
                }
                match e.what {
                    What::Ping { generation, offset } => {
                        match e.sent {
                            Sent::Bytes(_) => g.stats.pings += 1,
                            Sent::WouldBlock => g.stats.pings_blocked += 1,
                            Sent::Failed(_) => g.stats.pings_failed += 1,
                        }
                        let death = g.sched.ping_done(
                            &self.table,
                            e.fd,
                            generation,
                            offset,
                            e.sent,
                            e.start,
                            e.end,
                        );
                        // A ping callback may have freed the monitor: then
                        // no other callback starts, not even this death.
                        if let (Some(why), false) = (death, g.shutdown) {
                            if let Some(s) = self.table.slot(e.fd) {
                                s.doom();
                            }
                            batch[keep] = Event::new(e.fd, What::Dead(why));
                            keep += 1;
                        }
                    }
                    What::Dead(_) => g.stats.deaths += 1,
                }
            }
            batch.truncate(keep);
            if g.shutdown {
                break; // nothing was kept
            }
            if sweep {
                g.sched.prepare(&self.table, now, BATCH);
            } else {
                now = os::now_ns();
                g.sched.prepare_no_sweep(&self.table, BATCH);
            }
            while batch.len() < BATCH {
                let Some(d) = g.sched.poll(&self.table, now, false) else {
                    break;
                };
                let e = match d {
                    Due::Ping {
                        fd,
                        generation,
                        offset,
                        late_ns,
                    } => {
                        g.stats.record_late(late_ns);
                        if let Some(s) = self.table.slot_locked(fd) {
                            s.set_busy();
                        }
                        Event::new(fd, What::Ping { generation, offset })
                    }
                    Due::Dead { fd, why } => {
                        if let Some(s) = self.table.slot_locked(fd) {
                            s.doom();
                        }
                        Event::new(fd, What::Dead(why))
                    }
                };
                batch.push(e); // within the capacity: no allocation
            }
            sweep = false;
            if batch.is_empty() {
                break;
            }
            drop(g);
            handled += self.run_batch(&mut batch, h);
            g = self.lock();
        }
        g.batch = batch;
        (g, handled)
    }

    /// Runs the pings and callbacks of a batch, without the lock. Each fd's
    /// event ends by clearing its busy mark (waking an `unwatch()` that
    /// waits for it); an event whose fd was unwatched (or whose death was
    /// cancelled by `unwatch()`) since the batch was taken is skipped, and
    /// so is everything once the monitor is being freed.
    fn run_batch(&self, batch: &mut [Event], h: &mut dyn Handler) -> usize {
        let mut n = 0;
        // One clock read per event: this one's end is the next one's start.
        // (Sharing one read among several pings would save about 40 ns per
        // ping, but a ping's end must not be earlier than the truth and a
        // slow callback cannot be seen without reading the clock, so a
        // shared read would make deaths later by the sum of the callbacks
        // of the group.)
        let mut t = os::now_ns();
        for e in batch.iter_mut() {
            let Some(slot) = self.table.slot(e.fd) else {
                continue; // cannot happen: taken fds have a chunk
            };
            if !self.stopping() {
                match e.what {
                    What::Ping { generation, offset } => {
                        if watched_generation(slot.state()) == Some(generation) {
                            e.sent = match &self.ping {
                                PingMode::Bytes(b) => {
                                    os::send_ping(e.fd, &b[offset.min(b.len())..])
                                }
                                PingMode::Callback => {
                                    match catch_unwind(AssertUnwindSafe(|| h.ping(self, e.fd))) {
                                        Ok(Ok(())) => Sent::Bytes(0),
                                        Ok(Err(x)) => {
                                            os::classify(if x > 0 { x } else { libc::EIO })
                                        }
                                        Err(_) => Sent::WouldBlock,
                                    }
                                }
                                PingMode::None => Sent::WouldBlock,
                            };
                            e.start = t;
                            t = os::now_ns();
                            e.end = t;
                            e.ran = true;
                            n += 1;
                        }
                    }
                    What::Dead(why) => {
                        if slot.start_death() {
                            let _ = catch_unwind(AssertUnwindSafe(|| h.dead(self, e.fd, why)));
                            t = os::now_ns();
                            e.ran = true;
                            n += 1;
                        }
                    }
                }
            }
            if slot.end_busy() {
                let g = self.lock();
                self.done.notify_all();
                drop(g);
            }
        }
        n
    }

    /// The driver will look at `at` (ns) or earlier: wake the thread, or
    /// arm the timer fd.
    fn wake_at(&self, g: &mut os::Guard<'_, Inner>, at: u64) {
        match &self.timer {
            Some(t) => t.arm(at),
            None => self.wake.notify_all(),
        }
        g.armed = at;
    }

    /// Starts watching `fd`: last heard = now, first ping within one
    /// interval (spread over the interval across fds), death as the
    /// scheduler's rule says. [`Error::AlreadyWatched`] if it is watched
    /// (or declared dead, its dead callback not started yet),
    /// [`Error::Invalid`] if negative, [`Error::NoMem`] if the table cannot
    /// grow. Wakes the driver if the new watch's first event is earlier
    /// than its next look (thread-free mode: the timer fd becomes readable
    /// in time).
    pub fn watch(&self, fd: RawFd) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let mut g = self.lock();
        let now = os::now_ns();
        let due = g.sched.watch(&self.table, fd, now)?;
        if due < g.armed {
            self.wake_at(&mut g, due);
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
    /// callbacks, waits for a ping or callback of `fd` that the driver is
    /// running (or has taken and not yet run), and decides its result after
    /// that wait: when this returns, `fd` is not watched and nothing touches
    /// it any more, even if the running dead callback watched it again
    /// meanwhile.
    ///
    /// `Ok` if this call stopped a watch of `fd` (the one found at the call,
    /// one that `fd`'s running callback started during the wait, or one
    /// declared dead whose dead callback had not started: it then never
    /// runs); [`Error::NotWatched`] if there was none; [`Error::Invalid`] if
    /// `fd` is negative; [`Error::Deadlock`] (without waiting: the watch, if
    /// any, is stopped, but the running callback may still use the fd) if
    /// called from a callback of another monitor whose running callback is
    /// itself waiting for the caller's (see `waits`).
    pub fn unwatch(&self, fd: RawFd) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let mut g = self.lock();
        let mut r = Err(Error::NotWatched);
        loop {
            if g.sched.unwatch(&self.table, fd).is_ok() {
                r = Ok(());
                self.after_unwatch(&mut g);
            }
            if self.drives() {
                return r; // the running callback is the caller
            }
            match self.table.slot(fd) {
                Some(s) if s.mark_waited() => {}
                _ => return r,
            }
            // The driver has an event of fd in hand: wait for it (then look
            // again: its dead callback may have watched fd again), unless
            // waiting would deadlock.
            let w = waits::wait_for(self, fd)?;
            self.done.wait(&mut g);
            drop(w);
            #[cfg(loom)]
            assert!(
                !self.released.load(Ordering::SeqCst),
                "monitor used after release"
            );
        }
    }

    /// Thread-free mode: a watch went, so the timer may now be armed too
    /// early (the fd would become readable with nothing due): arm it at the
    /// next event. Costs a system call only when the fd that went was the
    /// first due.
    fn after_unwatch(&self, g: &mut os::Guard<'_, Inner>) {
        let Some(timer) = &self.timer else {
            return;
        };
        let armed = g.armed;
        if armed == 0 || armed == NEVER {
            return; // the driver runs (and will arm), or nothing is armed
        }
        let now = os::now_ns();
        let next = g.sched.next_wake(&self.table, now).unwrap_or(NEVER);
        if next > armed && !(armed <= now && next <= now) {
            timer.arm(next);
            g.armed = next;
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let g = self.lock();
        let mut s = g.stats;
        s.watched = g.sched.watched() as u64;
        s
    }

    /// Thread-free mode: runs every ping and death that is due, on the
    /// calling thread (the callbacks run inside this call), then arms the
    /// timer fd at the next event, so that it is readable afterwards exactly
    /// when something is due again. Returns the number of pings and
    /// callbacks run; 0 if nothing was due, and 0, doing nothing, when
    /// another `process()` is running (on another thread, or from one of
    /// this monitor's callbacks) or the monitor is being freed.
    ///
    /// [`Error::Mode`] if the monitor has a thread.
    ///
    /// The caller must keep the Core alive for the call (the C API holds a
    /// counted reference): a callback may free the monitor, after which
    /// this returns and the Core is released.
    pub fn process(&self) -> Result<usize> {
        let timer = self.timer.as_ref().ok_or(Error::Mode)?;
        let mut g = self.lock();
        if g.driving || g.shutdown {
            return Ok(0);
        }
        g.driving = true;
        let start = os::now_ns();
        let was = g.armed;
        let expired = start >= was;
        if expired {
            g.stats.wakeups += 1;
        }
        g.armed = 0;
        // SAFETY: this call is the driver: `driving` was set under the lock.
        let handler = unsafe { &mut *self.handler.get() };
        let (mut g, n) = match handler.as_deref_mut() {
            Some(h) => as_driver(self, || self.drive(g, h, start)),
            None => (g, 0),
        };
        if g.shutdown {
            // free() was called meanwhile: from a callback, or it waits for
            // this call on another thread. The callbacks go now.
            // SAFETY: still the driver.
            let h = unsafe { (*self.handler.get()).take() };
            g.driving = false;
            self.done.notify_all();
            drop(g);
            drop(h);
            return Ok(n);
        }
        let next = g
            .sched
            .next_wake(&self.table, os::now_ns())
            .unwrap_or(NEVER);
        if next != was || expired {
            timer.arm(next);
        }
        g.armed = next;
        g.driving = false;
        Ok(n)
    }

    /// Thread-free mode: the timer fd (close-on-exec, non-blocking, level
    /// triggered), readable when something is due. [`Error::Mode`] if the
    /// monitor has a thread.
    pub fn fd(&self) -> Result<RawFd> {
        self.timer.as_ref().map(|t| t.fd()).ok_or(Error::Mode)
    }

    /// Thread-free mode: milliseconds until the next event is due, rounded
    /// up (0: due now); None if nothing is watched. [`Error::Mode`] if the
    /// monitor has a thread.
    pub fn timeout_ms(&self) -> Result<Option<u64>> {
        if self.timer.is_none() {
            return Err(Error::Mode);
        }
        let g = self.lock();
        let now = os::now_ns();
        Ok(g.sched
            .next_wake(&self.table, now)
            .map(|t| (t - now).div_ceil(MS)))
    }

    /// The time the timer fd is armed at (loom models).
    #[cfg(loom)]
    fn timer_armed(&self) -> u64 {
        self.timer.as_ref().map_or(NEVER, |t| t.armed())
    }
}

/// The wait graph between monitors, to refuse the one wait that would
/// deadlock for sure: monitor A's running callback waiting (in
/// `B.unwatch()` or `free(B)`) for B's driver to finish an event (or to
/// stop), while B's running callback is itself waiting for A's. (Like two
/// locks taken in opposite orders; the rule for applications: never wait,
/// from a callback of A, for a callback of B whose callbacks wait for A.)
/// Only such two-monitor cycles are detected; longer ones (A waits for B, B
/// for C, C for A) are not, and deadlock.
///
/// Each monitor records, under one process-wide lock taken only when a
/// callback has to wait for another monitor, which monitor its own running
/// callback waits for and for which of that monitor's fds (-1: for its
/// driver to stop, in `free`). A callback of A about to wait for B checks
/// whether B's record names A, and whether what B waits for is still
/// pending (A's fd still has an unfinished event, or B waits for A's driver
/// to stop): A's driver is the thread running this callback, so that can
/// only finish after this callback returns, which it would not. Both records
/// are checked and written under the same lock, so of two callbacks that
/// start waiting for each other at the same time, the second sees the
/// first's record.
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

    /// A record "this monitor's callback waits for another"; removed on
    /// drop.
    pub(crate) struct Waiting {
        me: *const Core,
    }

    /// Called before waiting for `target`'s fd `fd` (-1: for `target`'s
    /// driver to stop): [`Error::Deadlock`] if the waiter is a callback of
    /// another monitor for which `target`'s running callback is waiting;
    /// otherwise records the wait.
    pub(crate) fn wait_for(target: &Core, fd: RawFd) -> Result<Waiting> {
        let me = driving_core();
        if me.is_null() || ptr::eq(me, target) {
            return Ok(Waiting { me: ptr::null() });
        }
        // SAFETY: `me` is the Core whose callback runs on this thread; its
        // driver holds a reference to it while it runs.
        let mine = unsafe { &*me };
        let _g = graph();
        if ptr::eq(target.waits_on.load(Ordering::Acquire), me) {
            let theirs = target.waits_fd.load(Ordering::Acquire);
            let pending = theirs < 0 || mine.table.slot(theirs).is_some_and(|s| s.busy());
            if pending {
                return Err(Error::Deadlock);
            }
        }
        mine.waits_fd.store(fd, Ordering::Release);
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
            mode: Mode::Thread,
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

    // --- batching, on the injected clock (thread-free mode: everything
    // happens on the test's thread, whose clock os::fake sets) -------------

    use std::sync::{Arc, Mutex as StdMutex};

    const T0: u64 = 1_000_000 * MS;

    fn loop_opts(ping: Ping, interval_ms: u32, timeout_ms: u32) -> Options {
        Options {
            interval_ms,
            timeout_ms,
            ping,
            mode: Mode::Loop,
        }
    }

    /// Records every callback; checks that none runs with the lock held.
    #[derive(Default)]
    struct Log {
        events: Vec<(char, RawFd)>,
        locked: usize,
        nested: Vec<usize>,
    }

    struct Batcher {
        log: Arc<StdMutex<Log>>,
        /// Each ping callback takes this long (advances the fake clock).
        ping_ns: u64,
        /// Ping callbacks return this.
        ping_result: std::result::Result<(), Errno>,
        /// fd 1's dead callback unwatches fd 2.
        unwatch_2: bool,
        /// Callbacks call process() (which must do nothing).
        nested_process: bool,
    }

    impl Batcher {
        fn new() -> (Batcher, Arc<StdMutex<Log>>) {
            let log = Arc::new(StdMutex::new(Log::default()));
            (
                Batcher {
                    log: log.clone(),
                    ping_ns: 0,
                    ping_result: Ok(()),
                    unwatch_2: false,
                    nested_process: false,
                },
                log,
            )
        }

        fn note(&mut self, m: &Core, what: char, fd: RawFd) {
            let mut l = self.log.lock().unwrap();
            l.events.push((what, fd));
            if m.inner.held() {
                l.locked += 1;
            }
            if self.nested_process {
                l.nested.push(m.process().unwrap());
            }
        }
    }

    impl Handler for Batcher {
        fn ping(&mut self, m: &Core, fd: RawFd) -> std::result::Result<(), Errno> {
            self.note(m, 'p', fd);
            if self.ping_ns > 0 {
                os::fake::set(os::now_ns() + self.ping_ns);
            }
            self.ping_result
        }
        fn dead(&mut self, m: &Core, fd: RawFd, _: Death) {
            self.note(m, 'd', fd);
            if self.unwatch_2 && fd == 1 {
                assert_eq!(m.unwatch(2), Ok(()), "cancels fd 2's pending death");
            }
        }
    }

    #[test]
    fn one_lock_acquisition_per_batch_not_per_event() {
        os::fake::set(T0);
        let (h, log) = Batcher::new();
        let m = Monitor::new(loop_opts(Ping::Callback, 1000, 3_600_000), h).unwrap();
        for fd in 0..600 {
            m.watch(fd).unwrap();
        }
        // Every first ping is due within one interval.
        os::fake::set(T0 + 1000 * MS);
        let l0 = os::fake::locks();
        assert_eq!(m.process(), Ok(600));
        let locks = os::fake::locks() - l0;
        // One to start, then one per batch of up to BATCH events (which
        // records the batch's results and takes the next one).
        assert_eq!(
            locks,
            1 + 600u64.div_ceil(BATCH as u64),
            "{locks} lock acquisitions"
        );
        let l = log.lock().unwrap();
        assert_eq!(l.events.len(), 600);
        assert_eq!(l.locked, 0, "callbacks ran with the lock held");
        drop(l);
        let s = m.stats();
        assert_eq!((s.pings, s.deaths, s.wakeups), (600, 0, 1));
        // Nothing due now: nothing happens, nothing changes, one lock.
        let l0 = os::fake::locks();
        assert_eq!(m.process(), Ok(0));
        assert_eq!(os::fake::locks() - l0, 1);
        assert_eq!(m.stats(), s);
        assert_eq!(log.lock().unwrap().events.len(), 600);
    }

    #[test]
    fn what_comes_due_while_process_runs_is_left_for_the_next_call() {
        os::fake::set(T0);
        let (mut h, log) = Batcher::new();
        h.ping_ns = 5 * MS; // each ping callback takes 5 ms
        let m = Monitor::new(loop_opts(Ping::Callback, 20, 3_600_000), h).unwrap();
        for fd in 0..10 {
            m.watch(fd).unwrap();
        }
        os::fake::set(T0 + 20 * MS);
        // Ten first pings, 50 ms: the second pings come due meanwhile, and
        // are not handled by this call (a bounded amount of work per call).
        assert_eq!(m.process(), Ok(10));
        assert_eq!(os::now_ns(), T0 + 70 * MS);
        assert_eq!(m.timeout_ms(), Ok(Some(0)), "something is due now");
        assert_eq!(
            m.inner.lock().armed,
            T0 + 70 * MS,
            "the timer fd is readable at once"
        );
        // The next call: one ping per fd (the missed ones are skipped).
        assert_eq!(m.process(), Ok(10));
        assert_eq!(log.lock().unwrap().events.len(), 20);
        assert!(m.stats().ping_late_max_us >= 45_000);
    }

    /// Ping callbacks that take `ns[fd]` of (fake) time each, recording
    /// when each returned.
    struct Timed {
        ns: Vec<u64>,
        ended: Arc<StdMutex<Vec<u64>>>,
    }

    impl Handler for Timed {
        fn ping(&mut self, _: &Core, fd: RawFd) -> std::result::Result<(), Errno> {
            let t = os::now_ns() + self.ns[fd as usize];
            os::fake::set(t);
            self.ended.lock().unwrap()[fd as usize] = t;
            Ok(())
        }
        fn dead(&mut self, _: &Core, _: RawFd, _: Death) {}
    }

    /// Watches one fd per entry of `ns` on a thread-free monitor whose ping
    /// callback for fd i takes `ns[i]` of fake time, runs one process() in
    /// which every fd's first ping is due, and returns per fd the recorded
    /// [start, end] of its pending attempt and when its callback really
    /// returned.
    fn run_timed(ns: Vec<u64>) -> Vec<(u64, u64, u64)> {
        os::fake::set(T0);
        let n = ns.len();
        let ended = Arc::new(StdMutex::new(vec![0; n]));
        let h = Timed {
            ns,
            ended: ended.clone(),
        };
        let m = Monitor::new(loop_opts(Ping::Callback, 1000, 3_600_000), h).unwrap();
        for fd in 0..n as RawFd {
            m.watch(fd).unwrap();
        }
        os::fake::set(T0 + 1000 * MS);
        assert_eq!(m.process(), Ok(n));
        let ended = ended.lock().unwrap().clone();
        (0..n as RawFd)
            .map(|fd| {
                let node = m.table.node_locked(fd).unwrap();
                (
                    node.pend_start.load(Ordering::Relaxed),
                    node.pend_end.load(Ordering::Relaxed),
                    ended[fd as usize],
                )
            })
            .collect()
    }

    #[test]
    fn slow_ping_callbacks_get_their_own_clock_reads() {
        // Every callback takes 1 ms: each ping's recorded end must be the
        // time its own callback returned, not the end of a group of pings
        // (which would make deaths later by the sum of the callbacks).
        let n = 40;
        for (fd, (start, end, real_end)) in run_timed(vec![MS; n]).into_iter().enumerate() {
            assert_eq!(end, real_end, "fd {fd}: end {end} != {real_end}");
            assert_eq!(start + MS, real_end, "fd {fd}: start {start}");
        }
    }

    #[test]
    fn quick_and_slow_ping_callbacks_each_get_their_own_bounds() {
        // Quick callbacks (1 us) with slow ones (8 ms) among them: every
        // recorded start and end is exactly when that ping's callback began
        // and returned (a start never later, an end never earlier than the
        // truth: no false death; and not later either: no late death).
        let mut ns = vec![1000; 200];
        for fd in [50, 51, 60, 120] {
            ns[fd] = 8 * MS;
        }
        for (fd, (start, end, real_end)) in run_timed(ns.clone()).into_iter().enumerate() {
            assert_eq!(start, real_end - ns[fd], "fd {fd}: start");
            assert_eq!(end, real_end, "fd {fd}: end");
        }
    }

    #[test]
    fn deaths_of_failed_pings_come_in_the_same_call() {
        os::fake::set(T0);
        let (mut h, log) = Batcher::new();
        h.ping_result = Err(libc::EPIPE);
        let m = Monitor::new(loop_opts(Ping::Callback, 1000, 3000), h).unwrap();
        for fd in 0..300 {
            m.watch(fd).unwrap();
        }
        os::fake::set(T0 + 1000 * MS);
        assert_eq!(m.process(), Ok(600));
        let l = log.lock().unwrap();
        assert_eq!(l.events.iter().filter(|e| e.0 == 'd').count(), 300);
        // Each fd's death after its own ping.
        for fd in 0..300 {
            let p = l.events.iter().position(|&e| e == ('p', fd)).unwrap();
            let d = l.events.iter().position(|&e| e == ('d', fd)).unwrap();
            assert!(p < d);
        }
        drop(l);
        let s = m.stats();
        assert_eq!((s.watched, s.pings_failed, s.deaths), (0, 300, 300));
        assert_eq!(m.timeout_ms(), Ok(None), "nothing watched");
        assert_eq!(m.inner.lock().armed, NEVER, "the timer fd is disarmed");
    }

    #[test]
    fn unwatch_from_a_callback_cancels_a_death_taken_in_the_same_batch() {
        os::fake::set(T0);
        let (mut h, log) = Batcher::new();
        h.unwatch_2 = true;
        let m = Monitor::new(loop_opts(Ping::None, 50, 100), h).unwrap();
        m.watch(1).unwrap();
        m.watch(2).unwrap();
        // Both die at the same millisecond, in one batch; fd 1's dead
        // callback unwatches fd 2, whose callback then never runs.
        os::fake::set(T0 + 100 * MS);
        assert_eq!(m.process(), Ok(1));
        assert_eq!(log.lock().unwrap().events, vec![('d', 1)]);
        assert_eq!(m.stats().deaths, 1);
        assert_eq!(m.watch(2), Ok(()), "fd 2 is free again");
    }

    #[test]
    fn process_from_a_callback_does_nothing() {
        os::fake::set(T0);
        let (mut h, log) = Batcher::new();
        h.nested_process = true;
        let m = Monitor::new(loop_opts(Ping::Callback, 10, 1000), h).unwrap();
        for fd in 0..3 {
            m.watch(fd).unwrap();
        }
        os::fake::set(T0 + 10 * MS);
        assert_eq!(m.process(), Ok(3));
        assert_eq!(log.lock().unwrap().nested, vec![0, 0, 0]);
    }

    #[test]
    fn watch_of_an_earlier_event_rearms_the_timer() {
        os::fake::set(T0);
        let (h, _log) = Batcher::new();
        let m = Monitor::new(loop_opts(Ping::Callback, 1000, 3000), h).unwrap();
        let armed = || m.inner.lock().armed;
        assert_eq!(armed(), NEVER);
        assert_eq!(m.timeout_ms(), Ok(None));
        // First pings of the 1st, 2nd, 3rd watch: 0, 618 and 236 ms after
        // the watch (golden-ratio spreading).
        m.watch(1).unwrap();
        assert_eq!(armed(), T0);
        assert_eq!(m.process(), Ok(1));
        assert_eq!(armed(), T0 + 1000 * MS, "fd 1's next ping");
        m.watch(2).unwrap();
        assert_eq!(armed(), T0 + 619 * MS, "earlier: re-armed");
        m.watch(3).unwrap();
        assert_eq!(armed(), T0 + 237 * MS, "earlier again");
        assert_eq!(m.timeout_ms(), Ok(Some(237)));
        m.watch(4).unwrap(); // 854 ms: later, nothing changes
        assert_eq!(armed(), T0 + 237 * MS);
        // Unwatching the first due fd moves the timer to the next one, so
        // that the fd does not become readable for nothing.
        m.unwatch(3).unwrap();
        assert_eq!(armed(), T0 + 619 * MS);
        os::fake::set(T0 + 100 * MS);
        assert_eq!(m.timeout_ms(), Ok(Some(519)));
        for fd in [1, 2, 4] {
            m.unwatch(fd).unwrap();
        }
        assert_eq!(armed(), NEVER);
        assert_eq!(m.timeout_ms(), Ok(None));
    }

    #[test]
    fn loop_calls_on_a_threaded_monitor_are_refused() {
        let (tx, _rx) = mpsc::channel();
        let m = Monitor::new(opts(Ping::None), H(tx)).unwrap();
        assert_eq!(m.process(), Err(Error::Mode));
        assert_eq!(m.fd(), Err(Error::Mode));
        assert_eq!(m.timeout_ms(), Err(Error::Mode));
        let (h, _log) = Batcher::new();
        let l = Monitor::new(loop_opts(Ping::None, 10, 20), h).unwrap();
        let fd = l.fd().unwrap();
        // SAFETY: fcntl on the monitor's own open fd.
        let (fdfl, fl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFD),
                libc::fcntl(fd, libc::F_GETFL),
            )
        };
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
        assert_ne!(fl & libc::O_NONBLOCK, 0);
    }

    /// Callbacks that take random time and change the watch set: unwatch
    /// another fd, watch their own again.
    struct Churn {
        seed: u64,
        max_ns: u64,
    }

    impl Churn {
        fn next(&mut self, n: u64) -> u64 {
            self.seed = self
                .seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.seed >> 33) % n
        }
        fn act(&mut self, m: &Core, fd: RawFd) {
            let d = self.next(self.max_ns + 1);
            os::fake::set(os::now_ns() + d);
            match self.next(4) {
                0 => {
                    let _ = m.unwatch((fd + 1) % 16);
                }
                1 => {
                    let _ = m.watch(fd);
                }
                _ => {}
            }
        }
    }

    impl Handler for Churn {
        fn ping(&mut self, m: &Core, fd: RawFd) -> std::result::Result<(), Errno> {
            self.act(m, fd);
            Ok(())
        }
        fn dead(&mut self, m: &Core, fd: RawFd, _: Death) {
            self.act(m, fd);
        }
    }

    #[test]
    fn every_expiry_of_the_timer_finds_something_due() {
        // Without alive() (which moves deadlines without touching the
        // timer), the timer fd must be armed exactly at the first due
        // event: a process() at that time always handles something, and
        // the armed time is never later than what is due. Random watches,
        // unwatches and callbacks that take random time and churn the
        // watch set, with and without pings.
        for (ping, iv, to) in [(Ping::None, 10, 40), (Ping::Callback, 7, 30)] {
            for seed in 1..40u64 {
                os::fake::set(T0);
                let h = Churn {
                    seed,
                    max_ns: 3 * MS * (seed % 4),
                };
                let m = Monitor::new(loop_opts(ping.clone(), iv, to), h).unwrap();
                let mut rng = Churn { seed, max_ns: 0 };
                for step in 0..400 {
                    match rng.next(3) {
                        0 => {
                            let _ = m.watch(rng.next(16) as RawFd);
                        }
                        1 => {
                            let _ = m.unwatch(rng.next(16) as RawFd);
                        }
                        _ => {}
                    }
                    os::fake::set(os::now_ns() + rng.next(2 * MS));
                    let armed = m.inner.lock().armed;
                    let due = m.inner.lock().sched.next_wake(&m.table, 0).unwrap_or(NEVER);
                    // Armed at the first due time, or (for something
                    // overdue) at a time already past: readable now.
                    assert!(
                        armed == due || (armed > due && armed <= os::now_ns()),
                        "seed {seed} step {step}: armed {armed}, first due {due}"
                    );
                    if armed != NEVER && os::now_ns() >= armed {
                        let n = m.process().unwrap();
                        assert!(n > 0, "seed {seed} step {step}: readable, nothing due");
                    }
                }
            }
        }
    }
}
