//! The few system interfaces the monitor needs: the clock, a non-blocking
//! send, fallible allocation, the monitor thread (created with every signal
//! blocked, on the process's default thread stack), a pthread mutex and
//! condition variable, and the timer fd of the thread-free mode.
//!
//! Why pthread and not `std::sync`: std's locks are built directly on futex
//! system calls, which race detectors (valgrind's helgrind and DRD, TSan
//! without an instrumented std) do not understand, so every field guarded by
//! a std `Mutex` would be reported as a data race. pthread mutexes and
//! condition variables are intercepted by those tools, which makes the
//! monitor's race check meaningful. The wrappers are minimal: a mutex that
//! owns its data (access only through a guard) and a condition variable on
//! CLOCK_MONOTONIC.
//!
//! Why pthread_create and not `std::thread`: `std::thread::Builder::spawn`
//! allocates (the thread's name, its `Thread` handle, the closure box, the
//! result packet) with allocations that abort the process when they fail,
//! and it starts the thread with the creator's signal mask and a fixed
//! 2 MiB stack. Here the one allocation (the closure box) is fallible, the
//! thread starts with every signal blocked, and it gets the stack size that
//! pthread_create gives any thread of the process by default.
//!
//! Under `--cfg loom` (the model checks in `loom_tests.rs`) the mutex, the
//! condition variable, the thread, the lock-free atomics and the clock are
//! loom's, so that loom explores every interleaving of the real monitor code;
//! the timer fd is a recorded "armed at" time that the models check.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

use crate::error::{Errno, Error, Result};
use crate::sys::errno;

use super::sched::Sent;

/// The atomics that other threads read without the monitor's mutex (the
/// table's slots and directory, the reference count): loom's under
/// `--cfg loom`, std's otherwise.
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
}

/// The thread-free monitor's timer: a timerfd on CLOCK_MONOTONIC
/// (close-on-exec, non-blocking), armed at absolute times. Readable (level
/// triggered) from the moment the armed time is reached until it is armed
/// again; `arm` replaces the armed time and clears the readability of an
/// expired one. The monitor never reads it.
#[cfg(not(loom))]
pub(crate) struct Timer {
    fd: i32,
}

/// "Never" for [`Timer::arm`]: disarmed.
pub(crate) const NEVER: u64 = u64::MAX;

