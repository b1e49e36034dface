#!/usr/bin/env bash
# Runs every test of shoal. Installs what the tests need first, so it works
# on a fresh machine (Debian, as root or with sudo). Idempotent.
#
#   ./scripts/test.sh            unit + in-process cluster + multi-process tests
#   SHOAL_SEED=N ./scripts/test.sh   replay a seeded randomized test
set -euo pipefail
cd "$(dirname "$0")/.."

# --- set-up -----------------------------------------------------------------
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(gcc)
# python3: an HTTP server for the process runtime's probe tests.
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The CNI plugins (bridge, host-local, loopback): pod sandboxes as root.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# ip, iptables, nsenter/unshare: the sandboxes' tools.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is required (rustup.rs)"; exit 1; }
# The real kubectl, into .tools/ (the kubectl tests require it when run here).
SHOAL_KUBECTL="$(./scripts/kubectl.sh)"
export SHOAL_KUBECTL

# --- checks -----------------------------------------------------------------
cargo fmt --check
# Benchmarks must keep compiling (built in the test profile, not run).
cargo test --benches --no-run -q
# Every test: unit, in-process cluster (tests/cluster), processes (tests/process).
cargo test -q 2>&1
