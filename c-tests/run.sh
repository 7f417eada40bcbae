#!/usr/bin/env bash
# Runs every test of libheartbeat and ends with "N passed, N failed".
#
# Each subject has a folder c-tests/<subject>/ with a suite.sh that this
# script sources (core first, then the others in name order). Suites call:
#
#   run_tap NAME CMD...    a program that prints TAP-like lines ("ok - what",
#                          "not ok - what", "SKIP - why"); each counts once.
#   run_check NAME CMD...  one step judged by its exit status.
#
# Deep checks (sanitizers, model checking, fuzzing, allocation-failure
# sweeps: slower, and needing the nightly toolchain) live in
# c-tests/<subject>/deep.sh. They run after the suites when HEARTBEAT_DEEP=1
# (CI sets it), and alone with `make check-deep` (run.sh --deep-only).
#
# Every step prints one line (its result and counts); a failing step adds
# its failures and the tail of its log. Full output of every step is in
# build/test-logs/NAME.log. A step that exits non-zero without a "not ok"
# line counts as one failure; a step that prints no result at all too.
set -u
cd "$(dirname "$0")/.."
BT=build/c-tests
PASS=0
FAIL=0
SKIPPED=0
LOG=build/test-logs
mkdir -p "$LOG"
# valgrind memcheck, failing on any error or leak.
VG="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible"

# run_tap NAME CMD...: a program that prints ok/not ok lines.
run_tap() {
    local name=$1; shift
    local out="$LOG/$name.log" t0=$SECONDS
    "$@" >"$out" 2>&1
    local rc=$?
    local ok nok sk verdict=ok extra=""
    ok=$(grep -c '^ok - ' "$out")
    nok=$(grep -c '^not ok - ' "$out")
    sk=$(grep -c '^SKIP' "$out")
    PASS=$((PASS + ok))
    FAIL=$((FAIL + nok))
    SKIPPED=$((SKIPPED + sk))
    if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
        extra=" (exited $rc)"
        FAIL=$((FAIL + 1))
    elif [ "$ok" -eq 0 ] && [ "$nok" -eq 0 ] && [ "$sk" -eq 0 ]; then
        extra=" (printed no result)"
        FAIL=$((FAIL + 1))
    fi
    [ -n "$extra" ] || [ "$nok" -gt 0 ] && verdict="FAIL"
    [ "$verdict" = ok ] && [ "$sk" -gt 0 ] && verdict=skip
    printf '%-5s %-44s %4d ok' "$verdict" "$name" "$ok"
    [ "$nok" -gt 0 ] && printf ', %d not ok' "$nok"
    [ "$sk" -gt 0 ] && printf ', %d skipped' "$sk"
    printf '%s  %ds\n' "$extra" "$((SECONDS - t0))"
    grep -E '^(not ok - |SKIP)' "$out" | sed 's/^/      /'
    if [ "$verdict" = FAIL ]; then
        grep -v '^ok - ' "$out" | tail -40 | sed 's/^/      | /'
    fi
    return 0
}

# run_check NAME CMD...: one pass/fail step, judged by the exit code.
run_check() {
    local name=$1; shift
    local out="$LOG/$name.log" t0=$SECONDS
    if "$@" >"$out" 2>&1; then
        printf '%-5s %-44s %4d ok  %ds\n' ok "$name" 1 "$((SECONDS - t0))"
        PASS=$((PASS + 1))
    else
        printf '%-5s %-44s %4d ok, 1 not ok  %ds\n' FAIL "$name" 0 "$((SECONDS - t0))"
        tail -30 "$out" | sed 's/^/      | /'
        FAIL=$((FAIL + 1))
    fi
}

# run_cargo NAME CMD...: a cargo test run; counts its "test result" lines.
run_cargo() {
    local name=$1; shift
    local out="$LOG/$name.log" t0=$SECONDS
    "$@" >"$out" 2>&1
    local rc=$?
    local p f
    p=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$out" | awk '{s+=$1} END {print s+0}')
    PASS=$((PASS + p))
    FAIL=$((FAIL + f))
    local verdict=ok extra=""
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        extra=" (exited $rc)"
        FAIL=$((FAIL + 1))
    fi
    { [ "$f" -gt 0 ] || [ -n "$extra" ]; } && verdict=FAIL
    printf '%-5s %-44s %4d ok' "$verdict" "$name" "$p"
    [ "$f" -gt 0 ] && printf ', %d not ok' "$f"
    printf '%s  %ds\n' "$extra" "$((SECONDS - t0))"
    if [ "$verdict" = FAIL ]; then
        grep -E '^test .* FAILED|panicked' "$out" | sed 's/^/      /'
        tail -30 "$out" | sed 's/^/      | /'
    fi
    return 0
}

SUITES=(c-tests/core/suite.sh)
for suite in c-tests/*/suite.sh; do
    [ "$suite" = c-tests/core/suite.sh ] || SUITES+=("$suite")
done
# HEARTBEAT_SUITES="monitor preload": only those subjects (while working
# on one; `make test` without it runs everything).
if [ -n "${HEARTBEAT_SUITES:-}" ]; then
    SUITES=()
    for s in $HEARTBEAT_SUITES; do
        [ -f "c-tests/$s/suite.sh" ] && SUITES+=("c-tests/$s/suite.sh")
    done
fi
if [ "${1:-}" = --deep-only ]; then
    SUITES=()
    HEARTBEAT_DEEP=1
fi
if [ "${HEARTBEAT_DEEP:-0}" = 1 ]; then
    for suite in c-tests/*/deep.sh; do
        if [ -n "${HEARTBEAT_SUITES:-}" ]; then
            case " $HEARTBEAT_SUITES " in *" $(basename "$(dirname "$suite")") "*) ;; *) continue ;; esac
        fi
        [ -f "$suite" ] && SUITES+=("$suite")
    done
fi
for suite in "${SUITES[@]}"; do
    echo "== ${suite#c-tests/}"
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
