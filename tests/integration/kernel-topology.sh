#!/usr/bin/env bash
# Builds a real topology inside a private network/mount/pid namespace (run by
# kernel.rs through `unshare -n -p -f -m --mount-proc`) and scrapes it twice
# with the real binary, with traffic sent across a veth in between.
# Names are chosen to defeat prefix guessing. Needs: $BIN, $ROOT.
set -euo pipefail
mount -t sysfs sysfs "$ROOT/sys"
net="$ROOT/sys/class/net"
# No IPv6 in this namespace: autoconfiguration on a fresh link would send
# router solicitations and MLD reports through the bridge at random moments.
for f in all default; do
  [ ! -e "/proc/sys/net/ipv6/conf/$f" ] || echo 1 > "/proc/sys/net/ipv6/conf/$f/disable_ipv6"
done

ip link set lo up
ip link add lan type bridge                                  # a bridge not named br*
ip link add vethbr type bridge                               # a bridge named like a veth
ip link add brfake0 type veth peer name peer0                # a veth named like a bridge
ip link set brfake0 master lan
ip link add link peer0 name mvt0 type macvtap mode bridge    # a macvtap not named macvtap*
ip link add link peer0 name vlan5 type macvlan mode bridge   # a macvlan named like a VLAN
ip link add veth-vx type vxlan id 42 dstport 4789            # a vxlan named like a veth
ip tuntap add dev vnet9 mode tap                             # an unowned libvirt-style tap
ip link set vnet9 master lan
ip tuntap add dev tapx mode tap                              # an unowned tap with another name
ip link add up0 type veth peer name up1
for i in lan vethbr brfake0 peer0 up0 up1; do ip link set "$i" up; done
ip addr add 10.77.0.1/24 dev up0
ip neigh add 10.77.0.2 lladdr "$(cat "$net/up1/address")" dev up0 nud permanent

scrape() { "$BIN" --once --path.rootfs="$ROOT" --path.procfs=/proc --docker.socket= > "$ROOT/$1"; }
scrape before.prom
for _ in $(seq 25); do echo "across the veth" > /dev/udp/10.77.0.2/9; done
scrape after.prom
for dir in "$net"/*/; do
  i=$(basename "$dir")
  echo "$i $(cat "$dir/operstate")" >> "$ROOT/operstate.txt"
  echo "$i $(cat "$dir/mtu")" >> "$ROOT/mtu.txt"
  echo "$i $(cat "$dir/speed" 2>/dev/null || echo none)" >> "$ROOT/speed.txt"
done
