#!/usr/bin/env bash
# heartbeat-cgroup: bad input and missing pieces. Every invalid value is
# refused with the preload library's message style and the right exit
# status before anything is created; a missing cgroup, a path that is not a
# cgroup, a command that does not exist (127, cgroup removed) or cannot be
# executed (126); not root, no capabilities, no cgroup2, no bpf(): a clear
# message, nothing left. Prints ok/not ok lines; run by suite.sh.
set -u
cd "$(dirname "$0")/../.."
. c-tests/lib/netns.sh
. c-tests/cgroup/lib.sh
skip_unless_ready

cg_make CG input || { echo "not ok - cannot create a test cgroup"; exit 1; }
cg_seen_pins "$(cg_pins "$CG")"

# What exists before: the cgroup2 tree's directories and the pins.
snapshot() {
    { find "$CG2" -maxdepth 3 -type d -name 'heartbeat-run-*'; find "$(bpffs_now)/heartbeat-cgroup" 2>/dev/null; } | sort
}
BEFORE=$(snapshot)

# expect NAME WANT_RC WANT_STDERR_SUBSTRING CMD...
expect() {
    local name=$1 rc_want=$2 want=$3; shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    local now; now=$(snapshot)
    if [ "$rc" -eq "$rc_want" ] && grep -qF -- "$want" "$TMP/err" && [ "$now" = "$BEFORE" ]; then
        echo "ok - $name: exit $rc: $(head -n1 "$TMP/err")"
    else
        echo "not ok - $name: exit $rc (want $rc_want), stderr: $(head -c 400 "$TMP/err"), want '$want'"
        [ "$now" = "$BEFORE" ] || echo "#   something was left: $(diff <(echo "$BEFORE") <(echo "$now") | tail -3)"
    fi
}

# Every invalid value, for attach (exit 2) and run (exit 125).
while IFS='|' read -r opt val want; do
    [ -n "$opt" ] || continue
    msg="heartbeat-cgroup: $opt \"$val\" is invalid (accepted: $want)"
    expect "attach $opt '$val'" 2 "$msg" "$HBC" attach "$CG" "$opt" "$val"
    expect "run $opt '$val'" 125 "$msg" "$HBC" run "$opt" "$val" -- true
done <<'EOF'
--idle|30s|whole seconds 1..32767
--idle|0|whole seconds 1..32767
--idle|32768|whole seconds 1..32767
--idle|-1|whole seconds 1..32767
--idle|+5|whole seconds 1..32767
--idle| 5|whole seconds 1..32767
--idle||whole seconds 1..32767
--idle|abc|whole seconds 1..32767
--intvl|0|whole seconds 1..32767
--intvl|32768|whole seconds 1..32767
--intvl|1.5|whole seconds 1..32767
--cnt|0|probes 1..127
--cnt|128|probes 1..127
--cnt|0x10|probes 1..127
--user-timeout|-1|milliseconds 0..2147483647, or auto
--user-timeout|2147483648|milliseconds 0..2147483647, or auto
--user-timeout|AUTO|milliseconds 0..2147483647, or auto
--user-timeout|5s|milliseconds 0..2147483647, or auto
EOF
expect "attach --idle without a value" 2 "--idle needs a value (accepted: whole seconds 1..32767)" \
    "$HBC" attach "$CG" --idle
expect "an option given twice" 2 "--cnt is given twice" "$HBC" attach "$CG" --cnt 1 --cnt 2
expect "unknown option" 2 'unknown option "--idel"' "$HBC" attach "$CG" --idel 5
expect "unknown command" 2 'unknown command "atach"' "$HBC" atach "$CG"
expect "run without a command" 125 "run: no COMMAND given" "$HBC" run --idle 1 --
expect "attach without a cgroup" 2 "attach: no CGROUP given" "$HBC" attach

# Cgroups that do not exist or are not cgroups.
expect "a missing cgroup" 1 "/hbt-nonexistent-$$: no such cgroup (neither /hbt-nonexistent-$$ nor $CG2/hbt-nonexistent-$$ exists)" \
    "$HBC" attach "/hbt-nonexistent-$$" --idle 5
