#!/usr/bin/env bash
# cargo-fuzz, for the fuzz targets in fuzz/ (c-tests/preload/deep.sh). The
# nightly toolchain it drives is preinstalled. Idempotent: does nothing if
# cargo-fuzz is already installed.
set -euo pipefail
command -v cargo-fuzz >/dev/null && exit 0
cargo install cargo-fuzz --version 0.13.2 --locked
