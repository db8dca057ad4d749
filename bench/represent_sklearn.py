#!/usr/bin/env python3
"""Self-check of embedlab's representation benchmark against scikit-learn.

Usage:
    python bench/represent_sklearn.py FOLDER [--tolerance 0.2] [--sklearn-ties]

FOLDER holds the features the benchmark exported:
    train_x.npy (float32, n x d)   train_y.npy (int64, n)
    test_x.npy  (float32, m x d)   test_y.npy  (int64, m)
and embedlab's own numbers in embedlab.json, e.g.
    {"probe_accuracy": 0.912, "knn_accuracy": 0.874, "k": 5,
     "weight_decay": 0.0001, ...}
(accuracies as fractions in [0, 1], as embedlab's functions return them;
values above 1 are taken as percentages). "weight_decay" defaults to
ProbeConfig's 1e-4 when absent.

What it recomputes:

* The linear probe (crates/metrics/src/probe.rs, `linear_probe`) minimises
      (1/n) sum_i CE(W x_i + b, y_i) + (lambda/2) (||W||^2 + ||b||^2)
  on features standardised with the training mean and population standard
  deviation (+1e-6), lambda = weight_decay (Adam's coupled L2 term, which
  reaches the bias too). Multiplying by 1/lambda gives scikit-learn's form
      C sum_i CE + (1/2) ||theta||^2  with  C = 1 / (lambda n).
  The penalised bias is reproduced exactly by appending a constant-1 column
  to the standardised features and fitting without intercept. Multinomial
  (softmax) loss, lbfgs, run to a tight tolerance. For two classes
  scikit-learn fits one weight vector v = w1 - w0; the probe's symmetric
  optimum has w0 = -w1, so its penalty is (lambda/4)||v||^2 and C doubles:
  C = 2 / (lambda n).
* k-NN (embedlab's `knn_accuracy`): KNeighborsClassifier(n_neighbors=k,
  brute force, Euclidean) on the raw (unstandardised) features. embedlab
  breaks a tie in the vote toward the tied label nearest to the query;
  scikit-learn's predict() toward the smallest label. The check uses
  embedlab's rule applied to scikit-learn's neighbours (kneighbors());
  predict()'s accuracy is printed beside it, and --sklearn-ties makes the
  check use it instead.

Exits 1 when a recomputed accuracy differs from embedlab's by more than
--tolerance percentage points (default 0.2), 2 on missing or bad input.

Needs numpy and scikit-learn, e.g. in a throw-away environment:
    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn numpy
    /tmp/skvenv/bin/python bench/represent_sklearn.py FOLDER
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


class BadInput(Exception):
    pass


def load(folder):
    arrays = {}
    for name in ("train_x", "train_y", "test_x", "test_y"):
        path = folder / f"{name}.npy"
        if not path.exists():
            raise BadInput(f"{path} is missing")
        arrays[name] = np.load(path)
    report = folder / "embedlab.json"
    if not report.exists():
        raise BadInput(f"{report} is missing")
    with open(report) as f:
        ours = json.load(f)
    for name in ("train_x", "test_x"):
        a = arrays[name]
        arrays[name] = a.reshape(a.shape[0], -1)
    for name in ("train_y", "test_y"):
        arrays[name] = arrays[name].reshape(-1).astype(np.int64)
    if arrays["train_x"].shape[0] != arrays["train_y"].shape[0]:
        raise BadInput("train_x and train_y differ in length")
    if arrays["test_x"].shape[0] != arrays["test_y"].shape[0]:
        raise BadInput("test_x and test_y differ in length")
    return arrays, ours


def standardise(train_x, test_x):
    """probe.rs's standardisation: training mean and population std + 1e-6
    (computed in float32, as libtorch does there), then a constant-1 column
    standing for the bias."""
    xtr = train_x.astype(np.float32)
    xte = test_x.astype(np.float32)
    mean = xtr.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = xtr.std(axis=0, dtype=np.float64).astype(np.float32) + np.float32(1e-6)
    xtr = ((xtr - mean) / std).astype(np.float64)
    xte = ((xte - mean) / std).astype(np.float64)
    ones = lambda a: np.ones((a.shape[0], 1))  # noqa: E731
    return np.hstack([xtr, ones(xtr)]), np.hstack([xte, ones(xte)])


def probe(a, lam, max_iter, tol):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    xtr, xte = standardise(a["train_x"], a["test_x"])
    ytr, yte = a["train_y"], a["test_y"]
    n = xtr.shape[0]
    classes = np.unique(ytr)
    c = (2.0 if len(classes) == 2 else 1.0) / (lam * n)
    clf = LogisticRegression(C=c, fit_intercept=False, solver="lbfgs", max_iter=max_iter, tol=tol)
    t = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(xtr, ytr)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # The probe's objective at scikit-learn's optimum (multinomial form).
    logits = xtr @ clf.coef_.T
    if logits.shape[1] == 1:  # binary: the symmetric two-logit equivalent
        logits = np.hstack([-logits / 2, logits / 2])
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    idx = np.searchsorted(classes, ytr)
    ce = -logp[np.arange(n), idx].mean()
    w2 = (clf.coef_**2).sum() * (0.5 if clf.coef_.shape[0] == 1 else 1.0)
    return {
        "test_accuracy": float((clf.predict(xte) == yte).mean()),
        "train_accuracy": float((clf.predict(xtr) == ytr).mean()),
        "C": c,
        "iterations": int(np.max(clf.n_iter_)),
        "converged": converged,
        "objective": float(ce + lam / 2 * w2),
        "cross_entropy": float(ce),
        "seconds": time.time() - t,
    }


def vote_nearest_first(ranked):
    """embedlab's vote: the most frequent label, ties to the nearest one."""
    best, best_count = ranked[0], 0
    for i, label in enumerate(ranked):
        if label in ranked[:i]:
            continue
        count = int((ranked[i:] == label).sum())
        if count > best_count:
            best, best_count = label, count
    return best


