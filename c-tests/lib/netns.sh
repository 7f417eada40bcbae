# netns.sh: network-namespace harness for libheartbeat's network tests.
# Source it (". c-tests/lib/netns.sh") from bash; it defines functions only and
# changes nothing until one is called. Sourcing it twice is harmless.
#
# Every CASE gets its own pair of namespaces, joined by one veth pair:
#
#   "user" namespace  hbt-<pid>-<CASE>-u   dev hb0   192.0.2.1/24  2001:db8::1/64
#   "peer" namespace  hbt-<pid>-<CASE>-p   dev hb1   192.0.2.2/24  2001:db8::2/64
#
# (<pid> is the pid of the sourcing shell, $$.) Loopback is up in both, IPv6
# addresses use nodad (usable at once) and keep_addr_on_down=1 (they survive
# netns_link_down/up). Only these documentation addresses are used, and only
# inside namespaces created here. Nothing outside them is ever touched.
#
# Functions (all return 0 on success, non-zero on failure; none loops forever):
#
#   netns_check              can this process create namespaces? 0 if yes; if
#                            not, 1 with the reason in NETNS_WHY (not root, no
#                            CAP_NET_ADMIN, no ip(8), no veth, ...).
#   netns_create CASE        create the pair of CASE (installs the cleanup
#                            traps via netns_trap on first use).
#   netns_user CASE          print the user namespace's name.
#   netns_peer CASE          print the peer namespace's name.
#   netns_exec CASE SIDE CMD...   run CMD inside SIDE (user|peer), foreground.
#   netns_spawn CASE SIDE CMD...  run CMD inside SIDE in the background, in
#                            its own process group (setsid); its pid is in
#                            NETNS_PID; cleanup kills that group (by pid) if
#                            it is still running. `wait $NETNS_PID` works.
#   netns_link_down CASE [SIDE]   ip link set <dev of SIDE> down (default
#                            peer): carrier loss for the other side too.
#   netns_link_up CASE [SIDE]     the reverse.
#   netns_blackhole CASE [4|6]    on the peer: blackhole route to the user's
#                            address (default 4): links stay up, everything
#                            the peer sends to the user vanishes.
#   netns_unblackhole CASE [4|6]  the reverse.
#   netns_cut_cmd CASE MODE  print a shell command that cuts the path, for a
#                            program to run at the right moment (MODE:
#                            blackhole4, blackhole6, down-peer, down-user).
#   netns_restore_cmd CASE MODE   print the command that undoes it.
#   netns_delete CASE        delete the pair of CASE (and forget it).
#   netns_on_cleanup CMD     run CMD (a string, eval'd) at cleanup.
#   netns_cleanup            kill spawned pids, run registered commands,
#                            delete every namespace this shell created.
#   netns_trap               install EXIT/INT/TERM traps calling
#                            netns_cleanup (idempotent). Do not install your
#                            own EXIT/INT/TERM traps after it: use
#                            netns_on_cleanup instead.
#
# Variables: NETNS_USER_IP4 NETNS_PEER_IP4 NETNS_USER_IP6 NETNS_PEER_IP6
#            NETNS_USER_DEV NETNS_PEER_DEV NETNS_PREFIX (hbt-<pid>)

[ -n "${NETNS_SH_LOADED:-}" ] && return 0
NETNS_SH_LOADED=1

NETNS_PREFIX="hbt-$$"
NETNS_USER_IP4=192.0.2.1
NETNS_PEER_IP4=192.0.2.2
NETNS_USER_IP6=2001:db8::1
NETNS_PEER_IP6=2001:db8::2
NETNS_USER_DEV=hb0
NETNS_PEER_DEV=hb1
NETNS_WHY=
NETNS_PID=
NETNS_CREATED=()   # namespace names created by this shell
NETNS_PIDS=()      # background pids started by netns_spawn
NETNS_CLEANUP=()   # extra cleanup commands
NETNS_TRAPPED=

netns_user() { printf '%s\n' "$NETNS_PREFIX-$1-u"; }
netns_peer() { printf '%s\n' "$NETNS_PREFIX-$1-p"; }

_netns_ns() { # CASE SIDE -> namespace name
    case "$2" in
        user) netns_user "$1" ;;
        peer) netns_peer "$1" ;;
        *) echo "netns.sh: side must be user or peer, not '$2'" >&2; return 1 ;;
    esac
}

netns_check() {
    NETNS_WHY=
    if ! command -v ip >/dev/null 2>&1; then
        NETNS_WHY="ip(8) (iproute2) is not installed"; return 1
    fi
    local probe="$NETNS_PREFIX-check" err
    if ! err=$(ip netns add "$probe" 2>&1); then
        if [ "$(id -u)" -ne 0 ]; then
            NETNS_WHY="not root (uid $(id -u)): creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
        else
            NETNS_WHY="cannot create a network namespace (no CAP_SYS_ADMIN/CAP_NET_ADMIN?): ${err:-ip netns add failed}"
        fi
        return 1
    fi
    if ! err=$(ip -n "$probe" link add hbc0 type veth peer name hbc1 2>&1); then
        ip netns del "$probe" 2>/dev/null
        NETNS_WHY="cannot create a veth pair inside a namespace (no CAP_NET_ADMIN or no veth support): $err"; return 1
    fi
    ip netns del "$probe" 2>/dev/null
    return 0
}

