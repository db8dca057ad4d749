#!/usr/bin/env python3
"""The stability study's table in docs/studies.md, from a study report.

    python3 scripts/study-table.py studies/stability/report.json

One row per model, one column per position of its value on the study's one
varying axis (the learning rates ×1, ×3, ×10 of studies/stability.toml);
each entry is the model's main metric as mean ± sd over the finished seeds,
with the seeds behind it, the classes covered, the runs flagged diverged
or collapsed, and non-finite samples when there were any.
"""
import json
import sys

MAIN = ["test bits/dim", "test ELBO", "FD"]


def entry(cell):
    m = cell["metrics"]
    name = next((k for k in MAIN if k in m), None)
    if name is None:
        return "—", "—"
    v = m[name]
    text = f"{v['mean']:.2f}" + (f" ± {v['sd']:.2f}" if v["n"] > 1 else "")
    notes = [f"n={v['n']}"]
    if "classes covered" in m:
        c = m["classes covered"]
        notes.append(f"{c['mean']:.1f} classes" + (f" (n={c['n']})" if c["n"] != v["n"] else ""))
    if "confident samples" in m:
        c = m["confident samples"]
        notes.append(f"{c['mean']:.0f}% conf." + (f" (n={c['n']})" if c["n"] != v["n"] else ""))
    nf = m.get("non-finite samples")
    if nf and nf["mean"] > 0:
        notes.append(f"non-finite samples {nf['mean']:.1f}%")
    for key, word in [("diverged", "div."), ("collapsed", "coll."), ("failed", "failed"),
                      ("non_finite", "NaN stop"), ("rolled_back", "rolled back")]:
        if cell.get(key):
            notes.append(f"{cell[key]} {word}")
    return name, f"{text} ({'; '.join(notes)})"


def main(path):
    report = json.load(open(path))
    cells = report["details"]["cells"]
    models = []
    for c in cells:
        if c["model"] not in models:
            models.append(c["model"])
    print("| family | metric | lr ×1 | lr ×3 | lr ×10 |")
    print("|---|---|---|---|---|")
    for model in models:
        mine = [c for c in cells if c["model"] == model]
        mine.sort(key=lambda c: float(c["values"].get("lr", 0)))
        names, texts = zip(*(entry(c) for c in mine))
        name = next((n for n in names if n != "—"), "—")
        print(f"| {model} | {name} | " + " | ".join(texts) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "studies/stability/report.json")
