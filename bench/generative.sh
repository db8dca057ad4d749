#!/usr/bin/env bash
# The generative comparison of docs/generative.md: AE (samples from a
# Gaussian fitted to its codes), VAE, CVAE, WAE-MMD, WAE-GAN, DCGAN,
# WGAN-GP, SN-GAN and the conditional GAN, every one with MLP players (the
# budget a 2-core CPU allows for 9 models x several seeds), the same number
# of epochs of data each, scored by an in-domain classifier run (trained
# first if absent): Fréchet distance in its features with the real-data
# floor, precision/recall (k = 3), class coverage, reconstruction error
# where the model encodes, training time.
#   bench/generative.sh        (SEEDS, EPOCHS, DATASETS, MODELS, CLS_EPOCHS to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/embedlab}
OUT=${OUT:-bench/out/generative}
EPOCHS=${EPOCHS:-5}
SEEDS=${SEEDS:-1 2 3}
MNIST_SEEDS=${MNIST_SEEDS:-1}
DATASETS=${DATASETS:-fashion-mnist mnist}
MODELS=${MODELS:-ae vae cvae wae-mmd wae-gan dcgan wgan-gp sngan cgan}
N=${N:-5000}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

for data in $DATASETS; do
  cls="$OUT/$data-classifier"
  if [ ! -f "$cls/report.json" ]; then
    case $data in mnist) ce=${CLS_EPOCHS:-3} ;; *) ce=${CLS_EPOCHS:-5} ;; esac
    echo "$data: classifier, $ce epochs" >&2
    "$BIN" --seed 0 train classifier --data "data/$data" --epochs "$ce" --overwrite --out "$cls" >"$cls.log" 2>&1
  fi
  seeds=$SEEDS
  [ "$data" = mnist ] && seeds=$MNIST_SEEDS
  for seed in $seeds; do
    for model in $MODELS; do
      run="$OUT/$data-$model-s$seed"
      [ -f "$run/report.json" ] && continue
      case $model in
        ae|vae|cvae|wae-mmd|wae-gan) arch="--arch mlp --latent 20" ;;
        *) arch="--arch mlp" ;;
      esac
      echo "$data: $model, seed $seed, $EPOCHS epochs" >&2
      # shellcheck disable=SC2086
      "$BIN" --seed "$seed" train "$model" --data "data/$data" $arch --epochs "$EPOCHS" \
        --classifier "$cls" --gen-samples "$N" --iwae-k 0 --overwrite --out "$run" >"$run.log" 2>&1 ||
        echo "  failed: see $run.log" >&2
    done
  done
done

python3 - "$OUT" "$DATASETS" "$MODELS" "${SEEDS%% *}" <<'PY'
import os, statistics, sys
sys.path.insert(0, "bench")
from runs import details, metric
out, datasets, models = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
names = {"ae": "AE (fitted Gaussian)", "vae": "VAE", "cvae": "CVAE", "wae-mmd": "WAE-MMD",
         "wae-gan": "WAE-GAN", "dcgan": "DCGAN", "wgan-gp": "WGAN-GP", "sngan": "SN-GAN",
         "cgan": "conditional SN-GAN"}
def cell(vals, d=1):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{d}f}"
    return f"{statistics.mean(vals):.{d}f} ± {statistics.stdev(vals):.{d}f}"
for data in datasets:
    cls = os.path.join(out, f"{data}-classifier")
    if not os.path.isfile(os.path.join(cls, "report.json")):
        continue
    print(f"\n**{data}** — classifier test accuracy {metric(cls, 'test accuracy'):.2f}%")
    print()
    print("| model | seeds | FD ↓ | precision % | recall % | classes | class KL | rec. MSE/pixel | collapse flags | s/run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    floor = []
    for model in models:
        runs = sorted(r for r in os.listdir(out) if r.startswith(f"{data}-{model}-s")
                      and os.path.isfile(os.path.join(out, r, "report.json")))
        runs = [os.path.join(out, r) for r in runs]
        if not runs:
            continue
        m = lambda name: [metric(r, name) for r in runs]
        floor += m("FD real floor")
        secs = [details(r)["training"]["train_seconds"] for r in runs]
        flags = 0
        for r in runs:
            import json
            rows = [json.loads(l) for l in open(os.path.join(r, "metrics.jsonl")) if l.strip()]
            flags += sum(1 for x in rows if x.get("valid", {}).get("collapse") == 1 or x.get("valid", {}).get("diverged") == 1)
        print(f"| {names[model]} | {len(runs)} | {cell(m('FD'))} | {cell(m('precision'))} | {cell(m('recall'))} "
              f"| {cell(m('classes covered'))} | {cell(m('class KL to uniform'), 3)} | {cell(m('rec. MSE'), 4)} | {flags} | {statistics.mean(secs):.0f} |")
    if floor:
        print(f"| real test images (floor) | – | {cell(floor, 2)} | | | | | | | |")
    # The representations: each encoder's codes beside the classifier's h(x),
    # pixels and PCA (linear probe on 10,000 training images; same-class share
    # of the 8 nearest training images of 1,000 test queries).
    print()
    print("| representation | dims | linear probe % | 8-NN same class % |")
    print("|---|---|---|---|")
    seed1 = lambda model: os.path.join(out, f"{data}-{model}-s{sys.argv[4]}")
    rows = [("raw pixels", "784", metric(cls, "probe, pixels"), metric(cls, "8-NN same class, pixels"))]
    pca20 = None
    for model in ("ae", "vae", "cvae", "wae-mmd", "wae-gan"):
        r = seed1(model)
        if model in models and os.path.isfile(os.path.join(r, "report.json")):
            if pca20 is None:
                pca20 = ("PCA-20", "20", metric(r, "probe, PCA-20"), metric(r, "8-NN same class, PCA-20"))
                rows.append(pca20)
            rows.append((names[model].replace(" (fitted Gaussian)", "") + (" posterior means" if "VAE" in names[model] else " codes"), "20",
                         metric(r, "probe, codes"), metric(r, "8-NN same class, codes")))
    rows.append(("classifier h(x)", "128", metric(cls, "probe, codes"), metric(cls, "8-NN same class, codes")))
    for n, d, p, k in rows:
        f = lambda v: "–" if v is None else f"{v:.1f}"
        print(f"| {n} | {d} | {f(p)} | {f(k)} |")
PY
