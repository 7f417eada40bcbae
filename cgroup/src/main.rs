//! heartbeat-cgroup: TCP keepalive for every connection of a cgroup, set
//! from outside by a BPF sock_ops program, and a stream of connection ends.
//! See docs/cgroup.md and heartbeat-cgroup(8).
//!
//! Exit statuses: 0 success; 1 failure; 2 bad usage (nothing was changed);
//! `run` returns COMMAND's status (127 not found, 126 not executable, 128+N
//! killed by signal N) and 125 for its own failures, bad usage included.

mod args;
mod bpf;
mod cgroup;
mod event;
mod fail;
mod run;

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use args::{Command, Target, Values};
use bpf::{Attached, Pins};
use cgroup::Cgroup;
use fail::Fail;

const USAGE_ERROR: i32 = 2;

fn main() {
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let is_run = argv.first().map(|a| a == "run").unwrap_or(false);
    let code = match args::parse(argv) {
        Err(msg) => {
            eprintln!("heartbeat-cgroup: {msg}");
            if is_run {
                run::OWN_FAILURE
            } else {
                USAGE_ERROR
            }
        }
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            0
        }
        Ok(Command::Version) => {
            println!(
                "heartbeat-cgroup {} ({})",
                env!("CARGO_PKG_VERSION"),
                if bpf::BUILT_IN {
                    "BPF program built in"
                } else {
                    "built without clang: no BPF program"
                }
            );
            0
        }
        Ok(Command::Run { values, argv }) => run::run(&values, &argv),
        Ok(cmd) => match command(cmd) {
            Ok(code) => code,
            Err(f) => {
                eprintln!("heartbeat-cgroup: {f}");
                1
            }
        },
    };
    std::process::exit(code);
}

fn command(cmd: Command) -> Result<i32, Fail> {
    bpf::preflight(match &cmd {
        Command::Attach { .. } => "attach",
        Command::Detach { .. } => "detach",
        Command::Show { .. } => "show",
        _ => "watch",
    })?;
    let mount = cgroup::cgroup2_mount()?;
    match cmd {
        Command::Attach { cgroup, values } => attach(&cgroup, &mount, &values),
        Command::Detach { target } => detach(target, &mount),
        Command::Show { cgroup } => show(cgroup.as_deref(), &mount),
        Command::Watch { cgroup, json } => watch(&cgroup, &mount, json),
        Command::Run { .. } | Command::Help | Command::Version => unreachable!("handled in main"),
    }
}

/// `idle=1 intvl=1 cnt=3 user_timeout_ms=4000`, with `default` for a timer
/// left to the socket's namespace and `auto` for a per-socket deadline.
fn summary(v: &Values, ut_ms: Option<u32>) -> String {
    let t = |x: Option<i32>| x.map_or("default".to_string(), |n| n.to_string());
    format!(
        "idle={} intvl={} cnt={} user_timeout_ms={}",
        t(v.idle),
        t(v.intvl),
        t(v.cnt),
        ut_ms.map_or("auto".to_string(), |n| n.to_string())
    )
}

fn attach(arg: &OsStr, mount: &Path, values: &Values) -> Result<i32, Fail> {
    let cg = Cgroup::resolve(arg, mount)?;
    let bpffs = bpf::bpffs(true)?.ok_or_else(|| Fail::new("no BPF file system"))?;
    let now = summary(values, values.user_timeout_ms());
    match bpf::attach(&cg, &bpffs, values)? {
        Attached::New => println!("attached to {}: {now}", cg.path.display()),
        Attached::Updated(old) => {
            let (ov, oms) = old.values();
            println!(
                "updated {}: {now} (was {})",
                cg.path.display(),
                summary(&ov, oms)
            );
        }
    }
    Ok(0)
}

fn pins_of(arg: &OsStr, mount: &Path) -> Result<(Cgroup, Pins), Fail> {
    let cg = Cgroup::resolve(arg, mount)?;
    let Some(bpffs) = bpf::bpffs(false)? else {
        return Err(Fail::new(format!(
            "{}: nothing is attached by heartbeat-cgroup (no BPF file system is mounted)",
            cg.path.display()
        )));
    };
    let pins = Pins::new(&bpffs, cg.id);
    Ok((cg, pins))
}

fn detach(target: Target, mount: &Path) -> Result<i32, Fail> {
    let (name, pins) = match target {
        Target::Cgroup(arg) => {
            let (cg, pins) = pins_of(&arg, mount)?;
            (cg.path.display().to_string(), pins)
        }
        Target::Id(id) => {
            let bpffs = bpf::bpffs(false)?
                .ok_or_else(|| Fail::new("nothing is attached (no BPF file system is mounted)"))?;
            (format!("cgroup id {id}"), Pins::new(&bpffs, id))
        }
    };
    bpf::detach(&pins).map_err(|f| Fail::new(format!("{name}: {f}")))?;
    println!("detached from {name}");
    Ok(0)
}

