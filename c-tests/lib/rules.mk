# Shared test tools: the allocation-failure injector (failalloc.c).
$(BT)/failalloc.so: failalloc.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -shared -fPIC -o $@ $< -ldl -pthread

TEST_BINS += $(BT)/failalloc.so
