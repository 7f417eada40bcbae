//! Fuzzes the preload library's environment parser, `preload/src/config.rs`
//! (included here as a module: the preload crate is a cdylib whose hooks
//! must not be linked into this program).
//!
//! The input is text, one `NAME=VALUE` per line (so that the corpus in
//! fuzz/corpus/preload_config/ is readable): NAME one of the six
//! HEARTBEAT_* variables the parser reads (VALUE any bytes but a newline;
//! the last line for a name wins), or `defaults=IDLE,INTVL,CNT` for the
//! kernel's defaults (7200,75,9 if absent; anything else that does not
//! parse: unreadable), or `zeros=N` for the padding property. Other lines
//! are ignored.
//!
//! Properties, for any values of the six variables and any kernel
//! defaults (or none readable):
//! - `parse` never panics, and a problem's message always formats, names
//!   the variable it is about and ends with the promise that no socket is
//!   changed;
//! - a configuration is produced only if a timer variable is set, and it
//!   always passes `Config::validate` (keepalive on);
//! - each set number is exactly what a reference decimal parser reads
//!   (leading zeros allowed, no sign, no overflow), each unset timer the
//!   kernel's default, and the defaults are read only if a timer is unset;
//! - round trip: the settings line the debug log prints, fed back as the
//!   variables, gives the same settings without reading the defaults;
//! - leading zeros added to any number change nothing.
#![no_main]

use std::cell::Cell;
use std::ffi::{c_int, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use heartbeat::keepalive::Config;
use libfuzzer_sys::fuzz_target;

#[path = "../../preload/src/config.rs"]
#[allow(dead_code)]
mod config;
use config::{Problem, State};

const NAMES: [&str; 6] = [
    config::IDLE,
    config::INTVL,
    config::CNT,
    config::USER_TIMEOUT,
    config::HOOKS,
    config::DEBUG,
];

struct Input {
    /// IDLE, INTVL, CNT, USER_TIMEOUT, HOOKS, DEBUG; None: unset.
    vars: [Option<Vec<u8>>; 6],
    /// The kernel's idle, intvl, cnt; None: unreadable.
    defaults: Option<(c_int, c_int, c_int)>,
    /// Leading zeros for the padding property.
    zeros: usize,
}

fn input(data: &[u8]) -> Input {
    let mut inp = Input {
        vars: Default::default(),
        defaults: Some((7200, 75, 9)),
        zeros: 3,
    };
    for line in data.split(|&b| b == b'\n') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        if let Some(i) = NAMES.iter().position(|n| n.as_bytes() == key) {
            inp.vars[i] = Some(value.to_vec());
        } else if key == b"defaults" {
            let v: Option<Vec<c_int>> = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.split(',').map(|n| n.parse().ok()).collect());
            inp.defaults = match v.as_deref() {
                Some(&[i, n, c]) => Some((i, n, c)),
                _ => None,
            };
        } else if key == b"zeros" {
            inp.zeros = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
                % 64;
        }
    }
    inp
}

/// A decimal reader written independently of `config::number`: digits
/// only, leading zeros skipped, then at most 10 digits (more exceed every
/// maximum, which is below 2^31).
fn reference(v: &[u8], min: u64, max: u64) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digits: &[u8] = match v.iter().position(|&d| d != b'0') {
        Some(i) => &v[i..],
        None => b"0",
    };
    if digits.len() > 10 {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

fn run<'a>(
    vars: &'a [Option<OsString>; 6],
    defaults: Option<(c_int, c_int, c_int)>,
    read: &Cell<bool>,
) -> State<'a> {
    config::parse(
        |name| {
            let i = NAMES.iter().position(|n| *n == name)?;
            vars[i].as_deref()
        },
        || {
            read.set(true);
            match defaults {
                Some((idle_secs, intvl_secs, cnt)) => Ok(Config {
                    enabled: false,
                    idle_secs,
                    intvl_secs,
                    cnt,
                    user_timeout_ms: 0,
                }),
                None => Err(heartbeat::Error::Idle(libc::ENOENT)),
            }
        },
    )
}

