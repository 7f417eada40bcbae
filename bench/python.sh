# Python package overhead (issue 13), sourced by bench/bench.sh: configure()
# through the package vs four sock.setsockopt() calls from Python, and
# Monitor.alive() per call, on the build tree's library.
if python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    HEARTBEAT_LIBRARY="$PWD/build/lib/libheartbeat.so.0" PYTHONPATH="$PWD/python/src" PYTHONDONTWRITEBYTECODE=1 \
        python3 bench/python_bench.py "${HB_BENCH_PY_ROUNDS:-21}"
else
    echo "== Python package: skipped (no python3 >= 3.9)"
fi
