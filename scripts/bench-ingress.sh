#!/usr/bin/env bash
# The Service data path side by side (issue 21): wrk against one nginx pod
# (Debian nginx, a static file, keep-alive) on a 1-node `shoal dev` as
# root, reached five ways in interleaved runs:
#   pod       the pod IP directly
#   clusterip the Service's ClusterIP (shoal's nftables rules)
#   ingress   shoal's Ingress on the node's address (Host: bench.test)
#   nginx     Debian nginx as a reverse proxy (1 worker, upstream keepalive)
#   haproxy   Debian HAProxy as a reverse proxy (1 thread, http-reuse always)
#   hyper     the leanest proxy hyper allows (crates/proxy/examples/
#             bare_hyper_proxy.rs: one thread, an upstream connection per
#             client connection, nothing rewritten): the floor under the
#             Ingress, which is built on hyper
# The three other proxies listen on the node's address beside the Ingress,
# so every proxy's packets take the same kernel path (the node's nftables
# table included). Everything but wrk is pinned to core 0 (the shoal agent
# and its pods, the proxies), wrk to core 1. Prints each run, then the medians and ratios.
# For the three proxies it also reads the CPU time each spent per request
# (the Ingress's data-plane thread, nginx's worker, HAProxy's process:
# /proc schedstat, and user/system from stat), a figure the machine's
# noise moves less than latency.
# Installs wrk, nginx-light and haproxy (Debian) if missing; builds shoal
# in release.
#
#   sudo ./scripts/bench-ingress.sh [RUNS=5] [SECONDS=10] [CONNECTIONS=32]
#
# BENCH_PATHS="ingress hyper haproxy" runs only those paths (the summary
# then prints what it can); BENCH_PERF=DIR records a flat `perf` profile of
# the Ingress's thread during each of its runs into DIR (with call graphs
# when BENCH_PERF_GRAPH=1).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}; secs=${2:-10}; conns=${3:-32}
[ "$(id -u)" -eq 0 ] || { echo "bench-ingress: needs root (pod sandboxes, ClusterIP rules)"; exit 1; }
need=()
for p in wrk:wrk nginx:nginx-light haproxy:haproxy curl:curl; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p#*:}")
done
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
./scripts/dev.sh --install-only
cargo build -q --release --bin shoal
cargo build -q --release -p shoal-proxy --example bare_hyper_proxy
kubectl=$(./scripts/kubectl.sh)
tmp=$(mktemp -d)
chmod 755 "$tmp"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  [ -f "$tmp/haproxy.pid" ] && kill "$(cat "$tmp/haproxy.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# One data-plane thread, as nginx's one worker and HAProxy's one thread.
SHOAL_KUBELET_INGRESS_THREADS=1 target/release/shoal dev --runtime process --nodes 1 --data-dir "$tmp/dev" > "$tmp/dev.out" 2>&1 &
for _ in $(seq 1 300); do grep -q '^READY$' "$tmp/dev.out" 2>/dev/null && break; sleep 0.2; done
grep -q '^READY$' "$tmp/dev.out" || { cat "$tmp/dev.out"; exit 1; }
k() { KUBECONFIG="$tmp/dev/kubeconfig" "$kubectl" "$@"; }

# The backend: nginx serving a 612-byte page (nginx's own index) on 8080.
mkdir -p "$tmp/www"
head -c 612 /dev/zero | tr '\0' 'x' > "$tmp/www/index.html"
cat > "$tmp/backend.conf" <<EOF
user root;
worker_processes 1;
pid $tmp/backend.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/b-body; proxy_temp_path $tmp/b-proxy;
  fastcgi_temp_path $tmp/b-fcgi; uwsgi_temp_path $tmp/b-uwsgi; scgi_temp_path $tmp/b-scgi;
  server { listen 8080; root $tmp/www; }
}
EOF
cat > "$tmp/app.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: backend, labels: {app: backend}}
spec:
  containers:
  - name: nginx
    image: nginx
    command: ["nginx", "-c", "$tmp/backend.conf", "-g", "daemon off;"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench}
spec:
  rules:
  - host: bench.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}
