# Examples: the demo (make demo) and the monitor client and server
# (make examples builds them all).
EXAMPLE_CFLAGS := $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -pthread

$(BT)/demo: examples/demo.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

$(BT)/monitor_server: examples/monitor_server.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

$(BT)/monitor_client: examples/monitor_client.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

EXAMPLE_BINS += $(BT)/demo $(BT)/monitor_server $(BT)/monitor_client
