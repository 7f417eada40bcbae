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
# Issue 8, defect 14: leading zeros are plain digits (30 s, 3 s, 4 probes).
run_tap preload-python-leading-zeros env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=00000000030 \
    HEARTBEAT_INTVL=0003 HEARTBEAT_CNT=00000000000000000004 HEARTBEAT_USER_TIMEOUT=0000000000042000 \
    "$PRELOAD_PY" c-tests/preload/preload_sockets.py 1 30 3 4 42000
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
        grep -qx 'tcp4-connect-errno-kept 1' "$b" &&
        grep -qx 'udp4-connect-errno-kept 1' "$b" &&
        grep -qx 'unix-connect-errno-kept 1' "$b" ||
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

# MPTCP sockets answer TCP_INFO but are refused by heartbeat_apply()'s
# reads: untouched, and the debug log says why.
preload_mptcp() {
    env LD_PRELOAD="$PRELOAD" "${PRELOAD_SET[@]}" HEARTBEAT_HOOKS=connect,listen,accept \
        HEARTBEAT_DEBUG=1 "$PRELOAD_PY" c-tests/preload/preload_mptcp.py \
        >"$LOG/preload-mptcp.out" 2>"$LOG/preload-mptcp.err"
    local rc=$? n
    cat "$LOG/preload-mptcp.out"
    grep -q '^SKIP' "$LOG/preload-mptcp.out" && return 0
    n=$(grep -cE '^libheartbeat_preload: (listen|connect|accept4?)\(fd [0-9]+\): .*: failed: TCP_USER_TIMEOUT .*\(errno 95\)$' \
        "$LOG/preload-mptcp.err")
    [ "$n" -eq 3 ] && echo "ok - debug: 3 MPTCP sockets refused by heartbeat_apply() (TCP_USER_TIMEOUT, errno 95)" ||
        echo "not ok - debug: $n MPTCP refusals logged, expected 3"
    return "$rc"
}
run_tap preload-mptcp-untouched preload_mptcp

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

# --- issue 8: diagnostics never disturb the program (defect 1) ------------
# The settings each check runs with: an invalid one, debug lines from every
# hook, and the two that set no timer (the library must then write nothing).
PRELOAD_NOISY=(
    "HEARTBEAT_IDLE=7 HEARTBEAT_CNT=0"
    "HEARTBEAT_IDLE=7 HEARTBEAT_DEBUG=1 HEARTBEAT_HOOKS=socket,connect,listen,accept"
    "HEARTBEAT_HOOKS=bogus"
    "HEARTBEAT_DEBUG=1"
)
PRELOAD_OWN_BYTES="the program's own bytes"