EOF
k apply -f "$tmp/app.yaml" >/dev/null
k wait --for=condition=Ready pod/backend --timeout=90s >/dev/null
pod_ip=$(k get pod backend -o jsonpath='{.status.podIP}')
cluster_ip=$(k get svc backend -o jsonpath='{.spec.clusterIP}')
node_ip=$(k get node node-1 -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')

cat > "$tmp/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/n-body; proxy_temp_path $tmp/n-proxy;
  fastcgi_temp_path $tmp/n-fcgi; uwsgi_temp_path $tmp/n-uwsgi; scgi_temp_path $tmp/n-scgi;
  upstream backend { server $pod_ip:8080; keepalive 128; }
  server {
    listen $node_ip:9081;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
cat > "$tmp/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  pidfile $tmp/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option forwardfor
frontend f
  bind $node_ip:9082
  default_backend b
backend b
  server s1 $pod_ip:8080
EOF
taskset -c 0 nginx -c "$tmp/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx.err" &
taskset -c 0 haproxy -f "$tmp/haproxy.cfg" -db 2>"$tmp/haproxy.err" &
taskset -c 0 target/release/examples/bare_hyper_proxy "$node_ip:9083" "$pod_ip:8080" 2>"$tmp/hyper.err" &
hyper_pid=$!
# The agent (every thread) and its pods on core 0.
for pid in $(pgrep -f "shoal agent") $(pgrep -f "$tmp/backend.conf"); do
  taskset -a -cp 0 "$pid" >/dev/null
done

declare -A url=(
  [pod]="http://$pod_ip:8080/"
  [clusterip]="http://$cluster_ip/"
  [ingress]="http://$node_ip/"
  [nginx]="http://$node_ip:9081/"
  [haproxy]="http://$node_ip:9082/"
  [hyper]="http://$node_ip:9083/"
)
order=(pod clusterip ingress nginx haproxy hyper)
[ -n "${BENCH_PATHS:-}" ] && read -r -a order <<<"$BENCH_PATHS"
for t in "${order[@]}"; do
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null -H 'Host: bench.test' --max-time 1 "${url[$t]}" && break
    sleep 0.1
  done
  curl -fsS -o /dev/null -H 'Host: bench.test' --max-time 1 "${url[$t]}" || { echo "$t (${url[$t]}) does not answer"; exit 1; }
done
echo "backend $pod_ip:8080, ClusterIP $cluster_ip, Ingress $node_ip:80; wrk -t1 -c$conns -d${secs}s, $runs interleaved runs"
: > "$tmp/results"
for r in $(seq 1 "$runs"); do
  for t in "${order[@]}"; do
    case $t in
      ingress) task=$(for p in $(pgrep -f "shoal agent"); do for d in /proc/$p/task/*; do
          if [ "$(cat "$d/comm")" = ingress ]; then echo "$d"; fi; done; done | head -1 || true);;
      nginx) task=/proc/$(pgrep -P "$(cat "$tmp/nginx.pid")" | head -1);;
      haproxy) task=/proc/$(pgrep -f "haproxy -f $tmp/haproxy.cfg" | head -1);;
      hyper) task=/proc/$hyper_pid;;
      *) task=;;
    esac
    cpu() { [ -n "$task" ] && echo "$(awk '{print $1}' "$task/schedstat") $(awk '{print $14, $15}' "$task/stat")" || echo "0 0 0"; }
    read -r c0 u0 s0 <<<"$(cpu)"
    if [ -n "${BENCH_PERF:-}" ] && [ "$t" = ingress ] && [ -n "$task" ]; then
      mkdir -p "$BENCH_PERF"
      if [ -n "${BENCH_PERF_GRAPH:-}" ]; then how=(--call-graph dwarf -F 999); else how=(-F 4999); fi
      perf record -q "${how[@]}" -t "${task##*/}" -o "$BENCH_PERF/ingress-$r.data" -- sleep "$secs" 2>/dev/null &
    fi
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency -H 'Host: bench.test' "${url[$t]}")
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
    read -r c1 u1 s1 <<<"$(cpu)"
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    tick=$((1000000000 / $(getconf CLK_TCK)))
    per="$(( (c1 - c0) / reqs )) $(( (u1 - u0) * tick / reqs )) $(( (s1 - s0) * tick / reqs ))"
    [ -n "$task" ] && cpu_text="  cpu/req $(cut -d' ' -f1 <<<"$per") ns (user $(cut -d' ' -f2 <<<"$per"), sys $(cut -d' ' -f3 <<<"$per"))" || cpu_text=
    echo "run $r  $t  $rps req/s  p50 $p50  p99 $p99$cpu_text $errs"
    echo "$t $rps $p50 $p99 $per" >> "$tmp/results"
  done
done
python3 - "$tmp/results" <<'PY'
import sys, statistics
def us(v):
    for suf, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(suf):
            return float(v[: -len(suf)]) * f
    return float(v)
rows = {}
for line in open(sys.argv[1]):
    t, rps, p50, p99, cpu, user, sys_ = line.split()
    rows.setdefault(t, []).append((float(rps), us(p50), us(p99), float(cpu), float(user), float(sys_)))
med = {t: tuple(statistics.median(x[i] for x in v) for i in range(6)) for t, v in rows.items()}
print("\nmedians:")
for t, (rps, p50, p99, cpu, user, sys_) in med.items():
    spread = [x[2] for x in rows[t]]
    per = f"  cpu/req {cpu / 1e3:.1f} us (user {user / 1e3:.1f}, sys {sys_ / 1e3:.1f})" if cpu else ""
    print(f"  {t:10} {rps:10.0f} req/s  p50 {p50:7.0f} us  p99 {p99:7.0f} us  (p99 {min(spread):.0f}-{max(spread):.0f}){per}")
def line(text, *paths):
    if all(p in med for p in paths):
        print(text(*(med[p] for p in paths)))
if "pod" in med and "clusterip" in med:
    added = [c[2] - p[2] for c, p in zip(rows["clusterip"], rows["pod"])]
    print(f"ClusterIP added p99 over the pod IP: median {statistics.median(added):.0f} us (runs {', '.join(f'{a:.0f}' for a in added)})")
line(lambda i, n: f"Ingress / nginx req/s: {i[0] / n[0]:.2f}x", "ingress", "nginx")
line(lambda i, h: f"Ingress / HAProxy req/s: {i[0] / h[0]:.2f}x", "ingress", "haproxy")
line(lambda i, h: f"user CPU per request, Ingress / HAProxy: {i[4] / h[4]:.2f}x", "ingress", "haproxy")
line(lambda i, n: f"user CPU per request, Ingress / nginx: {i[4] / n[4]:.2f}x", "ingress", "nginx")
line(lambda y, h: f"user CPU per request, bare hyper / HAProxy: {y[4] / h[4]:.2f}x", "hyper", "haproxy")
line(lambda i, y: f"user CPU per request, Ingress / bare hyper: {i[4] / y[4]:.2f}x", "ingress", "hyper")
if "pod" in med:
    pod = med["pod"]
    print("added p99 over the pod IP: " + ", ".join(f"{t} {med[t][2] - pod[2]:.0f} us" for t in ("ingress", "haproxy", "nginx", "hyper") if t in med))
PY
