#!/usr/bin/env python3
"""Pod start-up latency against a running `shoal dev` (docs/BENCHMARKS.md).

Creates N pods of IMAGE at RATE per second through the API (one POST each,
the clock read just before it) and follows them with one watch; a pod's
latency is from its POST to the watch event that shows it Ready. Then, in
the same run, N bare `docker run -d` of the same image at the same rate:
the time each takes to return (the engine has created and started the
container), the floor on this engine. Prints p50 and p99 of both.

  scripts/bench-pod-startup.py KUBECONFIG [N=100] [RATE=5] [IMAGE=shoal-test/web:1] [RUNTIME_CLASS=docker]
"""
import http.client
import json
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def percentile(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def api(kubeconfig):
    cfg = json.load(open(kubeconfig))
    server = cfg["clusters"][0]["cluster"]["server"]
    ca = cfg["clusters"][0]["cluster"]["certificate-authority"]
    token = cfg["users"][0]["user"]["token"]
    u = urllib.parse.urlparse(server)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False

    def conn():
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=120)

    return conn, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def main():
    kubeconfig = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    image = sys.argv[4] if len(sys.argv) > 4 else "shoal-test/web:1"
    runtime_class = sys.argv[5] if len(sys.argv) > 5 else "docker"
    conn, headers = api(kubeconfig)
    sent, ready = {}, {}
    done = threading.Event()

    def watch():
        c = conn()
        c.request("GET", "/api/v1/namespaces/default/pods?watch=1&labelSelector=bench%3Dstartup", headers=headers)
        r = c.getresponse()
        buf = b""
        while not done.is_set():
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                ev = json.loads(line)
                pod = ev.get("object", {})
                name = pod.get("metadata", {}).get("name")
                conds = pod.get("status", {}).get("conditions", [])
                if name and name not in ready and any(
                    x.get("type") == "Ready" and x.get("status") == "True" for x in conds
                ):
                    ready[name] = time.monotonic()
                    if len(ready) >= n:
                        done.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(1)  # the watch is open
    c = conn()
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        name = f"startup-{i}"
        spec = {"containers": [{"name": "web", "image": image}], "terminationGracePeriodSeconds": 1}
        if runtime_class:
            spec["runtimeClassName"] = runtime_class
        body = json.dumps({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "labels": {"bench": "startup"}}, "spec": spec})
        sent[name] = time.monotonic()
        c.request("POST", "/api/v1/namespaces/default/pods", body=body, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status >= 300:
            sys.exit(f"creating {name}: {r.status}")
    done.wait(timeout=300)
    lat = [ready[k] - sent[k] for k in sent if k in ready]
    if len(lat) < n:
        sys.exit(f"only {len(lat)} of {n} pods became Ready")
    c.request("DELETE", "/api/v1/namespaces/default/pods?labelSelector=bench%3Dstartup", headers=headers)
    c.getresponse().read()

    # The floor: bare `docker run -d` of the same image at the same rate.
    floor, ids = [], []
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        t0 = time.monotonic()
        out = subprocess.run(["docker", "run", "-d", "--network", "none", "--label", "shoal.bench=startup", image],
                             capture_output=True, text=True)
        floor.append(time.monotonic() - t0)
        if out.returncode != 0:
            sys.exit(f"docker run: {out.stderr}")
        ids.append(out.stdout.strip())
    subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)

    ms = lambda x: f"{x * 1000:.0f} ms"
    print(f"pods: {n} at {rate}/s, image {image}, runtimeClassName {runtime_class or '(default)'}")
    print(f"shoal pod start-up: p50 {ms(percentile(lat, 50))}, p99 {ms(percentile(lat, 99))}, "
          f"mean {ms(statistics.mean(lat))}")
    print(f"bare docker run:    p50 {ms(percentile(floor, 50))}, p99 {ms(percentile(floor, 99))}, "
          f"mean {ms(statistics.mean(floor))}")
    print(f"over the floor: p50 +{ms(percentile(lat, 50) - percentile(floor, 50))}, "
          f"p99 +{ms(percentile(lat, 99) - percentile(floor, 99))}")


if __name__ == "__main__":
    main()
