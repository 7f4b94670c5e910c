#!/usr/bin/env bash
# A TrueNAS-like private host for traffic per remote peer (peers.rs): cgroup2
# alone at /sys/fs/cgroup, LAN namespaces of their own addresses behind
# uplinks, real servers and clients, and the exporter started last with
# $ROOT/config.toml on 127.0.0.1:$PORT.
#
#   peers-host.sh host     the host itself, run by `unshare -n -p -f -m
#                          --mount-proc` (support::in_private_host); sets up
#                          the parts in $PARTS, touches $ROOT/ready and waits
#                          for $ROOT/done.
#   peers-host.sh STEP ... one step of a test, run in the host through
#                          `nsenter` (peers.rs: Host::step); prints what it
#                          measured.
#
# Parts ($PARTS, space-separated):
#   nas    a real smbd (users alice and bob) in /system.slice/tne-smbd.service,
#          SMB clients in lan1 (10.77.1.2) and lan2 (10.77.2.2); a real NFS
#          server (nfs-ganesha, VFS FSAL, NFSv4 over TCP only) whose listening
#          socket was made in /system.slice/tne-nfs-server.service, removed before
#          the exporter starts (knfsd's case), its client in lan3 (10.77.3.2,
#          nothing else there: its interface counters are the independent
#          count); an NFS "server" (a TCP sink on 2049) in lan1 for this host
#          as an NFS client.
#   apps   a dockerd of its own (cgroupfs layout, image from busybox), TCP
#          sinks in lan1 (:5001), lan2 (:873) and on a routed "internet"
#          address 198.51.100.7 (:443, behind the wan namespace); dnsmasq in
#          lan1 (:53).
#   flood  a sink namespace that owns 10.99.0.0/16 (a local route), reached
#          through a veth: UDP to any of its 65,536 addresses really leaves.
#   smb    the real smbd of nas and its clients in lan1 and lan2, alone.
#   iscsi  a real iSCSI target (tgtd, user space) in
#          /system.slice/tne-tgt.service on port 3260: one target,
#          iqn.2026-12.test.tne:disk1, a file-backed 8 MiB LUN; its initiator
#          (libiscsi's tools, iqn.2026-12.test.tne:client-lan4) in lan4
#          (10.77.4.2).
#   dns    a DNS server (dnsmasq) in lan5 (10.77.5.2) with the LAN clients'
#          forward and reverse records (10.77.1.2 lan1-client.lan, 10.77.2.2
#          bob-pc.lan, 10.77.4.2 proxmox.lan), named by this host's
#          /etc/resolv.conf (a bind mount in this host's mount namespace
#          alone).
#
# Parts may be combined; a LAN namespace two parts need is made once.
# "@ROOT@" in $ROOT/config.toml stands for $ROOT (the test writes the config
# before it knows where the host's files will be).
#
# The other machines' processes run in a cgroup of their own (see `on`).
# Every cgroup made here is listed in $ROOT/cgroups (relative to the cgroup2
# root; their parents made for them in $ROOT/parents), so that the test can
# remove what is left if the host is killed.
# Needs: $BIN, $ROOT, $PORT, $PARTS ($SMB_FILE and $NFS_FILE, the sizes of
# the files served, for nas); iproute2, python3, and per part: smbd,
# smbpasswd, smbclient, ganesha.nfsd, nfs-cp (nas); dockerd, docker, busybox,
# dnsmasq (apps); smbd, smbpasswd, smbclient, smbstatus (smb); tgtd, tgtadm,
# iscsi-perf (iscsi); dnsmasq, getent, dig (dns).
set -euo pipefail
CG=/sys/fs/cgroup

# A cgroup below the root, recorded for the test's cleanup (which kills
# what is in it and removes it). It must not be there already: it would be
# the machine's own (a real smbd's unit, another run of this test). A parent
# made for it (system.slice on a machine without systemd) is recorded in
# $ROOT/parents, to be removed only if empty: others may use it meanwhile.
make_cgroup() {
  if [ -e "$CG/$1" ]; then
    echo "peers-host.sh: $1 already exists on this machine; not using it" >&2
    return 1
  fi
  local parent
  parent=$(dirname "$1")
  if [ "$parent" != . ] && [ ! -d "$CG/$parent" ]; then
    mkdir -p "$CG/$parent"
    echo "$parent" >>"$ROOT/parents"
  fi
  mkdir "$CG/$1"
  echo "$1" >>"$ROOT/cgroups"
}

