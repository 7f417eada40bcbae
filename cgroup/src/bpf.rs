//! The BPF side: the embedded object (bpf/sockops.bpf.c, compiled by
//! build.rs), loading it with aya, attaching it to a cgroup through a BPF
//! link, and the pins that keep it there after the tool exits.
//!
//! Each attachment is a directory in a BPF file system,
//! `<bpffs>/heartbeat-cgroup/<cgroup id>/`, holding the pinned link
//! (`link`: while it is pinned, the program stays attached) and the maps
//! (`hb_settings`, `hb_active`, `hb_stats`, `hb_events`), so that `attach`
//! again, `show` and `watch` find them. The link is pinned last: a
//! directory with a `link` is complete.
//!
//! aya 0.13 loads the object (maps, CO-RE relocations against the kernel's
//! BTF, the verifier's log), pins the maps and reads the ring buffer; it
//! cannot turn a sock_ops link into a pinnable one, so the link is created,
//! pinned, read and detached here with the bpf(2) commands BPF_LINK_CREATE,
//! BPF_OBJ_PIN, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD and BPF_LINK_DETACH
//! (numbers and layouts from aya-obj's generated kernel bindings).

use std::ffi::CString;
use std::fs;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, RingBuf};
use aya::programs::SockOps;
use aya::EbpfLoader;
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_link_info};

use crate::args::{UserTimeout, Values};
use crate::cgroup::{self, Cgroup};
use crate::fail::Fail;

#[cfg(heartbeat_bpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sockops.bpf.o"));
#[cfg(not(heartbeat_bpf))]
static OBJECT: &[u8] = &[];

/// Whether this binary carries its BPF program (built with clang).
pub const BUILT_IN: bool = cfg!(heartbeat_bpf);

pub const PROGRAM: &str = "heartbeat_sockops";
const MAP_SETTINGS: &str = "hb_settings";
const MAP_ACTIVE: &str = "hb_active";
const MAP_STATS: &str = "hb_stats";
const MAP_EVENTS: &str = "hb_events";
const MAPS: [&str; 4] = [MAP_SETTINGS, MAP_ACTIVE, MAP_STATS, MAP_EVENTS];
const LINK: &str = "link";
/// The folder of all attachments inside the BPF file system.
pub const PIN_FOLDER: &str = "heartbeat-cgroup";

// struct hb_settings.flags (bpf/sockops.bpf.c).
const HB_IDLE: u32 = 1;
const HB_INTVL: u32 = 2;
const HB_CNT: u32 = 4;
const HB_USER_TIMEOUT: u32 = 8;
const HB_USER_TIMEOUT_AUTO: u32 = 16;

/// struct hb_settings (bpf/sockops.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    pub idle: i32,
    pub intvl: i32,
    pub cnt: i32,
    pub user_timeout: i32,
    pub generation: u32,
}

/// struct hb_stats.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub configured: u64,
    pub failed: u64,
    pub ended: u64,
    pub lost: u64,
    pub last_error: i32,
    pub last_failed_option: u32,
}

/// struct hb_event.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event {
    pub mono_ns: u64,
    pub bytes_received: u64,
    pub bytes_acked: u64,
    pub family: u32,
    pub local_ip: [u32; 4],
    pub remote_ip: [u32; 4],
    pub local_port: u32,
    pub remote_port: u32,
    pub err: i32,
    pub old_state: u32,
    pub total_retrans: u32,
    pub probes: u32,
    pub pad: u32,
}

// SAFETY: plain integers, no padding holes the kernel could not write.
unsafe impl aya::Pod for Settings {}
unsafe impl aya::Pod for Stats {}

// The same sizes and offsets as the C side's _Static_asserts.
const _: () = assert!(mem::size_of::<Settings>() == 24);
const _: () = assert!(mem::size_of::<Stats>() == 40);
const _: () = assert!(mem::size_of::<Event>() == 88);
const _: () = assert!(mem::offset_of!(Event, err) == 68);

impl Event {
    /// Decodes one ring buffer record (None if it is too short).
    pub fn parse(b: &[u8]) -> Option<Event> {
        if b.len() < mem::size_of::<Event>() {
            return None;
        }
        // SAFETY: Event is plain integers; read_unaligned copes with any
        // alignment of the record.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Event>()) })
    }
}

