#!/usr/bin/env bash
# Counts the tests of each tier that `cargo test --workspace` runs and fails
# if a tier has fewer than its floor in scripts/test-tiers.txt (a crate's
# tests no longer run, or tests were lost in a move). Raise a floor when a
# tier grows.
#
#   unit     every crate's own tests (libs and crates/*/tests)
#   cluster  tests/cluster (in-process clusters)
#   process  tests/process (the real binary)
set -euo pipefail
cd "$(dirname "$0")/.."
list=$(mktemp)
trap 'rm -f "$list"' EXIT
# `--list` prints "Running <target> (<binary>)" on stderr before each list.
cargo test --workspace -- --list >"$list" 2>&1
awk '
  $1 == "Running" { target = $2; next }
  /: test$/ {
    if (target ~ /^tests\/cluster\//) tier = "cluster"
    else if (target ~ /^tests\/process\//) tier = "process"
    else if (target ~ /^benches\//) next
    else tier = "unit"
    n[tier]++
  }
  END { for (t in n) print t, n[t] }
' "$list" | sort >"$list.counts"
status=0
while read -r tier floor; do
  [ -z "$tier" ] || [ "${tier:0:1}" = "#" ] && continue
  got=$(awk -v t="$tier" '$1 == t { print $2 }' "$list.counts")
  got=${got:-0}
  if [ "$got" -lt "$floor" ]; then
    echo "tier $tier: $got tests, fewer than its floor of $floor" >&2
    status=1
  else
    echo "tier $tier: $got tests (floor $floor)"
  fi
done <scripts/test-tiers.txt
rm -f "$list.counts"
exit $status
