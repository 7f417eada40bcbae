//! `run`: COMMAND in a new child cgroup with the program attached, its exit
//! status returned, and the cgroup always detached and removed.
//!
//! The tool forks; the child moves itself into the cgroup (one write of
//! "0" to cgroup.procs) before it execs COMMAND, so nothing COMMAND does
//! escapes it. SIGINT, SIGTERM and SIGHUP are read through a signalfd: sent
//! with kill(2) to the tool, they are forwarded to COMMAND; sent by the
//! terminal (to the whole foreground process group, COMMAND included),
//! they are not sent twice. When COMMAND ends, processes it left in the
//! cgroup get SIGTERM, then SIGKILL after 1 s; then the program is detached
//! and the cgroup removed.

use std::ffi::{CString, OsString};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::args::Values;
use crate::bpf::{self, Pins};
use crate::cgroup::{self, Child};
use crate::fail::Fail;

/// The exit status of `run`'s own failures (as env(1) and timeout(1) use).
pub const OWN_FAILURE: i32 = 125;
/// COMMAND was found but could not be executed.
const CANNOT_EXEC: i32 = 126;
/// COMMAND was not found.
const NOT_FOUND: i32 = 127;

const GRACE: Duration = Duration::from_secs(1);
const KILL_WAIT: Duration = Duration::from_secs(5);

const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Blocks the forwarded signals and SIGCHLD; returns the previous mask and a
/// signalfd that reads them.
pub fn signal_fd(signals: &[libc::c_int]) -> io::Result<(libc::sigset_t, OwnedFd)> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        let mut old: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((old, OwnedFd::from_raw_fd(fd)))
    }
}

/// Reads one signal from a signalfd: (signal, si_code).
pub fn read_signal(fd: &OwnedFd) -> io::Result<(libc::c_int, i32)> {
    // SAFETY: signalfd_siginfo is plain data; read writes at most its size.
    let mut si: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut si as *mut libc::signalfd_siginfo).cast(),
            mem::size_of::<libc::signalfd_siginfo>(),
        )
    };
    if n != mem::size_of::<libc::signalfd_siginfo>() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok((si.ssi_signo as libc::c_int, si.ssi_code))
}

/// Sent by a process (kill, sigqueue, tgkill), not by the kernel: the
/// terminal's ^C comes with SI_KERNEL and reaches COMMAND by itself.
fn from_a_process(code: i32) -> bool {
    code <= 0
}

/// The shell's convention: the exit code, or 128 + the signal.
pub fn shell_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        OWN_FAILURE
    }
}

pub fn run(values: &Values, argv: &[OsString]) -> i32 {
    match run_inner(values, argv) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("heartbeat-cgroup: {f}");
            OWN_FAILURE
        }
    }
}

fn run_inner(values: &Values, argv: &[OsString]) -> Result<i32, Fail> {
    bpf::preflight("run")?;
    let mount = cgroup::cgroup2_mount()?;
    let bpffs = bpf::bpffs(true)?.ok_or_else(|| Fail::new("no BPF file system"))?;
    let cargv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Fail::new("COMMAND or an argument contains a NUL byte"))?;

    let mut sigs = FORWARDED.to_vec();
    sigs.push(libc::SIGCHLD);
    let (old_mask, sfd) =
        signal_fd(&sigs).map_err(|e| Fail::new(format!("cannot block signals: {e}")))?;
    // Orphans of COMMAND become the tool's children, so that it can reap
    // them while it empties the cgroup.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let child = Child::create(&mount)?;
    let pins = Pins::new(&bpffs, child.cgroup.id);
    let result = bpf::attach(&child.cgroup, &bpffs, values)
        .and_then(|_| spawn_and_wait(&child.cgroup.path, &cargv, &old_mask, &sfd));

    // Always: empty the cgroup, detach, remove it.
    let mut reap = || {
        reap_all(None);
    };
    let mut problems = Vec::new();
    if let Err(f) = child.empty(GRACE, KILL_WAIT, &mut reap) {
        problems.push(f.0);
    }
    if pins.dir.exists() {
        if let Err(f) = bpf::detach(&pins) {
            problems.push(f.0);
        }
    }
    if let Err(f) = child.remove(KILL_WAIT, &mut reap) {
        problems.push(f.0);
    }
    for p in &problems {
        eprintln!("heartbeat-cgroup: {p}");
    }
    result
}

