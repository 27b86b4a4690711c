#!/usr/bin/env bash
# Regenerate the golden keepalived captures used by packet_test.go (run as root).
# Needs keepalived, tcpdump, iproute2. Everything lives in namespaces this script
# creates and deletes; addresses are in 203.0.113.0/24.
#   keepalived-v3.pcap      VRRPv3, VRID 51, prio 150, advert_int 1, VIP 203.0.113.100
#   keepalived-v3-fast.pcap VRRPv3, advert_int 0.1, two VIPs
#   keepalived-v2-pass.pcap VRRPv2, auth_type PASS, auth_pass "kclbpass1" (keepalived sends 8 chars)
#   keepalived-v3-prio0.pcap the priority-0 advert sent on SIGTERM
#   keepalived-v6.pcap      VRRPv3 over IPv6 (native_ipv6), VIPs 2001:db8::100 and ::101,
#                           from eth0's link-local address to ff02::12
#   keepalived-v6-na.pcap   the unsolicited Neighbor Advertisements sent on becoming Master
# The IPv6 captures carry the veth MAC, which is random: after regenerating them, update
# keepalived6Src and the MAC in packet6_test.go.
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
A=kclbcap-$$-a; SW=kclbcap-$$-sw
cleanup() {
  for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1.5
  ip netns del $A 2>/dev/null || true; ip netns del $SW 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add $A; ip netns add $SW
ip -n $SW link add br0 type bridge; ip -n $SW link set br0 up
ip link add veth0 netns $A type veth peer name p0 netns $SW
ip netns exec $A sysctl -qw net.ipv6.conf.veth0.accept_dad=0 # link-local usable at once
ip -n $A link set veth0 name eth0; ip -n $A link set eth0 up; ip -n $A link set lo up
ip -n $SW link set p0 master br0; ip -n $SW link set p0 up
ip -n $A addr add 203.0.113.11/24 dev eth0

capture() { # name version advert_int auth vips stop [filter [count] [instance options]]
  cat >"$W/$1.conf" <<CONF
global_defs {
  router_id kclbcap
  vrrp_version $2
}
vrrp_instance VI_CAP {
  state BACKUP
  interface eth0
  ${9:-}
  virtual_router_id 51
  priority 150
  advert_int $3
  $4
  virtual_ipaddress {
$5
  }
}
CONF
  ip netns exec $SW tcpdump -i br0 -n -U -c "${8:-3}" -w "$W/$1.pcap" "${7:-ip proto 112}" 2>/dev/null &
  local td=$!
  sleep 0.5
  ip netns exec $A keepalived -n -l -D -P -R -f "$W/$1.conf" -p "$W/$1.pid" -r "$W/$1.vrrp.pid" >"$W/$1.log" 2>&1 &
  if [ "$6" = stop ]; then
    for _ in $(seq 1 100); do ip -n $A -4 -o addr show dev eth0 | grep -q 203.0.113.100 && break; sleep 0.1; done
    sleep 1.2; kill "$(cat "$W/$1.pid")"; rm -f "$W/$1.pid"
  fi
  wait $td
  [ -f "$W/$1.pid" ] && { kill "$(cat "$W/$1.pid")"; rm -f "$W/$1.pid"; }
  sleep 1.5
  cp "$W/$1.pcap" "$OUT/$1.pcap"
}
capture keepalived-v3 3 1 "" "    203.0.113.100/24 dev eth0" run
capture keepalived-v3-fast 3 0.1 "" "    203.0.113.100/24 dev eth0
    203.0.113.101/24 dev eth0" run
capture keepalived-v2-pass 2 1 "authentication {
    auth_type PASS
    auth_pass kclbpass1
  }" "    203.0.113.100/24 dev eth0" run
capture keepalived-v3-prio0 3 1 "" "    203.0.113.100/24 dev eth0" stop
capture keepalived-v6 3 1 "" "    2001:db8::100/64 dev eth0
    2001:db8::101/64 dev eth0" run 'ip6 proto 112' 3 native_ipv6
capture keepalived-v6-na 3 1 "" "    2001:db8::100/64 dev eth0
    2001:db8::101/64 dev eth0" run 'icmp6 and ip6[40] == 136' 2 native_ipv6
for f in "$OUT"/keepalived-*.pcap; do echo "== $f"; tcpdump -r "$f" -n -vv 2>/dev/null; done
