#!/usr/bin/env bash
# Load and cost measurements for the scrape path. Needs root (private
# namespaces), iproute2, util-linux; `http` also needs wrk and Debian's
# prometheus-node-exporter; `memory` needs curl.
#
#   benches/load.sh bench    criterion scrape benches in a namespace with ~50 interfaces
#   benches/load.sh http     /metrics over keep-alive HTTP (as Prometheus asks: Accept-Encoding
#                            gzip), plain by default and gzipped, vs node_exporter's netdev scrape
#   benches/load.sh memory   RSS, fds and threads across 10,000 scrapes of 10,000 interfaces
#   benches/load.sh procscan the VM (QEMU scan) and LXC resolvers' /proc scans with 2,000 processes
#   benches/load.sh midclt   what a VM and an LXC refresh cost through a fake midclt (sh, python3)
#   benches/load.sh docker   100 containers on a running dockerd: refresh time, scrape latency
#                            idle vs during refreshes, label freshness, 10,000 scrapes' fds/threads/RSS
#   benches/load.sh accounting  traffic per workload's cost: iperf3 throughput and CPU over a veth
#                            pair and loopback with and without the counting programs (ROUNDS=5 runs
#                            of SECONDS_PER_RUN=10 each, alternating, medians), their ns per run and
#                            share of a core (kernel BPF stats), the scrape at 100 and 10,000 cgroups
#   benches/load.sh churn    500 containers started and removed on a running dockerd while scraping:
#                            RSS, workload series and their owners before, during and after
#   benches/load.sh compare  OLD_BIN against this checkout's release build (or BIN): scrape p50
#                            over HTTP at 48 interfaces (a namespace) and at 10,000 (a fixture
#                            host), ROUNDS=5 alternating wrk runs of SECONDS_PER_RUN=10, medians
#   benches/load.sh peers    scrape p50 over HTTP at 48 interfaces (a namespace) and 100 workloads
#                            (services in a cgroup of its own, each sending to 11 peers), [peers]
#                            off against on (10 peer series + other each, 2,200 net_peer_* samples):
#                            two exporters side by side, ROUNDS=5 alternating wrk runs of
#                            SECONDS_PER_RUN=5, medians
#
# Every server binds 127.0.0.1 inside a private network namespace; nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# memory and procscan run $BIN if set (the image's binary: .ci/build-static
# builds it), else this checkout's release build.
bin=${BIN:-$PWD/target/release/truenas-net-exporter}

# Inside a fresh namespace: 5 bridges, 20 veth pairs (one end on a bridge), 2 taps, lo = 48.
make_topology() {
  ip link set lo up
  for b in br0 br1 br-2c852816592c br-f33136af96f9 br-0a1b2c3d4e5f; do
    ip link add "$b" type bridge && ip link set "$b" up
  done
  for i in $(seq 0 19); do
    ip link add "veth$(printf %07x $((i * 7919)))" type veth peer name "eth$i"
  done
  local n=0
  for v in /sys/class/net/veth*; do
    v=$(basename "$v")
    ip link set "$v" master "br-2c852816592c" up 2>/dev/null || ip link set "$v" up
    n=$((n + 1))
  done
  ip tuntap add dev vnet0 mode tap && ip link set vnet0 master br0
  ip tuntap add dev vnet1 mode tap && ip link set vnet1 master br1
}

