//! Linux: option names, their ranges, and the two generic option helpers.

use std::ffi::{c_int, c_void};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::RawFd;

use crate::error::Errno;

/// Largest TCP_KEEPIDLE the kernel accepts (MAX_TCP_KEEPIDLE).
pub(crate) const MAX_KEEPIDLE: c_int = 32767;
/// Largest TCP_KEEPINTVL the kernel accepts (MAX_TCP_KEEPINTVL).
pub(crate) const MAX_KEEPINTVL: c_int = 32767;
/// Largest TCP_KEEPCNT the kernel accepts (MAX_TCP_KEEPCNT).
pub(crate) const MAX_KEEPCNT: c_int = 127;
/// Largest TCP_USER_TIMEOUT the kernel accepts (it takes an int, >= 0).
pub(crate) const MAX_USER_TIMEOUT_MS: u32 = c_int::MAX as u32;

/// Where the kernel's keepalive defaults live (per network namespace).
pub(crate) const PROC_KEEPALIVE_TIME: &str = "/proc/sys/net/ipv4/tcp_keepalive_time";
pub(crate) const PROC_KEEPALIVE_INTVL: &str = "/proc/sys/net/ipv4/tcp_keepalive_intvl";
pub(crate) const PROC_KEEPALIVE_PROBES: &str = "/proc/sys/net/ipv4/tcp_keepalive_probes";

/// The socket options this library manages, as (level, name) pairs.
pub(crate) const SO_KEEPALIVE: (c_int, c_int) = (libc::SOL_SOCKET, libc::SO_KEEPALIVE);
pub(crate) const TCP_KEEPIDLE: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE);
pub(crate) const TCP_KEEPINTVL: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL);
pub(crate) const TCP_KEEPCNT: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_KEEPCNT);
pub(crate) const TCP_USER_TIMEOUT: (c_int, c_int) = (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT);

fn last_errno() -> Errno {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

/// Stores `e` in the calling thread's `errno`.
pub(crate) fn set_errno(e: Errno) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// One `setsockopt` call; -1 becomes the `errno` it left.
///
/// `T` must be a plain C value type (an `int`, a C struct).
pub(crate) fn setsockopt<T: Copy>(fd: RawFd, opt: (c_int, c_int), value: T) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `value`, which lives across the
    // call; the kernel validates `fd` itself.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            opt.0,
            opt.1,
            (&value as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// One `getsockopt` call; -1 becomes the `errno` it left.
///
/// `T` must be a plain C value type for which every bit pattern is valid
/// (an `int`, `struct tcp_info`). Bytes the kernel does not write are zero.
pub(crate) fn getsockopt<T: Copy>(fd: RawFd, opt: (c_int, c_int)) -> Result<T, Errno> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `value`, which is zeroed, so
    // it is fully initialised whatever the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            opt.0,
            opt.1,
            value.as_mut_ptr().cast::<c_void>(),
            &mut len,
        )
    };
    if rc == -1 {
        Err(last_errno())
    } else {
        // SAFETY: zero-initialised, and T accepts any bit pattern (see above).
        Ok(unsafe { value.assume_init() })
    }
}
