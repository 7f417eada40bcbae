# The heartbeat monitor: the netns test program (test_monitor.c is built by
# the generic rule).
$(BT)/net_monitor: net_monitor.c $(TEST_HDRS) | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

TEST_BINS += $(BT)/net_monitor $(BT)/monitor_server $(BT)/monitor_client \
    $(BT)/monitor_epoll_server $(BT)/monitor_epoll_client

# The tests of both modes share the mode harness.
$(BT)/test_monitor $(BT)/test_monitor_edges: c-tests/monitor/mon_mode.h
