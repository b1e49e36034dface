#!/usr/bin/env bash
# Rule programming end to end (issue 21): on a 3-node `shoal dev` as root
# holding N Services (each with an EndpointSlice), the time from writing a
# new Service plus its EndpointSlice (two API requests, the clock read just
# before the first) to the first TCP connection through its ClusterIP from
# a pod on every node. Each node's probe pod tries to connect every few
# milliseconds (10 ms timeouts) and prints the time of its first answer
# from the backend; all processes share the host's clock. Prints each trial, then
# the median per node and overall.
#
#   sudo ./scripts/bench-rule-programming.sh [N=10000] [TRIALS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}; trials=${2:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench-rule-programming: needs root (pod sandboxes, nftables)"; exit 1; }
./scripts/dev.sh --install-only
cargo build -q --release --bin shoal
kubectl=$(./scripts/kubectl.sh)
tmp=$(mktemp -d)
# The probes try a ClusterIP before its rules exist: without this route
# those packets would follow the host's default route off the machine.
# Unreachable, they fail at once (EHOSTUNREACH) until the DNAT is in
# (DNAT comes before the route lookup).
probe_net=10.111.0.0/16
ip route replace unreachable "$probe_net"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; ip route del unreachable "$probe_net" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
target/release/shoal dev --runtime process --nodes 3 --data-dir "$tmp/dev" > "$tmp/dev.out" 2>&1 &
for _ in $(seq 1 300); do grep -q '^READY$' "$tmp/dev.out" 2>/dev/null && break; sleep 0.2; done
grep -q '^READY$' "$tmp/dev.out" || { cat "$tmp/dev.out"; exit 1; }
KUBECONFIG="$tmp/dev/kubeconfig" python3 - "$kubectl" "$n" "$trials" <<'PY'
import http.client, json, os, ssl, statistics, subprocess, sys, threading, time, urllib.parse
from concurrent.futures import ThreadPoolExecutor

kubectl, n, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = json.load(open(os.environ["KUBECONFIG"]))
server = cfg["clusters"][0]["cluster"]["server"]
ctx = ssl.create_default_context(cafile=cfg["clusters"][0]["cluster"]["certificate-authority"])
ctx.check_hostname = False
token = cfg["users"][0]["user"]["token"]

# One kept-alive connection per thread, as a real client (client-go,
# kubectl) keeps: a TLS handshake per request would be timed as the write.
local = threading.local()
url = urllib.parse.urlparse(server)

def api(method, path, body=None):
    for attempt in (0, 1):
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=30)
        try:
            local.conn.request(method, path, body=None if body is None else json.dumps(body),
                headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            r = local.conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError):
            local.conn.close(); local.conn = None
            if attempt:
                raise
            continue
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data)

def k(*args):
    return subprocess.run([kubectl, *args], check=True, capture_output=True, text=True).stdout

# A backend on node-1.
server_py = "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n  def do_GET(self):\n    self.send_response(200);self.send_header('X-Backend','shoal-bench');self.end_headers()\n  def log_message(self,*a): pass\nhttp.server.ThreadingHTTPServer(('0.0.0.0',8080),H).serve_forever()\n"
api("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "backend"}, "spec": {"nodeName": "node-1",
    "containers": [{"name": "c", "image": "python:3", "command": ["python3", "-c", server_py],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}})
k("wait", "--for=condition=Ready", "pod/backend", "--timeout=90s")
backend_ip = api("GET", "/api/v1/namespaces/default/pods/backend")["status"]["podIP"]

def service(name, ip=None):
    spec = {"ports": [{"name": "http", "port": 80}]}
    if ip:
        spec["clusterIP"] = ip
    return {"metadata": {"name": name}, "spec": spec}

