//! cgroup2: finding the hierarchy, naming a cgroup, and `run`'s own child
//! cgroup (created, emptied within bounds, removed).

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::fail::Fail;

/// statfs(2) f_type of a cgroup2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The mount points of file systems of type `fstype` in a
/// /proc/self/mountinfo text, in order (mount points unescaped).
pub fn mounts_of(mountinfo: &str, fstype: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 5 || fields.get(sep + 1) != Some(&fstype) {
            continue;
        }
        found.push(PathBuf::from(OsString::from_vec(unescape(fields[4]))));
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let o = &b[i + 1..i + 4];
            if o.iter().all(|d| (b'0'..=b'7').contains(d)) {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn mountinfo() -> Result<String, Fail> {
    fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Fail::new(format!("cannot read /proc/self/mountinfo: {e}")))
}

/// Where the cgroup2 hierarchy is mounted.
pub fn cgroup2_mount() -> Result<PathBuf, Fail> {
    mounts_of(&mountinfo()?, "cgroup2")
        .into_iter()
        .next()
        .ok_or_else(|| {
            Fail::new(
                "no cgroup2 hierarchy is mounted (none in /proc/self/mountinfo): \
             mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup` (or /sys/fs/cgroup/unified \
             beside a cgroup v1 hierarchy); cgroup v1 cannot run sock_ops programs",
            )
        })
}

/// Where a BPF file system is mounted, if one is (`/sys/fs/bpf` first).
pub fn bpffs_mount() -> Result<Option<PathBuf>, Fail> {
    let all = mounts_of(&mountinfo()?, "bpf");
    let standard = Path::new("/sys/fs/bpf");
    Ok(all
        .iter()
        .find(|p| p.as_path() == standard)
        .or(all.first())
        .cloned())
}

/// A cgroup2 directory and its id (the inode number, which is what the
/// kernel calls the cgroup id: `bpf_link_info`, `/proc/PID/fdinfo`).
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub path: PathBuf,
    pub id: u64,
}

fn statfs_type(p: &Path) -> io::Result<i64> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is a valid C string; st is written by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

impl Cgroup {
    /// `arg` is a cgroup2 directory, or a path inside the hierarchy
    /// (`/system.slice/x.service`, tried below `mount` when `arg` itself
    /// does not exist).
    pub fn resolve(arg: &OsStr, mount: &Path) -> Result<Cgroup, Fail> {
        let given = Path::new(arg);
        let shown = given.display();
        if arg.is_empty() {
            return Err(Fail::new("CGROUP is empty"));
        }
        let inside = mount.join(given.strip_prefix("/").unwrap_or(given));
        let path = if given.exists() {
            given.to_path_buf()
        } else if inside.exists() {
            inside
        } else if given.starts_with(mount) {
            return Err(Fail::new(format!("{shown}: no such cgroup")));
        } else {
            return Err(Fail::new(format!(
                "{shown}: no such cgroup (neither {shown} nor {} exists)",
                inside.display()
            )));
        };
        let not = || {
            Fail::new(format!(
                "{shown} is not a cgroup2 directory (the cgroup2 hierarchy is mounted at {})",
                mount.display()
            ))
        };
        let meta =
            fs::metadata(&path).map_err(|e| Fail::new(format!("{}: {e}", path.display())))?;
        if !meta.is_dir() || statfs_type(&path).map_err(|_| not())? != CGROUP2_SUPER_MAGIC {
            return Err(not());
        }
        let path =
            fs::canonicalize(&path).map_err(|e| Fail::new(format!("{}: {e}", path.display())))?;
        Ok(Cgroup {
            path,
            id: meta.ino(),
        })
    }

    pub fn open(&self) -> Result<fs::File, Fail> {
        fs::File::open(&self.path)
            .map_err(|e| Fail::new(format!("cannot open {}: {e}", self.path.display())))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The pids in cgroup.procs.
    pub fn procs(&self) -> io::Result<Vec<libc::pid_t>> {
        Ok(fs::read_to_string(self.file("cgroup.procs"))?
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// cgroup.events says `populated 1` (a process in it or below).
    pub fn populated(&self) -> io::Result<bool> {
        Ok(fs::read_to_string(self.file("cgroup.events"))?
            .lines()
            .any(|l| l == "populated 1"))
    }
}

/// The caller's own cgroup2 path, from /proc/self/cgroup ("0::/path").
pub fn own_cgroup() -> Result<PathBuf, Fail> {
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Fail::new(format!("cannot read /proc/self/cgroup: {e}")))?;
    own_from(&text).ok_or_else(|| Fail::new("/proc/self/cgroup has no cgroup2 entry (\"0::/...\")"))
}

fn own_from(text: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_end_matches(" (deleted)")))
}

/// `run`'s cgroup: a child of the tool's own, emptied by [`Child::empty`]
/// and removed by [`Child::remove`].
pub struct Child {
    pub cgroup: Cgroup,
}

