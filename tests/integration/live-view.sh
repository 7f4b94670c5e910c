#!/usr/bin/env bash
# The live view on real devices (live.rs runs this through
# `unshare -n -p -f -m --mount-proc --kill-child=SIGTERM`): a bridge, a system
# container (its own network namespace, in cgroup lxc.payload.<name>) with a
# veth on the bridge, UDP traffic to it that grows every 200 ms, the exporter,
# and then Chromium, run with this script's arguments, in the same namespace.
# With $SERVICE (a cgroup v2 directory live.rs made, below the one
# $ROOT/config.toml links the exporter's counting programs at), a host
# service too: a process in that cgroup that sends TCP to a sink on loopback
# all along. With $LOOPBACK set, an idle veth pair no container claims (the
# host's, as `lo` is) and loopback busier than anything else: python3 sends
# UDP datagrams of 60,000 bytes to 127.0.0.1, 25 every 200 ms (60 Mb/s).
# Needs: $BIN, $ROOT, $TNE_ID, $PORT; busybox with $SERVICE, python3 with
# $LOOPBACK. Chromium keeps fds 3 and 4 (its DevTools pipe); nothing else
# may hold them.
set -euo pipefail
exec 2>"$ROOT/script.log"
mount -t sysfs sysfs "$ROOT/sys"
for f in all default; do
  [ ! -e "/proc/sys/net/ipv6/conf/$f" ] || echo 1 > "/proc/sys/net/ipv6/conf/$f/disable_ipv6"
done
ip link set lo up
ip link add lan type bridge
ip link set lan up
ip addr add 10.78.0.1/24 dev lan

name=tnelive${TNE_ID:?}   # cgroups are host-wide: a unique name per run
unshare -n -m sh -c 'mount -t sysfs sysfs /sys && exec sleep 600' 3>&- 4>&- &
container=$!
for _ in $(seq 100); do
  [ -e "/proc/$container/root/sys/class/net/lo" ] &&
    [ "$(readlink "/proc/$container/ns/net")" != "$(readlink /proc/1/ns/net)" ] && break
  sleep 0.05
done
cg=/sys/fs/cgroup
[ -e "$cg/cgroup.controllers" ] || cg=/sys/fs/cgroup/pids
mkdir -p "$cg/lxc.payload.$name/init.scope"
cleanup() {
  kill "$container" 2>/dev/null || true
  wait "$container" 2>/dev/null || true
  rmdir "$cg/lxc.payload.$name/init.scope" "$cg/lxc.payload.$name" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' TERM
echo "$container" > "$cg/lxc.payload.$name/init.scope/cgroup.procs"

ip link add name vethlive0 type veth peer name eth0
ip link set eth0 netns "$container"
ip link set vethlive0 master lan
ip link set vethlive0 up
nsenter -t "$container" -n ip link set eth0 up
mac=$(nsenter -t "$container" -n ip -br link show dev eth0 | awk '{print $3}')
ip neigh add 10.78.0.2 lladdr "$mac" dev lan nud permanent

# Growing traffic: burst n of n datagrams of 1,000 bytes, every 200 ms, so
# two successive rates always differ.
payload=$(printf '%01000d' 0)
(
  n=1
  while :; do
    for ((i = 0; i < n; i++)); do echo "$payload" > /dev/udp/10.78.0.2/9; done
    n=$((n + 1))
    sleep 0.2
  done
) 3>&- 4>&- &

if [ -n "${SERVICE:-}" ]; then
  busybox nc -l -p 7070 >/dev/null 3>&- 4>&- &
  (
    echo "$BASHPID" > "$SERVICE/cgroup.procs"
    for _ in $(seq 100); do
      exec 5>/dev/tcp/127.0.0.1/7070 && break
      sleep 0.05
    done 2>/dev/null
    while :; do head -c 100000 /dev/zero >&5; sleep 0.2; done
  ) 3>&- 4>&- &
fi

if [ -n "${LOOPBACK:-}" ]; then
  ip link add vethidle0 type veth peer name vethidle1
  ip link set vethidle0 up
  ip link set vethidle1 up
  # A bound socket that never reads: the datagrams cross lo, no ICMP back.
  python3 -c '
import socket, time
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = bytes(60000)
while True:
    for _ in range(25):
        out.sendto(data, sink.getsockname())
    time.sleep(0.2)
' 3>&- 4>&- &
fi

config=()
[ ! -e "$ROOT/config.toml" ] || config=(--config.file="$ROOT/config.toml")
"$BIN" --web.listen-address="127.0.0.1:$PORT" --path.rootfs="$ROOT" --path.procfs=/proc \
  --docker.socket= --log.level=warn "${config[@]}" 3>&- 4>&- 2>"$ROOT/exporter.log" &
for _ in $(seq 100); do
  (exec 6<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

"$@" &
wait $!
