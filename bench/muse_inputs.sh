#!/usr/bin/env bash
# The inputs of the MUSE benchmarks (bench/muse_supervised.sh,
# bench/muse_unsupervised.sh, bench/unsupervised_robustness.sh), made once in
# $OUT: GloVe 50d and French fastText (PCA 50) as .vec files, the rotation
# case (GloVe against a randomly rotated copy with 1% noise; identity
# dictionaries, 5,000 train / 1,500 test words) and the FreeDict splits.
#
#   bench/muse_inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
E=${E:-${EMBEDLAB:-target/release/embedlab}}
PY=${PY:-${PYTHON:-.venv/bin/python}}
OUT=${OUT:-bench/out/muse-supervised}
mkdir -p "$OUT"
[ -x "$E" ] || cargo build --release
[ -f data/en/glove_6B_50d_emb.npy ] || scripts/fetch-data.sh

# Inputs: both tools read the same .vec files and MUSE-format dictionaries.
[ -f "$OUT/en.vec" ] || $E convert embeddings data/en/glove_6B_50d_emb.npy "$OUT/en.vec" --max-vocab 200000 --lowercase
[ -f "$OUT/fr50.vec" ] || $E convert embeddings data/fr/vocab "$OUT/fr50.vec" --lowercase --pca 50
if [ ! -f "$OUT/rot.vec" ]; then
  "$PY" - "$OUT/en.vec" "$OUT/rot.vec" <<'PYEOF'
import sys, numpy as np
src, dst = sys.argv[1:]
lines = open(src, encoding="utf-8").read().split("\n")[1:]
lines = [l for l in lines if l]
words = [l.split(" ", 1)[0] for l in lines]
x = np.array([np.array(l.split(" ")[1:], dtype=np.float32) for l in lines])
rng = np.random.default_rng(0)
q, _ = np.linalg.qr(rng.standard_normal((x.shape[1], x.shape[1])))
y = x @ q + 0.01 * np.linalg.norm(x, axis=1).mean() * rng.standard_normal(x.shape)
with open(dst, "w", encoding="utf-8") as f:
    f.write(f"{len(words)} {x.shape[1]}\n")
    for w, v in zip(words, y):
        f.write(w + " " + " ".join(f"{a:.6f}" for a in v) + "\n")
PYEOF
  awk 'NR>1 && NR<=6501 {print $1" "$1}' "$OUT/en.vec" > "$OUT/rot.all.txt"
  head -n 5000 "$OUT/rot.all.txt" > "$OUT/rot.train.txt"
  tail -n 1500 "$OUT/rot.all.txt" > "$OUT/rot.test.txt"
fi
# FreeDict splits as embedlab makes them (MUSE-style, by source frequency).
split_dict() { # name src tgt dictd
  [ -f "$OUT/$1.test.txt" ] && return 0
  $E align supervised --src "$2" --tgt "$3" --dict "$4" --lowercase --out "$OUT/split-$1" >/dev/null 2>&1
  cp "$OUT/split-$1/dict.train.txt" "$OUT/$1.train.txt"
  cp "$OUT/split-$1/dict.test.txt" "$OUT/$1.test.txt"
}
split_dict en-fr "$OUT/en.vec" "$OUT/fr50.vec" data/dict/freedict-eng-fra.index
split_dict fr-en "$OUT/fr50.vec" "$OUT/en.vec" data/dict/freedict-fra-eng.index

