# bench/cgroup.sh: heartbeat-cgroup (issue 12), sourced by bench/bench.sh
# (uses BT). Figures only, no pass/fail.
#
# 1. Detection: the static probe (c-tests/cgroup/cgroup_probe.c, which never
#    sets a socket option) under `heartbeat-cgroup run --idle I --intvl N
#    --cnt C`, blocked on an idle connection whose path is cut right after
#    the last received data; time to ETIMEDOUT against
#    heartbeat_deadline_ms(). Settings in parallel, CGROUP_ROUNDS rounds.
# 2. Cost per connection: CGROUP_PAIRS loopback connect+accept pairs (each
#    one configured twice: client and accepted socket) in a cgroup with the
#    program attached, against the same cgroup without it, alternating,
#    CGROUP_REPEAT times each; inside a private network namespace.

# shellcheck source=c-tests/lib/netns.sh
. c-tests/lib/netns.sh

CGROUP_SETTINGS="1/1/3 2/1/2 1/2/2"
CGROUP_ROUNDS=${CGROUP_ROUNDS:-3}
CGROUP_PAIRS=${CGROUP_PAIRS:-2000}
CGROUP_REPEAT=${CGROUP_REPEAT:-5}

bench_cgroup() {
    echo "## heartbeat-cgroup: detection through a BPF sock_ops program, and its cost"
    local hbc=build/bin/heartbeat-cgroup py
    if ! "$hbc" --version 2>/dev/null | grep -q 'BPF program built in'; then
        echo "SKIP - heartbeat-cgroup is not built (needs clang and libbpf-dev)"
        return 0
    fi
    if ! netns_check; then
        echo "SKIP - heartbeat-cgroup benchmark: $NETNS_WHY"
        return 0
    fi
    py=$(python3 -c 'import sys; print(sys.executable)')
    local dir s r tag pids=() i n c idle intvl cnt
    dir=$(mktemp -d)
    for r in $(seq 1 "$CGROUP_ROUNDS"); do
        pids=()
        for s in $CGROUP_SETTINGS; do
            tag="cgd${s//\//}"
            IFS=/ read -r idle intvl cnt <<<"$s"
            netns_create "$tag" >>"$dir/$tag.log" 2>&1 || continue
            netns_spawn "$tag" peer "$py" c-tests/cgroup/cgroup_peer.py hold "$NETNS_PEER_IP4" 5001 "$dir/$tag.ready" 30
            for i in $(seq 50); do [ -e "$dir/$tag.ready" ] && break; sleep 0.1; done
            "$hbc" run --idle "$idle" --intvl "$intvl" --cnt "$cnt" -- ip netns exec "$(netns_user "$tag")" \
                "$BT/cgroup_probe_static" wait "$NETNS_PEER_IP4" 5001 20000 "$(netns_cut_cmd "$tag" blackhole4)" \
                >>"$dir/$tag.out" 2>&1 &
            pids+=("$!")
        done
        for i in "${pids[@]}"; do wait "$i"; done
        for s in $CGROUP_SETTINGS; do
            tag="cgd${s//\//}"
            netns_delete "$tag"
            rm -f "$dir/$tag.ready"
        done
    done
    echo
    echo "| idle/intvl/cnt | heartbeat_deadline_ms | measured median (ms) | min..max (ms) | ratio (median/deadline) | runs |"
    echo "|---|---|---|---|---|---|"
    for s in $CGROUP_SETTINGS; do
        tag="cgd${s//\//}"
        IFS=/ read -r idle intvl cnt <<<"$s"
        local d
        d=$("$py" -c 'import ctypes, sys
f = ctypes.CDLL(sys.argv[1]).heartbeat_deadline_ms
f.restype = ctypes.c_uint
print(f(*map(int, sys.argv[2:])))' "$PWD/build/lib/libheartbeat.so" "$idle" "$intvl" "$cnt")
        sed -n 's/^ended errno=ETIMEDOUT after \([0-9]*\) ms.*/\1/p' "$dir/$tag.out" 2>/dev/null | sort -n |
            awk -v s="$s" -v d="$d" -v want="$CGROUP_ROUNDS" '
                { v[n++] = $1 }
                END {
                    if (n == 0) { printf "| %s | %d | no detection | - | - | 0 |\n", s, d; exit }
                    m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
                    printf "| %s | %d | %.0f | %d..%d | %.3f | %d%s |\n", s, d, m, v[0], v[n - 1], m / d, n, n < want ? " (some not detected)" : ""
                    if (s == "1/1/3") printf "cgroup_detect_ratio_1_1_3: %.3f\n", m / d > "/dev/stderr"
                }'
    done 2>"$dir/figure"
    echo
    cat "$dir/figure"
    echo "Measured from the last received segment to recv() failing with ETIMEDOUT, nothing preloaded."

    # Cost per connection.
    local cg2 cg
    cg2=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
    cg="$cg2/hbbench-$$"
    if ! mkdir "$cg" || ! netns_create cgcost >/dev/null 2>&1; then
        echo "SKIP - cannot create a cgroup or namespace for the cost benchmark"
        rmdir "$cg" 2>/dev/null
        rm -rf "$dir"
        return 0
    fi
    local one on=() off=() k
    for k in $(seq 1 "$CGROUP_REPEAT"); do
        "$hbc" attach "$cg" --idle 30 --intvl 5 --cnt 3 >/dev/null
        one=$(sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" ip netns exec "$(netns_user cgcost)" \
            "$BT/cgroup_probe_static" loop "$CGROUP_PAIRS" | awk '{ print $4 }')
        on+=("$one")
        "$hbc" detach "$cg" >/dev/null
        one=$(sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" ip netns exec "$(netns_user cgcost)" \
            "$BT/cgroup_probe_static" loop "$CGROUP_PAIRS" | awk '{ print $4 }')
        off+=("$one")
    done
    netns_delete cgcost
    for i in $(seq 50); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
    local mon moff
    mon=$(printf '%s\n' "${on[@]}" | sort -n | awk '{ v[n++] = $1 } END { print v[int(n / 2)] }')
    moff=$(printf '%s\n' "${off[@]}" | sort -n | awk '{ v[n++] = $1 } END { print v[int(n / 2)] }')
    echo
    echo "Loopback connect+accept pairs ($CGROUP_PAIRS per run, median of $CGROUP_REPEAT runs, wall time):"
    echo "cgroup_pair_ns_attached: $mon"
    echo "cgroup_pair_ns_plain: $moff"
    awk -v a="$mon" -v b="$moff" 'BEGIN { printf "cgroup_pair_cost_ratio: %.3f\n", a / b; printf "cgroup_pair_extra_ns: %d\n", a - b }'
    rm -rf "$dir"
}

bench_cgroup