#[cfg(not(loom))]
impl Timer {
    /// [`Error::Fd`] with timerfd_create's errno (EMFILE, ENFILE, ENOMEM).
    pub(crate) fn new() -> Result<Timer> {
        // SAFETY: plain system call with constant arguments.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            )
        };
        if fd < 0 {
            return Err(Error::Fd(errno()));
        }
        Ok(Timer { fd })
    }

    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }

    /// Readable from CLOCK_MONOTONIC `at_ns` on ([`NEVER`]: never). A time
    /// already past makes it readable at once.
    pub(crate) fn arm(&self, at_ns: u64) {
        let at = if at_ns == NEVER { 0 } else { at_ns.max(1) }; // 0 disarms
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at / 1_000_000_000) as libc::time_t,
                tv_nsec: (at % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: our own timerfd and a valid itimerspec; it cannot fail
        // with these arguments (a valid fd, nanoseconds below 10^9).
        unsafe {
            libc::timerfd_settime(
                self.fd,
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }
}

#[cfg(not(loom))]
impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Under loom: the armed time, for the models to check (always changed
/// with the monitor's mutex held).
#[cfg(loom)]
pub(crate) struct Timer {
    armed: std::sync::atomic::AtomicU64,
}

#[cfg(loom)]
impl Timer {
    pub(crate) fn new() -> Result<Timer> {
        Ok(Timer {
            armed: std::sync::atomic::AtomicU64::new(NEVER),
        })
    }

    pub(crate) fn fd(&self) -> i32 {
        1000
    }

    pub(crate) fn arm(&self, at_ns: u64) {
        self.armed
            .store(at_ns, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the fake fd becomes readable.
    pub(crate) fn armed(&self) -> u64 {
        self.armed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The unit tests' injected clock: when set on a thread, [`now_ns`] on that
/// thread returns it (the drivers' batching is tested on it).
#[cfg(all(test, not(loom)))]
pub(crate) mod fake {
    use std::cell::Cell;

    std::thread_local! {
        pub(crate) static NOW: Cell<Option<u64>> = const { Cell::new(None) };
        /// Mutex acquisitions made by this thread.
        pub(crate) static LOCKS: Cell<u64> = const { Cell::new(0) };
    }

    pub(crate) fn set(t: u64) {
        NOW.with(|n| n.set(Some(t)));
    }

    pub(crate) fn locks() -> u64 {
        LOCKS.with(|l| l.get())
    }
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, about 20 ns with the TSC
/// clock source; no system call).
#[cfg(not(loom))]
#[inline]
pub(crate) fn now_ns() -> u64 {
    #[cfg(test)]
    if let Some(t) = fake::NOW.with(|n| n.get()) {
        return t;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The model checker's clock (loom does not model time): every read is
/// 100 s after the previous one, so whatever is scheduled with durations
/// below that is due at the monitor thread's next look; only the
/// interleavings matter there, not the durations. (A timer days away, as
/// one model uses, stays pending: see [`Cond::wait_until`].)
#[cfg(loom)]
pub(crate) fn now_ns() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CLOCK: AtomicU64 = AtomicU64::new(1_000_000_000);
    CLOCK.fetch_add(100_000_000_000, Ordering::Relaxed)
}

/// One `send(fd, bytes, MSG_NOSIGNAL | MSG_DONTWAIT)`: never blocks, never
/// raises SIGPIPE, never retries.
pub(crate) fn send_ping(fd: i32, bytes: &[u8]) -> Sent {
    // SAFETY: pointer and length describe `bytes`; the kernel validates fd.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n >= 0 {
        return Sent::Bytes(n as usize);
    }
    classify(errno())
}

/// A ping that could not be sent: would block (not a death) or failed.
pub(crate) fn classify(e: Errno) -> Sent {
    if e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR {
        Sent::WouldBlock
    } else {
        Sent::Failed(e)
    }
}

/// `Box::new(v)` that returns [`Error::NoMem`] instead of aborting the
/// process when the allocation fails.
pub(crate) fn try_box<T>(v: T) -> Result<Box<T>> {
    let layout = std::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(v)); // a zero-sized Box does not allocate
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) }.cast::<T>();
    if p.is_null() {
        return Err(Error::NoMem);
    }
    // SAFETY: `p` is a fresh allocation with T's layout from the global
    // allocator, which is what Box::from_raw expects; it is initialised here.
    unsafe {
        p.write(v);
        Ok(Box::from_raw(p))
    }
}

/// Maps `bytes` of zeroed, page-aligned memory of its own (a private
/// anonymous mapping: the kernel supplies each page, zeroed, on first
/// touch). None if it cannot (the caller reports [`Error::NoMem`]).
#[cfg(not(loom))]
pub(crate) fn map_zeroed(bytes: usize) -> Option<std::ptr::NonNull<u8>> {
    // SAFETY: a fresh mapping, touching nothing else.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    std::ptr::NonNull::new(p.cast())
}

/// Unmaps what [`map_zeroed`] mapped.
///
/// # Safety
/// `p` and `bytes` must be exactly a mapping [`map_zeroed`] returned, no
/// longer referenced.
#[cfg(not(loom))]
pub(crate) unsafe fn unmap(p: std::ptr::NonNull<u8>, bytes: usize) {
    // SAFETY: per the contract.
    unsafe { libc::munmap(p.as_ptr().cast(), bytes) };
}

/// The id of the calling process: a monitor remembers its creator's, so that
/// `free()` in a child made by fork() (where the monitor has no thread and
/// its mutex may have been copied locked) can tell and touch nothing.
#[cfg(not(loom))]
pub(crate) fn pid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

#[cfg(loom)]
pub(crate) fn pid() -> u32 {
    0
}

/// Names the calling thread (as shown by `top -H` and in
/// /proc/self/task/*/comm). `name` must end with a NUL and have at most 15
/// bytes before it.
#[cfg(not(loom))]
pub(crate) fn name_thread(name: &str) {
    debug_assert!(name.ends_with('\0') && name.len() <= 16);
    // SAFETY: a NUL-terminated string of at most 16 bytes, as PR_SET_NAME
    // requires; the call only renames the calling thread.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

#[cfg(loom)]
pub(crate) fn name_thread(_name: &str) {}

/// A thread started by [`spawn`]; join or detach it.
#[cfg(not(loom))]
pub(crate) struct Thread(libc::pthread_t);

#[cfg(loom)]
pub(crate) struct Thread(loom::thread::JoinHandle<()>);

/// What the new thread runs: the closure, boxed (the one allocation).
#[cfg(not(loom))]
extern "C" fn trampoline<F: FnOnce() + Send + 'static>(
    arg: *mut libc::c_void,
) -> *mut libc::c_void {
    // SAFETY: `arg` is the Box<F> that `spawn` leaked for this thread, which
    // takes it back exactly once.
    let f = unsafe { Box::from_raw(arg.cast::<F>()) };
    // Nothing may unwind out of an extern "C" function; the monitor's loop
    // catches its callbacks' panics itself, so this is only a last resort.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::ptr::null_mut()
}

/// Starts a thread running `f`, with every signal blocked from its first
/// instruction on (the creating thread's mask is blocked around
/// pthread_create and restored before returning, and a new thread inherits
/// its creator's mask) and the process's default thread stack size (no
/// attributes: what pthread_create gives every thread by default, set from
/// RLIMIT_STACK at program start or by pthread_setattr_default_np).
///
/// Errors: [`Error::NoMem`] if the closure cannot be boxed,
/// [`Error::Thread`] with pthread_create's error. On failure `f` is dropped.
#[cfg(not(loom))]
pub(crate) fn spawn<F: FnOnce() + Send + 'static>(f: F) -> Result<Thread> {
    let arg = Box::into_raw(try_box(f)?);
    // SAFETY: plain libc calls on local values; `arg` is handed to the new
    // thread on success and taken back here on failure.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut id: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut id, std::ptr::null(), trampoline::<F>, arg.cast());
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(Error::Thread(rc));
        }
        Ok(Thread(id))
    }
}

#[cfg(loom)]
pub(crate) fn spawn<F: FnOnce() + Send + 'static>(f: F) -> Result<Thread> {
    Ok(Thread(loom::thread::spawn(f)))
}

