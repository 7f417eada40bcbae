//! libheartbeat_preload.so: TCP keepalive for programs that cannot be
//! changed.
//!
//! `LD_PRELOAD=libheartbeat_preload.so HEARTBEAT_IDLE=30 HEARTBEAT_INTVL=5
//! HEARTBEAT_CNT=3 some-program` interposes `socket()`, `connect()`,
//! `listen()`, `accept()` and `accept4()`. Each calls the real function
//! (found with `dlsym(RTLD_NEXT, ...)`); the ones selected by
//! HEARTBEAT_HOOKS (default `connect,listen`) also configure the socket,
//! if and only if it is a TCP socket (IPv4 or IPv6), with
//! `heartbeat::keepalive::apply`: all five options or none. What the
//! intercepted call returns, and the errno the program sees, are never
//! changed: errno is saved before and restored after everything this
//! library does.
//!
//! `connect()` and `listen()` configure the socket *before* the real call:
//! the options are in place before the first SYN leaves (so a non-blocking
//! connect returning EINPROGRESS, or a blocking one interrupted with EINTR
//! that completes in the background, is covered as well), and before the
//! first connection can arrive on a listening socket (connections accepted
//! from it inherit the options from the kernel). `socket()` and `accept()`
//! configure the new fd after the real call, when it succeeded.
//!
//! The settings are read once, at the first intercepted call (whichever
//! thread makes it, even before main()), not at load time: a process that
//! never touches a socket (a shell script's helpers, say) neither pays for
//! nor reports anything. See `config.rs` for the variables.

use std::ffi::{c_int, c_void, CStr};
use std::fmt::Write as _;
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use heartbeat::{errno, set_errno};

use libc::{sockaddr, socklen_t};

mod config;
use config::{Hooks, Settings, State};

// ---------------------------------------------------------------------------
// Settings, read once.

static STATE: OnceLock<State> = OnceLock::new();

fn load() -> State {
    let state = config::parse(
        |name| std::env::var_os(name),
        heartbeat::keepalive::system_defaults,
    );
    match &state {
        State::Invalid(msg) => log(format_args!("{msg}")),
        State::Unset { debug: true } => log(format_args!(
            "none of {}, {}, {}, {} is set: no socket will be changed",
            config::IDLE,
            config::INTVL,
            config::CNT,
            config::USER_TIMEOUT
        )),
        State::Active(s) if s.debug => log(format_args!(
            "idle={} intvl={} cnt={} user_timeout_ms={} hooks={}",
            s.cfg.idle_secs, s.cfg.intvl_secs, s.cfg.cnt, s.cfg.user_timeout_ms, s.hooks
        )),
        _ => {}
    }
    state
}

