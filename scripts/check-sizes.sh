#!/usr/bin/env bash
# Fails if a Rust file under src/, crates/, tests/ or benches/ is over 800
# lines (split it by concept instead), or does not open with a //! paragraph.
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
# Every module opens with a `//!` paragraph: its role and what it talks to.
bare=$(for f in $(find src crates tests benches -name '*.rs'); do head -1 "$f" | grep -q '^//!' || echo "$f"; done)
if [ -n "$bare" ]; then
  echo "modules without an opening //! paragraph:" >&2
  echo "$bare" >&2
  exit 1
fi
echo "docs: every module opens with a //! paragraph"
