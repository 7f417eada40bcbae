# Keepalive configuration cost, sourced by c-tests/bench.sh.
"$BT/bench_keepalive"