# preload_wait_file FILE: waits up to 10 s for FILE to appear.
preload_wait_file() {
    local i
    for i in $(seq 200); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# preload_quiet_pair ROLE DIR ENV...: runs the preloaded program in ROLE
# (client or server, both with stderr closed so that their socket is fd 2;
# "closefrom": a client that closes fds 3 and up) against an unpreloaded
# partner; prints "rc=N" of the preloaded side and leaves what the partner
# received in DIR/got.
preload_quiet_pair() {
    local role=$1 dir=$2 rc partner
    shift 2
    rm -f "$dir/port" "$dir/got"
    if [ "$role" = server ]; then
        timeout 20 env LD_PRELOAD="$PRELOAD" "$@" "$BT/preload_quiet" server "$dir/port" \
            2>"$dir/err" &
        partner=$!
        preload_wait_file "$dir/port" &&
            timeout 20 "$BT/preload_quiet" peer "$(cat "$dir/port")" >"$dir/got"
        wait "$partner"
        rc=$?
    else
        timeout 20 "$BT/preload_quiet" sink "$dir/port" >"$dir/got" &
        partner=$!
        local extra=()
        [ "$role" = closefrom ] && extra=(closefrom)
        if preload_wait_file "$dir/port"; then
            timeout 20 env LD_PRELOAD="$PRELOAD" "$@" "$BT/preload_quiet" client \
                "$(cat "$dir/port")" "${extra[@]}" 2>"$dir/err"
            rc=$?
        else
            rc=99
        fi
        wait "$partner"
    fi
    echo "rc=$rc"
}

preload_quiet_sockets() {
    local dir role settings out got
    dir=$(mktemp -d)
    for settings in "${PRELOAD_NOISY[@]}"; do
        for role in client server; do
            # shellcheck disable=SC2086
            out=$(preload_quiet_pair "$role" "$dir" $settings)
            got=$(od -An -c "$dir/got" | tr -s ' ' | head -c 300)
            if [ "$out" = rc=0 ] && [ "$(cat "$dir/got")" = "$PRELOAD_OWN_BYTES" ]; then
                echo "ok - $role with stderr closed, $settings: exit 0, the peer got only the program's bytes"
            else
                echo "not ok - $role with stderr closed, $settings: $out, the peer got:$got"
            fi
        done
    done
    # The log file's fd closed by the program (closefrom) and its number
    # reused for a socket: the debug lines must not follow the number.
    out=$(preload_quiet_pair closefrom "$dir" "${PRELOAD_SET[@]}" HEARTBEAT_DEBUG=1 \
        HEARTBEAT_HOOKS=socket,connect HEARTBEAT_LOG="$dir/log")
    # The log has the lines written before (settings, the first socket),
    # none after.
    if [ "$out" = rc=0 ] && [ "$(cat "$dir/got")" = "$PRELOAD_OWN_BYTES" ] &&
        [ "$(wc -l <"$dir/log")" -eq 2 ] && grep -q '^libheartbeat_preload: socket(fd 4): ' "$dir/log"; then
        echo "ok - HEARTBEAT_LOG closed by the program, its fd number reused by a socket: only the program's bytes"
    else
        echo "not ok - HEARTBEAT_LOG's fd reused: $out, the peer got: $(head -c 300 "$dir/got")"
        sed 's/^/#   /' "$dir/log"
    fi
    rm -rf "$dir"
}
run_tap preload-diagnostics-never-reach-a-socket preload_quiet_sockets

# stderr a pipe whose reader is gone: writing to it raises SIGPIPE (exit
# 141). The program must exit 0 and print what it prints when stderr is
# /dev/null, and find no SIGPIPE pending that it did not raise.
preload_broken_pipe() {
    # broken CMD...: runs CMD with stderr a pipe without reader (SIGPIPE at
    # its default action), stdout to $LOG/preload-broken.out; prints rc.
    broken() {
        "$PRELOAD_PY" -c '
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
with open(sys.argv[1], "wb") as out:
    p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=w)
print(p.returncode)' "$LOG/preload-broken.out" "$@"
    }
    local settings rc
    for settings in "${PRELOAD_NOISY[@]}"; do
        # shellcheck disable=SC2086
        env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client" </dev/null \
            >"$LOG/preload-broken.want" 2>/dev/null
        # shellcheck disable=SC2086
        rc=$(broken env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client")
        if [ "$rc" = 0 ] && cmp -s "$LOG/preload-broken.want" "$LOG/preload-broken.out"; then
            echo "ok - stderr a broken pipe, $settings: exit 0, same output as with stderr /dev/null"
        else
            echo "not ok - stderr a broken pipe, $settings: exit $rc (-13: SIGPIPE)"
            diff "$LOG/preload-broken.want" "$LOG/preload-broken.out" | head -5 | sed 's/^/#   /'
        fi
    done
    # SIGPIPE blocked: the library's write must not leave one pending, and
    # must not take the one the program raised itself.
    local mode want got
    for mode in clear pending; do
        want="SIGPIPE not pending"
        [ "$mode" = pending ] && want="SIGPIPE pending"
        rc=$(broken env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=7 HEARTBEAT_CNT=0 \
            "$BT/preload_quiet" sigpipe "$mode")
        got=$(cat "$LOG/preload-broken.out")
        [ "$rc" = 0 ] && [ "$got" = "$want" ] &&
            echo "ok - SIGPIPE blocked, $mode before the library's write: '$got' after it" ||
            echo "not ok - SIGPIPE blocked, $mode before: exit $rc, '$got', expected '$want'"
    done
}
run_tap preload-stderr-broken-pipe preload_broken_pipe

# stderr a socket at startup (inetd, systemd's journal stream: the peer
# would read every line), or a full pipe that nobody reads (a write would
# wait for a reader forever): nothing is written to the first, the second
# never blocks the program.
preload_stderr_kinds() {
    local settings rc
    for settings in "${PRELOAD_NOISY[@]}"; do
        # shellcheck disable=SC2086
        env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client" </dev/null \
            >"$LOG/preload-kinds.want" 2>/dev/null
        # shellcheck disable=SC2086
        rc=$("$PRELOAD_PY" -c '
import os, socket, subprocess, sys
a, b = socket.socketpair()
with open(sys.argv[1], "wb") as out:
    p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=a, timeout=20)
a.close()
b.setblocking(False)
try:
    got = b.recv(4096)
except BlockingIOError:
    got = b""
print(p.returncode, len(got))' "$LOG/preload-kinds.out" env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client")
        if [ "$rc" = "0 0" ] && cmp -s "$LOG/preload-kinds.want" "$LOG/preload-kinds.out"; then
            echo "ok - stderr a socket, $settings: nothing written to it, exit 0, same output"
        else
            echo "not ok - stderr a socket, $settings: exit and bytes written to it: $rc"
        fi
        # shellcheck disable=SC2086
        rc=$("$PRELOAD_PY" -c '
import fcntl, os, subprocess, sys
r, w = os.pipe()
os.set_blocking(w, False)
try:
    while True:
        os.write(w, b"x" * 4096)
except BlockingIOError:
    pass
os.set_blocking(w, True)
with open(sys.argv[1], "wb") as out:
    try:
        p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=w, timeout=10)
        print(p.returncode)
    except subprocess.TimeoutExpired:
        print("blocked")' "$LOG/preload-kinds.out" env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client")
        if [ "$rc" = 0 ] && cmp -s "$LOG/preload-kinds.want" "$LOG/preload-kinds.out"; then
            echo "ok - stderr a full pipe, $settings: exit 0, same output, never blocked"
        else
            echo "not ok - stderr a full pipe, $settings: $rc"
        fi
    done
}
run_tap preload-stderr-socket-or-full-pipe preload_stderr_kinds

# A process that makes no socket call reports nothing, even with a bad
# setting: the report is written by the first hooked call.
preload_no_socket_no_report() {
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=abc HEARTBEAT_DEBUG=1 ls / \
        >/dev/null 2>"$LOG/preload-nosocket.err" </dev/null
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=7 HEARTBEAT_DEBUG=1 true 2>>"$LOG/preload-nosocket.err"
    [ ! -s "$LOG/preload-nosocket.err" ] || { cat "$LOG/preload-nosocket.err"; return 1; }
}
run_check preload-no-socket-call-no-report preload_no_socket_no_report

# No timer variable: nothing written anywhere, even for a bad value or
# HEARTBEAT_DEBUG=1 (and a log file only if one is asked for).
preload_silent_without_timers() {
    local settings
    for settings in "HEARTBEAT_HOOKS=bogus" "HEARTBEAT_DEBUG=1" "HEARTBEAT_DEBUG=1 HEARTBEAT_HOOKS=accept" \
        "HEARTBEAT_LOG=/nonexistent/hbt.log HEARTBEAT_DEBUG=1"; do
        # shellcheck disable=SC2086
        env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client" </dev/null \
            >"$LOG/preload-silent.out" 2>"$LOG/preload-silent.err"
        local rc=$?
        if [ "$rc" -eq 0 ] && [ ! -s "$LOG/preload-silent.err" ] &&
            cmp -s "$LOG/preload-silent.out" "$LOG/preload-base.out"; then
            echo "ok - $settings alone: nothing on stderr, sockets untouched"
        else
            echo "not ok - $settings alone: exit $rc, stderr: $(head -c 200 "$LOG/preload-silent.err")"
        fi
    done
}
run_tap preload-no-timer-no-output preload_silent_without_timers

# HEARTBEAT_LOG=path: every diagnostic goes there, none to stderr.
preload_log_file() {
    local dir log
    dir=$(mktemp -d)
    log="$dir/hb.log"
    # logged NAME WANT_LINES GREP ENV...: runs preload_client; stderr must be
    # empty, the log WANT_LINES lines long with GREP on its first line.
    logged() {
        local name=$1 lines=$2 pat=$3
        shift 3
        rm -f "$log"
        env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$log" "$@" "$BT/preload_client" </dev/null \
            >"$dir/out" 2>"$dir/err"
        local rc=$? n=0
        [ -f "$log" ] && n=$(wc -l <"$log")
        if [ "$rc" -eq 0 ] && [ ! -s "$dir/err" ] && [ "$n" -eq "$lines" ] &&
            { [ "$lines" -eq 0 ] || head -n1 "$log" | grep -q -- "$pat"; }; then
            echo "ok - HEARTBEAT_LOG, $name: $n lines in the log, nothing on stderr"
        else
            echo "not ok - HEARTBEAT_LOG, $name: exit $rc, $n lines in the log (want $lines), stderr: $(head -c 200 "$dir/err")"
            sed 's/^/#   /' "$log" 2>/dev/null | head -5
        fi
    }
    # Same lines as preload-c-debug: settings, 11 configured, 7 not TCP, 2 bad fds.
    logged "debug" 21 '^libheartbeat_preload: idle=7 intvl=3 cnt=4 user_timeout_ms=19000 hooks=connect,listen,accept$' \
        "${PRELOAD_SET[@]}" HEARTBEAT_DEBUG=1 HEARTBEAT_HOOKS=connect,listen,accept
    logged "invalid value" 1 '^libheartbeat_preload: HEARTBEAT_IDLE="abc" is invalid' \
        "${PRELOAD_SET[@]}" HEARTBEAT_IDLE=abc
    logged "invalid value, no timer" 1 '^libheartbeat_preload: HEARTBEAT_HOOKS="bogus" is invalid' \
        HEARTBEAT_HOOKS=bogus
    logged "debug, no timer" 1 '^libheartbeat_preload: none of HEARTBEAT_IDLE' HEARTBEAT_DEBUG=1
    # Nothing to say: the file is not even created.
    logged "valid settings, no debug" 0 '' "${PRELOAD_SET[@]}"
    [ ! -e "$log" ] && echo "ok - HEARTBEAT_LOG, nothing to say: no file created" ||
        echo "not ok - HEARTBEAT_LOG, nothing to say: $log was created"
    # Appended to, never truncated.
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$log" HEARTBEAT_IDLE=abc "$BT/preload_client" </dev/null >/dev/null 2>&1
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$log" HEARTBEAT_IDLE=abc "$BT/preload_client" </dev/null >/dev/null 2>&1
    [ "$(wc -l <"$log")" -eq 2 ] && echo "ok - HEARTBEAT_LOG is appended to" ||
        echo "not ok - HEARTBEAT_LOG after two runs has $(wc -l <"$log") lines, expected 2"
    # Created with mode 0666 less the umask, like the shell's >>.
    rm -f "$log"
    (umask 027 && env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$log" HEARTBEAT_IDLE=abc \
        "$BT/preload_client" </dev/null >/dev/null 2>&1)
    [ "$(stat -c %a "$log")" = 640 ] && echo "ok - HEARTBEAT_LOG created with mode 0666 less the umask (027: 640)" ||
        echo "not ok - HEARTBEAT_LOG created with mode $(stat -c %a "$log"), expected 640 under umask 027"
    # Not inherited across exec: env (preloaded, with something to say)
    # opens it, then execs ls without the library.
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$log" HEARTBEAT_IDLE=abc \
        env -u LD_PRELOAD ls -l /proc/self/fd >"$dir/fds.txt" 2>&1
    grep -q -- "-> $log" "$dir/fds.txt" &&
        echo "not ok - HEARTBEAT_LOG's fd was inherited across exec" ||
        echo "ok - HEARTBEAT_LOG's fd is not inherited across exec"
    # A FIFO without a reader: open() fails at once (ENXIO), never blocks.
    mkfifo "$dir/fifo"
    timeout 10 env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$dir/fifo" HEARTBEAT_IDLE=abc "$BT/preload_client" \
        </dev/null >/dev/null 2>"$dir/err"
    local rc=$?
    [ "$rc" -eq 0 ] && grep -q 'HEARTBEAT_LOG=".*/fifo" cannot be opened (errno 6); diagnostics go to stderr$' "$dir/err" &&
        echo "ok - HEARTBEAT_LOG a FIFO without reader: not opened (errno 6), reported on stderr, no wait" ||
        echo "not ok - HEARTBEAT_LOG a FIFO without reader: exit $rc, stderr: $(head -c 200 "$dir/err")"
    # Cannot be opened, a timer set: stderr says so, then carries the rest.
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG=/nonexistent/hbt.log "${PRELOAD_SET[@]}" HEARTBEAT_DEBUG=1 \
        HEARTBEAT_HOOKS=connect,listen,accept "$BT/preload_client" </dev/null >"$dir/out" 2>"$dir/err"
    if head -n1 "$dir/err" | grep -qx 'libheartbeat_preload: HEARTBEAT_LOG="/nonexistent/hbt.log" cannot be opened (errno 2); diagnostics go to stderr' &&
        sed -n 2p "$dir/err" | grep -q '^libheartbeat_preload: idle=7 ' &&
        [ "$(wc -l <"$dir/err")" -eq 22 ]; then
        echo "ok - HEARTBEAT_LOG that cannot be opened: one line on stderr says so, the debug lines follow there"
    else
        echo "not ok - HEARTBEAT_LOG that cannot be opened: stderr was:"
        sed 's/^/#   /' "$dir/err" | head -5
    fi
    # The log must not take fd 0, 1 or 2 of a program started without them.
    rm -f "$log" "$dir/fds"
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_LOG="$log" "${PRELOAD_SET[@]}" HEARTBEAT_DEBUG=1 \
        HEARTBEAT_HOOKS=socket "$BT/preload_quiet" fds "$dir/fds" <&- >&- 2>&-
    if grep -qx 'fd0 closed fd1 closed fd2 closed socket 0' "$dir/fds" &&
        grep -q '^libheartbeat_preload: socket(fd 0): idle=7 .*: ok$' "$log"; then
        echo "ok - HEARTBEAT_LOG in a program started with fds 0-2 closed: they stay closed, its socket is fd 0"
    else
        echo "not ok - HEARTBEAT_LOG with fds 0-2 closed: $(cat "$dir/fds" 2>&1)"
    fi
    rm -rf "$dir"
}
run_tap preload-log-file preload_log_file

# --- issue 8: initialisation before main (defects 3 and 4) -----------------
# 100 processes each: a child forked while another thread is in the first
# socket(), and socket() from a signal handler during the first socket().
run_tap preload-fork-during-first-socket env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=7 \
    "$BT/preload_initrace" fork 100
run_tap preload-signal-during-first-socket env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=7 \
    "$BT/preload_initrace" signal 100

# A library the program links calls socket() and listen() in its own
# constructor, which runs before this library's: the first hook builds the
# settings itself, and the socket is configured as in main(). In 100 runs a
# SIGALRM 1..97 us into that first call runs a handler that calls socket():
# while the settings are being built it must go straight to the real
# function or the system call, never wait (at least one run must land
# during the first call, or the test proves nothing). (A fallback through
# dlsym() hung about 1 run in 300 here: the handler waited for the loader
# lock that the interrupted dlsym() held.)
preload_before_constructor() {
    local i out hung=0 during=0 bad=0
    for i in $(seq 0 99); do
        out=$(PRELOAD_EARLY_SIGNAL_US=$((1 + 7 * i % 97)) timeout 2 env LD_PRELOAD="$PRELOAD" \
            "${PRELOAD_SET[@]}" "$BT/preload_early") || { hung=$((hung + 1)); continue; }
        case "$out" in *handler=2*) during=$((during + 1)) ;; esac
        printf '%s\n' "$out" | grep -q '^early listen=0 keepalive=1 ' &&
            printf '%s\n' "$out" | grep -qx 'main listen=0 keepalive=1' || bad=$((bad + 1))
    done
    [ "$hung" -eq 0 ] && [ "$bad" -eq 0 ] && [ "$during" -gt 0 ] &&
        echo "ok - calls from another library's constructor: configured, 100 runs finished ($during with the signal inside the first call)" ||
        echo "not ok - calls from another library's constructor: $hung of 100 runs hung, $bad wrong, $during with the signal inside the first call"
}
run_tap preload-calls-before-the-constructor preload_before_constructor

# --- issue 8: configure once (defect 9) and what it costs ------------------
# With HEARTBEAT_DEBUG=1, each call that found its socket started says so:
# two connect() after the completed one, one in progress, the second
# listen(), the connect() that reports the refusal.
preload_configure_once() {
    env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=7 HEARTBEAT_DEBUG=1 "$BT/preload_reconnect" 7 \
        2>"$LOG/preload-once.err"
    local rc=$? n
    n=$(grep -cE '^libheartbeat_preload: (connect|listen)\(fd [0-9]+\): already connecting, connected or listening \(TCP state [0-9]+, [0-9]+ segments sent\): untouched$' \
        "$LOG/preload-once.err")
    [ "$n" -eq 5 ] && echo "ok - debug: 5 calls on started sockets logged as untouched" ||
        echo "not ok - debug: $n calls on started sockets logged as untouched, expected 5"
    return "$rc"
}
run_tap preload-configure-once preload_configure_once

# The system calls each hooked call adds, counted by strace between the
# program's markers (write(-1, "MARK name")), as getsockopt/setsockopt:
# listen() and connect() on a TCP socket that has not started 1 + 10
# (TCP_INFO, then heartbeat_apply's 5 reads and 5 writes), on one already
# listening or connected 1, on a UDP socket 1 (2 with HEARTBEAT_DEBUG=1, for
# the message; UNIX sockets likewise, accept() included), on an MPTCP socket 1 + 4 (heartbeat_apply's reads up to the
# one MPTCP refuses, TCP_USER_TIMEOUT; only where the kernel has MPTCP);
# socket() of a TCP socket 0 + 10; accept() 1 + 10.
preload_syscall_cost() {
    local tr="$LOG/preload-cost.strace" hooks debug want bad=0
    while read -r hooks debug want; do
        env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=7 HEARTBEAT_HOOKS="$hooks" HEARTBEAT_DEBUG="$debug" \
            strace -f -qq -o "$tr" -e trace=write,getsockopt,setsockopt \
            "$BT/preload_reconnect" cost >"$LOG/preload-cost.out" 2>/dev/null || return 1
        grep -qx 'mptcp available' "$LOG/preload-cost.out" || want=${want%,connect-mptcp:*}
        echo "HEARTBEAT_HOOKS=$hooks HEARTBEAT_DEBUG=$debug:"
        awk -v want="$want" '
            /write\(-1, "MARK / { match($0, /MARK [a-z0-9-]+/); cur = substr($0, RSTART + 5, RLENGTH - 5); next }
            cur != "" && /getsockopt\(/ { get[cur]++ }
            cur != "" && /setsockopt\(/ { set[cur]++ }
            END {
                n = split(want, w, ",")
                bad = 0
                for (i = 1; i <= n; i++) {
                    split(w[i], f, ":"); split(f[2], e, "/")
                    g = get[f[1]] + 0; s = set[f[1]] + 0
                    printf "  %-14s %d getsockopt + %d setsockopt (expected %d + %d)\n", f[1], g, s, e[1], e[2]
                    if (g != e[1] || s != e[2]) bad = 1
                }
                exit bad
            }' "$tr" || bad=1
    done <<'EOF'
connect,listen 0 socket-tcp:0/0,listen-new:6/5,listen-again:1/0,socket-tcp-2:0/0,connect-new:6/5,connect-again:1/0,accept:0/0,socket-udp:0/0,connect-udp:1/0,listen-unix:1/0,connect-unix:1/0,accept-unix:0/0,connect-mptcp:7/0
connect,listen 1 socket-tcp:0/0,listen-new:6/5,listen-again:1/0,socket-tcp-2:0/0,connect-new:6/5,connect-again:1/0,accept:0/0,socket-udp:0/0,connect-udp:2/0,listen-unix:2/0,connect-unix:2/0,accept-unix:0/0,connect-mptcp:7/0
socket,accept 0 socket-tcp:5/5,listen-new:0/0,listen-again:0/0,socket-tcp-2:5/5,connect-new:0/0,connect-again:0/0,accept:6/5,socket-udp:0/0,connect-udp:0/0,listen-unix:0/0,connect-unix:0/0,accept-unix:1/0,connect-mptcp:0/0
socket,accept 1 socket-tcp:5/5,listen-new:0/0,listen-again:0/0,socket-tcp-2:5/5,connect-new:0/0,connect-again:0/0,accept:6/5,socket-udp:0/0,connect-udp:0/0,listen-unix:0/0,connect-unix:0/0,accept-unix:2/0,connect-mptcp:0/0
EOF
    return "$bad"
}
run_check preload-syscall-cost preload_syscall_cost

# --- issue 8: allocation failure in the library's initialisation -----------
# c-tests/lib/failalloc.c fails the N-th allocation made from inside
# libheartbeat_preload.so, for N = 1, 2, ... until a run needs no more: each
# run must exit 0 with the output of the unfailed run (sockets configured,
# or left alone where the library gave up), with nothing it allocated still
# held at exit.
preload_failalloc() {
    local settings
    for settings in "HEARTBEAT_IDLE=7" "${PRELOAD_SET[*]} HEARTBEAT_DEBUG=1 HEARTBEAT_LOG=$LOG/preload-failalloc.log" \
        "HEARTBEAT_IDLE=abc"; do
        local n=1 total="" bad=0
        # shellcheck disable=SC2086
        env LD_PRELOAD="$PRELOAD" $settings "$BT/preload_client" </dev/null \
            >"$LOG/preload-failalloc.want" 2>/dev/null
        while [ "$n" -le 1000 ]; do
            rm -f "$LOG/preload-failalloc.rep"
            # shellcheck disable=SC2086
            # failalloc.so after the library: the loader runs the
            # constructors of preloaded objects last-listed first, and the
            # injector's must run before the library's to count its
            # allocations.
            env LD_PRELOAD="$PRELOAD $PWD/$BT/failalloc.so" HB_FAILALLOC_OBJ=libheartbeat_preload.so \
                HB_FAILALLOC_NTH="$n" HB_FAILALLOC_REPORT="$LOG/preload-failalloc.rep" $settings \
                "$BT/preload_client" </dev/null >"$LOG/preload-failalloc.out" 2>"$LOG/preload-failalloc.err"
            local rc=$? rep
            rep=$(cat "$LOG/preload-failalloc.rep" 2>/dev/null)
            if [ "$rc" -ne 0 ] || ! cmp -s "$LOG/preload-failalloc.want" "$LOG/preload-failalloc.out" ||
                [ "${rep##*live=}" != 0 ]; then
                echo "not ok - $settings: allocation $n failed: exit $rc, $rep, $(head -c 200 "$LOG/preload-failalloc.err")"
                bad=1
                break
            fi
            case "$rep" in *failed=0*) total=$((n - 1)); break ;; esac
            n=$((n + 1))
        done
        if [ "$bad" -eq 0 ] && [ -n "$total" ]; then
            echo "ok - $settings: $total allocations by the library in the whole run, each failed in turn: exit 0, same output, nothing held"
        elif [ "$bad" -eq 0 ]; then
            echo "not ok - $settings: more than 1000 allocations"
        fi
    done
}
run_tap preload-allocation-failure preload_failalloc

# The network-namespace test: an unmodified, preloaded python3 client
# detects a cut path at the configured deadline.
run_tap preload-netns-detection bash c-tests/preload/net_preload.sh
