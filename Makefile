# libheartbeat: build, test, benchmark and install the C library.
#
#   make                  build build/lib/libheartbeat.{so,a} and the header
#   make demo             build, then show a dead peer being detected
#   make test             every test; ends with "N passed, N failed"
#   make check-deep       sanitizers, model checking, fuzzing (CI runs them too)
#   make bench            benchmarks (figures and ratios, no pass/fail)
#   make install          PREFIX=/usr/local, DESTDIR= for staging
#   make uninstall        remove exactly what install added
#
# V=1 shows every command; by default each step prints one short line.

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

ifeq ($(V),1)
Q :=
CARGO_Q :=
else
Q := @
CARGO_Q := -q
endif
# One short line per step unless V=1: $(call say,WHAT,TARGET).
say = $(if $(Q),@printf '  %-8s %s\n' '$(1)' '$(2)')

B       := build
BLIB    := $(B)/lib
BT      := $(B)/c-tests
RUSTOUT := target/release
SONAME  := libheartbeat.so.$(MAJOR)
REALSO  := libheartbeat.so.$(VERSION)

# Libraries the Rust staticlib needs from the system.
STATIC_LIBS := -lpthread -ldl -lm -lrt -lgcc_s -lc

# Test sources live in c-tests/<subject>/ (shared helpers in c-tests/lib/),
# benchmarks in bench/; every file name is unique, and every program is built
# flat into build/c-tests/. Each subject's rules.mk adds its own programs to
# TEST_BINS and BENCH_BINS; every c-tests/*/test_*.c gets the generic rule.
TEST_DIRS := $(sort $(dir $(wildcard c-tests/*/)))
vpath %.c $(TEST_DIRS) bench examples
vpath %.cpp $(TEST_DIRS)
TEST_SRCS := $(wildcard c-tests/*/test_*.c)
TEST_BINS := $(patsubst %.c,$(BT)/%,$(notdir $(TEST_SRCS)))
BENCH_BINS :=
TEST_HDRS := $(wildcard c-tests/lib/*.h) include/heartbeat.h
TEST_CFLAGS := $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ic-tests/lib -pthread
TEST_LDFLAGS := -L$(BLIB) -Wl,-rpath,$(abspath $(BLIB))

.PHONY: all lib demo examples test check-deep bench install uninstall clean cargo-build
all: lib

# cargo decides what to rebuild; the staging below is cheap.
cargo-build:
	$(call say,CARGO,release build of the workspace)
	$(Q)$(CARGO) build $(CARGO_Q) --release --workspace

lib: cargo-build
	$(Q)mkdir -p $(BLIB)
	$(Q)cp -f $(RUSTOUT)/libheartbeat.so $(BLIB)/$(REALSO)
	$(Q)ln -sf $(REALSO) $(BLIB)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(BLIB)/libheartbeat.so
	$(Q)cp -f $(RUSTOUT)/libheartbeat.a $(BLIB)/libheartbeat.a
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	    'Name: heartbeat' \
	    'Description: Detect dead TCP peers: keepalive configuration, liveness status, application heartbeats' \
	    'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lheartbeat' \
	    'Libs.private: $(STATIC_LIBS)' > $(B)/heartbeat.pc

# The generic rule: a C test program linked against the shared library.
$(BT)/%: %.c $(TEST_HDRS) | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(TEST_CFLAGS) -DHEARTBEAT_EXPECTED_VERSION='"$(VERSION)"' -o $@ $< $(TEST_LDFLAGS) -lheartbeat -ldl

-include $(wildcard c-tests/*/rules.mk) bench/rules.mk examples/rules.mk

demo: lib $(BT)/demo
	$(Q)$(BT)/demo

examples: lib $(EXAMPLE_BINS)

test: lib $(TEST_BINS) $(BT)/demo
	$(Q)VERSION=$(VERSION) MAJOR=$(MAJOR) bash c-tests/run.sh

check-deep: lib $(TEST_BINS)
	$(Q)VERSION=$(VERSION) MAJOR=$(MAJOR) bash c-tests/run.sh --deep-only

bench: lib $(BENCH_BINS)
	$(Q)bash bench/bench.sh

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