# Runs the rest of the arguments in cgroup $1 (made if missing).
in_cgroup() {
  local cgroup=$1
  shift
  [ -d "$CG/$cgroup" ] || make_cgroup "$cgroup"
  echo $BASHPID >"$CG/$cgroup/cgroup.procs"
  exec "$@"
}

# The other machines' processes (servers and clients in the LAN, wan and
# sink namespaces) share this machine's cgroup tree, so the exporter counts
# their sockets too: they get a cgroup of their own, one per host. Left in
# the root cgroup, a LAN server on port 2049 would be this host's kernel
# NFS server to the exporter.
LAN_CGROUP="tne-lan-$(basename "$ROOT" | tr -cd 'A-Za-z0-9')"

# Runs the rest of the arguments in namespace $1, as another machine.
on() {
  local ns=$1
  shift
  (in_cgroup "$LAN_CGROUP" ip netns exec "$ns" "$@")
}

# A LAN namespace $1 behind uplink$2: this host 10.77.$2.1, the namespace
# 10.77.$2.2 (its lan0). No IPv6 and fixed neighbours on either end, so that
# nothing but the tests' own packets crosses the link (ARP, router
# solicitations and MLD reports would be on the interface counters and on
# no socket).
lan() {
  local ns=$1 n=$2
  local here="02:00:00:77:0$n:01" there="02:00:00:77:0$n:02"
  [ -e "/run/netns/$ns" ] && return 0
  ip netns add "$ns"
  ip link add "uplink$n" address "$here" type veth peer name lan0 address "$there" netns "$ns"
  sysctl -qw "net.ipv6.conf.uplink$n.disable_ipv6=1"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.lan0.disable_ipv6=1
  ip addr add "10.77.$n.1/24" dev "uplink$n"
  ip link set "uplink$n" up
  ip neigh replace "10.77.$n.2" lladdr "$there" dev "uplink$n" nud permanent
  ip -n "$ns" addr add "10.77.$n.2/24" dev lan0
  ip -n "$ns" link set lan0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" neigh replace "10.77.$n.1" lladdr "$here" dev lan0 nud permanent
  ip -n "$ns" route add default via "10.77.$n.1"
}

