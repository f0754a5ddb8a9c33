"""A one-screen summary of a run's metrics.jsonl: how the key quantities moved from start to end."""

from __future__ import annotations

import json
from pathlib import Path

from memoryr.jsonl_log import read_log

KEYS = ("reward", "frac_groups_tied", "completions/mean_length", "entropy", "loss", "step_time")


def read_metrics(run: Path) -> list[dict]:
    """The training records (those with a loss) of a run's metrics.jsonl."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {run} a memoryr run folder?")
    return [r for r in read_log(path) if "loss" in r]


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.4g}" if values else "-"


def summarise_run(run: Path) -> str:
    """Rows of first-quarter vs last-quarter means for rewards, length, entropy and timing, then held-out accuracy."""
    records = read_metrics(run)
    if not records:
        return f"{run}: no training steps logged yet"
    keys = [k for k in records[-1] if k.startswith(("rewards/", "memory/")) and k.endswith("mean")]
    keys += [k for k in KEYS if k in records[-1]]
    quarter = max(1, len(records) // 4)
    lines = [f"run folder: {run}", f"steps logged: {len(records)} (last step {records[-1]['step']})", ""]
    lines.append(f"{'metric':<36} {'first 25%':>10} {'last 25%':>10}")
    for key in keys:
        first = _mean([r[key] for r in records[:quarter] if r.get(key) is not None])
        last = _mean([r[key] for r in records[-quarter:] if r.get(key) is not None])
        lines.append(f"{key:<36} {first:>10} {last:>10}")
    evals = Path(run) / "evals.json"
    if evals.exists():
        record = json.loads(evals.read_text())
        best, last = record["best"], record["last"]
        start = next((h for h in record["history"] if h["step"] == 0), None)
        before = f"before training {100 * start['accuracy']:.1f}%, " if start else ""
        lines.append(f"\n{record['task']} {record.get('split', 'held-out')} accuracy: {before}best {100 * best['accuracy']:.1f}% "
                     f"(step {best['step']}), last {100 * last['accuracy']:.1f}% (step {last['step']})")
    return "\n".join(lines)
