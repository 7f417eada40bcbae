//! Model checks of the monitor's concurrency protocol with loom, over the
//! real code: under `--cfg loom` the monitor's mutex, condition variable,
//! thread, lock-free atomics (table slots and directory, the reference
//! count) and clock are loom's (see `os.rs`), and loom runs each model
//! below in every interleaving of its threads (up to the preemption bound
//! that LOOM_MAX_PREEMPTIONS sets).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p heartbeat --lib
//! monitor::loom_tests` (c-tests/monitor/deep.sh does, bounded in time).
//!
//! The clock advances 100 s per read, so every watch is due at the
//! monitor thread's next look: a watched fd gets its ping (if any) and its
//! death as soon as the thread runs, and the models explore where the
//! application's calls fall relative to those callbacks.
//!
//! What is checked (the monitor's guarantees, docs/monitor.md):
//! - unwatch() returns only when no callback for the fd runs or will run,
//!   also when the running dead callback watches the fd again (defect 2);
//! - a ping callback that frees the monitor and returns an error gets no
//!   dead callback (defect 5);
//! - unwatch() waiting while the monitor is freed, from a callback or from
//!   another thread, never touches released memory (defect 6: the release
//!   is only marked under loom, and every access asserts it is not);
//! - after free() returns (outside a callback), no callback runs;
//! - the thread-free driver (`process()` on an application thread): a
//!   watch() from another thread while process() runs, or before or after
//!   it, leaves the timer fd armed no later than the first due event (no
//!   lost wake-up); unwatch() on another thread while process() runs the
//!   fd's callback waits for it; a dead callback inside process() that
//!   frees the monitor, with unwatch() of its fd on another thread.

use std::os::fd::RawFd;
use std::ptr::NonNull;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;

use super::*;

fn opts(ping: Ping) -> Options {
    Options {
        interval_ms: 1,
        timeout_ms: 2,
        ping,
        mode: Mode::Thread,
    }
}

fn loop_opts(ping: Ping) -> Options {
    Options {
        mode: Mode::Loop,
        ..opts(ping)
    }
}

/// Test flags shared with the handler.
#[derive(Default)]
struct Flags {
    /// A callback for fd 1 is running.
    in_cb: AtomicBool,
    /// The test said "no callback for fd 1 from now on".
    closed: AtomicBool,
    /// Callbacks seen while `closed` was set (or two at once).
    violations: AtomicUsize,
    /// Dead callbacks delivered.
    deaths: AtomicUsize,
    /// Ping callbacks called.
    pings: AtomicUsize,
    /// The monitor, as a raw owner pointer, for callbacks that free it
    /// (0: not theirs to free).
    owner: AtomicUsize,
    /// The handler was dropped: the monitor thread has ended.
    gone: AtomicBool,
}

impl Flags {
    fn enter(&self) {
        if self.closed.load(SeqCst) || self.in_cb.swap(true, SeqCst) {
            self.violations.fetch_add(1, SeqCst);
        }
    }

    fn leave(&self) {
        if self.closed.load(SeqCst) {
            self.violations.fetch_add(1, SeqCst);
        }
        self.in_cb.store(false, SeqCst);
    }

    /// Frees the monitor if the test handed it over; true if it did.
    fn free_owner(&self) -> bool {
        let p = self.owner.swap(0, SeqCst);
        if p != 0 {
            // SAFETY: the test stored an into_raw pointer, taken once.
            drop(unsafe { Monitor::from_raw(p as *const Core) });
        }
        p != 0
    }
}

struct H {
    f: Arc<Flags>,
    /// The dead callback watches fd 1 again, once.
    rewatch: bool,
    /// The dead callback frees the monitor.
    free_in_dead: bool,
    /// The ping callback frees the monitor, then returns EPIPE.
    free_in_ping: bool,
    /// The ping callback returns EPIPE (the peer is dead at once).
    fail_pings: bool,
}

