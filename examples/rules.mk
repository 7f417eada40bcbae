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

# The thread-free monitor in an epoll loop (client and server), and in a
# libuv loop (uv_poll_t on heartbeat_monitor_fd()): issue 10. The libuv
# example is built when pkg-config finds libuv (Debian: libuv1-dev).
$(BT)/monitor_epoll_server: examples/monitor_epoll_server.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

$(BT)/monitor_epoll_client: examples/monitor_epoll_client.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(TEST_LDFLAGS) -lheartbeat

EXAMPLE_BINS += $(BT)/monitor_epoll_server $(BT)/monitor_epoll_client

UV_OK := $(shell pkg-config --exists libuv 2>/dev/null && echo yes)
ifeq ($(UV_OK),yes)
$(BT)/monitor_uv: examples/monitor_uv.c include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(EXAMPLE_CFLAGS) $(shell pkg-config --cflags libuv) -o $@ $< $(TEST_LDFLAGS) \
	    -lheartbeat $(shell pkg-config --libs libuv)

EXAMPLE_BINS += $(BT)/monitor_uv
TEST_BINS += $(BT)/monitor_uv
endif
