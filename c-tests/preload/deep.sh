# Deep checks of the preload subject (issue 8), sourced by c-tests/run.sh
# when HEARTBEAT_DEEP=1 (CI) or by `make check-deep`: fuzzing with cargo fuzz
# (nightly; .ci/setup.d/fuzz.sh installs cargo-fuzz). See docs/testing.md.
#
# Each target runs for PRELOAD_FUZZ_SECS (default 60) seconds from its
# committed corpus (fuzz/corpus/TARGET, read only); what it adds and any
# crash go to build/fuzz/TARGET/. A crash fails the step; its input is in
# build/fuzz/TARGET/artifacts/ (reproduce with
# `cd fuzz && cargo +nightly fuzz run TARGET ../build/fuzz/TARGET/artifacts/crash-...`).

PRELOAD_FUZZ_SECS=${PRELOAD_FUZZ_SECS:-60}

preload_fuzz_build() {
    command -v cargo-fuzz >/dev/null || {
        echo "cargo-fuzz is not installed: run .ci/setup.d/fuzz.sh"
        return 1
    }
    (cd fuzz && cargo +nightly fuzz build --target-dir ../target/fuzz)
}

# preload_fuzz TARGET [LIBFUZZER FLAGS...]
preload_fuzz() {
    local target=$1 work="$PWD/build/fuzz/$1"
    shift
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    (cd fuzz && cargo +nightly fuzz run --target-dir ../target/fuzz "$target" \
        "$work/corpus" "corpus/$target" -- -max_total_time="$PRELOAD_FUZZ_SECS" \
        -artifact_prefix="$work/artifacts/" "$@") || return 1
    # A clean run leaves no artifact.
    [ -z "$(ls -A "$work/artifacts")" ]
}

run_check preload-fuzz-build preload_fuzz_build
run_check preload-fuzz-preload-config preload_fuzz preload_config -dict=preload_config.dict
run_check preload-fuzz-peer-state preload_fuzz peer_state
