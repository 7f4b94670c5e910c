#!/usr/bin/env bash
# Real VMs and system containers in a private network/mount/pid namespace (run
# by kernel.rs through `unshare -n -p -f -m --mount-proc`), scraped by the real
# binary through each VM source and their union, as TrueNAS 24.10-25.10 and 26
# hosts look. kernel.rs serves a fake Incus API at
# $ROOT/var/lib/incus/unix.socket before this runs. Needs: $BIN, $ROOT (a
# directory to build a small busybox root in), $TNE_ID (unique per run),
# qemu-system-x86_64, busybox, curl.
set -euo pipefail
trap 'echo "vm-topology.sh: line $LINENO failed: $BASH_COMMAND" >&2; cat "$ROOT/qemu.log" >&2 2>/dev/null' ERR
mkdir -p "$ROOT/sys" "$ROOT/bin" "$ROOT/usr/bin" "$ROOT/out"
mount -t sysfs sysfs "$ROOT/sys"
# A /dev of our own. The host's devtmpfs names a macvtap's node /dev/tapN by
# an ifindex that is only unique per network namespace: a test running beside
# this one in another namespace can own (and then remove) the same name.
mount -t tmpfs -o mode=755 tmpfs /dev
mkdir /dev/net
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/net/tun c 10 200
net="$ROOT/sys/class/net"
cp /bin/busybox "$ROOT/bin/busybox"
for applet in sh cat; do ln -sf busybox "$ROOT/bin/$applet"; done

ip link set lo up
ip link add br0 type bridge
ip link add truenasbr0 type bridge
ip link add name up0 type veth peer name up1
ip link add link up0 name macvtap0 type macvtap mode bridge
ip link add link up0 name macvtap1 type macvtap mode bridge
for i in br0 truenasbr0 up0 up1 macvtap0 macvtap1; do ip link set "$i" up; done
tap0=$(cat "$net/macvtap0/ifindex")
tap1=$(cat "$net/macvtap1/ifindex")
# macvtap1's character device under a name that says nothing: it must be
# matched by its device numbers, not by /dev/tapN.
mknod "$ROOT/odd-node" c $(tr ':' ' ' < "$net/macvtap1/macvtap/tap$tap1/dev")
# macvtap0's node where udev puts it, the name libvirt opens.
mknod "/dev/tap$tap0" c $(tr ':' ' ' < "$net/macvtap0/macvtap/tap$tap0/dev")

# A TrueNAS 24.10-25.10 VM: libvirt domain 3_vyos, two taps and a macvtap
# handed to QEMU as an fd on its /dev/tapN node, as libvirt does.
qemu-system-x86_64 -machine none -S -display none -name guest=3_vyos,debug-threads=on \
  -netdev tap,id=n0,ifname=vnet0,script=no,downscript=no \
  -netdev tap,id=n1,ifname=vnet1,script=no,downscript=no \
  -netdev tap,id=n2,fd=3 3<>"/dev/tap$tap0" \
  -daemonize -pidfile "$ROOT/vyos.pid" 2>/dev/null
# A QEMU the middleware does not know (an Incus VM on 25.04.2-25.10).
qemu-system-x86_64 -machine none -S -display none -name c2 \
  -netdev tap,id=n0,ifname=tap1a2b3c4d,script=no,downscript=no \
  -daemonize -pidfile "$ROOT/c2.pid" 2>/dev/null
# A TrueNAS 26 VM: libvirt names the domain by its UUID. -S leaves it paused,
# and the middleware says SUSPENDED.
uuid=6f1c2a4e-8d3b-4e5f-a6b7-c8d9e0f1a2b3
qemu-system-x86_64 -machine none -S -display none -name guest=$uuid,debug-threads=on \
  -netdev tap,id=n0,ifname=vnet2,script=no,downscript=no \
  -netdev tap,id=n1,fd=3 3<>"$ROOT/odd-node" \
  -daemonize -pidfile "$ROOT/ha.pid" 2>/dev/null
for t in vnet0 vnet1 vnet2; do ip link set "$t" master br0; done
vyos=$(cat "$ROOT/vyos.pid")
ha=$(cat "$ROOT/ha.pid")

# Incus instances' host devices, named as Incus names them; kernel.rs's fake
# API claims them.
ip link add name veth7e3a1b2c type veth peer name incus0
ip tuntap add dev tap5d4c3b2a mode tap
ip link add link up0 name mac0a1b2c3d type macvlan mode bridge

