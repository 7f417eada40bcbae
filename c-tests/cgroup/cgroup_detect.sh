#!/usr/bin/env bash
# heartbeat-cgroup: detection, and why each connection ended. In three
# pairs of network namespaces, in parallel:
#
#   cut    the static binary (it never sets a socket option) under
#          `heartbeat-cgroup run --idle 1 --intvl 1 --cnt 3`, blocked on an
#          idle connection whose path is cut (blackhole route on the peer)
#          right after the last received data: ETIMEDOUT after about 4.1 s,
#          ratio to heartbeat_deadline_ms(1, 1, 3) within 1.00..1.05; `watch
#          --json` reports that connection's end as ETIMEDOUT, the line
#          arriving within 100 ms of the program seeing the error;
#   ctl    the same binary without the tool: still blocked past 2x the
#          deadline;
#   rst    the static binary under run, the peer resets the connection:
#          ECONNRESET, and `watch` reports ECONNRESET.
# Every run's cgroup and pins are gone afterwards. Prints ok/not ok lines
# and "# measured" figures; run by suite.sh.
set -u
cd "$(dirname "$0")/../.."
. c-tests/lib/netns.sh
. c-tests/cgroup/lib.sh
skip_unless_ready

PORT=5001
DEADLINE=$("$PY" -c 'import ctypes, sys
f = ctypes.CDLL(sys.argv[1]).heartbeat_deadline_ms
f.restype = ctypes.c_uint
print(f(1, 1, 3))' "$PWD/build/lib/libheartbeat.so") || { echo "not ok - heartbeat_deadline_ms"; exit 1; }
BOUND=$((DEADLINE * 2 + 500))   # the control's wait: past 2x the deadline

# start_case CASE PEERMODE PEERARG: namespaces and the peer server.
start_case() {
    netns_create "$1" || return 1
    netns_spawn "$1" peer "$PY" c-tests/cgroup/cgroup_peer.py "$2" "$NETNS_PEER_IP4" "$PORT" "$TMP/$1.ready" "$3"
    cg_wait_file "$TMP/$1.ready"
}

# watched CASE CUT: the static binary under run (1/1/3), with a watcher
# started on its cgroup before the cut; in the background (pid in
# CASE_PID[CASE]); output in $TMP/CASE.{out,watch}.
declare -A CASE_PID
WATCH_PIDS=()
watched() {
    local c=$1 cut=$2 U
    U=$(netns_user "$c")
    HB_GO="$TMP/$c.go" cg_run --idle 1 --intvl 1 --cnt 3 -- sh -c 'echo "$HEARTBEAT_CGROUP" >"$0"; exec "$@"' \
        "$TMP/$c.cg" ip netns exec "$U" "$BT/cgroup_probe_static" wait "$NETNS_PEER_IP4" "$PORT" 12000 "$cut" \
        >"$TMP/$c.out" 2>&1
    CASE_PID[$c]=$CG_RUN_PID
}

# attach_watcher CASE: once the run's cgroup exists, `watch --json` with an
# arrival time (CLOCK_MONOTONIC ns) put before each line; then lets the
# program go on (the lock taken by watch says it is reading).
attach_watcher() {
    local c=$1 cg pins i
    cg_wait_file "$TMP/$c.cg" || { echo "not ok - $c: no cgroup reported by run"; return 1; }
    cg=$(cat "$TMP/$c.cg")
    CG_RUN_PATHS+=("$cg")
    printf '%s\n' "$cg" >"$TMP/$c.cgpath"
    pins=$(cg_pins "$cg")
    cg_seen_pins "$pins"
    for i in $(seq 50); do [ -e "$pins/link" ] && break; sleep 0.1; done
    "$HBC" watch "$cg" --json 2>"$TMP/$c.watch.err" > >("$PY" -u -c '
import sys, time
for line in sys.stdin:
    sys.stdout.write("%d %s" % (time.monotonic_ns(), line))
' >"$TMP/$c.watch") &
    CG_RUN_PIDS+=("$!")
    WATCH_PIDS+=("$!")
    # watch says on stderr when it reads.
    for i in $(seq 100); do
        grep -q '^heartbeat-cgroup: watching ' "$TMP/$c.watch.err" 2>/dev/null && break
        sleep 0.1
    done
    touch "$TMP/$c.go"
}

start_case cut hold 30 || echo "not ok - cut: setup failed"
start_case ctl hold 30 || echo "not ok - ctl: setup failed"
start_case rst reset 0.3 || echo "not ok - rst: setup failed"
watched cut "$(netns_cut_cmd cut blackhole4)"
ctl_cut=$(netns_cut_cmd ctl blackhole4)
ip netns exec "$(netns_user ctl)" "$BT/cgroup_probe_static" wait "$NETNS_PEER_IP4" "$PORT" "$BOUND" "$ctl_cut" \
    >"$TMP/ctl.out" 2>&1 &
ctl_pid=$!
watched rst ""
attach_watcher cut
attach_watcher rst
for c in cut rst; do wait_bounded "${CASE_PID[$c]}" 30; echo $? >"$TMP/$c.rc"; done
wait_bounded "$ctl_pid" 30
# The watchers end by themselves once run has detached (within 1 s).
for pid in "${WATCH_PIDS[@]}"; do
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && echo "not ok - a watcher did not end after its cgroup was detached"
done
sleep 0.1   # the time-stamping readers finish their last line

for c in cut rst ctl; do sed "s/^/# $c: /" "$TMP/$c.out"; done
for c in cut rst; do sed "s/^/# $c watch: /" "$TMP/$c.watch" "$TMP/$c.watch.err" 2>/dev/null; done

# json_field LINE NAME: a number or string field of a watch JSON line.
json_field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p" <<<"$1"; }

# --- cut: ETIMEDOUT at the deadline ---
grep -qx 'connected ka=1 idle=1 intvl=1 cnt=3 ut=4000' "$TMP/cut.out" &&
    echo "ok - cut: the static binary's socket was configured (read back 1/1/3, user timeout 4000)" ||
    echo "not ok - cut: the socket was not configured"
line=$(grep '^ended ' "$TMP/cut.out")
ms=$(sed -n 's/^ended errno=ETIMEDOUT after \([0-9]*\) ms mono_ns=[0-9]*$/\1/p' <<<"$line")
seen=$(sed -n 's/.* mono_ns=\([0-9]*\)$/\1/p' <<<"$line")
if [ -n "$ms" ]; then
    ratio=$(awk -v m="$ms" -v d="$DEADLINE" 'BEGIN { printf "%.3f", m / d }')
    echo "# measured cut: ETIMEDOUT ${ms} ms after the last received data; heartbeat_deadline_ms(1,1,3) = $DEADLINE; ratio $ratio"
    awk -v r="$ratio" 'BEGIN { exit !(r >= 1.00 && r <= 1.05) }' &&
        echo "ok - cut: ETIMEDOUT after $ms ms, ratio $ratio to the deadline (1.00..1.05)" ||
        echo "not ok - cut: ETIMEDOUT after $ms ms, ratio $ratio outside 1.00..1.05"
else
    echo "not ok - cut: '$line', expected ETIMEDOUT"
fi
[ "$(cat "$TMP/cut.rc")" = 0 ] && echo "ok - cut: run returned the program's status 0" ||
    echo "not ok - cut: run exited $(cat "$TMP/cut.rc")"

# check_watch CASE END: the watch line for the program's connection.
check_watch() {
    local c=$1 end=$2 lport wl stamp json mono seen
    lport=$(sed -n 's/^local port \([0-9]*\)$/\1/p' "$TMP/$c.out")
    seen=$(sed -n 's/^ended .* mono_ns=\([0-9]*\)$/\1/p' "$TMP/$c.out")
    wl=$(grep "\"local_port\":$lport,\"remote\":\"$NETNS_PEER_IP4\",\"remote_port\":$PORT," "$TMP/$c.watch" | head -n1)
    if [ -z "$lport" ] || [ -z "$wl" ]; then
        echo "not ok - $c: watch reported no end of the connection from port '${lport}'"
        return
    fi
    stamp=${wl%% *}
    json=${wl#* }
    mono=$(json_field "$json" mono_ns)
    [ "$(json_field "$json" end)" = "$end" ] && [ "$(json_field "$json" local)" = "$NETNS_USER_IP4" ] &&
        [ "$(json_field "$json" family)" = ipv4 ] &&
        echo "ok - $c: watch reports 192.0.2.1:$lport -> 192.0.2.2:$PORT ended with $end (retransmits $(json_field "$json" retransmits), probes $(json_field "$json" probes))" ||
        echo "not ok - $c: watch line $json, expected end $end"
    if [ -n "$seen" ]; then
        local arrive=$(( (stamp - seen) / 1000 )) kernel=$(( (mono - seen) / 1000 ))
        echo "# measured $c: the watch line arrived ${arrive} us after the program saw $end (the kernel's event: ${kernel} us)"
        [ "$arrive" -le 100000 ] && [ "$arrive" -ge -100000 ] &&
            echo "ok - $c: the watch line arrived within 100 ms of the program seeing $end (${arrive} us)" ||
            echo "not ok - $c: the watch line arrived ${arrive} us after the program saw $end"
    else
        echo "not ok - $c: the program did not see the end"
    fi
}
check_watch cut ETIMEDOUT
grep -q '"probes":3' <<<"$(grep "\"end\":\"ETIMEDOUT\"" "$TMP/cut.watch")" &&
    echo "ok - cut: watch counts the 3 unanswered keepalive probes" ||
    echo "not ok - cut: watch does not show probes 3"

# --- rst: ECONNRESET ---
grep -q '^ended errno=ECONNRESET ' "$TMP/rst.out" && echo "ok - rst: the program got ECONNRESET" ||
    echo "not ok - rst: $(grep -E '^(ended|eof|not)' "$TMP/rst.out")"
check_watch rst ECONNRESET

# --- ctl: no tool, still blocked past 2x the deadline ---
if grep -qx "not ended within $BOUND ms" "$TMP/ctl.out" &&
    grep -qx 'connected ka=0 idle=7200 intvl=75 cnt=9 ut=0' "$TMP/ctl.out"; then
    echo "# measured ctl: without the tool, still blocked after $BOUND ms ($(awk -v b="$BOUND" -v d="$DEADLINE" 'BEGIN { printf "%.2f", b / d }')x the deadline)"
    echo "ok - ctl: without the tool the same binary is still blocked after $BOUND ms (> 2x the deadline)"
else
    echo "not ok - ctl: $(tr '\n' ';' <"$TMP/ctl.out")"
fi

# Each run removed its cgroup and pins.
for c in cut rst; do
    cg=$(cat "$TMP/$c.cgpath" 2>/dev/null)
    [ -n "$cg" ] && [ ! -e "$cg" ] && echo "ok - $c: run removed its cgroup $cg" ||
        echo "not ok - $c: cgroup '$cg' still there"
done
for c in cut ctl rst; do netns_delete "$c"; done
cg_leftovers
