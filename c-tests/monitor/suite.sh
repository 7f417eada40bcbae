# Heartbeat monitor suite (issue 4), sourced by c-tests/run.sh: uses run_tap,
# run_check, BT, LOG. The Rust unit tests (fake clock) run with cargo test
# in the core suite.

run_tap monitor "$BT/test_monitor"
# The edges found by adversarial testing (issue 8), one test per defect.
run_tap monitor-edges "$BT/test_monitor_edges"
# The same guarantees with the thread-free monitor (issue 10), driven by a
# poll() loop on its fd in a thread of the test (mon_mode.h), and what only
# that mode has (test_monitor_loop.c).
run_tap monitor-loop-mode env HB_MONITOR_MODE=loop "$BT/test_monitor"
run_tap monitor-edges-loop-mode env HB_MONITOR_MODE=loop "$BT/test_monitor_edges"
run_tap monitor-loop "$BT/test_monitor_loop"
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
# silences only the deliberately lock-free atomics of alive()/last_heard()
# and of the driver (the slot's state word, the stop flag).
# --vex-guest-chase=no: without it, valgrind's translator follows calls into
# the callee when it builds a block, and DRD then reports an access made by
# a small accessor (Core::stopping) as made by its caller, which the
# suppressions, naming the accessor, do not match.
if command -v valgrind >/dev/null 2>&1; then
    monitor_memcheck() {
        HB_TEST_SLOW=1 valgrind -q --tool=memcheck --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect --fair-sched=yes "$@"
    }
    monitor_drd() {
        HB_TEST_SLOW=1 valgrind -q --tool=drd --error-exitcode=99 --fair-sched=yes --vex-guest-chase=no \
            --suppressions=c-tests/monitor/monitor.supp "$@"
    }
    run_check monitor-valgrind-memcheck monitor_memcheck "$BT/test_monitor"
    run_check monitor-valgrind-drd monitor_drd "$BT/test_monitor"
    # Defect 6 (unwatch() waiting while the monitor is freed) shows only
    # here at full speed: memcheck reports the read of freed memory.
    run_check monitor-edges-valgrind-memcheck monitor_memcheck "$BT/test_monitor_edges"
    run_check monitor-edges-valgrind-drd monitor_drd "$BT/test_monitor_edges"
    # The thread-free mode: the same programs, and its own tests.
    monitor_memcheck_loop() { HB_MONITOR_MODE=loop monitor_memcheck "$@"; }
    monitor_drd_loop() { HB_MONITOR_MODE=loop monitor_drd "$@"; }
    run_check monitor-loop-mode-valgrind-memcheck monitor_memcheck_loop "$BT/test_monitor"
    run_check monitor-loop-mode-valgrind-drd monitor_drd_loop "$BT/test_monitor"
    run_check monitor-edges-loop-mode-valgrind-memcheck monitor_memcheck_loop "$BT/test_monitor_edges"
    run_check monitor-edges-loop-mode-valgrind-drd monitor_drd_loop "$BT/test_monitor_edges"
    run_check monitor-loop-valgrind-memcheck monitor_memcheck "$BT/test_monitor_loop"
    run_check monitor-loop-valgrind-drd monitor_drd "$BT/test_monitor_loop"
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

# The thread-free monitor in real loops (issue 10). The epoll pair: pings
# and pongs for a moment (both exit 0); then a server stopped with SIGSTOP
# (a hung peer): the client's loop reports it dead (exit 1, "dead
# (silence)") about its 1 s timeout later.
monitor_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
monitor_epoll_example() {
    local port rc srv
    port=$(monitor_free_port)
    "$BT/monitor_epoll_server" 127.0.0.1 "$port" 3 &
    srv=$!
    sleep 0.3
    "$BT/monitor_epoll_client" 127.0.0.1 "$port" 2
    rc=$?
    wait "$srv" || rc=1
    return $rc
}
run_check monitor-epoll-example monitor_epoll_example
monitor_epoll_hung_server() {
    local port srv cli rc t0 took out="$LOG/monitor-epoll-hung-server.client"
    port=$(monitor_free_port)
    "$BT/monitor_epoll_server" 127.0.0.1 "$port" 8 &
    srv=$!
    sleep 0.3
    "$BT/monitor_epoll_client" 127.0.0.1 "$port" 6 >"$out" 2>&1 &
    cli=$!
    sleep 1
    kill -STOP "$srv"
    t0=$(date +%s%N)
    wait "$cli"
    rc=$?
    took=$((($(date +%s%N) - t0) / 1000000))
    kill -CONT "$srv"
    kill "$srv" 2>/dev/null
    wait "$srv" 2>/dev/null
    cat "$out"
    echo "client exited $rc, $took ms after the server stopped"
    [ "$rc" = 1 ] && grep -q 'dead (silence)' "$out" && [ "$took" -ge 700 ] && [ "$took" -le 2500 ]
}
run_check monitor-epoll-hung-server monitor_epoll_hung_server
# libuv: the monitor's fd in a uv_poll_t; the silent peer must be reported
# inside the loop (on its thread), within its window (monitor_uv.c checks).
if [ -x "$BT/monitor_uv" ]; then
    run_check monitor-uv-silent-peer "$BT/monitor_uv" 1000
elif [ "${HEARTBEAT_REQUIRE_OPTIONAL:-0}" = 1 ]; then
    run_check monitor-uv-silent-peer sh -c 'echo "libuv example not built, but CI installs libuv1-dev"; exit 1'
else
    printf 'SKIP - monitor-uv-silent-peer: libuv not found by pkg-config when building (Debian: libuv1-dev)\n' \
        >"$LOG/monitor-uv.log"
    run_tap monitor-uv-silent-peer cat "$LOG/monitor-uv.log"
fi
