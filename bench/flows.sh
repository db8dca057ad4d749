#!/usr/bin/env bash
# Normalizing flows measured (docs/flows.md): each part writes its runs
# under $OUT and bench/flows_summary.py turns them into tables.
#   pytorch     embedlab's Glow beside the same Glow in PyTorch
#               (bench/glow_pytorch.py): test bits/dim and training
#               images/s, same data, budget and seeds, the two alternating.
#   results     Glow, RealNVP and i-ResNet on full MNIST and Fashion-MNIST:
#               test bits/dim, sample grids at several temperatures, inverse
#               error, time and parameters, one budget for all.
#   ood         the Fashion-MNIST flows' bits/dim on MNIST test images
#               (and the MNIST ones' on Fashion-MNIST).
#   stability   Glow, i-ResNet, a VAE and a GAN over learning rates and
#               seeds, NaN rollbacks off: how often each fails, its spread.
#   scaling     time per image and peak memory of a training step against
#               the image size (random images, one process a size).
#   layout      one Glow at MNIST's native 28×28×1 and padded and tiled to
#               32×32×3 (the published numbers' layout), same budget.
#   ablation    Glow with the logit pre-processing; the diverging Glow of
#               the stability study with the default NaN rollbacks.
#   lipschitz   i-ResNet's inverse error and iterations against its
#               Lipschitz coefficient.
# Usage: bench/flows.sh  (PARTS, SEEDS, LIMIT, EPOCHS, … to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/embedlab}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/out/flows}
PARTS=${PARTS:-pytorch results ood stability scaling layout ablation lipschitz}
SEEDS=${SEEDS:-1 2}
# pytorch: Glow's defaults (2 levels x 8 steps, hidden 64), PT_LIMIT images x PT_EPOCHS,
# the learning rate on a cosine to ~0 over the epochs (so the final test bits/dim
# is not one noisy iterate of a constant rate)
PT_LIMIT=${PT_LIMIT:-10000}
PT_EPOCHS=${PT_EPOCHS:-5}
PT_SCHEDULE=${PT_SCHEDULE:-cosine}
# results: LIMIT training images x EPOCHS for every flow
LIMIT=${LIMIT:-20000}
EPOCHS=${EPOCHS:-1}
# stability: ST_LIMIT images, one epoch, at each of ST_LRS
ST_LIMIT=${ST_LIMIT:-3000}
ST_LRS=${ST_LRS:-0.001 0.01 0.05}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
has() { [[ " $PARTS " == *" $1 "* ]]; }

if has pytorch; then
  i=0
  for seed in $SEEDS; do
    run="$OUT/pt-glow-embedlab-s$seed"
    e() { "$BIN" --seed "$seed" train glow --data data/mnist --train-limit "$PT_LIMIT" --epochs "$PT_EPOCHS" --schedule "$PT_SCHEDULE" \
            --no-images --iwae-k 0 --overwrite --out "$run" >"$run.log" 2>&1; }
    p() { "$PY" bench/glow_pytorch.py --data data/mnist --train-limit "$PT_LIMIT" --epochs "$PT_EPOCHS" --schedule "$PT_SCHEDULE" \
            --seed "$seed" >"$OUT/pt-glow-pytorch-s$seed.jsonl"; }
    echo "pytorch side by side, seed $seed" >&2
    if [ $((i % 2)) = 0 ]; then e; p; else p; e; fi
    # Fidelity of the function itself: PyTorch's code on embedlab's trained weights.
    "$PY" bench/glow_pytorch.py --data data/mnist --seed "$seed" --load "$run/best.safetensors" \
      >"$OUT/pt-glow-load-s$seed.json"
    i=$((i + 1))
  done
fi

if has results; then
  for data in mnist fashion-mnist; do
    for kind in glow realnvp iresnet; do
      run="$OUT/$data-$kind"
      echo "results: $kind on $data ($LIMIT images x $EPOCHS)" >&2
      "$BIN" --seed 1 train "$kind" --data "data/$data" --train-limit "$LIMIT" --epochs "$EPOCHS" \
        --iwae-images 200 --overwrite --out "$run" >"$run.log" 2>&1
    done
  done
