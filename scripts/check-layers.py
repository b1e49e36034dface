#!/usr/bin/env python3
"""Checks the workspace's crate graph against its layers (cargo metadata).

Each workspace crate has a layer; a crate may depend (normally or at
build time) only on crates of lower layers, never on one of its own layer
or above. The test harness (`shoal-harness`) may only ever be a dev
dependency. A new crate must be given a layer here. Exits 1 with every
violation named, 0 when the graph holds.

    ./scripts/check-layers.py            check this workspace
    ./scripts/check-layers.py --self-test   show that violations are caught
"""
import json
import subprocess
import sys

# Bottom first. Crates on one layer must not depend on each other.
LAYERS = {
    "shoal-fabric": 0,          # actors, transport, membership, pki, metrics
    "shoal-store": 1,           # Raft + redb MVCC store
    "shoal-model": 2,           # Kubernetes object model, watch cache
    "shoal-kubelet-proto": 3,   # the kubelet actor's wire protocol
    "shoal-api": 4,             # HTTP only
    "shoal-control": 4,         # scheduler, controllers
    "shoal-kubelet": 4,         # node agent, runtimes
    "shoal-proxy": 4,           # service proxy (nftables), later DNS and ingress
    "shoal": 5,                 # the binary: CLI, config, node wiring
    "shoal-harness": 6,         # dev-only test harness
}
HARNESS = "shoal-harness"


def violations(packages):
    """packages: [(name, [(dep_name, kind)])] for workspace members."""
    out = []
    names = {n for n, _ in packages}
    for name, deps in packages:
        if name not in LAYERS:
            out.append(f"{name}: has no layer in scripts/check-layers.py")
            continue
        for dep, kind in deps:
            if dep not in names:
                continue  # not a workspace crate
            if dep == HARNESS and kind != "dev":
                out.append(f"{name} -> {dep}: the harness may only be a dev dependency")
            if kind == "dev":
                continue  # tests may use any layer (the harness included)
            if dep not in LAYERS:
                continue
            if LAYERS[dep] >= LAYERS[name]:
                out.append(
                    f"{name} (layer {LAYERS[name]}) -> {dep} (layer {LAYERS[dep]}): "
                    "a crate may depend only on lower layers"
                )
    return out


def workspace():
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"]
        )
    )
    members = set(meta["workspace_members"])
    return [
        (
            p["name"],
            [(d["name"], d.get("kind") or "normal") for d in p["dependencies"]],
        )
        for p in meta["packages"]
        if p["id"] in members
    ]


def self_test():
    good = [("shoal-store", [("shoal-fabric", "normal")]), ("shoal-fabric", [])]
    assert violations(good) == [], violations(good)
    cases = {
        "upward": [("shoal-store", [("shoal-model", "normal")]), ("shoal-model", [])],
        "same layer": [("shoal-api", [("shoal-kubelet", "normal")]), ("shoal-kubelet", [])],
        "harness as normal": [("shoal", [("shoal-harness", "normal")]), ("shoal-harness", [])],
        "harness at build": [("shoal-api", [("shoal-harness", "build")]), ("shoal-harness", [])],
        "unknown crate": [("shoal-unknown", [])],
    }
    for what, pkgs in cases.items():
        assert violations(pkgs), f"not caught: {what}"
    print("check-layers self-test: every violation caught")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return 0
    bad = violations(workspace())
    for v in bad:
        print("layering:", v, file=sys.stderr)
    if bad:
        return 1
    print(f"layering: {len(LAYERS)} crates, every dependency points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
