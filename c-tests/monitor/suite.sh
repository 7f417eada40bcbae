# Heartbeat monitor suite (issue 4), sourced by c-tests/run.sh: uses run_tap,
# run_check, BT, LOG. The Rust unit tests (fake clock) run with cargo test
# in the core suite.

run_tap monitor "$BT/test_monitor"
# The edges found by adversarial testing (issue 8), one test per defect.
run_tap monitor-edges "$BT/test_monitor_edges"
# Allocation-failure sweep of heartbeat_monitor_new() and watch() (issue 8):
# the N-th allocation fails, for N = 1, 2, ... until one run needs no more.
run_tap monitor-alloc-sweep env LD_PRELOAD="$PWD/$BT/failalloc.so" HB_FAILALLOC_OBJ=libheartbeat.so \
    "$BT/test_monitor_alloc"

# valgrind: memcheck (memory errors, leaks) and DRD (data races). Both run the
# same program with HB_TEST_SLOW=1: smaller loads and wide timing windows,
# since valgrind serialises threads and is ~50x slower. --fair-sched=yes
# keeps the monitor thread from starving under valgrind's scheduler. DRD is
# used rather than helgrind: helgrind 3.19 crashes in this program (a jump to
# address 0 inside clock_gettime on the monitor thread) and misreports
# glibc's pthread_cond_timedwait. c-tests/monitor/monitor.supp (justified there)
# silences only the deliberately lock-free atomics of alive()/last_heard().
if command -v valgrind >/dev/null 2>&1; then
    monitor_memcheck() {
        HB_TEST_SLOW=1 valgrind -q --tool=memcheck --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect --fair-sched=yes "$@"
    }
    monitor_drd() {
        HB_TEST_SLOW=1 valgrind -q --tool=drd --error-exitcode=99 --fair-sched=yes \
            --suppressions=c-tests/monitor/monitor.supp "$@"
    }
    run_check monitor-valgrind-memcheck monitor_memcheck "$BT/test_monitor"
    run_check monitor-valgrind-drd monitor_drd "$BT/test_monitor"
    # Defect 6 (unwatch() waiting while the monitor is freed) shows only
    # here at full speed: memcheck reports the read of freed memory.
    run_check monitor-edges-valgrind-memcheck monitor_memcheck "$BT/test_monitor_edges"
    run_check monitor-edges-valgrind-drd monitor_drd "$BT/test_monitor_edges"
else
    printf '%-5s %-44s    0 ok, 1 skipped\n' skip monitor-valgrind
    SKIPPED=$((SKIPPED + 1))
fi

# Cut link in network namespaces (root only; skips otherwise).
run_tap monitor-netns bash c-tests/monitor/net_monitor.sh

# The example: a server and a client exchanging pings and pongs for a moment.
monitor_example() {
    # A port that is free now (several checkouts may run make test at once).
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$BT/monitor_server" 127.0.0.1 "$port" 3 &
    local srv=$!
    sleep 0.3
    "$BT/monitor_client" 127.0.0.1 "$port" 2
    local rc=$?
    wait "$srv" || rc=1
    return $rc
}
run_check monitor-example monitor_example
