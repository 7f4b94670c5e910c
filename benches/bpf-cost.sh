#!/usr/bin/env bash
# The BPF programs' own cost per packet, with and without [peers]: the
# kernel's run_time_ns / run_cnt (kernel.bpf_stats_enabled=1) of the
# counter (tne_rx/tne_tx) alone, and with [peers] of the programs that
# count per cgroup and per peer in one pass (tne_peer_rx/tne_peer_tx, in
# the counter's links: counter/on is then 0, and the net ratio subtracts
# one floor). A binary of the older design (counter plus peer programs,
# both linked) is measured the same way.
#
# The release exporter links its programs to a cgroup of this script's own
# (not the root: nothing else on the machine is counted), in a private
# network namespace; iperf3 (client and server, both in a child cgroup, as
# a service's would be) drives the same traffic for each:
#   tcp        TCP over loopback (GSO: a run is a super-packet of up to 64 KiB)
#   udp        UDP over loopback, 64-byte datagrams, unlimited rate (connected sockets)
#   udp-unconn UDP from an unconnected socket to an unconnected one (python3): the
#              peer program reads the addresses from the packet (from_packet)
# ROUNDS=5 rounds (off and on alternate; which goes first alternates too) of
# SECONDS_PER_RUN=5 per kind; per round the ns a run, then the medians.
# The goal: with peers, at most 1.5 x the counter's ns a packet.
#
#   benches/bpf-cost.sh            (root; iperf3, bpftool, jq, python3, curl)
#   BIN=path/to/exporter           a binary instead of this checkout's release build
#   KINDS="tcp udp"                which traffic kinds
#   PORT=5201                      the server's port (445: a listed one, side="server")
#   VARIANTS=1                     also where the peer program's time goes: with the
#                                  counter alone (peers off), peers.bpf.c compiled
#                                  here (-g, loaded by bpftool/libbpf, its maps libbpf's:
#                                  no listed ports) as is, without its atomic adds
#                                  (plain +=: what the lock prefix costs), and without
#                                  the hash map (counting into the stats entry), in
#                                  turn beside it; ROUNDS rounds, interleaved
#   OUT=file                       also keep the per-round table (TSV)
#   FLOOR=0                        no floor program (below; it needs clang)
#
# The floor: a program that only returns 1 (tne_floor_rx/tx, compiled here
# with clang), linked beside the exporter's in both modes. Its ns a run is
# what the stats themselves (two sched_clock reads) and a call cost; the
# table also gives each mode's cost less that floor per program, the part
# that is there with the stats off.
#
# Needs root. The exporter's run_cnt counts a hook's runs: on loopback each
# packet runs twice (the sender's egress, the receiver's ingress), and the
# ns a run is what one direction costs. The stats' own two clock reads are
# inside run_time_ns (a few ns a run, alike for every program).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TNE_BPF_COST_NETNS:-}" ]; then
  [ -n "${BIN:-}" ] || cargo build --release -q
  # -m: a bpffs of its own, to pin the floor program while it is linked.
  TNE_BPF_COST_NETNS=1 exec unshare -n -m "$0" "$@"
fi
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/truenas-net-exporter}
rounds=${ROUNDS:-5}
secs=${SECONDS_PER_RUN:-5}
kinds=${KINDS:-tcp udp udp-unconn}
port=${PORT:-5201}
floor=${FLOOR:-1}
[ "$floor" = 0 ] || command -v clang >/dev/null || { echo "no clang: FLOOR=0" >&2; floor=0; }
for tool in iperf3 bpftool jq python3 curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

