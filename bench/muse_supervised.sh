#!/usr/bin/env bash
# Supervised word translation: embedlab beside MUSE's supervised.py, on the
# same vectors, dictionaries and machine, timing each whole pipeline (load,
# normalise, Procrustes + 5 refinement iterations, evaluate).
#
#   MUSE_DIR=/path/to/MUSE bench/muse_supervised.sh
#
# MUSE is not part of embedlab: check out its public repository yourself and
# point MUSE_DIR at it. Its Python needs torch, numpy and scipy (faiss-cpu
# optional, used when present); .venv is used for it (run scripts/setup.sh,
# then `.venv/bin/pip install scipy faiss-cpu`).
#
# Cases (MUSE needs equal dimensions, so the 300-d French side is reduced to 50
# by PCA for both tools):
#   en-fr   GloVe 6B 50d (top 200k) → fastText fr (PCA 50), FreeDict eng-fra
#   fr-en   the reverse, FreeDict fra-eng
#   rot     GloVe 50d → a randomly rotated, noisy copy of itself (known answer);
#           top 50k words on both sides (at 200k × 200k every CSLS pass costs
#           minutes here, and MUSE makes several per iteration)
#
# SUMMARY_ONLY=1 re-prints the table from the runs already in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MUSE_DIR:?set MUSE_DIR to a checkout of MUSE}"
E=${EMBEDLAB:-target/release/embedlab}
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/out/muse-supervised}
CASES=${CASES:-"en-fr fr-en rot"}
mkdir -p "$OUT"
[ -x "$E" ] || cargo build --release
OUT="$OUT" E="$E" PY="$PY" bench/muse_inputs.sh

peak() { awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$1"; }

for c in $CASES; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  V=200000
  case $c in
    en-fr) S=$OUT/en.vec; T=$OUT/fr50.vec; SL=en; TL=fr ;;
    fr-en) S=$OUT/fr50.vec; T=$OUT/en.vec; SL=fr; TL=en ;;
    rot) S=$OUT/en.vec; T=$OUT/rot.vec; SL=en; TL=es; V=50000 ;;
  esac
  for m in multistep procrustes; do
    echo "== $c: embedlab $m"
    rm -rf "$OUT/embedlab-$m-$c"
    /usr/bin/time -v -o "$OUT/embedlab-$m-$c.time" $E align supervised --src "$S" --tgt "$T" \
      --dict "$OUT/$c.train.txt" --dict-test "$OUT/$c.test.txt" --method $m \
      --normalize renorm,center,renorm --refine 5 --refine-max-rank 10000 \
      --src-max-vocab $V --tgt-max-vocab $V \
      --out "$OUT/embedlab-$m-$c" > "$OUT/embedlab-$m-$c.log" 2>&1
  done
  echo "== $c: MUSE"
  rm -rf "$OUT/muse-$c"
  ( cd "$MUSE_DIR" && /usr/bin/time -v -o "$OLDPWD/$OUT/muse-$c.time" "$OLDPWD/$PY" supervised.py --cuda False \
      --src_lang $SL --tgt_lang $TL --emb_dim 50 --src_emb "$OLDPWD/$S" --tgt_emb "$OLDPWD/$T" \
      --dico_train "$OLDPWD/$OUT/$c.train.txt" --dico_eval "$OLDPWD/$OUT/$c.test.txt" \
      --n_refinement 5 --normalize_embeddings renorm,center,renorm --export "" --max_vocab $V \
      --exp_path "$OLDPWD/$OUT/muse-$c" --seed 0 ) > "$OUT/muse-$c.log" 2>&1
done

"$PY" - "$OUT" $CASES <<'PYEOF'
import json, re, sys
sys.path.insert(0, "bench")
from runs import details
out, cases = sys.argv[1], sys.argv[2:]
def wall(path):
    t = open(path).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t)
    parts = [float(p) for p in m.group(1).split(":")]
    secs = 0
    for p in parts: secs = secs * 60 + p
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    return secs, rss
rows = []
for c in cases:
    logs = [json.loads(l.split("__log__:", 1)[1]) for l in open(f"{out}/muse-{c}.log") if "__log__:" in l]
    # MUSE keeps the iteration with the best precision_at_1-csls_knn_10 (on the test dictionary).
    best = max(logs, key=lambda d: d["precision_at_1-csls_knn_10"])
    ms, mr = wall(f"{out}/muse-{c}.time")
    rows.append(dict(case=c, tool="MUSE procrustes", p1_nn=best["precision_at_1-nn"],
        p1_csls=best["precision_at_1-csls_knn_10"], p10_csls=best["precision_at_10-csls_knn_10"],
        selected_iteration=best["n_iter"], iter0_p1_csls=logs[0]["precision_at_1-csls_knn_10"],
        seconds=ms, peak_mib=mr, speedup=1.0))
    for m in ["multistep", "procrustes"]:
        rep = details(f"{out}/embedlab-{m}-{c}")
        ours = {p["retrieval"]: p["at"] for p in rep["precision"]}
        es, er = wall(f"{out}/embedlab-{m}-{c}.time")
        rows.append(dict(case=c, tool=f"embedlab {m}", p1_nn=ours["nn"]["1"], p1_csls=ours["csls10"]["1"],
            p10_csls=ours["csls10"]["10"], selected_iteration=rep["selected_iteration"], seconds=es,
            peak_mib=er, speedup=ms / es))
json.dump(rows, open(f"{out}/summary.json", "w"), indent=1)
print(f"{'case':6} {'tool':22} {'P@1 nn':>7} {'P@1 csls':>8} {'P@10 csls':>9} {'iter':>4} {'seconds':>8} {'speed-up':>8} {'peak MiB':>8}")
for r in rows:
    print(f"{r['case']:6} {r['tool']:22} {r['p1_nn']:7.2f} {r['p1_csls']:8.2f} {r['p10_csls']:9.2f} {r['selected_iteration']:4d} "
          f"{r['seconds']:8.1f} {r['speedup']:7.1f}x {r['peak_mib']:8.0f}")
PYEOF
