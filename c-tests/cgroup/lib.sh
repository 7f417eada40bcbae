# lib.sh: shared helpers of the heartbeat-cgroup tests (c-tests/cgroup/*.sh),
# sourced after c-tests/lib/netns.sh. Each test script is its own process
# with netns.sh's EXIT/INT/TERM traps; everything created here is registered
# with netns_on_cleanup, so that it is removed also when a test fails.
#
#   HBC                 the tool (build/bin/heartbeat-cgroup)
#   PY                  the real python3 interpreter (not a pyenv shim)
#   CG2                 the cgroup2 mount (from /proc/self/mountinfo)
#   BPFFS               the BPF file system the tool pins in
#   TMP                 a private temporary directory
#   cg_make VAR NAME    create the cgroup $CG2/hbt-<pid>-NAME, its path in
#                       VAR; cleanup detaches and removes it (not in $(...):
#                       it must register the cgroup in this shell)
#   cg_exec CG CMD...   run CMD inside cgroup CG (foreground)
#   cg_id CG            the cgroup's id (its inode number)
#   cg_pins CG          the attachment's pin directory
#   cg_run ARGS...      heartbeat-cgroup run ARGS... in the background (its pid
#                       in CG_RUN_PID); cleanup kills that pid if it lingers
#   wait_bounded PID S  wait for PID, at most S seconds (then kill it)
#   cg_wait_file F [N]  wait (at most N tenths of a second, default 50) for F
#   cg_leftovers        removes the cgroups cg_make made, then prints
#                       "ok"/"not ok" lines: no cgroup, pin or namespace of
#                       this test is left
#   kernel_defaults NS  "ka=0 idle=I intvl=N cnt=C ut=0" of namespace NS

HBC="$PWD/build/bin/heartbeat-cgroup"
BT="$PWD/build/c-tests"
PY=$(python3 -c 'import sys; print(sys.executable)')
CG2=$(awk '$0 ~ / - cgroup2 / { print $5; exit }' /proc/self/mountinfo)
TMP=$(mktemp -d)
CG_MADE=()
CG_RUN_PIDS=()
CG_RUN_PATHS=()   # run's cgroups, as COMMAND reported them (HEARTBEAT_CGROUP)
netns_trap
netns_on_cleanup "cg_cleanup"

cg_cleanup() {
    local pid c
    for pid in "${CG_RUN_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    # The cgroups of tools killed before they could clean up.
    for pid in "${CG_RUN_PIDS[@]}"; do
        c=$(find "$CG2" -maxdepth 6 -type d -name "heartbeat-run-$pid" 2>/dev/null)
        [ -n "$c" ] && CG_MADE+=("$c")
    done
    for c in "${CG_RUN_PATHS[@]}"; do
        [ -e "$c" ] && CG_MADE+=("$c")
    done
    for c in "${CG_MADE[@]}"; do
        "$HBC" detach "$c" >/dev/null 2>&1
        # Processes a failed test left in it: end them (they are ours).
        if [ -e "$c/cgroup.kill" ]; then echo 1 >"$c/cgroup.kill" 2>/dev/null; fi
        local i
        for i in $(seq 50); do rmdir "$c" 2>/dev/null && break; sleep 0.1; done
    done
    rm -rf "$TMP"
}

# Where the tool pins (the mounted BPF file system); the tool mounts
# /sys/fs/bpf when none is, on first use.
bpffs_now() {
    local m
    m=$(awk '$0 ~ / - bpf / { print $5; exit }' /proc/self/mountinfo)
    printf '%s\n' "${m:-/sys/fs/bpf}"
}

cg_make() {
    local c="$CG2/hbt-$$-$2"
    mkdir "$c" || return 1
    CG_MADE+=("$c")
    printf -v "$1" '%s' "$c"
}

cg_exec() {
    local c=$1; shift
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$c" "$@"
}

cg_id() { stat -c %i "$1"; }
cg_pins() { printf '%s/heartbeat-cgroup/%s\n' "${BPFFS:-$(bpffs_now)}" "$(cg_id "$1")"; }

cg_run() {
    "$HBC" run "$@" &
    CG_RUN_PID=$!
    CG_RUN_PIDS+=("$CG_RUN_PID")
}

