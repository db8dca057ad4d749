#!/usr/bin/env bash
# embedlab's VAE beside the PyTorch reference (bench/vae_pytorch.py): the same
# MLP and conv VAEs, data split, seed policy and budget, on this machine, in
# one run.
#   speed:    images per second in training (median over epochs after the
#             first, over REPS alternating repetitions), MLP and conv VAE;
#             PyTorch with its default Adam and with fused=True.
#   fidelity: MLP VAE trained FIDELITY_EPOCHS epochs by each; test ELBO and
#             IWAE NLL (k = IWAE_K on the first IWAE_IMAGES test images).
# Usage: bench/vae_vs_pytorch.sh            (MODE=speed|fidelity|all)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/embedlab}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/fashion-mnist}
OUT=${OUT:-bench/out/vae}
MODE=${MODE:-all}
REPS=${REPS:-3}
MLP_EPOCHS=${MLP_EPOCHS:-3}
MLP_LIMIT=${MLP_LIMIT:-20000}
CONV_EPOCHS=${CONV_EPOCHS:-2}
CONV_LIMIT=${CONV_LIMIT:-6000}
FIDELITY_EPOCHS=${FIDELITY_EPOCHS:-10}
IWAE_K=${IWAE_K:-5000}
IWAE_IMAGES=${IWAE_IMAGES:-1000}
SEED=${SEED:-0}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

run_embedlab() { # name arch epochs limit iwae_k
  rm -rf "$OUT/$1"
  "$BIN" --seed "$SEED" train vae --data "$DATA" --arch "$2" --epochs "$3" \
    ${4:+--train-limit $4} --iwae-k "$5" --iwae-images "$IWAE_IMAGES" --no-images \
    --out "$OUT/$1" >"$OUT/$1.log" 2>&1
}
run_pytorch() { # name arch epochs limit iwae_k [--fused-adam]
  "$PY" bench/vae_pytorch.py --seed "$SEED" --data "$DATA" --arch "$2" --epochs "$3" \
    ${4:+--train-limit $4} --iwae-k "$5" --iwae-images "$IWAE_IMAGES" ${6:-} >"$OUT/$1.jsonl"
}

if [ "$MODE" = speed ] || [ "$MODE" = all ]; then
  for rep in $(seq 1 "$REPS"); do
    for arch in mlp conv; do
      if [ "$arch" = mlp ]; then E=$MLP_EPOCHS; L=$MLP_LIMIT; else E=$CONV_EPOCHS; L=$CONV_LIMIT; fi
      echo "speed: $arch, repetition $rep/$REPS" >&2
      if [ $((rep % 2)) = 1 ]; then
        run_embedlab "speed-$arch-embedlab-$rep" $arch $E $L 0
        run_pytorch "speed-$arch-pytorch-$rep" $arch $E $L 0
        run_pytorch "speed-$arch-pytorchfused-$rep" $arch $E $L 0 --fused-adam
      else
        run_pytorch "speed-$arch-pytorchfused-$rep" $arch $E $L 0 --fused-adam
        run_pytorch "speed-$arch-pytorch-$rep" $arch $E $L 0
        run_embedlab "speed-$arch-embedlab-$rep" $arch $E $L 0
      fi
    done
  done
fi
if [ "$MODE" = fidelity ] || [ "$MODE" = all ]; then
  echo "fidelity: MLP VAE, $FIDELITY_EPOCHS epochs each, IWAE k = $IWAE_K on $IWAE_IMAGES test images" >&2
  run_embedlab fidelity-embedlab mlp "$FIDELITY_EPOCHS" "" "$IWAE_K"
  run_pytorch fidelity-pytorch mlp "$FIDELITY_EPOCHS" "" "$IWAE_K"
fi

"$PY" - "$OUT" <<'PY'
import glob, json, os, statistics, sys
sys.path.insert(0, "bench")
from runs import details, epochs, metric
out = sys.argv[1]
def speeds(path):
    if path.endswith(".jsonl") and os.path.isfile(path):
        rows = [json.loads(l) for l in open(path) if l.strip()]
        return [r["images_per_second"] for r in rows if "epoch" in r and r["epoch"] > 1]
    return [r["items_per_second"] for r in epochs(path) if r["epoch"] > 1]
header = ["| model | embedlab images/s | PyTorch (default Adam) | ratio | PyTorch (fused Adam) | ratio |",
          "|---|---|---|---|---|---|"]
for arch in ("mlp", "conv"):
    e = sum((speeds(p) for p in sorted(glob.glob(f"{out}/speed-{arch}-embedlab-*")) if os.path.isdir(p)), [])
    p = sum((speeds(p) for p in sorted(glob.glob(f"{out}/speed-{arch}-pytorch-*.jsonl"))), [])
    f = sum((speeds(p) for p in sorted(glob.glob(f"{out}/speed-{arch}-pytorchfused-*.jsonl"))), [])
    if e and p and f:
        me, mp, mf = statistics.median(e), statistics.median(p), statistics.median(f)
        rng = lambda v: f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})"
        while header:
            print(header.pop(0))
        print(f"| {arch} VAE | {rng(e)} | {rng(p)} | **{me/mp:.2f}** | {rng(f)} | {me/mf:.2f} |")
fe = os.path.join(out, "fidelity-embedlab")
fp = os.path.join(out, "fidelity-pytorch.jsonl")
if os.path.isfile(os.path.join(fe, "report.json")) and os.path.isfile(fp):
    elbo, nll = metric(fe, "test ELBO"), metric(fe, "test NLL")
    p = [json.loads(l) for l in open(fp) if l.strip()][-1]
    print()
    print("| MLP VAE | test ELBO | IWAE NLL | k | images | training s |")
    print("|---|---|---|---|---|---|")
    tr = details(fe)["training"]["train_seconds"]
    k, n = os.environ.get("IWAE_K", "5000"), os.environ.get("IWAE_IMAGES", "1000")
    print(f"| embedlab | {elbo:.2f} | {nll:.3f} | {k} | {n} | {tr:.0f} |")
    print(f"| PyTorch | {p['test_elbo']:.2f} | {p['nll_iwae']:.3f} | {p['iwae_k']} | {p['iwae_images']} | {p['train_seconds']:.0f} |")
    print(f"\n|NLL difference| = {abs(nll - p['nll_iwae']):.3f} nats (target ≤ 1)")
PY
