//! The settings, read once from the environment and parsed strictly.
//!
//! Parsing is a pure function of a lookup closure, so that the unit tests
//! and the fuzzer (`fuzz/fuzz_targets/preload_config.rs`, which includes
//! this file as a module) never touch the process environment. It allocates
//! nothing: values are borrowed from the lookup (the process environment, in
//! the library), and a problem is a small value that formats itself into
//! whatever buffer the caller gives it. This module uses only `std`, `libc`
//! and the `heartbeat` crate.

use std::ffi::{c_int, OsStr};
use std::fmt;

use heartbeat::keepalive::{self, Config, SlowReaders};

/// Which intercepted calls configure a socket (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks(u8);

impl Hooks {
    pub const SOCKET: Hooks = Hooks(1);
    pub const CONNECT: Hooks = Hooks(2);
    pub const LISTEN: Hooks = Hooks(4);
    pub const ACCEPT: Hooks = Hooks(8);
    /// `connect,listen`: outgoing connections, and listening sockets, whose
    /// accepted connections inherit the options from the kernel.
    pub const DEFAULT: Hooks = Hooks(2 | 4);
    const NAMES: [(&'static str, Hooks); 4] = [
        ("socket", Hooks::SOCKET),
        ("connect", Hooks::CONNECT),
        ("listen", Hooks::LISTEN),
        ("accept", Hooks::ACCEPT),
    ];

    pub fn contains(self, h: Hooks) -> bool {
        self.0 & h.0 == h.0
    }
}

impl fmt::Display for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, h) in Hooks::NAMES {
            if self.contains(h) {
                f.write_str(if first { "" } else { "," })?;
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A complete, valid configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// What `heartbeat::keepalive::apply` sets (enabled is always true).
    pub cfg: Config,
    pub hooks: Hooks,
    pub debug: bool,
}

impl fmt::Display for Settings {
    /// The debug log's settings line; every value in the variables' own
    /// syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cfg;
        write!(
            f,
            "idle={} intvl={} cnt={} user_timeout_ms={} hooks={}",
            c.idle_secs, c.intvl_secs, c.cnt, c.user_timeout_ms, self.hooks
        )
    }
}

/// What the library does in this process. `'a`: the values looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// None of HEARTBEAT_IDLE, _INTVL, _CNT, _USER_TIMEOUT is set, and the
    /// other variables are valid: nothing to do.
    Unset { debug: bool },
    /// A setting is invalid, or a kernel default could not be read: every
    /// socket is left untouched; the problem says why.
    Invalid(Problem<'a>),
    /// Configure sockets.
    Active(Settings),
}

/// Why the library changes no socket (see [`State::Invalid`]). Its
/// `Display` is the one line the library reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem<'a> {
    /// A variable's value is not accepted.
    Value {
        name: &'static str,
        value: &'a [u8],
        accepted: &'static str,
    },
    /// A timer variable is unset and the kernel's default for it could not
    /// be read.
    Defaults {
        unset: &'static str,
        error: heartbeat::Error,
    },
    /// HEARTBEAT_WITHIN is set together with one of the variables it
    /// replaces (`other`).
    Combined { other: &'static str },
    /// The kernel's defaults, with the variables that are set, make a
    /// configuration out of range.
    Range {
        idle: c_int,
        intvl: c_int,
        cnt: c_int,
        error: heartbeat::Error,
    },
}

/// How many characters of a rejected value a message shows.
const SHOWN_CHARS: usize = 40;

/// A value as messages show it: a quoted string, invalid UTF-8 as U+FFFD,
/// `"` `\` and control characters escaped, at most 40 characters and `...`
/// (inside the quotes) if there were more.
pub struct Quoted<'a>(pub &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        quoted(f, self.0)
    }
}

