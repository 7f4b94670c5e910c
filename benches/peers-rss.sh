#!/usr/bin/env bash
# [peers] under many distinct peers: the release exporter's RSS, its
# net_peer_* series, the map's losses and the scrape's size, before and
# after a process sends one UDP datagram to each of N=100000 distinct
# addresses.
#
# All of it in a private network namespace, where 10.64.0.0/14 (262,144
# addresses, private: none is folded) is a local route on lo, so each
# datagram is delivered back to the sender's own socket (bound to
# 0.0.0.0:PORT): one egress and one ingress run per address, both keyed
# to the same peer. The programs are linked to a cgroup of this script's
# own; the sender runs in a service below it (system.slice/bench.service:
# one workload, as a host service's traffic would be).
#
#   benches/peers-rss.sh              (root; python3, curl, bpftool, jq)
#   N=100000 MAX_PEERS=131072 INTERVAL=2s PORT=9999 BIN=path/to/exporter
#   IDLE=20s                          [peers] idle (default 5m); then also waits
#                                     for the keys to idle out and reports again
#
# VmRSS is the exporter's own memory; the kernel's map is not in it (its
# bytes_memlock is printed beside).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TNE_PEERS_RSS_NETNS:-}" ]; then
  [ -n "${BIN:-}" ] || cargo build --release -q
  TNE_PEERS_RSS_NETNS=1 exec unshare -n "$0" "$@"
fi
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/truenas-net-exporter}
n=${N:-100000}
max_peers=${MAX_PEERS:-131072}
interval=${INTERVAL:-2s}
port=${PORT:-9999}
[ "$n" -le 262144 ] || { echo "N: at most 262144 (a /14)" >&2; exit 2; }
for tool in python3 curl bpftool jq; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

v2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
[ -n "$v2" ] || { echo "no cgroup v2 hierarchy mounted" >&2; exit 2; }
cg=$v2/tne-peersrss-$$
app=$cg/system.slice/bench.service
work=$(mktemp -d)
exporter=
cleanup() {
  set +e
  [ -z "$exporter" ] || { kill "$exporter"; wait "$exporter"; } 2>/dev/null
  for d in "$app" "${app%/*}" "$cg"; do
    [ -d "$d" ] || continue
    for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    rmdir "$app" "${app%/*}" "$cg" 2>/dev/null && break
    sleep 0.2
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip link set lo up
ip route add local 10.64.0.0/14 dev lo
mkdir -p "$app"
url=http://127.0.0.1:19571/metrics

cat > "$work/c.toml" <<EOF
[accounting]
enabled = true
cgroup = "$cg"
interval = "$interval"
[peers]
enabled = true
max_peers = $max_peers
interval = "$interval"
idle = "${IDLE:-5m}"
min_lifetime = "${IDLE:-1m}"
[vm]
sources = ["qemu"]
[lxc]
enabled = false
[incus]
enabled = false
EOF
"$bin" --config.file="$work/c.toml" --web.listen-address=127.0.0.1:19571 \
  --docker.socket= --log.level=warn &
exporter=$!
until curl -sf http://127.0.0.1:19571/-/healthy >/dev/null; do sleep 0.1; done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$exporter/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$exporter/status"; }
metric() { awk -v m="$1" '$1 == m {print $2}' "$work/m.txt"; }
scrape() { curl -s "$url" > "$work/m.txt"; }
peer_series() { grep -c '^net_peer_' "$work/m.txt" || true; }
# The peer map of the program linked to this cgroup.
map_memlock() {
  local prog map
  prog=$(bpftool cgroup show "$cg" -j | jq -r '.[] | select(.name == "tne_peer_rx") | .id')
  for map in $(bpftool prog show id "$prog" -j | jq -r '.map_ids[]'); do
    bpftool map show id "$map" -j | jq -r 'select(.name == "tne_peers") | .bytes_memlock'
  done
}
report() { # $1 = when
  scrape
  printf "%-22s VmRSS %6s KiB (peak %6s), net_peer_* series %5s, lost packets %s, scrape %7s bytes, map memlock %s bytes, peers tick %ss\n" \
    "$1:" "$(rss)" "$(hwm)" "$(peer_series)" \
    "$(metric truenas_net_exporter_peers_lost_packets_total)" "$(wc -c < "$work/m.txt")" "$(map_memlock)" \
    "$(metric 'truenas_net_exporter_resolver_refresh_duration_seconds{resolver="peers"}')"
}

echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "uptime: $(uptime)"
echo "== $n distinct peers from one workload; max_peers $max_peers, interval $interval"
sleep 3
report "before"

start=$(date +%s.%N)
sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$app" _ python3 - "$n" "$port" <<'PY'
import ipaddress, socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("0.0.0.0", port))
s.setblocking(False)
base = int(ipaddress.IPv4Address("10.64.0.0"))
received = 0
def drain():
    global received
    try:
        while True:
            s.recv(64)
            received += 1
    except BlockingIOError:
        pass
for i in range(n):
    s.sendto(b"x", (str(ipaddress.IPv4Address(base + i)), port))
    if i % 256 == 255:
        drain()
drain()
print(f"sent {n} datagrams, {received} came back", file=sys.stderr)
PY
echo "sending took $(echo "$(date +%s.%N) - $start" | bc) s"
scrape
report "right after"
# Ticks to read the whole map (and a scrape that sees new keys wakes one).
for t in 1 2 3 4 5; do
  sleep "${interval%s}"
  report "after $t more tick(s)"
done
if [ -n "${IDLE:-}" ]; then
  sleep "${IDLE%s}"
  for t in 1 2; do
    sleep "${interval%s}"
    report "idle + $t tick(s)"
  done
fi
echo "== the workload's series (top 10 + other per family)"
grep '^net_peer_tx_bytes_total' "$work/m.txt" | head -12 | sed 's/^/  /'
echo "net_workload_tx_packets_total: $(grep '^net_workload_tx_packets_total' "$work/m.txt" | awk '{s += $2} END {print s}')"
echo "uptime: $(uptime)"
