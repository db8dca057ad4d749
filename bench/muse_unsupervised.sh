#!/usr/bin/env bash
# Unsupervised word translation: embedlab's adversarial method beside MUSE's
# unsupervised.py, on the same vectors, machine and settings (MUSE's defaults
# except the sizes below), timing the adversarial phase and the whole run.
#
#   MUSE_DIR=/path/to/MUSE bench/muse_unsupervised.sh
#
# MUSE is not part of embedlab: check out its public repository and point
# MUSE_DIR at it (see bench/muse_supervised.sh for its Python).
#
# Inputs are the supervised benchmark's (made on demand): GloVe 50d, the French
# vectors reduced to 50 dimensions by PCA, a rotated noisy copy of GloVe, and
# the FreeDict test splits. Both tools keep the top V words of each side.
#
# Cases: rot (GloVe → its rotated copy), en-fr, fr-en, and speed-2048
# (rot, MUSE's default 2048-unit discriminator, one short epoch and no
# refinement: speed only).
#
# Settings (both tools): 5 epochs of EPOCH_SIZE words (MUSE: 1000000 — 45 min
# an epoch for MUSE on 2 CPU cores), discriminator 2×DIS_HIDDEN (MUSE: 2048),
# batch 32, 5 discriminator steps, SGD 0.1, decay 0.98, shrink 0.5, β 0.001,
# smoothing 0.1, input dropout 0.1, words drawn from the top V, model selection
# by mean cosine of CSLS translations of the top 10k source words, 5 Procrustes
# refinement iterations, renorm,center,renorm.
#
# SUMMARY_ONLY=1 re-prints the table from the runs already in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MUSE_DIR:?set MUSE_DIR to a checkout of MUSE}"
E=${EMBEDLAB:-target/release/embedlab}
PY=${PYTHON:-.venv/bin/python}
IN=${IN:-bench/out/muse-supervised}
OUT=${OUT:-bench/out/muse-unsupervised}
CASES=${CASES:-"rot en-fr fr-en speed-2048"}
SEEDS=${SEEDS:-"1"}
V=${V:-20000}
EPOCH_SIZE=${EPOCH_SIZE:-200000}
DIS_HIDDEN=${DIS_HIDDEN:-512}
mkdir -p "$OUT/pyshim"
# MUSE (2019) on today's Python and torch: inspect.getargspec is gone since
# Python 3.11, and torch.load refuses numpy arrays by default since torch 2.6.
cat > "$OUT/pyshim/sitecustomize.py" <<'PYEOF'
import inspect
if not hasattr(inspect, "getargspec"):
    inspect.getargspec = lambda f: inspect.getfullargspec(f)[:4]
# MUSE saves its best map as a numpy array, which torch.load refuses by
# default since torch 2.6.
import torch
_load = torch.load
torch.load = lambda *a, **k: _load(*a, **{"weights_only": False, **k})
PYEOF
[ -x "$E" ] || cargo build --release
if [ ! -f "$IN/rot.test.txt" ] || [ ! -f "$IN/fr-en.test.txt" ]; then
  OUT="$IN" CASES=" " bench/muse_supervised.sh
fi

for c in $CASES; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  epochs=5; size=$EPOCH_SIZE; hid=$DIS_HIDDEN; refine=5
  case $c in
    rot) S=$IN/en.vec; T=$IN/rot.vec; SL=en; TL=es; D=$IN/rot.test.txt ;;
    en-fr) S=$IN/en.vec; T=$IN/fr50.vec; SL=en; TL=fr; D=$IN/en-fr.test.txt ;;
    fr-en) S=$IN/fr50.vec; T=$IN/en.vec; SL=fr; TL=en; D=$IN/fr-en.test.txt ;;
    speed-2048) S=$IN/en.vec; T=$IN/rot.vec; SL=en; TL=es; D=$IN/rot.test.txt
      epochs=1; size=32000; hid=2048; refine=0 ;;
    *) echo "unknown case $c"; exit 2 ;;
  esac
  # Discriminator words: the top V, or fewer where a side has fewer words
  # (MUSE refuses more than the smaller vocabulary).
  MF=$(printf '%s\n' "$V" "$(head -1 "$S" | cut -d' ' -f1)" "$(head -1 "$T" | cut -d' ' -f1)" | sort -n | head -1)
  for s in $SEEDS; do
    r=$c-s$s
    echo "== $r: embedlab adversarial"
    rm -rf "$OUT/embedlab-$r"
    /usr/bin/time -v -o "$OUT/embedlab-$r.time" $E --seed "$s" align unsupervised --method adversarial \
      --src "$S" --tgt "$T" --src-max-vocab "$V" --tgt-max-vocab "$V" --dict-test "$D" \
      --normalize renorm,center,renorm --epochs $epochs --epoch-size $size --dis-hidden $hid \
      --dis-most-frequent "$MF" --refinement $refine \
      --out "$OUT/embedlab-$r" > "$OUT/embedlab-$r.log" 2>&1
    echo "== $r: MUSE"
    rm -rf "$OUT/muse-$r"
    ( cd "$MUSE_DIR" && PYTHONPATH="$OLDPWD/$OUT/pyshim" /usr/bin/time -v -o "$OLDPWD/$OUT/muse-$r.time" "$OLDPWD/$PY" unsupervised.py --cuda False \
        --src_lang $SL --tgt_lang $TL --emb_dim 50 --src_emb "$OLDPWD/$S" --tgt_emb "$OLDPWD/$T" \
        --max_vocab "$V" --dis_most_frequent "$MF" --n_epochs $epochs --epoch_size $size \
        --dis_hid_dim $hid --n_refinement $refine --dico_eval "$OLDPWD/$D" \
        --normalize_embeddings renorm,center,renorm --export "" \
        --exp_path "$OLDPWD/$OUT/muse-$r" --seed "$s" ) > "$OUT/muse-$r.log" 2>&1
  done
