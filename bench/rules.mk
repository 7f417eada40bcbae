# Benchmarks (make bench runs bench/bench.sh).
$(BT)/bench_keepalive: bench_keepalive.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -o $@ $< $(TEST_LDFLAGS) -lheartbeat -ldl

$(BT)/bench_monitor: bench_monitor.c $(TEST_HDRS) | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -O2 -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ic-tests/lib -pthread -o $@ $< $(TEST_LDFLAGS) -lheartbeat

BENCH_BINS += $(BT)/bench_keepalive $(BT)/bench_monitor
