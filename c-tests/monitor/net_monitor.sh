#!/usr/bin/env bash
# Network-namespace test of the heartbeat monitor: a client in one namespace
# and an echo server in another, joined by a veth pair (c-tests/lib/netns.sh).
# The peer's link is cut; the monitor must report the death within its
# window while TCP keepalive (idle 60 s) has not noticed.
# Prints ok/not ok lines; every namespace is deleted on exit (netns.sh traps).
set -u
cd "$(dirname "$0")/../.."
BT=${BT:-build/c-tests}
# shellcheck source=c-tests/lib/netns.sh
. c-tests/lib/netns.sh
if ! netns_check; then
    echo "SKIP - net_monitor: $NETNS_WHY"
    exit 0
fi
CASE=mon
netns_create "$CASE" || { echo "not ok - net_monitor: namespaces"; exit 1; }
PORT=7411
netns_spawn "$CASE" peer "$BT/net_monitor" server "$NETNS_PEER_IP4" "$PORT"
CUT=$(netns_cut_cmd "$CASE" down-peer)
netns_exec "$CASE" user timeout 30 "$BT/net_monitor" client "$NETNS_PEER_IP4" "$PORT" "$CUT"