done

"$PY" - "$OUT" <<'PYEOF'
import glob, json, os, re, sys
sys.path.insert(0, "bench")
from runs import details
out = sys.argv[1]
def wall(path):
    t = open(path).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t)
    secs = 0
    for p in m.group(1).split(":"): secs = secs * 60 + float(p)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    return secs, rss
def elapsed(line):  # MUSE's log prefix: "INFO - date time - h:mm:ss - message"
    h, m, s = line.split(" - ")[2].split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)
rows = []
for log in sorted(glob.glob(f"{out}/muse-*.log")):
    run = os.path.basename(log)[5:-4]
    ours = f"{out}/embedlab-{run}/report.json"
    times = [f"{out}/muse-{run}.time", f"{out}/embedlab-{run}.time"]
    if not os.path.exists(ours) or not all(os.path.exists(t) and "Elapsed" in open(t).read() for t in times):
        continue  # unfinished
    lines = open(log).read().split("\n")
    logs = [json.loads(l.split("__log__:", 1)[1]) for l in lines if "__log__:" in l]
    crit = "mean_cosine-csls_knn_10-S2T-10000"
    best = max(logs, key=lambda d: d[crit])  # what MUSE keeps and exports
    start = next(elapsed(l) for l in lines if "Starting adversarial training epoch 0" in l)
    ends = [elapsed(l) for l in lines if "ITERATIVE PROCRUSTES REFINEMENT" in l]
    last_epoch = [elapsed(l) for l in lines if "End of epoch" in l][-1]
    muse_adv = (ends[0] if ends else last_epoch) - start
    ms, mr = wall(f"{out}/muse-{run}.time")
    rep = details(ours)
    adv = rep["adversarial"]
    p = {q["retrieval"]: q["at"] for q in rep["precision"]}
    es, er = wall(f"{out}/embedlab-{run}.time")
    rows.append(dict(run=run,
        muse_p1_csls=best["precision_at_1-csls_knn_10"], muse_p1_nn=best["precision_at_1-nn"],
        muse_criterion=best[crit], muse_adv_s=muse_adv, muse_s=ms, muse_mib=mr,
        ours_p1_csls=p["csls10"]["1"], ours_p1_nn=p["nn"]["1"], ours_criterion=adv["criterion"],
        ours_adv_s=adv["adversarial_seconds"], ours_s=es, ours_mib=er,
        adv_speedup=muse_adv / adv["adversarial_seconds"], speedup=ms / es))
json.dump(rows, open(f"{out}/summary.json", "w"), indent=1)
print(f"{'run':16} {'MUSE P@1':>8} {'ours P@1':>8} {'MUSE crit':>9} {'ours crit':>9} {'MUSE adv s':>10} {'ours adv s':>10} {'adv x':>6} {'MUSE s':>7} {'ours s':>7} {'x':>5}")
for r in rows:
    print(f"{r['run']:16} {r['muse_p1_csls']:8.2f} {r['ours_p1_csls']:8.2f} {r['muse_criterion']:9.4f} {r['ours_criterion']:9.4f} "
          f"{r['muse_adv_s']:10.0f} {r['ours_adv_s']:10.1f} {r['adv_speedup']:5.1f}x {r['muse_s']:7.0f} {r['ours_s']:7.0f} {r['speedup']:4.1f}x")
PYEOF
