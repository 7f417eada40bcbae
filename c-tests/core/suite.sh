# Core (keepalive API) suite, sourced by c-tests/run.sh: uses run_tap,
# run_check, run_cargo, BT, LOG, VERSION, MAJOR.

run_cargo cargo-test cargo test --release --workspace

# --- the header ---------------------------------------------------------
header_is_fresh() {
    # build.rs regenerated include/heartbeat.h during this build; it must be
    # byte-identical to the OUT_DIR copy and to the committed file.
    local gen
    gen=$(ls -t target/release/build/heartbeat-*/out/heartbeat.h 2>/dev/null | head -n1)
    [ -n "$gen" ] || { echo "no generated header in target/"; return 1; }
    cmp "$gen" include/heartbeat.h || return 1
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && git cat-file -e HEAD:include/heartbeat.h 2>/dev/null; then
        git diff --exit-code HEAD -- include/heartbeat.h ||
            { echo "include/heartbeat.h differs from the committed header: commit the regenerated file"; return 1; }
    else
        echo "not a git checkout: compared with the build's copy only"
    fi
}
run_check header-is-fresh header_is_fresh

header_compiles() {
    local d
    d=$(mktemp -d) || return 1
    printf '#include "heartbeat.h"\nint f(void);\nint f(void) { struct heartbeat_config c = {0, 1, 1, 1, 0}; return c.idle + HEARTBEAT_OK; }\n' >"$d/h.c"
    cp "$d/h.c" "$d/h.cpp"
    local rc=0
    ${CC:-cc} -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -c -o "$d/c.o" "$d/h.c" || rc=1
    ${CXX:-c++} -std=c++98 -Wall -Wextra -Werror -pedantic -Iinclude -c -o "$d/cxx98.o" "$d/h.cpp" || rc=1
    ${CXX:-c++} -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -c -o "$d/cxx17.o" "$d/h.cpp" || rc=1
    rm -rf "$d"
    return $rc
}
run_check header-compiles-c99-and-cxx header_compiles

header_documents_everything() {
    # Every #define, function, typedef, struct and field is preceded by a doc comment.
    python3 - include/heartbeat.h <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
bad = []
for i, l in enumerate(lines):
    s = l.strip()
    if re.match(r"#define HEARTBEAT_", s) and not s.startswith("#define HEARTBEAT_H") or \
       re.match(r"^(const )?[a-z].*\(.*\);$", s) or re.match(r"^struct \w+ \{$", s) or re.match(r"^typedef ", s) or \
       (re.match(r"^\s+[a-z].* \w+;$", l) and not s.startswith("return")):
        j = i - 1
        while j >= 0 and lines[j].strip() == "":
            j -= 1
        if not lines[j].strip().endswith("*/"):
            bad.append(s)
for b in bad:
    print("undocumented:", b)
sys.exit(1 if bad else 0)
PY
}
run_check header-documents-every-item header_documents_everything

# --- the shared object ----------------------------------------------------
exports_only_heartbeat() {
    local syms fns
    syms=$(nm -D --defined-only build/lib/libheartbeat.so | awk '{print $3}' | sort)
    echo "$syms"
    echo "$syms" | grep -Ev '^heartbeat(_[a-z0-9_]+)?$' && { echo "unexpected exports above"; return 1; }
    # Every function of the header is exported, and nothing else.
    fns=$(grep -oE '^[a-z].*[ *](heartbeat(_[a-z0-9_]+)?)\(' include/heartbeat.h | grep -oE 'heartbeat(_[a-z0-9_]+)?\($' | tr -d '(' | sort)
    diff <(echo "$fns") <(echo "$syms")
}
run_check exports-only-heartbeat-symbols exports_only_heartbeat

soname_and_links() {
    readelf -d build/lib/libheartbeat.so | grep -q "SONAME.*\[libheartbeat.so.$MAJOR\]" || { echo "no soname"; return 1; }
    [ "$(readlink build/lib/libheartbeat.so)" = "libheartbeat.so.$MAJOR" ] &&
        [ "$(readlink build/lib/libheartbeat.so.$MAJOR)" = "libheartbeat.so.$VERSION" ] &&
        [ -f "build/lib/libheartbeat.so.$VERSION" ] && [ -f build/lib/libheartbeat.a ] &&
        # Programs record the soname, not the development link.
        readelf -d "$BT/test_api" | grep -q "NEEDED.*\[libheartbeat.so.$MAJOR\]"
}
run_check soname-and-links soname_and_links

# --- C, C++, dlopen, Python -------------------------------------------------
run_tap test_api "$BT/test_api"
static_is_static() { ! ldd "$BT/api_static" | grep -q libheartbeat; }
run_check api-static-has-no-shared-dependency static_is_static
run_tap api_static "$BT/api_static"
run_tap test_fault env LD_PRELOAD="$PWD/$BT/faultinject.so" "$BT/test_fault"