fn quoted(f: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    let mut shown = 0;
    let mut rest = value;
    let mut put = |f: &mut fmt::Formatter<'_>, c: char| -> Result<bool, fmt::Error> {
        if shown == SHOWN_CHARS {
            return Ok(false);
        }
        shown += 1;
        if c == '"' || c == '\\' || c.is_control() {
            write!(f, "{}", c.escape_debug())?;
        } else {
            write!(f, "{c}")?;
        }
        Ok(true)
    };
    f.write_str("\"")?;
    let complete = 'outer: loop {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let (ok, tail) = rest.split_at(e.valid_up_to());
                // SAFETY: from_utf8 just validated these bytes.
                let s = unsafe { std::str::from_utf8_unchecked(ok) };
                (s, e.error_len().unwrap_or(tail.len()))
            }
        };
        for c in valid.chars() {
            if !put(f, c)? {
                break 'outer false;
            }
        }
        if bad == 0 {
            break true;
        }
        if !put(f, char::REPLACEMENT_CHARACTER)? {
            break false;
        }
        rest = &rest[valid.len() + bad..];
        if rest.is_empty() {
            break true;
        }
    };
    f.write_str(if complete { "\"" } else { "...\"" })
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::Value {
                name,
                value,
                accepted,
            } => {
                write!(
                    f,
                    "{name}={} is invalid (accepted: {accepted})",
                    Quoted(value)
                )?;
            }
            Problem::Defaults { unset, error } => write!(
                f,
                "{unset} is unset and the kernel's default could not be read: {error} \
                 (errno {}); set {IDLE}, {INTVL} and {CNT}",
                error.errno()
            )?,
            Problem::Combined { other } => write!(
                f,
                "{WITHIN} cannot be combined with {other} (it sets idle, interval, count \
                 and user timeout itself)"
            )?,
            Problem::Range {
                idle,
                intvl,
                cnt,
                error,
            } => write!(
                f,
                "the resulting configuration (idle {idle} s, intvl {intvl} s, cnt {cnt}) \
                 is out of range: {error}"
            )?,
        }
        f.write_str("; no socket of this process will be changed")
    }
}

pub const IDLE: &str = "HEARTBEAT_IDLE";
pub const INTVL: &str = "HEARTBEAT_INTVL";
pub const CNT: &str = "HEARTBEAT_CNT";
pub const USER_TIMEOUT: &str = "HEARTBEAT_USER_TIMEOUT";
/// "Dead within this many milliseconds": the four above, computed by
/// `keepalive::config_within` (heartbeat_config_within()).
pub const WITHIN: &str = "HEARTBEAT_WITHIN";
pub const HOOKS: &str = "HEARTBEAT_HOOKS";
pub const DEBUG: &str = "HEARTBEAT_DEBUG";
/// Where diagnostics go (read by the library, not by [`parse`]).
pub const LOG: &str = "HEARTBEAT_LOG";
/// The timer variables: if none is set, the library configures nothing.
pub const TIMERS: [&str; 5] = [IDLE, INTVL, CNT, USER_TIMEOUT, WITHIN];

/// The accepted values of each variable, as printed in error messages.
const IDLE_RANGE: &str = "whole seconds 1..32767";
const INTVL_RANGE: &str = "whole seconds 1..32767";
const CNT_RANGE: &str = "probes 1..127";
const USER_TIMEOUT_RANGE: &str = "milliseconds 0..2147483647, or auto";
/// `keepalive::WITHIN_MIN_MS..=WITHIN_MAX_MS` (a unit test keeps them equal).
const WITHIN_RANGE: &str = "milliseconds 2785..86400000";
const HOOKS_RANGE: &str = "a comma-separated list of socket, connect, listen, accept";
const DEBUG_RANGE: &str = "0 or 1";

/// A plain decimal number: ASCII digits only (no sign, no blanks, no
/// suffix; any number of leading zeros), within `min..=max`. Exact for any
/// length: the value is compared with `max` after every digit, so it never
/// overflows (`max` is at most `c_int::MAX`).
pub fn number(v: &[u8], min: i64, max: i64) -> Option<i64> {
    debug_assert!(max <= i64::from(c_int::MAX));
    if v.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in v {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
        if n > max {
            return None;
        }
    }
    (n >= min).then_some(n)
}