impl Thread {
    /// Waits for the thread to end.
    pub(crate) fn join(self) {
        #[cfg(not(loom))]
        // SAFETY: a joinable thread that was neither joined nor detached
        // (join and detach take `self`). Its only failure modes are misuse.
        unsafe {
            libc::pthread_join(self.0, std::ptr::null_mut());
        }
        #[cfg(loom)]
        let _ = self.0.join();
    }

    /// Lets the thread end on its own.
    pub(crate) fn detach(self) {
        #[cfg(not(loom))]
        // SAFETY: as for join.
        unsafe {
            libc::pthread_detach(self.0);
        }
        #[cfg(loom)]
        drop(self.0);
    }
}

/// A pthread mutex owning a `T`.
#[cfg(not(loom))]
pub(crate) struct Mutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    data: UnsafeCell<T>,
}

#[cfg(loom)]
pub(crate) struct Mutex<T> {
    raw: loom::sync::Mutex<()>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reachable through a guard, which exists only while
// the mutex is held, so at most one thread accesses it at a time.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Mutex<T> {}

pub(crate) struct Guard<'a, T> {
    m: &'a Mutex<T>,
    #[cfg(loom)]
    g: Option<loom::sync::MutexGuard<'a, ()>>,
}

impl<T> Mutex<T> {
    /// A mutex owning `v`; [`Error::NoMem`] if it cannot be allocated.
    pub(crate) fn new(v: T) -> Result<Mutex<T>> {
        Ok(Mutex {
            // Boxed: a pthread mutex must not move once used.
            #[cfg(not(loom))]
            raw: try_box(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER))?,
            #[cfg(loom)]
            raw: loom::sync::Mutex::new(()),
            data: UnsafeCell::new(v),
        })
    }

    pub(crate) fn lock(&self) -> Guard<'_, T> {
        #[cfg(all(test, not(loom)))]
        fake::LOCKS.with(|l| l.set(l.get() + 1));
        // SAFETY: an initialised, never-moved mutex. A default mutex can only
        // fail with EDEADLK-like errors on misuse, which the guard prevents.
        #[cfg(not(loom))]
        unsafe {
            libc::pthread_mutex_lock(self.raw.get());
        }
        Guard {
            m: self,
            #[cfg(loom)]
            g: Some(self.raw.lock().unwrap()),
        }
    }
}

#[cfg(all(test, not(loom)))]
impl<T> Mutex<T> {
    /// Whether some thread holds the mutex (for tests).
    pub(crate) fn held(&self) -> bool {
        // SAFETY: an initialised mutex; unlocked at once if we got it.
        unsafe {
            if libc::pthread_mutex_trylock(self.raw.get()) == 0 {
                libc::pthread_mutex_unlock(self.raw.get());
                false
            } else {
                true
            }
        }
    }
}

#[cfg(not(loom))]
impl<T> Drop for Mutex<T> {
    fn drop(&mut self) {
        // SAFETY: not locked (no guard can outlive `&self`).
        unsafe { libc::pthread_mutex_destroy(self.raw.get()) };
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mutex is held for the guard's lifetime.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the mutex is held, and `&mut self` makes this unique.
        unsafe { &mut *self.m.data.get() }
    }
}

#[cfg(not(loom))]
impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.m.raw.get()) };
    }
}