/// The settings if the library is active and `hook` is selected.
fn active(hook: Hooks) -> Option<&'static Settings> {
    match STATE.get_or_init(load) {
        State::Active(s) if s.hooks.contains(hook) => Some(s),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The debug log.

/// A line of at most 512 bytes on the stack: logging allocates nothing and
/// takes no lock.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // Keep room for the newline; truncate silently.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes "libheartbeat_preload: <message>\n" to stderr with one write(2).
fn log(args: std::fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    let _ = write!(line, "libheartbeat_preload: {args}");
    line.buf[line.len] = b'\n';
    line.len += 1;
    // SAFETY: the pointer and length describe initialised bytes of `line`.
    // One attempt: a failed or short write to stderr is not retried.
    let _ = unsafe { libc::write(2, line.buf.as_ptr().cast::<c_void>(), line.len) };
}

// ---------------------------------------------------------------------------
// The real functions.

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;

struct Real {
    socket: SocketFn,
    connect: ConnectFn,
    listen: ListenFn,
    accept: AcceptFn,
    accept4: Accept4Fn,
}

static REAL: OnceLock<Real> = OnceLock::new();

/// The next definition of `name` after this library (normally libc's).
fn next(name: &CStr) -> *mut c_void {
    // SAFETY: RTLD_NEXT is a valid pseudo-handle and `name` is a C string.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }
}

macro_rules! real_fn {
    ($name:literal, $ty:ty, $fallback:expr) => {{
        let p = next($name);
        if p.is_null() {
            $fallback as $ty
        } else {
            // SAFETY: the libc symbol of that name has this C signature.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }
    }};
}

// Fallbacks, if dlsym() found nothing (a libc without these symbols cannot
// run a program that calls them, but do not crash): the system calls.
unsafe extern "C" fn sys_socket(d: c_int, t: c_int, p: c_int) -> c_int {
    libc::syscall(libc::SYS_socket, d, t, p) as c_int
}
unsafe extern "C" fn sys_connect(fd: c_int, a: *const sockaddr, l: socklen_t) -> c_int {
    libc::syscall(libc::SYS_connect, fd, a, l) as c_int
}
unsafe extern "C" fn sys_listen(fd: c_int, b: c_int) -> c_int {
    libc::syscall(libc::SYS_listen, fd, b) as c_int
}
unsafe extern "C" fn sys_accept(fd: c_int, a: *mut sockaddr, l: *mut socklen_t) -> c_int {
    libc::syscall(libc::SYS_accept4, fd, a, l, 0) as c_int
}
unsafe extern "C" fn sys_accept4(
    fd: c_int,
    a: *mut sockaddr,
    l: *mut socklen_t,
    f: c_int,
) -> c_int {
    libc::syscall(libc::SYS_accept4, fd, a, l, f) as c_int
}

fn real() -> &'static Real {
    REAL.get_or_init(|| {
        let e = errno();
        let r = Real {
            socket: real_fn!(c"socket", SocketFn, sys_socket),
            connect: real_fn!(c"connect", ConnectFn, sys_connect),
            listen: real_fn!(c"listen", ListenFn, sys_listen),
            accept: real_fn!(c"accept", AcceptFn, sys_accept),
            accept4: real_fn!(c"accept4", Accept4Fn, sys_accept4),
        };
        set_errno(e);
        r
    })
}

// ---------------------------------------------------------------------------
// Configuring one socket.

/// What a hook knows about a socket before configuring it.
enum Kind {
    /// TCP, by socket()'s arguments or by SO_PROTOCOL. (SO_DOMAIN and
    /// SO_TYPE are not read: a raw socket with protocol IPPROTO_TCP is
    /// refused by `keepalive::apply`'s first call, which changes nothing.)
    Tcp,
    /// Not TCP, by socket()'s (domain, type, protocol).
    NotTcpArgs(c_int, c_int, c_int),
    /// Not TCP, by SO_PROTOCOL.
    NotTcp(c_int),
    /// SO_PROTOCOL could not be read (not a socket): the errno.
    Unreadable(c_int),
}

/// The kind of an existing fd: one getsockopt(SO_PROTOCOL).
fn kind(fd: RawFd) -> Kind {
    if fd < 0 {
        return Kind::Unreadable(libc::EBADF); // what getsockopt() would say
    }
    // SAFETY: not -1; the program's own fd for the intercepted call, only
    // passed to getsockopt(), which answers EBADF if it is not open.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match heartbeat::keepalive::protocol(&fd) {
        Ok(libc::IPPROTO_TCP) => Kind::Tcp,
        Ok(p) => Kind::NotTcp(p),
        Err(e) => Kind::Unreadable(e),
    }
}

/// Whether socket()'s arguments make a TCP socket.
fn is_tcp(domain: c_int, ty: c_int, proto: c_int) -> bool {
    (domain == libc::AF_INET || domain == libc::AF_INET6)
        && ty == libc::SOCK_STREAM
        && (proto == libc::IPPROTO_TCP || proto == 0)
}

