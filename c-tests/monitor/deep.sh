# Deep checks of the heartbeat monitor (issue 8), sourced by c-tests/run.sh
# when HEARTBEAT_DEEP=1 (CI) and by `make check-deep`: uses run_tap,
# run_check, run_cargo, BT, LOG.
#
# 1. loom: the model checks of src/monitor/loom_tests.rs, over the real
#    monitor code built with --cfg loom (its mutex, condition variable,
#    thread, lock-free atomics and clock are loom's). Unbounded preemptions
#    (the models are small: about a second each).
# 2. AddressSanitizer and ThreadSanitizer (nightly toolchain: its ASan and
#    TSan runtimes), on the monitor's Rust unit tests and on the C monitor
#    tests (test_monitor.c, test_monitor_edges.c) with libheartbeat.so and
#    the test programs both built with the sanitizer (see monitor_san_build
#    for the runtimes). ThreadSanitizer needs
#    the standard library instrumented too (-Zbuild-std, which needs the
#    nightly's rust-src component: .ci/setup.d/monitor.sh adds it); without
#    rust-src the TSan steps print SKIP and ASan still runs (std is then not
#    instrumented, which only makes ASan blind inside std).
#
# The C programs run with HB_TEST_SLOW=1 (smaller loads, wide timing
# windows: sanitizers slow the code down 2-15x on a loaded 2-core machine),
# except test_unwatch_waiter_resumes_after_free and test_callback_stack,
# which need full speed and run alone. No suppressions are needed: neither
# sanitizer reports anything in the library or the tests (TSan understands
# the lock-free atomics that valgrind's DRD must be told about).
#
# Every step is bounded with timeout(1); the builds go to target/{loom,asan,
# tsan} and build/{asan,tsan}.

MON_TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

run_cargo monitor-loom env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    timeout 1800 cargo test --release -p heartbeat --lib monitor::loom_tests

