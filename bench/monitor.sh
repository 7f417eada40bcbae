# Heartbeat monitor benchmark (issue 4), sourced by bench/bench.sh.
# HB_BENCH_CONNS (default 100000) and HB_BENCH_STEADY (seconds, default 10)
# scale it down on a busy machine.
echo "== heartbeat monitor vs naive baseline"
"$BT/bench_monitor"