# A fixture host of $2 veths on bridges of 20, at $1.
make_host() {
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
net = os.path.join(root, "sys/class/net")
os.makedirs(os.path.join(root, "proc/1/net"))
lines = ["Inter-|   Receive |  Transmit", " face |bytes packets|bytes packets"]
for i in range(n):
    name = f"veth{i:07x}"
    d = os.path.join(net, name)
    os.makedirs(os.path.join(d, "brport"))
    for f, v in (("ifindex", i + 100), ("iflink", i + 50000), ("type", 1), ("operstate", "up")):
        open(os.path.join(d, f), "w").write(f"{v}\n")
    bridge = f"br-{i // 20:012x}"
    os.symlink(f"../{bridge}", os.path.join(d, "master"))
    # The bridge must exist for its ports to name it (as it always does in sysfs).
    os.makedirs(os.path.join(net, bridge, "bridge"), exist_ok=True)
    lines.append(f"{name:>15}: {i * 1000003} {i * 17} 0 0 0 0 0 0 {i * 999983} {i * 13} 0 0 0 0 0 0")
open(os.path.join(root, "proc/1/net/dev"), "w").write("\n".join(lines) + "\n")
PY
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
threads() { awk '/^Threads/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# p50 of one wrk run against $1 for $2 seconds, in microseconds.
p50() {
  wrk -t1 -c1 -d"$2"s --latency "$1" | awk '/ 50% / {
    v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
    if (u == "ms") v *= 1000; else if (u == "s") v *= 1000000
    print v }'
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

case "$mode" in
bench)
  cargo bench --no-run --bench scrape 2>/dev/null
  exe=$(ls -t target/release/deps/scrape-* | grep -v '\.d$' | head -1)
  mkdir "$work/root" "$work/root/sys"
  export -f make_topology
  WORK=$work EXE=$exe unshare -n -p -f -m --mount-proc bash -c '
    set -e
    mount -t sysfs sysfs /sys   # this namespace'"'"'s interfaces
    make_topology
    mount -t sysfs sysfs "$WORK/root/sys"
    TNE_BENCH_ROOTFS=$WORK/root TNE_BENCH_PROCFS=/proc "$EXE" --bench netdev
  '
  ;;
http)
  cargo build --release -q
  export -f make_topology rss_kib cpu_ticks
  WORK=$work BIN=$PWD/target/release/truenas-net-exporter unshare -n -p -f -m --mount-proc bash -c '
    set -e
    mount -t sysfs sysfs /sys
    make_topology
    echo "interfaces: $(($(wc -l < /proc/1/net/dev) - 2))"
    "$BIN" --web.listen-address=127.0.0.1:19551 --docker.socket= --log.level=warn &
    ours=$!
    # The same, gzipping every scrape for a client that asks (Prometheus does).
    printf "[web]\ncompression = \"always\"\n" > "$WORK/gzip.toml"
    "$BIN" --web.listen-address=127.0.0.1:19552 --docker.socket= --log.level=warn \
      --config.file="$WORK/gzip.toml" &
    gzipped=$!
    prometheus-node-exporter --collector.disable-defaults --collector.netdev \
      --web.listen-address=127.0.0.1:19100 --log.level=warn 2>/dev/null &
    node=$!
    sleep 2
    for target in "truenas-net-exporter $ours http://127.0.0.1:19551/metrics" \
                  "truenas-net-exporter-gzip $gzipped http://127.0.0.1:19552/metrics" \
                  "node_exporter $node http://127.0.0.1:19100/metrics"; do
      set -- $target
      curl -s -H "Accept-Encoding: gzip" "$3" > "$WORK/$1.txt"
      wrk -t1 -c1 -d5s -H "Accept-Encoding: gzip" "$3" > /dev/null   # warm-up
      t0=$(cpu_ticks $2)
      wrk -t1 -c1 -d20s --latency -H "Accept-Encoding: gzip" "$3" > "$WORK/$1.wrk"
      t1=$(cpu_ticks $2)
      reqs=$(awk "/requests in/ {print \$1}" "$WORK/$1.wrk")
      echo "== $1: $(wc -c < "$WORK/$1.txt") bytes/response, RSS $(rss_kib $2) KiB"
      grep -E "Latency|50%|99%|Requests/sec|requests in" "$WORK/$1.wrk"
      echo "   server CPU per request: $(echo "scale=1; ($t1 - $t0) * 10000 / $reqs" | bc) us"
    done
    kill $ours $gzipped $node
    kill $ours $node
  '
  ;;
