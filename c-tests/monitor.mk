# The heartbeat monitor (issue 4): netns test program, benchmark, example.
# c-tests/test_monitor.c is built by the generic test rule.
$(BT)/net_monitor: c-tests/net_monitor.c c-tests/check.h include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

$(BT)/bench_monitor: c-tests/bench_monitor.c include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -O2 -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ic-tests -pthread -o $@ $< $(TEST_LDFLAGS) -lheartbeat

$(BT)/monitor_server: examples/monitor_server.c include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ic-tests -pthread -o $@ $< $(TEST_LDFLAGS) -lheartbeat

$(BT)/monitor_client: examples/monitor_client.c include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ic-tests -pthread -o $@ $< $(TEST_LDFLAGS) -lheartbeat

TEST_BINS += $(BT)/net_monitor $(BT)/monitor_server $(BT)/monitor_client
BENCH_BINS += $(BT)/bench_monitor
