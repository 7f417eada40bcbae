#!/usr/bin/env bash
# heartbeat-cgroup run: signals and exit statuses. SIGTERM and SIGINT sent
# to the tool reach COMMAND; the tool returns COMMAND's status (its exit
# code, or 128 + the signal); processes COMMAND leaves behind get SIGTERM,
# and SIGKILL after 1 s if they ignore it; the cgroup and its pins are
# removed every time. Prints ok/not ok lines; run by suite.sh.
set -u
cd "$(dirname "$0")/../.."
. c-tests/lib/netns.sh
. c-tests/cgroup/lib.sh
skip_unless_ready

# The caller's ignored signals stay ignored (bash ignores SIGINT in its
# background jobs): start the tool with default dispositions.
DFL=("$PY" -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')

# started NAME: waits for COMMAND to report its cgroup and be ready.
started() {
    cg_wait_file "$TMP/$1.ready" || { echo "not ok - $1: COMMAND did not start"; return 1; }
    CGPATH=$(cat "$TMP/$1.ready")
    CG_RUN_PATHS+=("$CGPATH")
    cg_seen_pins "$(cg_pins "$CGPATH")"
}

# gone NAME: the run's cgroup and pins no longer exist.
gone() {
    [ -n "$CGPATH" ] && [ ! -e "$CGPATH" ] && echo "ok - $1: the cgroup $CGPATH was removed" ||
        echo "not ok - $1: the cgroup '$CGPATH' is still there"
}

# signalled NAME SIG TRAP WANT_RC: COMMAND traps SIG (writes its name and
# exits 3) or not (TRAP=no: it dies of it).
signalled() {
    local name=$1 sig=$2 trap=$3 want=$4 script
    if [ "$trap" = yes ]; then
        script='trap "echo got-'$sig' >\"$0.got\"; exit 3" '$sig'; echo "$HEARTBEAT_CGROUP" >"$0.ready"; while :; do sleep 0.05; done'
    else
        script='echo "$HEARTBEAT_CGROUP" >"$0.ready"; exec sleep 30'
    fi
    "${DFL[@]}" "$HBC" run --idle 5 -- sh -c "$script" "$TMP/$name" &
    local pid=$!
    CG_RUN_PIDS+=("$pid")
    started "$name" || return
    kill -"$sig" "$pid"
    wait_bounded "$pid" 10
    local rc=$?
    [ "$rc" -eq "$want" ] && echo "ok - $name: SIG$sig to the tool: it returned $rc" ||
        echo "not ok - $name: SIG$sig to the tool: it returned $rc, expected $want"
    if [ "$trap" = yes ]; then
        grep -qx "got-$sig" "$TMP/$name.got" 2>/dev/null && echo "ok - $name: COMMAND got SIG$sig" ||
            echo "not ok - $name: COMMAND did not get SIG$sig"
    fi
    gone "$name"
}
signalled term-trapped TERM yes 3
signalled term-killed TERM no 143
signalled int-trapped INT yes 3
signalled int-killed INT no 130

# ^C on a terminal: the kernel sends SIGINT to the whole foreground process
# group, the tool and COMMAND alike; the tool must not send COMMAND a
# second one. The tool runs on a pseudo-terminal under strace (which logs
# every kill(2) the tool makes: a second SIGINT would often merge with the
# first in COMMAND, so only the tool's calls tell for sure).
"$PY" - "$HBC" "$TMP/tty" >"$TMP/tty.out" 2>&1 <<'PY' &
import os, pty, signal, sys, time
hbc, base = sys.argv[1], sys.argv[2]
script = ('trap "echo INT >>\\"$0.got\\"" INT; echo "$HEARTBEAT_CGROUP" >"$0.ready"; '
          'i=0; while [ $i -lt 30 ]; do sleep 0.05; i=$((i + 1)); done; exit 3')
pid, fd = pty.fork()
if pid == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvp("strace", ["strace", "-o", base + ".strace", "-e", "trace=kill,tgkill,tkill,pidfd_send_signal",
                         hbc, "run", "--", "sh", "-c", script, base])
for _ in range(100):
    if os.path.exists(base + ".ready"):
        break
    time.sleep(0.05)
time.sleep(0.2)
os.write(fd, b"\x03")
end = time.monotonic() + 10
while time.monotonic() < end:
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        print("exit", os.waitstatus_to_exitcode(st))
        break
    try:
        os.read(fd, 1024)
    except OSError:
        pass
    time.sleep(0.02)
PY
ttypid=$!
CG_RUN_PIDS+=("$ttypid")
if started tty; then
    wait_bounded "$ttypid" 15
    got=$(grep -c INT "$TMP/tty.got" 2>/dev/null)
    sent=$(grep -c 'SIGINT' "$TMP/tty.strace" 2>/dev/null)
    if grep -qx 'exit 3' "$TMP/tty.out" && [ "$got" = 1 ] && [ "$sent" = 0 ] &&
        grep -qx '+++ exited with 3 +++' "$TMP/tty.strace"; then
        echo "ok - tty: ^C on the terminal reached COMMAND once, and the tool (which got it too) sent no SIGINT itself; run returned 3"
    else
        echo "not ok - tty: COMMAND got ${got:-0} SIGINTs, the tool sent ${sent:-?}: $(cat "$TMP/tty.out") $(grep SIGINT "$TMP/tty.strace" | head -3)"
    fi
    gone tty
fi

# COMMAND killed from outside (SIGKILL): 137.
"$HBC" run -- sh -c 'echo "$HEARTBEAT_CGROUP" >"$0.ready"; exec sleep 30' "$TMP/killed" &
pid=$!
CG_RUN_PIDS+=("$pid")
if started killed; then
    # The COMMAND is the only process of its cgroup.
    victim=$(cat "$CGPATH/cgroup.procs")
    kill -KILL "$victim"
    wait_bounded "$pid" 10
    rc=$?
    [ "$rc" -eq 137 ] && echo "ok - killed: COMMAND killed by SIGKILL: run returned 137" ||
        echo "not ok - killed: run returned $rc, expected 137"
    gone killed
fi

# Stragglers: one that ends on SIGTERM, one that ignores it (SIGKILL after
# the 1 s grace). COMMAND itself exits 5 at once.
strag() {
    local name=$1 body=$2 t0 t1 rc
    t0=$(date +%s%N)
    "$HBC" run -- sh -c '( '"$body"' ) & echo "$HEARTBEAT_CGROUP" >"$0.ready"; echo $! >"$0.pid"; sleep 0.2; exit 5' "$TMP/$name" &
    local pid=$!
    CG_RUN_PIDS+=("$pid")
    started "$name" || return
    wait_bounded "$pid" 20
    rc=$?
    t1=$(date +%s%N)
    local ms=$(((t1 - t0) / 1000000)) spid
    spid=$(cat "$TMP/$name.pid")
    echo "# measured $name: run returned after $ms ms"
    [ "$rc" -eq 5 ] && echo "ok - $name: run returned COMMAND's status 5" ||
        echo "not ok - $name: run returned $rc, expected 5"
    if kill -0 "$spid" 2>/dev/null && grep -q "heartbeat-run" "/proc/$spid/cgroup" 2>/dev/null; then
        echo "not ok - $name: the straggler $spid still runs"
    else
        echo "ok - $name: the straggler was ended ($3, $ms ms)"
    fi
    gone "$name"
    if [ "$4" = slow ]; then
        [ "$ms" -ge 1000 ] && [ "$ms" -le 7000 ] && echo "ok - $name: SIGKILL came after the 1 s grace" ||
            echo "not ok - $name: $ms ms"
    fi
}
strag strag-term 'exec sleep 30' "SIGTERM" fast
strag strag-kill 'trap "" TERM; while :; do sleep 0.05; done' "SIGKILL after ignoring SIGTERM" slow

cg_leftovers
