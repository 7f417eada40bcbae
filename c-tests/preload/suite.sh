# libheartbeat_preload.so suite (issue 5), sourced by c-tests/run.sh: uses
# run_tap, run_check, BT, LOG.
#
# Every program here is unmodified: python3 running a plain socket script,
# and c-tests/preload/preload_client.c, which never includes heartbeat.h. Each is
# run with and without the library and the two runs are compared.

PRELOAD="$PWD/build/lib/libheartbeat_preload.so"
PRELOAD_PY=$(python3 -c 'import sys; print(sys.executable)')  # the interpreter, not a shim
PRELOAD_SET=(HEARTBEAT_IDLE=7 HEARTBEAT_INTVL=3 HEARTBEAT_CNT=4)
PRELOAD_WANT="ka=1 idle=7 intvl=3 cnt=4 ut=19000"   # ut: auto = (7 + 3*4) * 1000

# --- the library itself ----------------------------------------------------
preload_exports_only_hooks() {
    local got
    got=$(nm -D --defined-only "$PRELOAD" | awk '{print $3}' | sort | tr '\n' ' ')
    echo "exported: $got"
    [ "$got" = "accept accept4 connect listen socket " ]
}
run_check preload-exports-only-the-hooks preload_exports_only_hooks

preload_soname() {
    local so
    so=$(readelf -d "$PRELOAD" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    echo "SONAME: $so"
    [ "$so" = libheartbeat_preload.so ]
}
run_check preload-soname-is-its-own preload_soname

# With a wrong SONAME (libheartbeat.so.0, leaked from the main crate's
# build.rs by cargo), the loader takes the preloaded library for the
# program's libheartbeat.so.0 and the program dies with "undefined symbol".
run_check preload-with-a-program-linking-libheartbeat \
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=5 "$BT/demo"

preload_main_lib_interposes_nothing() {
    local bad
    bad=$(nm -D --defined-only build/lib/libheartbeat.so | awk '{print $3}' |
        grep -xE 'socket|connect|listen|accept4?|setsockopt|getsockopt')
    [ -z "$bad" ] || { echo "libheartbeat.so defines: $bad"; return 1; }
}
run_check preload-main-library-interposes-no-libc-symbol preload_main_lib_interposes_nothing

# --- python3 ---------------------------------------------------------------
run_tap preload-python-configured env LD_PRELOAD="$PRELOAD" "${PRELOAD_SET[@]}" \
    "$PRELOAD_PY" c-tests/preload/preload_sockets.py 1 7 3 4 19000
# Explicit user timeout, and only some variables set (the rest: kernel's).
preload_kernel() { cat "/proc/sys/net/ipv4/tcp_keepalive_$1"; }
run_tap preload-python-partial-settings env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=11 \
    HEARTBEAT_USER_TIMEOUT=1234 "$PRELOAD_PY" c-tests/preload/preload_sockets.py \
    1 11 "$(preload_kernel intvl)" "$(preload_kernel probes)" 1234
# Control: the same script without the library sees the kernel's defaults.
run_tap preload-python-control "$PRELOAD_PY" c-tests/preload/preload_sockets.py \
    0 "$(preload_kernel time)" "$(preload_kernel intvl)" "$(preload_kernel probes)" 0

# --- the C program ---------------------------------------------------------
"$BT/preload_client" </dev/null >"$LOG/preload-base.out" 2>&1

# preload_compare RUN_OUTPUT CONFIGURED_PATTERN
#   Lines whose name matches CONFIGURED_PATTERN must show PRELOAD_WANT; every
#   other line must equal the run without the library. Prints ok/not ok.
preload_compare() {
    local out=$1 pat=$2 name rest base
    local n=0
    while read -r name rest; do
        n=$((n + 1))
        base=$(awk -v n="$name" '$1 == n { $1 = ""; sub(/^ /, ""); print }' "$LOG/preload-base.out")
        if [[ "$name" =~ ^($pat)$ ]]; then
            [ "$rest" = "$PRELOAD_WANT" ] && echo "ok - $name configured" ||
                echo "not ok - $name: '$rest', expected '$PRELOAD_WANT'"
        else
            [ "$rest" = "$base" ] && echo "ok - $name unchanged ($rest)" ||
                echo "not ok - $name: '$rest', without the library '$base'"
        fi
    done <"$out"
    [ "$n" -eq "$(wc -l <"$LOG/preload-base.out")" ] || echo "not ok - $out has $n lines"
}

# preload_c_case NAME CONFIGURED_PATTERN ENV...
preload_c_case() {
    local name=$1 pat=$2; shift 2
    env LD_PRELOAD="$PRELOAD" "${PRELOAD_SET[@]}" "$@" "$BT/preload_client" </dev/null \
        >"$LOG/$name.out" 2>"$LOG/$name.err"
    preload_compare "$LOG/$name.out" "$pat"
}

preload_c_baseline_sane() {
    # The comparisons below mean something only if the unpreloaded run saw
    # the kernel's defaults and the expected errors.
    local b="$LOG/preload-base.out"
    grep -qx 'tcp4-client ka=0 .*' "$b" &&
        grep -qx 'refused-connect rc=-1 errno=111' "$b" &&   # ECONNREFUSED
        grep -qx 'socket-bad-family rc=-1 errno=97' "$b" &&  # EAFNOSUPPORT
        grep -qx 'socket-bad-protocol rc=-1 errno=93' "$b" && # EPROTONOSUPPORT
        grep -qx 'connect-bad-fd rc=-1 errno=9' "$b" &&       # EBADF
        grep -qx 'accept4-not-socket rc=-1 errno=88' "$b" &&  # ENOTSOCK
        grep -qx 'tcp4-connect-errno-kept 1' "$b" ||
        { cat "$b"; return 1; }
}
run_check preload-c-baseline preload_c_baseline_sane

TCP_ALL='tcp[46]-(listener|client|accepted|nonblock-client|accepted4)'
# Default hooks connect,listen: listeners and clients directly, accepted
# connections by inheritance.
run_tap preload-c-default-hooks preload_c_case preload-c-default "$TCP_ALL"
run_tap preload-c-hooks-connect preload_c_case preload-c-connect \
    'tcp[46]-(client|nonblock-client)' HEARTBEAT_HOOKS=connect
run_tap preload-c-hooks-accept preload_c_case preload-c-accept \
    'tcp[46]-(accepted|accepted4)' HEARTBEAT_HOOKS=accept
run_tap preload-c-hooks-socket preload_c_case preload-c-socket "$TCP_ALL" HEARTBEAT_HOOKS=socket
run_tap preload-c-hooks-all preload_c_case preload-c-all "$TCP_ALL" \
    HEARTBEAT_HOOKS=socket,connect,listen,accept

# HEARTBEAT_DEBUG=1: one line per TCP socket configured, one per non-TCP
# socket left alone, and the attempt is made on TCP sockets only.
preload_debug() {
    local err="$LOG/preload-c-debug.err"
    preload_c_case preload-c-debug "$TCP_ALL" HEARTBEAT_DEBUG=1 HEARTBEAT_HOOKS=connect,listen,accept
    local ok nontcp total
    ok=$(grep -c '): idle=7 intvl=3 cnt=4 user_timeout_ms=19000 keepalive=1: ok$' "$err")
    nontcp=$(grep -cE 'not TCP \(protocol (0|17)\): untouched$' "$err")
    total=$(grep -c '^libheartbeat_preload: ' "$err")
    # 2 families x (listen, connect, accept, non-blocking connect, accept4),
    # plus the connect() to a closed port (a TCP socket: configured first).
    [ "$ok" -eq 11 ] && echo "ok - debug: 11 TCP sockets configured" ||
        echo "not ok - debug: $ok TCP sockets configured, expected 11"
    # udp4, udp6: connect and listen; unix: listen, connect, accept.
    [ "$nontcp" -eq 7 ] && echo "ok - debug: 7 UDP/UNIX sockets left alone" ||
        echo "not ok - debug: $nontcp UDP/UNIX sockets left alone, expected 7"
    grep -q ': failed' "$err" && echo "not ok - debug: a configuration failed" ||
        echo "ok - debug: no failure"
    # The settings line, the above, and connect(-1) and listen(-1); failed
    # accept() calls have no new socket to log.
    [ "$total" -eq $((1 + 11 + 7 + 2)) ] && echo "ok - debug: $total lines" ||
        echo "not ok - debug: $total lines, expected $((1 + 11 + 7 + 2))"
    sed 's/^/# /' "$err"
}
run_tap preload-c-debug preload_debug

# A setsockopt() that fails inside the library (TCP_KEEPCNT refused): the
# socket is rolled back (untouched), the hooked calls return exactly what
# they return without the library, errno included.
preload_fault() {
    env LD_PRELOAD="$PWD/$BT/preload_fault.so $PRELOAD" "${PRELOAD_SET[@]}" HEARTBEAT_DEBUG=1 \
        HEARTBEAT_HOOKS=socket,connect,listen,accept "$BT/preload_client" </dev/null \
        >"$LOG/preload-c-fault.out" 2>"$LOG/preload-c-fault.err"
    preload_compare "$LOG/preload-c-fault.out" 'none'
    grep -q ': failed: TCP_KEEPCNT .*(errno 1)$' "$LOG/preload-c-fault.err" &&
        echo "ok - the refused option was reported in the debug log" ||
        echo "not ok - no 'failed ... errno 1' line in the debug log"
}
run_tap preload-c-fault-rolls-back preload_fault

# Invalid settings: one clear stderr line, the program runs, nothing changes.
preload_invalid() {
    local setting want
    while IFS='|' read -r setting want; do
        env LD_PRELOAD="$PRELOAD" "${PRELOAD_SET[@]}" "$setting" "$BT/preload_client" </dev/null \
            >"$LOG/preload-invalid.out" 2>"$LOG/preload-invalid.err"
        local rc=$? lines
        lines=$(wc -l <"$LOG/preload-invalid.err")
        if [ "$rc" -eq 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$want" "$LOG/preload-invalid.err" &&
            cmp -s "$LOG/preload-invalid.out" "$LOG/preload-base.out"; then
            echo "ok - $setting: one line, untouched: $(cat "$LOG/preload-invalid.err")"
        else
            echo "not ok - $setting: exit $rc, $lines stderr lines, want '$want'"
            sed 's/^/#   /' "$LOG/preload-invalid.err"
            diff "$LOG/preload-base.out" "$LOG/preload-invalid.out" | head -5 | sed 's/^/#   /'
        fi
    done <<'EOF'
HEARTBEAT_IDLE=abc|HEARTBEAT_IDLE="abc" is invalid (accepted: whole seconds 1..32767)
HEARTBEAT_IDLE=30s|HEARTBEAT_IDLE="30s" is invalid (accepted: whole seconds 1..32767)
HEARTBEAT_INTVL=0|HEARTBEAT_INTVL="0" is invalid (accepted: whole seconds 1..32767)
HEARTBEAT_CNT=128|HEARTBEAT_CNT="128" is invalid (accepted: probes 1..127)
HEARTBEAT_CNT=|HEARTBEAT_CNT="" is invalid (accepted: probes 1..127)
HEARTBEAT_USER_TIMEOUT=-1|HEARTBEAT_USER_TIMEOUT="-1" is invalid (accepted: milliseconds 0..2147483647, or auto)
HEARTBEAT_HOOKS=connect,read|HEARTBEAT_HOOKS="connect,read" is invalid (accepted: a comma-separated list of socket, connect, listen, accept)
HEARTBEAT_DEBUG=yes|HEARTBEAT_DEBUG="yes" is invalid (accepted: 0 or 1)
EOF
}
run_tap preload-invalid-settings preload_invalid

# No setting at all: the library does nothing.
preload_unset() {
    env LD_PRELOAD="$PRELOAD" "$BT/preload_client" </dev/null >"$LOG/preload-unset.out" 2>&1 &&
        cmp "$LOG/preload-unset.out" "$LOG/preload-base.out"
}
run_check preload-no-settings-no-change preload_unset

# A statically linked program is out of reach of every LD_PRELOAD library:
# it runs, unaffected.
preload_static() {
    "$BT/preload_client_static" </dev/null >"$LOG/preload-static-base.out" 2>&1 || return 1
    env LD_PRELOAD="$PRELOAD" "${PRELOAD_SET[@]}" "$BT/preload_client_static" </dev/null \
        >"$LOG/preload-static.out" 2>&1 || return 1
    grep -qx 'tcp4-client ka=0 .*' "$LOG/preload-static.out" &&
        cmp "$LOG/preload-static-base.out" "$LOG/preload-static.out"
}
if [ -x "$BT/preload_client_static" ]; then
    run_check preload-static-binary-unaffected preload_static
else
    printf '%-5s %-44s    0 ok, 1 skipped (no static libc to build it)\n' skip preload-static-binary-unaffected
    SKIPPED=$((SKIPPED + 1))
fi

# The network-namespace test: an unmodified, preloaded python3 client
# detects a cut path at the configured deadline.
run_tap preload-netns-detection bash c-tests/preload/net_preload.sh
