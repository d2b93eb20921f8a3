#!/usr/bin/env bash
# An emulated WAN on one machine: N network namespaces ("sites"), each joined to
# a hub by its own veth link, shaped with tc tbf in both directions.
#
#   netns.sh up N RATE [BURST] [LATENCY]   e.g.  netns.sh up 4 50mbit
#   netns.sh down                          removes every loomwan* namespace (idempotent)
#   netns.sh status                        namespaces, addresses, qdiscs and byte counters
#
# Topology (nothing is created in the root namespace):
#
#   loomwan0 [wan0 10.77.0.1/24] ==veth== [h0]-+
#   loomwan1 [wan0 10.77.0.2/24] ==veth== [h1]-+- br0 (bridge in namespace loomwanhub, no address)
#   ...                                        |
#   loomwanN-1 [wan0 10.77.0.N/24] ==veth== [hN-1]-+
#
# Every site's link is shaped on both ends: tbf on wan0 (site -> hub, the site's
# upload) and on h<i> (hub -> site, its download), each at RATE. A packet from
# site a to site b crosses a's upload and b's download, so every site has RATE
# up and RATE down, as a WAN site behind its own access link would. Inside every
# site the interface is called wan0, so LOOM_GLOO_IFNAME=wan0 is right in all of
# them. The bridge sits in its own namespace so the root namespace's firewall
# (br_netfilter, Docker's FORWARD policy) never sees the traffic.
#
# tbf parameters: rate RATE; burst BURST (default 32kb = 32 KiB, ~5 ms at
# 50 Mbit/s: enough for the kernel timer and for GSO segments, small against a
# transfer); latency LATENCY (default 50ms: the longest a packet may wait in the
# shaper's queue, i.e. a queue of RATE x 50 ms + BURST; beyond it packets drop and
# TCP backs off, as at a real bottleneck). No propagation delay is added (netem
# is not available here): the RTT is the queueing delay alone.
set -euo pipefail

PREFIX=loomwan
HUB=${PREFIX}hub
SUBNET=10.77.0

die() { echo "netns.sh: $*" >&2; exit 2; }

preflight() {
  [ "$(id -u)" -eq 0 ] || die "needs root (creating network namespaces, veth links and qdiscs); run as root or with sudo"
  command -v ip >/dev/null 2>&1 || die "'ip' not found: install iproute2 (apt-get install iproute2)"
  command -v tc >/dev/null 2>&1 || die "'tc' not found: install iproute2 (apt-get install iproute2)"
}

ours() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}" | sort || true; }

down() {
  local ns
  local -a pids
  for ns in $(ours); do
    # Processes still inside keep a deleted namespace alive: stop them first.
    # Every process in a loomwan* namespace was started by this benchmark.
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
    if [ ${#pids[@]} -gt 0 ]; then
      kill -TERM "${pids[@]}" 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
        [ ${#pids[@]} -eq 0 ] && break
        sleep 0.2
      done
      if [ ${#pids[@]} -gt 0 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  # Deleting a namespace destroys its veth ends and the bridge with it.
  local left
  left=$(ours)
  [ -z "$left" ] || die "could not remove: $left"
}

shape() {  # shape NS DEV
  ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$RATE" burst "$BURST" latency "$LATENCY"
}

up() {
  local n=$1
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 2 ] || [ "$n" -gt 250 ]; then
    die "N must be a number in [2, 250], got '$n'"
  fi
  down
  ip netns add "$HUB"
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link add br0 type bridge
  ip -n "$HUB" link set br0 up
  local i ns
  for ((i = 0; i < n; ++i)); do
    ns=${PREFIX}${i}
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add wan0 netns "$ns" type veth peer name "h$i" netns "$HUB"
    ip -n "$ns" addr add "${SUBNET}.$((i + 1))/24" dev wan0
    ip -n "$ns" link set wan0 up
    ip -n "$HUB" link set "h$i" master br0
    ip -n "$HUB" link set "h$i" up
    shape "$ns" wan0
    shape "$HUB" "h$i"
  done
  echo "netns.sh: $n sites ${PREFIX}0..${PREFIX}$((n - 1)) at ${SUBNET}.1..${SUBNET}.$n (interface wan0)," \
       "tbf rate $RATE burst $BURST latency $LATENCY both directions, hub $HUB" >&2
}

status() {
  local ns
  for ns in $(ours); do
    echo "== $ns"
    ip -n "$ns" -br addr
    ip netns exec "$ns" tc qdisc show | grep tbf || true
    if [ "$ns" != "$HUB" ]; then
      echo "wan0 tx_bytes $(ip netns exec "$ns" cat /sys/class/net/wan0/statistics/tx_bytes)" \
           "rx_bytes $(ip netns exec "$ns" cat /sys/class/net/wan0/statistics/rx_bytes)"
    fi
  done
}

cmd=${1:-}
case "$cmd" in
  up)
    [ $# -ge 3 ] || die "usage: netns.sh up N RATE [BURST] [LATENCY]"
    preflight
    RATE=$3
    BURST=${4:-32kb}
    LATENCY=${5:-50ms}
    # set -e stops at the first failing command; the trap then removes what was created.
    done_up=0
    trap '[ "$done_up" = 1 ] || { echo "netns.sh: setup failed; removing what was created" >&2; down || true; }' EXIT
    up "$2"
    done_up=1
    ;;
  down) preflight; down ;;
  status) preflight; status ;;
  *) die "usage: netns.sh up N RATE [BURST] [LATENCY] | down | status" ;;
esac