memory)
  [ -n "${BIN:-}" ] || cargo build --release -q
  n=${N:-10000}
  scrapes=${SCRAPES:-10000}
  make_host "$work/host" "$n"
  export -f rss_kib hwm_kib fds threads
  WORK=$work BIN=$bin N=$n SCRAPES=$scrapes unshare -n bash -c '
    set -e
    ip link set lo up
    "$BIN" --web.listen-address=127.0.0.1:19552 --docker.socket= --path.rootfs="$WORK/host" \
      --path.procfs="$WORK/host/proc" --log.level=warn &
    pid=$!
    sleep 3
    curl -s http://127.0.0.1:19552/metrics > "$WORK/first.txt"
    echo "interfaces: $N, response: $(wc -c < "$WORK/first.txt") bytes"
    echo "after 1 scrape:      RSS $(rss_kib $pid) KiB, peak $(hwm_kib $pid) KiB, fds $(fds $pid), threads $(threads $pid)"
    start=$(date +%s.%N)
    done_=1
    for batch in 1 2 3 4 5 6 7 8 9 10; do
      curl -s "http://127.0.0.1:19552/metrics?[1-$((SCRAPES / 10))]" > /dev/null
      done_=$((done_ + SCRAPES / 10))
      echo "after $done_ scrapes: RSS $(rss_kib $pid) KiB, peak $(hwm_kib $pid) KiB, fds $(fds $pid), threads $(threads $pid)"
    done
    end=$(date +%s.%N)
    echo "mean time per scrape (one keep-alive client, incl. transfer): $(echo "scale=2; ($end - $start) * 1000 / $SCRAPES" | bc) ms"
    kill $pid
  '
  ;;
procscan)
  cargo build --release -q
  n=${N:-2000}
  WORK=$work BIN=$bin N=$n unshare -n -p -f -m --mount-proc bash -c '
    set -e
    for _ in $(seq "$N"); do sleep 600 & done
    printf "[vm]\nsources = [\"qemu\"]\n" > "$WORK/c.toml"
    echo "processes: $(ls -d /proc/[0-9]* | wc -l)"
    for run in 1 2 3 4 5; do
      "$BIN" --once --docker.socket= --config.file="$WORK/c.toml" \
        | awk -v run=$run "/refresh_duration_seconds\\{resolver=\"(vm|lxc)\"/ {printf \"  run %s %s %s\\n\", run, \$1, \$2}"
    done
    kill $(jobs -p) 2>/dev/null || true
  '
  ;;
midclt)
  # The middleware's client starts a Python interpreter per call; a fake in sh
  # and one in python3 bound what the exporter adds around it.
  cargo build --release -q
  cat > "$work/midclt.sh" <<'SH'
#!/bin/sh
case "$2" in
  vm.query) echo '[{"id": 1, "name": "vm1", "status": {"state": "RUNNING", "pid": 1, "domain_state": "RUNNING"}}]' ;;
  container.query) echo '[]' ;;
  *) echo "Method does not exist" >&2; exit 1 ;;
esac
SH
  cat > "$work/midclt.py" <<'PY'
#!/usr/bin/env python3
import json, sys
if sys.argv[2] == "vm.query":
    print(json.dumps([{"id": 1, "name": "vm1", "status": {"state": "RUNNING", "pid": 1, "domain_state": "RUNNING"}}]))
elif sys.argv[2] == "container.query":
    print("[]")
else:
    print("Method does not exist", file=sys.stderr); sys.exit(1)
PY
  chmod +x "$work/midclt.sh" "$work/midclt.py"
  for fake in midclt.sh midclt.py; do
    printf '[vm]
sources = ["midclt"]
[truenas]
midclt_command = ["%s", "call"]
[incus]
enabled = false
' "$work/$fake" > "$work/c.toml"
    echo "== $fake (5 runs of --once): refresh durations, seconds"
    for run in 1 2 3 4 5; do
      ./target/release/truenas-net-exporter --once --docker.socket= --config.file="$work/c.toml" \
        | awk -v run=$run '/refresh_duration_seconds\{resolver="(vm|lxc)"/ {printf "  run %s %s %s\n", run, $1, $2}'
    done
  done
  ;;