fi

if has ood; then
  for kind in glow realnvp iresnet; do
    for pair in "fashion-mnist mnist" "mnist fashion-mnist"; do
      set -- $pair
      [ -d "$OUT/$1-$kind" ] || continue
      echo "ood: $kind trained on $1, scored on $2" >&2
      "$BIN" eval "$OUT/$1-$kind" --on "data/$2" --iwae-k 0 >"$OUT/$1-$kind.on-$2.txt" 2>&1
    done
  done
fi

if has stability; then
  for fam in glow iresnet vae dcgan; do
    for lr in $ST_LRS; do
      for seed in $SEEDS; do
        run="$OUT/st-$fam-lr$lr-s$seed"
        extra=()
        case $fam in
          vae) extra=(--iwae-k 100 --iwae-images 200) ;;
          dcgan) extra=(--arch mlp) ;;
          *) extra=(--iwae-k 0 --eval-repeats 1) ;;
        esac
        echo "stability: $fam lr $lr seed $seed" >&2
        if "$BIN" --seed "$seed" train "$fam" --data data/mnist --train-limit "$ST_LIMIT" --epochs 1 --lr "$lr" \
             --nan-rollbacks 0 --no-images "${extra[@]}" --overwrite --out "$run" >"$run.log" 2>&1; then
          echo ok >"$run.status"
        else
          echo failed >"$run.status"
        fi
      done
    done
  done
fi

if has scaling; then
  : >"$OUT/scaling.jsonl"
  for kind in glow iresnet; do
    for size in 8 16 32 64; do
      [ "$kind" = iresnet ] && [ "$size" = 64 ] && continue
      echo "scaling: $kind ${size}x${size}" >&2
      "$BIN" bench flow --kind "$kind" --size "$size" --batch 16 --iterations 3 >>"$OUT/scaling.jsonl"
    done
  done
fi

if has layout; then
  for layout in native padded32x3; do
    run="$OUT/layout-glow-$layout"
    echo "layout: Glow, $layout" >&2
    "$BIN" --seed 1 train glow --data data/mnist --train-limit "${LAYOUT_LIMIT:-10000}" --epochs 1 --layout "$layout" \
      --levels 2 --iwae-k 0 --no-images --overwrite --out "$run" >"$run.log" 2>&1
  done
fi

if has ablation; then
  # Glow with RealNVP's logit pre-processing: is the gap between them the
  # architecture or the pre-processing? (same budget as `results`)
  run="$OUT/mnist-glow-logit"
  echo "ablation: Glow with the logit pre-processing" >&2
  "$BIN" --seed 1 train glow --data data/mnist --train-limit "$LIMIT" --epochs "$EPOCHS" --preprocess logit \
    --iwae-k 0 --no-images --overwrite --out "$run" >"$run.log" 2>&1
  # The stability study's diverging Glow (lr 0.05) with the default NaN
  # rollbacks (3, learning rate halved each time).
  for seed in $SEEDS; do
    run="$OUT/rb-glow-lr0.05-s$seed"
    echo "rollback: Glow lr 0.05 seed $seed" >&2
    if "$BIN" --seed "$seed" train glow --data data/mnist --train-limit "$ST_LIMIT" --epochs 1 --lr 0.05 \
         --iwae-k 0 --no-images --overwrite --out "$run" >"$run.log" 2>&1; then echo ok >"$run.status"
    else echo failed >"$run.status"; fi
  done
fi

if has lipschitz; then
  for c in 0.5 0.7 0.9 0.99; do
    run="$OUT/lip-iresnet-c$c"
    echo "lipschitz: i-ResNet c = $c" >&2
    "$BIN" --seed 1 train iresnet --data data/mnist --train-limit 2000 --epochs 1 --coeff "$c" \
      --eval-repeats 1 --iwae-k 0 --no-images --overwrite --out "$run" >"$run.log" 2>&1
  done
fi

"$PY" bench/flows_summary.py "$OUT" | tee "$OUT/summary.md"