# Builds libheartbeat.so with sanitizer $1 (address|thread) into build/$2,
# and links the C monitor tests against it with gcc's matching runtime.
monitor_san_build() {
    local san=$1 dir=build/$2 extra=()
    [ "$san" = thread ] && extra=(-Zbuild-std)
    RUSTFLAGS="-Zsanitizer=$san" CARGO_TARGET_DIR=target/$2 \
        timeout 2400 cargo +nightly build "${extra[@]}" --release -p heartbeat --lib \
        --target "$MON_TRIPLE" || return 1
    mkdir -p "$dir"
    cp -f "target/$2/$MON_TRIPLE/release/libheartbeat.so" "$dir/libheartbeat.so.0" || return 1
    ln -sf libheartbeat.so.0 "$dir/libheartbeat.so"
    # The library must really be instrumented.
    nm -D "$dir/libheartbeat.so" | grep -q " U __${2}_" || { echo "not instrumented"; return 1; }
    # The programs are instrumented by the C compiler. ASan: gcc's runtime
    # (libasan) serves the Rust-instrumented library too. TSan: the
    # library's instrumentation (LLVM's, newer than gcc 12's libtsan, which
    # lacks __tsan_memset and friends) needs the runtime shipped with the
    # nightly toolchain, linked whole into the program.
    local t rt
    rt="$(rustc +nightly --print sysroot)/lib/rustlib/$MON_TRIPLE/lib/librustc-nightly_rt.tsan.a"
    for t in test_monitor test_monitor_edges test_monitor_loop; do
        ${CC:-cc} -O1 -g -fsanitize="$san" -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE \
            -Iinclude -Ic-tests/lib -pthread -c -o "$dir/$t.o" "c-tests/monitor/$t.c" || return 1
        if [ "$san" = thread ]; then
            ${CC:-cc} -o "$dir/$t" "$dir/$t.o" -Wl,--whole-archive "$rt" -Wl,--no-whole-archive \
                -L"$dir" -Wl,-rpath,"$PWD/$dir" -lheartbeat -ldl -lpthread -lm -lstdc++ || return 1
        else
            ${CC:-cc} -fsanitize=address -o "$dir/$t" "$dir/$t.o" \
                -L"$dir" -Wl,-rpath,"$PWD/$dir" -lheartbeat -ldl || return 1
        fi
    done
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    printf 'SKIP - monitor sanitizers: no nightly toolchain\n' >"$LOG/monitor-sanitizers.log"
    run_tap monitor-sanitizers cat "$LOG/monitor-sanitizers.log"
else
    # --- AddressSanitizer ---------------------------------------------------
    run_cargo monitor-rust-asan env RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan \
        ASAN_OPTIONS=detect_leaks=1 \
        timeout 2400 cargo +nightly test --release -p heartbeat --lib --target "$MON_TRIPLE" monitor
    run_check monitor-asan-build monitor_san_build address asan
    if [ -x build/asan/test_monitor_edges ]; then
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=66
        run_tap monitor-asan-test_monitor env HB_TEST_SLOW=1 timeout 900 build/asan/test_monitor
        run_tap monitor-asan-test_monitor_edges env HB_TEST_SLOW=1 timeout 900 build/asan/test_monitor_edges
        run_tap monitor-asan-waiter-resumes-after-free env \
            HB_TEST_ONLY=test_unwatch_waiter_resumes_after_free timeout 300 build/asan/test_monitor_edges
        run_tap monitor-asan-callback-stack env HB_TEST_ONLY=test_callback_stack \
            timeout 300 build/asan/test_monitor_edges
        # The thread-free mode (issue 10): its own tests, and the guarantee
        # tests driven by a poll() loop.
        run_tap monitor-asan-test_monitor_loop env HB_TEST_SLOW=1 timeout 900 build/asan/test_monitor_loop
        run_tap monitor-asan-loop-mode-test_monitor env HB_MONITOR_MODE=loop HB_TEST_SLOW=1 \
            timeout 900 build/asan/test_monitor
        run_tap monitor-asan-loop-mode-test_monitor_edges env HB_MONITOR_MODE=loop HB_TEST_SLOW=1 \
            timeout 900 build/asan/test_monitor_edges
        unset ASAN_OPTIONS
    fi

    # --- ThreadSanitizer ------------------------------------------------------
    if [ -d "$(rustc +nightly --print sysroot)/lib/rustlib/src/rust/library" ]; then
        run_cargo monitor-rust-tsan env RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR=target/tsan \
            TSAN_OPTIONS=halt_on_error=1 \
            timeout 3000 cargo +nightly test -Zbuild-std --release -p heartbeat --lib \
            --target "$MON_TRIPLE" monitor
        run_check monitor-tsan-build monitor_san_build thread tsan
        if [ -x build/tsan/test_monitor_edges ]; then
            # exitcode 66: any report fails the step; second_deadlock_stack
            # makes lock-order reports complete.
            export TSAN_OPTIONS=exitcode=66:second_deadlock_stack=1
            run_tap monitor-tsan-test_monitor env HB_TEST_SLOW=1 timeout 1200 build/tsan/test_monitor
            run_tap monitor-tsan-test_monitor_edges env HB_TEST_SLOW=1 timeout 1200 \
                build/tsan/test_monitor_edges
            run_tap monitor-tsan-test_monitor_loop env HB_TEST_SLOW=1 timeout 1200 \
                build/tsan/test_monitor_loop
            run_tap monitor-tsan-loop-mode-test_monitor_edges env HB_MONITOR_MODE=loop HB_TEST_SLOW=1 \
                timeout 1200 build/tsan/test_monitor_edges
            unset TSAN_OPTIONS
        fi
    else
        printf 'SKIP - monitor ThreadSanitizer: the nightly has no rust-src (rustup component add rust-src --toolchain nightly), needed for -Zbuild-std\n' \
            >"$LOG/monitor-tsan.log"
        run_tap monitor-tsan cat "$LOG/monitor-tsan.log"
    fi
fi
