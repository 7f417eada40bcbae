//! Generates, from the doc comments of the C ABI (src/ffi/):
//!
//! - include/heartbeat.h, with cbindgen, plus the version macros
//!   (HEARTBEAT_VERSION...) from Cargo.toml's version;
//! - the man pages man/man3/*.3 and man/man7/*.7 (man/generate.rs);
//!
//! and gives rustc's shared object its soname. Copies of both go to OUT_DIR,
//! where the freshness tests compare them with the committed files (the
//! newest OUT_DIR/generated stamp says which OUT_DIR); the committed files
//! are rewritten only when their bytes change.

use std::path::PathBuf;

#[path = "man/generate.rs"]
mod man;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let version = env("CARGO_PKG_VERSION");
    let major = env("CARGO_PKG_VERSION_MAJOR");
    for f in [
        "src",
        "cbindgen.toml",
        "man/generate.rs",
        "README.md",
        "CHANGELOG.md",
        "docs/keepalive.md",
        "docs/preload.md",
        "preload/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rustc-link-arg=-Wl,-soname,libheartbeat.so.{major}");

    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        "{}{}",
        version_macros(
            &version,
            &major,
            &env("CARGO_PKG_VERSION_MINOR"),
            &env("CARGO_PKG_VERSION_PATCH")
        ),
        config.after_includes.take().unwrap_or_default()
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    bindings.write_to_file(out.join("heartbeat.h"));
    bindings.write_to_file(dir.join("include/heartbeat.h"));

    let mut header = Vec::new();
    bindings.write(&mut header);
    let header = String::from_utf8(header).expect("the header is UTF-8");
    let functions: Vec<String> = bindings.dynamic_symbols_names().map(String::from).collect();
    let read =
        |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let preload_toml = read("preload/Cargo.toml");
    let pages = man::pages(&man::Inputs {
        header: &header,
        functions: &functions,
        version: &version,
        description: &env("CARGO_PKG_DESCRIPTION"),
        changelog: &read("CHANGELOG.md"),
        readme: &read("README.md"),
        keepalive_md: &read("docs/keepalive.md"),
        preload_md: &read("docs/preload.md"),
        preload_description: &toml_string(&preload_toml, "description"),
    })
    .unwrap_or_else(|e| panic!("man pages: {e}"));
    for d in [out.join("man"), dir.join("man")] {
        man::sync(&d, &pages).unwrap_or_else(|e| panic!("writing {}: {e}", d.display()));
    }
    // Marks this OUT_DIR as the newest generation (the freshness tests pick
    // the most recently stamped one: unchanged files keep their old times).
    std::fs::write(out.join("generated"), "").expect("OUT_DIR/generated");
}

/// The version macros of the header, documented like every other item.
fn version_macros(version: &str, major: &str, minor: &str, patch: &str) -> String {
    format!(
        r#"
/**
 * Major version of this header (X in X.Y.Z), from Cargo.toml. It is the
 * number in the soname, libheartbeat.so.X, and changes only with an
 * incompatible ABI change (docs/abi.md).
 */
#define HEARTBEAT_VERSION_MAJOR {major}

/**
 * Minor version of this header (Y in X.Y.Z): it grows when functions or
 * constants are added.
 */
#define HEARTBEAT_VERSION_MINOR {minor}

/**
 * Patch version of this header (Z in X.Y.Z): fixes only.
 */
#define HEARTBEAT_VERSION_PATCH {patch}

/**
 * Version of this header, "X.Y.Z". `heartbeat_version()` returns the
 * version of the library actually loaded, which differs when a program
 * runs with another libheartbeat than the one it was compiled against.
 */
#define HEARTBEAT_VERSION "{version}"
"#
    )
}

/// A `key = "value"` string of a Cargo.toml's [package] section.
fn toml_string(toml: &str, key: &str) -> String {
    toml.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("preload/Cargo.toml has no {key}"))
}