fn hooks(v: &[u8]) -> Option<Hooks> {
    let mut set = 0u8;
    for word in v.split(|&b| b == b',') {
        let (_, h) = Hooks::NAMES
            .iter()
            .find(|(name, _)| name.as_bytes() == word)?;
        set |= h.0;
    }
    Some(Hooks(set))
}

fn invalid<'a>(name: &'static str, value: &'a [u8], accepted: &'static str) -> State<'a> {
    State::Invalid(Problem::Value {
        name,
        value,
        accepted,
    })
}

/// Builds the state from a variable lookup and a source of kernel defaults
/// (read only when a timer variable is set and another is not).
pub fn parse<'a>(
    var: impl Fn(&str) -> Option<&'a OsStr>,
    defaults: impl FnOnce() -> heartbeat::Result<Config>,
) -> State<'a> {
    let get = |name: &str| var(name).map(OsStr::as_encoded_bytes);
    let idle = get(IDLE);
    let intvl = get(INTVL);
    let cnt = get(CNT);
    let ut = get(USER_TIMEOUT);
    let within_v = get(WITHIN);
    let hooks_v = get(HOOKS);
    let debug_v = get(DEBUG);

    // Every variable is checked, in this order, before anything is decided:
    // a bad HEARTBEAT_HOOKS is found even when no timer is set.
    let mut timers: [Option<c_int>; 3] = [None; 3];
    for (slot, (name, v, max, range)) in timers.iter_mut().zip([
        (IDLE, idle, 32767, IDLE_RANGE),
        (INTVL, intvl, 32767, INTVL_RANGE),
        (CNT, cnt, 127, CNT_RANGE),
    ]) {
        if let Some(v) = v {
            match number(v, 1, max) {
                // In range, so it fits a c_int.
                Some(n) => *slot = Some(n as c_int),
                None => return invalid(name, v, range),
            }
        }
    }
    // None: auto.
    let user_timeout = match ut {
        None => None,
        Some(b"auto") => None,
        Some(v) => match number(v, 0, i64::from(c_int::MAX)) {
            Some(n) => Some(n as u32),
            None => return invalid(USER_TIMEOUT, v, USER_TIMEOUT_RANGE),
        },
    };
    // The whole configuration from one deadline, computed by the library
    // itself (heartbeat_config_within()), which also says what is valid.
    let within = match within_v {
        None => None,
        Some(v) => match number(v, 0, i64::from(keepalive::WITHIN_MAX_MS))
            .and_then(|ms| keepalive::config_within(ms as u32, SlowReaders::TimeOut).ok())
        {
            Some(cfg) => Some(cfg),
            None => return invalid(WITHIN, v, WITHIN_RANGE),
        },
    };
    let hooks = match hooks_v {
        None => Hooks::DEFAULT,
        Some(v) => match hooks(v) {
            Some(h) => h,
            None => return invalid(HOOKS, v, HOOKS_RANGE),
        },
    };
    let debug = match debug_v {
        None => false,
        Some(v) => match number(v, 0, 1) {
            Some(n) => n == 1,
            None => return invalid(DEBUG, v, DEBUG_RANGE),
        },
    };

    let timers_set = [(IDLE, idle), (INTVL, intvl), (CNT, cnt), (USER_TIMEOUT, ut)];
    if let Some(cfg) = within {
        // It decides all four: a second source would be a guess.
        if let Some((other, _)) = timers_set.iter().find(|(_, v)| v.is_some()) {
            return State::Invalid(Problem::Combined { other });
        }
        return State::Active(Settings { cfg, hooks, debug });
    }
    if timers_set.iter().all(|(_, v)| v.is_none()) {
        return State::Unset { debug };
    }
    // Unset timers keep the values a new socket has anyway: the kernel's
    // defaults of this network namespace.
    let [mut i, mut n, mut c] = timers;
    if timers.iter().any(Option::is_none) {
        let d = match defaults() {
            Ok(d) => d,
            Err(error) => {
                let unset = [(IDLE, i), (INTVL, n), (CNT, c)]
                    .iter()
                    .find(|(_, v)| v.is_none())
                    .map_or(IDLE, |(name, _)| *name);
                return State::Invalid(Problem::Defaults { unset, error });
            }
        };
        i = i.or(Some(d.idle_secs));
        n = n.or(Some(d.intvl_secs));
        c = c.or(Some(d.cnt));
    }
    let (idle_secs, intvl_secs, cnt) = (i.unwrap_or(0), n.unwrap_or(0), c.unwrap_or(0));
    let cfg = Config {
        enabled: true,
        idle_secs,
        intvl_secs,
        cnt,
        user_timeout_ms: user_timeout
            .unwrap_or_else(|| auto_user_timeout(idle_secs, intvl_secs, cnt)),
    };
    // Kernel defaults could be anything a sysctl accepted.
    if let Err(error) = cfg.validate() {
        return State::Invalid(Problem::Range {
            idle: idle_secs,
            intvl: intvl_secs,
            cnt,
            error,
        });
    }
    State::Active(Settings { cfg, hooks, debug })
}