# TCP sinks: `sink NAMESPACE ADDR:PORT...` accepts connections on each
# address and reads them to the end; each connection appends "peer port
# bytes" to $ROOT/sink.log.
sink() {
  local ns=$1
  shift
  on "$ns" python3 "$ROOT/sink.py" "$ROOT/sink.log" "$@" &
}
write_sink() {
  cat >"$ROOT/sink.py" <<'EOF'
import socket, sys, threading
lock = threading.Lock()
def drain(c, peer, port):
    n = 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        n += len(d)
    c.close()
    with lock, open(sys.argv[1], "a") as out:
        out.write(f"{peer[0]} {port} {n}\n")
def serve(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    while True:
        c, peer = s.accept()
        threading.Thread(target=drain, args=(c, peer, port), daemon=True).start()
for spec in sys.argv[2:]:
    addr, port = spec.rsplit(":", 1)
    threading.Thread(target=serve, args=(addr, int(port)), daemon=True).start()
threading.Event().wait()
EOF
}

# Waits (5 s at most) until something listens on TCP port $2 in namespace $1
# ("" for this host's), without connecting to it.
wait_listen() {
  local run=()
  [ -n "$1" ] && run=(ip netns exec "$1")
  for _ in $(seq 100); do
    [ -n "$("${run[@]}" ss -Hltn "sport = :$2")" ] && return 0
    sleep 0.05
  done
  echo "nothing listens on ${1:-host}:$2" >&2
  return 1
}

smb_part() {
  # Unix users for Samba, in copies of passwd and group seen only here.
  cp /etc/passwd "$ROOT/passwd"
  cp /etc/group "$ROOT/group"
  echo 'alice:x:30001:30001::/nonexistent:/usr/sbin/nologin' >>"$ROOT/passwd"
  echo 'bob:x:30002:30002::/nonexistent:/usr/sbin/nologin' >>"$ROOT/passwd"
  printf 'alice:x:30001:\nbob:x:30002:\n' >>"$ROOT/group"
  mount --bind "$ROOT/passwd" /etc/passwd
  mount --bind "$ROOT/group" /etc/group
  local s="$ROOT/samba"
  mkdir -p "$s"/{state,lock,private,cache,pid,ncalrpc,log} "$ROOT/share" "$ROOT/client"/{state,lock,private,cache}
  # The users' processes reach the share through $ROOT.
  chmod 755 "$ROOT"
  chmod 777 "$ROOT/share"
  head -c "$SMB_FILE" /dev/urandom >"$ROOT/share/big"
  head -c 65536 /dev/urandom >"$ROOT/share/small"
  chmod 644 "$ROOT/share/big" "$ROOT/share/small"
  cat >"$ROOT/smb.conf" <<EOF
[global]
  server role = standalone server
  smb ports = 445
  disable netbios = yes
  state directory = $s/state
  lock directory = $s/lock
  private dir = $s/private
  binddns dir = $s/private
  cache directory = $s/cache
  pid directory = $s/pid
  ncalrpc dir = $s/ncalrpc
  log file = $s/log/%m.log
  passdb backend = tdbsam:$s/private/passdb.tdb
  usershare path =
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[share]
  path = $ROOT/share
  read only = no
EOF
  # The clients' own state, away from the machine's /var/lib/samba.
  cat >"$ROOT/client.conf" <<EOF
[global]
  state directory = $ROOT/client/state
  lock directory = $ROOT/client/lock
  private dir = $ROOT/client/private
  cache directory = $ROOT/client/cache
EOF
  for user in alice bob; do
    printf 'pw\npw\n' | smbpasswd -c "$ROOT/smb.conf" -a -s "$user" >/dev/null
  done
  (in_cgroup system.slice/tne-smbd.service smbd --foreground --no-process-group \
    --debug-stdout -s "$ROOT/smb.conf") >"$ROOT/smbd.log" 2>&1 &
  wait_listen "" 445
}

nfs_part() {
  local g="$ROOT/ganesha"
  mkdir -p "$g/recovery" "$ROOT/export"
  head -c "$NFS_FILE" /dev/urandom >"$ROOT/export/big"
  head -c 65536 /dev/urandom >"$ROOT/export/small"
  # NFSv4 over TCP only: no rpcbind, no NLM, no UDP; no grace period (the
  # test would wait 90 s for its first OPEN); no delegations (their
  # callbacks would be connections from this host, made in ganesha's new
  # cgroup).
  cat >"$g/ganesha.conf" <<EOF
NFS_CORE_PARAM {
  Protocols = 4;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  NFS_Port = 2049;
  Plugins_Dir = "$(dirname "$(find /usr/lib /usr/lib64 -name libfsalvfs.so -print -quit 2>/dev/null)")";
}
NFSv4 {
  Graceless = true;
  Delegations = false;
  RecoveryRoot = "$g/recovery";
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
  Export_Id = 1;
  Path = "$ROOT/export";
  Pseudo = "/export";
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 4;
  Transports = TCP;
  SecType = sys;
  FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOF
  # Its listening socket is made in a unit's cgroup; then the daemon moves
  # on and the cgroup goes, as knfsd's oneshot nfs-server.service would:
  # the connections it accepts carry the removed cgroup's id, which no walk
  # of the tree has ever met. (tne- names: a machine with a real NFS server
  # has the plain ones.)
  local unit=system.slice/tne-nfs-server.service moved=system.slice/tne-ganesha.service
  (in_cgroup "$unit" ganesha.nfsd -F -f "$g/ganesha.conf" \
    -L "$g/ganesha.log" -p "$g/ganesha.pid" -N NIV_EVENT) >"$g/out.log" 2>&1 &
  wait_listen "" 2049
  make_cgroup "$moved"
  local pid
  for pid in $(cat "$CG/$unit/cgroup.procs"); do
    echo "$pid" >"$CG/$moved/cgroup.procs"
  done
  rmdir "$CG/$unit"
}

apps_part() {
  # The internet: 198.51.100.7, two routers away (this host, then wan).
  ip netns add wan
  ip link add wan0 type veth peer name up0 netns wan
  sysctl -qw net.ipv6.conf.wan0.disable_ipv6=1
  ip addr add 203.0.113.1/30 dev wan0
  ip link set wan0 up
  ip -n wan addr add 203.0.113.2/30 dev up0
  ip -n wan addr add 198.51.100.7/32 dev lo
  ip -n wan link set up0 up
  ip -n wan link set lo up
  ip -n wan route add default via 203.0.113.1
  ip route add 198.51.100.0/24 via 203.0.113.2
  sink lan1 10.77.1.2:5001
  sink lan2 10.77.2.2:873
  sink wan 198.51.100.7:443
  on lan1 dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address=10.77.1.2 --port=53 --user=root \
    --pid-file="$ROOT/dnsmasq.pid" --address=/peers.test/192.0.2.53 \
    >"$ROOT/dnsmasq.log" 2>&1 &

  # The engine, as TrueNAS runs it (cgroupfs driver), in this namespace.
  dockerd --host "unix://$ROOT/docker.sock" --data-root "$ROOT/data" --exec-root "$ROOT/exec" \
    --pidfile "$ROOT/dockerd.pid" --iptables=false --ip6tables=false \
    --exec-opt native.cgroupdriver=cgroupfs >"$ROOT/dockerd.log" 2>&1 &
  export DOCKER_HOST="unix://$ROOT/docker.sock"
  for _ in $(seq 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
  mkdir -p "$ROOT/image/bin"
  cp "$(command -v busybox)" "$ROOT/image/bin/busybox"
  for applet in sh nc head sleep; do ln -sf busybox "$ROOT/image/bin/$applet"; done
  tar -C "$ROOT/image" -c . | docker import - tne-peers >/dev/null
  wait_listen lan1 5001
  wait_listen lan2 873
  wait_listen wan 443
}

# The iSCSI target of the names tests, as TrueNAS serves one (there SCST's
# iscsi-scstd in scst.service; here tgtd, all in user space): a daemon in a
# unit's cgroup accepting on 3260, one target with one LUN backed by a file.
ISCSI_TARGET=iqn.2026-12.test.tne:disk1
ISCSI_INITIATOR=iqn.2026-12.test.tne:client-lan4
iscsi_part() {
  local t="$ROOT/tgt"
  mkdir -p "$t"
  head -c 8388608 /dev/urandom >"$t/disk1.img"
  # Its control socket is /var/run/tgtd/socket.0: this host's own /run.
  (in_cgroup system.slice/tne-tgt.service tgtd -f) >"$t/tgtd.log" 2>&1 &
  wait_listen "" 3260
  for _ in $(seq 100); do
    tgtadm --lld iscsi --mode target --op show >/dev/null 2>&1 && break
    sleep 0.05
  done
  tgtadm --lld iscsi --mode target --op new --tid 1 --targetname "$ISCSI_TARGET"
  tgtadm --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$t/disk1.img"
  tgtadm --lld iscsi --mode target --op bind --tid 1 --initiator-address ALL
  # What the target sends to lan4 at 2 MB/s: the initiator's reads last
  # while the test looks, and leave the machine's two CPUs to the rest.
  tc qdisc add dev uplink4 root tbf rate 16mbit burst 32kb latency 200ms ||
    echo "peers-host.sh: no tbf qdisc; lan4 reads at full speed" >&2
}

# The names tests' DNS server: forward and reverse records of the LAN
# clients, nothing else (no upstream; other names in .lan and other private
# reverse zones are answered "no such name" at once). This host's resolver
# asks it through /etc/resolv.conf, bound over in this mount namespace only
# (unshare -m makes every mount private to it).
dns_part() {
  on lan5 dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address=10.77.5.2 --port=53 --user=root \
    --pid-file="$ROOT/dns.pid" --log-queries --log-facility=- \
    --local=/lan/ --bogus-priv \
    --host-record=lan1-client.lan,10.77.1.2 \
    --host-record=bob-pc.lan,10.77.2.2 \
    --host-record=proxmox.lan,10.77.4.2 \
    >"$ROOT/dns.log" 2>&1 &
  printf 'nameserver 10.77.5.2\noptions timeout:1 attempts:2\n' >"$ROOT/resolv.conf"
  # Where /etc/resolv.conf leads (a link into /run on a systemd-resolved
  # machine: this host's /run is its own, empty tmpfs).
  local conf
  conf=$(readlink -f /etc/resolv.conf)
  if [ ! -e "$conf" ]; then
    case $conf in
    /run/*) mkdir -p "$(dirname "$conf")" && : >"$conf" ;;
    *)
      echo "peers-host.sh: /etc/resolv.conf leads to $conf, which is missing" >&2
      return 1
      ;;
    esac
  fi
  mount --bind "$ROOT/resolv.conf" "$conf"
  for _ in $(seq 100); do
    [ -n "$(ip netns exec lan5 ss -Hlun "sport = :53")" ] && return 0
    sleep 0.05
  done
  echo "nothing listens on lan5:53 (udp)" >&2
  return 1
}

flood_part() {
  ip netns add sink
  ip link add flood0 type veth peer name in0 netns sink
  sysctl -qw net.ipv6.conf.flood0.disable_ipv6=1
  ip addr add 10.98.0.1/30 dev flood0
  ip link set flood0 up
  ip -n sink addr add 10.98.0.2/30 dev in0
  ip -n sink link set in0 up
  ip -n sink link set lo up
  # Every address of the /16 is the sink's own, and one socket takes what
  # comes to any of them on port 161 (nothing answers "port unreachable").
  ip -n sink route add local 10.99.0.0/16 dev lo
  ip -n sink route add default via 10.98.0.1
  ip route add 10.99.0.0/16 via 10.98.0.2
  on sink python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", 161))
while True:
    s.recv(65536)
' &
}

host() {
  exec 2>"$ROOT/script.log"
  trap 'echo "peers-host.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
  # As the pid namespace's init, bash ignores a SIGTERM it has no handler
  # for: this one (unshare's --kill-child when the test goes) cleans up
  # and ends the host.
  trap 'cleanup; exit 143' TERM
  set -x
  mount -t sysfs sysfs /sys
  mount -t cgroup2 cgroup2 "$CG"
  mount -t tmpfs tmpfs /run
  ip link set lo up
  sysctl -qw net.ipv4.ip_forward=1
  : >"$ROOT/cgroups"
  : >"$ROOT/parents"
  make_cgroup "$LAN_CGROUP"
  write_sink
  local part
  for part in $PARTS; do
    case $part in
    nas)
      lan lan1 1
      lan lan2 2
      lan lan3 3
      smb_part
      nfs_part
      sink lan1 10.77.1.2:2049
      wait_listen lan1 2049
      ;;
    apps)
      lan lan1 1
      lan lan2 2
      apps_part
      ;;
    flood) flood_part ;;
    smb)
      lan lan1 1
      lan lan2 2
      SMB_FILE=${SMB_FILE:-1000000} smb_part
      ;;
    iscsi)
      lan lan4 4
      iscsi_part
      ;;
    dns)
      lan lan5 5
      dns_part
      ;;
    esac
  done
  sed -i "s|@ROOT@|$ROOT|g" "$ROOT/config.toml"
  local docker=()
  [ -S "$ROOT/docker.sock" ] && docker=(--docker.socket="$ROOT/docker.sock")
  [ -S "$ROOT/docker.sock" ] || docker=(--docker.socket=)
  "$BIN" --web.listen-address="127.0.0.1:$PORT" "${docker[@]}" \
    --config.file="$ROOT/config.toml" 2>"$ROOT/exporter.log" &
  for _ in $(seq 100); do
    (exec 6<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  touch "$ROOT/ready"

  set +x
  until [ -e "$ROOT/done" ]; do sleep 0.1; done
  set -x
  cleanup
}

# What the host made outside itself: the cgroups (the machine's) and the
# containers'. Everything else goes with its namespaces and pid 1.
cleanup() {
  trap - TERM
  if [ -S "$ROOT/docker.sock" ]; then
    export DOCKER_HOST="unix://$ROOT/docker.sock"
    docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true
  fi
  local cg
  for cg in $(tac "$ROOT/cgroups"); do
    [ -d "$CG/$cg" ] || continue
    echo 1 >"$CG/$cg/cgroup.kill" 2>/dev/null || true
    for _ in $(seq 50); do rmdir "$CG/$cg" 2>/dev/null && break; sleep 0.05; done
  done
  if [ -f "$ROOT/parents" ]; then
    for cg in $(tac "$ROOT/parents"); do rmdir "$CG/$cg" 2>/dev/null || true; done
  fi
  [ -f "$ROOT/dockerd.pid" ] && kill "$(cat "$ROOT/dockerd.pid")" 2>/dev/null || true
}

# Interface counters of lan0 in namespace $1: rx_bytes rx_packets tx_bytes tx_packets.
counters() {
  local f
  for f in rx_bytes rx_packets tx_bytes tx_packets; do
    ip netns exec "$1" cat "/sys/class/net/lan0/statistics/$f"
  done | xargs
}

case "${1:-}" in
host) host ;;
# alice reads the share's file $2 (big or small) from lan1: prints the
# size she got.
smb-get)
  on lan1 smbclient -s "$ROOT/client.conf" -U alice%pw //10.77.1.1/share \
    -c "get $2 $ROOT/got" >&2
  cmp "$ROOT/share/$2" "$ROOT/got" >&2
  stat -c %s "$ROOT/got"
  ;;
# bob writes $2 bytes from lan2: prints the size the share got.
smb-put)
  head -c "$2" /dev/urandom >"$ROOT/upload"
  on lan2 smbclient -s "$ROOT/client.conf" -U bob%pw //10.77.2.1/share \
    -c "put $ROOT/upload upload" >&2
  cmp "$ROOT/upload" "$ROOT/share/upload" >&2
  stat -c %s "$ROOT/share/upload"
  ;;
# The NFS client in lan3 copies the export's file $2 (big or small):
# prints lan3's lan0 counters before and after, the copy's size last.
nfs-copy)
  counters lan3
  # nfs-cp does not overwrite.
  rm -f "$ROOT/copy"
  on lan3 nfs-cp "nfs://10.77.3.1/export/$2?version=4" "$ROOT/copy" >&2
  cmp "$ROOT/export/$2" "$ROOT/copy" >&2
  # The connection's last packets (the server's FIN or the client's RST)
  # come after nfs-cp has gone: wait for the counters to stand still.
  before=""
  for _ in $(seq 40); do
    now=$(counters lan3)
    [ "$now" = "$before" ] && break
    before=$now
    sleep 0.25
  done
  echo "$now"
  stat -c %s "$ROOT/copy"
  ;;
# This host as an NFS client: a process of service $2 sends $3 bytes to
# lan1's port 2049.
nfs-client)
  (in_cgroup "system.slice/$2.service" bash -c "head -c $3 /dev/zero >/dev/tcp/10.77.1.2/2049")
  ;;
# Container $2 sends to each of the rest of the arguments (ADDR:PORT:BYTES),
# one connection after another, from a process in the container's cgroup.
send)
  export DOCKER_HOST="unix://$ROOT/docker.sock"
  name=$2
  shift 2
  for to in "$@"; do
    IFS=: read -r addr port bytes <<<"$to"
    docker exec "$name" sh -c "head -c $bytes /dev/zero | nc $addr $port"
  done
  ;;
# Starts container $2 ("bridged" or "host" network), left running.
run)
  export DOCKER_HOST="unix://$ROOT/docker.sock"
  network=()
  [ "$3" = host ] && network=(--network host)
  docker run -d --name "$2" "${network[@]}" tne-peers sleep 3600 >/dev/null
  echo "docker/$(docker inspect -f '{{.Id}}' "$2")" >>"$ROOT/cgroups"
  ;;
# Container $2 lives about 2 s, sends $3 bytes to lan2 and exits.
blip)
  export DOCKER_HOST="unix://$ROOT/docker.sock"
  docker run --name "$2" tne-peers sh -c "head -c $3 /dev/zero | nc 10.77.2.2 873; sleep 2"
  echo "docker/$(docker inspect -f '{{.Id}}' "$2")" >>"$ROOT/cgroups"
  ;;
# $3 DNS queries over one unconnected UDP socket (sendto, no connect), from
# service $2, to lan1's dnsmasq: prints the IP bytes sent and received.
dns)
  (in_cgroup "system.slice/$2.service" python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
sent = received = 0
for i in range(int(sys.argv[1])):
    name = b"".join(bytes([len(p)]) + p for p in [b"q%d" % i, b"peers", b"test"]) + b"\0"
    query = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
    s.sendto(query, ("10.77.1.2", 53))
    reply, peer = s.recvfrom(4096)
    assert peer == ("10.77.1.2", 53) and reply[:2] == query[:2], (peer, reply)
    # IP (20) and UDP (8) headers: bytes at L3.
    sent += len(query) + 28
    received += len(reply) + 28
print(sent, received)
' "$3")
  ;;
# Service $2 sends one $4-byte UDP datagram to port 161 of each of $3
# addresses of 10.99.0.0/16 from one unconnected socket: prints the IP
# bytes sent.
flood)
  (in_cgroup "system.slice/$2.service" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, size = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    to = "10.99.%d.%d" % (1 + i // 250, 1 + i % 250)
    while True:
        try:
            s.sendto(b"x" * size, (to, 161))
            break
        except BlockingIOError:
            time.sleep(0.001)
print(n * (size + 28))
' "$3" "$4")
  ;;
# alice (from lan1) and bob (from lan2) each open a session on the share,
# read `small` and keep the session $2 seconds more (in the background,
# their smbclient fed by a sleep); returns once smbstatus lists both.
smb-hold)
  for who in alice:lan1 bob:lan2; do
    user=${who%:*} ns=${who#*:}
    n=${ns#lan}
    {
      echo "get small $ROOT/held-$user"
      sleep "$2"
      echo quit
    } 2>/dev/null | on "$ns" smbclient -s "$ROOT/client.conf" -U "$user%pw" "//10.77.$n.1/share" \
      >"$ROOT/hold-$user.log" 2>&1 &
  done
  for _ in $(seq 100); do
    sessions=$(smbstatus -s "$ROOT/smb.conf" -b 2>/dev/null || true)
    grep -qw alice <<<"$sessions" && grep -qw bob <<<"$sessions" && exit 0
    sleep 0.1
  done
  echo "smbstatus lists no session of alice and bob:" >&2
  echo "$sessions" >&2
  cat "$ROOT"/hold-*.log >&2
  exit 1
  ;;
# What Samba says of its sessions and shares: `smbstatus --json` as root,
# on the host's smb.conf.
smbstatus)
  smbstatus -s "$ROOT/smb.conf" --json
  ;;
# The initiator in lan4 reads the LUN for $2 seconds (iscsi-perf, one 4 KiB
# request at a time, in the background); returns once tgtd lists its
# session.
iscsi-read)
  on lan4 timeout -s INT "$2" iscsi-perf -i "$ISCSI_INITIATOR" -m 1 -b 8 \
    "iscsi://10.77.4.1/$ISCSI_TARGET/1" >"$ROOT/tgt/perf.log" 2>&1 </dev/null &
  for _ in $(seq 100); do
    tgtadm --lld iscsi --mode target --op show | grep -q "Initiator: $ISCSI_INITIATOR " && exit 0
    sleep 0.1
  done
  echo "tgtd lists no session of $ISCSI_INITIATOR:" >&2
  tgtadm --lld iscsi --mode target --op show >&2
  cat "$ROOT/tgt/perf.log" >&2
  exit 1
  ;;
# tgtd's sessions as `tgtadm --mode target --op show` reports them: one line
# per connection, "TARGET INITIATOR ADDRESS".
iscsi-sessions)
  tgtadm --lld iscsi --mode target --op show | awk '
    /^Target [0-9]+:/ { target = $3 }
    /^ *Initiator:/ { initiator = $2 }
    /^ *IP Address:/ { print target, initiator, $3 }
  '
  ;;
# What this host's resolver makes of each address: "ADDRESS GETENT DIG",
# the names `getent hosts` and `dig -x` give ("-": none).
resolve)
  shift
  for addr in "$@"; do
    by_getent=$(getent hosts "$addr" | awk '{ print $2; exit }' || true)
    by_dig=$(dig -x "$addr" +short +time=2 +tries=1 | sed -n '1s/\.$//p' || true)
    echo "$addr ${by_getent:--} ${by_dig:--}"
  done
  ;;
*)
  echo "usage: peers-host.sh host | STEP ARGS" >&2
  exit 2
  ;;
esac