netns_trap() {
    [ -n "$NETNS_TRAPPED" ] && return 0
    NETNS_TRAPPED=1
    trap 'netns_cleanup' EXIT
    trap 'netns_cleanup; trap - INT; kill -INT $$' INT
    trap 'netns_cleanup; trap - TERM; kill -TERM $$' TERM
}

netns_on_cleanup() { NETNS_CLEANUP+=("$1"); }

netns_create() {
    local c=$1 u p
    u=$(netns_user "$c"); p=$(netns_peer "$c")
    netns_trap
    ip netns add "$u" || return 1
    NETNS_CREATED+=("$u")
    ip netns add "$p" || return 1
    NETNS_CREATED+=("$p")
    local ns
    for ns in "$u" "$p"; do
        ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/keep_addr_on_down &&
            echo 1 > /proc/sys/net/ipv6/conf/default/keep_addr_on_down' || return 1
    done
    ip -n "$u" link add "$NETNS_USER_DEV" type veth peer name "$NETNS_PEER_DEV" netns "$p" || return 1
    ip -n "$u" -batch - <<EOF || return 1
link set lo up
addr add $NETNS_USER_IP4/24 dev $NETNS_USER_DEV
addr add $NETNS_USER_IP6/64 dev $NETNS_USER_DEV nodad
link set $NETNS_USER_DEV up
EOF
    ip -n "$p" -batch - <<EOF || return 1
link set lo up
addr add $NETNS_PEER_IP4/24 dev $NETNS_PEER_DEV
addr add $NETNS_PEER_IP6/64 dev $NETNS_PEER_DEV nodad
link set $NETNS_PEER_DEV up
EOF
    return 0
}

netns_exec() {
    local ns; ns=$(_netns_ns "$1" "$2") || return 1
    shift 2
    ip netns exec "$ns" "$@"
}

netns_spawn() {
    local ns; ns=$(_netns_ns "$1" "$2") || return 1
    shift 2
    # Its own process group (setsid execs in place: same pid), so that
    # cleanup can kill everything it started.
    setsid ip netns exec "$ns" "$@" &
    NETNS_PID=$!
    NETNS_PIDS+=("$NETNS_PID")
}

# The command that cuts (route verb "add", link state "down") or restores
# ("del", "up") the path of CASE in MODE.
_netns_path_cmd() {
    local c=$1 mode=$2 verb=$3 state=$4
    case "$mode" in
        blackhole4) echo "ip -n $(netns_peer "$c") route $verb blackhole $NETNS_USER_IP4/32" ;;
        blackhole6) echo "ip -n $(netns_peer "$c") -6 route $verb blackhole $NETNS_USER_IP6/128" ;;
        down-peer) echo "ip -n $(netns_peer "$c") link set $NETNS_PEER_DEV $state" ;;
        down-user) echo "ip -n $(netns_user "$c") link set $NETNS_USER_DEV $state" ;;
        *) echo "netns.sh: unknown cut mode '$mode'" >&2; return 1 ;;
    esac
}

netns_cut_cmd() { _netns_path_cmd "$1" "$2" add down; }
netns_restore_cmd() { _netns_path_cmd "$1" "$2" del up; }

netns_link_down() { eval "$(netns_cut_cmd "$1" "down-${2:-peer}")"; }
netns_link_up() { eval "$(netns_restore_cmd "$1" "down-${2:-peer}")"; }

netns_blackhole() { eval "$(netns_cut_cmd "$1" "blackhole${2:-4}")"; }
netns_unblackhole() { eval "$(netns_restore_cmd "$1" "blackhole${2:-4}")"; }

netns_delete() {
    local c=$1 ns i
    for ns in "$(netns_user "$c")" "$(netns_peer "$c")"; do
        for i in "${!NETNS_CREATED[@]}"; do
            if [ "${NETNS_CREATED[$i]}" = "$ns" ]; then
                ip netns del "$ns" 2>/dev/null
                unset 'NETNS_CREATED[i]'
            fi
        done
    done
    return 0
}

netns_cleanup() {
    local pid cmd ns
    for pid in "${NETNS_PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${NETNS_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    NETNS_PIDS=()
    for cmd in "${NETNS_CLEANUP[@]}"; do
        eval "$cmd"
    done
    NETNS_CLEANUP=()
    for ns in "${NETNS_CREATED[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    NETNS_CREATED=()
    return 0
}
