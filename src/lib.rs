//! libheartbeat: find out that the other end of a TCP connection is gone.
//!
//! The safe Rust core lives in [`keepalive`] (and [`error`]); [`ffi`] is the
//! thin C ABI that cbindgen turns into `include/heartbeat.h`.

pub mod error;
pub mod ffi;
pub mod keepalive;
pub mod monitor;
pub mod status;
mod sys;

pub use error::{Error, Result};
pub use keepalive::Config;
pub use status::{Peer, Status};
/// The calling thread's `errno`, read and restored by wrappers that must
/// hand the caller's errno back unchanged (the preload library).
pub use sys::{errno, set_errno};
