#!/usr/bin/env bash
# Starts a local shoal cluster in full mode on a fresh Debian machine:
# installs what pod sandboxes need (the CNI plugins and their tools, as
# root, idempotently), then runs `cargo run --release -- dev "$@"`.
#
#   ./scripts/dev.sh                  install if needed, then a 3-node cluster
#   ./scripts/dev.sh --nodes 5        any `shoal dev` flag
#   ./scripts/dev.sh --install-only   only the install step (CI runs this)
#
# Without root, pods fall back to host networking (loopback pod IPs); the
# cluster says so on its console (`network: host (degraded: …)`).
set -euo pipefail
cd "$(dirname "$0")/.."

install_only=false
if [ "${1:-}" = "--install-only" ]; then
  install_only=true
  shift
fi

need=()
# The CNI plugins (bridge, host-local, loopback): a network namespace per pod.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# ip, iptables, nsenter/unshare: the sandboxes' tools.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
# nft: the service proxy's rules (ClusterIP, NodePort); conntrack: it
# deletes UDP flows to endpoints that went.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
# python3: the README's example server (`python3 -m http.server`).
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO="sudo"
    else
      echo "dev.sh: not root and no sudo: cannot install ${need[*]}; pods will use host networking" >&2
      need=()
    fi
  fi
  if ((${#need[@]})); then
    echo "dev.sh: installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
else
  echo "dev.sh: the CNI plugins and sandbox tools are installed"
fi

if $install_only; then
  exit 0
fi
command -v cargo >/dev/null 2>&1 || { echo "dev.sh: cargo is required (rustup.rs)" >&2; exit 1; }
exec cargo run --release -- dev "$@"
