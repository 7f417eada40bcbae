# Network-namespace tests and the detection benchmark (issue 3).
# c-tests/run-net.sh and c-tests/bench-detect.sh run them.
$(BT)/net_liveness: c-tests/net_liveness.c include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

TEST_BINS += $(BT)/net_liveness
BENCH_BINS += $(BT)/net_liveness
