"""Reading embedlab run folders from the benchmark scripts.

A run folder's report.json (format 2) holds `metrics` (name, value, unit,
better, note), `figures`, `tables`, `curves` and the family's own `details`;
metrics.jsonl holds one line per epoch (the trainer's records: `epoch`,
`train.<group>.<part>`, `valid.<metric>`, `items_per_second`, …).
"""
import json
import os


def report(run):
    """The report.json of a run folder (or the path of a report.json)."""
    path = run if run.endswith(".json") else os.path.join(run, "report.json")
    with open(path) as f:
        return json.load(f)


def details(run):
    """The family-specific part of a run's report."""
    return report(run)["details"]


def metric(run, name, default=None):
    """The value of the metric `name`, or `default`."""
    for m in report(run)["metrics"]:
        if m["name"] == name:
            return m["value"]
    return default


def epochs(run):
    """The epoch records of metrics.jsonl."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [r for r in rows if "epoch" in r and "items_per_second" in r]
