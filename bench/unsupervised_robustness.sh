#!/usr/bin/env bash
# Robustness of the two unsupervised methods: success rate over seeds on the
# rotation task and on en↔fr (a run succeeds when CSLS P@1 > 5%, the criterion
# of Artetxe et al. 2018; its mean P@1 is reported as well).
#
#   bench/unsupervised_robustness.sh        (uses the MUSE benchmark's inputs)
#
# Tasks: rot (GloVe top 20k → its randomly rotated noisy copy), en-fr, fr-en
# (GloVe 50d ↔ French fastText PCA-50, top 20k each, FreeDict test splits).
# Methods: adversarial (MUSE settings, 2×DIS_HIDDEN discriminator, 5 epochs of
# EPOCH_SIZE words, 5 refinement iterations), adversarial-restarts (the same,
# RESTARTS times with seeds s, s+1000, …, keeping the map of the highest
# refined criterion) and self-learning from the similarity structure (cutoff
# 10k, patience 10, at most MAX_IT iterations).
set -euo pipefail
cd "$(dirname "$0")/.."
E=${EMBEDLAB:-target/release/embedlab}
PY=${PYTHON:-.venv/bin/python}
IN=${IN:-bench/out/muse-supervised}
OUT=${OUT:-bench/out/unsupervised-robustness}
TASKS=${TASKS:-"rot en-fr fr-en"}
METHODS=${METHODS:-"adversarial self-learning"}
SEEDS=${SEEDS:-"1 2 3 4 5"}
V=20000
EPOCH_SIZE=${EPOCH_SIZE:-200000}
DIS_HIDDEN=${DIS_HIDDEN:-512}
MAX_IT=${MAX_IT:-40}
RESTARTS=${RESTARTS:-3}
THREADS=${THREADS:-0}   # libtorch threads per run (0: its default)
mkdir -p "$OUT"
[ -x "$E" ] || cargo build --release
[ -f "$IN/fr-en.test.txt" ] || OUT="$IN" E="$E" PY="$PY" bench/muse_inputs.sh

# Seeds outermost: an interrupted run still covers every task and method.
for s in $SEEDS; do
  for t in $TASKS; do
    [ -n "${SUMMARY_ONLY:-}" ] && break 2
    case $t in
      rot) S=$IN/en.vec; T=$IN/rot.vec; D=$IN/rot.test.txt ;;
      en-fr) S=$IN/en.vec; T=$IN/fr50.vec; D=$IN/en-fr.test.txt ;;
      fr-en) S=$IN/fr50.vec; T=$IN/en.vec; D=$IN/fr-en.test.txt ;;
    esac
    for m in $METHODS; do
      r=$t-$m-s$s
      [ -f "$OUT/$r/report.json" ] && continue
      echo "== $r"
      case $m in
        adversarial) extra="--epoch-size $EPOCH_SIZE --dis-hidden $DIS_HIDDEN --refinement 5" ;;
        adversarial-restarts) extra="--epoch-size $EPOCH_SIZE --dis-hidden $DIS_HIDDEN --refinement 5 --restarts $RESTARTS" ;;
        self-learning) extra="--init structure --cutoff 10000 --patience 10 --max-iterations $MAX_IT" ;;
      esac
      thr=(); [ "$THREADS" != 0 ] && thr=(--threads "$THREADS")
      $E --seed "$s" "${thr[@]}" align unsupervised --method "${m%-restarts}" --src "$S" --tgt "$T" \
        --src-max-vocab $V --tgt-max-vocab $V --dict-test "$D" $extra \
        --out "$OUT/$r" > "$OUT/$r.log" 2>&1 || echo "   failed: see $OUT/$r.log"
    done
  done
done

"$PY" - "$OUT" <<'PYEOF'
import glob, json, os, sys, statistics as st
sys.path.insert(0, "bench")
from runs import details
out = sys.argv[1]
rows = {}
for rep in sorted(glob.glob(f"{out}/*/report.json")):
    run = os.path.basename(os.path.dirname(rep))
    task, rest = run.split("-", 1) if not run.startswith(("en-fr", "fr-en")) else (run[:5], run[6:])
    method, seed = rest.rsplit("-s", 1)
    r = details(rep)
    p1 = {p["retrieval"]: p["at"]["1"] for p in r["precision"]}["csls10"]
    rows.setdefault((task, method), []).append((int(seed), p1, r["seconds"]))
summary = []
print(f"{'task':6} {'method':20} {'runs':>4} {'success':>7} {'mean P@1':>8} {'min':>6} {'max':>6} {'mean s':>7}")
for (task, method), v in sorted(rows.items()):
    ps = [p for _, p, _ in v]
    ok = sum(p > 5.0 for p in ps)
    summary.append(dict(task=task, method=method, runs=len(v), successes=ok,
        p1=[p for _, p, _ in sorted(v)], mean_p1=st.mean(ps), mean_seconds=st.mean(s for *_, s in v)))
    print(f"{task:6} {method:20} {len(v):4d} {ok:3d}/{len(v):<3d} {st.mean(ps):8.2f} {min(ps):6.2f} {max(ps):6.2f} {st.mean(s for *_, s in v):7.0f}")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
PYEOF