docker)
  # Uses the host's dockerd (started by hand or by .ci/run) and the test image
  # the integration tests import (tne-busybox:test). Listens on 127.0.0.1 only.
  cargo build --release -q
  docker image inspect tne-busybox:test >/dev/null
  n=${N:-100}
  for a in 1 2 3 4 5; do docker network create "ix-load$a""_default" >/dev/null; done
  cleanup_docker() {
    docker rm -f $(docker ps -aq --filter label=tne-load=1) >/dev/null 2>&1 || true
    for a in 1 2 3 4 5; do docker network rm "ix-load$a""_default" >/dev/null 2>&1 || true; done
    rm -rf "$work"
  }
  trap cleanup_docker EXIT
  for i in $(seq 1 "$n"); do
    a=$(( (i % 5) + 1 ))
    docker run -d --label tne-load=1 --label "com.docker.compose.project=ix-load$a" \
      --name "ix-load$a-svc-$i" --network "ix-load$a""_default" tne-busybox:test sleep 36000 >/dev/null
  done
  echo "containers running: $(docker ps -q --filter label=tne-load=1 | wc -l)"
  bin=$PWD/target/release/truenas-net-exporter
  run() { # $1 = docker interval; prints pid
    printf '[docker]\ninterval = "%s"\ntimeout = "10s"\n[topology]\ninterval = "%s"\n' "$1" "$1" > "$work/c.toml"
    "$bin" --config.file="$work/c.toml" --web.listen-address=127.0.0.1:19553 --log.level=warn &
    echo $! > "$work/pid"
    sleep 3
  }
  metric() { curl -s http://127.0.0.1:19553/metrics | awk -v m="$1" '$1 == m {print $2}'; }

  run 1s
  pid=$(cat "$work/pid")
  echo "docker refresh duration, 100 containers (s), one sample a second:"
  for _ in $(seq 15); do metric 'truenas_net_exporter_resolver_refresh_duration_seconds{resolver="docker"}'; sleep 1; done \
    | sort -n | awk '{a[NR]=$1} END {printf "  min %s  median %s  max %s\n", a[1], a[int((NR+1)/2)], a[NR]}'
  echo "labelled docker veths: $(curl -s http://127.0.0.1:19553/metrics | grep -c '^net_interface_info{.*instance_type="docker",app="load')"
  kill "$pid"; wait "$pid" 2>/dev/null || true

  # Intervals below 1 s are refused since they spin a core; "every second" is the busiest.
  for mode in idle:1h every-second:1s; do
    run "${mode#*:}"
    pid=$(cat "$work/pid")
    echo "== scrapes while ${mode%%:*} (docker+topology interval ${mode#*:})"
    wrk -t1 -c1 -d15s --latency http://127.0.0.1:19553/metrics | grep -E "Latency|50%|99%|Requests/sec"
    echo "   docker refreshes done: $(metric 'truenas_net_exporter_resolver_errors_total{resolver="docker"}') errors, last took $(metric 'truenas_net_exporter_resolver_refresh_duration_seconds{resolver="docker"}') s"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done

  run 1h
  pid=$(cat "$work/pid")
  echo "== label freshness after docker run (intervals 1h: events only)"
  for k in 1 2 3; do
    docker run -d --label tne-load=1 --label com.docker.compose.project=ix-load1 --name "ix-load1-fresh-$k" \
      --network ix-load1_default tne-busybox:test sleep 36000 >/dev/null
    t0=$(date +%s%N)
    # Not `curl | grep -q`: with pipefail, grep's early exit fails the pipeline.
    until curl -s http://127.0.0.1:19553/metrics > "$work/m.txt" && grep -q "instance=\"ix-load1-fresh-$k\"" "$work/m.txt"; do
      sleep 0.02
    done
    echo "  run $k: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  done
  echo "== 10,000 scrapes with Docker enabled (events flowing as containers start)"
  tasks() { metric truenas_net_exporter_runtime_tasks; }
  echo "before: RSS $(rss_kib $pid) KiB, fds $(fds $pid), threads $(threads $pid), HTTP tasks $(tasks)"
  for batch in 1 2 3 4 5 6 7 8 9 10; do
    curl -s "http://127.0.0.1:19553/metrics?[1-1000]" > /dev/null
    docker run -d --label tne-load=1 --name "tne-churn-$batch" tne-busybox:test sleep 36000 >/dev/null
    echo "after $((batch * 1000)) scrapes: RSS $(rss_kib $pid) KiB, fds $(fds $pid), threads $(threads $pid), HTTP tasks $(tasks)"
  done
  kill "$pid"
  ;;
accounting)
  # Needs iperf3, wrk, jq, bpftool. The programs are linked at the cgroup v2
  # root: every socket on this machine is counted while they are.
  cargo build --release -q
  export -f make_topology
  WORK=$work BIN=$bin unshare -n -p -f -m --mount-proc bash -c '
    set -e
    mount -t sysfs sysfs /sys
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    mount -t tmpfs tmpfs /run
    make_topology
    ip netns add far
    ip link add tnebench0 type veth peer name tnebench1 netns far
    ip addr add 10.88.0.1/24 dev tnebench0 && ip link set tnebench0 up
    ip -n far addr add 10.88.0.2/24 dev tnebench1 && ip -n far link set tnebench1 up
    start() { # $1 = accounting on|off; the exporter on 19554
      printf "[accounting]\nenabled = %s\n[vm]\nsources = [\"qemu\"]\n" "$1" > "$WORK/c.toml"
      "$BIN" --config.file="$WORK/c.toml" --web.listen-address=127.0.0.1:19554 \
        --docker.socket= --log.level=warn & echo $! > "$WORK/pid"; sleep 1
    }
    stop() { kill "$(cat "$WORK/pid")"; wait "$(cat "$WORK/pid")" 2>/dev/null || true; }
    iperf() { # $1 = label, $2 = target; prints Gbit/s and both ends'"'"' CPU %, and appends Gbit/s to $WORK/$1-$2
      iperf3 -s -D -1 -p 5201 >/dev/null; sleep 0.3
      # Client on CPU 0, server on CPU 1: less noise from the scheduler.
      if [ "$2" = veth ]; then cmd="ip netns exec far iperf3 -c 10.88.0.1"; else cmd="iperf3 -c 127.0.0.1"; fi
      $cmd -A 0,1 -t "${SECONDS_PER_RUN:-10}" -J -p 5201 > "$WORK/run.json"
      jq -r ".end.sum_received.bits_per_second / 1e9" "$WORK/run.json" >> "$WORK/$1-$2"
      jq -r --arg l "$1" \
        "\"  \(\$l): \(.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) Gbit/s, sender CPU \(.end.cpu_utilization_percent.host_total * 10 | round / 10)%, receiver \(.end.cpu_utilization_percent.remote_total * 10 | round / 10)%\"" "$WORK/run.json"
    }
    median() { sort -g "$1" | awk "{v[NR] = \$1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf \"%.2f\", m}"; }
    rounds=${ROUNDS:-5}
    echo "== iperf3, ${SECONDS_PER_RUN:-10} s each, $rounds rounds alternating (which goes first alternates too)"
    for target in veth loopback; do
      echo "$target:"
      for round in $(seq "$rounds"); do
        if [ $((round % 2)) = 1 ]; then order="false true"; else order="true false"; fi
        for on in $order; do
          start $on
          if [ $on = true ]; then iperf with $target; else iperf without $target; fi
          stop
        done
      done
      [ "$rounds" -gt 0 ] || continue
      w=$(median "$WORK/with-$target"); wo=$(median "$WORK/without-$target")
      echo "  median: $wo Gbit/s without, $w with ($(awk "BEGIN {printf \"%+.1f\", ($w / $wo - 1) * 100}")%)"
    done
    echo "== the programs'"'"' own cost (kernel.bpf_stats_enabled), one run each"
    old=$(sysctl -n kernel.bpf_stats_enabled)
    sysctl -qw kernel.bpf_stats_enabled=1
    for target in veth loopback; do
      start true; iperf stats $target
      secs=${SECONDS_PER_RUN:-10}
      for p in tne_rx tne_tx; do
        bpftool prog show name $p -j | jq -r --arg s "$secs" "if type == \"array\" then .[] else . end | \"  $target $p: \(.run_cnt) runs, \(if .run_cnt > 0 then (.run_time_ns / .run_cnt | round) else 0 end) ns a run, \(.run_time_ns / (\$s | tonumber) / 1e7 * 100 | round / 100)% of one core\""
      done
      stop
    done
    sysctl -qw kernel.bpf_stats_enabled=$old
    echo "== scrape of 48 interfaces, with N cgroups counted (wrk, 10 s)"
    root=$(awk "\$9 == \"cgroup2\" {print \$5}" /proc/self/mountinfo | tail -1)
    for n in 100 10000; do
      parent="$root/tne-bench-$$"
      mkdir -p "$parent"
      # Each one a service of its own: n workloads.
      mkdir -p "$parent/b.slice"
      for i in $(seq "$n"); do mkdir "$parent/b.slice/c$i.service"; done
      # Alternating rounds, 5 s of wrk each; the medians of their p50s.
      scrape_rounds=$([ "$n" -le 100 ] && echo "${SCRAPE_ROUNDS:-5}" || echo 1)
      rm -f "$WORK/p50-false" "$WORK/p50-true"
      for round in $(seq "$scrape_rounds"); do
        if [ $((round % 2)) = 1 ]; then order="false true"; else order="true false"; fi
        for on in $order; do
          printf "[accounting]\nenabled = %s\ncgroup = \"%s\"\ninterval = \"1s\"\nmax_cgroups = 16384\n[vm]\nsources = [\"qemu\"]\n" "$on" "$parent" > "$WORK/c.toml"
          "$BIN" --config.file="$WORK/c.toml" --web.listen-address=127.0.0.1:19554 --docker.socket= --log.level=warn &
          pid=$!
          until curl -sf http://127.0.0.1:19554/-/healthy >/dev/null; do sleep 0.1; done
          # Each cgroup sends one datagram while the programs count.
          for i in $(seq "$n"); do
            (echo $BASHPID > "$parent/b.slice/c$i.service/cgroup.procs"; echo x > /dev/udp/127.0.0.1/9) 2>/dev/null || true
          done
          sleep 3
          series=$(curl -s http://127.0.0.1:19554/metrics | grep -c "^net_workload_tx_bytes_total" || true)
          bytes=$(curl -s http://127.0.0.1:19554/metrics | wc -c)
          printf "  %s cgroups, accounting %-5s (%s workload series, %s bytes): " "$n" "$on" "$series" "$bytes"
          wrk -t1 -c1 -d5s --latency http://127.0.0.1:19554/metrics > "$WORK/wrk.txt"
          awk "/Requests\/sec/ {r=\$2} / 50%/ {p=\$2} / 99%/ {q=\$2} END {printf \"%s req/s, p50 %s, p99 %s\\n\", r, p, q}" "$WORK/wrk.txt"
          # p50 in µs, whatever unit wrk chose.
          awk "/ 50%/ {v=\$2; u=v; sub(/[0-9.]+/, \"\", u); sub(/[a-z]+/, \"\", v); f=(u==\"ms\")?1000:(u==\"s\")?1e6:1; print v*f}" "$WORK/wrk.txt" >> "$WORK/p50-$on"
          kill $pid; wait $pid 2>/dev/null || true
        done
      done
      if [ "$scrape_rounds" -gt 1 ]; then
        wo=$(median "$WORK/p50-false"); w=$(median "$WORK/p50-true")
        echo "  median p50: $wo us without, $w with ($(awk "BEGIN {printf \"%+.1f\", ($w / $wo - 1) * 100}")%)"
      fi
      for i in $(seq "$n"); do rmdir "$parent/b.slice/c$i.service"; done
      rmdir "$parent/b.slice" "$parent"
    done
  '
  ;;
compare)
  [ -n "${OLD_BIN:-}" ] || { echo "OLD_BIN= the binary to compare with" >&2; exit 2; }
  [ -n "${BIN:-}" ] || cargo build --release -q
  rounds=${ROUNDS:-5}
  secs=${SECONDS_PER_RUN:-10}
  make_host "$work/host" 10000
  export -f make_topology p50 median
  WORK=$work OLD=$OLD_BIN NEW=$bin ROUNDS=$rounds SECS=$secs unshare -n -p -f -m --mount-proc bash -c '
    set -e
    mount -t sysfs sysfs /sys
    make_topology
    echo "interfaces in the namespace: $(($(wc -l < /proc/1/net/dev) - 2))"
    for size in 48 10000; do
      if [ $size = 48 ]; then paths=""; else paths="--path.rootfs=$WORK/host --path.procfs=$WORK/host/proc"; fi
      "$OLD" --web.listen-address=127.0.0.1:19561 --docker.socket= --log.level=warn $paths &
      old=$!
      "$NEW" --web.listen-address=127.0.0.1:19562 --docker.socket= --log.level=warn $paths &
      new=$!
      sleep 3
      for port in 19561 19562; do wrk -t1 -c1 -d2s "http://127.0.0.1:$port/metrics" > /dev/null; done
      : > "$WORK/old.$size"; : > "$WORK/new.$size"
      for r in $(seq "$ROUNDS"); do
        p50 http://127.0.0.1:19561/metrics "$SECS" >> "$WORK/old.$size"
        p50 http://127.0.0.1:19562/metrics "$SECS" >> "$WORK/new.$size"
      done
      echo "== $size interfaces, p50 per round (us): old $(tr "\n" " " < "$WORK/old.$size")| new $(tr "\n" " " < "$WORK/new.$size")"
      echo "   medians: old $(median < "$WORK/old.$size") us, new $(median < "$WORK/new.$size") us"
      kill $old $new
      wait $old $new 2>/dev/null || true
    done
  '
  echo "release binaries: old $(stat -c %s "$OLD_BIN") bytes, new $(stat -c %s "$bin") bytes"
  ;;