impl Settings {
    /// What the program applies for `v`. `auto` with every timer given is
    /// computed here (the core's deadline); with a timer unset, per socket.
    pub fn of(v: &Values, generation: u32) -> Settings {
        let mut s = Settings {
            generation,
            ..Settings::default()
        };
        if let Some(i) = v.idle {
            s.flags |= HB_IDLE;
            s.idle = i;
        }
        if let Some(n) = v.intvl {
            s.flags |= HB_INTVL;
            s.intvl = n;
        }
        if let Some(c) = v.cnt {
            s.flags |= HB_CNT;
            s.cnt = c;
        }
        match v.user_timeout_ms() {
            // <= INT_MAX (validated or capped).
            Some(ms) => {
                s.flags |= HB_USER_TIMEOUT;
                s.user_timeout = ms as i32;
            }
            None => s.flags |= HB_USER_TIMEOUT_AUTO,
        }
        s
    }

    /// The values back (for `show`): (values, user timeout in ms if fixed).
    pub fn values(&self) -> (Values, Option<u32>) {
        let get = |f: u32, v: i32| (self.flags & f != 0).then_some(v);
        let v = Values {
            idle: get(HB_IDLE, self.idle),
            intvl: get(HB_INTVL, self.intvl),
            cnt: get(HB_CNT, self.cnt),
            user_timeout: UserTimeout::Auto,
        };
        let ms = get(HB_USER_TIMEOUT, self.user_timeout).map(|m| m.max(0) as u32);
        let v = match ms {
            // Fixed and equal to what auto gives: it was auto.
            Some(m) if v.user_timeout_ms() == Some(m) => v,
            Some(m) => Values {
                user_timeout: UserTimeout::Ms(m),
                ..v
            },
            None => v,
        };
        (v, ms)
    }
}

/// The option named by hb_stats.last_failed_option.
pub fn option_name(n: u32) -> &'static str {
    match n {
        1 => "TCP_KEEPIDLE",
        2 => "TCP_KEEPINTVL",
        3 => "TCP_KEEPCNT",
        4 => "TCP_USER_TIMEOUT",
        5 => "SO_KEEPALIVE",
        6 => "reading the timers for --user-timeout auto (bpf_getsockopt)",
        _ => "none",
    }
}

// ---- privileges -----------------------------------------------------------

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether the effective capabilities suffice: CAP_SYS_ADMIN, or CAP_BPF,
/// CAP_PERFMON (reading kernel structures through BTF) and CAP_NET_ADMIN.
fn caps_suffice(eff: u64) -> bool {
    let has = |c: u32| eff & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON) && has(CAP_NET_ADMIN))
}

/// Refuses early, with what to do, when the tool cannot work: no BPF
/// program built in, or not enough privileges.
pub fn preflight(what: &str) -> Result<(), Fail> {
    if !BUILT_IN {
        return Err(Fail::new(
            "this heartbeat-cgroup was built without clang, so it carries no BPF program: \
             install clang and libbpf-dev (Debian: apt-get install clang libbpf-dev) and rebuild",
        ));
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = cap_eff(&status).unwrap_or(0);
    if !caps_suffice(eff) {
        // SAFETY: no arguments.
        let uid = unsafe { libc::geteuid() };
        return Err(Fail::new(format!(
            "{what} needs root: BPF programs and cgroups need CAP_BPF, CAP_PERFMON and \
             CAP_NET_ADMIN (or CAP_SYS_ADMIN), which this process (uid {uid}, CapEff {eff:016x}) \
             does not have; run it as root, e.g. with sudo"
        )));
    }
    Ok(())
}

// ---- errors ----------------------------------------------------------------

/// A hint for what a failure means, from its text and errno.
pub fn hint(text: &str, errno: Option<i32>) -> Option<String> {
    for marker in ["unknown func ", "invalid func "] {
        if let Some(at) = text.find(marker) {
            let name: String = text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '#')
                .collect();
            return Some(format!(
                "the running kernel ({}) lacks the BPF helper {name}, which heartbeat-cgroup \
                 needs (it is tested on Linux 6.18): upgrade the kernel",
                kernel_release()
            ));
        }
    }
    if text.contains("cannot use helper") || text.contains("helper call is not allowed") {
        return Some(format!(
            "the running kernel ({}) does not let sock_ops programs use a helper this program \
             needs (heartbeat-cgroup is tested on Linux 6.18): upgrade the kernel",
            kernel_release()
        ));
    }
    if (text.contains("relocat") || text.contains("BTF") || text.contains("btf"))
        && !Path::new("/sys/kernel/btf/vmlinux").exists()
    {
        return Some(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing): the program reads \
             why a connection ended from the kernel's own structures, which needs a kernel \
             built with CONFIG_DEBUG_INFO_BTF=y"
                .into(),
        );
    }
    if text.contains(MAP_EVENTS) && errno == Some(libc::EINVAL) {
        return Some("the kernel has no BPF ring buffer (Linux 5.8 or later is needed)".into());
    }
    match errno {
        Some(libc::ENOSYS) => Some(
            "the kernel has no bpf() system call (it was built without CONFIG_BPF_SYSCALL, or a \
             seccomp filter forbids it): heartbeat-cgroup cannot work here"
                .into(),
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => Some(
            "the kernel refused: run as root with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or \
             CAP_SYS_ADMIN); inside a container, BPF may be forbidden altogether"
                .into(),
        ),
        _ => None,
    }
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "Linux".into())
}