v2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
[ -n "$v2" ] || { echo "no cgroup v2 hierarchy mounted" >&2; exit 2; }
cg=$v2/tne-bpfcost-$$
app=$cg/app.service
home=$v2$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
work=$(mktemp -d)
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
exporter=
cleanup() {
  set +e
  [ -z "$exporter" ] || { kill "$exporter"; wait "$exporter"; } 2>/dev/null
  # Whatever is left in the cgroups (a server that did not exit) goes.
  for d in "$app" "$cg"; do
    [ -d "$d" ] || continue
    for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    rmdir "$app" "$cg" 2>/dev/null && break
    sleep 0.2
  done
  sysctl -qw kernel.bpf_stats_enabled="$old_stats"
  umount "$work/bpffs" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip link set lo up
mkdir -p "$app"
sysctl -qw kernel.bpf_stats_enabled=1

if [ "$floor" != 0 ]; then
  cat > "$work/floor.bpf.c" <<'C'
#include <linux/bpf.h>
#define SEC(name) __attribute__((section(name), used))
SEC("cgroup_skb/ingress") int tne_floor_rx(struct __sk_buff *skb) { return 1; }
SEC("cgroup_skb/egress") int tne_floor_tx(struct __sk_buff *skb) { return 1; }
char _license[] SEC("license") = "GPL";
C
  clang -O2 -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c "$work/floor.bpf.c" -o "$work/floor.bpf.o"
  mkdir "$work/bpffs"
  mount -t bpf bpf "$work/bpffs"
  bpftool prog loadall "$work/floor.bpf.o" "$work/bpffs/floor" type cgroup/skb
  bpftool cgroup attach "$cg" ingress pinned "$work/bpffs/floor/tne_floor_rx" multi
  bpftool cgroup attach "$cg" egress pinned "$work/bpffs/floor/tne_floor_tx" multi
fi

# In the app cgroup: the command, exec'd.
in_app() { sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$app" _ "$@"; }

start() { # $1 = peers true|false
  cat > "$work/c.toml" <<EOF
[accounting]
enabled = true
cgroup = "$cg"
[peers]
enabled = $1
[vm]
sources = ["qemu"]
[lxc]
enabled = false
[incus]
enabled = false
EOF
  "$bin" --config.file="$work/c.toml" --web.listen-address=127.0.0.1:19570 \
    --docker.socket= --log.level=warn &
  exporter=$!
  # With peers the one program pair counts both (tne_peer_rx/tx), in
  # the counter's links.
  local want=2
  [ "$floor" = 0 ] || want=$((want + 2))
  for _ in $(seq 100); do
    local names
    names=$(bpftool cgroup show "$cg" -j 2>/dev/null | jq -r '.[].name' | sort | tr '\n' ' ')
    if [ "$(echo "$names" | wc -w)" = "$want" ]; then
      if [ "$1" = false ] && [[ "$names" == *"tne_rx"* ]]; then return 0; fi
      if [ "$1" = true ] && [[ "$names" == *"tne_peer_rx"* ]]; then return 0; fi
    fi
    sleep 0.1
  done
  echo "the exporter linked no $want programs to $cg" >&2
  bpftool cgroup show "$cg" >&2 || true
  exit 1
}
stop() { kill "$exporter"; wait "$exporter" 2>/dev/null || true; exporter=; }

# name run_time_ns run_cnt, one line per program linked to the cgroup.
snapshot() {
  for id in $(bpftool cgroup show "$cg" -j | jq -r '.[].id'); do
    bpftool prog show id "$id" -j | jq -r '"\(.name) \(.run_time_ns // 0) \(.run_cnt // 0)"'
  done | sort
}

traffic() { # $1 = kind
  case "$1" in
  tcp | udp)
    in_app iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    local server=$!
    sleep 0.3
    local opts=""
    [ "$1" = tcp ] || opts="-u -b 0 -l 64"
    # shellcheck disable=SC2086
    in_app iperf3 -c 127.0.0.1 -p "$port" -t "$secs" -A 0,1 $opts >/dev/null
    wait "$server" 2>/dev/null || true
    ;;
  udp-unconn)
    in_app python3 - "$port" "$secs" <<'PY'
import os, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", port))
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 36  # 64-byte IP packets
end = time.monotonic() + secs
while time.monotonic() < end:
    for _ in range(256):
        tx.sendto(payload, ("127.0.0.1", port))
    try:
        while True:
            rx.recv(64)
    except BlockingIOError:
        pass
PY
    ;;
  esac
}

# Per round and kind: mode kind round counter_runs counter_ns peer_ns total_ns load
: > "$work/rows"
measure() { # $1 = mode (off|on), $2 = kind, $3 = round
  snapshot > "$work/before"
  traffic "$2"
  snapshot > "$work/after"
  join "$work/before" "$work/after" | awk -v mode="$1" -v kind="$2" -v round="$3" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
    { t = $4 - $2; n = $5 - $3 }
    $1 ~ /^tne_(rx|tx)$/ { ct += t; cn += n }
    $1 ~ /^tne_peer_(rx|tx)$/ { pt += t; pn += n }
    $1 ~ /^tne_floor_(rx|tx)$/ { ft += t; fn += n }
    END {
      # One program pair counting both: its runs are the runs.
      if (cn == 0 && pn > 0) { cn = pn }
      if (cn == 0) { print "no counter runs: " kind > "/dev/stderr"; exit 1 }
      printf "%s\t%s\t%s\t%d\t%.1f\t%s\t%.1f\t%s\t%s\n", mode, kind, round, cn, ct / cn,
        (pn ? sprintf("%.1f", pt / pn) : "-"), (ct + pt) / cn,
        (fn ? sprintf("%.1f", ft / fn) : "-"), load
    }' >> "$work/rows"
  tail -1 "$work/rows" | awk -F'\t' '{printf "  round %s %-3s %-10s %9d runs: counter %6.1f ns/run, peer %6s, counter+peer %6.1f, floor %5s (load %s)\n", $3, $1, $2, $4, $5, $6, $7, $8, $9}'
}

echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "uptime at start: $(uptime)"
echo "== $rounds rounds, ${secs}s per kind ($kinds), port $port, programs linked to $cg"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="false true"; else order="true false"; fi
  for on in $order; do
    mode=off
    [ "$on" = false ] || mode=on
    start "$on"
    for kind in $kinds; do measure "$mode" "$kind" "$round"; done
    stop
  done