# An "LXC container" without Incus's API: its own network and mount namespace
# with its own sysfs, in cgroup lxc.payload.<name>/init.scope, a veth on br0.
lxc=tnelxc${TNE_ID:?}   # cgroups are host-wide: a unique name per run
unshare -n -m sh -c 'mount -t sysfs sysfs /sys && exec sleep 600' &
lxcpid=$!
# A TrueNAS 26 (libvirt-LXC) container: a supervisor in the host's namespace
# whose child has its own network namespace; its host veth is called vnet7.
sh -c 'unshare -n -m sh -c "mount -t sysfs sysfs /sys && exec sleep 602"; true' &
supervisor=$!
in_own_ns() { [ -e "/proc/$1/root/sys/class/net/lo" ] && [ "$(readlink "/proc/$1/ns/net")" != "$(readlink /proc/1/ns/net)" ]; }
for _ in $(seq 100); do in_own_ns "$lxcpid" && break; sleep 0.05; done
child=
for _ in $(seq 100); do
  child=$(cat "/proc/$supervisor/task/$supervisor/children" 2>/dev/null | awk '{print $1}')
  [ -n "$child" ] && in_own_ns "$child" && break
  sleep 0.05
done
cg=/sys/fs/cgroup
[ -e "$cg/cgroup.controllers" ] || cg=/sys/fs/cgroup/pids
mkdir -p "$cg/lxc.payload.$lxc/init.scope"
cleanup() {
  kill "$lxcpid" "$child" 2>/dev/null || true
  wait 2>/dev/null || true
  rmdir "$cg/lxc.payload.$lxc/init.scope" "$cg/lxc.payload.$lxc" 2>/dev/null || true
}
trap cleanup EXIT
echo "$lxcpid" > "$cg/lxc.payload.$lxc/init.scope/cgroup.procs"
ip link add name vethlxc0 type veth peer name lxceth0
ip link set lxceth0 netns "$lxcpid"
ip link set vethlxc0 master br0
ip link add name vnet7 type veth peer name eth0
ip link set eth0 netns "$child"
ip link set vnet7 master truenasbr0
for i in vethlxc0 vnet7; do ip link set "$i" up; done
# Each container also has a macvlan interface, whose iflink is its parent's
# ifindex (br0's, up0's) just as a veth end's is its host end's: the parents
# must stay the host's.
ip link add link br0 name lxcmv0 type macvlan mode bridge
ip link set lxcmv0 netns "$lxcpid"
ip link add link up0 name ctmv0 type macvlan mode bridge
ip link set ctmv0 netns "$child"
echo "$lxc" > "$ROOT/out/lxc-name"

# Fake TrueNAS and libvirt tools speaking the real formats. 25.x middleware:
# vm.query knows vyos and the paused VM, not the Incus QEMU; container.query
# does not exist there (JSON-RPC's "Method does not exist").
vm="{\"id\": 3, \"name\": \"vyos\", \"devices\": [], \"status\": {\"state\": \"RUNNING\", \"pid\": $vyos, \"domain_state\": \"RUNNING\"}},
 {\"id\": 6, \"uuid\": \"$uuid\", \"name\": \"homeassistant\", \"devices\": [], \"status\": {\"state\": \"SUSPENDED\", \"pid\": $ha, \"domain_state\": \"PAUSED\"}},
 {\"id\": 5, \"name\": \"off\", \"devices\": [], \"status\": {\"state\": \"STOPPED\", \"pid\": null, \"domain_state\": \"SHUTOFF\"}}"
cat > "$ROOT/usr/bin/midclt" <<MIDCLT
#!/bin/sh
case "\$2" in
  vm.query) cat <<'JSON'
[$vm]
JSON
  ;;
  *) echo "Method does not exist" >&2; exit 1 ;;
esac
MIDCLT
cp "$ROOT/usr/bin/midclt" "$ROOT/fake-midclt"
sed -i "1s|.*|#!$(command -v sh)|" "$ROOT/fake-midclt"                          # run directly
# 26 middleware: vm.query, container.query (the supervisor's pid, as a
# supervisor is what a careless reading would give), no virt.* any more.
cat > "$ROOT/fake-midclt-26" <<MIDCLT
#!$(command -v sh)
case "\$2" in
  vm.query) cat <<'JSON'
[$vm]
JSON
  ;;
  container.query) cat <<'JSON'
[{"id": 1, "uuid": "0c1f6b4e-3a2d-4f7e-9a51-2b8e6d0c7a11", "name": "debian", "devices": [], "autostart": true,
  "dataset": "tank/.truenas_containers/debian", "status": {"state": "RUNNING", "pid": $supervisor, "domain_state": "RUNNING"}}]
JSON
  ;;
  *) echo "Method does not exist" >&2; exit 1 ;;
