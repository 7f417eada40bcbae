//! Where the library's diagnostics go, and how a line is written without
//! disturbing the program.
//!
//! A [`Sink`] is chosen once, in the constructor: the file named by
//! HEARTBEAT_LOG (opened by the library itself), or the program's stderr if
//! it is open and not a socket, or nothing. It remembers the device and
//! inode of what it writes to, and [`Sink::write`] checks them with one
//! `fstat()` immediately before every write: a program that closed the fd
//! (and got the number back for a socket, say) is never written to. A write
//! to a pipe or FIFO never blocks (`RWF_NOWAIT`) and never raises SIGPIPE
//! (blocked around the write, and taken back if this write raised it).
//! Everything here is async-signal-safe: no allocation, no lock; a line is
//! formatted into a buffer on the stack.

use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::mem::MaybeUninit;

use heartbeat::errno;

/// One line of at most 511 bytes and a newline, formatted on the stack;
/// longer text is cut.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub const fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// "libheartbeat_preload: <args>\n".
    pub fn format(args: fmt::Arguments<'_>) -> Line {
        let mut line = Line::new();
        let _ = fmt::Write::write_fmt(&mut line, format_args!("libheartbeat_preload: {args}"));
        line.buf[line.len] = b'\n';
        line.len += 1;
        line
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep room for the newline; cut silently.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A file the library may write its lines to.
#[derive(Clone, Copy)]
pub struct Sink {
    /// -1: nowhere.
    fd: c_int,
    dev: u64,
    ino: u64,
    fifo: bool,
}

fn fstat(fd: c_int) -> Option<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole struct stat on success.
    (unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0).then(|| unsafe { st.assume_init() })
}

fn is_sock(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

impl Sink {
    pub const NONE: Sink = Sink {
        fd: -1,
        dev: 0,
        ino: 0,
        fifo: false,
    };

    fn of(fd: c_int, st: &libc::stat) -> Sink {
        Sink {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            fifo: st.st_mode & libc::S_IFMT == libc::S_IFIFO,
        }
    }

    pub fn is_none(&self) -> bool {
        self.fd < 0
    }

    /// The program's stderr, if fd 2 is open and is not a socket (a socket
    /// on fd 2 is the peer's, as under inetd or systemd's journal stream):
    /// one `fstat(2)`.
    pub fn stderr() -> Sink {
        match fstat(2) {
            Some(st) if !is_sock(&st) => Sink::of(2, &st),
            _ => Sink::NONE,
        }
    }

    /// Opens the HEARTBEAT_LOG file: created if missing (mode 0666 less the
    /// umask), appended to, close-on-exec, without becoming a controlling
    /// terminal and without blocking (a FIFO without a reader fails with
    /// ENXIO). The fd is moved to 3 or above, so that a program started
    /// with fd 0, 1 or 2 closed still finds them closed. The errno on
    /// failure.
    pub fn open_log(path: &CStr) -> Result<Sink, c_int> {
        let flags = libc::O_WRONLY
            | libc::O_APPEND
            | libc::O_CREAT
            | libc::O_CLOEXEC
            | libc::O_NOCTTY
            | libc::O_NONBLOCK;
        // SAFETY: `path` is a C string.
        let mut fd = unsafe { libc::open(path.as_ptr(), flags, 0o666 as libc::c_uint) };
        if fd < 0 {
            return Err(errno());
        }
        if fd < 3 {
            // SAFETY: plain fd calls on the fd just opened.
            let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            let e = errno();
            unsafe { libc::close(fd) };
            if high < 0 {
                return Err(e);
            }
            fd = high;
        }
        match fstat(fd) {
            Some(st) => Ok(Sink::of(fd, &st)),
            None => {
                let e = errno();
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
                Err(e)
            }
        }
    }

    /// Writes `line` with one write, if the fd still refers to the file
    /// found at startup; otherwise, or if the write fails or would block,
    /// the line is dropped. Leaves errno changed: callers restore it.
    pub fn write(&self, line: &Line) {
        if self.fd < 0 || line.is_empty() {
            return;
        }
        match fstat(self.fd) {
            Some(st) if st.st_dev == self.dev && st.st_ino == self.ino && !is_sock(&st) => {}
            _ => return,
        }
        let b = line.bytes();
        if !self.fifo {
            // A regular file or a character device: no SIGPIPE. One
            // attempt; a short or failed write is not retried.
            // SAFETY: the pointer and length describe `b`.
            let _ = unsafe { libc::write(self.fd, b.as_ptr().cast::<c_void>(), b.len()) };
            return;
        }
        write_fifo(self.fd, b);
    }
}

/// A write to a pipe or FIFO that never blocks and never raises SIGPIPE:
/// SIGPIPE is blocked in this thread around the write; if the write failed
/// with EPIPE and SIGPIPE was not already pending, the SIGPIPE it raised is
/// taken with a zero-timeout `sigtimedwait()`; then the thread's mask is
/// restored. `RWF_NOWAIT` makes a full pipe fail with EAGAIN instead of
/// waiting for the reader; on kernels whose pipes do not support it
/// (EOPNOTSUPP), a zero-timeout `poll()` for POLLOUT comes first and the
/// line is dropped if the pipe is full (a pipe that another writer fills
/// between the poll and the write can then still make the write wait).
fn write_fifo(fd: c_int, b: &[u8]) {
    // SAFETY: sigset_t values are initialised by sigemptyset before use;
    // every pointer passed points to a live local.
    unsafe {
        let mut pipe = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(pipe.as_mut_ptr());
        libc::sigaddset(pipe.as_mut_ptr(), libc::SIGPIPE);
        let pipe = pipe.assume_init();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, old.as_mut_ptr()) != 0 {
            return;
        }
        let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(pending.as_mut_ptr());
        let was_pending = libc::sigpending(pending.as_mut_ptr()) != 0
            || libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1;
        let iov = libc::iovec {
            iov_base: b.as_ptr() as *mut c_void,
            iov_len: b.len(),
        };
        let mut r = libc::pwritev2(fd, &iov, 1, -1, libc::RWF_NOWAIT);
        if r < 0 && errno() == libc::EOPNOTSUPP {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            if libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLOUT != 0 {
                r = libc::write(fd, b.as_ptr().cast::<c_void>(), b.len());
            }
        }
        if r < 0 && errno() == libc::EPIPE && !was_pending {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
    }
}
