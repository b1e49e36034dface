#!/usr/bin/env bash
# Agent memory with the process runtime (docs/BENCHMARKS.md): a release
# `shoal dev` of 3 nodes, each agent's RSS idle, then with 100 pods
# (`sleep 3600`) pinned to node-1, and the RSS of one container's shim.
#   ./scripts/bench-agent-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
K="$(./scripts/kubectl.sh)"
dir="$(mktemp -d)"
trap 'kill -INT "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$dir"' EXIT
./target/release/shoal dev --data-dir "$dir/d" --runtime process >"$dir/out" 2>"$dir/err" &
dev=$!
for _ in $(seq 1 120); do grep -q '^READY$' "$dir/out" && break; sleep 0.5; done
grep -q '^READY$' "$dir/out" || { echo "no READY"; cat "$dir/err"; exit 1; }
export KUBECONFIG="$dir/d/kubeconfig"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
agents() { for k in 1 2 3; do cat "$dir/d/node-$k.pid"; done; }
sleep 10 # settle after start-up
echo "idle agent RSS (kB): $(for p in $(agents); do rss "$p"; done | tr '\n' ' ')"
"$K" create deployment rss --image=none --replicas=100 -- sleep 3600 >/dev/null
"$K" patch deployment rss --type=merge -p '{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"node-1"}}}}}' >/dev/null
"$K" rollout status deployment/rss --timeout=180s >/dev/null
sleep 10
echo "with 100 pods on node-1, agent RSS (kB): $(for p in $(agents); do rss "$p"; done | tr '\n' ' ')"
shim=$(pgrep -f 'shoal shim' | head -1)
echo "one shim's RSS (kB): $(rss "$shim"), shims running: $(pgrep -fc 'shoal shim')"
