//! Generates include/heartbeat.h with cbindgen and gives the shared object
//! its soname.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let version = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("version");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rustc-link-arg=-Wl,-soname,libheartbeat.so.{version}");

    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    // The copy in OUT_DIR is what the freshness test compares with the
    // committed include/heartbeat.h; the copy in include/ is rewritten only
    // when its bytes change, so a rebuild does not touch an up-to-date file.
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("heartbeat.h");
    bindings.write_to_file(&out);
    bindings.write_to_file(dir.join("include/heartbeat.h"));
}
