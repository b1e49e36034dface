#!/usr/bin/env bash
# Runs every test of shoal. Installs what the tests need first, so it works
# on a fresh machine (Debian, as root or with sudo). Idempotent.
#
#   ./scripts/test.sh            checks, then unit + cluster + process tests
#   SHOAL_SEED=N ./scripts/test.sh   replay a seeded randomized test
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "== $1 ($(($(date +%s) - start)) s)"; }

# --- set-up -----------------------------------------------------------------
# What a cluster needs (the CNI plugins and sandbox tools, python3): the
# README's run command's own install step, so CI runs it too.
./scripts/dev.sh --install-only
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(gcc)
# nft: the multi-host test partitions its network namespaces with it.
command -v nft >/dev/null 2>&1 || need+=(nftables)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is required (rustup.rs)"; exit 1; }
# The docker runtime's test images, imported from Debian's busybox-static
# (no registry is reachable, and tests never pull from the internet).
./scripts/images.sh
# A local registry with a password (Debian's docker-registry on 127.0.0.1)
# holding copies of them, for the private-registry pull tests.
./scripts/registry.sh
# The real kubectl, into .tools/ (the kubectl tests require it when run here).
SHOAL_KUBECTL="$(./scripts/kubectl.sh)"
export SHOAL_KUBECTL

# --- checks -----------------------------------------------------------------
stamp "format, layering, sizes"
cargo fmt --all --check
python3 scripts/check-layers.py --self-test
python3 scripts/check-layers.py
./scripts/check-sizes.sh
stamp "clippy (denials in [workspace.lints])"
cargo clippy -q --workspace --all-targets
# Benchmarks must keep compiling (built in the test profile, not run).
stamp "build"
cargo test -q --workspace --benches --no-run
cargo test -q --workspace --no-run
# Every crate's tests run, tier by tier (floors in scripts/test-tiers.txt).
./scripts/check-tiers.sh
# Every test: unit (each crate), in-process cluster (tests/cluster),
# processes (tests/process).
stamp "tests"
cargo test -q --workspace 2>&1
stamp "done"
