# Keepalive configuration cost, sourced by bench/bench.sh.
"$BT/bench_keepalive"
