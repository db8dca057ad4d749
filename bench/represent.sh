#!/usr/bin/env bash
# The reduced representation benchmark of docs/representations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
B=./target/release/embedlab
D=${D:-data/mnist}
N=$(basename $D)
R=${OUT:-runs/represent}/$N
mkdir -p $R
common="--data $D --train-limit 10000 --valid 1000 --no-images --iwae-k 0"
for s in 0 1 2; do
  $B --seed $s train ae $common --epochs 5 --out $R/ae-s$s --overwrite >/dev/null 2>&1
  $B --seed $s train vae $common --epochs 5 --out $R/vae-s$s --overwrite >/dev/null 2>&1
  $B --seed $s train classifier $common --epochs 2 --out $R/classifier-s$s --overwrite >/dev/null 2>&1
  $B --seed $s train drlim $common --epochs 20 --graph knn --out $R/drlim-knn-s$s --overwrite >/dev/null 2>&1
  $B --seed $s train drlim $common --epochs 20 --graph labels --out $R/drlim-labels-s$s --overwrite >/dev/null 2>&1
done
runs=""
for d in $R/*-s?; do runs="$runs --run $d"; done
$B represent --data $D $runs --out $R/represent --overwrite --export $R/export
# The self-check: scikit-learn's LogisticRegression and KNeighborsClassifier
# on the exported pixel and PCA features (a venv of its own, nothing system-wide).
V=${SKVENV:-/tmp/skvenv}
[ -x $V/bin/python ] || { python3 -m venv $V && $V/bin/pip install -q scikit-learn numpy; }
for r in pixels pca; do $V/bin/python bench/represent_sklearn.py $R/export/$r; done