# heartbeat_apply()'s rollback where the previous values are beyond
# setsockopt()'s range: a private network namespace (unshare -n, deleted
# with its last process) whose defaults are tcp_keepalive_time 40000 and
# tcp_keepalive_probes 200, with the fault injector refusing options.
rollback_in_namespace() {
    if ! unshare -n true 2>/dev/null; then
        if [ "${HEARTBEAT_REQUIRE_NETNS:-0}" = 1 ]; then
            echo "not ok - cannot create a network namespace (unshare -n; HEARTBEAT_REQUIRE_NETNS=1)"
        else
            echo "SKIP - cannot create a network namespace (unshare -n): needs root"
        fi
        return 0
    fi
    unshare -n sh -c 'ip link set lo up &&
        echo 40000 >/proc/sys/net/ipv4/tcp_keepalive_time &&
        echo 200 >/proc/sys/net/ipv4/tcp_keepalive_probes &&
        exec env LD_PRELOAD="$1" "$2"' sh "$PWD/$BT/faultinject.so" "$BT/test_rollback"
}
run_tap test_rollback rollback_in_namespace
run_tap dlopen "$BT/dlopen" "$PWD/build/lib/libheartbeat.so.$MAJOR" "$VERSION"
run_tap cxx "$BT/cxx"
run_tap python-ctypes python3 c-tests/core/ctypes_test.py "$PWD/build/lib/libheartbeat.so.$MAJOR" "$VERSION"

