#!/usr/bin/env bash
# Runs every benchmark of libheartbeat. Figures and ratios only: nothing here
# passes or fails on timing. Every other bench/*.sh is a section, sourced in
# name order (uses BT).
set -u
cd "$(dirname "$0")/.."
BT=build/c-tests
echo "libheartbeat $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1) benchmarks on $(uname -srm), $(nproc) cores"
for suite in bench/*.sh; do
    [ "$suite" = bench/bench.sh ] && continue
    [ -f "$suite" ] || continue
    echo
    # shellcheck disable=SC1090
    . "$suite"
done