/// Turns an aya (or io) error into a message: what failed, the error chain
/// (a verifier log is cut to its last lines), and a hint.
fn explain(what: &str, e: &(dyn std::error::Error + 'static)) -> Fail {
    let mut parts = vec![e.to_string()];
    let mut errno = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            errno = errno.or(io.raw_os_error());
        }
        if let Some(src) = err.source() {
            let s = src.to_string();
            if !parts.iter().any(|p| p.contains(&s)) {
                parts.push(s);
            }
        }
        cur = err.source();
    }
    let full = parts.join(": ");
    let mut msg = format!("{what}: ");
    let lines: Vec<&str> = full.lines().collect();
    if lines.len() > 8 {
        msg.push_str(lines[0]);
        msg.push_str("\n  ...\n");
        for l in &lines[lines.len() - 6..] {
            msg.push_str("  ");
            msg.push_str(l);
            msg.push('\n');
        }
        msg.pop();
    } else {
        msg.push_str(&full);
    }
    if let Some(h) = hint(&full, errno) {
        msg.push_str("\n  ");
        msg.push_str(&h);
    }
    Fail(msg)
}

fn io_fail(what: &str, e: io::Error) -> Fail {
    explain(what, &e)
}

// ---- raw bpf(2) ------------------------------------------------------------

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, zero-initialised bpf_attr of the right size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            attr as *mut bpf_attr,
            mem::size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integers; all zero is its "unset".
    unsafe { mem::zeroed() }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// BPF_LINK_CREATE: attaches `prog` to the cgroup as a BPF link (it
/// coexists with other programs on the cgroup, as BPF_F_ALLOW_MULTI does).
fn link_create(prog: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut a = zeroed_attr();
    a.link_create.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    a.link_create.__bindgen_anon_2.target_fd = cgroup.as_raw_fd() as u32;
    a.link_create.attach_type = bpf_attach_type::BPF_CGROUP_SOCK_OPS as u32;
    let fd = sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut a)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    let mut a = zeroed_attr();
    a.__bindgen_anon_4.pathname = p.as_ptr() as u64;
    a.__bindgen_anon_4.bpf_fd = fd.as_raw_fd() as u32;
    sys_bpf(bpf_cmd::BPF_OBJ_PIN, &mut a).map(drop)
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let p = cpath(path)?;
    let mut a = zeroed_attr();
    a.__bindgen_anon_4.pathname = p.as_ptr() as u64;
    let fd = sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut a)?;
    // SAFETY: as in link_create.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// What the kernel says about a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    /// The cgroup it is attached to; 0 once that cgroup is removed.
    pub cgroup_id: u64,
}

fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    // SAFETY: plain C struct of integers.
    let mut info: bpf_link_info = unsafe { mem::zeroed() };
    let mut a = zeroed_attr();
    a.info.bpf_fd = fd.as_raw_fd() as u32;
    a.info.info_len = mem::size_of::<bpf_link_info>() as u32;
    a.info.info = &mut info as *mut bpf_link_info as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    Ok(LinkInfo {
        id: info.id,
        prog_id: info.prog_id,
        // SAFETY: a cgroup link's union member is `cgroup`.
        cgroup_id: unsafe { info.__bindgen_anon_1.cgroup.cgroup_id },
    })
}

/// BPF_LINK_DETACH: detaches at once (the program stops running on the
/// cgroup's new connections before this returns).
fn link_detach(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut a = zeroed_attr();
    a.link_detach.link_fd = fd.as_raw_fd() as u32;
    sys_bpf(bpf_cmd::BPF_LINK_DETACH, &mut a).map(drop)
}