/// `auto`: the deadline of an idle connection, as `heartbeat_deadline_ms()`
/// computes it, capped at INT_MAX (the largest TCP_USER_TIMEOUT).
pub fn auto_user_timeout(idle: c_int, intvl: c_int, cnt: c_int) -> u32 {
    keepalive::deadline_ms(idle, intvl, cnt).min(c_int::MAX as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heartbeat::Error;
    use std::ffi::OsString;

    fn kernel() -> heartbeat::Result<Config> {
        Ok(Config {
            enabled: false,
            idle_secs: 7200,
            intvl_secs: 75,
            cnt: 9,
            user_timeout_ms: 0,
        })
    }

    /// The state as owned values, for assertions.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Unset { debug: bool },
        Invalid(String),
        Active(Settings),
    }

    fn outcome(st: State<'_>) -> Outcome {
        match st {
            State::Unset { debug } => Outcome::Unset { debug },
            State::Invalid(p) => Outcome::Invalid(p.to_string()),
            State::Active(s) => Outcome::Active(s),
        }
    }

    fn run_os(vars: &[(&str, OsString)]) -> Outcome {
        outcome(parse(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_os_str())
            },
            kernel,
        ))
    }

    fn run(vars: &[(&str, &str)]) -> Outcome {
        let vars: Vec<(&str, OsString)> = vars.iter().map(|(k, v)| (*k, v.into())).collect();
        run_os(&vars)
    }

    fn active(vars: &[(&str, &str)]) -> Settings {
        match run(vars) {
            Outcome::Active(s) => s,
            other => panic!("{vars:?}: {other:?}"),
        }
    }

    fn invalid_msg(vars: &[(&str, &str)]) -> String {
        match run(vars) {
            Outcome::Invalid(m) => m,
            other => panic!("{vars:?}: {other:?}"),
        }
    }

    #[test]
    fn nothing_set_is_unset() {
        assert_eq!(run(&[]), Outcome::Unset { debug: false });
        assert_eq!(
            run(&[(HOOKS, "accept"), (DEBUG, "1")]),
            Outcome::Unset { debug: true }
        );
    }

    #[test]
    fn full_settings_and_auto_user_timeout() {
        let s = active(&[(IDLE, "30"), (INTVL, "5"), (CNT, "3")]);
        assert_eq!(
            s.cfg,
            Config {
                enabled: true,
                idle_secs: 30,
                intvl_secs: 5,
                cnt: 3,
                user_timeout_ms: 45_000
            }
        );
        assert_eq!(s.hooks, Hooks::DEFAULT);
        assert!(!s.debug);
        assert_eq!(
            s.to_string(),
            "idle=30 intvl=5 cnt=3 user_timeout_ms=45000 hooks=connect,listen"
        );
        let s = active(&[
            (IDLE, "1"),
            (INTVL, "1"),
            (CNT, "3"),
            (USER_TIMEOUT, "auto"),
        ]);
        assert_eq!(s.cfg.user_timeout_ms, 4000);
        let s = active(&[(IDLE, "1"), (USER_TIMEOUT, "0")]);
        assert_eq!(s.cfg.user_timeout_ms, 0);
        let s = active(&[(USER_TIMEOUT, "2147483647")]);
        assert_eq!(s.cfg.user_timeout_ms, 2_147_483_647);
        // The largest deadline exceeds INT_MAX: auto is capped.
        let s = active(&[(IDLE, "32767"), (INTVL, "32767"), (CNT, "127")]);
        assert_eq!(s.cfg.user_timeout_ms, c_int::MAX as u32);
        assert_eq!(auto_user_timeout(32767, 32767, 127), c_int::MAX as u32);
    }

    #[test]
    fn unset_timers_take_the_kernel_defaults() {
        let s = active(&[(IDLE, "60")]);
        assert_eq!((s.cfg.idle_secs, s.cfg.intvl_secs, s.cnt()), (60, 75, 9));
        assert_eq!(s.cfg.user_timeout_ms, (60 + 75 * 9) * 1000);
        let s = active(&[(USER_TIMEOUT, "auto")]);
        assert_eq!((s.cfg.idle_secs, s.cfg.intvl_secs, s.cnt()), (7200, 75, 9));
        // No default is read when every timer is set.
        let two = OsString::from("2");
        let st = parse(
            |n| match n {
                IDLE | INTVL | CNT => Some(two.as_os_str()),
                _ => None,
            },
            || panic!("defaults read although every timer is set"),
        );
        assert!(matches!(st, State::Active(_)));
    }

    #[test]
    fn unreadable_defaults_leave_everything_untouched() {
        let four = OsString::from("4");
        let st = parse(
            |n| (n == CNT).then_some(four.as_os_str()),
            || Err(Error::Idle(libc::ENOENT)),
        );
        match outcome(st) {
            Outcome::Invalid(m) => {
                assert!(m.starts_with("HEARTBEAT_IDLE is unset"), "{m}");
                assert!(m.contains("errno 2"), "{m}");
                assert!(m.ends_with("; no socket of this process will be changed"));
            }
            other => panic!("{other:?}"),
        }
        // Kernel defaults out of our range (a sysctl of 0 is impossible, but
        // be safe): reported, not applied.
        let st = parse(
            |n| (n == IDLE).then_some(four.as_os_str()),
            || {
                Ok(Config {
                    cnt: 1000,
                    ..kernel().unwrap()
                })
            },
        );
        match outcome(st) {
            Outcome::Invalid(m) => assert!(
                m.starts_with("the resulting configuration (idle 4 s, intvl 75 s, cnt 1000)"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strict_numbers() {
        for bad in [
            "",
            "0",
            "32768",
            "-1",
            "+5",
            " 5",
            "5 ",
            "5s",
            "0x10",
            "1e3",
            "99999999999",
            "٣",
            "00000000000000000000032768",
            "99999999999999999999999999999999999999999999",
        ] {
            let m = invalid_msg(&[(IDLE, bad)]);
            assert!(
                m.starts_with("HEARTBEAT_IDLE=") && m.contains("1..32767"),
                "{bad:?}: {m}"
            );
        }
        for good in ["1", "007", "32767"] {
            active(&[(IDLE, good)]);
        }
        assert!(invalid_msg(&[(INTVL, "0")]).starts_with("HEARTBEAT_INTVL=\"0\" is invalid"));
        assert!(invalid_msg(&[(CNT, "128")]).contains("probes 1..127"));
        assert!(invalid_msg(&[(USER_TIMEOUT, "2147483648")]).contains("or auto"));
        assert!(invalid_msg(&[(USER_TIMEOUT, "AUTO")]).starts_with("HEARTBEAT_USER_TIMEOUT="));
        assert!(invalid_msg(&[(IDLE, "1"), (DEBUG, "yes")]).starts_with("HEARTBEAT_DEBUG="));
        // A bad setting is found even if no timer is set.
        assert!(invalid_msg(&[(HOOKS, "read")]).starts_with("HEARTBEAT_HOOKS=\"read\""));
    }

    /// Issue 8, defect 14: leading zeros are plain digits, whatever their
    /// number; overflow is still rejected exactly.
    #[test]
    fn leading_zeros_are_accepted() {
        assert_eq!(active(&[(IDLE, "00000000030")]).cfg.idle_secs, 30);
        let zeros = "0".repeat(1000);
        assert_eq!(
            active(&[(IDLE, &format!("{zeros}32767"))]).cfg.idle_secs,
            32767
        );
        assert_eq!(active(&[(INTVL, &format!("{zeros}1"))]).cfg.intvl_secs, 1);
        assert_eq!(active(&[(CNT, &format!("{zeros}127"))]).cfg.cnt, 127);
        assert_eq!(
            active(&[(USER_TIMEOUT, &format!("{zeros}2147483647"))])
                .cfg
                .user_timeout_ms,
            2_147_483_647
        );
        assert_eq!(
            active(&[(USER_TIMEOUT, "000000000000")])
                .cfg
                .user_timeout_ms,
            0
        );
        assert!(active(&[(IDLE, "1"), (DEBUG, "0001")]).debug);
        assert!(!active(&[(IDLE, "1"), (DEBUG, "00")]).debug);
        // One more than the maximum, however padded, is rejected.
        for (name, over) in [
            (IDLE, "32768"),
            (INTVL, "32768"),
            (CNT, "128"),
            (USER_TIMEOUT, "2147483648"),
            (DEBUG, "2"),
        ] {
            for pad in ["", "0", "0000000000", zeros.as_str()] {
                let v = format!("{pad}{over}");
                // A timer set besides, for HEARTBEAT_DEBUG.
                let vars = [(INTVL, "1"), (name, v.as_str())];
                let vars = if name == INTVL { &vars[1..] } else { &vars[..] };
                assert!(
                    invalid_msg(vars).starts_with(&format!("{name}=\"")),
                    "{name}={v}"
                );
            }
        }
        // Zero alone is still zero (out of range for the timers).
        assert!(invalid_msg(&[(IDLE, "0000")]).starts_with("HEARTBEAT_IDLE=\"0000\""));
    }

    #[test]
    fn number_is_exact() {
        assert_eq!(number(b"0", 0, 1), Some(0));
        assert_eq!(
            number(b"2147483647", 0, i64::from(c_int::MAX)),
            Some(2147483647)
        );
        assert_eq!(number(b"2147483648", 0, i64::from(c_int::MAX)), None);
        assert_eq!(
            number(b"99999999999999999999", 0, i64::from(c_int::MAX)),
            None
        );
        assert_eq!(number(b"12a", 0, 1000), None);
        assert_eq!(number(b"", 0, 1000), None);
        assert_eq!(number(b"5", 6, 1000), None);
    }

    #[test]
    fn messages_show_the_value_safely() {
        // Long values are shortened (inside the quotes).
        let long = "9".repeat(200);
        let m = invalid_msg(&[(IDLE, &long)]);
        assert!(
            m.starts_with(&format!(
                "HEARTBEAT_IDLE=\"{}...\" is invalid",
                "9".repeat(40)
            )),
            "{m}"
        );
        // Exactly 40 characters: shown whole.
        let forty = "x".repeat(40);
        assert!(
            invalid_msg(&[(IDLE, &forty)]).starts_with(&format!("HEARTBEAT_IDLE=\"{forty}\" is"))
        );
        // Quotes, backslashes and control characters are escaped.
        assert!(invalid_msg(&[(IDLE, "a\"b\\c\nd")])
            .starts_with(r#"HEARTBEAT_IDLE="a\"b\\c\nd" is invalid"#));
        // Non-ASCII text is shown as it is; invalid UTF-8 as U+FFFD.
        assert!(invalid_msg(&[(IDLE, "٣")]).starts_with("HEARTBEAT_IDLE=\"٣\""));
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'1', 0xff, b'2', 0xc3]);
        match run_os(&[(IDLE, bad)]) {
            Outcome::Invalid(m) => {
                assert!(
                    m.starts_with("HEARTBEAT_IDLE=\"1\u{fffd}2\u{fffd}\" is invalid"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn within_range_text_matches_the_library() {
        assert_eq!(
            WITHIN_RANGE,
            format!(
                "milliseconds {}..{}",
                keepalive::WITHIN_MIN_MS,
                keepalive::WITHIN_MAX_MS
            )
        );
    }

    #[test]
    fn within_is_the_library_s_configuration() {
        for ms in ["10000", "3000", "0002785", "86400000"] {
            let s = active(&[(WITHIN, ms), (HOOKS, "accept")]);
            let want = keepalive::config_within(ms.parse().unwrap(), SlowReaders::TimeOut).unwrap();
            assert_eq!(s.cfg, want, "{ms}");
            assert_eq!(s.hooks, Hooks::ACCEPT);
        }
        assert_eq!(active(&[(WITHIN, "10000")]).cfg.user_timeout_ms, 8000);
        // No kernel default is read: the deadline decides everything.
        let st = parse(
            |n| (n == WITHIN).then(|| OsStr::new("5000")),
            || panic!("defaults read for HEARTBEAT_WITHIN"),
        );
        assert!(matches!(st, State::Active(_)), "{st:?}");
    }

    #[test]
    fn within_out_of_range_or_combined_is_invalid() {
        for bad in [
            "",
            "0",
            "2784",
            "86400001",
            "4294967295",
            "4294967296",
            "10s",
            "-1",
            " 10000",
        ] {
            let m = invalid_msg(&[(WITHIN, bad)]);
            assert!(
                m.starts_with("HEARTBEAT_WITHIN=") && m.contains("milliseconds 2785..86400000"),
                "{bad:?}: {m}"
            );
        }
        for other in [IDLE, INTVL, CNT, USER_TIMEOUT] {
            let v = if other == USER_TIMEOUT { "auto" } else { "5" };
            let m = invalid_msg(&[(WITHIN, "10000"), (other, v)]);
            assert!(
                m.starts_with("HEARTBEAT_WITHIN cannot be combined with") && m.contains(other),
                "{other}: {m}"
            );
        }
        // The other variables are still checked first.
        assert!(invalid_msg(&[(WITHIN, "10000"), (HOOKS, "read")]).starts_with("HEARTBEAT_HOOKS="));
        assert!(invalid_msg(&[(WITHIN, "1"), (IDLE, "5")]).starts_with("HEARTBEAT_WITHIN="));
    }

    #[test]
    fn hooks_lists() {
        let h = |v: &str| active(&[(IDLE, "1"), (HOOKS, v)]).hooks;
        assert_eq!(h("connect,listen"), Hooks::DEFAULT);
        assert_eq!(h("accept"), Hooks::ACCEPT);
        assert_eq!(h("socket,accept,socket").to_string(), "socket,accept");
        assert_eq!(
            h("socket,connect,listen,accept").to_string(),
            "socket,connect,listen,accept"
        );
        for bad in [
            "",
            ",",
            "connect,",
            "Connect",
            "connect listen",
            "accept4",
            "none",
        ] {
            assert!(
                invalid_msg(&[(IDLE, "1"), (HOOKS, bad)]).starts_with("HEARTBEAT_HOOKS="),
                "{bad:?}"
            );
        }
    }

    impl Settings {
        fn cnt(&self) -> c_int {
            self.cfg.cnt
        }
    }
}
