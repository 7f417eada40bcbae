# Network-namespace tests (c-tests/net/suite.sh); the detection benchmark
# (bench/detect.sh) runs the same program.
$(BT)/net_liveness: net_liveness.c $(TEST_HDRS) | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

TEST_BINS += $(BT)/net_liveness
BENCH_BINS += $(BT)/net_liveness
