//! Application-level heartbeats: one background thread pings any number of
//! connections and declares a peer dead when nothing has been heard from it
//! for `timeout_ms`.
//!
//! The application calls [`Core::alive`] whenever it hears from a peer (the
//! pong, or any data); that is one atomic load, one clock read and one
//! atomic store, with no lock. The monitor thread keeps one timer per fd in
//! a millisecond timing wheel, due at `min(next ping, last heard + timeout)`,
//! and sleeps until the earliest one: its cost grows with the number of
//! events (pings and deaths), not with the number of fds times ticks.
//!
//! Guarantees (each tested, see c-tests/test_monitor.c):
//! - after [`Core::unwatch`] returns (called outside a callback), no callback
//!   for that fd is running or will run, so the fd may be closed at once;
//! - after the [`Monitor`] is dropped (outside a callback), no callback is
//!   running or will run;
//! - callbacks may call `watch`, `alive`, `unwatch` and `last_heard_ms` on
//!   the same monitor (the lock is never held while a callback runs);
//! - each death is delivered once, after which the fd is no longer watched;
//! - the monitor never reads, closes or shuts down an fd; it only sends
//!   pings with `send(MSG_NOSIGNAL | MSG_DONTWAIT)` if asked to.

mod os;
mod sched;
mod table;
mod wheel;

use std::cell::Cell;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

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
/// /proc/self/task/*/comm).
pub(crate) const THREAD_NAME: &str = "heartbeat-mon";

/// What the monitor sends as a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// Nothing: pure silence detection (the application's own traffic, or
    /// pings it sends itself, keep the peer alive).
    None,
    /// These bytes (1..=PING_MAX), sent by the monitor thread with
    /// `send(fd, bytes, MSG_NOSIGNAL | MSG_DONTWAIT)`.
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
    /// (> interval_ms).
    pub timeout_ms: u32,
    /// What to send every `interval_ms`.
    pub ping: Ping,
}

/// The application's callbacks. They run on the monitor thread, one at a
/// time, without any lock held.
pub trait Handler: Send + 'static {
    /// Sends a ping on `fd` (only with [`Ping::Callback`]). `Ok` if it was
    /// sent or the send would block; `Err(errno)` if the connection is
    /// broken: the peer is then declared dead with
    /// [`Death::SendFailed`]`(errno)` (EAGAIN/EWOULDBLOCK/EINTR are taken as
    /// "would block").
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
    /// Pings sent (or ping callbacks called).
    pub pings: u64,
    /// Pings skipped because the send would block.
    pub pings_blocked: u64,
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
    Bytes(Box<[u8]>),
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
pub struct Core {
    table: Table,
    inner: os::Mutex<Inner>,
    /// Wakes the monitor thread (earlier deadline, shutdown).
    wake: os::Cond,
    /// Signals the end of a ping or callback to `unwatch` waiters.
    done: os::Cond,
    ping: PingMode,
    thread: os::Mutex<Option<JoinHandle<()>>>,
}

thread_local! {
    /// The Core whose monitor thread this is (address), or 0.
    static OWN_CORE: Cell<usize> = const { Cell::new(0) };
}

