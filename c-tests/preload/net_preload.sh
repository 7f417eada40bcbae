#!/usr/bin/env bash
# Network-namespace test of libheartbeat_preload.so (issue 5): an unmodified
# python3 client, preloaded with HEARTBEAT_IDLE=1 HEARTBEAT_INTVL=1
# HEARTBEAT_CNT=3 (deadline 4 s, user timeout auto = 4000 ms), blocked in
# recv() on an idle connection, gets ETIMEDOUT about 4 s after the last data
# once the peer's path is cut (blackhole route on the peer). Control: the same
# client without the library is still blocked after 7 s.
# Prints ok/not ok lines; run by c-tests/preload/suite.sh.
set -u
cd "$(dirname "$0")/../.."
. c-tests/lib/netns.sh

PY=$(python3 -c 'import sys; print(sys.executable)')
PRELOAD="$PWD/build/lib/libheartbeat_preload.so"
DEADLINE=4  # (idle + intvl * cnt) s
TMP=$(mktemp -d)
netns_trap
netns_on_cleanup "rm -rf '$TMP'"

if ! netns_check; then
    echo "SKIP - preload netns detection: $NETNS_WHY"
    exit 0
fi

# one_run CASE PRELOAD? BOUND: prints the client's result line.
one_run() {
    local c=$1 pre=$2 bound=$3 port=40123
    netns_create "$c" || { echo "cannot create namespaces"; return 1; }
    netns_spawn "$c" peer "$PY" c-tests/preload/preload_netclient.py server "$NETNS_PEER_IP4" "$port" "$TMP/$c.ready"
    local i
    for i in $(seq 50); do [ -e "$TMP/$c.ready" ] && break; sleep 0.1; done
    [ -e "$TMP/$c.ready" ] || { echo "server did not start"; return 1; }
    local cut
    cut=$(netns_cut_cmd "$c" blackhole4)
    if [ "$pre" = yes ]; then
        netns_exec "$c" user env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=1 HEARTBEAT_INTVL=1 \
            HEARTBEAT_CNT=3 HEARTBEAT_DEBUG=1 \
            "$PY" c-tests/preload/preload_netclient.py client "$NETNS_PEER_IP4" "$port" "$bound" "$cut"
    else
        netns_exec "$c" user \
            "$PY" c-tests/preload/preload_netclient.py client "$NETNS_PEER_IP4" "$port" "$bound" "$cut"
    fi
}

# Not in $(...): the namespaces and the server belong to this shell, whose
# traps delete them.
one_run pre yes 12 >"$TMP/pre.out" 2>&1
out=$(cat "$TMP/pre.out")
printf '%s\n' "$out" | sed 's/^/# /'
line=$(printf '%s\n' "$out" | grep -E '^(detected|not detected|recv returned)')
secs=$(printf '%s\n' "$line" | sed -n 's/^detected errno=ETIMEDOUT after \([0-9.]*\) s$/\1/p')
if [ -n "$secs" ] && awk -v s="$secs" -v d="$DEADLINE" 'BEGIN { exit !(s >= d - 0.5 && s <= d + 2.0) }'; then
    echo "ok - preloaded unmodified python3 client: ETIMEDOUT after $secs s (configured deadline ${DEADLINE} s)"
else
    echo "not ok - preloaded client: '$line', expected ETIMEDOUT after about ${DEADLINE} s"
fi
grep -q 'connect(fd [0-9]*): idle=1 intvl=1 cnt=3 user_timeout_ms=4000 keepalive=1: ok' <<<"$out" &&
    echo "ok - the client's socket was configured at connect()" ||
    echo "not ok - no configuration line for the client's connect()"
netns_delete pre

one_run control no 7 >"$TMP/control.out" 2>&1
out=$(cat "$TMP/control.out")
printf '%s\n' "$out" | sed 's/^/# /'
if grep -qx 'not detected within 7 s' <<<"$out"; then
    echo "ok - control: without the library the client is still blocked after 7 s"
else
    echo "not ok - control: '$out'"
fi
netns_delete control

# Documented consequence of configuring before connect(): TCP_USER_TIMEOUT
# also bounds the connection attempt (kernel default: about 127 s).
netns_create syn || echo "not ok - cannot create namespaces"
netns_blackhole syn 4
netns_exec syn user env LD_PRELOAD="$PRELOAD" HEARTBEAT_IDLE=1 HEARTBEAT_INTVL=1 \
    HEARTBEAT_CNT=2 HEARTBEAT_USER_TIMEOUT=2000 "$PY" -c '
import socket, time
s = socket.socket(); s.settimeout(12); t = time.monotonic()
try:
    s.connect(("'"$NETNS_PEER_IP4"'", 40000)); print("connected")
except OSError as e:
    print("connect errno=%s after %.2f s" % (e.errno, time.monotonic() - t))
' >"$TMP/syn.out" 2>&1
sed 's/^/# /' "$TMP/syn.out"
secs=$(sed -n 's/^connect errno=110 after \([0-9.]*\) s$/\1/p' "$TMP/syn.out")
if [ -n "$secs" ] && awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s <= 4.0) }'; then
    echo "ok - HEARTBEAT_USER_TIMEOUT=2000 bounds connect() to a silent peer: ETIMEDOUT after $secs s"
else
    echo "not ok - connect() to a silent peer: $(cat "$TMP/syn.out"), expected ETIMEDOUT after about 2 s"
fi
netns_delete syn
