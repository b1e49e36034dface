#!/usr/bin/env bash
# Installs the peers the benchmarks compare against (Debian packages):
# etcd 3.4 for `cargo bench --bench store`, strace for its fsync counts, and
# Go + etcd's Go sources (golang-etcd-server-dev) to build
# target/etcd-native-bench, which drives the same etcd through its native
# gRPC client (clientv3). Safe to run again: installs only what is missing
# and rebuilds the Go program only when its source is newer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server etcd-client)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] || need+=(golang-etcd-server-dev)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
src="$root/benches/etcd-native/main.go"
bin="$root/target/etcd-native-bench"
if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ]; then
  gopath="$root/target/etcd-native-gopath"
  mkdir -p "$gopath"
  # GOPATH mode: the imports resolve to Debian's sources in /usr/share/gocode.
  (cd "$root" && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" \
    GOCACHE="$gopath/cache" go build -o "$bin" "$src")
fi
echo "etcd: $(etcd --version | head -1); strace: $(strace -V | head -1); $(go version)"
