#!/usr/bin/env python3
"""The tables of bench/precision.sh: speed of every setting of embedlab and
of PyTorch per family, the ratio of the fastest of each, and the quality of
float32 against the reduced-precision setting at the same budget."""
import json
import os
import statistics
import sys

sys.path.insert(0, "bench")
from runs import epochs, metric  # noqa: E402

out, families, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
SETTINGS = ["f32", "f32-cl", "bf16", "bf16-cl"]
REFS = ["fp32", "fp32-cl", "bf16", "bf16-cl"]
LABEL = {"f32": "f32", "f32-cl": "f32 + channels-last", "bf16": "bf16", "bf16-cl": "bf16 + channels-last",
         "fp32": "fp32 eager", "fp32-cl": "fp32 + channels-last"}


def ebl_speed(fam, name):
    run = os.path.join(out, f"speed-{fam}-embedlab-{name}")
    e = epochs(run)
    return e[-1]["items_per_second"] if e else None


def ref_speed(fam, name):
    path = os.path.join(out, f"speed-{fam}-pytorch-{name}.jsonl")
    if not os.path.isfile(path):
        return None
    rows = [json.loads(l) for l in open(path) if '"epoch"' in l]
    return rows[-1]["images_per_second"] if rows else None


def f(v, d=0):
    return "–" if v is None else f"{v:.{d}f}"


cpu = open(os.path.join(out, "cpu.txt")).read().split(":")[-1].strip() if os.path.isfile(os.path.join(out, "cpu.txt")) else "?"
flags = open(os.path.join(out, "cpu-bf16.txt")).read().strip() if os.path.isfile(os.path.join(out, "cpu-bf16.txt")) else ""
print(f"CPU: {cpu} ({flags or 'no bf16 instructions'}), {os.environ.get('OMP_NUM_THREADS', '?')} threads\n")
print("Speed (training images/s, the second epoch):\n")
print("| family | " + " | ".join(f"embedlab {LABEL[s]}" for s in SETTINGS) + " | "
      + " | ".join(f"PyTorch {LABEL[r]}" for r in REFS) + " | embedlab best / PyTorch best |")
print("|---" * (2 + len(SETTINGS) + len(REFS)) + "|")
for fam in families:
    e = [ebl_speed(fam, s) for s in SETTINGS]
    p = [ref_speed(fam, r) for r in REFS]
    be, bp = max([v for v in e if v] or [0]), max([v for v in p if v] or [0])
    ratio = be / bp if bp else None
    print(f"| {fam} | " + " | ".join(f(v) for v in e) + " | " + " | ".join(f(v) for v in p)
          + f" | **{f(ratio, 2)}** |")


def quality(fam, run):
    if fam in ("dcgan", "wgan-gp"):
        return metric(run, "FD"), metric(run, "confident samples")
    if fam == "vae":
        return metric(run, "test ELBO"), None
    return metric(run, "test bits/dim"), None


def ms(v, d):
    v = [x for x in v if x is not None]
    if not v:
        return "–"
    return f"{statistics.mean(v):.{d}f} ± {statistics.stdev(v):.{d}f}" if len(v) > 1 else f"{v[0]:.{d}f}"


print("\nQuality at the same budget (mean ± sd over seeds " + ", ".join(seeds) + "; per seed in brackets):\n")
print("| family | metric | float32 | reduced precision | setting | float32 images/s | reduced images/s |")
print("|---|---|---|---|---|---|---|")
for fam in families:
    fast = "bf16-cl" if fam == "glow" else "bf16"
    name = {"dcgan": "FD (confident %)", "wgan-gp": "FD (confident %)", "vae": "test ELBO", "glow": "test bits/dim"}[fam]
    d = 3 if fam == "glow" else (2 if fam == "vae" else 1)
    cols, speeds = [], []
    for s in ("f32", fast):
        runs = [os.path.join(out, f"quality-{fam}-{s}-s{seed}") for seed in seeds]
        runs = [r for r in runs if os.path.isfile(os.path.join(r, "report.json"))]
        q = [quality(fam, r) for r in runs]
        main = [a for a, _ in q]
        conf = [b for _, b in q if b is not None]
        txt = ms(main, d) + " [" + ", ".join(f(a, d) for a in main) + "]"
        if conf:
            txt += f" ({ms(conf, 1)}%)"
        cols.append(txt)
        speeds.append(statistics.median([r2["items_per_second"] for r in runs for r2 in epochs(r)]) if runs else None)
    print(f"| {fam} | {name} | {cols[0]} | {cols[1]} | {LABEL[fast]} | {f(speeds[0])} | {f(speeds[1])} |")
for name in ("fp32", "bf16"):
    path = os.path.join(out, f"quality-glow-pytorch-{name}-s1.jsonl")
    if os.path.isfile(path):
        fin = [json.loads(l) for l in open(path) if '"final"' in l]
        if fin:
            print(f"\nPyTorch Glow, {LABEL.get(name, name)} autocast" if name == "bf16" else "\nPyTorch Glow, fp32", end="")
            print(f", same budget, seed 1: test {fin[0]['test_bpd']:.3f} bits/dim")