impl H {
    fn new(f: &Arc<Flags>) -> H {
        H {
            f: f.clone(),
            rewatch: false,
            free_in_dead: false,
            free_in_ping: false,
            fail_pings: false,
        }
    }
}

impl Handler for H {
    fn ping(&mut self, _: &Core, _: RawFd) -> std::result::Result<(), Errno> {
        self.f.enter();
        self.f.pings.fetch_add(1, SeqCst);
        let freed = self.free_in_ping && self.f.free_owner();
        self.f.leave();
        if freed || self.fail_pings {
            Err(libc::EPIPE)
        } else {
            Ok(())
        }
    }

    fn dead(&mut self, m: &Core, fd: RawFd, _: Death) {
        self.f.enter();
        self.f.deaths.fetch_add(1, SeqCst);
        if self.rewatch {
            self.rewatch = false;
            let _ = m.watch(fd);
        }
        if self.free_in_dead {
            self.f.free_owner();
        }
        self.f.leave();
    }
}

impl Drop for H {
    fn drop(&mut self) {
        self.f.gone.store(true, SeqCst);
    }
}

/// A counted reference, as the C API takes for unwatch/watch/stats.
fn call(p: *const Core) -> CoreRef {
    // SAFETY: the models only call this while the monitor is not freed, or
    // before the callback that frees it can have started.
    unsafe { CoreRef::acquire(NonNull::new(p as *mut Core).unwrap()) }
}

fn wait_until_gone(f: &Flags) {
    while !f.gone.load(SeqCst) {
        loom::thread::yield_now();
    }
}

#[test]
fn unwatch_returns_after_a_rewatching_dead_callback() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        let mut h = H::new(&f);
        h.rewatch = true;
        h.fail_pings = true;
        // The first watch's first ping is due at once and fails: a death.
        // The watch its dead callback makes has its first ping weeks away
        // (the second watch's ping comes 0.618 intervals after it), so it
        // stays watched unless unwatch() stops it.
        let long = Options {
            interval_ms: u32::MAX - 1,
            timeout_ms: u32::MAX,
            ping: Ping::Callback,
            mode: Mode::Thread,
        };
        let m = Monitor::new(long, h).unwrap();
        m.watch(1).unwrap();
        // Before the death, during its callback (which watches fd 1
        // again), or after it: when unwatch returns, fd 1 is not watched
        // and no callback for it runs or will run.
        let _ = m.unwatch(1);
        assert_eq!(m.alive(1), Err(Error::NotWatched));
        f.closed.store(true, SeqCst);
        drop(m);
        assert_eq!(f.violations.load(SeqCst), 0);
    });
}

#[test]
fn a_ping_callback_that_frees_gets_no_dead_callback() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        let mut h = H::new(&f);
        h.free_in_ping = true;
        let p = Monitor::new(opts(Ping::Callback), h).unwrap().into_raw();
        f.owner.store(p as usize, SeqCst);
        call(p).watch(1).unwrap();
        wait_until_gone(&f);
        assert_eq!(f.pings.load(SeqCst), 1);
        assert_eq!(f.deaths.load(SeqCst), 0);
    });
}

#[test]
fn unwatch_waiting_while_a_dead_callback_frees() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        let mut h = H::new(&f);
        h.free_in_dead = true;
        let p = Monitor::new(opts(Ping::None), h).unwrap().into_raw();
        f.owner.store(p as usize, SeqCst);
        let r = call(p);
        r.watch(1).unwrap();
        // The death may come before, during or after this call; its
        // callback frees the monitor. The call holds its reference.
        let u = r.unwatch(1);
        assert!(u == Ok(()) || u == Err(Error::NotWatched), "{u:?}");
        drop(r);
        if u == Ok(()) {
            // No death then: the monitor is still ours to free.
            f.free_owner();
        }
        wait_until_gone(&f);
    });
}

