#!/usr/bin/env bash
# bfloat16 and channels-last training against float32, embedlab beside
# PyTorch's CPU configurations (fp32 eager, bf16 autocast, each with and
# without channels-last), on this machine, in one run.
#   speed:   training images per second (median over the epochs) of the
#            conv DCGAN, WGAN-GP, conv VAE and Glow; the references are
#            bench/gan_pytorch.py, bench/vae_pytorch.py, bench/glow_pytorch.py
#            (the same models, data split and rounds), run with --autocast
#            bf16 / --channels-last. Ratios: embedlab's fastest against
#            PyTorch's fastest.
#   quality: each family trained by embedlab in float32 and in its fastest
#            reduced-precision setting, SEEDS seeds, the same budget;
#            scored the same way (GANs: Fréchet distance and the
#            confident-sample rate of N samples in the classifier's
#            features; VAE: test ELBO; Glow: test bits/dim) — and
#            PyTorch's Glow at the same budget in fp32 and bf16 autocast.
# Usage: bench/precision.sh   (SEEDS, LIMIT, EPOCHS, FLOW_EPOCHS, N, CLS, FAMILIES to change)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/embedlab}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/mnist}
OUT=${OUT:-bench/out/precision}
CLS=${CLS:-runs/mnist-classifier}
SEEDS=${SEEDS:-1 2}
LIMIT=${LIMIT:-20000}
EPOCHS=${EPOCHS:-3}
FLOW_EPOCHS=${FLOW_EPOCHS:-2}
SPEED_LIMIT=${SPEED_LIMIT:-12800}
N=${N:-5000}
FAMILIES=${FAMILIES:-dcgan wgan-gp vae glow}
export OMP_NUM_THREADS=${THREADS:-2}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -f "$CLS/report.json" ]; then
  echo "training the scoring classifier in $CLS" >&2
  "$BIN" --seed 0 train classifier --data "$DATA" --epochs 3 --no-images --overwrite --out "$CLS" >"$OUT/classifier.log" 2>&1
fi
grep -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ' >"$OUT/cpu-bf16.txt" || true
lscpu | grep 'Model name' >"$OUT/cpu.txt" || true

# The family's embedlab options and its PyTorch reference.
ebl_opts() {
  case $1 in
    dcgan|wgan-gp) echo "--arch conv --iwae-k 0" ;;
    vae) echo "--arch conv --iwae-images 0" ;;
    glow) echo "--iwae-images 0" ;;
  esac
}
ref() { # family config-flags out.jsonl
  local fam=$1 flags=$2 out=$3
  case $fam in
    dcgan|wgan-gp) "$PY" bench/gan_pytorch.py --kind "$fam" --data "$DATA" --epochs 2 --train-limit "$SPEED_LIMIT" $flags >"$out" ;;
    vae) "$PY" bench/vae_pytorch.py --arch conv --data "$DATA" --epochs 2 --train-limit "$SPEED_LIMIT" --iwae-k 0 $flags >"$out" ;;
    glow) "$PY" bench/glow_pytorch.py --data "$DATA" --epochs 2 --train-limit "$SPEED_LIMIT" $flags >"$out" ;;
  esac
}
# embedlab's settings: name and flags.
SETTINGS=("f32|--precision f32" "f32-cl|--precision f32 --channels-last" "bf16|--precision bf16" "bf16-cl|--precision bf16 --channels-last")
REFS=("fp32|" "fp32-cl|--channels-last" "bf16|--autocast bf16" "bf16-cl|--autocast bf16 --channels-last")

# Speed: every setting of both, alternating, 2 epochs of SPEED_LIMIT images.
for fam in $FAMILIES; do
  for i in 0 1 2 3; do
    name=${SETTINGS[$i]%%|*}; flags=${SETTINGS[$i]#*|}
    echo "speed: $fam embedlab $name" >&2
    "$BIN" --seed 1 train "$fam" --data "$DATA" $(ebl_opts "$fam") --epochs 2 --train-limit "$SPEED_LIMIT" \
      --no-images $flags --overwrite --out "$OUT/speed-$fam-embedlab-$name" >"$OUT/speed-$fam-embedlab-$name.log" 2>&1
    name=${REFS[$i]%%|*}; flags=${REFS[$i]#*|}
    echo "speed: $fam PyTorch $name" >&2
    ref "$fam" "$flags" "$OUT/speed-$fam-pytorch-$name.jsonl"
  done
done

# Quality: float32 and the fastest reduced-precision setting (bf16; with
# channels-last for Glow, where it pays), at the same budget.
fast() { [ "$1" = glow ] && echo "bf16-cl|--precision bf16 --channels-last" || echo "bf16|--precision bf16"; }
for fam in $FAMILIES; do
  e=$EPOCHS; [ "$fam" = glow ] && e=$FLOW_EPOCHS
  cls=""; case $fam in dcgan|wgan-gp) cls="--classifier $CLS --gen-samples $N --epoch-samples 0" ;; esac
  for seed in $SEEDS; do
    for s in "f32|--precision f32" "$(fast "$fam")"; do
      name=${s%%|*}; flags=${s#*|}
      run="$OUT/quality-$fam-$name-s$seed"
      [ -f "$run/report.json" ] && continue
      echo "quality: $fam $name seed $seed ($e epochs of $LIMIT images)" >&2
      "$BIN" --seed "$seed" train "$fam" --data "$DATA" $(ebl_opts "$fam") --epochs "$e" --train-limit "$LIMIT" \
        --no-images $cls $flags --overwrite --out "$run" >"$run.log" 2>&1
    done
  done
  if [ "$fam" = glow ]; then
    for s in "fp32|" "bf16|--autocast bf16"; do
      name=${s%%|*}; flags=${s#*|}
      out="$OUT/quality-glow-pytorch-$name-s1.jsonl"
      [ -s "$out" ] && continue
      echo "quality: glow PyTorch $name seed 1" >&2
      "$PY" bench/glow_pytorch.py --data "$DATA" --epochs "$FLOW_EPOCHS" --train-limit "$LIMIT" --seed 1 $flags >"$out"
    done
  fi
done

"$PY" bench/precision_summary.py "$OUT" "$FAMILIES" "$SEEDS"