impl Child {
    pub fn create(mount: &Path) -> Result<Child, Fail> {
        let own = own_cgroup()?;
        let parent = mount.join(own.strip_prefix("/").unwrap_or(&own));
        let path = parent.join(format!("heartbeat-run-{}", std::process::id()));
        fs::create_dir(&path).map_err(|e| {
            Fail::new(format!(
                "cannot create the cgroup {}: {e}{}",
                path.display(),
                if e.kind() == io::ErrorKind::PermissionDenied {
                    " (the tool's own cgroup must be writable: run it as root)"
                } else {
                    ""
                }
            ))
        })?;
        let cgroup = Cgroup::resolve(path.as_os_str(), mount)?;
        Ok(Child { cgroup })
    }

    /// Empties the cgroup of the command's stragglers: SIGTERM to every
    /// process still in it, up to `grace` for them to leave, then SIGKILL
    /// (cgroup.kill where the kernel has it), up to `kill_wait` more.
    /// `reap` is called while waiting (the tool is the stragglers'
    /// subreaper).
    pub fn empty(
        &self,
        grace: Duration,
        kill_wait: Duration,
        reap: &mut dyn FnMut(),
    ) -> Result<(), Fail> {
        let cg = &self.cgroup;
        if !cg.populated().unwrap_or(true) {
            return Ok(());
        }
        signal_all(cg, libc::SIGTERM);
        if wait_empty(cg, grace, reap) {
            return Ok(());
        }
        if fs::write(cg.file("cgroup.kill"), "1").is_err() {
            signal_all(cg, libc::SIGKILL);
        }
        if wait_empty(cg, kill_wait, reap) {
            return Ok(());
        }
        Err(Fail::new(format!(
            "cannot empty the cgroup {}: processes {:?} are still in it after SIGKILL",
            cg.path.display(),
            cg.procs().unwrap_or_default()
        )))
    }

    /// Removes the (empty) cgroup; an emptied cgroup may stay busy for a
    /// moment while its last task exits: retried for up to `bound`.
    pub fn remove(&self, bound: Duration, reap: &mut dyn FnMut()) -> Result<(), Fail> {
        let path = &self.cgroup.path;
        let deadline = Instant::now() + bound;
        loop {
            match fs::remove_dir(path) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    reap();
                    sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(Fail::new(format!(
                        "cannot remove the cgroup {}: {e}",
                        path.display()
                    )))
                }
            }
        }
    }
}

/// Waits (polling every 5 ms, at most `bound`) for the cgroup to be empty.
fn wait_empty(cg: &Cgroup, bound: Duration, reap: &mut dyn FnMut()) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        reap();
        if !cg.populated().unwrap_or(false) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(5));
    }
}

/// Sends `sig` to every process of the cgroup, each through a pidfd taken
/// while it is in the cgroup, so that a pid reused by another process
/// after its owner left is never signalled.
fn signal_all(cg: &Cgroup, sig: libc::c_int) {
    for pid in cg.procs().unwrap_or_default() {
        // SAFETY: plain system calls on integers.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
        if pidfd < 0 {
            continue; // gone already
        }
        // The pidfd pins the pid: check membership now that it cannot be
        // reused.
        if in_cgroup(pid, cg) {
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd,
                    sig,
                    std::ptr::null::<u8>(),
                    0,
                );
            }
        }
        unsafe { libc::close(pidfd) };
    }
}

fn in_cgroup(pid: libc::pid_t, cg: &Cgroup) -> bool {
    cg.procs().map(|p| p.contains(&pid)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /sys/fs/bpf rw,relatime shared:9 - bpf bpf rw
51 23 0:41 / /run/my\\040bpf rw master:3 shared:2 - bpf none rw
";

    #[test]
    fn mountinfo_finds_cgroup2_and_bpffs() {
        assert_eq!(
            mounts_of(HYBRID, "cgroup2"),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        assert_eq!(
            mounts_of(HYBRID, "bpf"),
            [PathBuf::from("/sys/fs/bpf"), PathBuf::from("/run/my bpf")]
        );
        // cgroup v1 ("cgroup") is not cgroup2.
        assert!(mounts_of(
            "40 31 0:37 / /sys/fs/cgroup/x rw - cgroup cgroup rw\n",
            "cgroup2"
        )
        .is_empty());
        let unified =
            "25 1 0:22 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            mounts_of(unified, "cgroup2"),
            [PathBuf::from("/sys/fs/cgroup")]
        );
        assert!(mounts_of("garbage\n\n1 2 3\n", "cgroup2").is_empty());
        assert_eq!(unescape("a\\011b\\134c\\"), b"a\tb\\c\\");
    }

    #[test]
    fn own_cgroup_is_the_unified_entry() {
        let text = "9:name=systemd:/\n4:memory:/x/y\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            own_from(text),
            Some(PathBuf::from("/user.slice/session-1.scope"))
        );
        assert_eq!(own_from("0::/\n"), Some(PathBuf::from("/")));
        assert_eq!(own_from("4:memory:/x\n"), None);
    }
}