def slice_of(name):
    return {"metadata": {"name": name + "-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [backend_ip], "conditions": {"ready": True}}]}

def make(i):
    name = f"svc-{i}"
    api("POST", "/api/v1/namespaces/default/services", service(name))
    api("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice_of(name))

start = time.time()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(make, range(n)))
print(f"{n} Services with EndpointSlices written in {time.time() - start:.0f} s", flush=True)

# A connection alone proves nothing where the host's network accepts any
# outbound TCP: the probe counts an answer from the backend itself.
probe_py = """import socket,sys,time
ip=sys.argv[1]
print('probing',flush=True)
while True:
  s=socket.socket();s.settimeout(0.01)
  try:
    s.connect((ip,80));s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
    if b'shoal-bench' in s.recv(4096):
      print('connected',repr(time.time()),flush=True);break
  except OSError: time.sleep(0.001)
  finally: s.close()
time.sleep(3600)
"""
per_node = {f"node-{i}": [] for i in (1, 2, 3)}
# From the EndpointSlice's write (the second request) too: kube-proxy's
# figure counts its sync alone, not the API writes before it.
from_slice = {f"node-{i}": [] for i in (1, 2, 3)}
# Trial 0 is a warm-up, not counted: it also waits out the proxies'
# backlog from the writes above.
for t in range(trials + 1):
    ip = f"10.111.{t // 250}.{t % 250 + 1}"
    name = f"probe-svc-{t}"
    for node in per_node:
        api("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": f"probe-{t}-{node}"},
            # No Service variables: N Services make an environment over
            # the kubelet's limit (upstream fails too: argument list too long).
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "enableServiceLinks": False, "containers": [
                {"name": "c", "image": "python:3", "command": ["python3", "-c", probe_py, ip]}]}})
    # Wait until every probe is trying.
    # Pods start slowly while the proxies still program the N Services.
    deadline = time.time() + 900
    while True:
        logs = [subprocess.run([kubectl, "logs", f"probe-{t}-{node}"], capture_output=True, text=True).stdout for node in per_node]
        if all("probing" in l for l in logs):
            break
        if time.time() > deadline:
            sys.exit(f"probes did not start: {logs}")
        time.sleep(0.2)
    time.sleep(1)  # every probe well into its loop
    # The same two writes on a Service no probe tries, for their cost
    # alone while the probes run.
    q0 = time.time()
    api("POST", "/api/v1/namespaces/default/services", service(f"quiet-svc-{t}"))
    q1 = time.time()
    api("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice_of(f"quiet-svc-{t}"))
    q2 = time.time()
    time.sleep(0.5)
    t0 = time.time()
    api("POST", "/api/v1/namespaces/default/services", service(name, ip))
    t1 = time.time()
    api("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice_of(name))
    t2 = time.time()
    got, slice_ms = {}, {}
    deadline = time.time() + (900 if t == 0 else 60)
    while len(got) < len(per_node) and time.time() < deadline:
        for node in per_node:
            if node in got:
                continue
            out = subprocess.run([kubectl, "logs", f"probe-{t}-{node}"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if line.startswith("connected"):
                    got[node] = (float(line.split()[1]) - t0) * 1000
                    slice_ms[node] = (float(line.split()[1]) - t1) * 1000
        time.sleep(0.1)
    label = "warm-up" if t == 0 else f"trial {t}"
    print(f"{label}: " + ", ".join(f"{nd} {ms:.0f} ms" for nd, ms in sorted(got.items()))
          + f" (the two writes took {(t1 - t0) * 1000:.0f} + {(t2 - t1) * 1000:.0f} ms;"
          + f" on a Service no probe tries, {(q1 - q0) * 1000:.0f} + {(q2 - q1) * 1000:.0f} ms)", flush=True)
    for nd, ms in got.items():
        if t > 0:
            per_node[nd].append(ms)
            from_slice[nd].append(slice_ms[nd])
    for node in per_node:
        subprocess.run([kubectl, "delete", "pod", f"probe-{t}-{node}", "--wait=false"], capture_output=True)
print(f"\nwith {n} Services: write -> first connection, medians:")
for nd, v in per_node.items():
    if v:
        print(f"  {nd}: {statistics.median(v):.0f} ms ({', '.join(f'{x:.0f}' for x in v)})")
last = [max(per_node[nd][i] for nd in per_node) for i in range(min(len(v) for v in per_node.values()))]
if last:
    print(f"  every node (the slowest per trial): median {statistics.median(last):.0f} ms")
print("from the EndpointSlice's write, medians:")
for nd, v in from_slice.items():
    if v:
        print(f"  {nd}: {statistics.median(v):.0f} ms ({', '.join(f'{x:.0f}' for x in v)})")
last = [max(from_slice[nd][i] for nd in from_slice) for i in range(min(len(v) for v in from_slice.values()))]
if last:
    print(f"  every node (the slowest per trial): median {statistics.median(last):.0f} ms")
PY
