#!/usr/bin/env bash
# Real VMs and an "LXC container" in a private network/mount/pid namespace (run
# by kernel.rs through `unshare -n -p -f -m --mount-proc`), scraped by the real
# binary through each VM source. Needs: $BIN, $ROOT (a directory to build a
# small busybox root filesystem in), $TNE_ID (unique per run),
# qemu-system-x86_64, busybox, curl.
set -euo pipefail
mkdir -p "$ROOT/sys" "$ROOT/bin" "$ROOT/usr/bin" "$ROOT/out"
mount -t sysfs sysfs "$ROOT/sys"
net="$ROOT/sys/class/net"
cp /bin/busybox "$ROOT/bin/busybox"
for applet in sh cat; do ln -sf busybox "$ROOT/bin/$applet"; done

ip link set lo up
ip link add br0 type bridge
ip link add name up0 type veth peer name up1
ip link add link up0 name macvtap0 type macvtap mode bridge
for i in br0 up0 up1 macvtap0; do ip link set "$i" up; done
tapidx=$(cat "$net/macvtap0/ifindex")

# A TrueNAS-style VM: libvirt domain name 3_vyos, two taps and the macvtap,
# which is handed to QEMU as an fd on its /dev/tapN node, as libvirt does.
qemu-system-x86_64 -machine none -S -display none -name guest=3_vyos,debug-threads=on \
  -netdev tap,id=n0,ifname=vnet0,script=no,downscript=no \
  -netdev tap,id=n1,ifname=vnet1,script=no,downscript=no \
  -netdev tap,id=n2,fd=3 3<>"/dev/tap$tapidx" \
  -daemonize -pidfile "$ROOT/vyos.pid" 2>/dev/null
# An Incus-style VM tap.
qemu-system-x86_64 -machine none -S -display none -name c2 \
  -netdev tap,id=n0,ifname=tap1a2b3c4d,script=no,downscript=no \
  -daemonize -pidfile "$ROOT/c2.pid" 2>/dev/null
ip link set vnet0 master br0
ip link set vnet1 master br0
vyos=$(cat "$ROOT/vyos.pid")
c2=$(cat "$ROOT/c2.pid")

# An "LXC container": its own network and mount namespace with its own sysfs,
# in cgroup lxc.payload.<name>/init.scope, joined to br0 by a veth.
lxc=tnelxc${TNE_ID:?}   # cgroups are host-wide: a unique name per run
unshare -n -m sh -c 'mount -t sysfs sysfs /sys && exec sleep 600' &
lxcpid=$!
for _ in $(seq 100); do [ -e "/proc/$lxcpid/root/sys/class/net/lo" ] && [ "$(readlink /proc/$lxcpid/exe)" != "$(readlink /proc/$$/exe)" ] && break; sleep 0.05; done
cg=/sys/fs/cgroup
[ -e "$cg/cgroup.controllers" ] || cg=/sys/fs/cgroup/pids
mkdir -p "$cg/lxc.payload.$lxc/init.scope"
cleanup() {
  kill "$lxcpid" 2>/dev/null || true
  wait "$lxcpid" 2>/dev/null || true
  rmdir "$cg/lxc.payload.$lxc/init.scope" "$cg/lxc.payload.$lxc" 2>/dev/null || true
}
trap cleanup EXIT
echo "$lxcpid" > "$cg/lxc.payload.$lxc/init.scope/cgroup.procs"
ip link add name vethlxc0 type veth peer name lxceth0
ip link set lxceth0 netns "$lxcpid"
ip link set vethlxc0 master br0
ip link set vethlxc0 up
echo "$lxc" > "$ROOT/out/lxc-name"