fn show(arg: Option<&OsStr>, mount: &Path) -> Result<i32, Fail> {
    let Some(arg) = arg else {
        let list = match bpf::bpffs(false)? {
            Some(b) => Pins::all(&b),
            None => Vec::new(),
        };
        if list.is_empty() {
            println!("nothing is attached by heartbeat-cgroup");
        }
        for (i, pins) in list.iter().enumerate() {
            if i > 0 {
                println!();
            }
            let path = bpf::cgroup_path(mount, pins.cgroup_id);
            show_one(pins, path.as_deref())?;
        }
        return Ok(0);
    };
    let (cg, pins) = pins_of(arg, mount)?;
    if !pins.attached() {
        println!(
            "{}: nothing is attached by heartbeat-cgroup",
            cg.path.display()
        );
        return Ok(1);
    }
    show_one(&pins, Some(&cg.path))?;
    Ok(0)
}

fn show_one(pins: &Pins, path: Option<&Path>) -> Result<(), Fail> {
    let st = bpf::state(pins)?;
    let gone = st.link.cgroup_id == 0 || path.is_none();
    match path {
        Some(p) if !gone => println!("cgroup: {} (id {})", p.display(), pins.cgroup_id),
        _ => println!(
            "cgroup: removed (id {}): the program no longer runs; remove its pins with \
             `heartbeat-cgroup detach --id {}`",
            pins.cgroup_id, pins.cgroup_id
        ),
    }
    println!(
        "pinned: {} (link {}, program {} {})",
        pins.dir.display(),
        st.link.id,
        st.link.prog_id,
        bpf::PROGRAM
    );
    let (v, ms) = st.settings.values();
    println!("settings: {} keepalive=1", summary(&v, ms));
    match (v.idle, v.intvl, v.cnt) {
        (Some(i), Some(n), Some(c)) => println!(
            "deadline_ms: {}",
            heartbeat::keepalive::deadline_ms(i, n, c)
        ),
        _ => println!("deadline_ms: per socket (a timer is the namespace's default)"),
    }
    let s = st.stats;
    println!(
        "connections: configured={} failed={} ended={} lost={}",
        s.configured, s.failed, s.ended, s.lost
    );
    if s.failed > 0 {
        println!(
            "last failure: {} refused: {}",
            bpf::option_name(s.last_failed_option),
            io::Error::from_raw_os_error(-s.last_error)
        );
    }
    Ok(())
}

fn clock(id: libc::clockid_t) -> i128 {
    // SAFETY: ts is written by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn watch(arg: &OsStr, mount: &Path, json: bool) -> Result<i32, Fail> {
    let (cg, pins) = pins_of(arg, mount)?;
    if !pins.attached() {
        return Err(Fail::new(format!(
            "{}: nothing is attached by heartbeat-cgroup (attach it first)",
            cg.path.display()
        )));
    }
    // One reader at a time: readers of one ring buffer share its read
    // position, and two would hand each other the same records again.
    let lock = std::fs::File::open(&pins.dir)
        .map_err(|e| Fail::new(format!("cannot open {}: {e}", pins.dir.display())))?;
    // SAFETY: plain flock on an fd we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Fail::new(format!(
            "{}: another `heartbeat-cgroup watch` is reading its events (one reader at a time)",
            cg.path.display()
        )));
    }
    let mut rb = bpf::events(&pins)?;
    let lost_at_start = bpf::stats(&pins)?.lost;
    let mut lost_seen = lost_at_start;
    let start = clock(libc::CLOCK_MONOTONIC);
    let offset = clock(libc::CLOCK_REALTIME) - start;
    let (_, sfd) = run::signal_fd(&[libc::SIGINT, libc::SIGTERM])
        .map_err(|e| Fail::new(format!("cannot block signals: {e}")))?;
    eprintln!(
        "heartbeat-cgroup: watching {} (until SIGINT, SIGTERM or detach)",
        cg.path.display()
    );
    let out = io::stdout();
    let mut out = out.lock();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: rb.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(Fail::new(format!("poll: {}", io::Error::last_os_error())));
        }
        if fds[1].revents != 0 {
            return Ok(0);
        }
        // At most one buffer's worth per wakeup, so that signals, lost
        // counts and detachment are looked at even under a steady stream.
        for _ in 0..4096 {
            let Some(item) = rb.next() else { break };
            let Some(e) = bpf::Event::parse(&item) else {
                continue;
            };
            drop(item);
            // What ended before this watch started is not reported.
            if i128::from(e.mono_ns) < start {
                continue;
            }
            let line = if json {
                event::json(&e, offset)
            } else {
                event::text(&e, offset)
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(0);
            }
        }
        let lost = bpf::stats(&pins).map(|s| s.lost).unwrap_or(lost_seen);
        if lost > lost_seen {
            let n = lost - lost_seen;
            let line = if json {
                format!("{{\"lost\":{n}}}")
            } else {
                format!("lost {n} events (the ring buffer was full)")
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(0);
            }
            lost_seen = lost;
        }
        if out.flush().is_err() {
            return Ok(0);
        }
        if !pins.attached() {
            eprintln!("heartbeat-cgroup: {} was detached", cg.path.display());
            return Ok(0);
        }
    }
}
