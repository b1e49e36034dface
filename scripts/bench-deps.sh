#!/usr/bin/env bash
# Installs the peers the benchmarks compare against (Debian packages):
# etcd 3.4 for `cargo bench --bench store`, strace for its fsync counts.
set -euo pipefail
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server etcd-client)
command -v strace >/dev/null 2>&1 || need+=(strace)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "etcd: $(etcd --version | head -1); strace: $(strace -V | head -1)"
