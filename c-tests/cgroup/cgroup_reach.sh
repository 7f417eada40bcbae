#!/usr/bin/env bash
# heartbeat-cgroup: what it reaches. Three programs that never set a socket
# option (a static C binary, one making raw syscall(SYS_socket/SYS_connect)
# calls as Go does, unmodified python3), in a pair of network namespaces:
#
# - under `heartbeat-cgroup run`, their connected sockets (loopback v4 and
#   v6, and to the peer namespace) and a server's accepted sockets read back
#   the five configured options (getsockopt: a wrong helper would pass the
#   verifier and silently do nothing);
# - the same programs outside the cgroup, and in a cgroup after `detach`,
#   read back the namespace's defaults (set to 111/22/5 in that namespace);
# - unset timers take the namespace's defaults, and auto the deadline of
#   those; `attach` again updates the settings of new connections without a
#   gap (every connection made meanwhile has one complete set or the other);
# - `show` reports the settings and counts; an attachment whose cgroup was
#   removed is listed and removed with `detach --id`.
# Prints ok/not ok lines; run by suite.sh.
set -u
cd "$(dirname "$0")/../.."
. c-tests/lib/netns.sh
. c-tests/cgroup/lib.sh
skip_unless_ready

C=reach
netns_create "$C" || { echo "not ok - cannot create namespaces"; exit 1; }
U=$(netns_user "$C")
P=$(netns_peer "$C")
set_ns_defaults "$U" 111 22 5 || { echo "not ok - cannot set the namespace's defaults"; exit 1; }
DEFAULTS=$(kernel_defaults "$U")
[ "$DEFAULTS" = "ka=0 idle=111 intvl=22 cnt=5 ut=0" ] &&
    echo "ok - the user namespace's defaults: $DEFAULTS (the host's: $(kernel_defaults "$P"))" ||
    echo "not ok - the user namespace's defaults: $DEFAULTS"
PORT=5001
netns_spawn "$C" peer "$PY" c-tests/cgroup/cgroup_peer.py hold "$NETNS_PEER_IP4" "$PORT" "$TMP/peer.ready" 120
cg_wait_file "$TMP/peer.ready" || { echo "not ok - the peer server did not start"; exit 1; }

SET=(--idle 7 --intvl 3 --cnt 4)
WANT="ka=1 idle=7 intvl=3 cnt=4 ut=19000"
declare -A PROG=(
    [static]="$BT/cgroup_probe_static"
    [raw]="$BT/cgroup_probe_raw"
    [python3]="$PY c-tests/cgroup/cgroup_probe.py"
)
NAMES="static raw python3"
SERVE_PORT=6000

# check WHAT WANT FILE: every line of FILE ("name values") must show WANT;
# FILE must have N lines.
check() {
    local what=$1 want=$2 file=$3 n=$4 name rest bad=0 lines
    lines=$(wc -l <"$file")
    while read -r name rest; do
        [ "$rest" = "$want" ] || { echo "not ok - $what: $name '$rest', expected '$want'"; bad=1; }
    done <"$file"
    if [ "$lines" -ne "$n" ]; then
        echo "not ok - $what: $lines sockets reported, expected $n: $(tr '\n' ';' <"$file") $(head -c 300 "$TMP/err" 2>/dev/null)"
    elif [ "$bad" = 0 ]; then
        echo "ok - $what: $n sockets read back '$want'"
    fi
}

# probe_all NAME LAUNCH...: the program NAME's four cases, each launched as
# LAUNCH ip netns exec U PROGRAM ARGS (LAUNCH: the tool's run, a cgroup
# exec, or nothing); every socket line into $TMP/NAME.out.
probe_all() {
    local n=$1; shift
    local prog=${PROG[$n]} out="$TMP/$n.out"
    : >"$out"
    # shellcheck disable=SC2086
    {
        "$@" ip netns exec "$U" $prog pair 4
        "$@" ip netns exec "$U" $prog pair 6
        "$@" ip netns exec "$U" $prog connect "$NETNS_PEER_IP4" "$PORT"
    } >>"$out" 2>>"$TMP/err"
    # A server in the cgroup, accepting a connection from the peer namespace.
    # A new port each time: the previous server's closed socket may still be
    # in TIME_WAIT on its port (the programs set no SO_REUSEADDR).
    SERVE_PORT=$((SERVE_PORT + 1))
    local sport=$SERVE_PORT
    rm -f "$TMP/serve.ready"
    # shellcheck disable=SC2086
    "$@" ip netns exec "$U" $prog serve "$NETNS_USER_IP4" "$sport" "$TMP/serve.ready" >>"$out" 2>>"$TMP/err" &
    local spid=$!
    if cg_wait_file "$TMP/serve.ready"; then
        ip netns exec "$P" "$PY" c-tests/cgroup/cgroup_peer.py client "$NETNS_USER_IP4" "$sport" 2>>"$TMP/err"
    fi
    wait "$spid"
}

