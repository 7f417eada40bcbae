//! The settings, read once from the environment and parsed strictly.
//!
//! Parsing is a pure function of a lookup closure, so that the unit tests
//! never touch the process environment.

use std::ffi::{c_int, OsStr, OsString};
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

/// What the library does in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// None of HEARTBEAT_IDLE, _INTVL, _CNT, _USER_TIMEOUT is set: nothing
    /// to do (the library behaves as if it were not loaded).
    Unset { debug: bool },
    /// A setting is invalid, or a kernel default could not be read: the
    /// message says which; every socket is left untouched.
    Invalid(String),
    /// Configure sockets.
    Active(Settings),
}

pub const IDLE: &str = "HEARTBEAT_IDLE";
pub const INTVL: &str = "HEARTBEAT_INTVL";
pub const CNT: &str = "HEARTBEAT_CNT";
pub const USER_TIMEOUT: &str = "HEARTBEAT_USER_TIMEOUT";
pub const WITHIN: &str = "HEARTBEAT_WITHIN";
pub const HOOKS: &str = "HEARTBEAT_HOOKS";
pub const DEBUG: &str = "HEARTBEAT_DEBUG";

/// The accepted values of each variable, as printed in error messages.
const IDLE_RANGE: &str = "whole seconds 1..32767";
const INTVL_RANGE: &str = "whole seconds 1..32767";
const CNT_RANGE: &str = "probes 1..127";
const USER_TIMEOUT_RANGE: &str = "milliseconds 0..2147483647, or auto";
const HOOKS_RANGE: &str = "a comma-separated list of socket, connect, listen, accept";
const DEBUG_RANGE: &str = "0 or 1";

/// A plain decimal number: ASCII digits only (no sign, no blanks, no
/// suffix), within `min..=max`.
fn number(v: &OsStr, min: i64, max: i64) -> Option<i64> {
    let b = v.as_encoded_bytes();
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = b.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    (min..=max).contains(&n).then_some(n)
}

fn hooks(v: &OsStr) -> Option<Hooks> {
    let s = v.to_str()?;
    let mut set = 0u8;
    for word in s.split(',') {
        let (_, h) = Hooks::NAMES.iter().find(|(name, _)| *name == word)?;
        set |= h.0;
    }
    Some(Hooks(set))
}

fn invalid(name: &str, value: &OsStr, accepted: &str) -> State {
    let mut shown = value.to_string_lossy().into_owned();
    if shown.chars().count() > 40 {
        shown = shown.chars().take(40).collect::<String>() + "...";
    }
    State::Invalid(format!(
        "{name}={shown:?} is invalid (accepted: {accepted}); no socket of this process will be changed"
    ))
}