/// Reaps every exited child; returns the status of `main` if it was one.
fn reap_all(main: Option<libc::pid_t>) -> Option<libc::c_int> {
    let mut found = None;
    loop {
        let mut st = 0;
        // SAFETY: plain waitpid.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if Some(pid) == main {
            found = Some(st);
        }
    }
}

fn spawn_and_wait(
    cgroup: &Path,
    argv: &[CString],
    old_mask: &libc::sigset_t,
    sfd: &OwnedFd,
) -> Result<i32, Fail> {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(|_| Fail::new("bad cgroup path"))?;
    // SAFETY: valid C string.
    let pfd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if pfd < 0 {
        return Err(Fail::new(format!(
            "cannot open {}: {}",
            cgroup.join("cgroup.procs").display(),
            io::Error::last_os_error()
        )));
    }
    // SAFETY: pfd is ours.
    let pfd = unsafe { OwnedFd::from_raw_fd(pfd) };
    // COMMAND (and whoever it tells) can find its cgroup.
    std::env::set_var("HEARTBEAT_CGROUP", cgroup);
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());

    // SAFETY: the tool is single-threaded; the child only makes system
    // calls and formats one message before it execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Fail::new(format!("fork: {}", io::Error::last_os_error())));
    }
    if pid == 0 {
        unsafe { child(pfd.as_raw_fd(), &ptrs, old_mask) }
    }
    drop(pfd);
    loop {
        let (sig, code) =
            read_signal(sfd).map_err(|e| Fail::new(format!("reading signals: {e}")))?;
        if sig == libc::SIGCHLD {
            if let Some(st) = reap_all(Some(pid)) {
                return Ok(shell_status(st));
            }
        } else if from_a_process(code) {
            // COMMAND is our unreaped child: its pid cannot be reused.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// The forked child: into the cgroup, back to the signal state the tool
/// started with, exec.
unsafe fn child(procs: libc::c_int, argv: &[*const libc::c_char], old_mask: &libc::sigset_t) -> ! {
    // Rust starts programs with SIGPIPE ignored; COMMAND gets the default.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    libc::sigprocmask(libc::SIG_SETMASK, old_mask, std::ptr::null_mut());
    if libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
        let e = io::Error::last_os_error();
        eprintln!("heartbeat-cgroup: cannot move into the cgroup: {e}");
        libc::_exit(OWN_FAILURE);
    }
    libc::close(procs);
    libc::execvp(argv[0], argv.as_ptr());
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let name = std::ffi::CStr::from_ptr(argv[0]).to_string_lossy();
    let why = std::ffi::CStr::from_ptr(libc::strerror(errno)).to_string_lossy();
    eprintln!("heartbeat-cgroup: {name}: {why}");
    libc::_exit(match errno {
        libc::ENOENT | libc::ENOTDIR => NOT_FOUND,
        _ => CANNOT_EXEC,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_as_shells_report_them() {
        assert_eq!(shell_status(0), 0);
        assert_eq!(shell_status(3 << 8), 3);
        assert_eq!(shell_status(libc::SIGTERM), 143);
        assert_eq!(shell_status(libc::SIGKILL | 0x80), 137); // with a core dump
        assert!(from_a_process(0)); // SI_USER
        assert!(from_a_process(-6)); // SI_TKILL
        assert!(!from_a_process(0x80)); // SI_KERNEL: the terminal
    }
}
