#!/usr/bin/env bash
# Worker agent memory (docs/BENCHMARKS.md): the k3s agent's counterpart, a
# node with the `worker` role alone (kubelet, membership, transport; no
# API, no store voter, no control plane). A release cluster of 3 full
# nodes (`shoal init`) plus node-4 as a worker with the process runtime:
# node-4's RSS idle, then with 100 pods (`sleep 3600`) pinned to it.
#   ./scripts/bench-worker-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
K="$(./scripts/kubectl.sh)"
bin="$PWD/target/release/shoal"
dir="$(mktemp -d)"
pids=()
cleanup() {
  "$K" delete deployment rss --wait=false >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pkill -f "shim --base $dir" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin" init --nodes 4 --out "$dir/c" >/dev/null
sed -i 's/^roles = .*/roles = ["worker"]/' "$dir/c/node-4.toml"
# Loopback pod IPs: the worker is measured, not the machine's bridges.
sed -i 's/^network = .*/network = "host"/' "$dir/c/node-4.toml"
for k in 1 2 3 4; do
  "$bin" agent --config "$dir/c/node-$k.toml" >"$dir/node-$k.log" 2>&1 &
  pids+=($!)
done
api=$(awk -F'"' '/^api = / {print $2; exit}' "$dir/c/node-1.toml")
python3 - "$dir" "$api" <<'EOF'
import json, sys
d, api = sys.argv[1], sys.argv[2]
token = open(f"{d}/c/admin.token").read().strip()
json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "c",
  "clusters": [{"name": "c", "cluster": {"server": f"https://{api}", "certificate-authority": f"{d}/c/ca.pem"}}],
  "users": [{"name": "admin", "user": {"token": token}}],
  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "admin"}}]}, open(f"{d}/kubeconfig", "w"))
EOF
export KUBECONFIG="$dir/kubeconfig"
for _ in $(seq 1 120); do "$K" get node node-4 >/dev/null 2>&1 && break; sleep 0.5; done
"$K" get node node-4 >/dev/null
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
sleep 10 # settle after start-up
echo "idle RSS (kB): full nodes $(for p in "${pids[@]:0:3}"; do rss "$p"; done | tr '\n' ' ')| worker node-4 $(rss "${pids[3]}")"
"$K" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: rss}
spec:
  replicas: 100
  selector: {matchLabels: {app: rss}}
  template:
    metadata: {labels: {app: rss}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-4}
      containers:
      - {name: sleep, image: none, command: [sleep, "3600"]}
EOF
"$K" rollout status deployment/rss --timeout=180s >/dev/null
sleep 10
echo "with 100 pods on node-4, RSS (kB): full nodes $(for p in "${pids[@]:0:3}"; do rss "$p"; done | tr '\n' ' ')| worker node-4 $(rss "${pids[3]}")"
echo "pods on node-4: $("$K" get pods -o wide --no-headers | awk '$7 == "node-4" && $3 == "Running"' | wc -l)"
