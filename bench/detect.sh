# bench-detect.sh: time to detect a dead peer (issue 3), sourced by
# bench/bench.sh (uses BT). Figures only, no pass/fail.
#
# For each (idle, intvl, cnt) setting, one pair of network namespaces
# (c-tests/lib/netns.sh) with NET_DETECT_CONNS idle connections configured with
# heartbeat(fd, idle, intvl, cnt); the path is cut with a blackhole route on
# the peer right after the last data is received; the time from that last
# received segment to the error (ETIMEDOUT) is compared with
# heartbeat_deadline_ms(). All settings run in parallel; the whole round is
# repeated NET_DETECT_ROUNDS times (about 15 s each), so that each setting's
# median comes from independent cuts, not only from connections cut together.
#
# The settings keep every kernel timer either below ~2 s or long: at HZ=250 a
# timer of more than 512 jiffies (2.048 s) lands in the timer wheel's third
# level, whose buckets are 64 jiffies (256 ms) wide, so it may fire up to
# 256 ms late. With idle = 3 s and a 4 s deadline that alone is up to +6.4 %
# (measured 1.03-1.05 for 3/1/1); with longer deadlines it fades.

# shellcheck source=c-tests/lib/netns.sh
. c-tests/lib/netns.sh

NET_DETECT_SETTINGS="1/1/3 2/1/2 1/2/2 5/1/3 10/2/2"
NET_DETECT_ROUNDS=${NET_DETECT_ROUNDS:-3}
NET_DETECT_CONNS=${NET_DETECT_CONNS:-5}

bench_detect() {
    echo "## Time to detect a dead peer (network namespaces, blackhole cut)"
    if ! netns_check; then
        echo "SKIP - detection benchmark: $NETNS_WHY"
        return 0
    fi
    local dir s i n pids=() tag r
    dir=$(mktemp -d)
    for r in $(seq 1 "$NET_DETECT_ROUNDS"); do
        pids=()
        for s in $NET_DETECT_SETTINGS; do
            tag="det${s//\//}"
            if ! netns_create "$tag" >>"$dir/$tag.out" 2>&1; then
                echo "   namespace setup failed for $s" >&2
                continue
            fi
            netns_spawn "$tag" user env HB_PEER_NS="$(netns_peer "$tag")" \
                HB_CUT="$(netns_cut_cmd "$tag" blackhole4)" HB_FAMILY=4 \
                timeout --foreground -s KILL 60 \
                "$BT/net_liveness" detect ${s//\// } "$NET_DETECT_CONNS" >>"$dir/$tag.out" 2>&1
            pids+=("$NETNS_PID")
        done
        for i in "${pids[@]}"; do wait "$i"; done
        for s in $NET_DETECT_SETTINGS; do netns_delete "det${s//\//}"; done
    done
    echo
    echo "| idle/intvl/cnt | heartbeat_deadline_ms | measured median (ms) | min..max (ms) | ratio (median/deadline) | connections |"
    echo "|---|---|---|---|---|---|"
    for s in $NET_DETECT_SETTINGS; do
        tag="det${s//\//}"
        # DETECT idle intvl cnt measured_ms deadline_ms ETIMEDOUT|other errno
        grep '^DETECT ' "$dir/$tag.out" | awk -v s="$s" '
            $5 >= 0 && $7 == "ETIMEDOUT" { v[n++] = $5; d = $6 }
            $5 < 0 || $7 != "ETIMEDOUT" { bad++ }
            END {
                if (n == 0) { printf "| %s | - | no detection | - | - | 0 (%d failed) |\n", s, bad; exit }
                for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
                m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
                printf "| %s | %d | %.0f | %.0f..%.0f | %.3f | %d%s |\n", s, d, m, v[0], v[n - 1], m / d, n, bad ? sprintf(" (%d not detected)", bad) : ""
            }'
    done
    echo
    echo "Measured from the last received segment to recv() failing with ETIMEDOUT;"
    echo "$NET_DETECT_ROUNDS rounds x $NET_DETECT_CONNS connections per setting, settings in parallel. Goal: ratio 1.00 +/- 0.05."
    rm -rf "$dir"
}

bench_detect
