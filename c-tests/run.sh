#!/usr/bin/env bash
# Runs every test of libheartbeat and ends with "N passed, N failed".
#
# Steps print TAP-like lines ("ok - name", "not ok - name"); each line counts
# once. A step that exits non-zero without a "not ok" line counts as one
# failure; a step that prints no result at all counts as a failure too.
# Suites of later features live in c-tests/run-*.sh and are sourced below.
set -u
cd "$(dirname "$0")/.."
BT=build/c-tests
PASS=0
FAIL=0
SKIPPED=0
LOG=build/test-logs
mkdir -p "$LOG"

# run_tap NAME CMD...: a program that prints ok/not ok lines.
run_tap() {
    local name=$1; shift
    local out="$LOG/$name.log"
    echo "== $name"
    "$@" >"$out" 2>&1
    local rc=$?
    local ok nok sk
    ok=$(grep -c '^ok - ' "$out")
    nok=$(grep -c '^not ok - ' "$out")
    sk=$(grep -c '^SKIP' "$out")
    grep -E '^(not ok - |SKIP)' "$out" | sed 's/^/   /'
    if [ "$nok" -gt 0 ] || [ "$rc" -ne 0 ]; then
        sed 's/^/   | /' "$out" | grep -v '^   | ok - ' | tail -40
    fi
    PASS=$((PASS + ok))
    FAIL=$((FAIL + nok))
    SKIPPED=$((SKIPPED + sk))
    if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
        echo "   not ok - $name exited $rc"
        FAIL=$((FAIL + 1))
    elif [ "$ok" -eq 0 ] && [ "$nok" -eq 0 ] && [ "$sk" -eq 0 ]; then
        echo "   not ok - $name printed no result"
        FAIL=$((FAIL + 1))
    fi
    echo "   $ok ok, $nok not ok"
}

# run_check NAME CMD...: one pass/fail step, judged by the exit code.
run_check() {
    local name=$1; shift
    local out="$LOG/$name.log"
    if "$@" >"$out" 2>&1; then
        echo "ok - $name"
        PASS=$((PASS + 1))
    else
        echo "not ok - $name"
        sed 's/^/   | /' "$out" | tail -30
        FAIL=$((FAIL + 1))
    fi
}

# cargo test: count its "test result" lines.
run_cargo() {
    local out="$LOG/cargo-test.log"
    echo "== cargo test"
    cargo test --release --workspace >"$out" 2>&1
    local rc=$?
    local p f
    p=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$out" | awk '{s+=$1} END {print s+0}')
    grep -E '^test .* FAILED|panicked' "$out" | sed 's/^/   /'
    PASS=$((PASS + p))
    FAIL=$((FAIL + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        tail -30 "$out" | sed 's/^/   | /'
        echo "   not ok - cargo test exited $rc"
        FAIL=$((FAIL + 1))
    fi
    echo "   $p passed, $f failed"
}

for suite in c-tests/run-core.sh c-tests/run-*.sh; do
    case "$suite" in c-tests/run-core.sh) [ -n "${CORE_DONE:-}" ] && continue; CORE_DONE=1 ;; esac
    [ -f "$suite" ] || continue
    # shellcheck disable=SC1090
    . "$suite"
done

echo
if [ "$SKIPPED" -gt 0 ]; then
    echo "$PASS passed, $FAIL failed, $SKIPPED skipped"
else
    echo "$PASS passed, $FAIL failed"
fi
[ "$FAIL" -eq 0 ]
