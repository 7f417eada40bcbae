//! Link arguments of libheartbeat_preload.so.
//!
//! rustc exports from a cdylib every `#[no_mangle]` function of every crate
//! it links, so the `heartbeat_*` functions of the `heartbeat` rlib would be
//! exported too, and a preloaded copy of them would interpose the real
//! libheartbeat.so of a program that links it. `--exclude-libs ALL` makes
//! every symbol that comes from an archive (the rlibs, std included) local;
//! the hooks are defined in this crate's own object files, so they, and only
//! they, stay exported. It works with rust-lld (the default linker) and with
//! GNU ld, after rustc's own version script; a test checks the exported set.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libheartbeat_preload.so");
}