peers)
  # Needs wrk, curl. The counting programs are linked to a cgroup of this
  # mode's own: only its workloads are counted.
  bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/truenas-net-exporter}
  [ -n "${BIN:-}" ] || cargo build --release -q
  export -f make_topology p50 median
  WORK=$work BIN=$bin ROUNDS=${ROUNDS:-5} SECS=${SECONDS_PER_RUN:-5} unshare -n -p -f -m --mount-proc bash -c '
    set -euo pipefail
    mount -t sysfs sysfs /sys
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    make_topology
    ip route add local 10.64.0.0/14 dev lo
    parent=/sys/fs/cgroup/tne-peers-$$
    pids=
    # This namespace'"'"'s processes end with it; the cgroups are the host'"'"'s.
    cleanup() {
      for p in $pids; do kill $p 2>/dev/null || true; done
      wait $pids 2>/dev/null || true
      for i in $(seq 100); do rmdir "$parent/system.slice/w$i.service" 2>/dev/null || true; done
      rmdir "$parent/system.slice" "$parent" 2>/dev/null || true
    }
    trap cleanup EXIT
    for i in $(seq 100); do mkdir -p "$parent/system.slice/w$i.service"; done
    echo "interfaces in the namespace: $(($(wc -l < /proc/1/net/dev) - 2))"
    for on in false true; do
      port=$([ $on = true ] && echo 19564 || echo 19563)
      printf "[accounting]\ncgroup = \"%s\"\ninterval = \"1s\"\n[peers]\nenabled = %s\ninterval = \"1s\"\n[vm]\nsources = [\"qemu\"]\n[lxc]\nenabled = false\n[incus]\nenabled = false\n" \
        "$parent" $on > "$WORK/$on.toml"
      "$BIN" --config.file="$WORK/$on.toml" --web.listen-address=127.0.0.1:$port --docker.socket= --log.level=warn &
      pids="$pids $!"
    done
    for port in 19563 19564; do until curl -sf http://127.0.0.1:$port/-/healthy >/dev/null; do sleep 0.1; done; done
    sleep 1
    # Workload i sends j + 1 datagrams to peer j (0..10): 10 shown, 1 in other.
    for i in $(seq 100); do
      (echo $BASHPID > "$parent/system.slice/w$i.service/cgroup.procs"
       for j in $(seq 0 10); do for _ in $(seq 0 $j); do echo x > /dev/udp/10.64.$i.$j/9999; done; done) 2>/dev/null || true
    done
    sleep 4
    for port in 19563 19564; do
      curl -s http://127.0.0.1:$port/metrics > "$WORK/$port.txt"
      echo "== :$port ($([ $port = 19564 ] && echo peers on || echo peers off)): $(wc -c < "$WORK/$port.txt") bytes, $(grep -c "^net_workload_tx_bytes_total" "$WORK/$port.txt" || true) workload series (tx bytes), $(grep -c "^net_peer_" "$WORK/$port.txt" || true) net_peer_* samples"
      wrk -t1 -c1 -d2s http://127.0.0.1:$port/metrics > /dev/null
    done
    : > "$WORK/off"; : > "$WORK/on"
    for r in $(seq "$ROUNDS"); do
      if [ $((r % 2)) = 1 ]; then order="off on"; else order="on off"; fi
      for m in $order; do
        port=$([ $m = on ] && echo 19564 || echo 19563)
        p50 http://127.0.0.1:$port/metrics "$SECS" >> "$WORK/$m"
      done
      echo "  round $r (load $(cut -d" " -f1 /proc/loadavg)): off $(tail -1 "$WORK/off") us, on $(tail -1 "$WORK/on") us"
    done
    echo "   medians of $ROUNDS: off $(median < "$WORK/off") us, on $(median < "$WORK/on") us"
  '
  ;;