# Fake TrueNAS and libvirt tools speaking the real formats.
vmquery="[{\"id\": 3, \"name\": \"vyos\", \"devices\": [], \"status\": {\"state\": \"RUNNING\", \"pid\": $vyos, \"domain_state\": \"RUNNING\"}},
 {\"id\": 4, \"name\": \"c2\", \"devices\": [], \"status\": {\"state\": \"RUNNING\", \"pid\": $c2, \"domain_state\": \"RUNNING\"}},
 {\"id\": 5, \"name\": \"off\", \"devices\": [], \"status\": {\"state\": \"STOPPED\", \"pid\": null, \"domain_state\": \"SHUTOFF\"}}]"
printf '#!/bin/sh\ncat <<JSON\n%s\nJSON\n' "$vmquery" > "$ROOT/usr/bin/midclt"   # inside the busybox root
cp "$ROOT/usr/bin/midclt" "$ROOT/fake-midclt"
sed -i "1s|.*|#!$(command -v sh)|" "$ROOT/fake-midclt"                           # run directly
cat > "$ROOT/fake-virsh" <<'VIRSH'
#!/bin/sh
[ "$1" = "-c" ] && shift 2
case "$1" in
  list) printf '3_vyos\n4_c2\n\n' ;;
  domiflist)
    echo " Interface     Type     Source     Model    MAC"
    echo "-------------------------------------------------------------"
    case "$2" in
      3_vyos) echo " vnet0         bridge   br0        virtio   fe:a0:98:3c:11:02"
              echo " vnet1         bridge   br0        virtio   fe:a0:98:3c:11:03"
              echo " macvtap0      direct   up0        virtio   00:a0:98:3c:11:04" ;;
      4_c2)   echo " tap1a2b3c4d   bridge   br0        virtio   fe:16:3e:00:00:01" ;;
    esac
    echo ;;
  *) exit 1 ;;
esac
VIRSH
printf '#!/bin/sh\nexec sleep 601\n' > "$ROOT/hung-midclt"
chmod +x "$ROOT/usr/bin/midclt" "$ROOT/fake-midclt" "$ROOT/fake-virsh" "$ROOT/hung-midclt"

once() { # $1 = output name, $2 = [vm] config
  printf '[vm]\n%s\n' "$2" > "$ROOT/out/$1.toml"
  "$BIN" --once --path.rootfs="$ROOT" --path.procfs=/proc --docker.socket= \
    --config.file="$ROOT/out/$1.toml" > "$ROOT/out/$1.prom"
}
once qemu 'sources = ["qemu"]'
once midclt "sources = [\"midclt\"]
chroot = false
midclt_command = [\"$ROOT/fake-midclt\", \"call\", \"vm.query\"]"
once chroot 'sources = ["midclt"]'      # chroot into $ROOT, PATH finds /usr/bin/midclt there
once virsh "sources = [\"virsh\"]
chroot = false
virsh_command = [\"$ROOT/fake-virsh\"]
virsh_uri = \"qemu+unix:///system?socket=/run/truenas_libvirt/libvirt-sock\""

# A midclt that hangs: killed at its timeout while the server keeps answering.
printf '[vm]\nsources = ["midclt"]\nchroot = false\nmidclt_command = ["%s"]\ninterval = "1s"\ncommand_timeout = "1s"\ntimeout = "3s"\n' \
  "$ROOT/hung-midclt" > "$ROOT/out/hung.toml"
"$BIN" --web.listen-address=127.0.0.1:19600 --path.rootfs="$ROOT" --docker.socket= \
  --config.file="$ROOT/out/hung.toml" --log.level=error &
server=$!
sleep 4
for i in 1 2 3 4 5; do
  curl -s -o "$ROOT/out/hung-$i.prom" -w '%{http_code} %{time_total}\n' http://127.0.0.1:19600/metrics >> "$ROOT/out/hung-codes.txt"
done
sleep 1.5
pgrep -c -f "sleep 601" > "$ROOT/out/hung-alive.txt" || true
ps --ppid "$server" -o stat= | grep -c Z > "$ROOT/out/hung-zombies.txt" || true
kill "$server"
wait "$server" 2>/dev/null || true
