#!/usr/bin/env bash
# The autoencoder table of docs/autoencoders.md: AE, VAE, CAE, CVAE (MLP,
# latent 20, Bernoulli decoder with dynamic binarisation) on Fashion-MNIST
# and on full MNIST (60k + 10k; DATASETS=... adds mnist-5k, the 5,000-image
# subset); test ELBO, IWAE NLL, reconstruction error, linear probes and
# query-by-image statistics beside pixels and PCA, with every image grid.
#   bench/autoencoders.sh   (EPOCHS, IWAE_K, IWAE_IMAGES, SEED to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/embedlab}
OUT=${OUT:-bench/out/autoencoders}
EPOCHS=${EPOCHS:-20}
IWAE_K=${IWAE_K:-5000}
IWAE_IMAGES=${IWAE_IMAGES:-500}
SEED=${SEED:-0}
mkdir -p "$OUT"
DATASETS=${DATASETS:-fashion-mnist mnist}
for data in $DATASETS; do
  case $data in
    fashion-mnist) path=data/fashion-mnist; epochs=$EPOCHS ;;
    mnist) path=data/mnist; epochs=$EPOCHS ;;
    mnist-5k) path=data/mnist-5k/mnist_5k.csv.gz; epochs=$((EPOCHS * 5)) ;; # 3,600 images: about as many steps
  esac
  for model in ae vae cae cvae; do
    echo "$data: $model, $epochs epochs" >&2
    rm -rf "$OUT/$data-$model"
    "$BIN" --seed "$SEED" train $model --data $path --epochs $epochs --patience 10 \
      --iwae-k "$IWAE_K" --iwae-images "$IWAE_IMAGES" --tsne --overwrite --out "$OUT/$data-$model" \
      >"$OUT/$data-$model.log" 2>&1
  done
done
python3 - "$OUT" <<'PY'
import os, sys
sys.path.insert(0, "bench")
from runs import details, metric
out = sys.argv[1]
print("| data | model | epochs (best) | test ELBO | IWAE NLL | rec. −log p(x|z) | MSE/pixel | active units | probe: pixels → PCA → codes | same-class 8-NN: pixels → PCA → codes | s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for data in ("fashion-mnist", "mnist", "mnist-5k"):
    for model in ("ae", "vae", "cae", "cvae"):
        run = os.path.join(out, f"{data}-{model}")
        if not os.path.isfile(os.path.join(run, "report.json")):
            continue
        m = lambda name: metric(run, name)
        f = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
        tr = details(run)["training"]
        k = 20
        print(f"| {data} | {model.upper()} | {tr['epochs_done']} ({tr['best_epoch']}) | {f(m('test ELBO'))} | {f(m('test NLL'))} | {f(m('rec. −log p(x|z)'))} | {f(m('rec. MSE'), 4)} | {f(m('active units'), 0)} "
              f"| {f(m('probe, pixels'), 1)}% → {f(m(f'probe, PCA-{k}'), 1)}% → {f(m('probe, codes'), 1)}% "
              f"| {f(m('8-NN same class, pixels'), 1)}% → {f(m(f'8-NN same class, PCA-{k}'), 1)}% → {f(m('8-NN same class, codes'), 1)}% | {tr['train_seconds']:.0f} |")
PY