# --- exact system calls, no heap ---------------------------------------------
syscalls_are_exact() {
    local log want got i
    log=$(mktemp) || return 1
    strace -o "$log" "$BT/test_syscalls" || { rm -f "$log"; return 1; }
    # The calls between marker close(-N) and close(-N-1), by name.
    want=(
        "setsockopt setsockopt setsockopt setsockopt"                      # heartbeat()
        "getsockopt getsockopt getsockopt getsockopt getsockopt setsockopt setsockopt setsockopt setsockopt setsockopt" # apply
        "getsockopt getsockopt getsockopt getsockopt getsockopt"           # get
        "setsockopt"                                                       # disable
        ""                                                                 # deadline, strerror, version
        ""                                                                 # out-of-range argument
        "setsockopt"                                                       # fd -1: the kernel says EBADF
        "getsockopt"                                                       # status of a live connection
        "getsockopt"                                                       # status_ex
        "getsockopt"                                                       # status of a fresh socket
        "getsockopt getsockopt getsockopt getsockopt getsockopt setsockopt setsockopt setsockopt setsockopt setsockopt" # within
        ""                                                                 # config_within, within out of range, bad flag
        "getsockopt getsockopt"                                            # status of a reset connection: TCP_INFO, SO_ERROR
        "getsockopt getsockopt getsockopt getsockopt getsockopt getsockopt" # get of an MPTCP socket (+ SO_PROTOCOL)
        "getsockopt getsockopt getsockopt getsockopt getsockopt getsockopt setsockopt setsockopt setsockopt setsockopt" # apply, MPTCP
    )
    # Without MPTCP in the kernel the last two sections make no call.
    if "$BT/test_syscalls" | grep -qx '# no-mptcp'; then
        want[14]=""
        want[15]=""
    fi
    for i in $(seq 0 $((${#want[@]} - 1))); do
        got=$(awk -v a="close(-$((100 + i)))" -v b="close(-$((101 + i)))" '
            index($0, a) == 1 { on = 1; next }
            index($0, b) == 1 { on = 0 }
            on { sub(/\(.*/, ""); printf "%s%s", sep, $0; sep = " " }' "$log")
        if [ "$got" != "${want[$i]}" ]; then
            echo "section $i: got [$got], expected [${want[$i]}]"
            rm -f "$log"
            return 1
        fi
        echo "section $i: [$got]"
    done
    rm -f "$log"
}
run_check syscalls-exact-count syscalls_are_exact
run_tap test_syscalls "$BT/test_syscalls"

# --- the demo and the installed copy ---------------------------------------
run_check demo "$BT/demo"

install_and_pkg_config() {
    local tmp rc=0
    tmp=$(mktemp -d) || return 1
    (
        set -e
        # Staged install: DESTDIR only stages, PREFIX is what the files say.
        make -s install PREFIX=/opt/heartbeat-test DESTDIR="$tmp/stage" >/dev/null
        lib="$tmp/stage/opt/heartbeat-test/lib"
        test -f "$lib/libheartbeat.so.$VERSION"
        test "$(readlink "$lib/libheartbeat.so.$MAJOR")" = "libheartbeat.so.$VERSION"
        test "$(readlink "$lib/libheartbeat.so")" = "libheartbeat.so.$MAJOR"
        test -f "$lib/libheartbeat.a"
        test -f "$tmp/stage/opt/heartbeat-test/include/heartbeat.h"
        test -f "$lib/libheartbeat_preload.so"   # installed beside the library
        grep -qx 'prefix=/opt/heartbeat-test' "$lib/pkgconfig/heartbeat.pc"
        ! grep -q "$tmp" "$lib/pkgconfig/heartbeat.pc"
        make -s uninstall PREFIX=/opt/heartbeat-test DESTDIR="$tmp/stage" >/dev/null
        left=$(find "$tmp/stage" ! -type d)
        [ -z "$left" ] || { echo "uninstall left: $left"; exit 1; }

        # Real install into a prefix; build the demo with pkg-config only.
        make -s install PREFIX="$tmp/prefix" >/dev/null
        export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
        test "$(pkg-config --modversion heartbeat)" = "$VERSION"
        # shellcheck disable=SC2046
        ${CC:-cc} -std=c11 -o "$tmp/demo" examples/demo.c $(pkg-config --cflags --libs heartbeat)
        LD_LIBRARY_PATH="$(pkg-config --variable=libdir heartbeat)" ldd "$tmp/demo" | grep -q "$tmp/prefix/lib/libheartbeat.so.$MAJOR"
        LD_LIBRARY_PATH="$(pkg-config --variable=libdir heartbeat)" "$tmp/demo"
        # Static linking with the private libraries pkg-config lists.
        # shellcheck disable=SC2046
        ${CC:-cc} -std=c11 -o "$tmp/demo-static" examples/demo.c $(pkg-config --cflags heartbeat) \
            "$tmp/prefix/lib/libheartbeat.a" $(pkg-config --libs-only-l --static heartbeat | sed 's/-lheartbeat//')
        ! ldd "$tmp/demo-static" | grep -q libheartbeat
        "$tmp/demo-static" >/dev/null
        make -s uninstall PREFIX="$tmp/prefix" >/dev/null
        left=$(find "$tmp/prefix" ! -type d)
        [ -z "$left" ] || { echo "uninstall left: $left"; exit 1; }
    ) || rc=1
    rm -rf "$tmp"
    return $rc
}
run_check install-pkg-config-uninstall install_and_pkg_config

# --- valgrind ------------------------------------------------------------------
run_tap valgrind-test_api $VG "$BT/test_api"
run_tap valgrind-test_fault env LD_PRELOAD="$PWD/$BT/faultinject.so" $VG "$BT/test_fault"
run_tap valgrind-dlopen $VG "$BT/dlopen" "$PWD/build/lib/libheartbeat.so.$MAJOR" "$VERSION"

# --- Rust hygiene ------------------------------------------------------------
run_check cargo-fmt cargo fmt --all -- --check
run_check cargo-clippy cargo clippy --release --workspace --all-targets -- -D warnings

# --- Rust users --------------------------------------------------------------
# rustdoc without warnings (the doc examples run as doc tests in cargo-test).
# Warnings located in src/monitor/ and src/ffi/monitor.rs are printed but not
# counted: those files belong to the monitor piece, which fixes them in its
# own branch (two intra-doc links today); drop the exception once it lands.
cargo_doc_clean() {
    local log rc ours
    log=$(mktemp) || return 1
    cargo doc --no-deps --workspace --quiet 2>"$log"
    rc=$?
    cat "$log"
    ours=$(grep -A4 -E '^(warning|error)' "$log" | grep -E '^ *--> ' |
        grep -vE -- '--> src/(monitor/|ffi/monitor\.rs)')
    rm -f "$log"
    [ -z "$ours" ] || echo "rustdoc warnings above, in: $ours"
    [ "$rc" -eq 0 ] && [ -z "$ours" ]
}
run_check cargo-doc-no-warnings cargo_doc_clean

# A Rust program that uses the crate as a dependency (c-tests/rust-user/,
# its own workspace and lock file) and passes &stream.
run_tap rust-user cargo run --release --quiet --locked --manifest-path c-tests/rust-user/Cargo.toml \
    --target-dir target/rust-user

# Every code the header defines is walked by test_api's strerror test.
codes_all_tested() {
    local c rc=0
    for c in $(grep -oE '^#define HEARTBEAT_(OK|ERR_[A-Z_]+) ' include/heartbeat.h | awk '{print $2}'); do
        grep -q "\b$c\b" c-tests/core/test_api.c || { echo "$c is not in test_strerror_every_code"; rc=1; }
    done
    return $rc
}
run_check strerror-test-covers-every-code codes_all_tested

# Every C test program is run by some suite.
all_tests_run() {
    local f n rc=0
    for f in c-tests/*/test_*.c; do
        n=$(basename "$f" .c)
        grep -q "\$BT/$n\b" c-tests/*/suite.sh || { echo "$n is built but never run"; rc=1; }
    done
    return $rc
}
run_check every-test-program-is-run all_tests_run
