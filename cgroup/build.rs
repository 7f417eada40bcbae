//! Compiles the BPF program (bpf/sockops.bpf.c) with clang into OUT_DIR;
//! src/bpf.rs embeds the object.
//!
//! Without clang, or without libbpf's headers (Debian: `libbpf-dev`), the
//! tool is built without its BPF program (cfg `heartbeat_bpf` unset) so that
//! `cargo build --workspace` still works for the library's users: the
//! binary then says so and refuses every command, `--version` says so, the
//! Makefile neither stages nor installs it, and the tests skip it (or fail,
//! in CI). Any other compiler error fails the build. `CLANG=/path/to/clang`
//! picks the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "bpf/sockops.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rustc-check-cfg=cfg(heartbeat_bpf)");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let obj = out.join("sockops.bpf.o");

    let multiarch = match Command::new(&clang).arg("-print-multiarch").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            without(&format!(
                "`{clang}` not found: heartbeat-cgroup is built without its BPF program \
                 (install clang and libbpf-dev, then rebuild)"
            ));
            return;
        }
    };
    let mut cmd = Command::new(&clang);
    cmd.args(["-target", "bpf", "-O2", "-g", "-Wall", "-Wextra", "-Werror"]);
    // <linux/types.h> includes <asm/types.h>, which Debian keeps in the
    // multiarch directory that -target bpf does not search.
    if !multiarch.is_empty() {
        cmd.arg(format!("-idirafter/usr/include/{multiarch}"));
    }
    cmd.args(["-c", SRC, "-o"]).arg(&obj);
    let o = cmd.output().expect("running clang");
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("bpf/bpf_helpers.h") && err.contains("not found") {
            without(
                "libbpf's headers (bpf/bpf_helpers.h) not found: heartbeat-cgroup is built \
                 without its BPF program (install libbpf-dev, then rebuild)",
            );
            return;
        }
        panic!("clang failed to compile {SRC}:\n{err}");
    }
    println!("cargo:rustc-cfg=heartbeat_bpf");
}

fn without(why: &str) {
    println!("cargo:warning={why}");
}
