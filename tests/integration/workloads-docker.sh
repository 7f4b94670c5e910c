#!/usr/bin/env bash
# A TrueNAS-like host for traffic per workload: cgroup2 alone at
# /sys/fs/cgroup, a dockerd of its own (cgroupfs layout: /docker/<id>), an
# "uplink" veth whose far end is a LAN namespace with a TCP sink, and
# workloads that each send a known number of bytes to the LAN: a bridged
# container, a host-network container, a macvlan container on the uplink,
# a process in a system.slice service cgroup, an LXC/Incus container (its
# init in lxc.payload.<name>/init.scope, a veth of its own) and a TrueNAS 26
# container (in libvirt-LXC's machine.slice scope, its veth `vnet31`, its
# init's pid from the middleware's container.query: the test's fake
# middleware, whose socket directory is $ROOT/mw). workloads.rs runs this
# through `unshare -n -p -f -m --mount-proc` and drives it by files in $ROOT.
# Needs: $BIN, $ROOT, $PORT, $BYTES; dockerd, docker, busybox, iproute2, python3,
# qemu-system-x86_64, setpriv, unshare.
set -euo pipefail
exec 2>"$ROOT/script.log"
trap 'echo "workloads-docker.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
set -x
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mkdir -p /run/middleware
mount --bind "$ROOT/mw" /run/middleware
ip link set lo up

# The LAN, behind the uplink; its sink logs each connection's bytes.
ip netns add lan
ip link add uplink0 type veth peer name lan0 netns lan
ip addr add 10.77.0.1/24 dev uplink0
ip link set uplink0 up
ip -n lan addr add 10.77.0.2/24 dev lan0
ip -n lan link set lan0 up
ip -n lan link set lo up
ip -n lan route add default via 10.77.0.1
sysctl -qw net.ipv4.ip_forward=1
ip netns exec lan python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 5001))
s.listen(8)
while True:
    c, peer = s.accept()
    n = 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        n += len(d)
    c.close()
    with open(sys.argv[1], "a") as out:
        out.write(f"{peer[0]} {n}\n")
' "$ROOT/sink.log" &

# The engine, as TrueNAS runs it (cgroupfs driver), in this namespace.
dockerd --host "unix://$ROOT/docker.sock" --data-root "$ROOT/data" --exec-root "$ROOT/exec" \
  --pidfile "$ROOT/dockerd.pid" --iptables=false --ip6tables=false \
  --exec-opt native.cgroupdriver=cgroupfs >"$ROOT/dockerd.log" 2>&1 &
export DOCKER_HOST="unix://$ROOT/docker.sock"
for _ in $(seq 200); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$ROOT/image/bin"
cp /bin/busybox "$ROOT/image/bin/busybox"
for applet in sh nc head sleep; do ln -sf busybox "$ROOT/image/bin/$applet"; done
tar -C "$ROOT/image" -c . | docker import - tne-workload >/dev/null
docker network create -d macvlan -o parent=uplink0 --subnet 10.77.0.0/24 \
  --gateway 10.77.0.1 --ip-range 10.77.0.128/25 lan >/dev/null

"$BIN" --web.listen-address="127.0.0.1:$PORT" --docker.socket="$ROOT/docker.sock" \
  --config.file="$ROOT/config.toml" 2>"$ROOT/exporter.log" &
# The same without the privilege to count per cgroup, one port up.
setpriv --bounding-set -bpf,-sys_admin,-perfmon --inh-caps -bpf,-sys_admin,-perfmon -- \
  "$BIN" --web.listen-address="127.0.0.1:$((PORT + 1))" --docker.socket="$ROOT/docker.sock" \
  --config.file="$ROOT/config.toml" 2>"$ROOT/unprivileged.log" &
# And with traffic per workload turned off, two ports up.
sed 's/^\[accounting\]$/[accounting]\nenabled = false/' "$ROOT/config.toml" > "$ROOT/off.toml"
"$BIN" --web.listen-address="127.0.0.1:$((PORT + 2))" --docker.socket="$ROOT/docker.sock" \
  --config.file="$ROOT/off.toml" 2>"$ROOT/off.log" &
