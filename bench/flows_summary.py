#!/usr/bin/env python3
"""Tables of bench/flows.sh's runs (markdown on stdout)."""
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, "bench")
from runs import details, epochs, metric, report  # noqa: E402

out = sys.argv[1]


def mean_sd(v):
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}"


def speed(run):
    # Images over seconds across the epochs (the harmonic mean of epoch speeds).
    e = epochs(run)
    return len(e) / sum(1 / r["items_per_second"] for r in e) if e else None


# --- PyTorch side by side
rows = []
for log in sorted(glob.glob(f"{out}/pt-glow-pytorch-s*.jsonl")):
    seed = re.search(r"-s(\d+)\.jsonl", log).group(1)
    lines = [json.loads(l) for l in open(log) if l.strip()]
    pt_speed = sum(1 for l in lines if "epoch" in l) / sum(1 / l["images_per_second"] for l in lines if "epoch" in l)
    pt_bpd = [l for l in lines if l.get("final")][0]["test_bpd"]
    run = f"{out}/pt-glow-embedlab-s{seed}"
    if not os.path.isfile(f"{run}/report.json"):
        continue
    rows.append((seed, metric(run, "test bits/dim"), pt_bpd, speed(run), pt_speed))
if rows:
    print("## Glow: embedlab beside PyTorch\n")
    print("| seed | embedlab bits/dim | PyTorch bits/dim | difference | embedlab images/s | PyTorch images/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for s, eb, pb, es, ps in rows:
        print(f"| {s} | {eb:.4f} | {pb:.4f} | {eb - pb:+.4f} | {es:.0f} | {ps:.0f} | {es / ps:.2f}× |")
    eb = statistics.mean(r[1] for r in rows)
    pb = statistics.mean(r[2] for r in rows)
    es = sum(r[3] for r in rows)
    ps = sum(r[4] for r in rows)
    print(f"| mean | {eb:.4f} | {pb:.4f} | {eb - pb:+.4f} | {es / len(rows):.0f} | {ps / len(rows):.0f} | {es / ps:.2f}× |\n")
    for s_, eb_, *_ in rows:
        f = f"{out}/pt-glow-load-s{s_}.json"
        if os.path.isfile(f):
            v = json.loads(open(f).read().strip().splitlines()[-1])["test_bpd"]
            print(f"- seed {s_}: embedlab's trained weights evaluated by the PyTorch code: {v:.4f} bits/dim (embedlab: {eb_:.4f})")
    print()

# --- Results
res = []
for data in ["mnist", "fashion-mnist"]:
    for kind in ["glow", "realnvp", "iresnet"]:
        run = f"{out}/{data}-{kind}"
        if os.path.isfile(f"{run}/report.json"):
            res.append((data, kind, run))
if res:
    print("## Test bits/dim (native 28×28×1, 256 bins, dequantisation and pre-processing counted)\n")
    print("| data | flow | test bits/dim | sd (repeats) | inverse error | rec. MSE | parameters | training s | images/s | rollbacks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for data, kind, run in res:
        d = details(run)["training"] or {}
        print(f"| {data} | {kind} | {metric(run, 'test bits/dim'):.4f} | {metric(run, 'test bits/dim sd', 0):.4f} "
              f"| {metric(run, 'inverse error (max)'):.1e} | {metric(run, 'rec. MSE'):.1e} | {metric(run, 'parameters'):.0f} "
              f"| {metric(run, 'training time'):.0f} | {metric(run, 'training speed'):.0f} | {d.get('rollbacks', 0)} |")
    print()

# --- OOD
ood = sorted(glob.glob(f"{out}/*.on-*.txt"))
if ood:
    print("## Out of distribution: bits/dim on another set's test images\n")
    print("| flow | trained on | own test set | other test set | bits/dim there |")
    print("|---|---|---|---|---|")
    for f in ood:
        m = re.match(r".*/(.+)-(glow|realnvp|iresnet)\.on-(.+)\.txt", f)
        if not m:
            continue
        data, kind, other = m.groups()
        txt = open(f).read()
        v = re.search(r"test bits/dim\s+([0-9.]+)", txt)
        own = metric(f"{out}/{data}-{kind}", "test bits/dim")
        print(f"| {kind} | {data} | {own:.4f} | {other} | {float(v.group(1)):.4f} |" if v else f"| {kind} | {data} | {own:.4f} | {other} | failed |")
    print()

# --- Stability
st = {}
for status in glob.glob(f"{out}/st-*.status"):
    m = re.match(r".*/st-(.+)-lr([0-9.e-]+)-s(\d+)\.status", status)
    fam, lr, seed = m.groups()
    run = status[: -len(".status")]
    ok = open(status).read().strip() == "ok"
    if fam in ("glow", "iresnet"):
        name, v = "test bits/dim", metric(run, "test bits/dim") if ok else None
    elif fam == "vae":
        name, v = "test NLL (nats)", metric(run, "test NLL") if ok else None
    else:
        name, v = "runs flagged diverged / collapse", None
        if ok:
            v = (metric(run, "epochs flagged: diverged", 0), metric(run, "epochs flagged: collapse", 0))
    nan = False
    if not ok:
        log = open(f"{run}.log").read()
        nan = "NaN" in log or "nan" in log or "inf" in log
    st.setdefault((fam, lr), []).append((seed, ok, nan, v, name))
if st:
    print("## Stability: one epoch of 3,000 MNIST images, NaN rollbacks off\n")
    print("| family | lr | runs | failed (non-finite) | metric | mean ± sd |")
    print("|---|---|---|---|---|---|")
    for (fam, lr), rs in sorted(st.items(), key=lambda kv: (kv[0][0], float(kv[0][1]))):
        vals = [r[3] for r in rs if r[3] is not None]
        if vals and isinstance(vals[0], tuple):
            shown = f"{sum(v[0] > 0 for v in vals)} / {sum(v[1] > 0 for v in vals)}"
        else:
            shown = mean_sd(vals)
        print(f"| {fam} | {lr} | {len(rs)} | {sum(not r[1] for r in rs)} ({sum(r[2] for r in rs)}) | {rs[0][4]} | {shown} |")
    print()

# --- Scaling
sc = f"{out}/scaling.jsonl"
if os.path.isfile(sc):
    print("## Time and memory against dimension (training step, batch 16, random images)\n")
    print("| flow | image | values | ms per image | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for l in open(sc):
        r = json.loads(l)
        print(f"| {r['kind']} | {r['size']}×{r['size']}×{r['channels']} | {r['dims']} | {1000 * r['seconds_per_image']:.2f} | {r['peak_rss_mib']:.0f} |")
    print()

# --- Lipschitz
lip = sorted(glob.glob(f"{out}/lip-iresnet-c*/report.json"))
if lip:
    print("## i-ResNet: inverse against the Lipschitz coefficient (2,000 MNIST images, 1 epoch)\n")
    print("| c | test bits/dim | inverse error | fixed-point note |")
    print("|---|---|---|---|")
    for r in lip:
        run = os.path.dirname(r)
        c = run.rsplit("-c", 1)[1]
        note = [m for m in report(run)["metrics"] if m["name"] == "inverse error (max)"][0]["note"]
        fp = note.split("; ", 1)[1] if "; " in note else ""
        print(f"| {c} | {metric(run, 'test bits/dim'):.4f} | {metric(run, 'inverse error (max)'):.1e} | {fp} |")
    print()

# --- Layout
lay = [(l, f"{out}/layout-glow-{l}") for l in ["native", "padded32x3"]]
lay = [(l, r) for l, r in lay if os.path.isfile(f"{r}/report.json")]
if lay:
    print("## One Glow, two conventions (10,000 MNIST images, 1 epoch)\n")
    print("| layout | values D | test bits/dim | images/s |")
    print("|---|---|---|---|")
    for l, r in lay:
        d = 784 if l == "native" else 3072
        print(f"| {l} | {d} | {metric(r, 'test bits/dim'):.4f} | {metric(r, 'training speed'):.0f} |")
    print()

# --- Ablation and rollback
ab = f"{out}/mnist-glow-logit"
if os.path.isfile(f"{ab}/report.json"):
    print("## Glow with the logit pre-processing (same budget as the results)\n")
    print(f"Glow, logit α = 0.05: test bits/dim {metric(ab, 'test bits/dim'):.4f}\n")
rb = sorted(glob.glob(f"{out}/rb-glow-*.status"))
if rb:
    print("## Glow at lr 0.05 with the default NaN rollbacks\n")
    print("| run | status | rollbacks | test bits/dim |")
    print("|---|---|---|---|")
    for st_ in rb:
        run = st_[: -len(".status")]
        ok = open(st_).read().strip() == "ok"
        rbk = (details(run)["training"] or {}).get("rollbacks") if ok else "–"
        v = f"{metric(run, 'test bits/dim'):.4f}" if ok else "–"
        print(f"| {os.path.basename(run)} | {'finished' if ok else 'failed'} | {rbk} | {v} |")
    print()