run_tool() { "$HBC" run "${SET[@]}" -- "$@"; }
for n in $NAMES; do
    probe_all "$n" run_tool
    check "$n under run" "$WANT" "$TMP/$n.out" 6
    probe_all "$n"
    check "$n outside the cgroup" "$DEFAULTS" "$TMP/$n.out" 6
done

# Unset timers keep the namespace's defaults; auto is their deadline,
# (7 + 22 * 5) * 1000, computed for each socket.
run_idle() { "$HBC" run --idle 7 -- "$@"; }
probe_all static run_idle
check "run --idle 7 only" "ka=1 idle=7 intvl=22 cnt=5 ut=117000" "$TMP/static.out" 6
run_ut() { "$HBC" run --user-timeout 1234 -- "$@"; }
probe_all python3 run_ut
check "run --user-timeout 1234 only" "ka=1 idle=111 intvl=22 cnt=5 ut=1234" "$TMP/python3.out" 6

# attach / show / attach again / detach on an existing cgroup.
cg_make CG reach || { echo "not ok - cannot create a test cgroup"; exit 1; }
PINS=$(cg_pins "$CG")
cg_seen_pins "$PINS"
out=$("$HBC" attach "$CG" "${SET[@]}" 2>&1)
[ "$out" = "attached to $CG: idle=7 intvl=3 cnt=4 user_timeout_ms=19000" ] && echo "ok - attach: $out" ||
    echo "not ok - attach: $out"
[ -e "$PINS/link" ] && echo "ok - the link is pinned at $PINS/link" || echo "not ok - no $PINS/link"
in_cg() { cg_exec "$CG" "$@"; }
for n in $NAMES; do
    : >"$TMP/$n.out"
    # shellcheck disable=SC2086
    in_cg ip netns exec "$U" ${PROG[$n]} pair 4 >>"$TMP/$n.out" 2>>"$TMP/err"
    check "$n in an attached cgroup" "$WANT" "$TMP/$n.out" 2
done
# A cgroup below it inherits the program (the kernel runs a cgroup's
# programs for its descendants), and a set-uid program, which no
# LD_PRELOAD library reaches, is configured like any other.
mkdir "$CG/sub" && CG_MADE=("$CG/sub" "${CG_MADE[@]}")
cg_exec "$CG/sub" ip netns exec "$U" "$BT/cgroup_probe_static" pair 4 >"$TMP/sub.out" 2>>"$TMP/err"
check "static in a cgroup below the attached one" "$WANT" "$TMP/sub.out" 2
rmdir "$CG/sub"
cp "$BT/cgroup_probe_static" "$TMP/setuid_probe" && chmod 4755 "$TMP/setuid_probe"
in_cg ip netns exec "$U" setpriv --reuid=65534 --regid=65534 --clear-groups "$TMP/setuid_probe" pair 4 \
    >"$TMP/suid.out" 2>>"$TMP/err"
check "a set-uid program started by uid 65534" "$WANT" "$TMP/suid.out" 2
"$HBC" show "$CG" >"$TMP/show" 2>&1
if grep -qxF "cgroup: $CG (id $(cg_id "$CG"))" "$TMP/show" &&
    grep -qxF "settings: idle=7 intvl=3 cnt=4 user_timeout_ms=19000 keepalive=1" "$TMP/show" &&
    grep -qxF "deadline_ms: 19000" "$TMP/show" &&
    grep -qxF "connections: configured=10 failed=0 ended=10 lost=0" "$TMP/show"; then
    echo "ok - show: settings, and 10 connections configured and ended"
else
    echo "not ok - show:"; sed 's/^/#   /' "$TMP/show"
fi
"$HBC" show | grep -qxF "cgroup: $CG (id $(cg_id "$CG"))" && echo "ok - show without CGROUP lists it" ||
    echo "not ok - show without CGROUP does not list $CG"

# Update without a gap: python3 makes connections in the cgroup for 2.5 s
# while the settings change six times; each connection has all of one set.
in_cg ip netns exec "$U" "$PY" c-tests/cgroup/cgroup_probe.py loop 2.5 100000 >"$TMP/loop.out" 2>>"$TMP/err" &
lpid=$!
WANT2="ka=1 idle=9 intvl=2 cnt=2 ut=13000"
updates_ok=1
for i in 1 2 3; do
    sleep 0.35
    "$HBC" attach "$CG" --idle 9 --intvl 2 --cnt 2 >"$TMP/upd" 2>&1 || updates_ok=0
    [ "$i" = 1 ] && { grep -qF "updated $CG: idle=9 intvl=2 cnt=2 user_timeout_ms=13000 (was idle=7 intvl=3 cnt=4 user_timeout_ms=19000)" "$TMP/upd" || updates_ok=0; }
    sleep 0.35
    "$HBC" attach "$CG" "${SET[@]}" >/dev/null 2>&1 || updates_ok=0
