"""Study 2 follow-up: does Memory-R+ (reference)'s cost against R1 shrink without per-group std scaling?

Reads the committed run copies of study 2 (scale_rewards group, max_grad_norm 0.1) and of the follow-up
(scale_rewards none, no clipping) and prints, for the seeds both have: the paired test-accuracy differences
reference - R1 in each setting, their difference (difference in differences) with a 95% percentile-bootstrap
CI over seeds, and the share of each run's summed gradient norm (after clipping) from steps tied on correctness.

    python results/study2-unscaled/analysis.py
"""

import statistics
from pathlib import Path

from memoryr.evaluation.compare import bootstrap_ci
from memoryr.evaluation.report import load_run

HERE = Path(__file__).resolve().parent
SETTINGS = {"group, clip 0.1": HERE.parent / "study2" / "report" / "runs", "none, no clip": HERE / "report" / "runs"}
ARMS = {"R1": "study2-r1", "reference": "study2-memoryrplus-reference"}
CLIP = {"group, clip 0.1": 0.1, "none, no clip": float("inf")}


def test_accuracy(run, model: str) -> float | None:
    held_out = run.test.get(model)
    return None if held_out is None else 100 * held_out.accuracy


def tied_update_share(run, clip: float) -> float:
    """Share of the run's summed gradient norm after clipping that came from steps whose group was tied on
    correctness (every step here is one group): how much of the training the other rewards alone steered."""
    norms = [(min(r["grad_norm"], clip), r["rewards/correctness/std"] < 1e-6) for r in run.steps]
    total = sum(n for n, _ in norms)
    return sum(n for n, tied in norms if tied) / total


def ci_text(values: list[float]) -> str:
    ci = bootstrap_ci(values)
    return "n/a (one seed)" if ci is None else f"{ci[0]:+.1f} to {ci[1]:+.1f}"


def main() -> None:
    runs = {(setting, arm, seed): load_run(root / f"{name}-seed{seed}")
            for setting, root in SETTINGS.items() for arm, name in ARMS.items() for seed in range(1, 9)
            if (root / f"{name}-seed{seed}" / "eval-last" / "results.json").exists()}
    seeds = sorted({s for (_, _, s) in runs if all((st, a, s) in runs for st in SETTINGS for a in ARMS)})
    print(f"seeds in both settings: {seeds}")
    for model in ("best", "last"):
        print(f"\ntest accuracy, {model}/ model (%), and reference - R1 (pp)")
        gaps = {setting: [] for setting in SETTINGS}
        for seed in seeds:
            cells = []
            for setting in SETTINGS:
                r1, ref = (test_accuracy(runs[setting, arm, seed], model) for arm in ARMS)
                gaps[setting].append(ref - r1)
                cells.append(f"{setting}: R1 {r1:.1f}, reference {ref:.1f} ({ref - r1:+.1f})")
            print(f"  seed {seed}: " + " | ".join(cells))
        for setting, values in gaps.items():
            print(f"  reference - R1, {setting}: {statistics.fmean(values):+.2f} pp, 95% CI {ci_text(values)}")
        did = [b - a for a, b in zip(*gaps.values())]
        print(f"  difference in differences (none - group): {statistics.fmean(did):+.2f} pp, 95% CI {ci_text(did)}, "
              f"larger at {sum(d > 0 for d in did)} of {len(did)} seeds")
    print("\nshare of the summed gradient norm (after clipping) from steps tied on correctness (mean over the seeds above)")
    for setting in SETTINGS:
        for arm in ARMS:
            shares = [tied_update_share(runs[setting, arm, seed], CLIP[setting]) for seed in seeds]
            print(f"  {setting}, {arm}: {statistics.fmean(shares):.2f} ({', '.join(f'{s:.2f}' for s in shares)})")


if __name__ == "__main__":
    main()