done

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v m="$1" -v k="$2" -v c="$3" '$1 == m && $2 == k && $c != "-" {print $c}' "$work/rows" | median; }
echo "== medians of $rounds rounds, ns per run (one hook, one packet)"
printf "  %-10s %12s %12s %10s %13s %7s %7s %16s %7s\n" kind "counter/off" "counter/on" "peer/on" "counter+peer" ratio floor "less floor: c,c+p" ratio
for kind in $kinds; do
  off=$(col off "$kind" 5); con=$(col on "$kind" 5); peer=$(col on "$kind" 6); both=$(col on "$kind" 7)
  fl=$(awk -F'\t' -v k="$kind" '$2 == k && $8 != "-" {print $8}' "$work/rows" | median)
  ratio=$(awk -v a="$both" -v b="$off" 'BEGIN {printf "%.2fx", a / b}')
  if [ "$fl" = - ]; then net="-"; nratio="-"; else
    # Less one floor per program: the counter's, and the peer program's.
    # A mode with one program (the merged one: no counter/on) less one floor.
    net=$(awk -v o="$off" -v c="$con" -v p="$peer" -v f="$fl" 'BEGIN {cf = (c == "-" || c == 0) ? 0 : c - f; printf "%.1f,%.1f", o - f, cf + p - f}')
    nratio=$(awk -v o="$off" -v c="$con" -v p="$peer" -v f="$fl" 'BEGIN {cf = (c == "-" || c == 0) ? 0 : c - f; printf "%.2fx", (cf + p - f) / (o - f)}')
  fi
  printf "  %-10s %12s %12s %10s %13s %7s %7s %16s %7s\n" "$kind" "$off" "$con" "$peer" "$both" "$ratio" "$fl" "$net" "$nratio"
done
echo "  ratio: median counter+peer (on) / median counter alone (off); goal <= 1.50x"
echo "  less floor: each program's ns less the floor's (the stats' own clock reads and the call)"
echo "uptime at end: $(uptime)"
[ -z "${OUT:-}" ] || { printf "mode\tkind\tround\tcounter_runs\tcounter_ns\tpeer_ns\ttotal_ns\tfloor_ns\tload1\n"; cat "$work/rows"; } > "$OUT"

if [ -n "${VARIANTS:-}" ]; then
  src=src/workloads/accounting/peers.bpf.c
  cp "$src" "$work/v-as-is.bpf.c"
  sed 's/__sync_fetch_and_add(&\([^,]*\), \([a-z0-9]*\));/\1 += \2;/' "$src" > "$work/v-no-atomics.bpf.c"
  sed 's/__u64 \*c = bpf_map_lookup_elem(&tne_peers, &key);/__u64 *c = stats;/' "$src" > "$work/v-no-hash.bpf.c"
  ! grep -q __sync_fetch_and_add "$work/v-no-atomics.bpf.c" || { echo "no-atomics: the sed missed" >&2; exit 1; }
  ! grep -q '__u64 \*c = bpf_map_lookup_elem' "$work/v-no-hash.bpf.c" || { echo "no-hash: the sed missed" >&2; exit 1; }
  [ -d "$work/bpffs" ] || { mkdir "$work/bpffs"; mount -t bpf bpf "$work/bpffs"; }
  variants="as-is no-atomics no-hash"
  for v in $variants; do
    clang -O2 -g -target bpf -mcpu=v3 -I"/usr/include/$(uname -m)-linux-gnu" -c "$work/v-$v.bpf.c" -o "$work/v-$v.bpf.o"
  done
  echo "== variants of the peer program beside the counter alone, $rounds rounds"
  : > "$work/rows"
  start false
  for round in $(seq "$rounds"); do
    for v in $variants; do
      bpftool prog loadall "$work/v-$v.bpf.o" "$work/bpffs/$v" type cgroup/skb
      bpftool cgroup attach "$cg" ingress pinned "$work/bpffs/$v/tne_peer_rx" multi
      bpftool cgroup attach "$cg" egress pinned "$work/bpffs/$v/tne_peer_tx" multi
      for kind in $kinds; do measure "$v" "$kind" "$round"; done
      bpftool cgroup detach "$cg" ingress pinned "$work/bpffs/$v/tne_peer_rx"
      bpftool cgroup detach "$cg" egress pinned "$work/bpffs/$v/tne_peer_tx"
      rm -rf "$work/bpffs/$v"
    done
  done
  stop
  echo "== variants: median ns per run of the peer program, and less the floor"
  printf "  %-10s" kind; for v in $variants; do printf " %18s" "$v"; done; echo
  for kind in $kinds; do
    printf "  %-10s" "$kind"
    for v in $variants; do
      p=$(col "$v" "$kind" 6)
      fl=$(awk -F'\t' -v k="$kind" '$2 == k && $8 != "-" {print $8}' "$work/rows" | median)
      printf " %18s" "$p ($(awk -v p="$p" -v f="$fl" 'BEGIN {printf "%.1f", p - f}'))"
    done
    echo
  done
fi
