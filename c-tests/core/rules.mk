# Core (keepalive API) test programs beyond the generic test_*.c rule.

# The same API test, linked against the static library.
$(BT)/api_static: test_api.c $(TEST_HDRS) | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(TEST_CFLAGS) -DHEARTBEAT_EXPECTED_VERSION='"$(VERSION)"' -DHEARTBEAT_STATIC_BUILD -o $@ $< $(BLIB)/libheartbeat.a $(STATIC_LIBS)

# dlopen() test: never links the library, never includes the header.
$(BT)/dlopen: dlopen.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c99 -D_GNU_SOURCE $(WARN) -o $@ $< -ldl

# C++ program that includes the header.
$(BT)/cxx: cxx.cpp include/heartbeat.h | lib
	$(call say,CXX,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CXX) $(CFLAGS) -std=c++11 $(WARN) -Iinclude -o $@ $< $(TEST_LDFLAGS) -lheartbeat

# The header alone, as C99 and as C++.
$(BT)/header-c99.o: include/heartbeat.h | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)printf '#include "heartbeat.h"\nint heartbeat_header_c99(void) { return HEARTBEAT_OK; }\n' > $(BT)/header-c99.c
	$(Q)$(CC) -std=c99 $(WARN) -Iinclude -c -o $@ $(BT)/header-c99.c
$(BT)/header-cxx.o: include/heartbeat.h | lib
	$(call say,CXX,$@)
	$(Q)mkdir -p $(BT)
	$(Q)printf '#include "heartbeat.h"\nint heartbeat_header_cxx() { return HEARTBEAT_OK; }\n' > $(BT)/header-cxx.cpp
	$(Q)$(CXX) -std=c++98 $(WARN) -Iinclude -c -o $@ $(BT)/header-cxx.cpp

# LD_PRELOAD fault injector for setsockopt/getsockopt.
$(BT)/faultinject.so: faultinject.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -shared -fPIC -o $@ $< -ldl

TEST_BINS += $(BT)/api_static $(BT)/dlopen $(BT)/cxx $(BT)/header-c99.o $(BT)/header-cxx.o $(BT)/faultinject.so
