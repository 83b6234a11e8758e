#!/usr/bin/env bash
# npm run bench:quality — python -m srlora_torch.quality (docs/PERFORMANCE.md, "Quality"): 600 runs (10 variants ×
# 3 learning rates × 5 seeds × {MLP, tiny ViT} × {rot90, rot15-30}), one per CPU core, into bench/results/quality.json.
# With fewer than 8 cores (a laptop, CI) it runs the reduced `ci` preset (every variant, 2 seeds, 60 steps, one
# learning rate) into bench/results/quality-local.json instead: a smoke run, not evidence; it never overwrites the table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
cores=$(nproc 2>/dev/null || echo 2)
tmp=$(mktemp -d)
if [ "$cores" -ge 8 ] && [ -z "${BENCH_QUALITY_CI:-}" ]; then
  (cd python && "$PY" -m srlora_torch.quality --out "$tmp" --steps "${BENCH_STEPS:-1000}")
  cp "$tmp/quality.json" bench/results/quality.json
else
  (cd python && "$PY" -m srlora_torch.quality --out "$tmp" --preset ci --workers "$cores")
  cp "$tmp/quality.json" bench/results/quality-local.json
fi
rm -rf "$tmp"
