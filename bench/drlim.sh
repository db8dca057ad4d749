#!/usr/bin/env bash
# DrLIM's experiments (b) shifts and (c) controlled variations (docs/representations.md).
set -euo pipefail
cd "$(dirname "$0")/.."
B=./target/release/embedlab
X=${OUT:-runs/drlim}
mkdir -p $X/shift $X/var $X/data
# The data: 3,000 MNIST training and 1,000 test images (data shifted's limits) at shifts
# -6..6; Fashion-MNIST's training image 0 (an ankle boot) at 18 angles x 9
# shifts (max 4 px), 6 noisy copies a cell (noise sd 8 grey levels).
[ -d $X/data/mnist-shifted ] || $B data shifted data/mnist $X/data/mnist-shifted --train-limit 3000 --test-limit 1000
[ -d $X/data/variations-18x9 ] || $B data variations data/fashion-mnist $X/data/variations-18x9 --index 0
for s in 0 1 2; do
  # (b) trained on 3,000 untranslated MNIST digits, graph: their 5 nearest
  # neighbours; the shifts are the known transformations.
  $B --seed $s train drlim --data data/mnist --train-limit 3000 --valid 500 --arch conv --hidden 128 \
     --graph knn --shifts=-6,-3,3,6 --epochs 30 --iwae-k 0 --out $X/shift/drlim-s$s --overwrite > $X/shift-drlim-s$s.log 2>&1
  $B --seed $s train ae --data $X/data/mnist-shifted --latent 2 --valid 1500 --epochs 10 --iwae-k 0 --no-images \
     --out $X/shift/ae2-s$s --overwrite > $X/shift-ae-s$s.log 2>&1
  # (c) one ankle boot, 18 angles × 9 shifts, 6 noisy copies: a 3-D map, the
  # grid graph (angle wraps around).
  $B --seed $s train drlim --data $X/data/variations-18x9 --graph grid --grid 18x9 --circular-rows --dim 3 \
     --epochs 200 --batch-size 64 --iwae-k 0 --no-images --out $X/var/drlim-s$s --overwrite > $X/var-drlim-s$s.log 2>&1
done
$B represent --data $X/data/mnist-shifted --other-data --run $X/shift/drlim-s0 --run $X/shift/drlim-s1 --run $X/shift/drlim-s2 \
   --run $X/shift/ae2-s0 --run $X/shift/ae2-s1 --run $X/shift/ae2-s2 --baselines pixels,pca --pca-dim 2 \
   --train-limit 15000 --test-limit 5000 --labels 10,100 --out $X/shift/represent --overwrite
$B represent --data $X/data/variations-18x9 --run $X/var/drlim-s0 --run $X/var/drlim-s1 --run $X/var/drlim-s2 \
   --baselines pca,pixels --pca-dim 3 --labels 1 --k 1 --out $X/var/represent --overwrite