esac
MIDCLT
printf '#!/bin/sh\necho "connection refused: boom" >&2\nexit 1\n' > "$ROOT/broken-midclt"
cat > "$ROOT/fake-virsh" <<'VIRSH'
#!/bin/sh
[ "$1" = "-c" ] && shift 2
case "$1" in
  list) if [ -n "$HUNG_DOMAIN" ]; then printf '9_stuck\n'; fi; printf '3_vyos\n\n' ;;
  domiflist)
    # A domain whose libvirt answer never comes (listed first).
    [ "$2" = 9_stuck ] && exec sleep 603
    echo " Interface     Type     Source     Model    MAC"
    echo "-------------------------------------------------------------"
    case "$2" in
      3_vyos) echo " vnet0         bridge   br0        virtio   fe:a0:98:3c:11:02"
              echo " vnet1         bridge   br0        virtio   fe:a0:98:3c:11:03"
              echo " macvtap0      direct   up0        virtio   00:a0:98:3c:11:04" ;;
    esac
    echo ;;
  *) exit 1 ;;
esac
VIRSH
printf '#!/bin/sh\nexec sleep 601\n' > "$ROOT/hung-midclt"
chmod +x "$ROOT/usr/bin/midclt" "$ROOT/fake-midclt" "$ROOT/fake-midclt-26" "$ROOT/broken-midclt" \
  "$ROOT/fake-virsh" "$ROOT/hung-midclt"

direct="[commands]
chroot = false"
tools() { # $1 = midclt to run directly
  printf '%s\n[truenas]\nmidclt_command = ["%s", "call"]\n[vm]\nvirsh_command = ["%s"]\nvirsh_uri = "qemu+unix:///system?socket=/run/truenas_libvirt/libvirt-sock"\n' \
    "$direct" "$1" "$ROOT/fake-virsh"
}
once() { # $1 = output name, $2 = config
  printf '%s\n' "$2" > "$ROOT/out/$1.toml"
  "$BIN" --once --path.rootfs="$ROOT" --path.procfs=/proc --docker.socket= \
    --config.file="$ROOT/out/$1.toml" > "$ROOT/out/$1.prom" 2> "$ROOT/out/$1.log"
}
once union "$(tools "$ROOT/fake-midclt")"
once qemu "$(tools "$ROOT/fake-midclt")
sources = [\"qemu\"]"
once midclt "$(tools "$ROOT/fake-midclt")
sources = [\"midclt\"]"
once virsh "$(tools "$ROOT/fake-midclt")
sources = [\"virsh\"]"
once chroot '[vm]
sources = ["midclt"]'     # chroot into $ROOT, PATH finds /usr/bin/midclt there
once broken "$(tools "$ROOT/broken-midclt")"
once truenas26 "$(tools "$ROOT/fake-midclt-26")
[incus]
socket = \"/var/lib/incus-absent/unix.socket\""
# midclt and virsh both hang, each to its command timeout: together longer
# than the refresh timeout, so only lookups run side by side leave the scan
# time to name the VMs.
once hungtools "[commands]
chroot = false
timeout = \"2s\"
[truenas]
midclt_command = [\"$ROOT/hung-midclt\"]
[vm]
virsh_command = [\"$ROOT/hung-midclt\"]
timeout = \"3s\""

# With [lxc] on, a hung container.query (its command timeout longer than the
# refresh timeout) must not keep the cgroup scan's answer from counting.
once hunglxc "[commands]
chroot = false
timeout = \"20s\"
[truenas]
midclt_command = [\"$ROOT/hung-midclt\"]
[lxc]
timeout = \"2s\"
[vm]
sources = [\"qemu\"]"
# virsh alone, with a domain whose domiflist hangs: the other is still named.
HUNG_DOMAIN=1 once hungvirsh "$(tools "$ROOT/fake-midclt")
sources = [\"virsh\"]
timeout = \"3s\""

# A midclt that hangs: killed at its timeout while the server keeps answering.
cat > "$ROOT/out/hung.toml" <<TOML
[truenas]
midclt_command = ["$ROOT/hung-midclt"]
[commands]
chroot = false
timeout = "1s"
[vm]
sources = ["midclt"]
interval = "1s"
timeout = "3s"
[lxc]
enabled = false
TOML
"$BIN" --web.listen-address=127.0.0.1:19600 --path.rootfs="$ROOT" --docker.socket= \
  --config.file="$ROOT/out/hung.toml" --log.level=error &
server=$!
sleep 4
for i in 1 2 3 4 5; do
  curl -s -o "$ROOT/out/hung-$i.prom" -w '%{http_code} %{time_total}\n' http://127.0.0.1:19600/metrics >> "$ROOT/out/hung-codes.txt"
done
sleep 1.5
pgrep -c -f "sleep 601$" > "$ROOT/out/hung-alive.txt" || true
ps --ppid "$server" -o stat= | grep -c Z > "$ROOT/out/hung-zombies.txt" || true
kill "$server"
wait "$server" 2>/dev/null || true