/// Builds the state from a variable lookup and a source of kernel defaults
/// (read only when a timer variable is unset).
pub fn parse(
    var: impl Fn(&str) -> Option<OsString>,
    defaults: impl FnOnce() -> heartbeat::Result<Config>,
) -> State {
    let idle = var(IDLE);
    let intvl = var(INTVL);
    let cnt = var(CNT);
    let ut = var(USER_TIMEOUT);
    let within_v = var(WITHIN);
    let hooks_v = var(HOOKS);
    let debug_v = var(DEBUG);

    // Every variable is checked, in this order, before anything is decided:
    // a bad HEARTBEAT_HOOKS is reported even when no timer is set.
    let mut timers: [Option<c_int>; 3] = [None; 3];
    for (slot, (name, v, max, range)) in timers.iter_mut().zip([
        (IDLE, &idle, 32767, IDLE_RANGE),
        (INTVL, &intvl, 32767, INTVL_RANGE),
        (CNT, &cnt, 127, CNT_RANGE),
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
    let user_timeout = match &ut {
        None => None,
        Some(v) if v.as_encoded_bytes() == b"auto" => None,
        Some(v) => match number(v, 0, i64::from(c_int::MAX)) {
            Some(n) => Some(n as u32),
            None => return invalid(USER_TIMEOUT, v, USER_TIMEOUT_RANGE),
        },
    };
    // The whole configuration from one deadline, computed by the library
    // itself (heartbeat_config_within()), which also says what is valid.
    let within = match &within_v {
        None => None,
        Some(v) => match number(v, 0, i64::from(u32::MAX))
            .and_then(|ms| keepalive::config_within(ms as u32, SlowReaders::TimeOut).ok())
        {
            Some(cfg) => Some(cfg),
            None => {
                let range = format!(
                    "milliseconds {}..{}",
                    keepalive::WITHIN_MIN_MS,
                    keepalive::WITHIN_MAX_MS
                );
                return invalid(WITHIN, v, &range);
            }
        },
    };
    let hooks = match &hooks_v {
        None => Hooks::DEFAULT,
        Some(v) => match hooks(v) {
            Some(h) => h,
            None => return invalid(HOOKS, v, HOOKS_RANGE),
        },
    };
    let debug = match &debug_v {
        None => false,
        Some(v) => match number(v, 0, 1) {
            Some(n) => n == 1,
            None => return invalid(DEBUG, v, DEBUG_RANGE),
        },
    };

    let timers_set = [
        (IDLE, &idle),
        (INTVL, &intvl),
        (CNT, &cnt),
        (USER_TIMEOUT, &ut),
    ];
    if let Some(cfg) = within {
        // It decides all four: a second source would be a guess.
        if let Some((name, _)) = timers_set.iter().find(|(_, v)| v.is_some()) {
            return State::Invalid(format!(
                "{WITHIN} cannot be combined with {name} (it sets idle, interval, count and user timeout itself); \
                 no socket of this process will be changed"
            ));
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
            Err(e) => {
                let unset = [(IDLE, i), (INTVL, n), (CNT, c)]
                    .iter()
                    .find(|(_, v)| v.is_none())
                    .map_or(IDLE, |(name, _)| *name);
                return State::Invalid(format!(
                    "{unset} is unset and the kernel's default could not be read: {e} \
                     (errno {}); set {IDLE}, {INTVL} and {CNT}; no socket of this process will be changed",
                    e.errno()
                ));
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
    if let Err(e) = cfg.validate() {
        return State::Invalid(format!(
            "the resulting configuration (idle {idle_secs} s, intvl {intvl_secs} s, cnt {cnt}) is out of range: {e}; \
             no socket of this process will be changed"
        ));
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

    fn kernel() -> heartbeat::Result<Config> {
        Ok(Config {
            enabled: false,
            idle_secs: 7200,
            intvl_secs: 75,
            cnt: 9,
            user_timeout_ms: 0,
        })
    }

    fn run(vars: &[(&str, &str)]) -> State {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        parse(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            kernel,
        )
    }

    fn active(vars: &[(&str, &str)]) -> Settings {
        match run(vars) {
            State::Active(s) => s,
            other => panic!("{vars:?}: {other:?}"),
        }
    }

    fn invalid_msg(vars: &[(&str, &str)]) -> String {
        match run(vars) {
            State::Invalid(m) => m,
            other => panic!("{vars:?}: {other:?}"),
        }
    }

    #[test]
    fn nothing_set_is_unset() {
        assert_eq!(run(&[]), State::Unset { debug: false });
        assert_eq!(
            run(&[(HOOKS, "accept"), (DEBUG, "1")]),
            State::Unset { debug: true }
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
        let st = parse(
            |n| match n {
                IDLE | INTVL | CNT => Some("2".into()),
                _ => None,
            },
            || panic!("defaults read although every timer is set"),
        );
        assert!(matches!(st, State::Active(_)));
    }

    #[test]
    fn unreadable_defaults_leave_everything_untouched() {
        let st = parse(
            |n| (n == CNT).then(|| "4".into()),
            || Err(Error::Idle(libc::ENOENT)),
        );
        match st {
            State::Invalid(m) => {
                assert!(m.starts_with("HEARTBEAT_IDLE is unset"), "{m}");
                assert!(m.contains("errno 2"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // Kernel defaults out of our range (a sysctl of 0 is impossible, but
        // be safe): reported, not applied.
        let st = parse(
            |n| (n == IDLE).then(|| "4".into()),
            || {
                Ok(Config {
                    cnt: 1000,
                    ..kernel().unwrap()
                })
            },
        );
        assert!(matches!(st, State::Invalid(_)), "{st:?}");
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
        // A bad setting is reported even if no timer is set.
        assert!(invalid_msg(&[(HOOKS, "read")]).starts_with("HEARTBEAT_HOOKS=\"read\""));
        // Long values are shortened in the message.
        let long = "9".repeat(200);
        assert!(invalid_msg(&[(IDLE, &long)]).len() < 200);
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
            |n| (n == WITHIN).then(|| "5000".into()),
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