/// The owner of a monitor: dropping it stops the thread (see
/// [`Monitor::drop`]).
pub struct Monitor {
    core: Arc<Core>,
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
    /// Errors: [`Error::Interval`] (interval 0), [`Error::Timeout`] (timeout
    /// not longer than the interval), [`Error::Ping`] (ping bytes empty or
    /// longer than [`PING_MAX`]), [`Error::NoMem`], [`Error::Thread`].
    pub fn new(options: Options, handler: Box<dyn Handler>) -> Result<Monitor> {
        check_timing(options.interval_ms, options.timeout_ms)?;
        let (ping, len) = match options.ping {
            Ping::None => (PingMode::None, 0),
            Ping::Callback => (PingMode::Callback, 0),
            Ping::Bytes(b) if b.is_empty() || b.len() > PING_MAX => return Err(Error::Ping),
            Ping::Bytes(b) => {
                let n = b.len();
                (PingMode::Bytes(b.into_boxed_slice()), n)
            }
        };
        let pings = !matches!(ping, PingMode::None);
        let now = os::now_ns();
        let sched = Sched::new(options.interval_ms, options.timeout_ms, pings, len, now)?;
        let cond = |r: std::result::Result<os::Cond, Errno>| {
            r.map_err(|e| {
                if e == libc::ENOMEM {
                    Error::NoMem
                } else {
                    Error::Thread(e)
                }
            })
        };
        let core = Arc::new(Core {
            table: Table::new()?,
            inner: os::Mutex::new(Inner {
                sched,
                busy: None,
                waiters: 0,
                sleep_until: 0,
                shutdown: false,
                stats: Stats::default(),
            }),
            wake: cond(os::Cond::new())?,
            done: cond(os::Cond::new())?,
            ping,
            thread: os::Mutex::new(None),
        });
        let for_thread = Arc::clone(&core);
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(for_thread, handler))
            .map_err(|e| Error::Thread(e.raw_os_error().unwrap_or(libc::EAGAIN)))?;
        *core.thread.lock() = Some(handle);
        Ok(Monitor { core })
    }

    /// Gives up ownership: the pointer is the address of the [`Core`], the
    /// same that callbacks receive. Undo with [`Monitor::from_raw`].
    pub fn into_raw(self) -> *const Core {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so its Arc is moved out exactly once.
        let core = unsafe { std::ptr::read(&me.core) };
        Arc::into_raw(core)
    }

    /// Takes back ownership of a pointer from [`Monitor::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and not have been passed here before.
    pub unsafe fn from_raw(p: *const Core) -> Monitor {
        // SAFETY: per the contract, `p` is an Arc pointer we own.
        Monitor {
            core: unsafe { Arc::from_raw(p) },
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
    /// Stops the monitor: no callback runs after this returns. If a callback
    /// is running on another thread, waits for it. Called from one of this
    /// monitor's own callbacks, it cannot wait for itself: the thread then
    /// stops (and releases everything) as soon as that callback returns.
    fn drop(&mut self) {
        {
            let mut g = self.core.inner.lock();
            g.shutdown = true;
            self.core.wake.notify_all();
        }
        let handle = self.core.thread.lock().take();
        if let Some(h) = handle {
            if !self.core.on_own_thread() {
                // The thread never panics (every callback is caught), so
                // join returns Ok; there is nothing to do with an Err anyway.
                let _ = h.join();
            }
        }
    }
}

/// Holds the lock: a callback ran on `busy`; clear it and wake `unwatch`.
fn finish(core: &Core, g: &mut os::Guard<'_, Inner>) {
    g.busy = None;
    if g.waiters > 0 {
        core.done.notify_all();
    }
}

fn run(core: Arc<Core>, mut handler: Box<dyn Handler>) {
    os::block_signals();
    OWN_CORE.with(|c| c.set(Arc::as_ptr(&core) as usize));
    let c: &Core = &core;
    let mut g = c.inner.lock();
    loop {
        if g.shutdown {
            break;
        }
        let now = os::now_ns();
        match g.sched.poll(&c.table, now) {
            Some(Due::Ping {
                fd,
                generation,
                offset,
                late_ns,
            }) => {
                g.stats.record_late(late_ns);
                g.busy = Some(fd);
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
                g = c.inner.lock();
                finish(c, &mut g);
                match sent {
                    Sent::WouldBlock => g.stats.pings_blocked += 1,
                    _ => g.stats.pings += 1,
                }
                if let Some(why) = g.sched.ping_done(&c.table, fd, generation, offset, sent) {
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
    OWN_CORE.with(|c| c.set(0));
}

/// Runs the dead callback for `fd` without the lock; returns with it.
fn deliver<'a>(
    c: &'a Core,
    mut g: os::Guard<'a, Inner>,
    handler: &mut Box<dyn Handler>,
    fd: RawFd,
    why: Death,
) -> os::Guard<'a, Inner> {
    g.busy = Some(fd);
    g.stats.deaths += 1;
    drop(g);
    let _ = catch_unwind(AssertUnwindSafe(|| handler.dead(c, fd, why)));
    let mut g = c.inner.lock();
    finish(c, &mut g);
    g
}

impl Core {
    fn on_own_thread(&self) -> bool {
        OWN_CORE.with(|c| c.get()) == self as *const Core as usize
    }

    /// Starts watching `fd`: last heard = now, first ping within one
    /// interval (spread over the interval across fds), death after
    /// `timeout_ms` of silence. [`Error::AlreadyWatched`] if it is watched,
    /// [`Error::Invalid`] if negative, [`Error::NoMem`].
    pub fn watch(&self, fd: RawFd) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let mut g = self.inner.lock();
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
    /// callbacks, first waits for a ping or callback running for `fd` on the
    /// monitor thread (even when the result is NotWatched, e.g. because the
    /// dead callback for `fd` is running): when this returns, nothing
    /// touches `fd` any more. [`Error::NotWatched`], [`Error::Invalid`].
    pub fn unwatch(&self, fd: RawFd) -> Result<()> {
        if fd < 0 {
            return Err(Error::Invalid);
        }
        let mut g = self.inner.lock();
        let r = g.sched.unwatch(&self.table, fd);
        if !self.on_own_thread() {
            while g.busy == Some(fd) {
                g.waiters += 1;
                self.done.wait(&mut g);
                g.waiters -= 1;
            }
        }
        r
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let g = self.inner.lock();
        let mut s = g.stats;
        s.watched = g.sched.watched() as u64;
        s
    }
}

#[cfg(test)]
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
        let mk = |o| Monitor::new(o, Box::new(H(tx.clone()))).err();
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
        let m = Monitor::new(opts(Ping::Callback), Box::new(H(tx))).unwrap();
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
}
