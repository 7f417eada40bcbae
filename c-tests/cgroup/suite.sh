# heartbeat-cgroup suite (issue 12), sourced by c-tests/run.sh: uses run_tap,
# run_check, BT, LOG.
#
# The network and privilege tests are in c-tests/cgroup/cgroup_*.sh, each its
# own process with traps that remove every cgroup, pin and namespace it
# made (c-tests/cgroup/lib.sh). Without root, network namespaces, cgroup2 or
# a tool built with its BPF program they print one SKIP line; with
# HEARTBEAT_REQUIRE_NETNS=1 (CI) they fail instead.

run_tap cgroup-bad-input bash c-tests/cgroup/cgroup_input.sh
run_tap cgroup-reach-and-untouched bash c-tests/cgroup/cgroup_reach.sh
run_tap cgroup-detection-and-watch bash c-tests/cgroup/cgroup_detect.sh
run_tap cgroup-run-signals-and-status bash c-tests/cgroup/cgroup_signals.sh

cgroup_man_lint() {
    local page=man/man8/heartbeat-cgroup.8 out
    if command -v mandoc >/dev/null; then
        out=$(mandoc -T lint -W warning "$page" 2>&1)
    else
        out=$(groff -man -ww -z "$page" 2>&1)
    fi
    [ -z "$out" ] || { echo "$out"; return 1; }
    # Every subcommand and option of the tool is in the page.
    local w
    for w in run attach detach show watch --idle --intvl --cnt --user-timeout --json --id; do
        grep -qF -- "${w//-/\\-}" "$page" || { echo "the man page does not mention $w"; return 1; }
    done
}
run_check cgroup-man-page-lints-clean cgroup_man_lint

# Without clang the workspace still builds; the tool then says it has no
# BPF program and refuses every command, and make neither stages nor
# installs it (one line says why). Built in its own target directory, as a
# debug build (quicker to compile).
cgroup_without_clang() {
    local tgt=target/noclang tmp rc=0
    # A new CLANG value makes build.rs run again (in that target directory
    # only), and say why (cargo shows it without -q).
    local clang=/nonexistent/clang-$$
    CLANG=$clang cargo build -p heartbeat-cgroup --target-dir "$tgt" 2>&1 |
        grep -F "\`$clang\` not found: heartbeat-cgroup is built without its BPF program" ||
        { echo "no warning from build.rs"; return 1; }
    "$tgt/debug/heartbeat-cgroup" --version | grep -qx 'heartbeat-cgroup [0-9.]* (built without clang: no BPF program)' ||
        { echo "--version: $("$tgt/debug/heartbeat-cgroup" --version)"; return 1; }
    local msg
    msg=$("$tgt/debug/heartbeat-cgroup" attach / 2>&1)
    [ $? -eq 1 ] && grep -qF 'was built without clang, so it carries no BPF program: install clang and libbpf-dev' <<<"$msg" ||
        { echo "attach: $msg"; return 1; }
    tmp=$(mktemp -d) || return 1
    msg=$(make -s cgroup-stage RUSTOUT="$tgt/debug" B="$tmp" 2>&1) || rc=1
    grep -qx '  heartbeat-cgroup: not built (needs clang and libbpf-dev: apt-get install clang libbpf-dev)' <<<"$msg" ||
        { echo "make: $msg"; rc=1; }
    [ ! -e "$tmp/bin/heartbeat-cgroup" ] || { echo "make staged the tool without its program"; rc=1; }
    rm -rf "$tmp"
    return $rc
}
run_check cgroup-builds-without-clang cgroup_without_clang

# make install puts the tool in $(PREFIX)/bin and its page in
# $(MANDIR)/man8; uninstall removes both.
cgroup_install() {
    local tmp rc=0 p
    tmp=$(mktemp -d) || return 1
    p="$tmp/stage/opt/hb"
    make -s install PREFIX=/opt/hb DESTDIR="$tmp/stage" >/dev/null || rc=1
    # Installed stripped (INSTALL_ELF), so compare what it says, not its bytes.
    [ -x "$p/bin/heartbeat-cgroup" ] &&
        [ "$("$p/bin/heartbeat-cgroup" --version)" = "$(build/bin/heartbeat-cgroup --version)" ] ||
        { echo "no $p/bin/heartbeat-cgroup"; rc=1; }
    ! readelf -S "$p/bin/heartbeat-cgroup" | grep -q '\.debug_info' || { echo "installed unstripped"; rc=1; }
    [ -f "$p/share/man/man8/heartbeat-cgroup.8" ] || { echo "no man page in $p/share/man/man8"; rc=1; }
    make -s install PREFIX=/opt/hb MANDIR=/opt/man DESTDIR="$tmp/stage2" >/dev/null || rc=1
    [ -f "$tmp/stage2/opt/man/man8/heartbeat-cgroup.8" ] || { echo "MANDIR= not honoured"; rc=1; }
    make -s uninstall PREFIX=/opt/hb DESTDIR="$tmp/stage" >/dev/null || rc=1
    make -s uninstall PREFIX=/opt/hb MANDIR=/opt/man DESTDIR="$tmp/stage2" >/dev/null || rc=1
    local left
    left=$(find "$tmp" ! -type d)
    [ -z "$left" ] || { echo "uninstall left: $left"; rc=1; }
    rm -rf "$tmp"
    return $rc
}
if [ -x build/bin/heartbeat-cgroup ]; then
    run_check cgroup-install-uninstall cgroup_install
else
    printf '%-5s %-44s    0 ok, 1 skipped (heartbeat-cgroup not built: needs clang)\n' skip cgroup-install-uninstall
    SKIPPED=$((SKIPPED + 1))
fi
