#!/usr/bin/env bash
# DNS side by side (issue 21): shoal's cluster DNS and dnsmasq serving the
# same N A records, each pinned to core 0, dnsperf pinned to core 1,
# interleaved runs; prints dnsperf's QPS and latency per run. Installs
# dnsperf and dnsmasq (Debian) if missing. Root not needed (port 5300).
#
#   ./scripts/bench-dns.sh [N=10000] [RUNS=3] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}; runs=${2:-3}; secs=${3:-10}
need=()
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo bench -q -p shoal-proxy --bench dns_server --no-run 2>/dev/null
bin=$(ls -t target/release/deps/dns_server-* | grep -v '\.d$' | head -1)
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
# The same names for both: a hosts file for dnsmasq, a query file for dnsperf.
python3 - "$n" "$tmp" <<'PY'
import sys, ipaddress
n, d = int(sys.argv[1]), sys.argv[2]
base = int(ipaddress.IPv4Address("10.96.0.0"))
with open(f"{d}/hosts", "w") as h, open(f"{d}/queries", "w") as q:
    for i in range(n):
        name = f"svc-{i}.default.svc.cluster.local"
        h.write(f"{ipaddress.IPv4Address(base + i)} {name}\n")
        q.write(f"{name} A\n")
PY
wait_port() { for _ in $(seq 1 100); do dnsperf -s 127.0.0.1 -p 5300 -d "$tmp/queries" -n 1 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
# Throughput: as fast as dnsperf goes. Latency: at 20,000 queries/s, each
# query's time from dnsperf -v, p50 and p99.
perf() {
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5300 -d "$tmp/queries" -l "$secs" -c 8 -Q 200000 2>&1 | grep -E "Queries per second|Queries lost"
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5300 -d "$tmp/queries" -l 5 -c 8 -Q 20000 -v 2>/dev/null \
    | awk '/^> /{print $NF}' | sort -g | awk '{a[NR]=$1} END {printf "  latency at 20k qps: p50 %.0f us, p99 %.0f us (%d queries)\n", a[int(NR*0.5)]*1e6, a[int(NR*0.99)]*1e6, NR}'
}
for r in $(seq 1 "$runs"); do
  taskset -c 0 "$bin" 127.0.0.1:5300 "$n" > "$tmp/shoal.out" & pid=$!
  wait_port; echo "== run $r: shoal"; perf; kill $pid; wait $pid 2>/dev/null || true
  taskset -c 0 dnsmasq --no-daemon --port=5300 --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --addn-hosts="$tmp/hosts" --cache-size=10000 --log-facility=/dev/null 2>/dev/null & pid=$!
  wait_port; echo "== run $r: dnsmasq"; perf; kill $pid; wait $pid 2>/dev/null || true
done
