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
//! `connect()` and `listen()` configure the socket *before* the real call,
//! and only if it has not started a connection yet (one
//! `getsockopt(TCP_INFO)`: state CLOSE and no segment sent): the options are
//! in place before the first SYN leaves (so a non-blocking connect returning
//! EINPROGRESS, or a blocking one interrupted with EINTR that completes in
//! the background, is covered as well), before the first connection can
//! arrive on a listening socket (connections accepted from it inherit the
//! options from the kernel), and never again: the `connect()` a program
//! calls to complete or check a non-blocking connection, or a second
//! `listen()`, leaves the options the program set in between alone.
//! `socket()` and `accept()` configure the new fd after the real call, when
//! it succeeded.
//!
//! All one-time work (finding the real functions, reading and parsing the
//! environment, the kernel's defaults, opening the log) is done by an ELF
//! constructor, before `main()` (or by the first hook called before it, from
//! another library's constructor: see `global`; a call that finds someone
//! else building the state forwards without waiting: see `real!`). The hooks then only read
//! immutable state: no lock, no allocation, nothing that a forked child or
//! a signal handler could wait on, so each hook is as async-signal-safe and
//! fork-safe as the libc function it wraps. See `config.rs` for the
//! variables and `diag.rs` for where diagnostics go.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use heartbeat::{errno, set_errno};

use libc::{sockaddr, socklen_t};

mod config;
mod diag;
use config::{Hooks, Settings, State};
use diag::{Line, Sink};

// ---------------------------------------------------------------------------
// The real functions.

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type ConnectFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;

#[derive(Clone, Copy)]
struct Real {
    socket: SocketFn,
    connect: ConnectFn,
    listen: ListenFn,
    accept: AcceptFn,
    accept4: Accept4Fn,
}

/// The next definition of `name` after this library (normally libc's).
fn next(name: &CStr) -> *mut c_void {
    // SAFETY: RTLD_NEXT is a valid pseudo-handle and `name` is a C string.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }
}

/// The real function `$name` of type `$ty`, or `$fallback` if dlsym() found
/// nothing (a libc without these symbols cannot run a program that calls
/// them, but do not crash). Keeps errno. Only `init` calls it: dlsym() takes
/// the loader's lock, so it is neither async-signal-safe nor reentrant.
macro_rules! real_fn {
    ($name:literal, $ty:ty, $fallback:expr) => {{
        let e = errno();
        let p = next($name);
        set_errno(e);
        if p.is_null() {
            $fallback as $ty
        } else {
            // SAFETY: the libc symbol of that name has this C signature.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }
    }};
}

// The fallbacks: the system calls (async-signal-safe, no lock).
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

/// The real functions, published by `init` as soon as it has found them
/// (before it reads the environment).
struct RealSlot(UnsafeCell<MaybeUninit<Real>>);
// SAFETY: written once, by `init`, before REAL_READY is set (Release); read
// only after REAL_READY is seen (Acquire); never written again.
unsafe impl Sync for RealSlot {}

static REAL: RealSlot = RealSlot(UnsafeCell::new(MaybeUninit::uninit()));
static REAL_READY: AtomicBool = AtomicBool::new(false);

fn real() -> Option<&'static Real> {
    // SAFETY: see RealSlot.
    REAL_READY
        .load(Ordering::Acquire)
        .then(|| unsafe { (*REAL.0.get()).assume_init_ref() })
}

/// The real function for a hook, or, while `init` has not found it yet (a
/// call made while someone else builds the state: see `global`), the
/// system call itself: no lookup, no lock, nothing to wait for.
macro_rules! real {
    ($field:ident, $ty:ty, $fallback:expr) => {
        match real() {
            Some(r) => r.$field,
            None => $fallback as $ty,
        }
    };
}

// ---------------------------------------------------------------------------
// The state, built once (by the constructor, see `global`) and never changed
// afterwards.

struct Global {
    /// The settings, if sockets are to be configured.
    settings: Option<Settings>,
    /// Whether a line is logged per socket (HEARTBEAT_DEBUG=1 and a sink).
    debug: bool,
    sink: Sink,
    /// Lines for the first hooked call to write: a HEARTBEAT_LOG that could
    /// not be opened, then the invalid setting or the debug settings line.
    report: [Line; 2],
}

