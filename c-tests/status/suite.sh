# heartbeat_status() on loopback, sourced by c-tests/run.sh (the cut-link
# cases are in c-tests/net/).
run_tap test_status "$BT/test_status"
run_tap valgrind-test_status $VG "$BT/test_status"
