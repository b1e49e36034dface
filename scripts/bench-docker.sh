#!/usr/bin/env bash
# The docker runtime's benchmarks (issue 22, docs/BENCHMARKS.md), side by
# side on this machine's Docker Engine, from a release build, as root:
#
#  1. Start-up against Docker Swarm: the time until 100 replicas of the same
#     local image run. shoal: `kubectl create deployment --replicas=100` on a
#     one-node `shoal dev --runtime docker`, until 100 are Ready, with the
#     runtime's per-phase sums (sandbox container, CNI, create, start) from
#     /metrics. Swarm: `docker service create --replicas 100 --endpoint-mode
#     dnsrr --no-resolve-image` on a single-node swarm (address pool clear of
#     10.88/16, no published ports: this kernel has no IPVS), until 100 tasks
#     run. TRIALS rounds, alternating; medians.
#  2. Pod start-up: 100 pods at 5/s, p50 and p99, next to a bare `docker run`
#     of the same image in the same run (scripts/bench-pod-startup.py).
#  3. Agent memory: the agent's RSS idle, with 100 docker pods, and with 100
#     process pods.
#
#   sudo ./scripts/bench-docker.sh [TRIALS=3] [REPLICAS=100]
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-3}; replicas=${2:-100}
[ "$(id -u)" -eq 0 ] || { echo "bench-docker: needs root (pod sandboxes)"; exit 1; }
./scripts/dev.sh --install-only
./scripts/images.sh >/dev/null
cargo build -q --release --bin shoal
K=$(./scripts/kubectl.sh)
image=shoal-test/web:1
tmp=$(mktemp -d)
cleanup() {
  docker service rm shoalbench >/dev/null 2>&1 || true
  docker swarm leave --force >/dev/null 2>&1 || true
  kill -INT "${dev:-0}" 2>/dev/null || true; wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

target/release/shoal dev --runtime docker --nodes 1 --data-dir "$tmp/dev" >"$tmp/dev.out" 2>&1 &
dev=$!
for _ in $(seq 1 300); do grep -q '^READY$' "$tmp/dev.out" 2>/dev/null && break; sleep 0.2; done
grep -q '^READY$' "$tmp/dev.out" || { cat "$tmp/dev.out"; exit 1; }
export KUBECONFIG="$tmp/dev/kubeconfig"
metrics() { "$K" get --raw /metrics | grep '^shoal_kubelet_runtime_operations_duration_seconds_\(sum\|count\)' || true; }
phase_sums() {
  # operation_type → total seconds, from two /metrics snapshots.
  # (The first snapshot may be empty: no operation yet.)
  awk 'FILENAME == ARGV[1] { if ($1 ~ /_sum/) before[$1] = $2; next }
       $1 ~ /_sum/ { match($1, /operation_type="[^"]*"/); op = substr($1, RSTART + 16, RLENGTH - 17); printf "%s %.2fs  ", op, $2 - before[$1] }' "$1" "$2"
}
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
agent=$(cat "$tmp/dev/node-1.pid")
sleep 5
idle_rss=$(rss "$agent")

swarm=1
if ! docker swarm init --advertise-addr 127.0.0.1 --default-addr-pool 10.201.0.0/16 >"$tmp/swarm.out" 2>&1; then
  swarm=0
  echo "docker swarm init failed here ($(tail -1 "$tmp/swarm.out")): comparing with $replicas parallel docker runs instead"
fi

for t in $(seq 1 "$trials"); do
  # shoal
  metrics >"$tmp/m0"
  t0=$(now)
  "$K" create deployment web --image="$image" --replicas="$replicas" >/dev/null
  until [ "$("$K" get deployment web -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = "$replicas" ]; do sleep 0.1; done
  t1=$(now)
  metrics >"$tmp/m1"
  [ "$t" = 1 ] && full_rss=$(rss "$agent")
  echo "trial $t shoal: $(secs "$t0" "$t1") s  (phases, summed over the pods: $(phase_sums "$tmp/m0" "$tmp/m1"))"
  echo "$(secs "$t0" "$t1")" >>"$tmp/shoal.times"
  "$K" delete deployment web --wait=false >/dev/null
  until [ "$(docker ps -q --filter label=io.kubernetes.pod.namespace=default | wc -l)" = 0 ]; do sleep 0.5; done
  until [ -z "$("$K" get pods -o name 2>/dev/null)" ]; do sleep 0.5; done
  # Swarm (or parallel docker runs)
  t0=$(now)
  if [ "$swarm" = 1 ]; then
    docker service create --detach --quiet --name shoalbench --replicas "$replicas" \
      --endpoint-mode dnsrr --no-resolve-image "$image" >/dev/null
    until [ "$(docker service ps shoalbench --filter desired-state=running --format '{{.CurrentState}}' | grep -c '^Running')" = "$replicas" ]; do sleep 0.1; done
  else
    for i in $(seq 1 "$replicas"); do docker run -d --network none --label shoal.bench=swarm "$image" >/dev/null & done
    wait
  fi
  t1=$(now)
  echo "trial $t $( [ "$swarm" = 1 ] && echo swarm || echo 'docker run x'$replicas): $(secs "$t0" "$t1") s"
  echo "$(secs "$t0" "$t1")" >>"$tmp/peer.times"
  if [ "$swarm" = 1 ]; then
    docker service rm shoalbench >/dev/null
    until [ "$(docker ps -q --filter label=com.docker.swarm.service.name=shoalbench | wc -l)" = 0 ]; do sleep 0.5; done
  else
    docker rm -f $(docker ps -aq --filter label=shoal.bench=swarm) >/dev/null
  fi
done
s=$(median <"$tmp/shoal.times"); p=$(median <"$tmp/peer.times")
echo "start-up of $replicas replicas, median of $trials: shoal $s s, $( [ "$swarm" = 1 ] && echo 'Docker Swarm' || echo 'parallel docker run') $p s, ratio $(awk -v a="$s" -v b="$p" 'BEGIN { printf "%.2f", a / b }')x"
[ "$swarm" = 1 ] && docker swarm leave --force >/dev/null 2>&1 || true

echo "--- pod start-up"
python3 scripts/bench-pod-startup.py "$KUBECONFIG" 100 5 "$image" docker
until [ -z "$("$K" get pods -o name 2>/dev/null)" ]; do sleep 0.5; done

echo "--- agent memory"
"$K" create deployment procs --image=none --replicas=100 -- sleep 3600 >/dev/null
"$K" patch deployment procs --type=merge -p '{"spec":{"template":{"spec":{"runtimeClassName":"process"}}}}' >/dev/null
"$K" rollout status deployment/procs --timeout=300s >/dev/null
sleep 5
proc_rss=$(rss "$agent")
echo "agent RSS: idle ${idle_rss} kB, with $replicas docker pods ${full_rss} kB, with 100 process pods ${proc_rss} kB"