struct Slot(UnsafeCell<MaybeUninit<Global>>);
// SAFETY: written once, by the thread that moved PHASE from UNINIT to
// RUNNING, before it sets READY (Release); read only after READY is seen
// (Acquire); never written again.
unsafe impl Sync for Slot {}

static GLOBAL: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;
static PHASE: AtomicU8 = AtomicU8::new(UNINIT);
/// Whether this process has written its report (the first hooked call).
static REPORTED: AtomicBool = AtomicBool::new(false);

/// The state. Normally the constructor built it before main(); a hook
/// called earlier (from another library's constructor) builds it itself.
/// None while someone else is building it (another thread before main, or
/// the code this call interrupted, or, in a child forked meanwhile, a
/// thread that no longer exists): the hook then forwards the call (see
/// `real!`) and configures nothing, never waits.
fn global() -> Option<&'static Global> {
    match PHASE.load(Ordering::Acquire) {
        READY => {}
        UNINIT => initialise()?,
        _ => return None,
    }
    // SAFETY: see Slot.
    Some(unsafe { (*GLOBAL.0.get()).assume_init_ref() })
}

/// Builds the state if nobody has started to; Some(()) once it is ready.
fn initialise() -> Option<()> {
    if PHASE
        .compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        return (PHASE.load(Ordering::Acquire) == READY).then_some(());
    }
    let e = errno();
    // Nothing in init() panics or allocates; if it ever panicked, PHASE
    // would stay RUNNING: the hooks forward every call and configure
    // nothing, rather than unwind into the program.
    let built = catch_unwind(|| {
        let g = init();
        // SAFETY: the only write (this thread won the exchange above).
        unsafe { (*GLOBAL.0.get()).write(g) };
    });
    set_errno(e);
    built.ok()?;
    PHASE.store(READY, Ordering::Release);
    Some(())
}

/// The constructor: in `.init_array`, so the dynamic loader calls it
/// before `main()` (for LD_PRELOAD, after the constructors of the libraries
/// the program links, which may already have called the hooks).
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    let _ = global();
}

/// A variable of the process environment, borrowed (no copy): getenv().
fn getenv(name: &str) -> Option<&'static CStr> {
    let mut buf = [0u8; 32];
    let n = name.len();
    if n >= buf.len() {
        return None;
    }
    buf[..n].copy_from_slice(name.as_bytes());
    // SAFETY: `buf` is NUL-terminated. The value lives in the environment
    // and is used only while the state is built (normally before main(),
    // before the program could change its environment).
    let p = unsafe { libc::getenv(buf.as_ptr().cast::<c_char>()) };
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
}

fn getenv_os(name: &str) -> Option<&'static OsStr> {
    getenv(name).map(|v| OsStr::from_bytes(v.to_bytes()))
}

fn init() -> Global {
    let real = Real {
        socket: real_fn!(c"socket", SocketFn, sys_socket),
        connect: real_fn!(c"connect", ConnectFn, sys_connect),
        listen: real_fn!(c"listen", ListenFn, sys_listen),
        accept: real_fn!(c"accept", AcceptFn, sys_accept),
        accept4: real_fn!(c"accept4", Accept4Fn, sys_accept4),
    };
    // SAFETY: the only write (this thread won the exchange in initialise).
    unsafe { (*REAL.0.get()).write(real) };
    REAL_READY.store(true, Ordering::Release);
    let state = config::parse(getenv_os, heartbeat::keepalive::system_defaults);
    let (settings, debug) = match state {
        State::Active(s) => (Some(s), s.debug),
        State::Unset { debug } => (None, debug),
        State::Invalid(_) => (None, false),
    };
    let said = match &state {
        State::Invalid(p) => Line::format(format_args!("{p}")),
        State::Active(s) if s.debug => Line::format(format_args!("{s}")),
        State::Unset { debug: true } => Line::format(format_args!(
            "none of {}, {}, {}, {} is set: no socket will be changed",
            config::IDLE,
            config::INTVL,
            config::CNT,
            config::USER_TIMEOUT
        )),
        _ => Line::new(),
    };
    // Where it goes: nowhere if there is nothing to say; the HEARTBEAT_LOG
    // file if set; else stderr, but only when a timer variable is set (a
    // process without one is left alone).
    let timers = config::TIMERS.iter().any(|n| getenv(n).is_some());
    let mut report = [Line::new(), said];
    let sink = if report[1].is_empty() {
        Sink::NONE
    } else {
        match getenv(config::LOG) {
            Some(path) => match Sink::open_log(path) {
                Ok(sink) => sink,
                Err(e) if timers => {
                    report[0] = Line::format(format_args!(
                        "{}={} cannot be opened (errno {e}); diagnostics go to stderr",
                        config::LOG,
                        config::Quoted(path.to_bytes())
                    ));
                    Sink::stderr()
                }
                Err(_) => Sink::NONE,
            },
            None if timers => Sink::stderr(),
            None => Sink::NONE,
        }
    };
    Global {
        settings,
        debug: debug && !sink.is_none(),
        sink,
        report,
    }
}

