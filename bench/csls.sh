#!/usr/bin/env bash
# CSLS retrieval at scale: embedlab's f32 and bfloat16-candidate searches
# (`embedlab bench csls`, against the machine's measured f32 peak) and
# PyTorch's usual blocked mm + topk pass (bench/csls_torch.py), alternately,
# TRIES times each, on the same machine in one run; ratio of the r-term pass.
#
#   bench/csls.sh                 (N=50000; N=200000 takes about 12 min a try)
set -euo pipefail
cd "$(dirname "$0")/.."
E=${EMBEDLAB:-target/release/embedlab}
PY=${PYTHON:-.venv/bin/python}
N=${N:-50000}
DIM=${DIM:-300}
TRIES=${TRIES:-2}
OUT=${OUT:-bench/out/csls}
mkdir -p "$OUT"
[ -x "$E" ] || cargo build --release
for t in $(seq "$TRIES"); do
  "$PY" bench/csls_torch.py "$N" "$DIM" > "$OUT/torch-$N-$t.json"
  "$E" bench csls --n "$N" --dim "$DIM" > "$OUT/embedlab-$N-$t.json"
done
"$PY" - "$OUT" "$N" "$TRIES" <<'PYEOF'
import json, sys
out, n, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(f"{'try':>3} {'torch r s':>9} {'f32 r s':>8} {'bf16 r s':>8} {'f32 x':>6} {'bf16 x':>6} {'f32 % peak':>10} {'bf16 same top10':>15}")
for t in range(1, tries + 1):
    tr = json.load(open(f"{out}/torch-{n}-{t}.json"))
    e = json.load(open(f"{out}/embedlab-{n}-{t}.json"))
    f, b = e["runs"][0], e["runs"][1]
    print(f"{t:3d} {tr['seconds_r_target']:9.1f} {f['seconds_r_target']:8.1f} {b['seconds_r_target']:8.1f} "
          f"{tr['seconds_r_target'] / f['seconds_r_target']:6.2f} {tr['seconds_r_target'] / b['seconds_r_target']:6.2f} "
          f"{100 * f['fraction_of_f32_peak']:10.0f} {100 * b['same_top10']:14.0f}%")
PYEOF
