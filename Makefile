# libheartbeat: build, test, benchmark and install the C library.
#
#   make                  build build/lib/libheartbeat.{so,a} (and the header
#                         and man pages, regenerated from src/ffi/)
#   make demo             build, then show a dead peer being detected
#   make examples         build the demo and the monitor client and server
#   make test             every test; ends with "N passed, N failed"
#   make check-deep       sanitizers, model checking, fuzzing (CI runs them too)
#   make bench            benchmarks (figures and ratios, no pass/fail)
#   make install          install what `make` built (never builds, never runs
#                         cargo: `make && sudo make install` works)
#   make uninstall        remove exactly what install added
#
# Install variables (docs/install.md): PREFIX=/usr/local, BINDIR, LIBDIR
# (multiarch allowed: LIBDIR=/usr/lib/x86_64-linux-gnu), INCLUDEDIR, MANDIR,
# PKGCONFIGDIR, CMAKEDIR, DESTDIR= for staging. With an empty DESTDIR, as
# root, install and uninstall run ldconfig.
#
# V=1 shows every command; by default each step prints one short line.

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))

PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
MANDIR       ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR     ?= $(LIBDIR)/cmake/heartbeat
DESTDIR      ?=

CARGO ?= cargo
CC    ?= cc
CXX   ?= c++
CFLAGS ?= -O2 -g
WARN  := -Wall -Wextra -Wpedantic -Werror
STRIP ?= strip
LDCONFIG ?= /sbin/ldconfig
# Installs an ELF program or shared library without its debug information
# (the build tree keeps it): $(INSTALL_ELF) SRC DEST. For INSTALL_EXTRA too.
INSTALL_ELF = install -m 755 -s --strip-program=$(STRIP)

ifeq ($(V),1)
Q :=
CARGO_Q :=
else
Q := @
CARGO_Q := -q
endif
# One short line per step unless V=1 (none with make -s): $(call say,WHAT,TARGET).
SILENT := $(findstring s,$(firstword -$(MAKEFLAGS)))
say = $(if $(Q),$(if $(SILENT),,@printf '  %-8s %s\n' '$(1)' '$(2)'))

B       := build
BLIB    := $(B)/lib
BT      := $(B)/c-tests
RUSTOUT := target/release
SONAME  := libheartbeat.so.$(MAJOR)
REALSO  := libheartbeat.so.$(VERSION)

# The system libraries the Rust staticlib needs, as rustc prints them
# (--print native-static-libs), saved by `make` in $(NATIVE_LIBS). Static
# links leave out -lgcc_s, which exists only as a shared library: the
# compiler driver adds its static unwinder (libgcc_eh) by itself.
NATIVE_LIBS := $(B)/native-static-libs
STATIC_LIBS = $(filter-out -lgcc_s,$(shell cat $(NATIVE_LIBS) 2>/dev/null))

# How libheartbeat.so is linked (see lib: below); everything but the
# functions of heartbeat.map is local.
SO_LDFLAGS := -shared -Wl,-soname,$(SONAME) -Wl,--version-script=heartbeat.map \
    -Wl,--no-undefined-version -Wl,--no-undefined -Wl,--gc-sections -Wl,--as-needed \
    -Wl,-z,relro,-z,now -Wl,-z,noexecstack

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