churn)
  # Uses the host's dockerd (DOCKER_HOST or the default socket).
  cargo build --release -q
  n=${N:-500}
  mkdir -p "$work/image/bin"
  cp /bin/busybox "$work/image/bin/busybox"
  for a in sh nc sleep; do ln -sf busybox "$work/image/bin/$a"; done
  tar -C "$work/image" -c . | docker import - tne-churn:load >/dev/null
  cleanup_churn() {
    docker rm -f $(docker ps -aq --filter label=tne-churn=1) >/dev/null 2>&1 || true
    kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true
    rm -rf "$work"
  }
  trap cleanup_churn EXIT
  printf '[docker]\ninterval = "5s"\n[accounting]\ninterval = "5s"\n' > "$work/c.toml"
  socket=${DOCKER_HOST:-unix:///var/run/docker.sock}
  # A TCP sink each container sends a line to (busybox's nc has no UDP).
  python3 -c 'import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 19556)); s.listen(64)
while True:
    c, _ = s.accept(); c.recv(4096); c.close()' &
  sink=$!
  "$bin" --config.file="$work/c.toml" --web.listen-address=127.0.0.1:19555 --log.level=warn \
    --docker.socket="${socket#unix://}" &
  pid=$!; echo $pid > "$work/pid"; sleep 2
  (while kill -0 $pid 2>/dev/null; do
     { curl -s http://127.0.0.1:19555/metrics | grep '^net_workload_tx_bytes_total{instance_type="docker"' \
       | sed -n 's/.*instance="\([^"]*\)".*/\1/p' >> "$work/seen"; } || true
     sleep 0.2
   done) &
  scraper=$!
  workloads() { curl -s http://127.0.0.1:19555/metrics | grep -c '^net_workload_tx_bytes_total' || true; }
  echo "before: RSS $(rss_kib $pid) KiB, workload series $(workloads)"
  for batch in $(seq 0 50 $((n - 1))); do
    for i in $(seq "$batch" $((batch + 49))); do
      [ "$i" -lt "$n" ] || break
      docker run -d --label tne-churn=1 --name "tne-churn-$i" --network host tne-churn:load \
        sh -c "echo churn-$i | nc 127.0.0.1 19556; sleep 3600" >/dev/null
    done
    sleep 6
    echo "after starting $((batch + 50)): RSS $(rss_kib $pid) KiB, workload series $(workloads)"
    docker rm -f $(docker ps -aq --filter label=tne-churn=1) >/dev/null
  done
  sleep 12
  echo "after removing all: RSS $(rss_kib $pid) KiB (peak $(hwm_kib $pid) KiB), workload series $(workloads)"
  kill $scraper $sink 2>/dev/null || true
  sort -u "$work/seen" > "$work/names"
  grep -v '^tne-churn-[0-9]*$' "$work/names" | head -5 | sed 's/^/  not a churn name: /' || true
  echo "docker workloads ever seen: $(wc -l < "$work/names"); not a churn container's name: $(grep -cv '^tne-churn-[0-9]*$' "$work/names" || true)"
  ;;
*)
  echo "usage: $0 bench|http|memory|procscan|midclt|docker|accounting|compare|peers|churn" >&2
  exit 2
  ;;
esac