impl Global {
    /// Writes the report, once per process, at the first hooked call.
    fn report_once(&self) {
        if self.sink.is_none() || REPORTED.load(Ordering::Relaxed) {
            return;
        }
        if !REPORTED.swap(true, Ordering::Relaxed) {
            let e = errno();
            for line in &self.report {
                self.sink.write(line);
            }
            set_errno(e);
        }
    }

    /// The settings if the library is active and `hook` is selected.
    fn active(&self, hook: Hooks) -> Option<&Settings> {
        self.settings.as_ref().filter(|s| s.hooks.contains(hook))
    }

    fn log(&self, args: std::fmt::Arguments<'_>) {
        self.sink.write(&Line::format(args));
    }
}

/// The state at the start of a hook, after the report is written.
fn enter() -> Option<&'static Global> {
    let g = global();
    if let Some(g) = g {
        g.report_once();
    }
    g
}

// ---------------------------------------------------------------------------
// Configuring one socket.

/// What a hook knows about a socket before configuring it.
enum Kind {
    /// TCP, by socket()'s arguments or by TCP_INFO, and not started yet
    /// where that matters.
    Tcp,
    /// TCP, but its connection is already under way or over, or it listens
    /// (TCP_INFO: state, segments sent): configured before, or the program's.
    Started(u8, u32),
    /// Not TCP, by socket()'s (domain, type, protocol).
    NotTcpArgs(c_int, c_int, c_int),
    /// TCP_INFO could not be read: not a TCP socket (UDP, UNIX, raw: the
    /// errno EOPNOTSUPP), or not a socket at all.
    NotTcp,
}

/// `TCP_CLOSE` in `tcpi_state`: a new socket, or one whose connection
/// failed or was disconnected.
const TCP_CLOSE: u8 = 7;

/// One `getsockopt(TCP_INFO)`: the TCP state and the segments sent (the
/// kernel resets both when it disconnects a socket), or the errno.
fn tcp_state(fd: RawFd) -> Result<(u8, u32), c_int> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as socklen_t;
    // SAFETY: `info` has room for `len` bytes; the kernel writes at most
    // that and sets `len` to what it wrote (zeroed beyond that).
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast::<c_void>(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(errno());
    }
    // SAFETY: zero-initialised, then partly written by the kernel.
    let info = unsafe { info.assume_init() };
    Ok((info.tcpi_state, info.tcpi_segs_out))
}

/// For connect() and listen(): TCP and not started (state CLOSE, no
/// segment sent), or started, or not TCP.
fn kind_before_start(fd: RawFd) -> Kind {
    match tcp_state(fd) {
        Ok((TCP_CLOSE, 0)) => Kind::Tcp,
        Ok((state, segs)) => Kind::Started(state, segs),
        Err(_) => Kind::NotTcp,
    }
}

/// For accept(): a new connection, TCP or not.
fn kind_accepted(fd: RawFd) -> Kind {
    match tcp_state(fd) {
        Ok(_) => Kind::Tcp,
        Err(_) => Kind::NotTcp,
    }
}

/// Whether socket()'s arguments make a TCP socket.
fn is_tcp(domain: c_int, ty: c_int, proto: c_int) -> bool {
    (domain == libc::AF_INET || domain == libc::AF_INET6)
        && ty == libc::SOCK_STREAM
        && (proto == libc::IPPROTO_TCP || proto == 0)
}