# libheartbeat.a is built with whole-program LTO and one codegen unit
# (docs/install.md). Cargo performs LTO only for a crate whose crate types
# all allow it, which a crate that is also an rlib does not, so the static
# library is built again alone (cargo rustc --crate-type staticlib) with LTO
# switched on for that command only: the preload library (whose
# --exclude-libs hiding of the heartbeat_* functions needs them in an
# archive) and cargo's other outputs stay as they are.
#
# libheartbeat.so is linked from the plain build's static library, with the
# symbol versions of heartbeat.map (rustc's own cdylib link cannot take a
# version script of ours: docs/abi.md) and --gc-sections. It is not LTO-built:
# LTO would save 54 KB more, but it inlines the monitor's lock-free slot
# accessors into the exported functions, and the DRD race check's
# suppressions (c-tests/monitor/monitor.supp) name those accessors.
#
# Each cargo command replaces target/release/libheartbeat.a, so each one's
# copy is taken at once.
LTO_CONFIG := --config 'profile.release.lto="fat"' --config profile.release.codegen-units=1
lib: cargo-build
	$(Q)mkdir -p $(BLIB)
	$(Q)cp -f $(RUSTOUT)/libheartbeat.a $(B)/libheartbeat-for-so.a
	$(call say,CARGO,libheartbeat.a (LTO))
	$(Q)$(CARGO) rustc $(CARGO_Q) $(LTO_CONFIG) --release -p heartbeat --lib --crate-type staticlib \
	    -- --print native-static-libs 2>$(B)/staticlib.log; rc=$$?; \
	    grep -v -e '^note: ' -e '^$$' $(B)/staticlib.log >&2; [ $$rc = 0 ]
	$(Q)cp -f $(RUSTOUT)/libheartbeat.a $(BLIB)/libheartbeat.a
	$(Q)sed -n 's/^note: native-static-libs: //p' $(B)/staticlib.log | tail -n1 > $(NATIVE_LIBS)
	$(Q)test -s $(NATIVE_LIBS) || { echo "rustc printed no native-static-libs (see $(B)/staticlib.log)"; exit 1; }
	$(call say,LD,$(BLIB)/$(REALSO))
	$(Q)$(CC) $(SO_LDFLAGS) $(LDFLAGS) -o $(BLIB)/$(REALSO) \
	    -Wl,--whole-archive $(B)/libheartbeat-for-so.a -Wl,--no-whole-archive $$(cat $(NATIVE_LIBS))
	$(Q)ln -sf $(REALSO) $(BLIB)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(BLIB)/libheartbeat.so

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

