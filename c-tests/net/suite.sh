# run-net.sh: libheartbeat's network suite (issue 3), sourced by c-tests/run.sh
# (uses its run_tap, BT, LOG, SKIPPED, FAIL).
#
# Every case runs build/c-tests/net_liveness in the "user" namespace of its
# own pair of namespaces (c-tests/lib/netns.sh), all cases in parallel; each
# program bounds its own waits, and `timeout` bounds each program. The
# namespaces are deleted at the end, and by netns.sh's traps on EXIT, INT and
# TERM. Without the privileges to create namespaces the suite prints one
# SKIP line, or fails when HEARTBEAT_REQUIRE_NETNS=1.

# shellcheck source=c-tests/lib/netns.sh
. c-tests/lib/netns.sh

# name  case  family  cut mode  [arguments]   (what it proves: see net_liveness.c)
NET_CASES="
idle4        idle      4 blackhole4
idle6        idle      6 down-peer
idle6bh      idle      6 blackhole6
control4     control   4 blackhole4
unacked4     unacked   4 blackhole4
unacked4down unacked   4 down-user
restart4     restart   4 down-peer
fin4         fin       4 none
listener4    listener  4 down-user
w3idle       within    4 blackhole4 3000 idle
w3unacked    within    4 blackhole4 3000 unacked
w5idle       within    4 blackhole4 5000 idle
w5unacked    within    4 blackhole4 5000 unacked
w10idle      within    6 blackhole6 10000 idle
w10unacked   within    4 blackhole4 10000 unacked
stall3       stall     4 none 3000
stallcut3    stallcut  4 blackhole4 3000
"

net_replay() { cat "$1"; return "$(cat "$2" 2>/dev/null || echo 1)"; }

net_suite() {
    if ! netns_check; then
        if [ "${HEARTBEAT_REQUIRE_NETNS:-0}" = 1 ]; then
            printf '%-5s %-44s    0 ok, 1 not ok\n      cannot create network namespaces (HEARTBEAT_REQUIRE_NETNS=1): %s\n' FAIL net "$NETNS_WHY"
            FAIL=$((FAIL + 1))
        else
            printf '%-5s %-44s    0 ok, 1 skipped\n      SKIP - network namespace tests: %s\n' skip net "$NETNS_WHY"
            SKIPPED=$((SKIPPED + 1))
        fi
        return 0
    fi
    local name c fam mode args pids=() names=() i
    while read -r name c fam mode args; do
        [ -n "$name" ] || continue
        local raw="$LOG/net-$name.raw"
        rm -f "$raw" "$raw.rc"
        if ! netns_create "net$name" >"$raw" 2>&1; then
            echo "not ok - net_$name: namespace setup failed" >>"$raw"
            echo 1 >"$raw.rc"
            names+=("$name"); pids+=("")
            continue
        fi
        local cut="" restore=""
        if [ "$mode" != none ]; then
            cut=$(netns_cut_cmd "net$name" "$mode")
            restore=$(netns_restore_cmd "net$name" "$mode")
        fi
        # The program's exit status goes to $raw.rc (the wrapper shell runs
        # in the namespace too; it only waits).
        netns_spawn "net$name" user env HB_PEER_NS="$(netns_peer "net$name")" \
            HB_CUT="$cut" HB_RESTORE="$restore" HB_FAMILY="$fam" HB_MODE="$mode" \
            bash -c 'timeout --foreground -s KILL 60 "$@"; echo $? >"$0"' "$raw.rc" \
            "$BT/net_liveness" "$c" $args >>"$raw" 2>&1
        names+=("$name"); pids+=("$NETNS_PID")
    done <<<"$NET_CASES"
    for i in "${!pids[@]}"; do
        [ -n "${pids[$i]}" ] && wait "${pids[$i]}"
    done
    for name in "${names[@]}"; do
        run_tap "net-$name" net_replay "$LOG/net-$name.raw" "$LOG/net-$name.raw.rc"
        netns_delete "net$name"
    done
    # The measured figures are in build/test-logs/net-*.log ("# measured").
}

net_suite