#[test]
fn unwatch_waiting_while_another_thread_frees() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        let m = Monitor::new(opts(Ping::Callback), H::new(&f)).unwrap();
        m.watch(1).unwrap();
        let p = m.into_raw() as usize;
        let r = call(p as *const Core);
        let waiter = loom::thread::spawn(move || {
            // Waits for the ping callback of fd 1 if it is running.
            let u = r.unwatch(1);
            assert!(u == Ok(()) || u == Err(Error::NotWatched), "{u:?}");
        });
        // SAFETY: the owner pointer from into_raw, freed once.
        drop(unsafe { Monitor::from_raw(p as *const Core) });
        f.closed.store(true, SeqCst);
        waiter.join().unwrap();
        assert_eq!(f.violations.load(SeqCst), 0);
    });
}

// --- the thread-free driver ---------------------------------------------------

/// The earliest due time of anything watched (exact: the wheel's own
/// minimum), or NEVER.
fn first_due(c: &Core) -> u64 {
    let g = c.lock();
    g.sched.next_wake(&c.table, 0).unwrap_or(NEVER)
}

#[test]
fn a_watch_while_process_runs_leaves_the_timer_armed_in_time() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        // Pings weeks apart (the loom clock moves 100 s a read): fd 1's
        // first ping is due at once, every later one stays pending, so
        // the timer must end up armed for the earliest of them.
        let long = Options {
            interval_ms: u32::MAX - 1,
            timeout_ms: u32::MAX,
            ping: Ping::Callback,
            mode: Mode::Loop,
        };
        let m = Monitor::new(long, H::new(&f)).unwrap();
        m.watch(1).unwrap();
        let p = m.into_raw() as usize;
        let d = call(p as *const Core);
        let driver = loom::thread::spawn(move || {
            let _ = d.process();
        });
        // Before, during or after process(): another thread's watch.
        call(p as *const Core).watch(2).unwrap();
        driver.join().unwrap();
        // SAFETY: the owner pointer from into_raw, taken back once.
        let m = unsafe { Monitor::from_raw(p as *const Core) };
        let (armed, due) = (m.timer_armed(), first_due(&m));
        assert!(
            armed <= due,
            "timer armed at {armed}, first event due at {due}"
        );
        drop(m);
    });
}

#[test]
fn unwatch_waits_for_the_callback_that_process_runs() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        let m = Monitor::new(loop_opts(Ping::Callback), H::new(&f)).unwrap();
        m.watch(1).unwrap();
        let p = m.into_raw() as usize;
        let d = call(p as *const Core);
        let driver = loom::thread::spawn(move || {
            let _ = d.process();
        });
        let u = call(p as *const Core).unwatch(1);
        assert!(u == Ok(()) || u == Err(Error::NotWatched), "{u:?}");
        f.closed.store(true, SeqCst);
        driver.join().unwrap();
        assert_eq!(f.violations.load(SeqCst), 0);
        // SAFETY: the owner pointer from into_raw, taken back once.
        drop(unsafe { Monitor::from_raw(p as *const Core) });
    });
}

#[test]
fn a_dead_callback_inside_process_frees_while_unwatch_waits() {
    loom::model(|| {
        let f = Arc::new(Flags::default());
        let mut h = H::new(&f);
        h.free_in_dead = true;
        let p = Monitor::new(loop_opts(Ping::None), h).unwrap().into_raw();
        f.owner.store(p as usize, SeqCst);
        let r = call(p);
        r.watch(1).unwrap();
        let d = call(p);
        let driver = loom::thread::spawn(move || {
            let _ = d.process(); // the death is due: its callback frees
        });
        // Cancels the death before its callback starts (Ok), or waits
        // for the callback, which frees the monitor (NotWatched).
        let u = r.unwatch(1);
        assert!(u == Ok(()) || u == Err(Error::NotWatched), "{u:?}");
        drop(r);
        if u == Ok(()) {
            // No dead callback then: the monitor is still ours to free.
            assert!(f.free_owner());
        }
        driver.join().unwrap();
        wait_until_gone(&f);
        assert_eq!(f.deaths.load(SeqCst), usize::from(u.is_err()));
    });
}
