//! Platform layer: the only place that calls `libc` for socket options.
//!
//! Platform differences are resolved here, once; the rest of the crate uses
//! the names exported by this module.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
#[cfg(target_os = "linux")]
pub use linux::{errno, set_errno};

#[cfg(not(target_os = "linux"))]
compile_error!("libheartbeat supports Linux only (TCP_KEEPIDLE, TCP_USER_TIMEOUT and TCP_INFO semantics are Linux's)");
