# libheartbeat: build, test, benchmark and install the C library.
#
#   make                  build build/lib/libheartbeat.{so,a} and the header
#   make demo             build, then configure a live loopback connection
#   make test             every test; ends with "N passed, N failed"
#   make bench            benchmarks (figures and ratios, no pass/fail)
#   make install          PREFIX=/usr/local, DESTDIR= for staging
#   make uninstall        remove exactly what install added

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=

CARGO ?= cargo
CC    ?= cc
CXX   ?= c++
CFLAGS ?= -O2 -g
WARN  := -Wall -Wextra -Wpedantic -Werror

B       := build
BLIB    := $(B)/lib
BT      := $(B)/c-tests
RUSTOUT := target/release
SONAME  := libheartbeat.so.$(MAJOR)
REALSO  := libheartbeat.so.$(VERSION)

# Libraries the Rust staticlib needs from the system.
STATIC_LIBS := -lpthread -ldl -lm -lrt -lgcc_s -lc

# Test programs linked against the shared library: every c-tests/test_*.c.
# Fragments in c-tests/*.mk add their own programs to TEST_BINS and BENCH_BINS.
TEST_SRCS := $(wildcard c-tests/test_*.c)
TEST_BINS := $(patsubst c-tests/%.c,$(BT)/%,$(TEST_SRCS))
BENCH_BINS :=
TEST_CFLAGS := $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ic-tests -pthread
TEST_LDFLAGS := -L$(BLIB) -Wl,-rpath,$(abspath $(BLIB))

.PHONY: all lib demo test bench install uninstall clean cargo-build
all: lib

# cargo decides what to rebuild; the staging below is cheap.
cargo-build:
	$(CARGO) build --release --workspace

lib: cargo-build
	@mkdir -p $(BLIB)
	cp -f $(RUSTOUT)/libheartbeat.so $(BLIB)/$(REALSO)
	ln -sf $(REALSO) $(BLIB)/$(SONAME)
	ln -sf $(SONAME) $(BLIB)/libheartbeat.so
	cp -f $(RUSTOUT)/libheartbeat.a $(BLIB)/libheartbeat.a
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	    'Name: heartbeat' \
	    'Description: Detect dead TCP peers: keepalive configuration, liveness status, application heartbeats' \
	    'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lheartbeat' \
	    'Libs.private: $(STATIC_LIBS)' > $(B)/heartbeat.pc

$(BT)/%: c-tests/%.c c-tests/check.h include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(TEST_CFLAGS) -DHEARTBEAT_EXPECTED_VERSION='"$(VERSION)"' -o $@ $< $(TEST_LDFLAGS) -lheartbeat -ldl

# The same API test, linked against the static library.
$(BT)/api_static: c-tests/test_api.c c-tests/check.h include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(TEST_CFLAGS) -DHEARTBEAT_EXPECTED_VERSION='"$(VERSION)"' -DHEARTBEAT_STATIC_BUILD -o $@ $< $(BLIB)/libheartbeat.a $(STATIC_LIBS)

# dlopen() test: never links the library, never includes the header.
$(BT)/dlopen: c-tests/dlopen.c | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -std=c99 -D_GNU_SOURCE $(WARN) -o $@ $< -ldl

# C++ program that includes the header.
$(BT)/cxx: c-tests/cxx.cpp include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CXX) $(CFLAGS) -std=c++11 $(WARN) -Iinclude -o $@ $< $(TEST_LDFLAGS) -lheartbeat

# The header alone, as C99 and as C++.
$(BT)/header-c99.o: include/heartbeat.h | lib
	@mkdir -p $(BT)
	printf '#include "heartbeat.h"\nint heartbeat_header_c99(void) { return HEARTBEAT_OK; }\n' > $(BT)/header-c99.c
	$(CC) -std=c99 $(WARN) -Iinclude -c -o $@ $(BT)/header-c99.c
$(BT)/header-cxx.o: include/heartbeat.h | lib
	@mkdir -p $(BT)
	printf '#include "heartbeat.h"\nint heartbeat_header_cxx() { return HEARTBEAT_OK; }\n' > $(BT)/header-cxx.cpp
	$(CXX) -std=c++98 $(WARN) -Iinclude -c -o $@ $(BT)/header-cxx.cpp

# LD_PRELOAD fault injector for setsockopt/getsockopt.
$(BT)/faultinject.so: c-tests/faultinject.c | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -shared -fPIC -o $@ $< -ldl

# Benchmarks.
$(BT)/bench_keepalive: c-tests/bench_keepalive.c include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -o $@ $< $(TEST_LDFLAGS) -lheartbeat -ldl
BENCH_BINS += $(BT)/bench_keepalive

TEST_BINS += $(BT)/api_static $(BT)/dlopen $(BT)/cxx $(BT)/header-c99.o $(BT)/header-cxx.o $(BT)/faultinject.so

-include $(wildcard c-tests/*.mk)

demo: lib $(BT)/demo
	$(BT)/demo

$(BT)/demo: examples/demo.c include/heartbeat.h | lib
	@mkdir -p $(BT)
	$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -o $@ $< $(TEST_LDFLAGS) -lheartbeat

test: lib $(TEST_BINS) $(BT)/demo
	@VERSION=$(VERSION) MAJOR=$(MAJOR) bash c-tests/run.sh

bench: lib $(BENCH_BINS)
	@bash c-tests/bench.sh

install: lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(BLIB)/$(REALSO) $(DESTDIR)$(LIBDIR)/$(REALSO)
	ln -sf $(REALSO) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libheartbeat.so
	install -m 644 $(BLIB)/libheartbeat.a $(DESTDIR)$(LIBDIR)/libheartbeat.a
	install -m 644 include/heartbeat.h $(DESTDIR)$(INCLUDEDIR)/heartbeat.h
	install -m 644 $(B)/heartbeat.pc $(DESTDIR)$(PKGCONFIGDIR)/heartbeat.pc
	$(INSTALL_EXTRA)

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALSO) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libheartbeat.so $(DESTDIR)$(LIBDIR)/libheartbeat.a \
	      $(DESTDIR)$(INCLUDEDIR)/heartbeat.h $(DESTDIR)$(PKGCONFIGDIR)/heartbeat.pc
	$(UNINSTALL_EXTRA)

clean:
	rm -rf $(B)
	$(CARGO) clean