for port in "$PORT" "$((PORT + 1))" "$((PORT + 2))"; do
  for _ in $(seq 100); do
    (exec 6<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
touch "$ROOT/ready"

# Each workload sends $BYTES to the LAN once, then stays (its cgroup too).
send="head -c $BYTES /dev/zero | nc 10.77.0.2 5001; sleep 3600"
# One after another, so that each is done before the next starts.
settle() { sleep 1; }
docker run -d --name bridged tne-workload sh -c "$send" >/dev/null
settle
docker run -d --name hostnet --network host tne-workload sh -c "$send" >/dev/null
settle
docker run -d --name macvlan --network lan tne-workload sh -c "$send" >/dev/null
settle
mkdir -p /sys/fs/cgroup/system.slice/tnesvc.service
(echo $BASHPID > /sys/fs/cgroup/system.slice/tnesvc.service/cgroup.procs
  exec busybox sh -c "head -c $BYTES /dev/zero | busybox nc 10.77.0.2 5001; sleep 3600") &
svc=/sys/fs/cgroup/system.slice/tnesvc.service
settle
# A system container: its init in a cgroup of its own, in network and
# mount namespaces of its own (its own sysfs, through which the exporter
# reads its interfaces) behind a host veth ($2), routed to the LAN.
# $1 = cgroup, $2 = host veth, $3 = subnet's first three octets.
system_container() {
  mkdir -p "$1"
  ip link add "$2" type veth peer name "$2p"
  ip addr add "$3.1/24" dev "$2" && ip link set "$2" up
  ip -n lan route add "$3.0/24" via 10.77.0.1
  (echo $BASHPID > "$1/cgroup.procs"
    exec unshare -n -m busybox sh -c "
      until [ -e $ROOT/$2.go ]; do sleep 0.1; done
      mount -t sysfs sysfs /sys
      ip link set lo up; ip link set $2p name eth0; ip addr add $3.2/24 dev eth0
      ip link set eth0 up; ip route add default via $3.1
      head -c $BYTES /dev/zero | busybox nc 10.77.0.2 5001; exec sleep 3600") &
  local pid=$!
  for _ in $(seq 50); do [ "$(readlink /proc/$pid/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.1; done
  ip link set "$2p" netns "$pid"
  echo "$pid" >"$ROOT/$2.pid"
  touch "$ROOT/$2.go"
}
lxc=/sys/fs/cgroup/lxc.payload.tnelxc
system_container "$lxc/init.scope" veth5e1c0a11 10.78.0
settle
# libvirt-LXC's scope; the test gives the middleware this pid.
machine=/sys/fs/cgroup/machine.slice
ct="$machine/machine-lxc\\x2d1\\x2dtnect.scope"
system_container "$ct" vnet31 10.79.0
settle
# A VM: its traffic is its tap's, not its QEMU's sockets'.
mkdir -p /dev/net 2>/dev/null || true
[ -e /dev/net/tun ] || mknod -m 666 /dev/net/tun c 10 200
qemu-system-x86_64 -machine none -S -display none -name guest=3_tnevm \
  -netdev tap,id=n0,ifname=vnet30,script=no,downscript=no \
  -daemonize -pidfile "$ROOT/qemu.pid" 2>"$ROOT/qemu.log"
touch "$ROOT/sent"

until [ -e "$ROOT/done" ]; do sleep 0.1; done
docker rm -f bridged hostnet macvlan >/dev/null 2>&1 || true
# The service's cgroup is the host's: empty it and remove it.
echo 1 >"$svc/cgroup.kill" 2>/dev/null || xargs -r kill -9 <"$svc/cgroup.procs" || true
for _ in $(seq 50); do rmdir "$svc" 2>/dev/null && break; sleep 0.1; done
for cg in "$lxc/init.scope" "$ct"; do
  echo 1 >"$cg/cgroup.kill" 2>/dev/null || xargs -r kill -9 <"$cg/cgroup.procs" || true
  for _ in $(seq 50); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
done
rmdir "$lxc" "$machine" 2>/dev/null || true
kill "$(cat "$ROOT/dockerd.pid")" 2>/dev/null || true
kill "$(cat "$ROOT/qemu.pid")" 2>/dev/null || true
