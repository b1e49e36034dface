#!/usr/bin/env bash
# Fails if a Rust file under src/, crates/, tests/ or benches/ is over 800
# lines: split it by concept instead (STYLE.md §11).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=800
over=$(find src crates tests benches -name '*.rs' -print0 | xargs -0 wc -l | awk -v l=$limit '$2 != "total" && $1 > l')
if [ -n "$over" ]; then
  echo "files over $limit lines (split them by concept):" >&2
  echo "$over" >&2
  exit 1
fi
echo "sizes: every .rs file is at most $limit lines"