// ---- the BPF file system ---------------------------------------------------

/// The BPF file system to pin in: the mounted one, or /sys/fs/bpf, mounted
/// now (as bpftool does) if none is; it stays mounted.
pub fn bpffs(mount_if_missing: bool) -> Result<Option<PathBuf>, Fail> {
    if let Some(p) = cgroup::bpffs_mount()? {
        return Ok(Some(p));
    }
    if !mount_if_missing {
        return Ok(None);
    }
    let at = Path::new("/sys/fs/bpf");
    let c = cpath(at).map_err(|e| io_fail("bad path", e))?;
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io_fail(
            "no BPF file system is mounted, and mounting one at /sys/fs/bpf failed \
             (mount it: `mount -t bpf bpf /sys/fs/bpf`)",
            io::Error::last_os_error(),
        ));
    }
    eprintln!("heartbeat-cgroup: mounted a BPF file system at /sys/fs/bpf (none was mounted)");
    Ok(Some(at.to_path_buf()))
}

/// One attachment's pins: `<bpffs>/heartbeat-cgroup/<cgroup id>/`.
#[derive(Debug, Clone)]
pub struct Pins {
    pub dir: PathBuf,
    pub cgroup_id: u64,
}

impl Pins {
    pub fn new(bpffs: &Path, cgroup_id: u64) -> Pins {
        Pins {
            dir: bpffs.join(PIN_FOLDER).join(cgroup_id.to_string()),
            cgroup_id,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A complete attachment is pinned here.
    pub fn attached(&self) -> bool {
        self.file(LINK).exists()
    }

    /// Every attachment pinned in `bpffs`, by cgroup id.
    pub fn all(bpffs: &Path) -> Vec<Pins> {
        let mut v: Vec<Pins> = fs::read_dir(bpffs.join(PIN_FOLDER))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
            .map(|id| Pins::new(bpffs, id))
            .collect();
        v.sort_by_key(|p| p.cgroup_id);
        v
    }

    /// Removes every pin and the directory (and the folder if it is then
    /// empty); what is not there is skipped.
    fn remove_all(&self) {
        let _ = fs::remove_file(self.file(LINK));
        for m in MAPS {
            let _ = fs::remove_file(self.file(m));
        }
        let _ = fs::remove_dir(&self.dir);
        if let Some(folder) = self.dir.parent() {
            let _ = fs::remove_dir(folder);
        }
    }
}

// ---- attach, update, detach --------------------------------------------------

#[derive(Debug)]
pub enum Attached {
    /// Loaded and attached now.
    New,
    /// Already attached: the settings were replaced (these were the old
    /// ones).
    Updated(Settings),
}

fn array<V: aya::Pod>(pins: &Pins, name: &str) -> Result<Array<MapData, V>, Fail> {
    let path = pins.file(name);
    let md = MapData::from_pin(&path)
        .map_err(|e| explain(&format!("cannot open {}", path.display()), &e))?;
    Array::try_from(Map::Array(md))
        .map_err(|e| explain(&format!("{} is not the expected map", path.display()), &e))
}

/// Attaches the program to `cg` with `values`, or, if it is attached
/// already, replaces its settings without a gap: the new settings go into
/// the inactive slot, then one write of `hb_active` switches every later
/// connection to them.
pub fn attach(cg: &Cgroup, bpffs: &Path, values: &Values) -> Result<Attached, Fail> {
    let pins = Pins::new(bpffs, cg.id);
    if pins.attached() {
        let mut active: Array<MapData, u32> = array(&pins, MAP_ACTIVE)?;
        let mut settings: Array<MapData, Settings> = array(&pins, MAP_SETTINGS)?;
        let a = active
            .get(&0, 0)
            .map_err(|e| explain("cannot read hb_active", &e))?
            & 1;
        let old = settings
            .get(&a, 0)
            .map_err(|e| explain("cannot read hb_settings", &e))?;
        let new = Settings::of(values, old.generation.wrapping_add(1));
        settings
            .set(1 - a, new, 0)
            .map_err(|e| explain("cannot write hb_settings", &e))?;
        active
            .set(0, 1 - a, 0)
            .map_err(|e| explain("cannot write hb_active", &e))?;
        return Ok(Attached::Updated(old));
    }
    let folder = bpffs.join(PIN_FOLDER);
    // A directory without a link is what an interrupted attach leaves.
    if pins.dir.exists() {
        pins.remove_all();
    }
    // The folder may be removed by a concurrent detach between the two
    // calls: one retry.
    let mut made = fs::create_dir_all(&folder).and_then(|_| fs::create_dir(&pins.dir));
    if matches!(&made, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        made = fs::create_dir_all(&folder).and_then(|_| fs::create_dir(&pins.dir));
    }
    made.map_err(|e| io_fail(&format!("cannot create {}", pins.dir.display()), e))?;
    match load_and_attach(cg, &pins, values) {
        Ok(()) => Ok(Attached::New),
        Err(f) => {
            pins.remove_all();
            Err(f)
        }
    }
}

fn load_and_attach(cg: &Cgroup, pins: &Pins, values: &Values) -> Result<(), Fail> {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK (as bpftool
    // does, lift it; later kernels charge the memory cgroup instead).
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit; failure only matters on old kernels, where
    // the map creation error says so.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .map_err(|e| explain("cannot load the BPF object", &e))?;
    {
        let map = ebpf
            .map_mut(MAP_SETTINGS)
            .ok_or_else(|| Fail::new("the BPF object has no hb_settings map"))?;
        let mut settings: Array<&mut MapData, Settings> =
            Array::try_from(map).map_err(|e| explain("hb_settings", &e))?;
        settings
            .set(0, Settings::of(values, 1), 0)
            .map_err(|e| explain("cannot write hb_settings", &e))?;
    }
    for m in MAPS {
        let map = ebpf
            .map(m)
            .ok_or_else(|| Fail::new(format!("the BPF object has no {m} map")))?;
        map.pin(pins.file(m))
            .map_err(|e| explain(&format!("cannot pin {}", pins.file(m).display()), &e))?;
    }
    let prog: &mut SockOps = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| Fail::new("the BPF object has no heartbeat_sockops program"))?
        .try_into()
        .map_err(|e| explain("heartbeat_sockops", &e))?;
    prog.load()
        .map_err(|e| explain("the kernel refused the BPF program", &e))?;
    let prog_fd = prog.fd().map_err(|e| explain("heartbeat_sockops", &e))?;
    let cgroup_file = cg.open()?;
    let link = link_create(prog_fd.as_fd(), cgroup_file.as_fd()).map_err(|e| {
        io_fail(
            &format!("cannot attach the program to {}", cg.path.display()),
            e,
        )
    })?;
    obj_pin(link.as_fd(), &pins.file(LINK))
        .map_err(|e| io_fail(&format!("cannot pin {}", pins.file(LINK).display()), e))?;
    Ok(())
}

/// Detaches (at once) and removes every pin. Err if nothing was attached.
pub fn detach(pins: &Pins) -> Result<(), Fail> {
    if !pins.dir.exists() {
        return Err(Fail::new(format!(
            "nothing is attached by heartbeat-cgroup (no {})",
            pins.dir.display()
        )));
    }
    if let Ok(fd) = obj_get(&pins.file(LINK)) {
        // A link whose cgroup was removed is detached already (EINVAL or
        // ENOLINK); removing its pin releases it.
        let _ = link_detach(fd.as_fd());
    }
    pins.remove_all();
    if pins.dir.exists() {
        return Err(Fail::new(format!("cannot remove {}", pins.dir.display())));
    }
    Ok(())
}

/// An attachment as `show` prints it.
pub struct State {
    pub link: LinkInfo,
    pub settings: Settings,
    pub stats: Stats,
}

pub fn state(pins: &Pins) -> Result<State, Fail> {
    let path = pins.file(LINK);
    let fd = obj_get(&path).map_err(|e| io_fail(&format!("cannot open {}", path.display()), e))?;
    let link =
        link_info(fd.as_fd()).map_err(|e| io_fail("cannot read the link's information", e))?;
    let active: Array<MapData, u32> = array(pins, MAP_ACTIVE)?;
    let settings: Array<MapData, Settings> = array(pins, MAP_SETTINGS)?;
    let a = active
        .get(&0, 0)
        .map_err(|e| explain("cannot read hb_active", &e))?
        & 1;
    Ok(State {
        link,
        settings: settings
            .get(&a, 0)
            .map_err(|e| explain("cannot read hb_settings", &e))?,
        stats: stats(pins)?,
    })
}

pub fn stats(pins: &Pins) -> Result<Stats, Fail> {
    let s: Array<MapData, Stats> = array(pins, MAP_STATS)?;
    s.get(&0, 0)
        .map_err(|e| explain("cannot read hb_stats", &e))
}

/// The ring buffer of connection ends.
pub fn events(pins: &Pins) -> Result<RingBuf<MapData>, Fail> {
    let path = pins.file(MAP_EVENTS);
    let md = MapData::from_pin(&path)
        .map_err(|e| explain(&format!("cannot open {}", path.display()), &e))?;
    RingBuf::try_from(Map::RingBuf(md))
        .map_err(|e| explain(&format!("{} is not a ring buffer", path.display()), &e))
}

/// The path of the cgroup whose id is `id`, found through a file handle
/// (cgroup2 exports cgroups by id); None if it no longer exists.
pub fn cgroup_path(mount: &Path, id: u64) -> Option<PathBuf> {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        id: u64,
    }
    const FILEID_KERNFS: i32 = 0xfe;
    let m = fs::File::open(mount).ok()?;
    let mut h = Handle {
        bytes: 8,
        kind: FILEID_KERNFS,
        id,
    };
    // SAFETY: h is a valid struct file_handle with 8 bytes of handle.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            m.as_raw_fd(),
            &mut h as *mut Handle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new fd owned here.
    let f = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_carry_exactly_what_was_given() {
        let v = Values {
            idle: Some(1),
            intvl: Some(1),
            cnt: Some(3),
            user_timeout: UserTimeout::Auto,
        };
        let s = Settings::of(&v, 7);
        assert_eq!(
            s,
            Settings {
                flags: HB_IDLE | HB_INTVL | HB_CNT | HB_USER_TIMEOUT,
                idle: 1,
                intvl: 1,
                cnt: 3,
                user_timeout: 4000,
                generation: 7
            }
        );
        assert_eq!(s.values(), (v, Some(4000)));
        // Unset timers: auto is computed per socket by the program.
        let v = Values {
            idle: Some(5),
            ..Values::UNSET
        };
        let s = Settings::of(&v, 1);
        assert_eq!(s.flags, HB_IDLE | HB_USER_TIMEOUT_AUTO);
        assert_eq!(s.values(), (v, None));
        // An explicit user timeout, also one equal to nothing automatic.
        let v = Values {
            user_timeout: UserTimeout::Ms(0),
            ..Values::UNSET
        };
        let s = Settings::of(&v, 1);
        assert_eq!((s.flags, s.user_timeout), (HB_USER_TIMEOUT, 0));
        assert_eq!(s.values(), (v, Some(0)));
    }

    #[test]
    fn event_records_decode() {
        let mut b = [0u8; 88];
        b[0..8].copy_from_slice(&123u64.to_ne_bytes());
        b[68..72].copy_from_slice(&110i32.to_ne_bytes());
        let e = Event::parse(&b[..]).unwrap();
        assert_eq!((e.mono_ns, e.err), (123, 110));
        assert!(Event::parse(&b[..87]).is_none());
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert!(caps_suffice(0x1ff_ffff_ffff));
        assert!(caps_suffice(1 << CAP_SYS_ADMIN));
        assert!(caps_suffice(
            (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN)
        ));
        assert!(!caps_suffice((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)));
        assert!(!caps_suffice(0));
        assert_eq!(cap_eff("CapEff: zz\n"), None);
    }

    #[test]
    fn hints_name_the_missing_piece() {
        let h = hint(
            "... 12: (85) call bpf_ringbuf_reserve#131\nunknown func bpf_ringbuf_reserve#131\n",
            Some(22),
        )
        .unwrap();
        assert!(
            h.contains("lacks the BPF helper bpf_ringbuf_reserve#131"),
            "{h}"
        );
        let h = hint(
            "program of this type cannot use helper bpf_skc_to_tcp_sock#137",
            Some(22),
        )
        .unwrap();
        assert!(
            h.contains("does not let sock_ops programs use a helper"),
            "{h}"
        );
        let h = hint(
            "failed to create map `hb_events` with code -1: Invalid argument",
            Some(libc::EINVAL),
        )
        .unwrap();
        assert!(h.contains("ring buffer"), "{h}");
        assert!(hint("x", Some(libc::ENOSYS))
            .unwrap()
            .contains("no bpf() system call"));
        assert!(hint("x", Some(libc::EPERM)).unwrap().contains("root"));
        assert_eq!(hint("x", Some(libc::EBADF)), None);
    }
}