/// A pthread condition variable whose timed waits use CLOCK_MONOTONIC.
#[cfg(not(loom))]
pub(crate) struct Cond {
    raw: Box<UnsafeCell<libc::pthread_cond_t>>,
}

#[cfg(loom)]
pub(crate) struct Cond {
    raw: loom::sync::Condvar,
}

// SAFETY: pthread condition variables are made to be shared between threads.
unsafe impl Send for Cond {}
// SAFETY: as above.
unsafe impl Sync for Cond {}

#[cfg(not(loom))]
impl Cond {
    /// [`Error::NoMem`] if it cannot be allocated, [`Error::Thread`] with
    /// the error of pthread_cond_init (never seen on Linux).
    pub(crate) fn new() -> Result<Cond> {
        let raw = try_box(UnsafeCell::new(libc::PTHREAD_COND_INITIALIZER))?;
        // SAFETY: attr is initialised before use and destroyed after; the
        // condition variable is initialised in place, in its final box.
        unsafe {
            let mut attr: libc::pthread_condattr_t = std::mem::zeroed();
            let rc = libc::pthread_condattr_init(&mut attr);
            if rc != 0 {
                return Err(cond_error(rc));
            }
            let mut rc = libc::pthread_condattr_setclock(&mut attr, libc::CLOCK_MONOTONIC);
            if rc == 0 {
                rc = libc::pthread_cond_init(raw.get(), &attr);
            }
            libc::pthread_condattr_destroy(&mut attr);
            if rc != 0 {
                return Err(cond_error(rc));
            }
        }
        Ok(Cond { raw })
    }

    /// Waits for a signal, releasing the guard's mutex meanwhile.
    pub(crate) fn wait<T>(&self, g: &mut Guard<'_, T>) {
        // SAFETY: the guard holds its mutex, as pthread_cond_wait requires.
        unsafe { libc::pthread_cond_wait(self.raw.get(), g.m.raw.get()) };
    }

    /// Waits for a signal or until CLOCK_MONOTONIC reaches `deadline_ns`.
    pub(crate) fn wait_until<T>(&self, g: &mut Guard<'_, T>, deadline_ns: u64) {
        let ts = libc::timespec {
            tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: as above; `ts` is a valid absolute time.
        unsafe { libc::pthread_cond_timedwait(self.raw.get(), g.m.raw.get(), &ts) };
    }

    pub(crate) fn notify_all(&self) {
        // SAFETY: an initialised condition variable.
        unsafe { libc::pthread_cond_broadcast(self.raw.get()) };
    }
}

#[cfg(not(loom))]
fn cond_error(rc: Errno) -> Error {
    if rc == libc::ENOMEM {
        Error::NoMem
    } else {
        Error::Thread(rc)
    }
}

#[cfg(not(loom))]
impl Drop for Cond {
    fn drop(&mut self) {
        // SAFETY: no waiter can remain (waiting needs `&self`).
        unsafe { libc::pthread_cond_destroy(self.raw.get()) };
    }
}

#[cfg(loom)]
impl Cond {
    pub(crate) fn new() -> Result<Cond> {
        Ok(Cond {
            raw: loom::sync::Condvar::new(),
        })
    }

    pub(crate) fn wait<T>(&self, g: &mut Guard<'_, T>) {
        let inner = g.g.take().expect("guard holds the lock");
        g.g = Some(self.raw.wait(inner).unwrap());
    }

    /// loom has no time: a timed wait is a wait for a notification (a
    /// watch with an earlier timer, or the shutdown). The monitor thread
    /// waits like this only when nothing is due (with the loom clock, only
    /// for timers days away), so those timers stay pending in the models.
    pub(crate) fn wait_until<T>(&self, g: &mut Guard<'_, T>, _deadline_ns: u64) {
        self.wait(g);
    }

    pub(crate) fn notify_all(&self) {
        self.raw.notify_all();
    }
}

/// A process-wide pthread mutex without data (the monitors' wait graph,
/// which is consulted only when one monitor's callback waits for another
/// monitor's).
#[cfg(not(loom))]
pub(crate) struct StaticLock(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads.
#[cfg(not(loom))]
unsafe impl Sync for StaticLock {}

#[cfg(not(loom))]
pub(crate) struct StaticGuard<'a>(&'a StaticLock);

#[cfg(not(loom))]
impl StaticLock {
    pub(crate) const fn new() -> StaticLock {
        StaticLock(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER))
    }

    pub(crate) fn lock(&self) -> StaticGuard<'_> {
        // SAFETY: a statically initialised mutex that never moves.
        unsafe { libc::pthread_mutex_lock(self.0.get()) };
        StaticGuard(self)
    }
}

#[cfg(not(loom))]
impl Drop for StaticGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.0 .0.get()) };
    }
}