expect "a directory that is not a cgroup" 1 "$TMP is not a cgroup2 directory (the cgroup2 hierarchy is mounted at $CG2)" \
    "$HBC" attach "$TMP" --idle 5
touch "$TMP/file"
expect "a file that is not a cgroup" 1 "$TMP/file is not a cgroup2 directory" "$HBC" attach "$TMP/file"
expect "watch a missing cgroup" 1 "no such cgroup" "$HBC" watch "/hbt-nonexistent-$$"
expect "detach where nothing is attached" 1 "nothing is attached by heartbeat-cgroup" "$HBC" detach "$CG"
expect "watch where nothing is attached" 1 "nothing is attached by heartbeat-cgroup (attach it first)" "$HBC" watch "$CG"
"$HBC" show "$CG" >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -qF "$CG: nothing is attached by heartbeat-cgroup" "$TMP/out" &&
    echo "ok - show where nothing is attached: exit 1: $(cat "$TMP/out")" ||
    echo "not ok - show where nothing is attached: exit $rc: $(cat "$TMP/out")"

# A path inside the hierarchy works as well as the full path (and the
# attachment is the same one).
rel="/${CG#"$CG2"/}"
if "$HBC" attach "$rel" --idle 9 >"$TMP/out" 2>&1 && grep -qF "attached to $CG: idle=9" "$TMP/out" &&
    "$HBC" show "$CG" | grep -qF "settings: idle=9 " && "$HBC" detach "$rel" >/dev/null; then
    echo "ok - CGROUP as a path inside the hierarchy ($rel): $(cat "$TMP/out")"
else
    echo "not ok - CGROUP as a path inside the hierarchy ($rel): $(cat "$TMP/out")"
fi

# run: a command that does not exist (127), one that cannot be executed
# (126); the cgroup is removed either way.
printf 'not a program\n' >"$TMP/not-executable"
chmod 644 "$TMP/not-executable"
for c in "127 /nonexistent/hbt-command-$$" "127 hbt-command-$$-not-on-path" "126 $TMP/not-executable"; do
    set -- $c
    want=$1 cmd=$2
    cg_run -- "$cmd" 2>"$TMP/run.err"
    wait_bounded "$CG_RUN_PID" 10
    rc=$?
    left=$(find "$CG2" -maxdepth 3 -type d -name "heartbeat-run-$CG_RUN_PID")
    msg="heartbeat-cgroup: $cmd: No such file or directory"
    [ "$want" = 126 ] && msg="heartbeat-cgroup: $cmd: Permission denied"
    if [ "$rc" -eq "$want" ] && [ -z "$left" ] && [ "$(cat "$TMP/run.err")" = "$msg" ]; then
        echo "ok - run $cmd: exit $rc, '$msg', its cgroup removed"
    else
        echo "not ok - run $cmd: exit $rc (want $want), '$(cat "$TMP/run.err")' (want '$msg'), cgroup left: '$left'"
    fi
done

# Not root, and root without capabilities: refused before anything.
expect "not root" 1 "attach needs root: BPF programs and cgroups need CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN), which this process (uid 65534" \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$HBC" attach "$CG" --idle 5
expect "run, not root" 125 "run needs root" \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$HBC" run --idle 5 -- true
expect "root without capabilities" 1 "(uid 0, CapEff 0000000000000000) does not have; run it as root" \
    setpriv --bounding-set=-all --inh-caps=-all "$HBC" attach "$CG"
# No cgroup2 hierarchy (unmounted in a private mount namespace).
expect "no cgroup2" 1 "no cgroup2 hierarchy is mounted (none in /proc/self/mountinfo): mount one" \
    unshare -m sh -c 'for m in $(awk '\''$0 ~ / - cgroup2 / { print $5 }'\'' /proc/self/mountinfo); do umount "$m" || exit 99; done; exec "$0" attach /x' "$HBC"
# No bpf() system call (a seccomp filter makes it fail with ENOSYS).
expect "no bpf() system call" 1 "the kernel has no bpf() system call" "$BT/cgroup_nobpf" "$HBC" attach "$CG" --idle 5
[ -e "$(cg_pins "$CG")" ] && echo "not ok - pins left after the failed load" || echo "ok - nothing pinned after the failed load"

cg_leftovers