/// What two states have in common when only their inputs' spelling
/// differs: the variant, the variable named, the settings.
fn same(a: &State<'_>, b: &State<'_>) -> bool {
    match (a, b) {
        (
            State::Invalid(Problem::Value { name: x, .. }),
            State::Invalid(Problem::Value { name: y, .. }),
        ) => x == y,
        (State::Invalid(x), State::Invalid(y)) => {
            std::mem::discriminant(x) == std::mem::discriminant(y)
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = input(data);
    let vars: [Option<OsString>; 6] = input.vars.map(|v| v.map(OsString::from_vec));
    let read = Cell::new(false);
    let st = run(&vars, input.defaults, &read);
    let timers_set = vars[..4].iter().any(Option::is_some);

    match st {
        State::Invalid(p) => {
            let m = p.to_string();
            assert!(
                m.ends_with("; no socket of this process will be changed"),
                "{m}"
            );
            if let Problem::Value { name, .. } = p {
                assert!(m.starts_with(&format!("{name}=\"")), "{m}");
            }
            // A value is shown cut to 40 characters (at most 10 bytes each,
            // escaped): messages stay short.
            assert!(m.len() < 600, "{} bytes", m.len());
        }
        State::Unset { .. } => assert!(!timers_set),
        State::Active(s) => {
            assert!(timers_set);
            assert_eq!(s.cfg.validate(), Ok(()));
            assert!(s.cfg.enabled);
            // Each set timer is its value; each unset one the kernel's.
            let d = input.defaults;
            let want = |i: usize, max: u64, def: Option<c_int>| -> Option<c_int> {
                match &vars[i] {
                    Some(v) => reference(v.as_bytes(), 1, max).map(|n| n as c_int),
                    None => def,
                }
            };
            assert_eq!(Some(s.cfg.idle_secs), want(0, 32767, d.map(|d| d.0)));
            assert_eq!(Some(s.cfg.intvl_secs), want(1, 32767, d.map(|d| d.1)));
            assert_eq!(Some(s.cfg.cnt), want(2, 127, d.map(|d| d.2)));
            match vars[3].as_deref().map(OsStr::as_bytes) {
                None | Some(b"auto") => assert_eq!(
                    s.cfg.user_timeout_ms,
                    config::auto_user_timeout(s.cfg.idle_secs, s.cfg.intvl_secs, s.cfg.cnt)
                ),
                Some(v) => assert_eq!(
                    Some(u64::from(s.cfg.user_timeout_ms)),
                    reference(v, 0, c_int::MAX as u64)
                ),
            }
            match &vars[5] {
                Some(v) => assert_eq!(reference(v.as_bytes(), 0, 1), Some(u64::from(s.debug))),
                None => assert!(!s.debug),
            }
            assert_eq!(read.get(), vars[..3].iter().any(Option::is_none));

            // Round trip through the debug log's settings line.
            let line = s.to_string();
            let mut back: [Option<OsString>; 6] = Default::default();
            for field in line.split(' ') {
                let (k, v) = field.split_once('=').expect("key=value");
                let i = ["idle", "intvl", "cnt", "user_timeout_ms", "hooks"]
                    .iter()
                    .position(|n| *n == k)
                    .expect("a known key");
                back[i] = Some(v.into());
            }
            back[5] = Some(if s.debug { "1" } else { "0" }.into());
            let again = Cell::new(false);
            assert_eq!(run(&back, None, &again), State::Active(s), "{line}");
            assert!(!again.get(), "defaults read with every timer set");
        }
    }

    // Any run of leading zeros before a number changes nothing.
    let zeros = vec![b'0'; input.zeros];
    let mut padded = vars.clone();
    for (i, v) in padded.iter_mut().enumerate() {
        if i == 4 {
            continue; // HOOKS is not a number
        }
        if let Some(x) = v {
            if !x.is_empty() && x.as_bytes().iter().all(u8::is_ascii_digit) {
                let mut b = zeros.clone();
                b.extend_from_slice(x.as_bytes());
                *x = OsString::from_vec(b);
            }
        }
    }
    let read2 = Cell::new(false);
    let st2 = run(&padded, input.defaults, &read2);
    assert!(same(&st, &st2), "{st:?} vs {st2:?}");
});
