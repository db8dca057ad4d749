#!/usr/bin/env bash
# The representation benchmark of docs/representations.md: every
# representation on one data set (D=data/mnist or data/fashion-mnist), three
# seeds of each learned one, then the scikit-learn self-check.
# A run folder that already holds a finished run (report.json) is kept, so
# an interrupted script continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
B=./target/release/embedlab
D=${D:-data/mnist}
N=$(basename $D)
R=${OUT:-runs/represent}/$N
mkdir -p $R
common="--data $D --train-limit 10000 --valid 1000 --no-images --iwae-k 0"
# train NAME SEED MODEL OPTIONS...: one run, unless it finished before.
train() {
  local name=$1 s=$2; shift 2
  local dir=$R/$name-s$s
  [ -f $dir/report.json ] && return 0
  echo "$(date +%T) $name seed $s"
  $B --seed $s train "$@" $common --out $dir --overwrite >$R/$name-s$s.log 2>&1
}
for s in 0 1 2; do
  train ae $s ae --epochs 5
  train linear-ae $s ae --linear --epochs 5
  train vae $s vae --epochs 5
  train beta-vae $s vae --beta 4 --epochs 5
  train cvae $s cvae --epochs 5
  train wae-mmd $s wae-mmd --epochs 5
  train wae-gan $s wae-gan --epochs 5
  train classifier $s classifier --epochs 2
  train drlim-knn $s drlim --epochs 20 --graph knn
  train drlim-labels $s drlim --epochs 20 --graph labels
  train glow $s glow --epochs 3
  train dcgan $s dcgan --epochs 5
done
runs=""
for d in $R/*-s?; do runs="$runs --run $d"; done
echo "$(date +%T) scoring"
# SCORE: scoring options (docs' Fashion-MNIST table: "--train-limit 5000
# --test-limit 5000 --labels 10,100 --draws 2", for time).
$B represent --data $D $runs ${SCORE:-} --out $R/represent --overwrite --export $R/export
# The self-check: scikit-learn's LogisticRegression and KNeighborsClassifier
# on the exported pixel and PCA features (a venv of its own, nothing system-wide).
V=${SKVENV:-/tmp/skvenv}
[ -x $V/bin/python ] || { python3 -m venv $V && $V/bin/pip install -q scikit-learn numpy; }
for r in pixels pca; do $V/bin/python bench/represent_sklearn.py $R/export/$r; done