/// Configures `fd` if `kind` finds it TCP (and not started); logs if asked.
/// Saves and restores errno around everything, `kind` included.
fn configure(g: &Global, s: &Settings, call: &str, fd: RawFd, kind: impl FnOnce() -> Kind) {
    let e = errno();
    let _ = catch_unwind(AssertUnwindSafe(|| match kind() {
        Kind::Tcp => {
            // SAFETY: Kind::Tcp comes from a successful socket()/accept()
            // or TCP_INFO read: an open fd (>= 0), held for the call.
            let r = heartbeat::keepalive::apply(&unsafe { BorrowedFd::borrow_raw(fd) }, &s.cfg);
            if g.debug {
                let c = &s.cfg;
                let head = format_args!(
                    "{call}(fd {fd}): idle={} intvl={} cnt={} user_timeout_ms={} keepalive=1",
                    c.idle_secs, c.intvl_secs, c.cnt, c.user_timeout_ms
                );
                match r {
                    Ok(()) => g.log(format_args!("{head}: ok")),
                    Err(err) => g.log(format_args!(
                        "{head}: failed: {err} (errno {})",
                        err.errno()
                    )),
                }
            }
        }
        _ if !g.debug => {}
        Kind::Started(state, segs) => g.log(format_args!(
            "{call}(fd {fd}): already connecting, connected or listening \
             (TCP state {state}, {segs} segments sent): untouched"
        )),
        Kind::NotTcpArgs(d, t, p) => g.log(format_args!(
            "{call}(fd {fd}): not TCP (domain {d} type {t} protocol {p}): untouched"
        )),
        // For the message only (debug): one more getsockopt.
        Kind::NotTcp if fd < 0 => g.log(format_args!(
            "{call}(fd {fd}): not a socket or unreadable (errno {}): untouched",
            libc::EBADF
        )),
        // SAFETY: fd >= 0, the program's own fd for this call, only passed
        // to getsockopt(), which answers EBADF if it is not open.
        Kind::NotTcp => {
            match heartbeat::keepalive::protocol(&unsafe { BorrowedFd::borrow_raw(fd) }) {
                Ok(p) => g.log(format_args!(
                    "{call}(fd {fd}): not TCP (protocol {p}): untouched"
                )),
                Err(err) => g.log(format_args!(
                    "{call}(fd {fd}): not a socket or unreadable (errno {err}): untouched"
                )),
            }
        }
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
    let g = enter();
    let f = real!(socket, SocketFn, sys_socket);
    // SAFETY: forwarding the caller's arguments unchanged.
    let fd = unsafe { f(domain, ty, protocol) };
    let e = errno();
    if fd >= 0 {
        if let Some((g, s)) = g.and_then(|g| Some((g, g.active(Hooks::SOCKET)?))) {
            let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            configure(g, s, "socket", fd, || {
                if is_tcp(domain, base, protocol) {
                    Kind::Tcp
                } else {
                    Kind::NotTcpArgs(domain, base, protocol)
                }
            });
        }
    }
    set_errno(e);
    fd
}

/// Interposed `connect()`: with the `connect` hook (default), a TCP socket
/// that has not started a connection is configured before the real call.
///
/// # Safety
/// As for libc's connect(): `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let g = enter();
    let f = real!(connect, ConnectFn, sys_connect);
    if let Some((g, s)) = g.and_then(|g| Some((g, g.active(Hooks::CONNECT)?))) {
        configure(g, s, "connect", fd, || kind_before_start(fd));
    }
    f(fd, addr, len)
}

/// Interposed `listen()`: with the `listen` hook (default), a TCP socket
/// that does not listen yet is configured before the real call; accepted
/// connections inherit.
#[no_mangle]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let g = enter();
    let f = real!(listen, ListenFn, sys_listen);
    if let Some((g, s)) = g.and_then(|g| Some((g, g.active(Hooks::LISTEN)?))) {
        configure(g, s, "listen", fd, || kind_before_start(fd));
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { f(fd, backlog) }
}

fn after_accept(g: Option<&Global>, call: &str, fd: c_int) {
    if fd >= 0 {
        if let Some((g, s)) = g.and_then(|g| Some((g, g.active(Hooks::ACCEPT)?))) {
            configure(g, s, call, fd, || kind_accepted(fd));
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
    let g = enter();
    let f = real!(accept, AcceptFn, sys_accept);
    let r = f(fd, addr, len);
    let e = errno();
    after_accept(g, "accept", r);
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
    let g = enter();
    let f = real!(accept4, Accept4Fn, sys_accept4);
    let r = f(fd, addr, len, flags);
    let e = errno();
    after_accept(g, "accept4", r);
    set_errno(e);
    r
}
