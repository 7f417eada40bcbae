# heartbeat-cgroup (issue 12): staging, install, test programs.
#
# The tool is built by `cargo build --workspace` (crate cgroup/). Its
# build.rs compiles the BPF program with clang; without clang (or libbpf's
# headers) the binary is built without it, and then this fragment neither
# stages nor installs it, and says so in one line. The test suite
# (c-tests/cgroup/suite.sh) skips then (fails in CI).

BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
CGROUP_TOOL := heartbeat-cgroup
BBIN := $(B)/bin

.PHONY: cgroup-stage
cgroup-stage: cargo-build
	$(Q)if $(RUSTOUT)/$(CGROUP_TOOL) --version 2>/dev/null | grep -q 'BPF program built in'; then \
	    mkdir -p $(BBIN) && cp -f $(RUSTOUT)/$(CGROUP_TOOL) $(BBIN)/$(CGROUP_TOOL); \
	else \
	    rm -f $(BBIN)/$(CGROUP_TOOL); \
	    echo '  heartbeat-cgroup: not built (needs clang and libbpf-dev: apt-get install clang libbpf-dev)'; \
	fi
lib: cgroup-stage

# One recipe line each; both do nothing when the tool was not built.
define INSTALL_EXTRA +=

if [ -x $(BBIN)/$(CGROUP_TOOL) ]; then install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 && $(INSTALL_ELF) $(BBIN)/$(CGROUP_TOOL) $(DESTDIR)$(BINDIR)/$(CGROUP_TOOL) && install -m 644 man/man8/$(CGROUP_TOOL).8 $(DESTDIR)$(MANDIR)/man8/$(CGROUP_TOOL).8; fi
endef
define UNINSTALL_EXTRA +=

rm -f $(DESTDIR)$(BINDIR)/$(CGROUP_TOOL) $(DESTDIR)$(MANDIR)/man8/$(CGROUP_TOOL).8
endef

# Plain programs that never set a socket option: statically linked with
# libc's socket calls, and with raw syscall(SYS_socket, ...) calls.
$(BT)/cgroup_probe_static: cgroup_probe.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -static -o $@ $<

$(BT)/cgroup_probe_raw: cgroup_probe.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -DHB_RAW -static -o $@ $<

$(BT)/cgroup_nobpf: cgroup_nobpf.c | lib
	$(call say,CC,$@)
	$(Q)mkdir -p $(BT)
	$(Q)$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -o $@ $<

TEST_BINS += $(BT)/cgroup_probe_static $(BT)/cgroup_probe_raw $(BT)/cgroup_nobpf
BENCH_BINS += $(BT)/cgroup_probe_static