/// Configures `fd` if it is TCP; logs if asked. Saves and restores errno.
fn configure(s: &Settings, call: &str, fd: RawFd, kind: Kind) {
    let e = errno();
    let _ = catch_unwind(AssertUnwindSafe(|| match kind {
        Kind::Tcp => {
            // SAFETY: Kind::Tcp comes from a successful socket()/accept()
            // or SO_PROTOCOL read: an open fd (>= 0), held for the call.
            let r = heartbeat::keepalive::apply(&unsafe { BorrowedFd::borrow_raw(fd) }, &s.cfg);
            if s.debug {
                let c = &s.cfg;
                let head = format_args!(
                    "{call}(fd {fd}): idle={} intvl={} cnt={} user_timeout_ms={} keepalive=1",
                    c.idle_secs, c.intvl_secs, c.cnt, c.user_timeout_ms
                );
                match r {
                    Ok(()) => log(format_args!("{head}: ok")),
                    Err(err) => log(format_args!(
                        "{head}: failed: {err} (errno {})",
                        err.errno()
                    )),
                }
            }
        }
        _ if !s.debug => {}
        Kind::NotTcpArgs(d, t, p) => log(format_args!(
            "{call}(fd {fd}): not TCP (domain {d} type {t} protocol {p}): untouched"
        )),
        Kind::NotTcp(p) => log(format_args!(
            "{call}(fd {fd}): not TCP (protocol {p}): untouched"
        )),
        Kind::Unreadable(err) => log(format_args!(
            "{call}(fd {fd}): not a socket or unreadable (errno {err}): untouched"
        )),
    }));
    set_errno(e);
}

// ---------------------------------------------------------------------------
// The hooks. Each returns exactly what the real function returned, with
// the errno it left.

/// Interposed `socket()`: with the `socket` hook, a new TCP socket is
/// configured at once (before the program's own setsockopt() calls, which
/// therefore win).
#[no_mangle]
pub extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let f = real().socket;
    // SAFETY: forwarding the caller's arguments unchanged.
    let fd = unsafe { f(domain, ty, protocol) };
    let e = errno();
    if fd >= 0 {
        if let Some(s) = active(Hooks::SOCKET) {
            let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            let k = if is_tcp(domain, base, protocol) {
                Kind::Tcp
            } else {
                Kind::NotTcpArgs(domain, base, protocol)
            };
            configure(s, "socket", fd, k);
        }
    }
    set_errno(e);
    fd
}

/// Interposed `connect()`: with the `connect` hook (default), a TCP socket
/// is configured before the real call.
///
/// # Safety
/// As for libc's connect(): `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let e = errno();
    let f = real().connect;
    if let Some(s) = active(Hooks::CONNECT) {
        configure(s, "connect", fd, kind(fd));
    }
    set_errno(e);
    f(fd, addr, len)
}

/// Interposed `listen()`: with the `listen` hook (default), a TCP socket is
/// configured before the real call; accepted connections inherit.
#[no_mangle]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let e = errno();
    let f = real().listen;
    if let Some(s) = active(Hooks::LISTEN) {
        configure(s, "listen", fd, kind(fd));
    }
    set_errno(e);
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { f(fd, backlog) }
}

fn after_accept(call: &str, fd: c_int) {
    if fd >= 0 {
        if let Some(s) = active(Hooks::ACCEPT) {
            configure(s, call, fd, kind(fd));
        }
    }
}

/// Interposed `accept()`: with the `accept` hook, an accepted TCP
/// connection is configured after the real call succeeded.
///
/// # Safety
/// As for libc's accept(): `addr` and `len` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let f = real().accept;
    let r = f(fd, addr, len);
    let e = errno();
    after_accept("accept", r);
    set_errno(e);
    r
}

/// Interposed `accept4()`: as `accept()`.
///
/// # Safety
/// As for libc's accept4(): `addr` and `len` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let f = real().accept4;
    let r = f(fd, addr, len, flags);
    let e = errno();
    after_accept("accept4", r);
    set_errno(e);
    r
}
