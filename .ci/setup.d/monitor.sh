#!/usr/bin/env bash
# The monitor's deep checks (c-tests/monitor/deep.sh) run ThreadSanitizer
# with the standard library instrumented (-Zbuild-std), which needs the
# nightly's rust-src component. Idempotent; if it cannot be fetched, the TSan
# steps print SKIP (ASan and loom still run).
set -u
if cargo +nightly --version >/dev/null 2>&1; then
    sysroot=$(rustc +nightly --print sysroot)
    if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
        rustup component add rust-src --toolchain nightly ||
            echo "rust-src could not be added: the monitor's TSan checks will be skipped"
    fi
fi
exit 0
