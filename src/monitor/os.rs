//! The few system interfaces the monitor needs: the clock, a non-blocking
//! send, signal masking for its thread, and a pthread mutex and condition
//! variable.
//!
//! Why pthread and not `std::sync`: std's locks are built directly on futex
//! system calls, which race detectors (valgrind's helgrind and DRD, TSan
//! without an instrumented std) do not understand, so every field guarded by
//! a std `Mutex` would be reported as a data race. pthread mutexes and
//! condition variables are intercepted by those tools, which makes the
//! monitor's race check meaningful. The wrappers are minimal: a mutex that
//! owns its data (access only through a guard) and a condition variable on
//! CLOCK_MONOTONIC.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

use crate::error::Errno;
use crate::sys::errno;

use super::sched::Sent;

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, about 20 ns with the TSC
/// clock source; no system call).
#[inline]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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

/// Blocks every asynchronous signal in the calling thread, so the host
/// application's signal handlers never run on the monitor thread.
pub(crate) fn block_signals() {
    // SAFETY: plain calls on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A pthread mutex owning a `T`.
pub(crate) struct Mutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reachable through a guard, which exists only while
// the pthread mutex is held, so at most one thread accesses it at a time.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Mutex<T> {}

pub(crate) struct Guard<'a, T> {
    m: &'a Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) fn new(v: T) -> Mutex<T> {
        Mutex {
            // Boxed: a pthread mutex must not move once used.
            raw: Box::new(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)),
            data: UnsafeCell::new(v),
        }
    }

    pub(crate) fn lock(&self) -> Guard<'_, T> {
        // SAFETY: an initialised, never-moved mutex. A default mutex can only
        // fail with EDEADLK-like errors on misuse, which the guard prevents.
        unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        Guard { m: self }
    }
}

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

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.m.raw.get()) };
    }
}

/// A pthread condition variable whose timed waits use CLOCK_MONOTONIC.
pub(crate) struct Cond {
    raw: Box<UnsafeCell<libc::pthread_cond_t>>,
}

// SAFETY: pthread condition variables are made to be shared between threads.
unsafe impl Send for Cond {}
// SAFETY: as above.
unsafe impl Sync for Cond {}

impl Cond {
    pub(crate) fn new() -> Result<Cond, Errno> {
        let raw = Box::new(UnsafeCell::new(libc::PTHREAD_COND_INITIALIZER));
        // SAFETY: attr is initialised before use and destroyed after; the
        // condition variable is initialised in place, in its final box.
        unsafe {
            let mut attr: libc::pthread_condattr_t = std::mem::zeroed();
            let rc = libc::pthread_condattr_init(&mut attr);
            if rc != 0 {
                return Err(rc);
            }
            let mut rc = libc::pthread_condattr_setclock(&mut attr, libc::CLOCK_MONOTONIC);
            if rc == 0 {
                rc = libc::pthread_cond_init(raw.get(), &attr);
            }
            libc::pthread_condattr_destroy(&mut attr);
            if rc != 0 {
                return Err(rc);
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

impl Drop for Cond {
    fn drop(&mut self) {
        // SAFETY: no waiter can remain (waiting needs `&self`).
        unsafe { libc::pthread_cond_destroy(self.raw.get()) };
    }
}
