#!/usr/bin/env bash
# embedlab's conv DCGAN and WGAN-GP beside the same models written in
# PyTorch (bench/gan_pytorch.py): same players, initialisation, data split,
# round (critic steps, then one generator step), Adam betas and budget, on
# this machine, in one run, the two alternating.
#   speed:   training images per second (the epoch's training loop);
#            ratio embedlab / PyTorch per seed, and over all.
#   quality: Fréchet distance, precision/recall and coverage of 5,000
#            samples of each, scored by one classifier run in the same
#            features (bench/generative.sh trains it, or CLS=dir).
# Usage: bench/gan_vs_pytorch.sh   (SEEDS, EPOCHS, LIMIT, KINDS to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/embedlab}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/fashion-mnist}
OUT=${OUT:-bench/out/gan-vs-pytorch}
CLS=${CLS:-bench/out/generative/fashion-mnist-classifier}
SEEDS=${SEEDS:-1 2 3}
EPOCHS=${EPOCHS:-2}
LIMIT=${LIMIT:-15000}
KINDS=${KINDS:-dcgan wgan-gp}
N=${N:-5000}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -f "$CLS/report.json" ]; then
  echo "training the scoring classifier in $CLS" >&2
  "$BIN" --seed 0 train classifier --data "$DATA" --epochs 5 --overwrite --out "$CLS" >"$OUT/classifier.log" 2>&1
fi

run_embedlab() { # kind seed
  local run="$OUT/$1-embedlab-s$2"
  "$BIN" --seed "$2" train "$1" --data "$DATA" --arch conv --epochs "$EPOCHS" --train-limit "$LIMIT" \
    --no-images --iwae-k 0 --classifier "$CLS" --gen-samples "$N" --overwrite --out "$run" >"$run.log" 2>&1
}
run_pytorch() { # kind seed
  local base="$OUT/$1-pytorch-s$2"
  "$PY" bench/gan_pytorch.py --kind "$1" --seed "$2" --data "$DATA" --epochs "$EPOCHS" \
    --train-limit "$LIMIT" --samples "$base.npy" --n-samples "$N" >"$base.jsonl"
  "$BIN" score "$base.npy" --classifier "$CLS" --n "$N" >"$base.score.txt"
}

for kind in $KINDS; do
  i=0
  for seed in $SEEDS; do
    echo "$kind, seed $seed: $EPOCHS epochs of $LIMIT images each" >&2
    if [ $((i % 2)) = 0 ]; then run_embedlab "$kind" "$seed"; run_pytorch "$kind" "$seed"
    else run_pytorch "$kind" "$seed"; run_embedlab "$kind" "$seed"; fi
    i=$((i + 1))
  done
done

"$PY" - "$OUT" "$KINDS" "$SEEDS" <<'PY'
import json, os, re, statistics, sys
sys.path.insert(0, "bench")
from runs import epochs, metric
out, kinds, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def score(path, name):
    for line in open(path):
        m = re.match(rf"\s+{re.escape(name)}\s+([-0-9.]+)", line)
        if m:
            return float(m.group(1))
def ms(v, d=1):
    return f"{statistics.mean(v):.{d}f} ± {statistics.stdev(v):.{d}f}" if len(v) > 1 else f"{v[0]:.{d}f}"
print("| model | seed | embedlab images/s | PyTorch images/s | ratio | embedlab FD | PyTorch FD | embedlab P / R % | PyTorch P / R % |")
print("|---|---|---|---|---|---|---|---|---|")
for kind in kinds:
    ratios, fe, fp = [], [], []
    for seed in seeds:
        run = os.path.join(out, f"{kind}-embedlab-s{seed}")
        base = os.path.join(out, f"{kind}-pytorch-s{seed}")
        if not os.path.isfile(os.path.join(run, "report.json")) or not os.path.isfile(base + ".score.txt"):
            continue
        se = statistics.median(r["items_per_second"] for r in epochs(run))
        sp = statistics.median(json.loads(l)["images_per_second"] for l in open(base + ".jsonl") if '"epoch"' in l)
        ratios.append(se / sp)
        fe.append(metric(run, "FD")); fp.append(score(base + ".score.txt", "FD"))
        pe, re_ = metric(run, "precision"), metric(run, "recall")
        pp, rp = score(base + ".score.txt", "precision"), score(base + ".score.txt", "recall")
        print(f"| {kind} | {seed} | {se:.0f} | {sp:.0f} | {se/sp:.2f} | {fe[-1]:.1f} | {fp[-1]:.1f} | {pe:.1f} / {re_:.1f} | {pp:.1f} / {rp:.1f} |")
    if ratios:
        lo, hi = min(fp), max(fp)
        inside = "inside" if lo <= statistics.mean(fe) <= hi or statistics.mean(fe) <= lo else "outside"
        print(f"| **{kind}** | all | | | **{statistics.mean(ratios):.2f}** | **{ms(fe)}** | **{ms(fp)}** (range {lo:.1f}–{hi:.1f}) | | |")
        print(f"\n{kind}: embedlab's mean FD {statistics.mean(fe):.1f} is {inside} the PyTorch range (lower is better)\n")
PY