def knn(a, k):
    from sklearn.neighbors import KNeighborsClassifier

    k = min(k, a["train_x"].shape[0])
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="euclidean")
    t = time.time()
    clf.fit(a["train_x"], a["train_y"])
    predicted = clf.predict(a["test_x"])
    _, ind = clf.kneighbors(a["test_x"])
    ranked = a["train_y"][ind]
    ours = np.array([vote_nearest_first(r) for r in ranked])
    return {
        "accuracy_nearest_ties": float((ours == a["test_y"]).mean()),
        "accuracy_sklearn_ties": float((predicted == a["test_y"]).mean()),
        "tie_rule_matters": int((ours != predicted).sum()),
        "seconds": time.time() - t,
    }


def as_points(v):
    v = float(v)
    return v if v > 1.0 else 100.0 * v


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--tolerance", type=float, default=0.2, help="percentage points")
    p.add_argument("--sklearn-ties", action="store_true", help="check k-NN with predict()'s tie rule")
    p.add_argument("--max-iter", type=int, default=20000)
    p.add_argument("--tol", type=float, default=1e-8, help="lbfgs gradient tolerance")
    args = p.parse_args()
    try:
        a, ours = load(args.folder)
    except (BadInput, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    lam = float(ours.get("weight_decay", 1e-4))
    k = int(ours.get("k", 5))
    n, d = a["train_x"].shape
    print(f"{args.folder}: train {n} x {d}, test {a['test_x'].shape[0]}, "
          f"{len(np.unique(a['train_y']))} classes; lambda {lam:g}, k {k}")

    failed = False
    rows = []
    if "probe_accuracy" in ours:
        pr = probe(a, lam, args.max_iter, args.tol)
        note = "" if pr["converged"] else "  (lbfgs did NOT converge)"
        print(f"sklearn probe: C = {pr['C']:.6g}, {pr['iterations']} lbfgs iterations, "
              f"{pr['seconds']:.1f} s, objective {pr['objective']:.6f} "
              f"(cross-entropy {pr['cross_entropy']:.6f}), train acc "
              f"{100 * pr['train_accuracy']:.2f}%{note}")
        rows.append(("probe accuracy", ours["probe_accuracy"], pr["test_accuracy"], True))
    if "knn_accuracy" in ours:
        kn = knn(a, k)
        print(f"sklearn k-NN: {kn['seconds']:.1f} s; the two tie rules disagree on "
              f"{kn['tie_rule_matters']} test items")
        check_ties = "accuracy_sklearn_ties" if args.sklearn_ties else "accuracy_nearest_ties"
        other = "accuracy_nearest_ties" if args.sklearn_ties else "accuracy_sklearn_ties"
        rows.append((f"{k}-NN accuracy", ours["knn_accuracy"], kn[check_ties], True))
        rows.append((f"{k}-NN ({'nearest' if args.sklearn_ties else 'smallest'}-label ties)",
                     ours["knn_accuracy"], kn[other], False))
    if not rows:
        print("embedlab.json has neither probe_accuracy nor knn_accuracy", file=sys.stderr)
        sys.exit(2)
    print(f"{'':32} {'embedlab':>9} {'sklearn':>9} {'diff (pt)':>10}")
    for name, e, s, checked in rows:
        e, s = as_points(e), as_points(s)
        diff = e - s
        bad = checked and abs(diff) > args.tolerance
        failed |= bad
        flag = "  FAIL" if bad else ("" if checked else "  (not checked)")
        print(f"{name:32} {e:8.2f}% {s:8.2f}% {diff:+10.2f}{flag}")
    if failed:
        print(f"differences above {args.tolerance} points", file=sys.stderr)
        sys.exit(1)
    print(f"agreement within {args.tolerance} points")


if __name__ == "__main__":
    main()