done
wait "$lpid"
total=$(wc -l <"$TMP/loop.out")
a=$(grep -cxF "client $WANT" "$TMP/loop.out")
a=$((a + $(grep -cxF "accepted $WANT" "$TMP/loop.out")))
b=$(grep -cxF "client $WANT2" "$TMP/loop.out")
b=$((b + $(grep -cxF "accepted $WANT2" "$TMP/loop.out")))
if [ "$updates_ok" = 1 ] && [ "$total" -gt 20 ] && [ $((a + b)) -eq "$total" ] && [ "$a" -gt 0 ] && [ "$b" -gt 0 ]; then
    echo "ok - attach again updates without a gap: $total sockets during 6 updates, $a with the first set, $b with the second, none with anything else"
else
    echo "not ok - updates: ok=$updates_ok, $total sockets, $a first set, $b second set; others: $(grep -vxF -e "client $WANT" -e "accepted $WANT" -e "client $WANT2" -e "accepted $WANT2" "$TMP/loop.out" | sort | uniq -c | head -3)"
fi

# Bounded memory: nobody read the ring buffer meanwhile, so it filled
# (256 KiB: 2730 records of 96 bytes) and the rest was dropped and counted.
st=$("$HBC" show "$CG" | sed -n 's/^connections: configured=\([0-9]*\) failed=0 ended=\([0-9]*\) lost=\([0-9]*\)$/\1 \2 \3/p')
read -r nconf nend nlost <<<"$st"
if [ -n "$st" ] && [ "$nlost" -gt 0 ] && [ $((nend - nlost)) -le 2730 ] && [ "$nend" -ge "$total" ]; then
    echo "ok - unread events are bounded: $nend ended, $nlost lost (at most 2730 kept), counted by show"
else
    echo "not ok - lost counter: '$st' after $total sockets"
fi
# A slow reader: watch stopped while 4000 sockets end, then resumed:
# it reports what the buffer kept, then how many were lost.
"$HBC" watch "$CG" --json >"$TMP/slow.out" 2>"$TMP/slow.err" &
wpid=$!
CG_RUN_PIDS+=("$wpid")
for i in $(seq 100); do grep -q '^heartbeat-cgroup: watching ' "$TMP/slow.err" && break; sleep 0.1; done
kill -STOP "$wpid"
in_cg ip netns exec "$U" "$PY" c-tests/cgroup/cgroup_probe.py loop 10 2000 >"$TMP/slow.loop" 2>>"$TMP/err"
made=$(wc -l <"$TMP/slow.loop")
kill -CONT "$wpid"
sleep 1.5
kill -TERM "$wpid"
wait_bounded "$wpid" 5 >/dev/null
lines=$(grep -c '"end":"closed"' "$TMP/slow.out")
lost=$(sed -n 's/^{"lost":\([0-9]*\)}$/\1/p' "$TMP/slow.out" | awk '{ s += $1 } END { print s + 0 }')
if [ "$lines" -gt 0 ] && [ "$lines" -le 2730 ] && [ "$lost" -gt 0 ] && [ $((lines + lost)) -eq "$made" ]; then
    echo "ok - a stopped watch, resumed: $lines connection ends printed, then {\"lost\":$lost} ($made in all)"
else
    echo "not ok - slow watch: $lines lines, lost $lost: $(tail -c 300 "$TMP/slow.out") $(cat "$TMP/slow.err")"
fi

out=$("$HBC" detach "$CG" 2>&1)
[ "$out" = "detached from $CG" ] && [ ! -e "$PINS" ] && echo "ok - detach: $out; $PINS removed" ||
    echo "not ok - detach: $out; pins: $(ls "$PINS" 2>&1)"
for n in $NAMES; do
    : >"$TMP/$n.out"
    # shellcheck disable=SC2086
    in_cg ip netns exec "$U" ${PROG[$n]} pair 4 >>"$TMP/$n.out" 2>>"$TMP/err"
    check "$n in the cgroup after detach" "$DEFAULTS" "$TMP/$n.out" 2
done
"$HBC" show "$CG" >/dev/null 2>&1
[ $? -eq 1 ] && echo "ok - show after detach: nothing attached (exit 1)" || echo "not ok - show after detach"

# A cgroup removed while attached: its pins stay, `show` says so, and
# `detach --id` removes them.
cg_make GONE gone
gid=$(cg_id "$GONE")
gpins=$(cg_pins "$GONE")
cg_seen_pins "$gpins"
"$HBC" attach "$GONE" --cnt 2 >/dev/null 2>&1 && rmdir "$GONE"
"$HBC" show >"$TMP/show" 2>&1
if grep -qF "cgroup: removed (id $gid): the program no longer runs; remove its pins with \`heartbeat-cgroup detach --id $gid\`" "$TMP/show" &&
    out=$("$HBC" detach --id "$gid" 2>&1) && [ "$out" = "detached from cgroup id $gid" ] && [ ! -e "$gpins" ]; then
    echo "ok - an attachment whose cgroup was removed is listed by show and removed by detach --id"
else
    echo "not ok - removed cgroup: $(cat "$TMP/show") / $out"
fi

netns_delete "$C"
cg_leftovers
