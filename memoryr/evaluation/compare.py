"""Paired comparisons of methods over seeds and problems.

Runs of two methods are paired by seed. `seed_differences` gives the per-seed accuracy differences
with a percentile-bootstrap CI of their mean over seeds (seed-to-seed variance, the main noise in
small RL runs); `seed_problem_ci` resamples the test problems too (a fresh problem sample moved one
paired difference by 5 points); `mcnemar` pools the paired runs' per-problem verdicts on the same
problems and runs McNemar's exact test (is one method right on problems the other gets wrong more
often than chance?).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed, so a report is reproducible


@dataclass(frozen=True)
class SeedDifferences:
    """Method minus baseline accuracy on the seeds both have, in the units given (percentage points for %)."""

    seeds: list[int]
    differences: list[float]
    mean: float | None  # None without a paired seed
    ci95: tuple[float, float] | None  # None with fewer than two paired seeds
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on pooled paired verdicts: b = baseline right & method wrong, c = the reverse."""

    seeds: list[int]
    n: int  # pooled problems
    b: int
    c: int
    p: float  # two-sided exact binomial p of c out of b + c at 1/2; 1.0 when b + c == 0


def bootstrap_ci(
    values: list[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of the mean of `values` (resampled with replacement); None for fewer than two."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    means = data[np.random.default_rng(seed).integers(len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def seed_differences(method: dict[int, float], baseline: dict[int, float]) -> SeedDifferences:
    """Per-seed accuracy differences (method - baseline) on shared seeds: mean, 95% bootstrap CI, win/tie/loss."""
    seeds = sorted(method.keys() & baseline.keys())
    differences = [method[s] - baseline[s] for s in seeds]
    return SeedDifferences(
        seeds=seeds,
        differences=differences,
        mean=float(np.mean(differences)) if differences else None,
        ci95=bootstrap_ci(differences),
        wins=sum(method[s] > baseline[s] for s in seeds),
        ties=sum(method[s] == baseline[s] for s in seeds),
        losses=sum(method[s] < baseline[s] for s in seeds),
    )


def seed_problem_ci(
    method: dict[int, list[bool]], baseline: dict[int, list[bool]], questions: dict[int, list[str]],
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of the mean paired accuracy difference (method - baseline, in the verdicts' units x
    100: pp) over seeds *and* problems; None for fewer than two paired seeds.

    Each resample draws the seeds with replacement and the problems with replacement from all the questions the
    seeds were scored on, crossed with the seeds: a question drawn twice counts twice for every seed scored on it
    (seeds that share a test set share its luck, as they do in reality). A seed's difference is the weighted mean of
    its problems' paired differences. The seed-only bootstrap treats the problems as fixed; this one is the CI of
    the claim about new seeds and new problems alike.
    """
    seeds = sorted(method.keys() & baseline.keys())
    if len(seeds) < 2:
        return None
    pool = sorted({q for s in seeds for q in questions[s]})
    where = {q: j for j, q in enumerate(pool)}
    difference = np.zeros((len(seeds), len(pool)))
    scored = np.zeros((len(seeds), len(pool)))
    for i, s in enumerate(seeds):
        for q, ours, theirs in zip(questions[s], method[s], baseline[s], strict=True):
            difference[i, where[q]] += 100.0 * (int(ours) - int(theirs))
            scored[i, where[q]] += 1
    rng = np.random.default_rng(seed)
    means = []
    for chunk in np.array_split(np.arange(resamples), max(1, resamples // 1000)):
        counts = np.stack([np.bincount(rng.integers(len(pool), size=len(pool)), minlength=len(pool)) for _ in chunk])
        weight = counts @ scored.T  # resample x seed: how many drawn problems each seed was scored on
        per_seed = np.divide(counts @ difference.T, weight, out=np.full(weight.shape, np.nan), where=weight > 0)
        picked = np.take_along_axis(per_seed, rng.integers(len(seeds), size=(len(chunk), len(seeds))), axis=1)
        known = ~np.isnan(picked)  # a seed none of whose problems were drawn says nothing in that resample
        means.append(np.nansum(picked, axis=1)[known.any(axis=1)] / known.sum(axis=1)[known.any(axis=1)])
    means = np.concatenate(means)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def mcnemar(method: dict[int, list[bool]], baseline: dict[int, list[bool]]) -> McNemar:
    """McNemar's exact test over the per-problem verdicts of the seeds both have, pooled (same problems, same order)."""
    seeds = sorted(method.keys() & baseline.keys())
    b = c = n = 0
    for seed in seeds:
        ours, theirs = method[seed], baseline[seed]
        if len(ours) != len(theirs):
            raise ValueError(
                f"seed {seed}: {len(ours)} per-problem verdicts for the method but {len(theirs)} for the baseline; "
                "paired runs must be evaluated on the same problems"
            )
        b += sum(t and not o for o, t in zip(ours, theirs))
        c += sum(o and not t for o, t in zip(ours, theirs))
        n += len(ours)
    p = binomtest(c, b + c, 0.5).pvalue if b + c else 1.0
    return McNemar(seeds=seeds, n=n, b=b, c=c, p=float(p))
