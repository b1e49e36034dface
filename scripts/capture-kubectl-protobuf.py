# Throwaway HTTP server used to capture kubectl request bodies (see README.md).
# Usage: python3 capture_server.py PORT OUTDIR
import http.server, json, os, sys
OUT = sys.argv[2]
n = [int(os.environ.get('START', '0'))]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def _body(self):
        l = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(l) if l else b""
    def _log(self, body):
        with open(os.path.join(OUT, "log.txt"), "a") as f:
            f.write("%s %s ct=%s accept=%s len=%d\n" % (self.command, self.path, self.headers.get("Content-Type"), self.headers.get("Accept"), len(body)))
    def do_GET(self):
        self._log(b"")
        path = self.path.split("?")[0]
        docs = {
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["create", "get", "list", "delete"]},
                {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap", "verbs": ["create", "get", "list", "delete"]}]},
        }
        if path in docs:
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
            self.wfile.write(json.dumps(docs[path]).encode()); return
        self.send_response(404); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}')
    def _store(self):
        body = self._body(); self._log(body)
        n[0] += 1
        name = "%02d_%s_%s.bin" % (n[0], self.command, self.path.strip("/").replace("/", "_").split("?")[0])
        open(os.path.join(OUT, name), "wb").write(body)
        self.send_response(201); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'{"kind":"Status","apiVersion":"v1","status":"Success","code":201, "metadata":{}}')
    do_POST = _store
    do_PUT = _store
    do_PATCH = _store
    do_DELETE = _store
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
