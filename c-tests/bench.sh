#!/usr/bin/env bash
# Runs every benchmark of libheartbeat. Figures and ratios only: nothing here
# passes or fails on timing. Suites live in c-tests/bench-*.sh.
set -u
cd "$(dirname "$0")/.."
BT=build/c-tests
echo "libheartbeat $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1) benchmarks on $(uname -srm), $(nproc) cores"
for suite in c-tests/bench-*.sh; do
    [ -f "$suite" ] || continue
    echo
    # shellcheck disable=SC1090
    . "$suite"
done
