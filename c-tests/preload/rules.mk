# libheartbeat_preload.so: staging, install, test programs.
#
# The library is built by `cargo build --workspace` (crate preload/); it is
# staged into build/lib by `make lib` through the extra prerequisite below
# (it depends on cargo-build, not on lib, so there is no cycle).

PRELOAD_SO := libheartbeat_preload.so

.PHONY: preload-stage
# Copied under a temporary name, then renamed: a program running with the
# old copy preloaded keeps its mapping (cp over it would truncate the file
# it has mapped).
preload-stage: cargo-build
	$(Q)mkdir -p $(BLIB)
	$(Q)cp -f $(RUSTOUT)/$(PRELOAD_SO) $(BLIB)/$(PRELOAD_SO).tmp
	$(Q)mv -f $(BLIB)/$(PRELOAD_SO).tmp $(BLIB)/$(PRELOAD_SO)
lib: preload-stage

# One recipe line each (a newline, not a space, separates them from what
# other fragments add).
define INSTALL_EXTRA +=

$(INSTALL_ELF) $(BLIB)/$(PRELOAD_SO) $(DESTDIR)$(LIBDIR)/$(PRELOAD_SO)
endef
define UNINSTALL_EXTRA +=

rm -f $(DESTDIR)$(LIBDIR)/$(PRELOAD_SO)
endef

# Plain programs: they never include heartbeat.h and never link the library.
$(BT)/preload_client: preload_client.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -o $@ $<

# The same program linked statically: out of reach of any LD_PRELOAD
# library (the test shows it is simply unaffected).
$(BT)/preload_client_static: preload_client.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -static -o $@ $< || \
	    { echo 'no static libc: the static case will be skipped'; rm -f $@; }

$(BT)/preload_fault.so: preload_fault.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -shared -fPIC -o $@ $< -ldl

# Issue 8's regression tests: plain programs as well.
PRELOAD_PLAIN := preload_quiet preload_initrace preload_reconnect
$(addprefix $(BT)/,$(PRELOAD_PLAIN)): $(BT)/%: %.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -pthread -o $@ $<

# A program whose linked library calls socket() and listen() in its
# constructor, before the preload library's constructor has run.
$(BT)/libpreload_early.so: preload_early_lib.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -shared -fPIC -o $@ $<
$(BT)/preload_early: preload_early.c $(BT)/libpreload_early.so | lib
	$(call say,CC,$@)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -o $@ $< -L$(BT) -lpreload_early \
	    -Wl,-rpath,$(abspath $(BT))

TEST_BINS += $(BT)/preload_client $(BT)/preload_client_static $(BT)/preload_fault.so \
	$(addprefix $(BT)/,$(PRELOAD_PLAIN)) $(BT)/libpreload_early.so $(BT)/preload_early
