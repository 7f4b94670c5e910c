#!/usr/bin/env bash
# A VM announced by the middleware's events, and a tap found by the kernel's
# link notifications, on real devices: events.rs runs this through
# `unshare -n -p -f -m --mount-proc --kill-child=SIGTERM` and drives it by
# files in $ROOT (go-tap, go-vm, done), while it serves the fake middleware's
# socket under $ROOT. The exporter runs here, in the namespace's network, so
# link notifications are the namespace's "host" ones.
# Needs: $BIN, $ROOT, $PORT, $CONFIG; iproute2, qemu-system-x86_64.
set -euo pipefail
exec 2>"$ROOT/script.log"
trap 'echo "vm-events.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
mount -t sysfs sysfs "$ROOT/sys"
# A /dev of our own, with what QEMU opens.
mount -t tmpfs -o mode=755 tmpfs /dev
mkdir /dev/net
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/net/tun c 10 200
ip link set lo up

"$BIN" --config.file="$CONFIG" --web.listen-address="127.0.0.1:$PORT" --path.rootfs="$ROOT" \
  --path.procfs=/proc --docker.socket= 2>"$ROOT/exporter.log" &
for _ in $(seq 100); do
  (exec 6<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
touch "$ROOT/ready"

wait_for() { until [ -e "$ROOT/$1" ]; do sleep 0.05; done; }
wait_for go-tap
ip tuntap add dev tnetap0 mode tap
touch "$ROOT/tap-done"

wait_for go-vm
qemu-system-x86_64 -machine none -S -display none -name guest=7_newvm \
  -netdev tap,id=n0,ifname=vnet7,script=no,downscript=no \
  -daemonize -pidfile "$ROOT/qemu.pid" 2>"$ROOT/qemu.log"

wait_for done
kill "$(cat "$ROOT/qemu.pid")" 2>/dev/null || true
