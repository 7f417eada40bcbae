//! The command line, parsed strictly: every value is checked with the core's
//! own validation (`heartbeat::keepalive::Config::validate`) before anything
//! is loaded or created, and a bad one is refused with the preload
//! library's message style (`--idle "30s" is invalid (accepted: whole
//! seconds 1..32767)`).
//!
//! Hand-written: five subcommands and five options do not need a parser
//! crate.

use std::ffi::{c_int, OsString};

use heartbeat::keepalive::{self, Config};
use heartbeat::Error;

/// The user timeout: a number of milliseconds, or the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTimeout {
    /// `auto` (also when not given): the deadline of the socket's timers.
    Auto,
    /// Milliseconds, 0..=INT_MAX (0: the kernel's own behaviour).
    Ms(u32),
}

/// What to set on every connection; `None`: the socket keeps what it has
/// (the defaults of its network namespace, or what its program chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values {
    pub idle: Option<c_int>,
    pub intvl: Option<c_int>,
    pub cnt: Option<c_int>,
    pub user_timeout: UserTimeout,
}

impl Values {
    pub const UNSET: Values = Values {
        idle: None,
        intvl: None,
        cnt: None,
        user_timeout: UserTimeout::Auto,
    };

    /// The user timeout in milliseconds if it is known here: given, or
    /// `auto` with all three timers given (the deadline, capped at INT_MAX
    /// as the preload library does). `None`: auto, computed per socket.
    pub fn user_timeout_ms(&self) -> Option<u32> {
        match (self.user_timeout, self.idle, self.intvl, self.cnt) {
            (UserTimeout::Ms(ms), ..) => Some(ms),
            (UserTimeout::Auto, Some(i), Some(n), Some(c)) => {
                Some(keepalive::deadline_ms(i, n, c).min(c_int::MAX as u32))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run { values: Values, argv: Vec<OsString> },
    Attach { cgroup: OsString, values: Values },
    Detach { target: Target },
    Show { cgroup: Option<OsString> },
    Watch { cgroup: OsString, json: bool },
    Help,
    Version,
}

/// What `detach` removes: a cgroup's attachment, or one whose cgroup is
/// gone (by the cgroup id that `show` lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Cgroup(OsString),
    Id(u64),
}

pub const USAGE: &str = "\
usage: heartbeat-cgroup run [OPTIONS] [--] COMMAND [ARGS...]
       heartbeat-cgroup attach CGROUP [OPTIONS]
       heartbeat-cgroup detach CGROUP | --id ID
       heartbeat-cgroup show [CGROUP]
       heartbeat-cgroup watch CGROUP [--json]

TCP keepalive for every connection of a cgroup, set from outside by a BPF
sock_ops program as each connection is established; `watch` reports why
each connection ended.

OPTIONS (unset timers keep the defaults of each socket's network namespace):
  --idle S                seconds of silence before the first probe (1..32767)
  --intvl S               seconds between probes (1..32767)
  --cnt N                 unanswered probes before the connection fails (1..127)
  --user-timeout MS|auto  TCP_USER_TIMEOUT in ms (0..2147483647); auto (the
                          default): the deadline, idle + intvl * cnt

CGROUP is a cgroup2 directory (/sys/fs/cgroup/system.slice/x.service) or a
path inside the cgroup2 hierarchy (/system.slice/x.service).
See heartbeat-cgroup(8).";

const IDLE_RANGE: &str = "whole seconds 1..32767";
const INTVL_RANGE: &str = "whole seconds 1..32767";
const CNT_RANGE: &str = "probes 1..127";
const USER_TIMEOUT_RANGE: &str = "milliseconds 0..2147483647, or auto";

/// A plain decimal number: ASCII digits only (no sign, no blanks, no unit),
/// at most 10 of them.
fn digits(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn invalid(opt: &str, raw: &str, accepted: &str) -> String {
    let mut shown = raw.to_string();
    if shown.chars().count() > 40 {
        shown = shown.chars().take(40).collect::<String>() + "...";
    }
    format!("{opt} {shown:?} is invalid (accepted: {accepted})")
}

/// A valid configuration with every field in range, to check one field at
/// a time with the core's validation.
const PROBE: Config = Config {
    enabled: true,
    idle_secs: 1,
    intvl_secs: 1,
    cnt: 1,
    user_timeout_ms: 0,
};

#[derive(Clone, Copy)]
enum Field {
    Idle,
    Intvl,
    Cnt,
    UserTimeout,
}

impl Field {
    fn of(opt: &str) -> Option<Field> {
        Some(match opt {
            "--idle" => Field::Idle,
            "--intvl" => Field::Intvl,
            "--cnt" => Field::Cnt,
            "--user-timeout" => Field::UserTimeout,
            _ => return None,
        })
    }
    fn accepted(self) -> &'static str {
        match self {
            Field::Idle => IDLE_RANGE,
            Field::Intvl => INTVL_RANGE,
            Field::Cnt => CNT_RANGE,
            Field::UserTimeout => USER_TIMEOUT_RANGE,
        }
    }
    /// The core's error for this field.
    fn is(self, e: Error) -> bool {
        matches!(
            (self, e),
            (Field::Idle, Error::Idle(_))
                | (Field::Intvl, Error::Intvl(_))
                | (Field::Cnt, Error::Cnt(_))
                | (Field::UserTimeout, Error::UserTimeout(_))
        )
    }
}

/// Checks one value with `Config::validate` (the core's ranges); `None`:
/// the user timeout's `auto`.
fn value(field: Field, opt: &str, raw: &str) -> Result<Option<i64>, String> {
    if let (Field::UserTimeout, "auto") = (field, raw) {
        return Ok(None);
    }
    let bad = || invalid(opt, raw, field.accepted());
    let n = digits(raw).ok_or_else(bad)?;
    let mut c = PROBE;
    match field {
        Field::Idle => c.idle_secs = c_int::try_from(n).map_err(|_| bad())?,
        Field::Intvl => c.intvl_secs = c_int::try_from(n).map_err(|_| bad())?,
        Field::Cnt => c.cnt = c_int::try_from(n).map_err(|_| bad())?,
        Field::UserTimeout => c.user_timeout_ms = u32::try_from(n).map_err(|_| bad())?,
    }
    match c.validate() {
        Ok(()) => Ok(Some(n)),
        Err(e) if field.is(e) => Err(bad()),
        // Only the probed field differs from a valid configuration.
        Err(e) => Err(format!("{opt} {raw:?}: {e}")),
    }
}

fn utf8(a: &OsString) -> Result<&str, String> {
    a.to_str()
        .ok_or_else(|| format!("{:?} is not valid UTF-8", a.to_string_lossy()))
}

/// Takes `--opt VALUE` or `--opt=VALUE` if `arg` is one of the value
/// options; returns whether it was.
fn take_value(
    arg: &str,
    rest: &mut std::vec::IntoIter<OsString>,
    values: &mut Values,
    seen: &mut [bool; 4],
) -> Result<bool, String> {
    let (opt, inline) = match arg.split_once('=') {
        Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
        _ => (arg, None),
    };
    let Some(field) = Field::of(opt) else {
        return Ok(false);
    };
    let raw = match inline {
        Some(v) => v,
        None => match rest.next() {
            Some(v) => utf8(&v)
                .map_err(|_| invalid(opt, &v.to_string_lossy(), field.accepted()))?
                .to_string(),
            None => {
                return Err(format!(
                    "{opt} needs a value (accepted: {})",
                    field.accepted()
                ))
            }
        },
    };
    let slot = &mut seen[field as usize];
    if *slot {
        return Err(format!("{opt} is given twice"));
    }
    *slot = true;
    // In range (checked by value()), so the conversions are exact.
    match (field, value(field, opt, &raw)?) {
        (Field::UserTimeout, None) => values.user_timeout = UserTimeout::Auto,
        (Field::UserTimeout, Some(n)) => values.user_timeout = UserTimeout::Ms(n as u32),
        (_, None) => unreachable!("only the user timeout takes auto"),
        (Field::Idle, Some(n)) => values.idle = Some(n as c_int),
        (Field::Intvl, Some(n)) => values.intvl = Some(n as c_int),
        (Field::Cnt, Some(n)) => values.cnt = Some(n as c_int),
    }
    Ok(true)
}

fn unknown(arg: &str) -> String {
    format!("unknown option {arg:?} (see heartbeat-cgroup --help)")
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut it = args.into_iter().collect::<Vec<_>>().into_iter();
    let Some(sub) = it.next() else {
        return Err("no command given (see heartbeat-cgroup --help)".into());
    };
    let sub = utf8(&sub)?.to_string();
    let mut values = Values::UNSET;
    let mut seen = [false; 4];
    let mut positional: Vec<OsString> = Vec::new();
    let mut json = false;
    let mut id: Option<u64> = None;
    match sub.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        "run" => {
            while let Some(a) = it.next() {
                let s = a.to_str().unwrap_or("");
                if s == "--" {
                    break;
                }
                if !s.starts_with('-') || s == "-" {
                    positional.push(a);
                    break;
                }
                if !take_value(s, &mut it, &mut values, &mut seen)? {
                    return Err(unknown(s));
                }
            }
            positional.extend(it);
            if positional.is_empty() {
                return Err(
                    "run: no COMMAND given (heartbeat-cgroup run [OPTIONS] -- COMMAND [ARGS...])"
                        .into(),
                );
            }
            return Ok(Command::Run {
                values,
                argv: positional,
            });
        }
        "attach" | "detach" | "show" | "watch" => {}
        _ => {
            return Err(format!(
                "unknown command {sub:?} (see heartbeat-cgroup --help)"
            ))
        }
    }
    let mut options_done = false;
    while let Some(a) = it.next() {
        let s = a.to_str().unwrap_or("");
        if options_done || !s.starts_with('-') || s == "-" {
            positional.push(a);
            continue;
        }
        if s == "--" {
            options_done = true;
            continue;
        }
        match (sub.as_str(), s) {
            ("attach", _) if take_value(s, &mut it, &mut values, &mut seen)? => {}
            ("watch", "--json") => json = true,
            ("detach", "--id") => {
                let v = it
                    .next()
                    .ok_or("--id needs a value (a cgroup id, as `show` lists)")?;
                let v = v.to_string_lossy();
                id = Some(
                    digits(&v)
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| invalid("--id", &v, "a cgroup id, as `show` lists"))?,
                );
            }
            _ => return Err(unknown(s)),
        }
    }
    let one = |what: &str| -> Result<OsString, String> {
        match positional.len() {
            0 => Err(format!(
                "{sub}: no {what} given (see heartbeat-cgroup --help)"
            )),
            1 => Ok(positional[0].clone()),
            _ => Err(format!(
                "{sub}: one {what} expected, {} given",
                positional.len()
            )),
        }
    };
    Ok(match sub.as_str() {
        "attach" => Command::Attach {
            cgroup: one("CGROUP")?,
            values,
        },
        "detach" => match id {
            Some(id) if positional.is_empty() => Command::Detach {
                target: Target::Id(id),
            },
            Some(_) => return Err("detach: give a CGROUP or --id ID, not both".into()),
            None => Command::Detach {
                target: Target::Cgroup(one("CGROUP")?),
            },
        },
        "show" => Command::Show {
            cgroup: if positional.is_empty() {
                None
            } else {
                Some(one("CGROUP")?)
            },
        },
        _ => Command::Watch {
            cgroup: one("CGROUP")?,
            json,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    fn attach_values(args: &[&str]) -> Result<Values, String> {
        let mut a = vec!["attach", "/cg"];
        a.extend_from_slice(args);
        match p(&a)? {
            Command::Attach { values, .. } => Ok(values),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_takes_options_then_the_command() {
        let c = p(&[
            "run",
            "--idle",
            "1",
            "--intvl=1",
            "--cnt",
            "3",
            "--",
            "prog",
            "--idle",
            "x",
        ])
        .unwrap();
        let Command::Run { values, argv } = c else {
            panic!()
        };
        assert_eq!(
            values,
            Values {
                idle: Some(1),
                intvl: Some(1),
                cnt: Some(3),
                user_timeout: UserTimeout::Auto
            }
        );
        assert_eq!(values.user_timeout_ms(), Some(4000));
        assert_eq!(argv, ["prog", "--idle", "x"].map(OsString::from));
        // The first non-option starts the command, without --.
        let Command::Run { argv, values } = p(&["run", "--cnt", "2", "sleep", "--cnt"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(argv, ["sleep", "--cnt"].map(OsString::from));
        assert_eq!(
            values.user_timeout_ms(),
            None,
            "auto with unset timers: per socket"
        );
        assert!(p(&["run"]).unwrap_err().contains("no COMMAND"));
        assert!(p(&["run", "--idle", "1", "--"])
            .unwrap_err()
            .contains("no COMMAND"));
        assert!(p(&["run", "--bogus", "x"])
            .unwrap_err()
            .starts_with("unknown option \"--bogus\""));
    }

    #[test]
    fn every_invalid_value_is_named_with_its_range() {
        for (opt, bad, range) in [
            ("--idle", "30s", "whole seconds 1..32767"),
            ("--idle", "0", "whole seconds 1..32767"),
            ("--idle", "32768", "whole seconds 1..32767"),
            ("--idle", "-1", "whole seconds 1..32767"),
            ("--idle", "", "whole seconds 1..32767"),
            ("--idle", " 5", "whole seconds 1..32767"),
            ("--idle", "+5", "whole seconds 1..32767"),
            ("--idle", "0x10", "whole seconds 1..32767"),
            ("--idle", "99999999999", "whole seconds 1..32767"),
            ("--intvl", "0", "whole seconds 1..32767"),
            ("--intvl", "32768", "whole seconds 1..32767"),
            ("--cnt", "0", "probes 1..127"),
            ("--cnt", "128", "probes 1..127"),
            (
                "--user-timeout",
                "-1",
                "milliseconds 0..2147483647, or auto",
            ),
            (
                "--user-timeout",
                "2147483648",
                "milliseconds 0..2147483647, or auto",
            ),
            (
                "--user-timeout",
                "AUTO",
                "milliseconds 0..2147483647, or auto",
            ),
            (
                "--user-timeout",
                "4294967296",
                "milliseconds 0..2147483647, or auto",
            ),
        ] {
            let want = format!("{opt} {bad:?} is invalid (accepted: {range})");
            assert_eq!(attach_values(&[opt, bad]).unwrap_err(), want);
            let inline = format!("{opt}={bad}");
            assert_eq!(attach_values(&[&inline]).unwrap_err(), want);
            let mut r = vec!["run", opt, bad, "--", "true"];
            assert_eq!(p(&r).unwrap_err(), want);
            r.clear();
        }
        assert_eq!(
            attach_values(&["--idle"]).unwrap_err(),
            "--idle needs a value (accepted: whole seconds 1..32767)"
        );
        assert_eq!(
            attach_values(&["--cnt", "1", "--cnt", "2"]).unwrap_err(),
            "--cnt is given twice"
        );
        let long = "9".repeat(60);
        assert!(attach_values(&["--idle", &long])
            .unwrap_err()
            .contains("...\" is invalid"));
    }

    #[test]
    fn limits_and_user_timeout() {
        let v = attach_values(&["--idle", "32767", "--intvl", "32767", "--cnt", "127"]).unwrap();
        // The largest deadline exceeds INT_MAX: auto is capped, as in the
        // preload library.
        assert_eq!(v.user_timeout_ms(), Some(c_int::MAX as u32));
        let v = attach_values(&["--idle", "007", "--user-timeout", "0"]).unwrap();
        assert_eq!((v.idle, v.user_timeout), (Some(7), UserTimeout::Ms(0)));
        assert_eq!(v.user_timeout_ms(), Some(0));
        let v = attach_values(&["--user-timeout", "2147483647"]).unwrap();
        assert_eq!(v.user_timeout_ms(), Some(2_147_483_647));
        let v = attach_values(&["--user-timeout", "auto", "--cnt", "1"]).unwrap();
        assert_eq!(
            (v.user_timeout, v.user_timeout_ms()),
            (UserTimeout::Auto, None)
        );
        assert_eq!(attach_values(&[]).unwrap(), Values::UNSET);
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            p(&["watch", "/cg", "--json"]).unwrap(),
            Command::Watch {
                cgroup: "/cg".into(),
                json: true
            }
        );
        assert_eq!(p(&["show"]).unwrap(), Command::Show { cgroup: None });
        assert_eq!(
            p(&["detach", "--id", "42"]).unwrap(),
            Command::Detach {
                target: Target::Id(42)
            }
        );
        assert_eq!(
            p(&["detach", "/cg"]).unwrap(),
            Command::Detach {
                target: Target::Cgroup("/cg".into())
            }
        );
        assert!(p(&["detach", "--id", "x"])
            .unwrap_err()
            .starts_with("--id \"x\" is invalid"));
        assert!(p(&["detach", "/cg", "--id", "1"])
            .unwrap_err()
            .contains("not both"));
        assert!(p(&["attach"]).unwrap_err().contains("no CGROUP"));
        assert!(p(&["attach", "/a", "/b"]).unwrap_err().contains("2 given"));
        assert!(p(&["detach", "/cg", "--idle", "1"])
            .unwrap_err()
            .starts_with("unknown option"));
        assert!(p(&["show", "/cg", "--json"])
            .unwrap_err()
            .starts_with("unknown option"));
        assert!(p(&["frob"]).unwrap_err().starts_with("unknown command"));
        assert!(p(&[]).unwrap_err().starts_with("no command"));
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
    }
}