# wait_bounded PID SECONDS: `wait PID`, but at most SECONDS; a process still
# running then is killed (status 255).
wait_bounded() {
    local i
    for i in $(seq $(($2 * 20))); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        echo "not ok - process $1 did not end within $2 s (killed)"
        return 255
    fi
    wait "$1"
}

cg_wait_file() {
    local i
    for i in $(seq "${2:-50}"); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    [ -e "$1" ]
}

# The kernel's defaults of a namespace, as the probes print them.
kernel_defaults() {
    ip netns exec "$1" sh -c 'printf "ka=0 idle=%s intvl=%s cnt=%s ut=0\n" \
        $(cat /proc/sys/net/ipv4/tcp_keepalive_time) $(cat /proc/sys/net/ipv4/tcp_keepalive_intvl) \
        $(cat /proc/sys/net/ipv4/tcp_keepalive_probes)'
}

# Distinct defaults in a namespace (not the host's 7200/75/9), so that "the
# namespace's default" is visible in what the sockets read back.
set_ns_defaults() {
    ip netns exec "$1" sh -c "echo $2 > /proc/sys/net/ipv4/tcp_keepalive_time &&
        echo $3 > /proc/sys/net/ipv4/tcp_keepalive_intvl &&
        echo $4 > /proc/sys/net/ipv4/tcp_keepalive_probes"
}

cg_leftovers() {
    local left="" c pins
    [ "${#CG_MADE[@]}" -gt 0 ] || [ "${#CG_RUN_PIDS[@]}" -gt 0 ] ||
        echo "not ok - the leftover check knows of no cgroup this test made"
    # The test's own cgroups must come off now (nothing of the tool may keep
    # them busy); run's cgroups must be gone already.
    local i
    for c in "${CG_MADE[@]}"; do
        for i in $(seq 20); do [ -e "$c" ] && ! rmdir "$c" 2>/dev/null && sleep 0.1 || break; done
        [ -e "$c" ] && left="$left $c"
    done
    # run's cgroups: heartbeat-run-<pid of a tool this test started>, and
    # those its COMMANDs reported.
    for pid in "${CG_RUN_PIDS[@]}"; do
        c=$(find "$CG2" -maxdepth 6 -type d -name "heartbeat-run-$pid" 2>/dev/null)
        [ -n "$c" ] && left="$left $c"
    done
    for c in "${CG_RUN_PATHS[@]}"; do
        [ -e "$c" ] && left="$left $c"
    done
    [ -z "$left" ] && echo "ok - no cgroup left behind (${#CG_MADE[@]} made, ${#CG_RUN_PIDS[@]} runs and ${#CG_RUN_PATHS[@]} reported run cgroups checked)" ||
        echo "not ok - cgroups left:$left"
    left=""
    for pins in "${CG_PINS_SEEN[@]}"; do
        [ -e "$pins" ] && left="$left $pins"
    done
    [ -z "$left" ] && echo "ok - no pinned object left behind (${#CG_PINS_SEEN[@]} pin directories checked)" ||
        echo "not ok - pins left:$left"
    left=$(ip netns list | awk -v p="$NETNS_PREFIX-" 'index($1, p) == 1 { print $1 }' | tr '\n' ' ')
    # Namespaces of cases already finished must be gone (netns_delete).
    [ -z "$left" ] && echo "ok - no namespace left behind" || echo "not ok - namespaces left: $left"
}
CG_PINS_SEEN=()
# Remember a pin directory (to check it is gone at the end).
cg_seen_pins() { CG_PINS_SEEN+=("$1"); }

# skip_unless_ready: prints SKIP and exits 0 (or not ok and exits 1 when
# HEARTBEAT_REQUIRE_NETNS=1, as in CI) if the tests cannot run here.
skip_unless_ready() {
    local why=""
    if ! "$HBC" --version 2>/dev/null | grep -q 'BPF program built in'; then
        why="heartbeat-cgroup is not built with its BPF program (needs clang and libbpf-dev)"
    elif [ -z "$CG2" ]; then
        why="no cgroup2 hierarchy is mounted"
    elif ! netns_check; then
        why="$NETNS_WHY"
    fi
    [ -z "$why" ] && return 0
    if [ "${HEARTBEAT_REQUIRE_NETNS:-0}" = 1 ]; then
        echo "not ok - heartbeat-cgroup tests cannot run (HEARTBEAT_REQUIRE_NETNS=1): $why"
        exit 1
    fi
    echo "SKIP - heartbeat-cgroup tests: $why"
    exit 0
}
