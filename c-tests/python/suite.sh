# Python package (issue 13, python/), sourced by c-tests/run.sh: uses run_tap,
# run_check, LOG, MAJOR. The tests import the package from python/src and
# load the build tree's library through HEARTBEAT_LIBRARY; `pip install`
# itself is tested into a temporary venv (python/tests/test_install.py).
# pytest and mypy come from .ci/setup.d/python.sh; without them (outside
# CI) the steps are skipped, in CI (CI=true) missing tools are a failure.

PY_LIB="$PWD/build/lib/libheartbeat.so.$MAJOR"

python_tool_missing() {   # python_tool_missing MODULE: prints the SKIP line
    python3 -c "import $1" 2>/dev/null && return 1
    echo "SKIP - python3 has no $1 (bash .ci/setup.d/python.sh installs it)"
    return 0
}

python_pytest() {
    if python_tool_missing pytest; then
        [ "${CI:-}" = true ] && return 1
        return 0
    fi
    local xml="$LOG/python-pytest.xml" rc
    rm -f "$xml"
    # pytest's own output goes to the log; its results come from the report.
    HEARTBEAT_LIBRARY="$PY_LIB" PYTHONPATH="$PWD/python/src" PYTHONDONTWRITEBYTECODE=1 MAJOR="$MAJOR" \
        python3 -m pytest -p no:cacheprovider -q -rfEsx --junitxml="$xml" python/tests >&2
    rc=$?
    python3 c-tests/python/junit_tap.py "$xml" || return 1
    # 1: some test failed (the "not ok" lines say which); anything else
    # (2 interrupted, 3 internal error, 4 usage, 5 no test collected) fails
    # the step as a whole.
    return $rc
}
run_tap python-pytest python_pytest

python_mypy() {
    if python_tool_missing mypy; then
        [ "${CI:-}" = true ] && return 1
        return 0
    fi
    # The package and its tests, strictly typed (settings in python/pyproject.toml).
    python3 -m mypy --config-file python/pyproject.toml --cache-dir build/mypy-cache \
        python/src/libheartbeat python/tests python/examples c-tests/python/junit_tap.py bench/python_bench.py &&
        echo "ok - mypy --strict: python/src, python/tests, python/examples, the bench and the report converter"
}
run_tap python-mypy-strict python_mypy