# --- install -------------------------------------------------------------
# `make install` installs what `make` built and never builds: the files below
# must exist. A subject's rules.mk adds its own files with
# `define INSTALL_EXTRA +=` / `define UNINSTALL_EXTRA +=` (one recipe line
# each; c-tests/preload/rules.mk does): they run after the library's, create
# their own directories ($(DESTDIR)$(BINDIR), $(DESTDIR)$(MANDIR)/man8, ...)
# and install programs and shared objects with $(INSTALL_ELF). heartbeat.pc and the CMake files are written here, from the
# install variables; paths in them are relative to the prefix (pkg-config's
# ${prefix}, the CMake file's own location), so a staged tree can move.
INSTALL_NEEDS := $(BLIB)/$(REALSO) $(BLIB)/libheartbeat.a $(NATIVE_LIBS)
MAN3 := $(sort $(wildcard man/man3/*.3))
MAN7 := $(sort $(wildcard man/man7/*.7))

space := $(subst ,, )
# $(call under_prefix,DIR,VAR): DIR as VAR/rest when it lies under PREFIX.
under_prefix = $(if $(filter $(PREFIX)/%,$(1)),$(2)/$(patsubst $(PREFIX)/%,%,$(1)),$(1))
PC_LIBDIR     = $(call under_prefix,$(LIBDIR),$${prefix})
PC_INCLUDEDIR = $(call under_prefix,$(INCLUDEDIR),$${prefix})
# The CMake files find the prefix from their own directory, CMAKEDIR.
CMAKE_UP      = $(subst $(space),/,$(patsubst %,..,$(subst /, ,$(patsubst $(PREFIX)/%,%,$(CMAKEDIR)))))
CMAKE_PREFIX  = $(if $(filter $(PREFIX)/%,$(CMAKEDIR)),$${CMAKE_CURRENT_LIST_DIR}/$(CMAKE_UP),$(PREFIX))
CMAKE_SUBST   = -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
    -e 's|@PREFIX@|$(CMAKE_PREFIX)|g' \
    -e 's|@LIBDIR@|$(call under_prefix,$(LIBDIR),$${_heartbeat_prefix})|g' \
    -e 's|@INCLUDEDIR@|$(call under_prefix,$(INCLUDEDIR),$${_heartbeat_prefix})|g' \
    -e 's|@STATIC_LIBS@|$(subst $(space),;,$(patsubst -l%,%,$(STATIC_LIBS)))|g' \
    -e 's|@SIZEOF_VOID_P@|$(shell getconf LONG_BIT | sed 's/64/8/; s/32/4/')|g'

# With an empty DESTDIR: as root, refresh the loader's cache; then say so if
# the loader still cannot find the library (a prefix outside its path).
define ldconfig_step
$(Q)if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then $(LDCONFIG); fi
endef
define loader_note
$(Q)if [ -z "$(DESTDIR)" ] && ! $(LDCONFIG) -p 2>/dev/null | grep -q " => $(LIBDIR)/$(SONAME)$$"; then \
    echo "note: the loader does not find $(LIBDIR)/$(SONAME): add $(LIBDIR) to /etc/ld.so.conf.d/ and run ldconfig, or link with -Wl,-rpath,$(LIBDIR) (docs/install.md)"; fi
endef

install:
	$(Q)for f in $(INSTALL_NEEDS); do [ -e "$$f" ] || { \
	    echo "make install: $$f is missing: run 'make' first (install never builds)"; exit 1; }; done
	$(call say,INSTALL,$(DESTDIR)$(LIBDIR)/$(REALSO) $(SONAME) libheartbeat.so libheartbeat.a)
	$(Q)install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(CMAKEDIR) $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	$(Q)$(INSTALL_ELF) $(BLIB)/$(REALSO) $(DESTDIR)$(LIBDIR)/$(REALSO)
	$(Q)ln -sf $(REALSO) $(DESTDIR)$(LIBDIR)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libheartbeat.so
	$(Q)install -m 644 $(BLIB)/libheartbeat.a $(DESTDIR)$(LIBDIR)/libheartbeat.a
	$(Q)$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libheartbeat.a
	$(call say,INSTALL,$(DESTDIR)$(INCLUDEDIR)/heartbeat.h)
	$(Q)install -m 644 include/heartbeat.h $(DESTDIR)$(INCLUDEDIR)/heartbeat.h
	$(call say,INSTALL,$(DESTDIR)$(PKGCONFIGDIR)/heartbeat.pc)
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(PC_LIBDIR)' 'includedir=$(PC_INCLUDEDIR)' '' \
	    'Name: heartbeat' \
	    'Description: Detect dead TCP peers: keepalive configuration, liveness status, application heartbeats' \
	    'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lheartbeat' \
	    'Libs.private: $(STATIC_LIBS)' > $(DESTDIR)$(PKGCONFIGDIR)/heartbeat.pc
	$(call say,INSTALL,$(DESTDIR)$(CMAKEDIR)/heartbeat-config.cmake heartbeat-config-version.cmake)
	$(Q)sed $(CMAKE_SUBST) cmake/heartbeat-config.cmake.in > $(DESTDIR)$(CMAKEDIR)/heartbeat-config.cmake
	$(Q)sed $(CMAKE_SUBST) cmake/heartbeat-config-version.cmake.in > $(DESTDIR)$(CMAKEDIR)/heartbeat-config-version.cmake
	$(call say,INSTALL,$(DESTDIR)$(MANDIR)/man3 ($(words $(MAN3)) pages) man7 ($(words $(MAN7)) pages))
	$(Q)$(if $(MAN3),install -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/)
	$(Q)$(if $(MAN7),install -m 644 $(MAN7) $(DESTDIR)$(MANDIR)/man7/)
	$(INSTALL_EXTRA)
	$(ldconfig_step)
	$(loader_note)

uninstall:
	$(call say,RM,libheartbeat from $(DESTDIR)$(PREFIX))
	$(Q)rm -f $(DESTDIR)$(LIBDIR)/$(REALSO) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libheartbeat.so $(DESTDIR)$(LIBDIR)/libheartbeat.a \
	      $(DESTDIR)$(INCLUDEDIR)/heartbeat.h $(DESTDIR)$(PKGCONFIGDIR)/heartbeat.pc \
	      $(DESTDIR)$(CMAKEDIR)/heartbeat-config.cmake $(DESTDIR)$(CMAKEDIR)/heartbeat-config-version.cmake \
	      $(addprefix $(DESTDIR)$(MANDIR)/man3/,$(notdir $(MAN3))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(MAN7)))
	$(Q)if [ -d $(DESTDIR)$(CMAKEDIR) ]; then rmdir --ignore-fail-on-non-empty $(DESTDIR)$(CMAKEDIR); fi
	$(UNINSTALL_EXTRA)
	$(ldconfig_step)

clean:
	rm -rf $(B)
	$(CARGO) clean
