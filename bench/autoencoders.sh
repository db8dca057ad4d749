#!/usr/bin/env bash
# The autoencoder table of docs/autoencoders.md: AE, VAE, CAE, CVAE (MLP,
# latent 20, Bernoulli decoder with dynamic binarisation) on Fashion-MNIST
# and on the MNIST 5k subset; test ELBO, IWAE NLL, reconstruction error,
# linear probe and query-by-image statistics, with every image grid.
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
for data in fashion-mnist mnist; do
  case $data in
    fashion-mnist) path=data/fashion-mnist; epochs=$EPOCHS ;;
    mnist) path=data/mnist-5k/mnist_5k.csv.gz; epochs=$((EPOCHS * 5)) ;; # 4,000 images: same number of steps, roughly
  esac
  for model in ae vae cae cvae; do
    echo "$data: $model, $epochs epochs" >&2
    rm -rf "$OUT/$data-$model"
    "$BIN" --seed "$SEED" train $model --data $path --epochs $epochs --patience 10 \
      --iwae-k "$IWAE_K" --iwae-images "$IWAE_IMAGES" --tsne --out "$OUT/$data-$model" \
      >"$OUT/$data-$model.log" 2>&1
  done
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print("| data | model | epochs (best) | test ELBO | IWAE NLL | rec. −log p(x|z) | MSE/pixel | active units | probe: pixels → codes | same-class k-NN: pixels → codes | s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for data in ("fashion-mnist", "mnist"):
    for model in ("ae", "vae", "cae", "cvae"):
        p = os.path.join(out, f"{data}-{model}", "report.json")
        if not os.path.isfile(p):
            continue
        r = json.load(open(p))
        t, tr = r["test"], r["training"]
        f = lambda v: "–" if v is None else f"{v:.2f}"
        pr, q = r["probe"], r["query"]
        print(f"| {data} | {model.upper()} | {tr['epochs_done']} ({tr['best_epoch']}) | {f(t['elbo'])} | {f(t['nll_iwae'])} | {t['reconstruction_nll']:.2f} | {t['reconstruction_mse']:.4f} | {t.get('active_units') or '–'} "
              f"| {100*pr['pixels']['test_accuracy']:.1f}% → {100*pr['codes']['test_accuracy']:.1f}% "
              f"| {100*q['pixel_label_precision']:.1f}% → {100*q['latent_label_precision']:.1f}% | {tr['train_seconds']:.0f} |")
PY
